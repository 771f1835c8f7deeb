'use strict';
// Drives a running sidecar with Layotto's official Node.js SDK and prints what it saw as one
// JSON document; tests/e2e/test_node_sdk.py asserts on it. The client reads the sidecar
// address from runtime_GRPC_HOST / runtime_GRPC_PORT, as every Node app does.
const { Client } = require('layotto');

const prefix = process.env.TEST_PREFIX || `node-${Date.now()}`;
const text = (bytes) => Buffer.from(bytes).toString('utf8');
const failure = (err) => ({ code: err.code, details: err.details });

async function expectError(promise) {
  try {
    await promise;
  } catch (err) {
    return failure(err);
  }
  return null;
}

async function hello(client) {
  return {
    plain: await client.hello.sayHello({}),
    named: await client.hello.sayHello({ name: 'node' }),
    unknown: await expectError(client.hello.sayHello({ serviceName: 'nope' })),
  };
}

async function state(client) {
  const storeName = 'redis';
  const key = `${prefix}-state`;
  const out = {};
  await client.state.save({ storeName, states: [{ key, value: 'v1' }] });
  const first = await client.state.get({ storeName, key });
  out.first = { value: text(first.value), etag: first.etag };
  await client.state.save({ storeName, states: [{ key, value: 'v2', etag: first.etag }] });
  out.staleEtag = await expectError(client.state.save({ storeName, states: [{ key, value: 'v3', etag: first.etag }] }));
  const second = await client.state.get({ storeName, key });
  out.second = { value: text(second.value), etag: second.etag };

  const bulkKeys = [`${prefix}-b1`, `${prefix}-b2`];
  await client.state.save({ storeName, states: bulkKeys.map((k, i) => ({ key: k, value: `bulk-${i}` })) });
  const bulk = await client.state.getBulk({ storeName, keys: [...bulkKeys, `${prefix}-missing`] });
  out.bulk = bulk.map((item) => [item.key, text(item.value)]).sort();
  await client.state.deleteBulk({ storeName, states: bulkKeys.map((k) => ({ key: k })) });
  out.afterDeleteBulk = (await client.state.getBulk({ storeName, keys: bulkKeys })).length;

  await client.state.executeTransaction({
    storeName,
    operations: [
      { operationType: 'upsert', request: { key: `${prefix}-tx`, value: 'tx-value' } },
      { operationType: 'delete', request: { key } },
    ],
  });
  out.txUpserted = text((await client.state.get({ storeName, key: `${prefix}-tx` })).value);
  out.txDeleted = await client.state.get({ storeName, key });
  await client.state.delete({ storeName, key: `${prefix}-tx` });
  out.afterDelete = await client.state.get({ storeName, key: `${prefix}-tx` });
  out.unknownStore = await expectError(client.state.get({ storeName: 'notexists-store', key }));
  out.unknownStoreSave = await expectError(
    client.state.save({ storeName: 'notexists-store', states: [{ key, value: 'x' }] }));
  return out;
}

async function lock(client) {
  const storeName = 'redis';
  const resourceId = `${prefix}-lock`;
  const owner = client.lock.uuid();
  const other = client.lock.uuid();
  return {
    acquired: await client.lock.tryLock({ storeName, resourceId, lockOwner: owner, expire: 10 }),
    contended: await client.lock.tryLock({ storeName, resourceId, lockOwner: other, expire: 10 }),
    othersUnlock: await client.lock.unLock({ storeName, resourceId, lockOwner: other }),
    unlock: await client.lock.unLock({ storeName, resourceId, lockOwner: owner }),
    unlockAgain: await client.lock.unLock({ storeName, resourceId, lockOwner: owner }),
    badExpire: await expectError(client.lock.tryLock({ storeName, resourceId, lockOwner: owner, expire: 0 })),
  };
}

async function sequencer(client) {
  const key = `${prefix}-seq`;
  const ids = [];
  for (let i = 0; i < 3; i++) {
    ids.push(await client.sequencer.getNextId({ storeName: 'redis', key, options: { increment: 1 } }));
  }
  const weak = await client.sequencer.getNextId({ storeName: 'redis', key: `${prefix}-weak` });
  return { ids, weak, emptyKey: await expectError(client.sequencer.getNextId({ storeName: 'redis', key: '' })) };
}

async function pubsub(client) {
  await client.pubsub.publish({ pubsubName: 'mem', topic: `${prefix}-topic`, data: { hello: 'world' } });
  return {
    published: true,
    unknown: await expectError(client.pubsub.publish({ pubsubName: 'nope', topic: 't', data: {} })),
  };
}

async function configuration(client) {
  const storeName = 'mem';
  const appId = 'node-e2e';
  const key = `${prefix}-conf`;
  const group = `${prefix}-group`;
  await client.configuration.save({ storeName, appId, items: [{ key, content: 'c1', group, label: 'l' }] });
  const got = await client.configuration.get({ storeName, appId, group, label: 'l', keys: [key] });
  // The watch starts asynchronously on the sidecar: save until a change arrives (bounded).
  const pushed = await new Promise((resolve, reject) => {
    let done = false;
    const call = client.configuration.subscribe({
      storeName, appId, group, label: 'l', keys: [key],
      onData(items) {
        const item = items.find((i) => i.key === key && i.content.startsWith('update-'));
        if (item && !done) {
          done = true;
          call.cancel();
          resolve(item.content);
        }
      },
      onClose(err) {
        if (!done) reject(err || new Error('subscription closed'));
      },
    });
    let n = 0;
    const timer = setInterval(async () => {
      if (done || n >= 20) {
        clearInterval(timer);
        if (!done) reject(new Error('no configuration change arrived'));
        return;
      }
      n += 1;
      await client.configuration.save({ storeName, appId, items: [{ key, content: `update-${n}`, group, label: 'l' }] });
    }, 200);
  });
  await client.configuration.delete({ storeName, appId, group, label: 'l', keys: [key] });
  const afterDelete = await client.configuration.get({ storeName, appId, group, label: 'l', keys: [key] });
  return {
    got: got.map((i) => ({ key: i.key, content: i.content, group: i.group, label: i.label, tags: i.tags })),
    pushedPrefix: pushed.split('-')[0],
    afterDelete: afterDelete.length,
  };
}

async function main() {
  const client = new Client();
  const blocks = (process.env.TEST_BLOCKS || 'hello,state,lock,sequencer,pubsub,configuration').split(',');
  const steps = { hello, state, lock, sequencer, pubsub, configuration };
  const result = {};
  for (const name of blocks) {
    result[name] = await steps[name](client);
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`node SDK e2e failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
