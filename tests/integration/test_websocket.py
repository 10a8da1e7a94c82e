"""WebSockets over real sockets, native `@app.websocket` routes, with the `websockets` client
library as the peer (raw frames where a library would not misbehave): the handshake and its
refusals, messages both ways, compression, subprotocols, limits, back-pressure both ways, pings,
the close handshake, draining, metrics and the access log, several workers."""
import signal
import socket
import time
from contextlib import ExitStack

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.metrics import metric
from tests.support.servers import start_server
from tests.support.sockets import read_until_close
from tests.support.waiting import wait_for_log, wait_until

APP = "tests.apps.websockets_native:app"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("ws"), "--workers", "2", "--access-log", "text",
                     "--ws-max-message", "65536", app=APP)
    yield s
    s.stop()


def url(server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def handshake(server, path="/echo", extra=b"", version=b"13") -> tuple[int, bytes, socket.socket]:
    s = server.connect()
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\n"
              b"Sec-WebSocket-Version: " + version + b"\r\n" + extra + b"\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1]), head, s


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_echo_text_and_binary_of_every_length_class(server):
    with connect(url(server, "/echo"), compression=None, max_size=None) as ws:
        for n in (0, 1, 125, 126, 127, 65535, 65536):
            ws.send("é" * (n // 2) + "a" * (n % 2))
            assert ws.recv() == "é" * (n // 2) + "a" * (n % 2)
            ws.send(bytes(range(256)) * (n // 256) + b"z" * (n % 256))
            assert ws.recv() == bytes(range(256)) * (n // 256) + b"z" * (n % 256)


def test_the_handshake_answer_is_rfc_6455s(server):
    status, head, s = handshake(server)
    s.close()
    assert status == 101
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    assert b"\r\nUpgrade: websocket\r\n" in head and b"\r\nConnection: Upgrade\r\n" in head
    assert b"Content-Length" not in head and b"Transfer-Encoding" not in head


def test_compression_is_agreed_and_messages_round_trip(server):
    with connect(url(server, "/echo")) as ws:        # the client offers permessage-deflate
        assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
        for text in ("hello", "x" * 60000, "ünïcödé " * 500):
            ws.send(text)
            assert ws.recv() == text


def test_a_subprotocol_headers_the_request_and_origin(server):
    with connect(url(server, "/proto?room=1"), subprotocols=["chat.v1", "chat.v2"],
                 origin="https://app.example") as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.response.headers["X-Room"] == "lobby"
        assert ws.recv() == "chat.v2|room=1|https://app.example"
    with connect(url(server, "/proto")) as ws:
        assert ws.subprotocol is None
        assert ws.recv().startswith("None|")


def test_a_header_the_app_cannot_send_is_refused_to_it_not_sent(server):
    with connect(url(server, "/bad-header")) as ws:
        assert ws.response.headers["X-Checked"] == "refused-the-bad-one"
        assert "Injected" not in ws.response.headers
        assert ws.recv() == "ok"


def test_path_parameters_and_a_close_code_with_its_reason(server):
    with connect(url(server, "/item/lamp")) as ws:
        assert ws.recv() == "lamp"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
    assert closed.value.rcvd.code == 4000 and closed.value.rcvd.reason == "done"


def test_refusals_before_the_handshake(server):
    with pytest.raises(InvalidStatus) as denied:
        connect(url(server, "/deny"))
    assert denied.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as failed:
        connect(url(server, "/fail-before"))
    assert failed.value.response.status_code == 500
    wait_for_log(server, "RuntimeError: failed before accepting")
    r = httpx.get(server.url + "/echo")
    assert r.status_code == 426 and r.headers["upgrade"] == "websocket"
    status, head, s = handshake(server, version=b"8")
    s.close()
    assert status == 426 and b"\r\nSec-WebSocket-Version: 13\r\n" in head
    status, head, s = handshake(server, path="/nowhere")
    s.close()
    assert status == 404


@pytest.mark.parametrize("header", [b"Sec-WebSocket-Key: short\r\n"])
def test_a_bad_key_is_400(server, header):
    s = server.connect()
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              + header + b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 400 ")
    s.close()


def test_an_app_error_after_accepting_is_1011_and_the_worker_serves_on(server):
    with connect(url(server, "/fail-after")) as ws:
        ws.send("boom")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
    assert closed.value.rcvd.code == 1011
    wait_for_log(server, "RuntimeError: failed after accepting")
    with connect(url(server, "/echo")) as ws:
        ws.send("still here")
        assert ws.recv() == "still here"


def test_what_the_app_sends_is_checked(server):
    with connect(url(server, "/types")) as ws:
        assert ws.recv().startswith("TypeError: ")
        assert ws.recv() == b"ba" and ws.recv() == b"mv"


def test_a_message_over_the_limit_is_1009(server):
    with connect(url(server, "/echo"), compression=None) as ws:
        ws.send(b"x" * 65537)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
    assert closed.value.rcvd.code == 1009


def test_a_compression_bomb_is_1009_not_memory(server):
    with connect(url(server, "/echo")) as ws:       # 16 MiB of zeros deflates to ~16 KiB
        ws.send(b"\0" * (16 << 20))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
    assert closed.value.rcvd.code == 1009


def test_unmasked_client_frames_are_1002(server):
    status, _, s = handshake(server)
    assert status == 101
    s.sendall(b"\x81\x02hi")                # FIN text, no mask bit
    reply = s.recv(64)
    assert reply[:2] == b"\x88\x02" or reply[0] == 0x88
    assert int.from_bytes(reply[2:4], "big") == 1002
    s.close()


def test_frames_sent_with_the_handshake_are_read(server):
    """A client may send its first frames right behind the upgrade request."""
    s = server.connect()
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
              + masked(0x1, b"early") + masked(0x2, b"bird"))
    data = b""
    deadline = time.monotonic() + 5
    while data.count(b"early") + data.count(b"bird") < 2 and time.monotonic() < deadline:
        data += s.recv(4096)
    s.close()
    assert b"\x81\x05early" in data and b"\x82\x04bird" in data


def test_the_client_closes_and_gets_its_code_back(server):
    with connect(url(server, "/echo")) as ws:
        ws.close(code=4321, reason="leaving")
        assert ws.protocol.close_rcvd.code == 4321


def test_a_client_that_does_not_read_holds_the_apps_send(tmp_path):
    """The output is bounded: send() waits once it is full; nothing grows without bound."""
    s = start_server(tmp_path, "--workers", "1", "--output-high-water", "65536", app=APP)
    try:
        status, _, sock = handshake(s, path="/firehose")
        assert status == 101
        readings = []

        def stalled() -> bool:          # the app's sends stop while nothing is read
            readings.append(httpx.get(s.url + "/stats").json()["slow_sent"])
            return len(readings) > 5 and readings[-1] == readings[-5] > 0
        wait_until(stalled, what="the app held in send()")
        # kernel buffers (the server's send buffer grows to net.ipv4.tcp_wmem's max, 4 MiB)
        # + --output-high-water + one message: at most ~70 of 64 KiB, never the 10,000 sent
        assert readings[-1] < 100, readings
        sock.close()
    finally:
        s.stop()


def test_chat_broadcast_among_connections_of_one_worker(tmp_path):
    s = start_server(tmp_path, "--workers", "1", app=APP)
    try:
        with ExitStack() as stack:
            clients = [stack.enter_context(connect(url(s, "/chat"))) for _ in range(5)]
            clients[0].send("hi all")
            assert [c.recv(timeout=5) for c in clients] == ["hi all"] * 5
    finally:
        s.stop()


def test_many_websockets_over_two_workers_and_their_metrics(server):
    before_open = metric(server, "fastsock_websockets_opened_total")
    before_in = metric(server, 'fastsock_websocket_messages_total{direction="in"}')
    with ExitStack() as stack:
        clients = [stack.enter_context(connect(url(server, "/echo"), compression=None))
                   for _ in range(40)]
        for i, c in enumerate(clients):
            c.send(f"m{i}")
        assert [c.recv(timeout=5) for c in clients] == [f"m{i}" for i in range(40)]
        wait_until(lambda: metric(server, "fastsock_websockets_open") >= 40, what="40 open")
    wait_until(lambda: metric(server, "fastsock_websockets_open") == 0, what="all closed")
    assert metric(server, "fastsock_websockets_opened_total") - before_open >= 40
    assert metric(server, 'fastsock_websocket_messages_total{direction="in"}') - before_in >= 40
    assert metric(server, 'fastsock_websocket_closes_total{code="1000"}') >= 40


def test_the_access_log_has_a_line_at_close(tmp_path):
    s = start_server(tmp_path, "--access-log", "text", app=APP)
    try:
        with connect(url(s, "/proto")) as ws:
            ws.recv()
            for text in ("a", "b", "c"):
                ws.send(text)
                ws.recv()
        log = wait_for_log(s, "/proto", stream="stdout")
        line = next(line for line in log.splitlines() if "/proto" in line)
        # status 101, the bytes of its whole life, its duration; its messages and close code
        assert ' 101 ' in line and line.endswith(" ws_in=3 ws_out=4 ws_close=1000"), line
    finally:
        s.stop()


def test_draining_closes_websockets_with_1001(tmp_path):
    s = start_server(tmp_path, "--workers", "1", app=APP, env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    try:
        with connect(url(s, "/watch")) as ws:
            ws.send("ping?")
            assert ws.recv() == "ping?"
            s.proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1001
        assert s.proc.wait(15) == 0
        # the worker waited for its handler, which saw the close (and awaited after it)
        assert (tmp_path / "watch.txt").read_text() == "1001\n"
    finally:
        s.stop()


def test_draining_refuses_the_handshakes_still_waiting_with_503(tmp_path):
    # handlers that have not answered their handshake when the worker drains: the clients get
    # 503 + Retry-After at once (to reconnect elsewhere), not a wait to the graceful timeout
    s = start_server(tmp_path, "--workers", "2", "--ws-handshake-timeout", "120",
                     "--graceful-timeout", "120", app=APP)
    socks = []
    try:
        for _ in range(4):
            sock = s.connect(timeout=30)
            sock.sendall(b"GET /never HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY.encode()
                         + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
            socks.append(sock)
        # all four in their handlers (the scrape counts itself too)
        wait_until(lambda: metric(s, "fastsock_requests_in_flight") == 5)
        s.proc.send_signal(signal.SIGTERM)
        for sock in socks:
            answer = read_until_close(sock, 30)
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
            assert b"\r\nretry-after: 1\r\n" in answer.lower(), answer[:300]
        assert s.proc.wait(30) == 0             # long before the graceful timeout's 120 s
    finally:
        for sock in socks:
            sock.close()
        s.stop()


def test_a_peer_that_never_pongs_is_closed(tmp_path):
    s = start_server(tmp_path, "--workers", "1", "--ws-ping-interval", "0.2",
                     "--ws-ping-timeout", "0.2", "--header-timeout", "1", app=APP)
    try:
        status, _, sock = handshake(s)
        assert status == 101
        # never answers the pings: the server closes within interval + timeout (+ its tick)
        sock.settimeout(15)
        got = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
        assert got.startswith(b"\x89\x04")          # it was pinged
        wait_until(lambda: metric(s, 'fastsock_connections_closed_total{reason="ping_timeout"}')
                   >= 1, what="the ping timeout counted")
        # a client that answers stays open across several pings
        with connect(url(s, "/echo")) as ws:
            wait_until(lambda: metric(s, 'fastsock_connections_closed_total{reason="ping_timeout"}')
                       >= 1 and _pinged(ws), what="a ping answered")
            ws.send("alive")
            assert ws.recv() == "alive"
    finally:
        s.stop()


def _pinged(ws) -> bool:
    return ws.protocol.state.name == "OPEN"


def test_an_app_that_never_answers_the_handshake_gets_504(tmp_path):
    s = start_server(tmp_path, "--workers", "1", "--ws-handshake-timeout", "0.5", app=APP)
    try:
        status, _, sock = handshake(s, path="/never")
        sock.close()
        assert status == 504
        wait_for_log(s, "neither accepted nor refused")
    finally:
        s.stop()


def test_past_ws_max_connections_the_handshake_gets_503(tmp_path):
    s = start_server(tmp_path, "--workers", "1", "--ws-max-connections", "3", app=APP)
    try:
        with ExitStack() as stack:
            for _ in range(3):
                stack.enter_context(connect(url(s, "/echo")))
            with pytest.raises(InvalidStatus) as full:
                connect(url(s, "/echo"))
            assert full.value.response.status_code == 503
            assert full.value.response.headers["retry-after"] == "1"
            wait_for_log(s, "refused a WebSocket: 3 open in this worker")
            assert s.get("/hello").text == "hello"          # HTTP is not refused
        # closed, their places are free again
        wait_until(lambda: _connects(s), what="a WebSocket accepted again")
    finally:
        s.stop()


def _connects(s) -> bool:
    try:
        with connect(url(s, "/echo")) as ws:
            ws.send("x")
            return ws.recv(timeout=5) == "x"
    except InvalidStatus:
        return False
