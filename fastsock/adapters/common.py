"""What the WSGI and ASGI adapters share: which request bodies stream in, the app's response as
the writer takes it, and the error a gone client is to the app."""
from __future__ import annotations

from fastsock._handoff import BodyIn
from fastsock._message import Response
from fastsock._writer import UNKNOWN_LENGTH

STREAM_ABOVE = 65536        # a body with a larger Content-Length (or chunked) is streamed in


class ClientDisconnected(OSError):
    """What a WSGI or ASGI app gets for reading or sending after the client went away."""


# why a streamed body ended early (BodyIn's error) when the server refused it: 413 past the
# limit, 400 for broken framing. The server answered and logged it; the app's failure to read
# it is no failure of the app's.
REFUSALS = frozenset({"body too large", "refused"})


def stream_large_bodies(limit: int):
    """The on_head of a WSGI or ASGI app: req -> BodyIn for a body streamed to the app as it
    arrives (a large or chunked one, up to limit), None for one read whole first. A declared
    length past the limit is not streamed either: the server refuses it (413) before the app
    is called, so the app never sees a body it cannot have."""
    def on_head(req):
        length = req.headers.get("content-length")
        if length is not None and length.isdigit() and (
                int(length) <= STREAM_ABOVE or int(length) > limit):
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


def head_body(headers) -> object:
    """The body of an app's response to HEAD that came without one (the framework drops it):
    b"" when the app declared its Content-Length (sent as declared), else UNKNOWN_LENGTH (no
    framing: not "Content-Length: 0" for a GET that sends 57 bytes)."""
    for name, _ in headers:
        if len(name) == 14 and (name.lower() == "content-length" if type(name) is str
                                else name.lower() == b"content-length"):
            return b""
    return UNKNOWN_LENGTH


def split_authority(authority: str, scheme: str) -> tuple[str, str]:
    """host[:port] (an IPv6 host in brackets) -> (host, port), the scheme's port by default."""
    host, sep, port = authority.rpartition(":")
    if not sep or "]" in port or not port.isdigit():
        return authority, "443" if scheme == "https" else "80"
    return host, port
