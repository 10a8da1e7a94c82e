"""Requests made the way the server makes them: raw bytes through the real parser (no Request is
built by hand), and the WebSocket opening handshake with any of its lines changed."""
from fastsock._message import Request
from fastsock._parser import RequestParser

# RFC 6455 §1.3's example key, and the accept value it must get
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def parse_request(raw: bytes) -> Request:
    """The one request in raw, as the parser yields it (an error if it yields none or more)."""
    (req,) = RequestParser().feed(raw)
    return req


def upgrade_request(*extra: tuple[str, str], method: str = "GET", version: str = "HTTP/1.1",
                    body: bytes = b"", **fields: str | None) -> Request:
    """A WebSocket opening handshake (RFC 6455 §4.1) through the parser. A keyword replaces the
    line of that name (underscores for dashes; None leaves it out); `extra` lines are added
    after them, repeats included."""
    lines = {"Host": "server.example.com", "Upgrade": "websocket", "Connection": "Upgrade",
             "Sec-WebSocket-Key": SAMPLE_KEY, "Sec-WebSocket-Version": "13"}
    for name, value in fields.items():
        lines[name.replace("_", "-")] = value
    head = f"{method} /chat {version}\r\n"
    head += "".join(f"{n}: {v}\r\n" for n, v in lines.items() if v is not None)
    head += "".join(f"{n}: {v}\r\n" for n, v in extra)
    return parse_request(head.encode("latin-1") + b"\r\n" + body)
