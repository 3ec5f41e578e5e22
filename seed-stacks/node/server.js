// The seed report's Node/Express API, rewritten to answer exactly like this project's
// example functions (functions/hello, sleep, hash, memory): same routes, query parameters,
// JSON answers and 400s, and the same HTTP metric names and buckets as our servers, so the
// bench runs the same scenarios against it unchanged. The handlers themselves are
// handlers.js, which the JavaScript components of functions/js run too: this file is
// Express's adapter to them.
//
// Listens on SEED_NODE_LISTEN (traffic, default 127.0.0.1:3000) and SEED_NODE_OPS_LISTEN
// (/metrics and /healthz, default 127.0.0.1:3001); port 0 picks a free one. Each listener
// announces itself as `NAME listening on http://ADDR`, as our servers do.

import crypto from 'node:crypto';
import express from 'express';
import client from 'prom-client';

import { answer, handlers as makeHandlers } from './handlers.js';

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

// What Node gives the handlers: its synchronous hashing (one call a round, no promise),
// its random integers and its timers.
const handlers = makeHandlers({
  sha256: (...parts) => {
    const hash = crypto.createHash('sha256');
    for (const part of parts) hash.update(part);
    return hash.digest();
  },
  randomInt: (min, max) => crypto.randomInt(min, max + 1),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
});

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
  const query = new URL(req.originalUrl, 'http://localhost').searchParams;
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const [status, json] = await answer(handler, query, body);
  res.status(status).json(json);
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
