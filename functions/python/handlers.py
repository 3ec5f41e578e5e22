"""The example functions' handler logic in Python, answering exactly like the Rust ones
(functions/hello, sleep, hash, memory): the same query parameters, JSON answers and 400
wording. Each handler takes the request's query (a dict of lists, as
urllib.parse.parse_qs gives it) and body (bytes) and returns the JSON object to answer,
or raises BadRequest."""

import hashlib
import random
import time

MIB = 1 << 20
PAGE = 4096


class BadRequest(Exception):
    """A 400: the request asked for something the handler cannot do."""


def param(query, name, fallback, low, high):
    """`name` as an integer in [low, high], `fallback` when absent; the last value wins.
    Anything else is a 400 worded as functions/sdk words it."""
    values = query.get(name)
    if not values:
        return fallback
    raw = values[-1]
    text = raw.strip()
    digits = text[1:] if text.startswith("+") else text
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 19):
        raise BadRequest(
            f"query parameter `{name}` must be a number from {low} to {high}, got {quote(raw)}"
        )
    value = int(digits)
    if not low <= value <= high:
        raise BadRequest(f"query parameter `{name}` must be from {low} to {high}, got {value}")
    return value


def quote(text):
    """`text` quoted as Rust's `{:?}` and JSON.stringify quote a plain string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def hello(query, body):
    return {"message": "Hello World!"}


def sleep(query, body):
    """The seed's handler: sleeps a uniform 100-1000 ms (bounds from the query)."""
    low = param(query, "min_ms", 100, 0, 60000)
    high = param(query, "max_ms", max(1000, low), 0, 60000)
    if low > high:
        raise BadRequest(f"min_ms ({low}) is greater than max_ms ({high})")
    ms = random.randint(low, high)
    time.sleep(ms / 1000)
    return {"slept_ms": ms}


def hash(query, body):
    """SHA-256 of the body (or of `size` zero bytes), chained `rounds` times: each round
    hashes the previous digest followed by the input."""
    rounds = param(query, "rounds", 1000, 1, 10_000_000)
    data = body if body else bytes(param(query, "size", 1024, 0, 16 * MIB))
    digest = hashlib.sha256(data).digest()
    for _ in range(1, rounds):
        digest = hashlib.sha256(digest + data).digest()
    return {"rounds": rounds, "bytes": len(data), "sha256": digest.hex()}


def memory(query, body):
    """Allocates `mib` MiB, writes one byte per 4 KiB page, and sums them back."""
    mib = param(query, "mib", 16, 0, 120)
    size = mib * MIB
    buffer = bytearray(size)
    for page, at in enumerate(range(0, size, PAGE)):
        buffer[at] = page % 251 + 1
    return {"mib": mib, "checksum": sum(buffer[0:size:PAGE])}


def answer(handler, query, body):
    """Runs `handler`: (status, JSON object)."""
    try:
        return 200, handler(query, body)
    except BadRequest as e:
        return 400, {"error": str(e)}
