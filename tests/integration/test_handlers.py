"""Handlers that wait, over real sockets: async handlers on the worker's asyncio loop, plain
ones in its thread pool — overlap counted inside the app, order kept on pipelined
connections, cancellation when the client leaves, timeouts, a bounded pool."""
import selectors
import socket
import time

import httpx
import pytest

from tests.support.metrics import metric
from tests.support.sockets import Reader, delivered, garbage_left, server_has_read_all
from tests.support.waiting import wait_for_log, wait_for_text, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.support.servers import start_server
    s = start_server(tmp_path_factory.mktemp("handlers"), "--workers", "1", "--threads", "8")
    yield s
    s.stop()


def concurrency(server, reset=False) -> dict:
    return httpx.get(server.url + "/concurrency" + ("?reset=1" if reset else "")).json()


def ask_all(port: int, requests: list[bytes], timeout: float = 10) -> tuple[list[bytes], float]:
    """Connect one socket per request, then send them all at once; -> (each whole response,
    seconds from the first send to the last answer)."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in requests]
    sel = selectors.DefaultSelector()
    got = {s: b"" for s in socks}
    t0 = time.monotonic()
    for s, req in zip(socks, requests):
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    waiting = set(socks)
    while waiting and time.monotonic() < t0 + timeout:
        for key, _ in sel.select(0.5):
            data = key.fileobj.recv(65536)
            got[key.fileobj] += data
            if not data or _whole(got[key.fileobj]):
                sel.unregister(key.fileobj)
                waiting.discard(key.fileobj)
    elapsed = time.monotonic() - t0
    for s in socks:
        s.close()
    return [got[s] for s in socks], elapsed


def _whole(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def test_a_thousand_async_handlers_overlap_on_one_worker(server):
    concurrency(server, reset=True)
    req = b"GET /async/sleep?s=0.5 HTTP/1.1\r\nHost: t\r\n\r\n"
    answers, _ = ask_all(server.port, [req] * 1000)
    assert all(a.startswith(b"HTTP/1.1 200 ") and a.endswith(b"slept 0.5") for a in answers)
    assert concurrency(server)["max"] >= 900        # they ran side by side, counted inside


def test_health_answers_while_async_handlers_wait(server):
    with server.connect() as slow:
        slow.sendall(b"GET /async/sleep?s=5 HTTP/1.1\r\nHost: t\r\n\r\n")
        # /metrics counts itself: 2 is the waiting handler and this request
        wait_until(lambda: metric(server, "fastsock_requests_in_flight") >= 2, what="waiting")
        assert httpx.get(server.url + "/healthz").status_code == 200
        assert httpx.get(server.url + "/").text == "hello"
        assert metric(server, "fastsock_requests_in_flight") >= 2     # answered meanwhile
        assert Reader(slow, timeout=15).response()[2] == b"slept 5"


def test_pipelined_responses_keep_their_order(server):
    with server.connect() as s:
        s.sendall(b"GET /async/sleep?s=0.3 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /n/1 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /threaded/sleep?s=0.1 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /async/sleep?s=0.05 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /n/2 HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(s)
        bodies = [r.response()[2] for _ in range(5)]
    assert bodies[0] == b"slept 0.3" and bodies[1] == b"n=1"
    assert bodies[2].startswith(b"thread slept") and bodies[3] == b"slept 0.05"
    assert bodies[4] == b"n=2"


def test_requests_that_come_while_a_handler_waits_are_read_after_its_response(server):
    """The connection's epoll watch stays on while its handler works (no epoll_ctl per
    deferred request): a request arriving meanwhile is noted, left in the socket, and read
    once the response is out — none is lost, none is read early."""
    with server.connect() as s:
        s.sendall(b"GET /async/sleep?s=0.3 HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_until(lambda: server_has_read_all(s), what="the first request read")
        s.sendall(b"GET /n/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_until(lambda: delivered(s), what="the second request in the server's socket")
        s.sendall(b"GET /threaded/sleep?s=0.1 HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(s)
        assert r.response()[2] == b"slept 0.3"
        assert r.response()[2] == b"n=1"
        assert r.response()[2].startswith(b"thread slept")
        s.sendall(b"GET /n/2 HTTP/1.1\r\nHost: t\r\n\r\n")   # and the connection goes on
        assert r.response()[2] == b"n=2"


def test_more_pipelined_requests_than_one_read_behind_a_waiting_handler(server):
    """More than a read buffer (16 KiB) of requests behind an async one: what the first read
    left in the socket is read after the response, in order."""
    tail = b"".join(b"GET /n/%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(700))
    assert len(tail) > 16384
    with server.connect() as s:
        s.sendall(b"GET /async/sleep?s=0.2 HTTP/1.1\r\nHost: t\r\n\r\n" + tail)
        r = Reader(s)
        assert r.response()[2] == b"slept 0.2"
        assert [r.response()[2] for _ in range(700)] == [b"n=%d" % i for i in range(700)]


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_client_that_leaves_cancels_its_handler(server, tmp_path, how):
    mark = tmp_path / "mark"
    s = server.connect()
    s.sendall(f"GET /async/wait?mark={mark} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    wait_until(lambda: metric(server, "fastsock_requests_in_flight") >= 2, what="waiting")
    if how == "reset":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    assert wait_for_text(mark) == "cancelled"
    assert httpx.get(server.url + "/").text == "hello"


def test_errors_timeouts_and_results_of_async_handlers(server):
    assert httpx.get(server.url + "/async/raise").status_code == 500
    r = httpx.get(server.url + "/async/forbidden")
    assert r.status_code == 403 and r.text == "async no entry"
    assert httpx.get(server.url + "/async/slow").status_code == 504    # its timeout, 0.3 of 5 s
    assert httpx.get(server.url + "/async/json").json()["async"] is True
    assert "async handler exploded" in server.log()


@pytest.mark.parametrize("path", ["/async/json", "/threaded/sleep?s=0"])
def test_a_waiting_handler_leaves_nothing_for_the_cycle_collector(server, path):
    assert garbage_left(server, path, n=50) < 10


def test_threaded_handlers_overlap_in_the_pool(server):
    concurrency(server, reset=True)
    req = b"GET /threaded/sleep?s=0.3 HTTP/1.1\r\nHost: t\r\n\r\n"
    answers, _ = ask_all(server.port, [req] * 8)
    assert all(b"thread slept in fastsock-handler" in a for a in answers), answers[0]
    assert concurrency(server)["max"] == 8          # all eight threads at once
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_a_busy_pool_queues_then_answers_503_with_retry_after(serve):
    server = serve("--threads", "2", "--thread-backlog", "2")
    req = b"GET /threaded/sleep?s=0.5 HTTP/1.1\r\nHost: t\r\n\r\n"
    answers, _ = ask_all(server.port, [req] * 10)
    ok = [a for a in answers if a.startswith(b"HTTP/1.1 200 ")]
    busy = [a for a in answers if a.startswith(b"HTTP/1.1 503 ")]
    assert len(ok) == 4 and len(busy) == 6, [a[:20] for a in answers]   # 2 run, 2 queue
    assert all(b"Retry-After: 1\r\n" in a for a in busy)


def test_the_global_handler_timeout_answers_504_for_tasks_and_thread_jobs(serve):
    server = serve("--handler-timeout", "0.3", "--threads", "2")
    for path in ("/async/sleep?s=3", "/threaded/sleep?s=3"):
        assert httpx.get(server.url + path, timeout=10).status_code == 504   # 0.3 of its 3 s
    assert httpx.get(server.url + "/async/sleep?s=0.05").text == "slept 0.05"



# --- issue 21, point 5: return values (tests/apps/returns.py), with orjson and without

@pytest.mark.parametrize("app", ["app", "builtin_app"])
def test_json_takes_dates_ids_decimals_enums_dataclasses_sets_and_the_apps_hook(serve, app):
    from tests.apps.returns import EXPECTED
    server = serve("--threads", "2", app=f"tests.apps.returns:{app}")
    for path in ("/values", "/values/async"):
        r = server.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == EXPECTED
    r = server.get("/set")      # a set answered 200 then cut its body: a JSON list
    assert r.status_code == 200 and sorted(r.json()) == [1, 2, 3]
    r = server.get("/set/created")
    assert (r.status_code, r.json()) == (201, ["x"])
    assert server.get("/dataclass").json() == {"x": 3, "y": 4}


@pytest.mark.parametrize("app", ["app", "builtin_app"])
@pytest.mark.parametrize("path, logged", [
    ("/opaque", "cannot send a Opaque"),
    ("/opaque/in-json", "Object of type Opaque is not JSON serializable"),
    ("/opaque/threaded", "Object of type Opaque is not JSON serializable"),
    ("/bytes/in-json", "Object of type bytes is not JSON serializable"),
])
def test_what_cannot_be_sent_is_a_500_before_the_head_naming_its_type(serve, app, path,
                                                                      logged):
    server = serve("--threads", "2", app=f"tests.apps.returns:{app}")
    with server.connect() as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\nGET /pid HTTP/1.1\r\nHost: t\r\n\r\n"
                  .encode())
        reader = Reader(s)
        status, headers, body = reader.response()
        assert (status, body) == (500, b"Internal Server Error\n")     # whole, no 200 before
        assert reader.response()[0] == 200             # and the connection goes on
    assert f"GET {path}" in wait_for_log(server, logged)
