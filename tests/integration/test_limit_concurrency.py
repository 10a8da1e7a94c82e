"""--limit-concurrency N (issue 21, point 8): per worker, at most N requests in the app at once —
handlers running (async, threaded, WSGI, ASGI) and responses streaming out until their last
byte — whatever the kind; past it, 503 with Retry-After at once, counted in
fastsock_requests_refused_total{reason="concurrency"} and logged (rate-limited). The server's own
routes are never refused. Real servers, real sockets; held handlers wait on a file the test
creates."""
import socket
import struct

import httpx
import pytest

from tests.support.holder import Holder, send
from tests.support.metrics import samples
from tests.support.servers import start_server
from tests.support.sockets import Reader
from tests.support.waiting import wait_for_log, wait_until

N = 2


def refused_total(server) -> float:
    text = server.get("/metrics").text
    return samples(text, "fastsock_requests_refused_total").get('{reason="concurrency"}', -1)


@pytest.fixture
def two_workers(tmp_path):
    s = start_server(tmp_path, "--workers", "2", "--limit-concurrency", str(N),
                     "--access-log", "text", app="tests.apps.limits:app",
                     env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    yield s
    (tmp_path / "release").write_text("1")
    s.stop()


def test_past_the_limit_each_worker_answers_503_at_once_and_counts_it(two_workers, tmp_path):
    server = two_workers
    holder = Holder(server, tmp_path, "/hold-async")
    holder.fill(2 * N)                  # both workers hold N
    pids = [(tmp_path / f"entered-{rid}").read_text() for rid in holder.held]
    assert sorted(pids.count(p) for p in set(pids)) == [N, N]      # N in each worker, not more
    refused_while_filling = holder.refused
    for _ in range(3):                  # every worker is full: each new one is refused
        assert not holder.try_one()
    # any kind of handler: an inline one is refused as well
    for _ in range(2):
        r = server.get("/hello")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.text == "Service Unavailable: too many requests in progress\n"
    # the server's own routes never are
    assert server.get("/healthz").status_code == 200
    assert server.get("/readyz").status_code == 200
    assert refused_total(server) == refused_while_filling + 3 + 2
    log = wait_for_log(server, "refused 1 request(s) with 503")
    assert "--limit-concurrency 2" in log
    # rate-limited: a line per worker for its first refusal, not one per refusal
    assert log.count("request(s) with 503") < holder.refused + 2
    assert " 503 " in wait_for_log(server, "GET /hello", stream="stdout")     # access log

    assert holder.release_all() == [b"released\n"] * (2 * N)
    # after the release: requests pass again, and exactly N per worker are held before the
    # refusals start again (none was lost, none counted twice)
    assert server.get("/hello").text == "hello\n"
    before = holder.refused
    holder.fill(2 * N)
    assert not holder.try_one()
    assert refused_total(server) == refused_while_filling + 3 + 2 + (holder.refused - before)
    holder.release_all()


@pytest.mark.parametrize("app, path", [
    ("tests.apps.limits:app", "/hold-async"),
    ("tests.apps.limits:app", "/hold-thread"),
    ("tests.apps.limits:app", "/hold-stream"),
    ("tests.apps.limits:wsgi_app", "/hold"),
    ("tests.apps.limits:asgi_app", "/hold"),
])
def test_every_kind_of_handler_counts_until_its_response_is_done(tmp_path, app, path):
    server = start_server(tmp_path, "--limit-concurrency", str(N), app=app,
                          env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    try:
        holder = Holder(server, tmp_path, path)
        holder.fill(N)
        assert holder.refused == 0      # one worker: the first N go in
        assert not holder.try_one()
        assert server.get("/hello").status_code == 503
        assert server.get("/healthz").status_code == 200
        assert server.get("/metrics").status_code == 200
        assert refused_total(server) == 2
        requests = samples(server.get("/metrics").text, "fastsock_requests_total")
        assert requests['{method="GET",route="unmatched",status="503"}'] == 2
        expected = b"started\nreleased\n" if path == "/hold-stream" else b"released\n"
        assert holder.release_all() == [expected] * N
        assert server.get("/hello").text == "hello\n"
        holder.fill(N)                  # exactly N again: the count came back to 0
        assert not holder.try_one()
        holder.release_all()
    finally:
        (tmp_path / "release").write_text("1")
        server.stop()


def test_a_client_that_leaves_frees_its_place(tmp_path):
    """A held client that hangs up is out of the app (its task is cancelled): the place is
    free for the next request, and the count never goes below what is held."""
    server = start_server(tmp_path, "--limit-concurrency", str(N), app="tests.apps.limits:app",
                          env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    try:
        holder = Holder(server, tmp_path, "/hold-async")
        holder.fill(N)
        rid, reader = holder.held.popitem()
        reader.sock.close()
        wait_until(lambda: server.get("/hello").status_code == 200, what="the place freed")
        holder.fill(N)
        assert not holder.try_one()
        holder.release_all()
    finally:
        (tmp_path / "release").write_text("1")
        server.stop()


def test_off_by_default(tmp_path):
    server = start_server(tmp_path, app="tests.apps.limits:app",
                          env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    try:
        holder = Holder(server, tmp_path, "/hold-async")
        holder.fill(20)
        assert holder.refused == 0
        assert server.get("/hello").text == "hello\n"
        assert refused_total(server) == 0
        holder.release_all()
    finally:
        (tmp_path / "release").write_text("1")
        server.stop()


def test_the_environment_variable_sets_it(tmp_path):
    server = start_server(tmp_path, app="tests.apps.limits:app",
                          env={"FASTSOCK_TEST_DIR": str(tmp_path),
                               "FASTSOCK_LIMIT_CONCURRENCY": "1"})
    try:
        holder = Holder(server, tmp_path, "/hold-async")
        holder.fill(1)
        r = httpx.get(server.url + "/hello")
        assert r.status_code == 503
        holder.release_all()
    finally:
        (tmp_path / "release").write_text("1")
        server.stop()


def test_no_way_a_stream_ends_leaves_its_place_taken(tmp_path):
    """--limit-concurrency 1: after each way a stream can end — its client gone mid-stream or
    before a byte, the stream failing or yielding garbage, HEAD, a request pipelined behind
    it, an async generator cut by a reset — the one place is free again."""
    server = start_server(tmp_path, "--limit-concurrency", "1", "--threads", "2",
                          app="tests.apps.hostile:app", env={"FASTSOCK_TEST_DIR": str(tmp_path)})

    def get(path: str, method: str = "GET") -> bytes:
        return f"{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()

    ways = [
        (get("/gen/forever"), True), (get("/gen/forever"), False),
        (get("/agen/forever"), True), (get("/agen/forever"), False),
        (get("/gen/raises"), True), (get("/gen/nonbytes"), True), (get("/agen/raises"), True),
        (get("/gen/forever", "HEAD"), True), (get("/agen/forever", "HEAD"), True),
        (get("/gen/raises") + get("/hello"), True), (get("/agen/forever") + get("/hello"), True),
        (get("/throw-thread"), True),
    ]
    try:
        for request, read_first in ways:
            with server.connect() as c:
                c.sendall(request)
                if read_first:
                    assert c.recv(65536).startswith(b"HTTP/1.1 "), request
            wait_until(lambda: server.get("/hello").status_code == 200,
                       what=f"the place freed after {request!r}", server=server)
        with server.connect() as c:                 # a reset (RST) in the middle of a stream
            c.sendall(get("/agen/forever"))
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_until(lambda: server.get("/hello").status_code == 200, what="the place freed",
                   server=server)
        holder_sock = send(server, "/agen/forever")     # the place is exactly one: taken...
        Reader(holder_sock).response(head_only=True)
        assert server.get("/hello").status_code == 503  # ...the next is refused
        holder_sock.close()
    finally:
        (tmp_path / "release").write_text("1")
        server.stop()
