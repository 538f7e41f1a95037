// tests/compat/node_common.mjs: what the node-redis tests share: the library,
// loaded from the folder tools/preforkctl installs it into with `npm ci`
// (COMPAT_NODE_MODULES, set by meson: build/compat-node/node_modules), the
// server addresses run.py exports, and a bounded poll.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';

const modules = process.env.COMPAT_NODE_MODULES;
if (!modules || !existsSync(`${modules}/redis`)) {
  console.log(`Bail out! node-redis is not installed in ${modules}: run tools/preforkctl test ` +
              '(it runs npm ci from tests/compat/package-lock.json)');
  process.exit(1);
}
export const redis = createRequire(`${modules}/`)('redis');

export const HOST = process.env.COMPAT_HOST ?? '127.0.0.1';
export const PORT = Number(process.env.COMPAT_PORT ?? 6380);
export const AUTH_PORT = Number(process.env.COMPAT_AUTH_PORT ?? 0);
export const PASSWORD = process.env.COMPAT_PASSWORD ?? '';

export async function connect(opts = {}) {
  const c = redis.createClient({ socket: { host: HOST, port: PORT, connectTimeout: 5000 }, ...opts });
  c.on('error', (e) => console.log(`# client error: ${e.message}`));
  await c.connect();
  return c;
}

// Polls the async `cond` every 10 ms until it is true or timeoutMs passed.
export async function waitFor(cond, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return cond();
    await new Promise((res) => setTimeout(res, 10));
  }
}
