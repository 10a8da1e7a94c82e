"""The boundary between the loop and application code, over real sockets: whatever a handler
returns, yields or raises costs one response (or one connection), never the worker, and nothing
invalid reaches the wire. Each case is a scenario from the hardening issue."""
import contextlib
import socket
import time

import httpx
import pytest

from tests.support.sockets import CLOSE_WAIT, Reader, queues, read_until_close
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.support.servers import start_server
    s = start_server(tmp_path_factory.mktemp("boundary"), "--workers", "2")
    yield s
    s.stop()


def worker_pids(server) -> set[int]:
    return {int(httpx.get(server.url + "/pid").text) for _ in range(20)}


def get(sock: socket.socket, path: str) -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())


@pytest.mark.parametrize("kind", ["float", "dict", "surrogate", "none", "int"])
def test_a_bad_stream_chunk_cuts_that_connection_only(server, kind):
    pids = worker_pids(server)
    with server.connect() as other:
        get(other, "/")                                 # a keep-alive neighbour, mid-conversation
        assert Reader(other).response()[0] == 200
        with server.connect() as s:
            get(s, f"/bad-chunk/{kind}")
            raw = read_until_close(s)
        # the head and the good chunk went out; then the connection is cut: no terminator,
        # nothing after the bad chunk, no NUL bytes from an int
        assert raw.startswith(b"HTTP/1.1 200 OK") and b"before\n" in raw
        assert b"0\r\n\r\n" not in raw and b"after" not in raw and b"\0" not in raw
        get(other, "/")
        assert Reader(other).response() [2] == b"hello"
    assert worker_pids(server) == pids                  # no worker died
    assert "invalid chunk" in server.log()


def test_content_type_with_crlf_never_reaches_the_wire(server):
    with server.connect() as s:
        get(s, "/ctype?t=text/html%0d%0aSet-Cookie:%20a=b")
        status, headers, _ = Reader(s).response()
    assert status == 500 and "set-cookie" not in headers
    r = httpx.get(server.url + "/ctype?t=text/html")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html"


def test_malformed_json_body_is_400_not_500(server):
    r = httpx.post(server.url + "/json", content=b"{not json")
    assert r.status_code == 400
    assert "Traceback" not in server.log().split("/json")[-1]


def test_a_5000_digit_int_path_segment_is_404(server):
    r = httpx.get(server.url + "/users/" + "9" * 5000)
    assert r.status_code == 404
    assert httpx.get(server.url + "/users/7").json() == {"id": 7, "type": "int"}


def test_a_half_closed_client_gets_every_response(server):
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        s.shutdown(socket.SHUT_WR)
        raw = read_until_close(s)
    assert raw.count(b"HTTP/1.1 200 OK") == 2 and raw.endswith(b"abc")


def test_a_half_closed_client_gets_a_large_response_whole(server):
    with server.connect() as s:
        get(s, "/mb/8")
        s.shutdown(socket.SHUT_WR)
        # the EOF arrives while the output waits (the client has not read the 8 MiB)
        wait_until(lambda: (q := queues(s)) is not None and q["server_tx"] > 0
                   and q["server_state"] == CLOSE_WAIT, what="the FIN behind waiting output")
        raw = read_until_close(s, timeout=10)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and len(body) == 8 << 20


def test_a_half_closed_partial_request_is_dropped_and_closed(server):
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /n/1 HTTP/1.1\r\nHo")
        s.shutdown(socket.SHUT_WR)
        raw = read_until_close(s)
    assert raw.count(b"HTTP/1.1 ") == 1 and raw.endswith(b"hello")


def test_a_slow_download_is_not_cut_by_the_header_timeout_of_a_request_behind_it(serve):
    """20 MB read more slowly than --header-timeout, with a request pipelined behind it: the
    download runs on the write timer and the next request's deadline starts when it does."""
    server = serve("--header-timeout", "1")
    with server.connect(timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        s.sendall(b"GET /mb/20 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        t0 = time.monotonic()
        reader = Reader(s, timeout=10)
        while b"\r\n\r\n" not in reader.buf:
            reader._more()
        while len(reader.buf) < (20 << 20):     # at most 16 KiB per 2 ms: >= 2.5 s in all
            data = s.recv(16384)
            assert data, "closed mid-body"
            reader.buf += data
            time.sleep(0.002)
        assert time.monotonic() - t0 > 2
        status, _, body = reader.response()
        assert status == 200 and len(body) == 20 << 20
        assert reader.response()[:1] == (200,) and b"408" not in reader.buf


def rss_anon_kib(pid: int) -> int:
    from pathlib import Path
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1])
    return total


def settled_rss(pid: int, timeout: float = 10.0) -> int:
    """The workers' RssAnon once two looks in a row agree (what the warm-up allocated is in)."""
    seen = [-1]

    def same() -> bool:
        seen.append(rss_anon_kib(pid))
        return seen[-1] == seen[-2]
    wait_until(same, timeout, what="the workers' RSS to settle")
    return seen[-1]


def test_one_worker_holds_10000_idle_keep_alive_connections_in_little_memory(serve):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= 10_500, f"this test needs an open-file limit of 10500, not {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = serve()
    conns = []
    try:
        with server.connect() as warm:
            for _ in range(50):
                get(warm, "/")
                Reader(warm).response()
        before = settled_rss(server.proc.pid)
        for _ in range(10_000):
            s = server.connect()
            get(s, "/")
            assert Reader(s).response()[2] == b"hello"
            conns.append(s)
        per_conn = lambda: (rss_anon_kib(server.proc.pid) - before) / len(conns)  # noqa: E731
        # polled: freed buffers of the last requests may take a moment to go; memory each
        # held connection costs stays for as long as it is held
        with contextlib.suppress(AssertionError):
            wait_until(lambda: per_conn() < 1.5, timeout=10, what="the RSS per connection")
        assert per_conn() < 1.5, f"{per_conn():.2f} KiB per idle connection"
        for s in conns[::500]:                          # the held ones still answer
            get(s, "/n/1")
            assert Reader(s).response()[2] == b"n=1"
        assert httpx.get(server.url + "/").text == "hello"      # and so do new ones
    finally:
        for s in conns:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
