"""Write the seed corpus: one request per file, valid ones and refused ones, in the style of
gunicorn's tests/requests/. Run once when tests/support/vectors.py grows; the files are kept in git.

    python fuzz/make_corpus.py

valid/NAME.http     a request the parser must accept, whole or split anywhere
invalid/STATUS-NAME.http   one it must refuse with STATUS (from tests/support/vectors.py), followed
                           by a request for /smuggled that must never be parsed

Beside each X.http, X.json is its expected parse (valid: the request's fields; invalid: status
and reason), as tests/unit/test_corpus.py checks it. This script never writes them: they are the
reviewed truth, written or checked by hand against the bytes (not taken from the parser, which
would make the test assert the parser against itself). For a new X.http, write X.json in the
shape of its neighbours; the script lists the .http files that have none.
"""
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.support.vectors import SMUGGLED, VECTORS  # noqa: E402

VALID = {
    "get-simple": b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "get-query": b"GET /a/b?x=1&x=2&y=&z=%20 HTTP/1.1\r\nHost: h\r\n\r\n",
    "get-http10": b"GET /old HTTP/1.0\r\n\r\n",
    "get-http10-keepalive": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "get-close": b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    "get-many-headers": b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(
        b"X-H%d: value %d\r\n" % (i, i) for i in range(20)) + b"\r\n",
    "get-tab-and-spaces-in-values": b"GET / HTTP/1.1\r\nHost: h\r\nX-A: \t a b \t\r\n\r\n",
    "get-absolute-form": b"GET http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "options-asterisk": b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    "head": b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n",
    "post-content-length": b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    "post-empty": b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    "post-chunked": b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "post-chunked-ext-trailer": b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked"
                                b"\r\n\r\n5;name=value\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
    "post-chunked-upper-hex": b"POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"A\r\n0123456789\r\n0\r\n\r\n",
    "post-expect-continue": b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                            b"Content-Length: 3\r\n\r\nabc",
    "put-json": b"PUT /items/1 HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                b"Content-Length: 9\r\n\r\n{\"a\": 1}\n",
    "delete": b"DELETE /items/1 HTTP/1.1\r\nHost: h\r\n\r\n",
    "patch-utf8-path": b"PATCH /caf%C3%A9 HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
    "custom-method": b"PURGE /cache HTTP/1.1\r\nHost: h\r\n\r\n",
    "obs-text-value": b"GET / HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\n\r\n",
}


def main() -> None:
    for kind in ("valid", "invalid"):
        (HERE / "corpus" / "requests" / kind).mkdir(parents=True, exist_ok=True)
    for name, data in VALID.items():
        (HERE / "corpus" / "requests" / "valid" / f"{name}.http").write_bytes(data)
    for name, data, status in VECTORS:
        safe = re.sub(r"[^a-z0-9-]+", "-", name.lower())
        (HERE / "corpus" / "requests" / "invalid" / f"{status}-{safe}.http").write_bytes(
            data + SMUGGLED)
    proxy = HERE / "corpus" / "proxy"
    proxy.mkdir(parents=True, exist_ok=True)
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    seeds = {
        "v1-tcp4": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n",
        "v1-tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
        "v1-unknown": b"PROXY UNKNOWN\r\n",
        "v2-tcp4": sig + b"\x21\x11\x00\x0c" + bytes([192, 0, 2, 1, 198, 51, 100, 2])
                   + (56324).to_bytes(2, "big") + (443).to_bytes(2, "big"),
        "v2-local": sig + b"\x20\x00\x00\x00",
        "v2-tcp6-tlv": sig + b"\x21\x21\x00\x2a" + bytes(range(16)) + bytes(range(16, 32))
                       + b"\x01\xbb\x01\xbb" + b"\x04\x00\x03abc",
    }
    for name, data in seeds.items():
        (proxy / f"{name}.bin").write_bytes(data)
    websocket_seeds(HERE / "corpus" / "websocket")
    for http in sorted((HERE / "corpus" / "requests").glob("*/*.http")):
        if not http.with_suffix(".json").exists():
            print(f"{http.relative_to(HERE)}: no .json beside it: write its expected parse")


def websocket_seeds(where: Path) -> None:
    """A client's frame streams for the websocket target: its options byte (bit 0:
    permessage-deflate agreed; bits 1-3: the message limit, 64 << n bytes; bit 4: frames half
    that), the byte that picks the split, then masked frames (a fixed mask: reproducible)."""
    import zlib

    from tests.support.wsframes import OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, close, frame

    mask = b"\x37\xfa\x21\x3d"

    def deflated(data: bytes) -> bytes:
        c = zlib.compressobj(wbits=-12)
        return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]

    where.mkdir(parents=True, exist_ok=True)
    seeds = {
        "text": (0x0E, frame(OP_TEXT, "héllo €".encode(), mask=mask)),
        "binary-126": (0x0E, frame(OP_BINARY, bytes(200), mask=mask)),
        "fragments-ping-between": (0x0E, frame(OP_TEXT, b"frag", fin=False, mask=mask)
                                   + frame(OP_PING, b"p", mask=mask)
                                   + frame(0, b"ment", mask=mask)),
        "close-1000": (0x0E, close(1000, b"bye", mask=mask)),
        "utf8-invalid": (0x0E, frame(OP_TEXT, b"\xed\xa0\x80", mask=mask)),
        "over-limit": (0x00, frame(OP_BINARY, bytes(100), mask=mask)),
        "deflated": (0x0F, frame(OP_TEXT, deflated(b"abc" * 40), rsv=4, mask=mask)
                     + frame(OP_CLOSE, b"", mask=mask)),
        "deflate-bomb": (0x01, frame(OP_BINARY, deflated(bytes(1 << 16)), rsv=4, mask=mask)),
    }
    for name, (options, stream) in seeds.items():
        (where / f"{name}.bin").write_bytes(bytes([options, 7]) + stream)


if __name__ == "__main__":
    main()
