"""The compiled loop in this process, without a server: a Loop over a Unix listener in the
abstract namespace (no TCP port, no file, no root), its client a socket of this test. Loop.listen
accepts connections, so its peer is a listener, not one end of a socketpair."""
import os
import re
import socket
import threading

from fastsock._loop import Loop
from fastsock._shared import CLOSE_REASONS, SharedState
from fastsock.config import Config
from tests.support.sockets import Reader


def listener() -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"\0fastsock-unit-{os.getpid()}-{threading.get_ident()}-{id(sock)}"
    sock.bind(name)
    sock.listen(8)
    return sock, name


def start(loop: Loop) -> tuple[threading.Thread, list]:
    errors = []

    def run():
        try:
            loop.run()
        except BaseException as e:      # noqa: BLE001 - reported by the test
            errors.append(e)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_the_loop_answers_pipelined_requests_and_drain_ends_run():
    shared = SharedState(1)
    loop = Loop(Config().limits(), shared, 0)
    seen = []

    def dispatch(req):
        seen.append(req.path)
        if req.path == "/last":
            loop.drain()                # safe from dispatch: this answer goes with a close
        return f"you asked for {req.path}"

    sock, name = listener()
    loop.listen(sock, dispatch)
    thread, errors = start(loop)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect(name)
        c.sendall(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n")
        reader = Reader(c, timeout=10)
        assert reader.response()[2] == b"you asked for /a"
        assert reader.response()[2] == b"you asked for /b"
        c.sendall(b"GET /last HTTP/1.1\r\nHost: h\r\n\r\n")
        status, headers, body = reader.response()
        assert (status, headers["connection"], body) == (200, "close", b"you asked for /last")
        assert c.recv(1) == b""                         # and the loop closed it
    thread.join(10)                                     # a hang guard, not a time bound
    assert not thread.is_alive(), "run() did not return after drain() with nothing left"
    assert errors == []
    assert seen == ["/a", "/b", "/last"]
    snap = shared.snapshot()
    assert snap["accepted"] == 1 and sum(snap["requests"].values()) == 3
    assert snap["closed"][CLOSE_REASONS.index("server")] == 1, snap["closed"]
    assert snap["open"] == 0 and snap["in_flight"] == 0


def test_a_client_that_hangs_up_is_counted_and_the_loop_serves_the_next():
    shared = SharedState(1)
    loop = Loop(Config().limits(), shared, 0)

    def dispatch(req):
        if req.path == "/stop":
            loop.drain()
        return "ok"

    sock, name = listener()
    loop.listen(sock, dispatch)
    thread, errors = start(loop)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect(name)
        c.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        assert Reader(c, timeout=10).response()[2] == b"ok"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:    # the first is gone
        c.connect(name)
        c.sendall(b"GET /stop HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    assert re.match(rb"HTTP/1\.1 200 OK\r\n", data) and data.endswith(b"ok"), data
    thread.join(10)
    assert not thread.is_alive() and errors == []
    snap = shared.snapshot()
    assert snap["accepted"] == 2 and sum(snap["requests"].values()) == 2
    assert snap["closed"][CLOSE_REASONS.index("client")] == 1, snap["closed"]
