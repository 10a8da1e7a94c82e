"""An app's Content-Length is a promise the server keeps (issue 19): a streamed body that
sends fewer bytes is cut so the client sees the truncation, one that sends more is cut at the
declared length, and either closes the connection, with a log line and a counter. The same for
a native App, a WSGI app and an ASGI app, with one worker and with two."""
from __future__ import annotations

import re

import pytest

from tests.support.sockets import Reader, read_until_close
from tests.support.waiting import wait_for_text

APPS = {"native": "tests.apps.lengths:app", "wsgi": "tests.apps.lengths:wsgi_app",
        "asgi": "tests.apps.lengths:asgi_app"}
MiB = 1 << 20


@pytest.fixture(params=["native-1", "wsgi-1", "asgi-1", "native-2", "wsgi-2", "asgi-2"])
def server(request, serve, tmp_path):
    kind, workers = request.param.split("-")
    s = serve("--workers", workers, "--threads", "4", app=APPS[kind],
              env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    s.tmp = tmp_path
    return s


def get(server, query: str, method="GET") -> bytes:
    with server.connect(timeout=10) as s:
        s.sendall(f"{method} /declared?{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        return read_until_close(s, timeout=10)


def closed_for_length(server) -> int:
    text = server.get("/metrics").text
    found = re.search(r'fastsock_connections_closed_total\{reason="response_length"\} (\S+)',
                      text)
    return int(float(found.group(1))) if found else 0


def test_a_body_that_keeps_its_length_is_sent_as_declared_and_the_connection_kept(server):
    with server.connect(timeout=10) as s:
        r = Reader(s, timeout=10)
        for size in (3 * MiB, 1000):
            s.sendall(f"GET /declared?say={size}&send={size} HTTP/1.1\r\nHost: t\r\n\r\n"
                      .encode())
            status, headers, body = r.response()
            assert status == 200 and headers["content-length"] == str(size), headers
            assert "transfer-encoding" not in headers and len(body) == size


def test_fewer_bytes_than_declared_are_cut_and_closed(server):
    before = closed_for_length(server)
    data = get(server, f"say={3 * MiB}&send={MiB}&name=short")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: %d" % (3 * MiB) in head
    assert b"Transfer-Encoding" not in head
    assert len(body) == MiB                    # then the end: the client sees it is short
    assert closed_for_length(server) == before + 1
    assert "fewer bytes than its Content-Length" in server.log()


def test_more_bytes_than_declared_are_cut_at_the_declared_length(server):
    before = closed_for_length(server)
    data = get(server, f"say={2 * MiB}&send={3 * MiB}&parts=6&name=long")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % (2 * MiB) in head and len(body) == 2 * MiB
    assert wait_for_text(server.tmp / "long", timeout=5) == "closed"    # the producer told
    assert closed_for_length(server) == before + 1
    assert "more bytes than its Content-Length" in server.log()


def test_head_of_a_streamed_body_carries_its_declared_length(server):
    with server.connect(timeout=10) as s:
        s.sendall(b"HEAD /declared?say=12345&send=12345 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /declared?say=3&send=3&parts=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(s, timeout=10)
        status, headers, _ = r.response(head_only=True)
        assert status == 200 and headers["content-length"] == "12345", headers
        assert "transfer-encoding" not in headers
        assert r.response()[2] == b"xxx"


@pytest.mark.parametrize("say,send", [(10, 5), (5, 10)])
def test_a_whole_body_of_another_length_than_declared_is_a_500(serve, tmp_path, say, send):
    server = serve(app=APPS["native"], env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    with server.connect() as s:
        s.sendall(f"GET /declared?say={say}&send={send}&parts=0 HTTP/1.1\r\nHost: t\r\n\r\n"
                  .encode())
        status, _, body = Reader(s).response()
    assert status == 500 and b"x" not in body, body
    assert "Content-Length" in server.log()
