"""Issue 19's scenarios on the connection and the loop, over real sockets: handlers that fork,
streams that go quiet or yield empty chunks, drip-fed bodies, requests answered before their
body, half-closes behind a large response. Each runs with one worker and with several."""
from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest

from tests.support.sockets import Reader, read_until_close
from tests.support.waiting import wait_for_text

APP = "tests.apps.hardening:app"
WORKERS = pytest.mark.parametrize("workers", ["1", "2"])


def start(serve, tmp_path, workers, *args, app=APP):
    return serve("--workers", workers, *args, app=app,
                 env={"FASTSOCK_TEST_DIR": str(tmp_path)})


def pids_of(server, n=20) -> set[int]:
    got = set()
    for _ in range(n):
        with server.connect() as s:
            s.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            got.add(int(read_until_close(s).split(b"\r\n\r\n", 1)[1]))
    return got


# ------------------------------------------------------------------ a handler that forks

@WORKERS
@pytest.mark.parametrize("how", ["os", "mp"])
def test_a_handler_that_forks_costs_nothing_and_its_child_holds_no_client(serve, tmp_path,
                                                                         workers, how):
    """The child of a fork keeps copies of the worker's sockets: the worker must still take
    each connection out of epoll (a stale registration points at a freed connection), and the
    child must close them, so the client sees the end of its response."""
    server = start(serve, tmp_path, workers)
    children = []
    try:
        for i in range(6):
            name = f"child-{i}"
            with server.connect() as s:
                s.sendall(f"GET /fork?how={how}&name={name} HTTP/1.1\r\nHost: t\r\n"
                          "Connection: close\r\n\r\n".encode())
                data = read_until_close(s, timeout=5)
                children.append(int(wait_for_text(tmp_path / name, timeout=5)))
                # the end came while the child still lives: it held no copy of this socket
                assert os.path.exists(f"/proc/{children[-1]}")
            assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"forked"), data
            # a keep-alive client of the same worker, then its hang-up: an event on a socket
            # the worker closed while a child held it
            with server.connect() as s:
                r = Reader(s)
                s.sendall(f"GET /fork?how={how}&name=k{name} HTTP/1.1\r\nHost: t\r\n\r\n"
                          .encode())
                assert r.response()[2] == b"forked"
                children.append(int(wait_for_text(tmp_path / f"k{name}", timeout=5)))
        assert server.proc.poll() is None
        assert "SIGSEGV" not in server.log() and "died" not in server.log(), server.log()
        assert len(pids_of(server)) >= 1
        with server.connect() as s:
            s.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_until_close(s).startswith(b"HTTP/1.1 200 ")
        assert "exited" not in server.log() and "signal" not in server.log().lower(), \
            server.log()
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ------------------------------------------------------------------ streams

@WORKERS
def test_a_stream_quiet_longer_than_the_keepalive_timeout_is_not_cut(serve, tmp_path, workers):
    server = start(serve, tmp_path, workers, "--keepalive-timeout", "1")
    with server.connect(timeout=10) as s:
        s.sendall(b"GET /quiet?s=2.5 HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = Reader(s, timeout=10).response()
    assert status == 200 and body == b"first\nlast\n"


@WORKERS
def test_a_client_leaving_a_quiet_stream_is_noticed_at_once(serve, tmp_path, workers):
    """No timer runs while a stream has nothing to send: its client's leaving must end it."""
    server = start(serve, tmp_path, workers)
    with server.connect() as s:
        s.sendall(b"GET /quiet?s=60&name=left HTTP/1.1\r\nHost: t\r\n\r\n")
        s.settimeout(5)
        got = b""
        while b"first" not in got:
            data = s.recv(65536)
            assert data, got
            got += data
    assert wait_for_text(tmp_path / "left", timeout=5) == "ended"


@WORKERS
def test_empty_chunks_do_not_stall_a_stream(serve, tmp_path, workers):
    server = start(serve, tmp_path, workers)
    with server.connect() as s:
        s.sendall(b"GET /empty-chunks HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(s, timeout=5)
        assert r.response()[2] == b"abc"
        assert r.response()[0] == 200


# ------------------------------------------------------------------ drip-fed bodies

def _drip(s: socket.socket, first: bytes, every: float, limit: float) -> bytes:
    """Send first, then a byte of a chunked body every `every` s until the server answers or
    closes (or `limit` s pass): -> what it sent back."""
    s.sendall(first)
    s.settimeout(every)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            s.sendall(b"1\r\nx\r\n")
        except OSError:
            break
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return b""
        return data + read_until_close(s, timeout=2)
    return b"(still open)"


@WORKERS
def test_a_drip_fed_streamed_body_is_cut_by_the_minimum_rate(serve, tmp_path, workers):
    """A byte every 0.3 s renews no timer: past the grace period (--body-timeout) a body
    arriving below --min-body-rate is cut, and the handler is told."""
    server = start(serve, tmp_path, workers, "--body-timeout", "1")
    with server.connect() as a, server.connect() as b:
        head = (b"POST /drip?name=%s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        a.sendall(head % b"a")
        got = _drip(b, head % b"b", 0.3, limit=15)
        assert got != b"(still open)"
        assert wait_for_text(tmp_path / "b", timeout=5).startswith("cut after")
        assert wait_for_text(tmp_path / "a", timeout=5).startswith("cut after")
    assert "request timeout" in server.log()


@WORKERS
def test_a_drip_fed_body_to_a_wsgi_app_frees_its_thread(serve, tmp_path, workers):
    """Two drip-fed uploads with --threads 2: both cut by the minimum rate, their threads
    free again for the next request."""
    server = start(serve, tmp_path, workers, "--body-timeout", "1", "--threads", "2",
                   "--thread-backlog", "0", app="tests.apps.hardening:wsgi_drip")
    head = b"POST /?name=%s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    with server.connect() as a, server.connect() as b:
        a.sendall(head % b"a")
        assert _drip(b, head % b"b", 0.3, limit=15) != b"(still open)"
        assert wait_for_text(tmp_path / "a", timeout=5) == "cut"
        assert wait_for_text(tmp_path / "b", timeout=5) == "cut"
    deadline = time.monotonic() + 5         # the note comes just before the job's end
    while True:
        with server.connect() as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
            status, _, body = Reader(s).response()
        if status != 503 or time.monotonic() > deadline:
            break
    assert status == 200 and body == b"3"


@WORKERS
def test_a_drip_fed_whole_body_gets_408(serve, tmp_path, workers):
    server = start(serve, tmp_path, workers, "--body-timeout", "1", app="tests.apps.native:app")
    with server.connect() as s:
        got = _drip(s, b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
                    0.3, limit=15)
    assert got.startswith(b"HTTP/1.1 408 "), got


@WORKERS
def test_a_body_at_a_fair_rate_may_take_longer_than_the_grace_period(serve, tmp_path, workers):
    server = start(serve, tmp_path, workers, "--body-timeout", "1")
    chunk = b"y" * 2000
    with server.connect(timeout=10) as s:
        s.sendall(b"POST /drip HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        end = time.monotonic() + 2.5           # the upload lasts past the grace period
        sent = 0
        while time.monotonic() < end:
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            time.sleep(0.1)                    # pacing the upload: 20 KB/s
        s.sendall(b"0\r\n\r\n")
        status, _, body = Reader(s, timeout=10).response()
    assert status == 200 and json.loads(body)["bytes"] == sent


# ------------------------------------------------------------------ answered before the body

@WORKERS
@pytest.mark.parametrize("expect", [b"", b"Expect: 100-continue\r\n"])
def test_a_reserved_route_answered_before_a_streamed_body_is_dispatched_once(serve, tmp_path,
                                                                             workers, expect):
    """A WSGI app's bodies stream in; the server's own routes answer at once, unread."""
    server = start(serve, tmp_path, workers, "--threads", "2", app="tests.apps.wsgi:app")
    with server.connect() as s:
        s.sendall(b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                  + expect + b"\r\n3\r\nabc\r\n0\r\n\r\n")
        data = read_until_close(s)
    finals = [r for r in data.split(b"HTTP/1.1 ")[1:] if not r.startswith(b"100 ")]
    assert len(finals) == 1 and finals[0].startswith(b"405 "), data
    assert not data.endswith(b"100 Continue\r\n\r\n"), data


# ------------------------------------------------------------------ half-close

class SlowReader(Reader):
    """A client on a slow link: at most 32 KiB a millisecond (~32 MB/s), so the server's
    output is still queued when it reads the client's FIN."""

    def _more(self) -> None:
        time.sleep(0.001)           # pacing the client, not waiting for a condition
        data = self.sock.recv(32768)
        if not data:
            raise ConnectionError(f"closed with {self.buf[:200]!r} unread")
        self.buf += data


@WORKERS
@pytest.mark.parametrize("kib", [512, 4096, 8192])
def test_every_request_read_before_a_half_close_is_answered(serve, tmp_path, workers, kib):
    server = start(serve, tmp_path, workers)
    s = socket.create_connection(("127.0.0.1", server.port))
    try:
        s.sendall(b"GET /kb/%d HTTP/1.1\r\nHost: t\r\n\r\nGET /pid HTTP/1.1\r\nHost: t\r\n\r\n"
                  % kib)
        s.shutdown(socket.SHUT_WR)
        r = SlowReader(s, timeout=10)
        status, _, body = r.response()
        assert status == 200 and len(body) == kib << 10
        status, _, body = r.response()
        assert status == 200 and body.isdigit()
    finally:
        s.close()
