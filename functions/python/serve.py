"""Serves one handler of handlers.py as a wasi:http incoming handler: reads the request
whole, runs the handler, answers its JSON."""

import json
from urllib.parse import parse_qs, urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingBody,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

import handlers

# The most `blocking-write-and-flush` takes at once.
WRITE_SIZE = 4096


def read_body(request: IncomingRequest) -> bytes:
    incoming = request.consume()
    stream = incoming.stream()
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(64 * 1024))
        except Err as e:
            if isinstance(e.value, StreamError_Closed):
                break
            raise
    stream.__exit__(None, None, None)
    IncomingBody.finish(incoming)
    return b"".join(chunks)


def respond(response_out: ResponseOutparam, status: int, payload) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = Fields.from_list([("content-type", b"application/json")])
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    stream = outgoing.write()
    for at in range(0, len(body), WRITE_SIZE):
        stream.blocking_write_and_flush(body[at : at + WRITE_SIZE])
    stream.__exit__(None, None, None)
    OutgoingBody.finish(outgoing, None)


def serve(handler):
    """An IncomingHandler class that answers every request with `handler`."""

    class IncomingHandler(exports.IncomingHandler):
        def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
            query = parse_qs(urlsplit(request.path_with_query() or "/").query, keep_blank_values=True)
            status, payload = handlers.answer(handler, query, read_body(request))
            respond(response_out, status, payload)

    return IncomingHandler
