// Serves one handler of seed-stacks/node/handlers.js, the seed's Express app's own
// handlers, as a wasi:http component (componentize-js, StarlingMonkey): reads the request
// whole, runs the handler, answers its JSON. The platform the handlers need is the web's:
// WebCrypto for SHA-256 and random numbers, timers for sleeping.

import { answer, handlers } from '../../seed-stacks/node/handlers.js';

function concat(parts) {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export const examples = handlers({
  sha256: async (...parts) => new Uint8Array(await crypto.subtle.digest('SHA-256', concat(parts))),
  randomInt: (min, max) => {
    const word = new Uint32Array(1);
    crypto.getRandomValues(word);
    return min + (word[0] % (max - min + 1));
  },
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
});

// Answers every request with `handler`.
export function serve(handler) {
  addEventListener('fetch', (event) =>
    event.respondWith(
      (async () => {
        const request = event.request;
        const query = new URL(request.url).searchParams;
        const body = new Uint8Array(await request.arrayBuffer());
        const [status, json] = await answer(handler, query, body);
        return new Response(JSON.stringify(json), {
          status,
          headers: { 'content-type': 'application/json' },
        });
      })(),
    ),
  );
}
