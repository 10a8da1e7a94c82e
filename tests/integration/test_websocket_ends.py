"""Every way a WebSocket ends gives its place back: --ws-max-connections' count (`open`), the
registry's `waiting` set and the handler's task, in each of 2 workers (native, behind the app's
layers, raw ASGI), and draining answers each waiting handshake once (503, or 101 then 1001).
The app is tests/apps/websockets_ends.py; its GET /counts reads the registry of the worker that
answers."""
from __future__ import annotations

import signal
import socket

import httpx
import pytest

from tests.support import wsframes as W
from tests.support.metrics import metric
from tests.support.servers import start_server
from tests.support.waiting import wait_until

APP = "tests.apps.websockets_ends:app"
LAYERED = "tests.apps.websockets_ends:layered"
ASGI = "tests.apps.websockets_ends:asgi_app"
MAX = 4     # --ws-max-connections: a place that leaks shows as a 503 within a few rounds


def request(path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()


def head(sock: socket.socket, timeout: float = 10.0) -> tuple[int, bytes]:
    """The response's status and what came behind its head."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data[:200]!r}")
        data += chunk
    raw, _, rest = data.partition(b"\r\n\r\n")
    return int(raw.split(b" ", 2)[1]), rest


def close_of(sock: socket.socket, rest: bytes) -> int:
    """The code of the server's Close (answered, so the close handshake completes)."""
    frames = W.ServerFrames(sock, rest, timeout=10)
    while True:
        f = frames.next()
        if f.opcode == W.OP_CLOSE:
            sock.sendall(W.close(f.close_code))
            return f.close_code or 1005


def end_one(port: int, how: str) -> str:
    """One WebSocket, ended `how`: -> what the client saw ("403", "101 1011", ...)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if how == "leave-before-answer":            # the handler never answers; we go
            sock.sendall(request("/silent"))
            return "left"
        path = {"leave-after-accept": "/echo", "close-from-client": "/echo"}.get(how, how)
        sock.sendall(request(path))
        status, rest = head(sock)
        if status != 101:
            return str(status)
        if how == "leave-after-accept":
            sock.sendall(W.frame(W.OP_TEXT, b"x"))
            assert W.ServerFrames(sock, rest).message()[1] == b"x"
            return "101 left"
        if how == "close-from-client":
            sock.sendall(W.close(1000))
        return f"101 {close_of(sock, rest)}"
    finally:
        sock.close()


def worker_counts(server) -> dict[int, dict]:
    """/counts of each of the 2 workers (asked over fresh connections until both answered)."""
    found: dict[int, dict] = {}
    for _ in range(200):
        c = httpx.get(server.url + "/counts", headers={"Connection": "close"}).json()
        found[c["pid"]] = c
        if len(found) == 2:
            return found
    raise AssertionError(f"one worker answered 200 times: {found}")


def settled(server) -> bool:
    """Both workers have no WebSocket open, none waiting, no task left."""
    return all(c["open"] == 0 and c["waiting"] == 0 and c["tasks"] == 0
               for c in worker_counts(server).values())


NATIVE_WAYS = {"/accept-close": "101 1000", "/deny": "403", "/raise-before": "500",
               "/raise-after": "101 1011", "/silent": "504", "close-from-client": "101 1000",
               "leave-after-accept": "101 left", "leave-before-answer": "left"}
LAYERED_WAYS = {**NATIVE_WAYS, "/hook-deny": "401", "/mw-deny-after": "409"}
ASGI_WAYS = {"/close-before-accept": "403", "/accept-close": "101 1000",
             "/raise-before": "500", "/raise-after": "101 1011", "/return-unanswered": "500",
             "/silent": "504", "close-from-client": "101 1000",
             "leave-after-accept": "101 left", "leave-before-answer": "left"}


@pytest.mark.parametrize("app,ways,args", [
    (APP, NATIVE_WAYS, ()), (LAYERED, LAYERED_WAYS, ()),
    (ASGI, ASGI_WAYS, ("--interface", "asgi"))], ids=["native", "layered", "asgi"])
def test_every_way_a_websocket_ends_gives_its_place_back(tmp_path, app, ways, args):
    s = start_server(tmp_path, "--workers", "2", "--ws-max-connections", str(MAX),
                     "--ws-handshake-timeout", "0.3", *args, app=app)
    try:
        for _ in range(3):          # 3 rounds of each way, more than MAX per worker
            for how, expected in ways.items():
                assert end_one(s.port, how) == expected, how
        wait_until(lambda: settled(s), what="nothing open, waiting or running", server=s)
        assert metric(s, "fastsock_websockets_open") == 0
        # and the places are there: MAX at once in each worker
        socks = []
        try:
            for _ in range(2 * MAX):
                sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
                socks.append(sock)
                sock.sendall(request("/echo"))
            statuses = [head(sock)[0] for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        assert statuses.count(101) >= MAX, statuses
        wait_until(lambda: settled(s), what="settled again", server=s)
    finally:
        s.stop()


@pytest.mark.parametrize("app,args", [(APP, ()), (LAYERED, ()), (ASGI, ("--interface", "asgi"))],
                         ids=["native", "layered", "asgi"])
def test_waiting_never_keeps_a_channel_over_thousands_of_handshakes(tmp_path, app, args):
    # 2,000 handshakes ending the ways that pass through `waiting` (answered, timed out, the
    # client gone): the set is empty after, in both workers
    s = start_server(tmp_path, "--workers", "2", "--ws-handshake-timeout", "0.2", *args,
                     app=app)
    ways = ["/accept-close", "/raise-before", "leave-before-answer", "/silent"]
    try:
        for i in range(2000):
            how = ways[i % len(ways)]
            if how == "/silent" and i % 40:     # (the 504s take the timeout: fewer of them)
                how = "leave-before-answer"
            end_one(s.port, how)
        wait_until(lambda: settled(s), what="nothing waiting", server=s)
    finally:
        s.stop()


# ------------------------------------------------------------------ draining


def wait_in_flight(s, n: int) -> None:
    # n handshakes in their handlers (the scrape counts itself too)
    wait_until(lambda: metric(s, "fastsock_requests_in_flight") == n + 1,
               what=f"{n} in flight", server=s)


def open_waiting(s, path: str, n: int, socks: list[socket.socket]) -> None:
    """n handshakes to path, their sockets added to socks (the caller closes them), once all
    n are in their handlers."""
    for _ in range(n):
        sock = s.connect(timeout=20)
        sock.sendall(request(path))
        socks.append(sock)
    wait_in_flight(s, n)


def answers_after_sigterm(s, socks: list[socket.socket]) -> list[str]:
    s.proc.send_signal(signal.SIGTERM)
    out = []
    for sock in socks:
        status, rest = head(sock, timeout=20)
        out.append(str(status) if status != 101 else f"101 {close_of(sock, rest)}")
    return out


@pytest.mark.parametrize("app,path", [
    (APP, "/silent"), (APP, "/stubborn"), (LAYERED, "/silent"), (LAYERED, "/stubborn"),
    (LAYERED, "/mw-slow?s=1"), (LAYERED, "/mw-slow?s=0"), (LAYERED, "/mw-stubborn"),
], ids=["native", "native-stubborn", "layered", "layered-stubborn", "in-the-middleware",
        "layered-waiting", "middleware-hands-on-after-the-drain"])
def test_draining_answers_each_waiting_handshake_once_and_exits_0(tmp_path, app, path):
    # long timeouts: an answer that waits for one of them is a failure (the wait is bounded
    # by head()'s 20 s)
    s = start_server(tmp_path, "--workers", "1", "--ws-handshake-timeout", "60",
                     "--graceful-timeout", "60", app=app)
    socks = []
    try:
        open_waiting(s, path, 3, socks)
        assert answers_after_sigterm(s, socks) == ["503"] * 3
        assert s.proc.wait(20) == 0
    finally:
        for sock in socks:
            sock.close()
        s.stop()


def test_a_handshake_accepted_as_the_drain_begins_gets_101_then_1001(tmp_path):
    # the handlers accept in the tick the drain begins (released by GET /release sent with
    # the SIGTERM): each client gets 101 then 1001, or a 503, one answer, and the worker exits
    s = start_server(tmp_path, "--workers", "1", "--ws-handshake-timeout", "60",
                     "--graceful-timeout", "60", app=APP)
    socks = []
    try:
        open_waiting(s, "/accept-on-signal", 4, socks)
        releaser = s.connect(timeout=20)
        releaser.sendall(b"GET /release HTTP/1.1\r\nHost: t\r\n\r\n")
        answers = answers_after_sigterm(s, socks)
        releaser.close()
        assert set(answers) <= {"503", "101 1001"}, answers
        assert s.proc.wait(20) == 0
    finally:
        for sock in socks:
            sock.close()
        s.stop()


def test_sigterm_twice_while_handshakes_wait(tmp_path):
    s = start_server(tmp_path, "--workers", "2", "--ws-handshake-timeout", "60",
                     "--graceful-timeout", "60", app=APP)
    socks = []
    try:
        open_waiting(s, "/stubborn", 4, socks)
        s.proc.send_signal(signal.SIGTERM)
        assert answers_after_sigterm(s, socks) == ["503"] * 4
        assert s.proc.wait(20) == 0
    finally:
        for sock in socks:
            sock.close()
        s.stop()


def test_draining_with_a_shutdown_delay_answers_waiting_handshakes_after_readiness(tmp_path):
    s = start_server(tmp_path, "--workers", "2", "--ws-handshake-timeout", "60",
                     "--graceful-timeout", "60", "--shutdown-delay", "0.5", app=APP)
    socks = []
    try:
        open_waiting(s, "/silent", 4, socks)
        assert answers_after_sigterm(s, socks) == ["503"] * 4
        assert s.proc.wait(20) == 0
    finally:
        for sock in socks:
            sock.close()
        s.stop()


def test_a_handshake_pipelined_behind_a_request_during_the_drain(tmp_path):
    # GET /counts and the upgrade in one write: the GET is answered, the upgrade waits in its
    # handler, then gets the drain's 503; nothing waits for the timeouts
    s = start_server(tmp_path, "--workers", "1", "--ws-handshake-timeout", "60",
                     "--graceful-timeout", "60", app=APP)
    sock = s.connect(timeout=20)
    try:
        sock.sendall(b"GET /counts HTTP/1.1\r\nHost: t\r\n\r\n" + request("/silent"))
        status, rest = head(sock)
        assert status == 200
        wait_in_flight(s, 1)
        s.proc.send_signal(signal.SIGTERM)
        data = rest
        sock.settimeout(20)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        assert b"HTTP/1.1 503 " in data, data[-300:]
        assert s.proc.wait(20) == 0
    finally:
        sock.close()
        s.stop()



def test_a_handshake_handed_on_after_the_drain_began_is_503_not_a_new_handler(tmp_path):
    # a middleware that swallows the drain's cancel and calls call_next all the same, while an
    # open WebSocket (its client slow to answer the 1001) keeps the worker up: the handler is
    # never started (it would hold the worker until --ws-handshake-timeout)
    s = start_server(tmp_path, "--workers", "1", "--ws-handshake-timeout", "60",
                     "--graceful-timeout", "60", "--ws-close-timeout", "2", app=LAYERED)
    socks = []
    try:
        for path in ("/echo", "/mw-stubborn"):
            sock = s.connect(timeout=20)
            sock.sendall(request(path))
            socks.append(sock)
        assert head(socks[0])[0] == 101
        wait_in_flight(s, 1)
        s.proc.send_signal(signal.SIGTERM)
        assert head(socks[1], timeout=20)[0] == 503
        assert s.proc.wait(20) == 0             # the 1001's close timeout, not the handshake's
    finally:
        for sock in socks:
            sock.close()
        s.stop()


def test_a_handshake_on_a_kept_alive_connection_after_the_drain_began(tmp_path):
    # the connection answered a request just before (so the drain spares it a moment): its
    # upgrade gets one clear answer (503 once the worker drains; 101 then 1001 if it came
    # first), and the worker exits long before the timeouts
    s = start_server(tmp_path, "--workers", "1", "--ws-handshake-timeout", "60",
                     "--graceful-timeout", "60", app=APP)
    sock = s.connect(timeout=20)
    try:
        sock.sendall(b"GET /counts HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _ = head(sock)
        assert status == 200
        s.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "draining" in s.log(), what="the drain", server=s)
        sock.sendall(request("/echo"))
        status, rest = head(sock, timeout=20)
        answer = str(status) if status != 101 else f"101 {close_of(sock, rest)}"
        assert answer in ("503", "101 1001")
        assert s.proc.wait(20) == 0
    finally:
        sock.close()
        s.stop()
