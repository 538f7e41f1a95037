// tests/compat/test_node_redis_commands.mjs: node-redis over the string,
// keyspace and bit commands, MULTI/EXEC and WATCH, INFO, and DBSIZE not
// counting an expired key. Run: PREFORKD_BIN=build/preforkd
// COMPAT_NODE_MODULES=$PWD/build/compat-node/node_modules tests/compat/run.py --
// node --test-reporter=tap tests/compat/test_node_redis_commands.mjs
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, waitFor } from './node_common.mjs';

let r;
before(async () => { r = await connect(); });
after(async () => { await r.quit(); });
beforeEach(async () => { await r.flushDb(); });

test('append', async () => {
  assert.equal(await r.append('a:x', 'Hello'), 5);
  assert.equal(await r.append('a:x', ' World'), 11);
});
test('getDel, getEx, getSet', async () => {
  await r.set('g:1', 'v');
  assert.equal(await r.getDel('g:1'), 'v');
  await r.set('g:2', 'v');
  assert.equal(await r.getEx('g:2', { EX: 100 }), 'v');
  assert.ok((await r.ttl('g:2')) > 90);
  assert.equal(await r.getSet('g:3', 'a'), null);
  assert.equal(await r.getSet('g:3', 'b'), 'a');
});
test('getRange, setRange', async () => {
  await r.set('r:1', 'Hello World');
  assert.equal(await r.getRange('r:1', 0, 4), 'Hello');
  assert.equal(await r.setRange('r:1', 6, 'Redis'), 11);
  assert.equal(await r.get('r:1'), 'Hello Redis');
});
test('incrByFloat', async () => {
  await r.set('f:1', '10.5');
  assert.equal(await r.incrByFloat('f:1', 0.1), '10.6');
});
test('mSetNX', async () => {
  assert.equal(await r.mSetNX({ 'x:1': 'a', 'x:2': 'b' }), true);
  assert.equal(await r.mSetNX({ 'x:2': 'c', 'x:3': 'd' }), false);
});
test('rename, copy', async () => {
  await r.set('rn:a', 'v');
  assert.equal(await r.rename('rn:a', 'rn:b'), 'OK');
  assert.equal(await r.copy('rn:b', 'rn:c'), true);
  assert.equal(await r.get('rn:c'), 'v');
});
test('setBit, getBit, bitCount', async () => {
  assert.equal(await r.setBit('b:1', 7, 1), 0);
  assert.equal(await r.getBit('b:1', 7), 1);
  await r.set('b:2', 'foobar');
  assert.equal(await r.bitCount('b:2'), 26);
});
test('multi/exec', async () => {
  assert.deepEqual(await r.multi().set('t:a', '1').incr('t:a').exec(), ['OK', 2]);
});
test('watch aborts on a change', async () => {
  const c = r.duplicate();
  await c.connect();
  await c.watch('t:w');
  await r.set('t:w', 'changed');
  await assert.rejects(c.multi().set('t:w', 'mine').exec(), (e) => e.constructor.name === 'WatchError');
  assert.equal(await r.get('t:w'), 'changed');
  await c.quit();
});
test('info has cluster_enabled', async () => {
  assert.match(await r.info(), /^cluster_enabled:0\r$/m);
});
test('dbSize does not count an expired key', async () => {
  await r.set('a', '1');
  await r.set('b', '2');
  await r.set('t', 'v', { PX: 1 });
  await new Promise((res) => setTimeout(res, 10));
  assert.deepEqual((await r.keys('*')).sort(), ['a', 'b']);
  assert.ok(await waitFor(async () => (await r.dbSize()) === 2, 1000), `dbSize ${await r.dbSize()}`);
});
