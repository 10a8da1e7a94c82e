"""Hostile review (2): polling streams, a FIN while streaming, results completed after their
request was dropped. Each test is an attack; see the commit that adds it."""
from __future__ import annotations

import socket
import time

import pytest

from tests.support.sockets import Reader, read_until_close
from tests.support.waiting import wait_for_text

APP = "tests.apps.attacks2:app"


def start(serve, tmp_path, workers, *args):
    return serve("--workers", str(workers), *args, app=APP,
                 env={"FASTSOCK_TEST_DIR": str(tmp_path)})


def head_out(reader):
    while b"\r\n\r\n" not in reader.buf:
        reader._more()


@pytest.mark.parametrize("workers", [1, 2])
def test_polling_streams_leave_others_served_and_are_closed_when_their_clients_go(
        serve, tmp_path, workers):
    server = start(serve, tmp_path, workers)
    polls = [server.connect(timeout=10) for _ in range(8)]
    for i, s in enumerate(polls):
        s.sendall(f"GET /poll?f=never&name=p{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        head_out(Reader(s, timeout=10))
    for _ in range(20):
        with server.connect(timeout=5) as s:
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(s, timeout=5).response()[2] == b"hello"
    for s in polls:
        s.close()
    for i in range(len(polls)):
        assert wait_for_text(tmp_path / f"p{i}", timeout=5) == "closed"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_polling_stream_while_the_loop_runs_inside_asyncio(serve, tmp_path, workers):
    """A polling stream, an async handler waiting meanwhile (asyncio runs the loop), then the
    handler ends (asyncio stops) while the stream still polls: both see their flags."""
    server = start(serve, tmp_path, workers)
    with server.connect(timeout=10) as a, server.connect(timeout=10) as b:
        b.sendall(b"GET /await?f=b HTTP/1.1\r\nHost: t\r\n\r\n")
        a.sendall(b"GET /poll?f=a&name=pa HTTP/1.1\r\nHost: t\r\n\r\n")
        ra = Reader(a, timeout=10)
        head_out(ra)
        with server.connect() as s:
            s.sendall(b"GET /set?f=b HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(s).response()[0] == 200
        assert Reader(b, timeout=10).response()[2] == b"awaited\n"
        for _ in range(10):             # asyncio has stopped: others still served
            with server.connect(timeout=5) as s:
                s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                assert Reader(s, timeout=5).response()[2] == b"hello"
        with server.connect() as s:
            s.sendall(b"GET /set?f=a HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(s).response()[0] == 200
        assert ra.response()[2] == b"seen\n"
    assert wait_for_text(tmp_path / "pa") == "closed"


@pytest.mark.parametrize("workers", [1, 2])
def test_an_owning_async_body_is_aclosed_when_its_client_half_closes_with_the_request(
        serve, tmp_path, workers):
    """Request and FIN in one packet, the response an async iterator with aclose(): the
    connection closes at once (the FIN ends a stream): its producer must still be told."""
    server = start(serve, tmp_path, workers)
    for i in range(5):
        with server.connect() as s:
            s.sendall(f"GET /abody?name=a{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            s.shutdown(socket.SHUT_WR)
            read_until_close(s)
        assert wait_for_text(tmp_path / f"a{i}", timeout=3) == "aclosed"


@pytest.mark.parametrize("workers", [1, 2])
def test_an_owning_async_body_returned_after_a_504_is_aclosed(serve, tmp_path, workers):
    """Deferred.complete closes the body of a result that comes after its 504 (close_stream),
    but an async iterator has aclose(), not close(): the producer is never told."""
    server = start(serve, tmp_path, workers, "--threads", "2")
    with server.connect() as s:
        s.sendall(b"GET /abody-late?name=late HTTP/1.1\r\nHost: t\r\n\r\n")
        assert Reader(s).response()[0] == 504
        assert wait_for_text(tmp_path / "late", timeout=3) == "aclosed"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_started_generator_returned_after_a_504_is_closed(serve, tmp_path, workers):
    server = start(serve, tmp_path, workers, "--threads", "2")
    with server.connect() as s:
        s.sendall(b"GET /gen-late?name=glate HTTP/1.1\r\nHost: t\r\n\r\n")
        assert Reader(s).response()[0] == 504
        assert wait_for_text(tmp_path / "glate", timeout=3) == "closed"


@pytest.mark.parametrize("workers", [1, 2])
def test_http10_keep_alive_with_a_declared_length(serve, tmp_path, workers):
    server = start(serve, tmp_path, workers)
    with server.connect() as s:
        s.sendall(b"GET /cl?v=6&b=6&parts=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                  b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = Reader(s)
        status, h, body = r.response()
        assert (status, body, h.get("connection")) == (200, b"zzzzzz", "keep-alive")
        status, h, body = r.response()
        assert body == b"hello"
    with server.connect() as s:         # no declared length: delimited by the close
        s.sendall(b"GET /cl?b=6&parts=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                  b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        data = read_until_close(s)
        assert data.endswith(b"\r\n\r\nzzzzzz") and data.count(b"HTTP/1.") == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_http10_keep_alive_head_of_an_undeclared_stream_closes_as_its_head_says(
        serve, tmp_path, workers):
    """HEAD of a stream with no declared length, HTTP/1.0 keep-alive: the head says
    "Connection: close" (GET's body would end with the connection), so the server must close
    after it (RFC 9112 9.6), not keep the connection and answer the next request."""
    server = start(serve, tmp_path, workers)
    with server.connect() as s:
        s.sendall(b"HEAD /cl?b=6&parts=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = Reader(s, timeout=3)
        status, h, _ = r.response(head_only=True)
        assert (status, h.get("connection")) == (200, "close")
        assert r.buf == b"" and s.recv(100) == b""     # a socket.timeout here: the bug


@pytest.mark.parametrize("workers", [1, 2])
def test_pipelined_behind_a_declared_stream_and_head(serve, tmp_path, workers):
    server = start(serve, tmp_path, workers)
    with server.connect() as s:
        s.sendall(b"GET /cl?v=4&b=4&parts=2 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"HEAD /cl?v=4&b=4&parts=2 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"HEAD /cl?b=4&parts=2 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /cl?v=0&b=0&parts=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(s, timeout=3)
        assert r.response()[2] == b"zzzz"
        assert r.response(head_only=True)[0] == 200
        assert r.response(head_only=True)[0] == 200
        assert r.response()[2] == b""
        assert r.response()[2] == b"hello"


@pytest.mark.parametrize("workers", [1, 2])
def test_pipelined_behind_a_polling_length_framed_stream(serve, tmp_path, workers):
    """A stream framed by its Content-Length that polls (its end comes through the inbox,
    writing nothing): the request pipelined behind it is answered."""
    server = start(serve, tmp_path, workers)
    with server.connect(timeout=10) as a:
        a.sendall(b"GET /poll?f=c&cl=1&name=pc HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        ra = Reader(a, timeout=10)
        head_out(ra)
        with server.connect() as s:
            s.sendall(b"GET /set?f=c HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(s).response()[0] == 200
        assert ra.response()[2] == b"seen\n"
        assert ra.response()[2] == b"hello"
        assert wait_for_text(tmp_path / "pc") == "closed"


@pytest.mark.parametrize("workers", [1, 2])
def test_an_owning_async_body_is_aclosed_on_a_kept_connection_half_closed_with_the_request(
        serve, tmp_path, workers):
    """As above, on a connection that served a request first: the request and its FIN come in
    one read (_on_readable's hangup), the stream's pump task is cancelled before its first
    step, so its finally (aclose) never runs."""
    server = start(serve, tmp_path, workers)
    for i in range(5):
        with server.connect() as s:
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(s).response()[2] == b"hello"
            s.sendall(f"GET /abody?name=k{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            s.shutdown(socket.SHUT_WR)
            read_until_close(s)
        assert wait_for_text(tmp_path / f"k{i}", timeout=3) == "aclosed"
