"""Hostile review of the declared-length, stream and body-deadline paths: each test is an
attack that once succeeded (see the commit that adds it for the root cause)."""
from __future__ import annotations

import pytest

from tests.conftest import Reader

APP = "tests.apps_attacks:app"


@pytest.fixture(params=[1, 2])
def server(request, serve, tmp_path):
    return serve("--workers", str(request.param), app=APP,
                 env={"FASTSOCK_TEST_DIR": str(tmp_path)})


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
