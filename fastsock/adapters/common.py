"""What the WSGI and ASGI adapters share: which request bodies stream in, the app's response as
the writer takes it, and the error a gone client is to the app."""
from __future__ import annotations

from fastsock._handoff import BodyIn
from fastsock._message import Response

STREAM_ABOVE = 65536        # a body with a larger Content-Length (or chunked) is streamed in


class ClientDisconnected(OSError):
    """What a WSGI or ASGI app gets for reading or sending after the client went away."""


def stream_large_bodies(limit: int):
    """The on_head of a WSGI or ASGI app: req -> BodyIn for a body streamed to the app as it
    arrives (a large or chunked one, up to limit), None for one read whole first."""
    def on_head(req):
        length = req.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) <= STREAM_ABOVE:
            return None
        body_in = BodyIn(limit)
        req.body_stream = body_in
        return body_in
    return on_head


def app_response(status: int, headers, body) -> Response:
    """A WSGI or ASGI app's response as the writer takes it: its headers as they are (the
    writer checks each), no Content-Type of the server's."""
    response = Response.__new__(Response)
    response.status = status
    response.headers = headers if type(headers) is list else list(headers)
    response.body = body
    response.content_type = None
    return response
