"""Streams that stream, over real sockets: each chunk leaves when it is made — from an async
generator on the asyncio loop, from a blocking generator pulled in the thread pool — while
the same worker answers other requests; a large async stream arrives whole; a client that
leaves stops the generator."""
import socket
import time

import httpx
import pytest

from tests.support.sockets import Reader
from tests.support.waiting import wait_for_text


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.support.servers import start_server
    s = start_server(tmp_path_factory.mktemp("streams"), "--workers", "1",
                     app="examples.sse:app")
    yield s
    s.stop()


def read_chunk(sock: socket.socket, buf: bytearray) -> bytes:
    """One chunk of a chunked body (after the head has been read into buf)."""
    while b"\r\n" not in buf:
        buf += sock.recv(65536)
    line, _, rest = bytes(buf).partition(b"\r\n")
    size = int(line, 16)
    while len(rest) < size + 2:
        rest += sock.recv(65536)
    buf[:] = rest[size + 2:]
    return rest[:size]


@pytest.mark.parametrize("path", ["/events", "/events-blocking"])
def test_each_event_arrives_when_made_and_the_worker_serves_meanwhile(server, path):
    with server.connect(timeout=10) as s:
        t0 = time.monotonic()
        s.sendall(f"GET {path}?n=4&every=0.4 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        assert b"text/event-stream" in head
        buf[:] = rest
        assert read_chunk(s, buf) == b"id: 0\ndata: tick 0\n\n"
        # the loop is free while the stream waits: answered before the stream's last event
        # (made 1.2 s after the first), which is not here yet, so not held to the end
        assert httpx.get(server.url + "/healthz").status_code == 200
        pending = bytes(buf)
        try:
            pending += s.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        assert b"tick 3" not in pending
        times = []
        for i in range(1, 4):
            assert read_chunk(s, buf) == f"id: {i}\ndata: tick {i}\n\n".encode()
            times.append(time.monotonic() - t0)
        assert read_chunk(s, buf) == b""        # the terminator
        assert times[0] > 0.3 and times[2] > 1.1   # each at its own time, not all at the end


def test_a_large_async_stream_arrives_whole(serve, tmp_path):
    (tmp_path / "bigstream.py").write_text(
        "import asyncio\n"
        "from fastsock import App\n"
        "app = App()\n"
        "@app.get('/big')\n"
        "async def big(req):\n"
        "    async def chunks():\n"
        "        for i in range(400):\n"
        "            yield bytes([65 + i % 26]) * 65536\n"
        "            if i % 50 == 0:\n"
        "                await asyncio.sleep(0)\n"
        "    return chunks()\n")
    server = serve(app="bigstream:app", env={"PYTHONPATH": str(tmp_path)})
    with server.connect(timeout=20) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = Reader(s, timeout=20).response()
    assert status == 200 and len(body) == 400 * 65536
    assert body[:1] == b"A" and body[-1:] == bytes([65 + 399 % 26])


def test_a_client_that_leaves_stops_the_async_generator(serve, tmp_path):
    mark = tmp_path / "mark"
    (tmp_path / "leaving.py").write_text(
        "import asyncio\n"
        "from fastsock import App\n"
        "app = App()\n"
        "@app.get('/ticks')\n"
        "async def ticks(req):\n"
        "    async def stream():\n"
        "        try:\n"
        "            while True:\n"
        "                yield 'tick\\n'\n"
        "                await asyncio.sleep(0.05)\n"
        "        finally:\n"
        f"            open({str(mark)!r}, 'w').write('closed')\n"
        "    return stream()\n")
    server = serve(app="leaving:app", env={"PYTHONPATH": str(tmp_path)})
    s = server.connect()
    s.sendall(b"GET /ticks HTTP/1.1\r\nHost: t\r\n\r\n")
    got = b""
    while b"tick" not in got:
        got += s.recv(65536)
    s.close()
    assert wait_for_text(mark) == "closed"


def wait_for_mark(path, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.read_text() if path.exists() else ""


def test_a_blocking_generator_from_an_inline_handler_never_stalls_the_loop(serve, tmp_path):
    # issue 21: a plain generator that blocks between events, returned by an inline handler:
    # while it is provably mid-way (blocked until the test creates its gate file), the same
    # worker answers /healthz; then each event comes when released
    server = serve("--workers", "1", "--threads", "4")
    gate = tmp_path / "gate"
    with server.connect(timeout=10) as s:
        s.sendall(f"GET /inline/gated?gate={gate} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        assert b"text/event-stream" in head
        buf[:] = rest
        assert read_chunk(s, buf) == b"data: event 0 in fastsock-handler\n\n"
        for i in (1, 2):
            # the generator waits for gate.i: answered now, or never (the timeout: a hang guard)
            assert httpx.get(server.url + "/healthz", timeout=10).text == "ok\n"
            (tmp_path / f"gate.{i}").touch()
            assert read_chunk(s, buf) == f"data: event {i} in fastsock-handler\n\n".encode()
        assert read_chunk(s, buf) == b""        # the terminator
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("path, thread", [("/threaded/ticks", "fastsock-handler"),
                                          ("/inline/ticks", "fastsock-handler"),
                                          ("/pulled-inline/ticks", "MainThread")])
def test_a_client_that_leaves_closes_a_plain_generator_once(serve, tmp_path, workers, path,
                                                             thread):
    # threaded: the client's close is seen (the next chunk's write is reset) while a pool
    # thread is inside next(): the generator is closed there once next() returns
    server = serve("--workers", str(workers), "--threads", "4")
    mark = tmp_path / "mark"
    s = server.connect()
    s.sendall(f"GET {path}?mark={mark} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    got = b""
    while b"tick" not in got:
        got += s.recv(65536)
    s.close()
    assert wait_for_mark(mark) == f"finally in {thread}\n", server.log()
    assert "generator already executing" not in server.log()
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("workers", [1, 2])
def test_head_closes_a_plain_iterator_from_the_pool(serve, tmp_path, workers):
    server = serve("--workers", str(workers), "--threads", "4")
    mark = tmp_path / "mark"
    with server.connect() as s:
        s.sendall(f"HEAD /threaded/ticks?closing=1&mark={mark} HTTP/1.1\r\nHost: t\r\n\r\n"
                  "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        reader = Reader(s)
        assert reader.response(head_only=True)[0] == 200
        assert reader.response()[2] == b"ok\n"         # the next answer: no body between
    assert wait_for_mark(mark) == "closed in fastsock-handler\n", server.log()


def test_without_a_pool_a_plain_generator_is_pulled_on_the_loop(serve, tmp_path):
    # --threads 0: no pool to pull in, so the loop pulls it (never a job no thread takes)
    (tmp_path / "nopool.py").write_text(
        "import threading\n"
        "from fastsock import App\n"
        "app = App()\n"
        "@app.get('/stream')\n"
        "def stream(req):\n"
        "    return (f'chunk {i} in {threading.current_thread().name}\\n' for i in range(3))\n")
    server = serve("--workers", "1", "--threads", "0", app="nopool:app",
                   env={"PYTHONPATH": str(tmp_path)})
    assert server.get("/stream", timeout=10).text == "".join(
        f"chunk {i} in MainThread\n" for i in range(3))
