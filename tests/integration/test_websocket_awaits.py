"""A native handler's receive() and send() are compiled awaitables (fastsock._wsawait), not
coroutines: over real sockets, each way asyncio awaits them (await, async for, create_task,
gather, wait_for's cancellation, a second receiver, after the close), a burst of messages in
one read taken in order, and an idle handler waiting with no coroutine of fastsock's."""
from contextlib import ExitStack

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.servers import start_server
from tests.support.waiting import wait_until

APP = "tests.apps.websockets_awaits:app"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("wsawait"), "--workers", "1", app=APP)
    yield s
    s.stop()


def url(server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def masked(payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    return (bytes([0x82, 0x80 | len(payload)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def test_a_burst_in_one_read_is_echoed_whole_and_in_order(server):
    s = server.connect()
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    data = data.partition(b"\r\n\r\n")[2]
    messages = [b"m%03d" % i for i in range(300)]
    s.sendall(b"".join(masked(m) for m in messages))      # one write: many frames per read
    want = b"".join(bytes([0x82, len(m)]) + m for m in messages)
    while len(data) < len(want):
        chunk = s.recv(65536)
        assert chunk, "closed before every echo came"
        data += chunk
    assert data == want
    s.close()


def test_an_idle_handler_waits_in_one_compiled_awaitable(server):
    with ExitStack() as stack:
        sockets = [stack.enter_context(connect(url(server, "/idle"))) for _ in range(3)]
        for ws in sockets:
            ws.send("hi")
            assert ws.recv() == "hi"
        r = httpx.get(f"{server.url}/waits").json()
        assert r["awaits"] == ["Awaiting"] * 3


def test_a_receive_cancelled_by_wait_for_leaves_the_websocket_usable(server):
    with connect(url(server, "/timeout")) as ws:
        assert ws.recv() == "timed out"
        ws.send("x")
        assert ws.recv() == "then got x"


def test_receive_runs_as_a_task_and_sends_gather_in_order(server):
    with connect(url(server, "/task")) as ws:
        ws.send("y")
        assert [ws.recv(), ws.recv(), ws.recv()] == ["task got y", "second", "third"]
        # the handler's Close, awaited here: leaving the block first would close with 1000
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    assert ws.close_code == 4001


def test_a_second_receiver_is_refused_and_the_first_gets_the_message(server):
    with connect(url(server, "/twice")) as ws:
        said = ws.recv()
        assert said.startswith("RuntimeError: another task is already receiving")
        ws.send("z")
        assert ws.recv() == "first got z"


def test_after_the_close_receive_and_send_raise_its_code(server):
    with connect(url(server, "/after-close")) as ws:
        ws.send("a")
        ws.close(4002)
    def results():
        return httpx.get(f"{server.url}/results").json()["after_close"]
    wait_until(results, what="the handler's end", server=server)
    assert results() == [[4002, 4002]]
