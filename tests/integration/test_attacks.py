"""Hostile review of the declared-length, stream and body-deadline paths: each test is an
attack that once succeeded (see the commit that adds it for the root cause)."""
from __future__ import annotations

import pytest

from tests.support.sockets import Reader

APP = "tests.apps.attacks:app"


@pytest.fixture(params=[1, 2])
def server(request, serve, tmp_path):
    return serve("--workers", str(request.param), app=APP,
                 env={"FASTSOCK_TEST_DIR": str(tmp_path)})


@pytest.mark.parametrize("query", ["v=5&b=5&parts=1", "v=0&b=0&parts=1", "v=8&b=8&parts=4"])
def test_a_request_pipelined_after_a_length_framed_stream_is_answered(server, query):
    """A native stream framed by its declared Content-Length ends without writing anything (no
    chunked terminator): the request already buffered behind it must still be answered, not
    left until the header timeout."""
    with server.connect(timeout=5) as s:
        s.sendall(f"GET /cl?{query} HTTP/1.1\r\nHost: t\r\n\r\n"
                  "GET /cl?b=2 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        reader = Reader(s, timeout=3)
        status, headers, body = reader.response()
        assert status == 200 and len(body) == int(headers["content-length"])
        status, headers, body = reader.response()       # a socket.timeout here: the bug
        assert (status, body) == (200, b"zz")


def test_a_half_closed_client_gets_the_close_after_a_length_framed_stream(server):
    """The client sent its last request and shut its side: once the framed stream is sent the
    connection closes (as after any other response), not at the keep-alive timeout. (The
    stream is pulled on the loop: one waiting on the pool when the FIN comes is a client gone,
    as nginx and uvicorn take it, like a handler still working.)"""
    with server.connect(timeout=5) as s:
        s.sendall(b"GET /cl-inline?v=5&b=5&parts=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        s.shutdown(1)
        reader = Reader(s, timeout=3)
        status, _, body = reader.response()
        assert (status, body) == (200, b"zzzzz")
        assert s.recv(100) == b""                       # a socket.timeout here: the bug


def test_a_stream_polling_with_empty_chunks_does_not_pin_the_worker(serve, tmp_path):
    """WSGI's idiom for "nothing yet" (PEP 3333): an empty chunk. The stream below yields b""
    until another request sets a flag (at most `polls` times). Pulling empty chunks back to back
    on the loop's thread starves every other connection of the worker: /set is only served
    once the stream has given up, so the stream never sees the flag."""
    server = serve("--workers", "1", app=APP, env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    with server.connect(timeout=30) as a, server.connect(timeout=30) as b:
        a.sendall(b"GET /poll?polls=20000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        ra = Reader(a, timeout=30)
        while b"\r\n\r\n" not in ra.buf:                 # the head is out: the stream polls
            ra._more()
        b.sendall(b"GET /set HTTP/1.1\r\nHost: t\r\n\r\n")
        assert Reader(b, timeout=30).response()[0] == 200
        _, _, body = ra.response()
        assert body == b"seen\n"                        # b"gave-up\n": the worker was pinned
