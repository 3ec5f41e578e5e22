// The example functions' handler logic in JavaScript, answering exactly like the Rust ones
// (functions/hello, sleep, hash, memory): the same query parameters, JSON answers and 400
// wording. One source for two hosts: the seed's Express app (server.js) and the
// WebAssembly components of functions/js, each a small adapter that gives the handlers
// what its platform has (`platform` below) and turns their answers into responses.
//
// A handler takes the request's query (URLSearchParams) and body (Uint8Array) and returns
// the JSON object to answer, or throws BadRequest.

const MIB = 1 << 20;
const PAGE = 4096;

export class BadRequest extends Error {}

// A query parameter as an integer in [min, max], `fallback` when absent; anything else is
// a 400 naming the parameter, worded as functions/sdk words it. The last value wins.
export function param(query, name, fallback, min, max) {
  const values = query.getAll(name);
  if (values.length === 0) return fallback;
  const raw = values[values.length - 1];
  const text = raw.trim();
  if (!/^\+?[0-9]{1,19}$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new BadRequest(
      `query parameter \`${name}\` must be a number from ${min} to ${max}, got ${JSON.stringify(raw)}`,
    );
  }
  const value = Number(text);
  if (value < min || value > max) {
    throw new BadRequest(`query parameter \`${name}\` must be from ${min} to ${max}, got ${value}`);
  }
  return value;
}

function hex(bytes) {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

// The handlers over `platform`: `sha256(...parts)` (the digest of the parts one after the
// other, as a Uint8Array or a promise of one), `randomInt(min, max)` (inclusive) and
// `sleep(ms)` (a promise).
export function handlers(platform) {
  return {
    hello: async () => ({ message: 'Hello World!' }),

    // The seed's handler: sleep for a uniform 100–1000 ms (bounds from the query).
    sleep: async (query) => {
      const min = param(query, 'min_ms', 100, 0, 60000);
      const max = param(query, 'max_ms', Math.max(1000, min), 0, 60000);
      if (min > max) throw new BadRequest(`min_ms (${min}) is greater than max_ms (${max})`);
      const ms = platform.randomInt(min, max);
      await platform.sleep(ms);
      return { slept_ms: ms };
    },

    // SHA-256 of the body (or of `size` zero bytes), chained `rounds` times: each round
    // hashes the previous digest followed by the input.
    hash: async (query, body) => {
      const rounds = param(query, 'rounds', 1000, 1, 10000000);
      const input = body.length > 0 ? body : new Uint8Array(param(query, 'size', 1024, 0, 16 * MIB));
      let digest = await platform.sha256(input);
      for (let i = 1; i < rounds; i++) digest = await platform.sha256(digest, input);
      return { rounds, bytes: input.length, sha256: hex(digest) };
    },

    // Allocates `mib` MiB, writes one byte per 4 KiB page, and sums them back.
    memory: async (query) => {
      const mib = param(query, 'mib', 16, 0, 120);
      const bytes = mib * MIB;
      const buffer = new Uint8Array(bytes);
      for (let page = 0, i = 0; i < bytes; page++, i += PAGE) buffer[i] = (page % 251) + 1;
      let checksum = 0;
      for (let i = 0; i < bytes; i += PAGE) checksum += buffer[i];
      return { mib, checksum };
    },
  };
}

// Runs `handler` for one request: [status, JSON object].
export async function answer(handler, query, body) {
  try {
    return [200, await handler(query, body)];
  } catch (e) {
    if (e instanceof BadRequest) return [400, { error: e.message }];
    return [500, { error: String(e && e.message) }];
  }
}
