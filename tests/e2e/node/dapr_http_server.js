'use strict';
// A Dapr HTTP app written with Dapr's JavaScript SDK (DaprServer, HTTP protocol), against a
// running sidecar started with --app-port APP_PORT --app-protocol http. It subscribes (a
// default route with a dead-letter topic; content routes), serves `echo` for invocation, then
// acts as its own client and prints what it saw as one JSON document for
// tests/e2e/test_dapr_js_server.py.
const {
  DaprServer,
  DaprClient,
  CommunicationProtocolEnum,
  DaprPubSubStatusEnum,
  HttpMethod,
} = require('@dapr/dapr');

const appId = process.env.APP_ID;
const appPort = process.env.APP_PORT;
const daprPort = process.env.DAPR_HTTP_PORT;
const prefix = process.env.TEST_PREFIX;
const PUBSUB = 'pubsub';
const topic = `${prefix}-orders`;
const dead = `${prefix}-dead`;
const routed = `${prefix}-routed`;

const seen = [];
const waiters = [];

function record(where, data) {
  seen.push({ where, data });
  for (const waiter of waiters.splice(0)) waiter();
}

async function until(predicate, what, ms = 20000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; saw ${JSON.stringify(seen)}`);
    await new Promise((resolve) => {
      waiters.push(resolve);
      setTimeout(resolve, 250);
    });
  }
}

const retried = new Set();

async function onOrder(data) {
  record('orders', data);
  if (data.kind === 'retry-once' && !retried.has(data.n)) {
    retried.add(data.n);
    return DaprPubSubStatusEnum.RETRY;
  }
  if (data.kind === 'drop') return DaprPubSubStatusEnum.DROP;
  if (data.kind === 'retry-always') return DaprPubSubStatusEnum.RETRY;
  return DaprPubSubStatusEnum.SUCCESS;
}

async function main() {
  const server = new DaprServer({
    serverHost: '127.0.0.1',
    serverPort: appPort,
    communicationProtocol: CommunicationProtocolEnum.HTTP,
    clientOptions: { daprHost: '127.0.0.1', daprPort },
  });
  // The delivery policy (retries, attempts before dead-lettering) is the component's metadata:
  // the SDK sends subscription metadata values JSON-encoded ("\"2\""), which no number reads.
  await server.pubsub.subscribeWithOptions(PUBSUB, topic, { callback: onOrder, deadLetterTopic: dead });
  // Dead letters reach the app as any topic does: through its own subscription.
  await server.pubsub.subscribe(PUBSUB, dead, async (data) => record('dead', data));
  await server.pubsub.subscribeWithOptions(PUBSUB, routed, {
    route: { rules: [{ match: 'event.type == "widget"', path: '/widgets' }], default: '/everything-else' },
  });
  server.pubsub.subscribeToRoute(PUBSUB, routed, '/widgets', async (data) => record('widgets', data));
  server.pubsub.subscribeToRoute(PUBSUB, routed, '/everything-else', async (data) => record('others', data));
  await server.invoker.listen('echo', async ({ body }) => ({ echoed: JSON.parse(body) }), { method: HttpMethod.POST });
  await server.start();

  const client = new DaprClient({ daprHost: '127.0.0.1', daprPort, communicationProtocol: CommunicationProtocolEnum.HTTP });
  const out = {};
  // The sidecar asks the app for its subscriptions once the app is up: wait until it has.
  const deadline = Date.now() + 20000;
  for (;;) {
    const metadata = await client.metadata.get();
    const topics = (metadata.subscriptions || []).map((s) => s.topic);
    if ([topic, dead, routed].every((t) => topics.includes(t))) {
      out.subscriptions = metadata.subscriptions.filter((s) => s.topic.startsWith(prefix)).length;
      break;
    }
    if (Date.now() > deadline) throw new Error(`not subscribed: ${JSON.stringify(metadata)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  await client.pubsub.publish(PUBSUB, topic, { kind: 'ok', n: 1 });
  await client.pubsub.publish(PUBSUB, topic, { kind: 'retry-once', n: 2 });
  await client.pubsub.publish(PUBSUB, topic, { kind: 'drop', n: 3 });
  await client.pubsub.publish(PUBSUB, topic, { kind: 'retry-always', n: 4 });
  await until(() => seen.filter((s) => s.where === 'dead').length >= 2, 'two dead letters');
  await until(() => seen.filter((s) => s.where === 'orders' && s.data.n === 2).length >= 2, 'the retried event');
  out.orders = seen.filter((s) => s.where === 'orders').map((s) => s.data.n).sort();
  out.dead = seen.filter((s) => s.where === 'dead').map((s) => s.data.n).sort();

  const widget = { specversion: '1.0', id: `${prefix}-w`, source: 'shop', type: 'widget', datacontenttype: 'application/json', data: { w: 1 } };
  await client.pubsub.publish(PUBSUB, routed, widget, { contentType: 'application/cloudevents+json' });
  await client.pubsub.publish(PUBSUB, routed, { plain: true });
  await until(() => seen.some((s) => s.where === 'widgets') && seen.some((s) => s.where === 'others'), 'routed events');
  out.routed = {
    widgets: seen.filter((s) => s.where === 'widgets').map((s) => s.data),
    others: seen.filter((s) => s.where === 'others').map((s) => s.data),
  };

  // Invocation both ways: this app calls itself through the sidecar, which calls it over HTTP.
  out.invoked = await client.invoker.invoke(appId, 'echo', HttpMethod.POST, { hello: 'js' });

  await server.stop();
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
