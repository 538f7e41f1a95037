// tests/compat/test_node_redis.mjs: node-redis (npm `redis`, pinned in
// tests/compat/package.json) driven over its normal API against preforkd's
// RESP port; run by run.py under `node --test-reporter=tap`. Commands
// preforkd does not have yet are in test_node_redis_new.mjs.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { redis, HOST, PORT, AUTH_PORT, PASSWORD, connect, waitFor } from './node_common.mjs';

let r;
before(async () => { r = await connect(); });
after(async () => { await r.quit(); });
beforeEach(async () => { await r.flushDb(); });

// ---- strings

test('set and get', async () => {
  assert.equal(await r.set('s:a', 'hello'), 'OK');
  assert.equal(await r.get('s:a'), 'hello');
  assert.equal(await r.get('s:missing'), null);
});

test('binary keys and values', async () => {
  const blob = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from('\r\n\0end')]);
  const key = Buffer.from([0x73, 0, 0xff]);
  assert.equal(await r.set(key, blob), 'OK');
  const got = await r.get(redis.commandOptions({ returnBuffers: true }), key);
  assert.ok(Buffer.isBuffer(got));
  assert.ok(got.equals(blob));
});

test('multi-megabyte values', async () => {
  const big = Buffer.alloc(8 << 20);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE((i * 2654435761) >>> 0, i);
  assert.equal(await r.set('s:big', big), 'OK');
  assert.equal(await r.strLen('s:big'), big.length);
  const got = await r.get(redis.commandOptions({ returnBuffers: true }), 's:big');
  assert.ok(got.equals(big));
});

test('set EX and PX', async () => {
  assert.equal(await r.set('s:ex', 'v', { EX: 100 }), 'OK');
  const ttl = await r.ttl('s:ex');
  assert.ok(ttl >= 95 && ttl <= 100, `ttl ${ttl}`);
  assert.equal(await r.set('s:px', 'v', { PX: 50000 }), 'OK');
  const pttl = await r.pTTL('s:px');
  assert.ok(pttl >= 45000 && pttl <= 50000, `pttl ${pttl}`);
  await r.set('s:short', 'v', { PX: 30 });
  assert.ok(await waitFor(async () => (await r.get('s:short')) === null, 3000));
});

test('set NX and XX', async () => {
  assert.equal(await r.set('s:nx', '1', { NX: true }), 'OK');
  assert.equal(await r.set('s:nx', '2', { NX: true }), null);
  assert.equal(await r.get('s:nx'), '1');
  assert.equal(await r.set('s:xx', '1', { XX: true }), null);
  assert.equal(await r.exists('s:xx'), 0);
  assert.equal(await r.set('s:nx', '3', { XX: true }), 'OK');
  assert.equal(await r.get('s:nx'), '3');
});

test('set GET returns the old value', async () => {
  assert.equal(await r.set('s:g', 'old', { GET: true }), null);
  assert.equal(await r.set('s:g', 'new', { GET: true }), 'old');
  assert.equal(await r.get('s:g'), 'new');
});

test('set KEEPTTL', async () => {
  await r.set('s:k', 'v1', { EX: 100 });
  assert.equal(await r.set('s:k', 'v2', { KEEPTTL: true }), 'OK');
  assert.equal(await r.get('s:k'), 'v2');
  const ttl = await r.ttl('s:k');
  assert.ok(ttl >= 90 && ttl <= 100, `ttl ${ttl}`);
  await r.set('s:k', 'v3');
  assert.equal(await r.ttl('s:k'), -1);
});

test('mSet and mGet', async () => {
  assert.equal(await r.mSet({ 'm:1': 'a', 'm:2': 'b', 'm:3': 'c' }), 'OK');
  assert.deepEqual(await r.mGet(['m:1', 'm:2', 'm:nope', 'm:3']), ['a', 'b', null, 'c']);
  assert.equal(await r.mSet([['m:4', 'd'], ['m:5', 'e']]), 'OK');
  assert.deepEqual(await r.mGet(['m:5', 'm:4']), ['e', 'd']);
});

test('incr, decr, incrBy, decrBy', async () => {
  assert.equal(await r.incr('c:n'), 1);
  assert.equal(await r.incrBy('c:n', 15), 16);
  assert.equal(await r.decr('c:n'), 15);
  assert.equal(await r.decrBy('c:n', 20), -5);
  assert.equal(await r.get('c:n'), '-5');
  await r.set('c:s', 'abc');
  await assert.rejects(r.incr('c:s'), (e) => e instanceof redis.ErrorReply && /not an integer/.test(e.message));
});

test('strLen', async () => {
  // APPEND is not there yet: test_node_redis_new.mjs has it.
  await r.set('a:x', 'Hello World');
  assert.equal(await r.strLen('a:x'), 11);
  assert.equal(await r.strLen('a:none'), 0);
});

test('setNX and setEx', async () => {
  assert.equal(await r.setNX('n:1', 'a'), true);
  assert.equal(await r.setNX('n:1', 'b'), false);
  assert.equal(await r.get('n:1'), 'a');
  assert.equal(await r.setEx('n:2', 60, 'v'), 'OK');
  const ttl = await r.ttl('n:2');
  assert.ok(ttl >= 55 && ttl <= 60, `ttl ${ttl}`);
  await assert.rejects(r.setEx('n:3', 0, 'v'), redis.ErrorReply);
});

// ---- keyspace

test('del and exists', async () => {
  await r.mSet({ 'k:1': '1', 'k:2': '2', 'k:3': '3' });
  assert.equal(await r.exists(['k:1', 'k:2', 'k:nope']), 2);
  assert.equal(await r.del(['k:1', 'k:2', 'k:nope']), 2);
  assert.equal(await r.exists('k:1'), 0);
  assert.equal(await r.del('k:1'), 0);
});

test('type', async () => {
  await r.set('t:s', 'x');
  assert.equal(await r.type('t:s'), 'string');
  assert.equal(await r.type('t:none'), 'none');
});

test('expire, ttl, pTTL, persist', async () => {
  await r.set('e:1', 'v');
  assert.equal(await r.ttl('e:1'), -1);
  assert.equal(await r.ttl('e:none'), -2);
  assert.equal(await r.expire('e:1', 100), true);
  const ttl = await r.ttl('e:1');
  assert.ok(ttl >= 95 && ttl <= 100, `ttl ${ttl}`);
  const pttl = await r.pTTL('e:1');
  assert.ok(pttl >= 95000 && pttl <= 100000, `pttl ${pttl}`);
  assert.equal(await r.persist('e:1'), true);
  assert.equal(await r.persist('e:1'), false);
  assert.equal(await r.ttl('e:1'), -1);
  assert.equal(await r.expire('e:none', 10), false);
  assert.equal(await r.pExpire('e:1', 40), true);
  assert.ok(await waitFor(async () => (await r.exists('e:1')) === 0, 3000));
});

test('dbSize and flushDb', async () => {
  assert.equal(await r.dbSize(), 0);
  await r.mSet(Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`d:${i}`, `${i}`])));
  assert.equal(await r.dbSize(), 10);
  assert.equal(await r.flushDb(), 'OK');
  assert.equal(await r.dbSize(), 0);
  await r.set('d:a', '1');
  await r.set('d:b', '2');
  assert.equal(await r.dbSize(), 2);
  assert.equal(await r.flushDb('ASYNC'), 'OK');
  assert.equal(await r.dbSize(), 0);
});

// ---- scanIterator

async function scanAll(opts) {
  const keys = [];
  for await (const k of r.scanIterator(opts)) keys.push(k);
  return keys;
}

test('scanIterator over an empty store', async () => {
  assert.deepEqual(await scanAll(), []);
  assert.deepEqual(await scanAll({ MATCH: '*', COUNT: 10 }), []);
});

test('scanIterator over 3 keys', async () => {
  await r.mSet({ 'sc:1': 'a', 'sc:2': 'b', 'sc:3': 'c' });
  const keys = await scanAll();
  assert.deepEqual([...keys].sort(), ['sc:1', 'sc:2', 'sc:3']);
  assert.deepEqual((await scanAll({ MATCH: 'sc:[12]', COUNT: 1 })).sort(), ['sc:1', 'sc:2']);
  assert.deepEqual(await scanAll({ MATCH: 'nomatch*', COUNT: 2 }), []);
});

test('scanIterator over 5000 keys returns each exactly once', async () => {
  const want = Array.from({ length: 5000 }, (_, i) => `big:${String(i).padStart(5, '0')}`);
  // Commands issued in one tick are pipelined by node-redis.
  const replies = await Promise.all(want.map((k) => r.set(k, 'v')));
  assert.ok(replies.every((x) => x === 'OK'));
  await r.mSet(Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`other:${i}`, 'x'])));
  const got = await scanAll({ MATCH: 'big:*', COUNT: 100 });
  assert.equal(got.length, new Set(got).size, 'SCAN returned a key twice');
  assert.deepEqual([...got].sort(), want);
  assert.equal((await scanAll({ COUNT: 1000 })).length, 5100);
  assert.equal(await r.dbSize(), 5100);
});

// ---- pipelines (non-transactional)

test('execAsPipeline runs commands in order without MULTI', async () => {
  const res = await r.multi()
    .set('p:a', '1').incr('p:a').get('p:a').mGet(['p:a', 'p:b']).del('p:a').exists('p:a')
    .execAsPipeline();
  assert.deepEqual(res, ['OK', 2, '2', ['2', null], 1, 0]);
});

test('a pipeline error belongs to its own command', async () => {
  await r.set('p:s', 'text');
  const results = await Promise.allSettled([r.incr('p:s'), r.set('p:after', 'ok'), r.get('p:after')]);
  assert.equal(results[0].status, 'rejected');
  assert.ok(results[0].reason instanceof redis.ErrorReply);
  assert.deepEqual(results.slice(1).map((x) => x.value), ['OK', 'ok']);
});

test('2000 pipelined INCRs', async () => {
  const res = await Promise.all(Array.from({ length: 2000 }, () => r.incr('p:counter')));
  assert.deepEqual(res, Array.from({ length: 2000 }, (_, i) => i + 1));
});

// ---- pub/sub

async function numsub(channel) {
  const m = await r.pubSubNumSub(channel);
  return m[channel];
}

test('subscribe, publish from another client, receive', async () => {
  const sub = r.duplicate();
  await sub.connect();
  const got = [];
  await sub.subscribe('news', (message, channel) => got.push([channel, message]));
  assert.ok(await waitFor(async () => (await numsub('news')) === 1, 5000));
  assert.equal(await r.publish('news', 'hello'), 1);
  assert.equal(await r.publish('other', 'x'), 0);
  assert.ok(await waitFor(async () => got.length >= 1, 5000), 'no message within 5 s');
  assert.deepEqual(got, [['news', 'hello']]);
  await sub.unsubscribe('news');
  await sub.quit();
});

test('subscribers on several connections all receive', async () => {
  const subs = [];
  const got = [];
  for (let i = 0; i < 6; i++) {
    const s = r.duplicate();
    await s.connect();
    await s.subscribe('fan', (m) => got.push(`${i}:${m}`));
    subs.push(s);
  }
  assert.ok(await waitFor(async () => (await numsub('fan')) === 6, 5000));
  assert.equal(await r.publish('fan', 'all'), 6);
  assert.ok(await waitFor(async () => got.length >= 6, 5000), `got ${got}`);
  assert.deepEqual([...got].sort(), ['0:all', '1:all', '2:all', '3:all', '4:all', '5:all']);
  for (const s of subs) await s.quit();
});

test('pSubscribe', async () => {
  const sub = r.duplicate();
  await sub.connect();
  const got = [];
  await sub.pSubscribe('ev.*', (message, channel) => got.push([channel, message]));
  assert.ok(await waitFor(async () => (await r.pubSubNumPat()) === 1, 5000));
  assert.equal(await r.publish('ev.login', 'u1'), 1);
  assert.equal(await r.publish('nope.login', 'u1'), 0);
  assert.ok(await waitFor(async () => got.length >= 1, 5000));
  assert.deepEqual(got, [['ev.login', 'u1']]);
  await sub.quit();
});

// ---- CLIENT, INFO

test('clientSetName, clientGetName, clientId', async () => {
  const c = r.duplicate();
  await c.connect();
  assert.equal(await c.clientGetName(), null);
  assert.equal(await c.clientSetName('compat-node'), 'OK');
  assert.equal(await c.clientGetName(), 'compat-node');
  const a = await c.clientId();
  const b = await r.clientId();
  assert.equal(typeof a, 'number');
  assert.notEqual(a, b);
  assert.equal(await c.clientId(), a);
  await assert.rejects(c.clientSetName('has space'), redis.ErrorReply);
  await c.quit();
});

test('the name option names the connection', async () => {
  const c = redis.createClient({ socket: { host: HOST, port: PORT }, name: 'born-named' });
  await c.connect();
  assert.equal(await c.clientGetName(), 'born-named');
  await c.quit();
});

test('ping and echo', async () => {
  assert.equal(await r.ping(), 'PONG');
  assert.equal(await r.echo('hi there'), 'hi there');
});

test('info returns the sections', async () => {
  await r.set('i:1', 'x');
  const info = await r.info();
  assert.match(info, /^# Server\r\n/m);
  assert.match(info, /^redis_version:/m);
  assert.match(info, /^db0:keys=1,/m);
  const server = await r.info('server');
  assert.match(server, /^redis_version:/m);
  assert.doesNotMatch(server, /^connected_clients:/m);
});

// ---- AUTH

test('password in the options authenticates', { skip: !AUTH_PORT }, async () => {
  const c = redis.createClient({ socket: { host: HOST, port: AUTH_PORT }, password: PASSWORD });
  await c.connect();
  assert.equal(await c.set('auth:k', 'v'), 'OK');
  assert.equal(await c.get('auth:k'), 'v');
  await c.quit();
});

test('without a password commands get NOAUTH', { skip: !AUTH_PORT }, async () => {
  const c = redis.createClient({ socket: { host: HOST, port: AUTH_PORT } });
  await c.connect();
  await assert.rejects(c.get('auth:k'), (e) => e instanceof redis.ErrorReply && /^NOAUTH/.test(e.message));
  assert.equal(await c.auth({ password: PASSWORD }), 'OK');
  assert.equal(await c.ping(), 'PONG');
  await c.quit();
});

test('a wrong password fails the connect', { skip: !AUTH_PORT }, async () => {
  const c = redis.createClient({
    socket: { host: HOST, port: AUTH_PORT, reconnectStrategy: false },
    password: 'wrong-password',
  });
  c.on('error', () => {});
  await assert.rejects(c.connect(), (e) => /WRONGPASS|invalid password/i.test(e.message));
  if (c.isOpen) await c.disconnect();
});
