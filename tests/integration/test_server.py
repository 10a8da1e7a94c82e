"""A real server process, real sockets: HTTP semantics end to end."""
import asyncio
import errno
import json
import os
import random
import socket
import threading
import time
from unittest.mock import ANY

import httpx
import pytest

from tests.support.servers import children
from tests.support.sockets import Reader, queues, read_until_close
from tests.support.waiting import wait_for_log, wait_until


def get(path: bytes = b"/", extra: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


def test_hello_and_echo_with_httpx(server):
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/")
        assert (r.status_code, r.text) == (200, "hello")
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.headers["content-length"] == "5"
        assert "date" in r.headers
        payload = bytes(range(256)) * 10
        r = c.post("/echo", content=payload)
        assert r.content == payload
        assert r.headers["content-type"] == "application/octet-stream"


def test_routing_params_query_headers_json(server):
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/users/42").json() == {"id": 42, "type": "int"}
        assert c.get("/users/abc").status_code == 404
        assert c.get("/files/a/b/c.txt").text == "a/b/c.txt"
        body = c.get("/inspect?a=1&a=2&b=", headers={"X-Two": "x"}).json()
        assert body["query"] == [["a", "1"], ["a", "2"], ["b", ""]]
        assert ["x-two", "x"] in body["headers"]
        assert body["client"][0] == "127.0.0.1" and body["http_version"] == "1.1"
        r = c.post("/json", json={"k": [1, 2]})
        assert r.status_code == 201 and r.json() == {"got": {"k": [1, 2]}}
        assert r.headers["content-type"] == "application/json"
        r = c.get("/nothing")
        assert r.status_code == 204 and "content-length" not in r.headers


def test_404_405_and_head(server):
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/missing").status_code == 404
        r = c.delete("/")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
        r = c.head("/")
        assert r.status_code == 200 and r.headers["content-length"] == "5" and r.content == b""
    with server.connect() as s:                 # the connection stays usable after a HEAD
        s.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + get())
        reader = Reader(s)
        assert reader.response(head_only=True)[0] == 200
        assert reader.response() [2] == b"hello"


def test_keep_alive_many_requests_one_connection(server):
    with server.connect() as s:
        reader = Reader(s)
        for i in range(50):
            s.sendall(get(b"/n/%d" % i))
            status, headers, body = reader.response()
            assert (status, body) == (200, b"n=%d" % i)
            assert "connection" not in headers


def test_pipelining_100_deep(server):
    with server.connect() as s:
        s.sendall(b"".join(get(b"/n/%d" % i) for i in range(100)))
        reader = Reader(s)
        bodies = [reader.response()[2] for _ in range(100)]
    assert bodies == [b"n=%d" % i for i in range(100)]


def test_pipelined_mixed_bodies_in_order(server):
    reqs = [get(b"/n/1"),
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n",
            get(b"/n/2")]
    with server.connect() as s:
        s.sendall(b"".join(reqs))
        reader = Reader(s)
        assert [reader.response()[2] for _ in reqs] == [b"n=1", b"abc", b"de", b"n=2"]


def test_connection_close_and_http10(server):
    with server.connect() as s:
        s.sendall(get(b"/", b"Connection: close\r\n") + get(b"/n/9"))
        data = read_until_close(s)
    assert data.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in data
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = read_until_close(s)
    assert data.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in data
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, body = Reader(s).response()
        assert headers["connection"] == "keep-alive"
        s.sendall(b"GET /n/3 HTTP/1.0\r\n\r\n")
        assert read_until_close(s).endswith(b"n=3")


@pytest.mark.parametrize("fields", [b"Connection: keep-alive, close\r\n",
                                    b"Connection: close, keep-alive\r\n",
                                    b"Connection: keep-alive\r\nConnection: close\r\n"])
def test_http10_close_wins_over_keep_alive(server, fields):
    """Issue 19: close anywhere in Connection closes, even beside an HTTP/1.0 keep-alive:
    the answer says so, the connection ends, and what was pipelined after is not answered."""
    with server.connect() as s:
        s.sendall(b"GET /n/1 HTTP/1.0\r\n" + fields + b"\r\n" + get(b"/n/2"))
        reader = Reader(s)
        status, headers, body = reader.response()
        assert (status, headers["connection"], body) == (200, "close", b"n=1")
        assert reader.buf == b"" and read_until_close(s) == b""


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 300_000, 1 << 20])
def test_bodies_content_length_and_chunked(server, size):
    payload = random.Random(size).randbytes(size)
    with httpx.Client(base_url=server.url) as c:
        assert c.post("/echo", content=payload).content == payload

        def pieces():
            for i in range(0, len(payload), 70000):
                yield payload[i:i + 70000]
        r = c.post("/echo", content=pieces())       # httpx sends a generator chunked
        assert r.content == payload


def test_expect_100_continue(server):
    with server.connect() as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 5\r\n\r\n")
        reader = Reader(s)
        assert reader._line() == b"HTTP/1.1 100 Continue"
        assert reader._line() == b""
        s.sendall(b"hello")
        status, _, body = reader.response()
        assert (status, body) == (200, b"hello")
        # a second request on the connection gets its own 100, once
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 2\r\n\r\n")
        assert reader._line() == b"HTTP/1.1 100 Continue"
        assert reader._line() == b""
        s.sendall(b"ok")
        assert reader.response()[2] == b"ok"


def test_expect_100_continue_with_too_large_body_is_413(server):
    with server.connect() as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 2000000\r\n\r\n")
        data = read_until_close(s)
    assert data.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in data


@pytest.mark.parametrize("raw, status", [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"v" * 70000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101))
     + b"\r\n", 431),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n" + b"x" * 1000, 413),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
     + (b"10000\r\n" + b"x" * 65536 + b"\r\n") * 17 + b"0\r\n\r\n", 413),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;"
     + b"e" * 2000 + b"\r\nhello\r\n0\r\n\r\n", 400),
], ids=["request-line-414", "header-bytes-431", "header-count-431", "body-cl-413",
        "body-chunked-413", "chunk-ext-400"])
def test_limits(server, raw, status):
    with server.connect() as s:
        s.sendall(raw + get(b"/smuggled"))
        data = read_until_close(s)
    assert data.startswith(b"HTTP/1.1 %d " % status)
    assert b"Connection: close" in data and b"SMUGGLED" not in data


def test_handler_exception_is_500_and_server_keeps_serving(server):
    with server.connect() as s:
        s.sendall(get(b"/boom") + get(b"/"))
        reader = Reader(s)
        status, _, body = reader.response()
        assert status == 500 and b"exploded" not in body
        assert reader.response()[2] == b"hello"
    wait_for_log(server, "RuntimeError: handler exploded")
    assert "Traceback" in server.log() and "RuntimeError: handler exploded" in server.log()


def test_http_error_and_header_injection_refused(server):
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/forbidden")
        assert (r.status_code, r.text) == (403, "no entry")
    with server.connect() as s:
        s.sendall(get(b"/inject"))
        status, headers, _ = Reader(s).response()
    assert status == 500 and "set-cookie" not in headers and "x-evil" not in headers


def test_streaming_response_chunked(server):
    with server.connect() as s:
        s.sendall(get(b"/stream") + get(b"/n/5"))
        reader = Reader(s)
        status, headers, body = reader.response()
        assert headers["transfer-encoding"] == "chunked"
        assert body == b"".join(b"chunk %d\n" % i for i in range(10))
        assert reader.response()[2] == b"n=5"
    with server.connect() as s:                 # HTTP/1.0 has no chunked: delimited by close
        s.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
        data = read_until_close(s)
    assert b"Transfer-Encoding" not in data and data.endswith(b"chunk 9\n")


@pytest.mark.parametrize("method, status", [("GET", 204), ("GET", 304), ("HEAD", 204),
                                            ("HEAD", 200)])
def test_a_bodiless_answer_never_streams_its_body(server, method, status):
    """Issue 19: a 204 or 304 (or any answer to HEAD) whose body is an iterator: no body and
    no framing for one on the wire, so the response pipelined after it is read right; the
    iterator is closed, never pulled."""
    name = f"{method}-{status}".encode()
    with server.connect() as s:
        s.sendall(method.encode() + b" /bodiless/%d?name=%s HTTP/1.1\r\nHost: t\r\n\r\n"
                  % (status, name) + get(b"/streams?name=" + name))
        reader = Reader(s)
        got, headers, _ = reader.response(head_only=True)
        assert (got, reader.response()[::2]) == (status, (200, b'["closed"]'))
        if status != 200:
            assert "transfer-encoding" not in headers and "content-length" not in headers


def test_stream_that_fails_midway_cuts_the_connection(server):
    with server.connect() as s:
        s.sendall(get(b"/stream-fails"))
        data = read_until_close(s)
    assert data.startswith(b"HTTP/1.1 200") and not data.endswith(b"0\r\n\r\n")
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/").text == "hello"


def test_one_thousand_concurrent_connections(server):
    async def one(i):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(get(b"/n/%d" % i))
        await writer.drain()
        data = b""
        while not data.endswith(b"n=%d" % i):
            chunk = await reader.read(4096)
            assert chunk, "closed early"
            data += chunk
        return writer

    async def main():
        writers = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(1000))), 60)
        assert len(writers) == 1000                     # all 1,000 open at once here
        for w in writers:
            w.close()

    asyncio.run(main())


def test_back_pressure_bounds_output_and_loses_nothing(server):
    """The client sends 40 requests for 1 MiB each and reads nothing for a while: the server
    stops reading at its output bound instead of buffering 40 MiB, then answers them all."""
    def rss_kib(pid):
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    def asleep(pid):                    # waiting in epoll_wait, not writing
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "S"

    (worker,) = children(server.proc.pid)           # the process that serves (not the master)
    before = rss_kib(worker)
    with server.connect(timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(get(b"/big") * 40)
        # the client reads nothing: its receive queue fills, then the server's send queue,
        # and the worker stops at its output bound with the rest of the requests unanswered
        wait_until(lambda: (q := queues(s)) is not None and q["client_rx"] > 0
                   and q["server_tx"] > 0 and asleep(worker), what="the output to back up")
        grown = rss_kib(worker) - before
        reader = Reader(s, timeout=30)
        for _ in range(40):
            assert len(reader.response()[2]) == 1 << 20
    assert grown < 16 * 1024, f"server RSS grew {grown} KiB"



def _sized(n: int, i: int) -> bytes:
    tag = b"<%d>" % i
    return (tag * (n // len(tag) + 1))[:n]


def _release(fifo, timeout: float = 10.0) -> None:
    """Once a handler waits to read the FIFO, open it and close it: the handler goes on."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)     # ENXIO until it is read
            break
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    os.close(fd)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_refused_head_after_the_output_slid_leaves_nothing_of_it(serve, tmp_path, workers):
    """Issue 19: output piles up for a client that reads slowly, so the buffer slides the
    unsent bytes to its front while a response is written; a head the writer then refuses
    (a LF in Location) must be taken back exactly: the good responses, then a 500 in its
    place, nothing else."""
    # a high output bound: the server answers all of the pipeline before the refused one
    server = serve("--workers", workers, "--output-high-water", str(64 << 20))
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    # 7.5 MB of responses, more than the sockets hold: a partial send leaves most of them
    # buffered, the sent part at the front; 15,000-byte bodies are copied into the buffer
    n, size = 500, 15000
    reqs = [get(b"/sized/%d?i=%d" % (size, i)) for i in range(n)]
    # the refused head is written when the test says, and its 8 MiB of good header do not
    # fit after the rest: the buffer slides first
    reqs.append(get(b"/refused-later?pad=%d&to=/a%%0Ab&fifo=%s" % (8 << 20, bytes(fifo))))
    reqs.append(get(b"/n/0", b"Connection: close\r\n"))
    with server.connect(timeout=30) as s:
        s.sendall(b"".join(reqs))
        _release(fifo)              # the server has written everything before it, and sent
        reader = Reader(s, timeout=30)          # what the sockets took: now read it all
        for i in range(n):
            assert reader.response() == (200, ANY, _sized(size, i)), f"response {i}"
        status, headers, body = reader.response()
        assert (status, body) == (500, b"Internal Server Error\n")
        assert "location" not in headers and "x-pad" not in headers
        assert reader.response()[::2] == (200, b"n=0")
        assert reader.buf == b"" and read_until_close(s) == b""


def test_json_encoded_on_the_loop_and_in_threads_at_once_is_each_its_own(serve):
    """Issue 19: the loop encodes handlers' dicts while pool threads encode Response(dict);
    with the GIL changing hands mid-encode, no client gets another's body (large ones too)."""
    from tests.apps.native import json_value

    server = serve("--workers", "1", "--threads", "8")
    clients, per_client = 12, 30

    def expected(tag, size):
        return json.dumps(json_value(tag, size), separators=(",", ":")).encode()

    def client(c, wrong):
        with server.connect(timeout=30) as s:
            reader = Reader(s, timeout=30)
            for i in range(per_client):
                route = ("loop", "thread")[(c + i) % 2]
                tag, size = f"c{c}r{i}", (3 << 19 if i % 10 == 3 else 50 + c)
                s.sendall(get(f"/json/{route}?tag={tag}&size={size}".encode()))
                status, headers, body = reader.response()
                if (status, body) != (200, expected(tag, size)):
                    wrong.append((route, tag, status, body[:100]))
                    return

    wrong = []
    threads = [threading.Thread(target=client, args=(c, wrong)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
