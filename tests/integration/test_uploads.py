"""Request bodies streamed in (stream=True) over real sockets: past the server's body limit up
to the route's, as chunks while they arrive, with back-pressure on a slow handler; the route's
limit answered 413; a client that leaves cancels the handler; an early answer closes the
connection without reading the rest as a request; pipelining and 100-continue still hold."""
import hashlib
import json
import os

import httpx
import pytest

from tests.support.metrics import metric
from tests.support.servers import children
from tests.support.sockets import Reader, post, read_until_close, server_has_read_all
from tests.support.waiting import wait_for_text, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.support.servers import start_server
    s = start_server(tmp_path_factory.mktemp("uploads"), "--workers", "1")
    yield s
    s.stop()


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_past_the_server_limit_streams_in_as_chunks(server, chunked):
    body = os.urandom(20 << 20)                 # 20 MiB; --max-body-size is 1 MiB
    with server.connect(timeout=30) as s:
        post(s, "/upload", body, chunked)
        r = Reader(s, timeout=30)
        status, headers, raw = r.response()
        got = json.loads(raw)
        assert status == 200 and got["bytes"] == len(body)
        assert got["sha256"] == hashlib.sha256(body).hexdigest()
        assert got["chunks"] > 10 and got["body"] == 0      # as it came, never gathered
        s.sendall(b"GET /n/1 HTTP/1.1\r\nHost: t\r\n\r\n")   # the connection goes on
        assert r.response()[2] == b"n=1"


def test_a_chunk_size_line_split_across_reads_waits_for_its_end(server):
    """A streamed chunked body whose chunk-size line arrives in two pieces: the first piece
    waits in the buffer for the rest (it used to be parsed again and again: a spinning worker)."""
    data = os.urandom(70000)
    with server.connect(timeout=10) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + b"%x\r\n" % 40000 + data[:40000] + b"\r\n" + b"75")
        # "7530\r\n" = 30000, in two reads: the server has read the first piece
        wait_until(lambda: server_has_read_all(s), what="the server reading the first piece")
        s.sendall(b"30\r\n" + data[40000:] + b"\r\n0\r\n\r\n")
        status, _, raw = Reader(s, timeout=10).response()
    got = json.loads(raw)
    assert status == 200 and got["bytes"] == len(data)
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert httpx.get(server.url + "/n/2", timeout=5).text == "n=2"      # the worker serves on


def test_other_routes_keep_the_server_limit(server):
    r = httpx.post(server.url + "/echo", content=b"x" * (2 << 20))
    assert r.status_code == 413
    assert httpx.post(server.url + "/echo", content=b"fits").content == b"fits"


@pytest.mark.parametrize("chunked", [False, True])
def test_the_routes_own_limit_is_413(server, chunked):
    with server.connect() as s:
        post(s, "/upload-small", b"y" * 5000, chunked)
        data = read_until_close(s)
    assert data.startswith(b"HTTP/1.1 413 ")


def test_a_slow_handler_holds_the_client_back_in_little_memory(server):
    (worker,) = children(server.proc.pid)

    def rss():
        return int(open(f"/proc/{worker}/status").read().split("VmRSS:")[1].split()[0])
    body = os.urandom(32 << 20)
    before = rss()
    with server.connect(timeout=60) as s:
        post(s, "/upload-slow", body)
        status, _, raw = Reader(s, timeout=60).response()
    assert status == 200 and json.loads(raw)["bytes"] == len(body)
    assert rss() - before < 16 * 1024, "the body was buffered, not held back"


def test_a_client_that_leaves_mid_body_cancels_the_handler(server, tmp_path):
    mark = tmp_path / "mark"
    s = server.connect()
    s.sendall(b"POST /upload-slow?mark=" + str(mark).encode() + b" HTTP/1.1\r\nHost: t\r\n"
              b"Content-Length: 10000000\r\n\r\n" + b"z" * 100_000)
    wait_until(lambda: metric(server, "fastsock_requests_in_flight") >= 2,
               what="the handler reading the body")
    s.close()
    assert wait_for_text(mark) == "cancelled"
    assert httpx.get(server.url + "/").text == "hello"


def test_an_early_answer_closes_and_never_reads_the_rest_as_a_request(server):
    with server.connect(timeout=10) as s:
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        post(s, "/upload-early", smuggled * 20_000)
        data = read_until_close(s, timeout=10)
    assert data.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in data
    assert data.endswith(b"no thanks") and b"SMUGGLED" not in data


def test_pipelined_requests_after_a_streamed_body_and_100_continue(server):
    with server.connect() as s:
        post(s, "/upload", b"0123456789")
        s.sendall(b"GET /n/2 HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(s)
        assert json.loads(r.response()[2])["bytes"] == 10
        assert r.response()[2] == b"n=2"
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert r.response()[0] == 100
        s.sendall(b"abc")
        assert json.loads(r.response()[2])["bytes"] == 3


def test_streamed_bodies_in_the_test_client():
    from tests.apps.native import app
    from fastsock.testing import TestClient
    with TestClient(app) as client:
        got = client.post("/upload", content=b"q" * 100_000).json()
        assert got["bytes"] == 100_000 and got["body"] == 0
        assert client.post("/upload-small", content=b"q" * 5000).status_code == 413
