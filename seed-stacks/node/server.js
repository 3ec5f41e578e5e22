// The seed report's Node/Express API, rewritten to answer exactly like this project's
// example functions (functions/hello, sleep, hash, memory): same routes, query parameters,
// JSON answers and 400s, and the same HTTP metric names and buckets as our servers, so the
// bench runs the same scenarios against it unchanged.
//
// Listens on SEED_NODE_LISTEN (traffic, default 127.0.0.1:3000) and SEED_NODE_OPS_LISTEN
// (/metrics and /healthz, default 127.0.0.1:3001); port 0 picks a free one. Each listener
// announces itself as `NAME listening on http://ADDR`, as our servers do.

'use strict';

const crypto = require('node:crypto');
const express = require('express');
const client = require('prom-client');

const MIB = 1 << 20;
const PAGE = 4096;

// The same buckets as service-ops' LATENCY_BUCKETS: 50 µs to 10 s.
const LATENCY_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
  1, 2.5, 5, 10,
];
const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry });
const labels = ['function', 'method', 'status'];
const requests = new client.Counter({
  name: 'http_server_requests_total',
  help: 'HTTP requests answered, by function, method and status.',
  labelNames: labels,
  registers: [registry],
});
const duration = new client.Histogram({
  name: 'http_server_request_duration_seconds',
  help: 'Time from request received to response finished, by function, method and status.',
  labelNames: labels,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});
const inFlight = new client.Gauge({
  name: 'http_server_requests_in_flight',
  help: 'Requests being handled right now, by function.',
  labelNames: ['function'],
  registers: [registry],
});

class BadRequest extends Error {}

// A query parameter as an integer in [min, max], `fallback` when absent; anything else is
// a 400 naming the parameter, worded as functions/sdk words it. The last value wins.
function param(query, name, fallback, min, max) {
  let raw = query[name];
  if (raw === undefined) return fallback;
  if (Array.isArray(raw)) raw = raw[raw.length - 1];
  const text = typeof raw === 'string' ? raw.trim() : '';
  if (!/^\+?[0-9]{1,19}$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new BadRequest(
      `query parameter \`${name}\` must be a number from ${min} to ${max}, got ${JSON.stringify(String(raw))}`,
    );
  }
  const value = Number(text);
  if (value < min || value > max) {
    throw new BadRequest(`query parameter \`${name}\` must be from ${min} to ${max}, got ${value}`);
  }
  return value;
}

const handlers = {
  hello: async () => ({ message: 'Hello World!' }),

  // The seed's handler: sleep for a uniform 100–1000 ms (bounds from the query).
  sleep: async (req) => {
    const min = param(req.query, 'min_ms', 100, 0, 60000);
    const max = param(req.query, 'max_ms', Math.max(1000, min), 0, 60000);
    if (min > max) throw new BadRequest(`min_ms (${min}) is greater than max_ms (${max})`);
    const ms = crypto.randomInt(min, max + 1);
    await new Promise((resolve) => setTimeout(resolve, ms));
    return { slept_ms: ms };
  },

  // SHA-256 of the body (or of `size` zero bytes), chained `rounds` times: each round
  // hashes the previous digest followed by the input.
  hash: async (req) => {
    const rounds = param(req.query, 'rounds', 1000, 1, 10000000);
    let input = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    if (input.length === 0) input = Buffer.alloc(param(req.query, 'size', 1024, 0, 16 * MIB));
    let digest = crypto.createHash('sha256').update(input).digest();
    for (let i = 1; i < rounds; i++) {
      digest = crypto.createHash('sha256').update(digest).update(input).digest();
    }
    return { rounds, bytes: input.length, sha256: digest.toString('hex') };
  },

  // Allocates `mib` MiB, writes one byte per 4 KiB page, and sums them back.
  memory: async (req) => {
    const mib = param(req.query, 'mib', 16, 0, 120);
    const bytes = mib * MIB;
    const buffer = Buffer.alloc(bytes);
    for (let page = 0, i = 0; i < bytes; page++, i += PAGE) buffer[i] = (page % 251) + 1;
    let checksum = 0;
    for (let i = 0; i < bytes; i += PAGE) checksum += buffer[i];
    return { mib, checksum };
  },
};

const app = express();
app.disable('x-powered-by');
app.disable('etag');
app.use(express.raw({ type: () => true, limit: '16mb' }));
app.use(async (req, res) => {
  const name = req.path.split('/').filter(Boolean)[0] ?? '';
  const handler = Object.hasOwn(handlers, name) ? handlers[name] : undefined;
  const function_ = handler ? name : '(unknown)';
  const started = process.hrtime.bigint();
  inFlight.inc({ function: function_ });
  res.on('close', () => {
    inFlight.dec({ function: function_ });
    const l = { function: function_, method: req.method, status: String(res.statusCode) };
    requests.inc(l);
    duration.observe(l, Number(process.hrtime.bigint() - started) / 1e9);
  });
  if (!handler) {
    res.status(404).json({ error: `no function ${JSON.stringify(name)}` });
    return;
  }
  try {
    res.status(200).json(await handler(req));
  } catch (e) {
    if (e instanceof BadRequest) res.status(400).json({ error: e.message });
    else res.status(500).json({ error: String(e && e.message) });
  }
});

const ops = express();
ops.get('/metrics', async (_req, res) => {
  res.set('Content-Type', registry.contentType);
  res.end(await registry.metrics());
});
ops.get('/healthz', (_req, res) => res.type('text/plain').send('ok\n'));

function listen(what, server, address) {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(at + 1));
  const listener = server.listen(port, host, () => {
    const a = listener.address();
    const shown = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    console.log(`${what} listening on http://${shown}:${a.port}`);
  });
  // As our servers: idle keep-alive connections close after 10 s without a request.
  listener.keepAliveTimeout = 10000;
  return listener;
}

const servers = [
  listen('traffic', app, process.env.SEED_NODE_LISTEN || '127.0.0.1:3000'),
  listen('ops', ops, process.env.SEED_NODE_OPS_LISTEN || '127.0.0.1:3001'),
];
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    let open = servers.length;
    for (const s of servers) s.close(() => --open === 0 && process.exit(0));
    setTimeout(() => process.exit(0), 5000).unref();
  });
}
