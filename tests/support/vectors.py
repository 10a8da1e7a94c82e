"""Malformed and smuggling requests, each with the status it must get. Drawn from RFC 9112 and
the published request-smuggling bugs of gunicorn, h11, waitress, llhttp and uvicorn/httptools.
A request for /smuggled follows each one on the wire; it must never be answered."""

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

def post(headers: bytes, body: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST /echo " + version + b"\r\nHost: x\r\n" + headers + b"\r\n" + body


VECTORS = [
    # --- Content-Length and Transfer-Encoding together, and CL that two parsers read apart
    ("cl-and-te", post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 400),
    ("te-and-cl", post(b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", b"0\r\n\r\n"), 400),
    ("cl-duplicate-same", post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), 400),
    ("cl-duplicate-differ", post(b"Content-Length: 0\r\nContent-Length: 5\r\n", b"hello"), 400),
    ("cl-list", post(b"Content-Length: 5, 5\r\n", b"hello"), 400),
    ("cl-plus-sign", post(b"Content-Length: +5\r\n", b"hello"), 400),
    ("cl-negative", post(b"Content-Length: -1\r\n"), 400),
    ("cl-hex", post(b"Content-Length: 0x5\r\n", b"hello"), 400),
    ("cl-underscore", post(b"Content-Length: 1_0\r\n", b"helloworld"), 400),
    ("cl-overflow", post(b"Content-Length: 99999999999999999999999\r\n"), 400),
    ("cl-inner-space", post(b"Content-Length: 1 0\r\n", b"helloworld"), 400),
    ("cl-empty", post(b"Content-Length: \r\n"), 400),
    ("cl-form-feed", post(b"Content-Length: \x0c5\r\n", b"hello"), 400),
    ("cl-decimal-point", post(b"Content-Length: 5.0\r\n", b"hello"), 400),
    # --- Transfer-Encoding that is not exactly one final "chunked"
    ("te-chunked-twice", post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), 400),
    ("te-gzip-chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 501),
    ("te-identity", post(b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n"), 501),
    ("te-chunked-not-final", post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"), 400),
    ("te-xchunked", post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), 501),
    ("te-vertical-tab", post(b"Transfer-Encoding: chunked\x0b\r\n", b"0\r\n\r\n"), 400),
    ("te-space-before-colon", post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), 400),
    ("te-obs-fold", post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), 400),
    ("te-two-fields", post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", b"0\r\n\r\n"), 400),
    ("te-http10", post(b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", b"HTTP/1.0"), 400),
    ("te-quoted", post(b'Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n"), 400),
    ("te-leading-comma", post(b"Transfer-Encoding: ,chunked\r\n", b"0\r\n\r\n"), 400),
    # --- line endings and field syntax
    ("bare-lf-field", b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400),
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
    ("bare-lf-end-of-head", b"GET / HTTP/1.1\r\nHost: x\r\n\n", 400),
    ("bare-cr-value", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400),
    ("nul-in-value", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    ("del-in-name", b"GET / HTTP/1.1\r\nHost: x\r\nX\x7f: y\r\n\r\n", 400),
    ("space-in-name", b"GET / HTTP/1.1\r\nHost: x\r\nFoo Bar: y\r\n\r\n", 400),
    ("empty-name", b"GET / HTTP/1.1\r\nHost: x\r\n: y\r\n\r\n", 400),
    ("obs-fold-first", b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n", 400),
    ("no-colon", b"GET / HTTP/1.1\r\nHost: x\r\nJustaname\r\n\r\n", 400),
    # --- Host
    ("host-missing", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("host-duplicate", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("host-with-slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("host-with-at", b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400),
    # --- request line
    ("version-2", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("version-1.2", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    ("version-lowercase", b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    ("version-missing", b"GET /\r\nHost: x\r\n\r\n", 400),
    ("double-space", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("space-in-target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("ctl-in-target", b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("bad-method-char", b"G(ET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("relative-target", b"GET index.html HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("asterisk-not-options", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("tab-separator", b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    # --- chunked framing
    ("chunk-size-0x", post(b"Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-negative", post(b"Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-leading-space", post(b"Transfer-Encoding: chunked\r\n", b" 5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-overflow", post(b"Transfer-Encoding: chunked\r\n", b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-bare-lf", post(b"Transfer-Encoding: chunked\r\n", b"5\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-empty", post(b"Transfer-Encoding: chunked\r\n", b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-data-overrun", post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhelloXX\r\n0\r\n\r\n"), 400),
    ("chunk-terminator-bare-lf", post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\n0\r\n\r\n"), 400),
    ("chunk-ext-nul", post(b"Transfer-Encoding: chunked\r\n", b"5;a\x00=b\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-bare-cr", post(b"Transfer-Encoding: chunked\r\n", b"5;a=\rb\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-no-semicolon", post(b"Transfer-Encoding: chunked\r\n", b"5 a\r\nhello\r\n0\r\n\r\n"), 400),
    ("last-chunk-no-crlf", post(b"Transfer-Encoding: chunked\r\n", b"0\r\n"), 400),
    ("trailer-bare-lf", post(b"Transfer-Encoding: chunked\r\n", b"0\r\nX: y\n\r\n"), 400),
    ("trailer-obs-fold", post(b"Transfer-Encoding: chunked\r\n", b"0\r\nX: y\r\n z\r\n\r\n"), 400),
    # --- expectations
    ("expect-unknown", post(b"Expect: 200-ok\r\nContent-Length: 5\r\n", b"hello"), 417),
]
