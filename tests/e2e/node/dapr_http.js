'use strict';
// Drives a running sidecar's Dapr HTTP API with Dapr's JavaScript SDK (@dapr/dapr over HTTP)
// and prints what it saw as one JSON document; tests/e2e/test_dapr_js_sdk.py asserts on it.
// The sidecar's Dapr HTTP port comes from DAPR_HTTP_PORT, as every Dapr app reads it.
const { DaprClient, CommunicationProtocolEnum, StateConcurrencyEnum } = require('@dapr/dapr');

const prefix = process.env.TEST_PREFIX || `js-${Date.now()}`;
const STATE = 'statestore';

// The SDK wraps an HTTP failure as an Error whose message is {error, error_msg, status}.
function failure(err) {
  const raw = err && err.message !== undefined ? err.message : String(err);
  try {
    const parsed = JSON.parse(raw);
    let body = parsed.error_msg;
    try {
      body = JSON.parse(body);
    } catch (_ignored) {
      // plain text (the API token's refusal)
    }
    return { status: parsed.status, body };
  } catch (_ignored) {
    return { message: raw };
  }
}

async function expectError(promise) {
  try {
    await promise;
  } catch (err) {
    return failure(err);
  }
  return null;
}

async function state(client) {
  const key = `${prefix}-state`;
  const out = {};
  out.saved = await client.state.save(STATE, [{ key, value: { n: 1, text: 'one' } }]);
  out.first = await client.state.get(STATE, key);
  const [item] = await client.state.getBulk(STATE, [key]);
  out.firstEtag = item.etag;
  // A stale etag: the SDK returns the error instead of throwing it.
  const stale = await client.state.save(STATE, [
    { key, value: 'stale', etag: `${Number(item.etag) + 5}`, options: { concurrency: StateConcurrencyEnum.CONCURRENCY_FIRST_WRITE } },
  ]);
  out.stale = stale.error ? failure(stale.error) : null;
  out.fresh = await client.state.save(STATE, [{ key, value: 'two', etag: item.etag }]);
  out.second = await client.state.get(STATE, key);
  const wrongDelete = await client.state.delete(STATE, key, { etag: item.etag });
  out.wrongDelete = wrongDelete.error ? failure(wrongDelete.error) : null;

  const bulkKeys = [`${prefix}-b1`, `${prefix}-b2`];
  await client.state.save(STATE, bulkKeys.map((k, i) => ({ key: k, value: `bulk-${i}` })));
  const bulk = await client.state.getBulk(STATE, [...bulkKeys, `${prefix}-missing`]);
  out.bulk = bulk.map((entry) => [entry.key.slice(prefix.length + 1), entry.data === undefined ? null : entry.data]);

  await client.state.transaction(STATE, [
    { operation: 'upsert', request: { key: `${prefix}-tx`, value: { tx: true } } },
    { operation: 'delete', request: { key } },
  ]);
  out.txUpserted = await client.state.get(STATE, `${prefix}-tx`);
  out.txDeleted = await client.state.get(STATE, key);
  out.unknownStore = await expectError(client.state.get('nope', key));
  return out;
}

async function pubsub(client) {
  const topic = `${prefix}-orders`;
  return {
    topic,
    text: await client.pubsub.publish('pubsub', topic, 'hello'),
    object: await client.pubsub.publish('pubsub', topic, { order: 7 }),
    bulk: await client.pubsub.publishBulk('pubsub', topic, ['b-1', { order: 8 }]),
    unknown: (await client.pubsub.publish('nope', topic, 'x')).error !== undefined,
  };
}

async function lock(client) {
  const resource = `${prefix}-lock`;
  return {
    acquired: await client.lock.lock('lockstore', resource, 'owner-a', 30),
    contended: await client.lock.lock('lockstore', resource, 'owner-b', 30),
    othersUnlock: await client.lock.unlock('lockstore', resource, 'owner-b'),
    unlock: await client.lock.unlock('lockstore', resource, 'owner-a'),
    unlockAgain: await client.lock.unlock('lockstore', resource, 'owner-a'),
    badExpire: await expectError(client.lock.lock('lockstore', resource, 'owner-a', 0)),
  };
}

async function main() {
  const client = new DaprClient({
    daprHost: '127.0.0.1',
    daprPort: process.env.DAPR_HTTP_PORT,
    communicationProtocol: CommunicationProtocolEnum.HTTP,
  });
  const out = {};
  out.healthy = await client.health.isHealthy();
  out.state = await state(client);
  out.pubsub = await pubsub(client);
  out.secrets = {
    one: await client.secret.get('localsecrets', 'db-password'),
    bulk: await client.secret.getBulk('localsecrets'),
    unknown: await expectError(client.secret.get('nope', 'x')),
  };
  out.bindings = {
    // The binding's URL is this sidecar's own /v1.0/metadata.
    get: await client.binding.send('info', 'get', ''),
    unsupported: await expectError(client.binding.send('info', 'fly', '')),
  };
  out.lock = await lock(client);
  await client.metadata.set('color', 'blue');
  out.metadata = await client.metadata.get();
  out.invokeUnknown = await expectError(client.invoker.invoke('nobody', 'method'));
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
