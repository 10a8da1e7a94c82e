"""ASGI 3 apps over real sockets: the scope, the body in (more_body) and out (streamed, with
back-pressure), http.disconnect mid-body and mid-response, lifespan per worker (and a failing
one stopping the start), WebSocket refused, and the server's operations around the app."""
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.metrics import metric
from tests.support.servers import ROOT, children, free_port, start_server
from tests.support.sockets import Reader, garbage_left, post, read_until_close
from tests.support.waiting import wait_for_log, wait_for_text, wait_until

APP = "tests.apps.asgi:app"


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    return tmp_path_factory.mktemp("asgi-out")


@pytest.fixture(scope="module")
def server(tmp_path_factory, outdir):
    s = start_server(tmp_path_factory.mktemp("asgi"), "--workers", "2", "--root-path", "/api",
                     "--max-body-size", str(8 << 20), "--forwarded-allow-ips", "127.0.0.1",
                     app=APP, env={"FASTSOCK_TEST_DIR": str(outdir)})
    yield s
    s.stop()


def test_the_http_scope_is_complete(server):
    r = httpx.post(server.url + "/caf%C3%A9/scope?a=1&b=%20", content=b"payload",
                   headers={"X-Thing": "one", "X-Forwarded-For": "203.0.113.9",
                            "X-Forwarded-Proto": "https"})
    assert r.status_code == 200, server.log()
    scope = r.json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1" and scope["method"] == "POST"
    assert scope["scheme"] == "https"                       # from the trusted proxy
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/café/scope"               # root_path included, decoded
    assert scope["raw_path"] == "/api/caf%C3%A9/scope"
    assert scope["query_string"] == "a=1&b=%20"
    assert ["x-thing", "one"] in scope["headers"]
    assert ["host", f"127.0.0.1:{server.port}"] in scope["headers"]
    assert scope["client"] == ["203.0.113.9", 0]            # the forwarded client
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["state"]["db"] == "connected"              # from lifespan startup
    assert scope["body"] == "payload"


def test_a_request_leaves_nothing_for_the_cycle_collector(server):
    assert garbage_left(server, "/hello") < 10


def test_http_10_and_the_peer_address(server):
    with server.connect() as s:
        s.sendall(b"GET /x/scope HTTP/1.0\r\n\r\n")
        data = read_until_close(s)
    scope = json.loads(data.partition(b"\r\n\r\n")[2])
    assert scope["http_version"] == "1.0" and scope["scheme"] == "http"
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0


def test_lifespan_state_is_per_worker(server):
    pids = {httpx.get(server.url + "/x/scope").json()["state"]["pid"] for _ in range(40)}
    assert pids <= set(children(server.proc.pid)) and pids


def test_a_long_body_arrives_in_more_body_messages_while_it_is_sent(server, outdir):
    size = 4 << 20
    with server.connect(timeout=10) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        s.sendall(b"x" * (size // 2))
        assert int(wait_for_text(outdir / "upload-started", 5)) > 0
        s.sendall(b"x" * (size - size // 2))
        status, _, body = Reader(s, 10).response()
    total, messages = map(int, body.split())
    assert status == 200 and total == size and messages > 2


@pytest.mark.parametrize("chunked", [False, True])
def test_a_small_body_is_one_message(server, chunked):
    with server.connect() as s:
        post(s, "/upload", b"abc", chunked=chunked)
        status, _, body = Reader(s).response()
    assert status == 200 and body == (b"3 2" if chunked else b"3 1")


def test_a_body_past_the_limit_is_413(server):
    with server.connect(timeout=10) as s:
        post(s, "/upload", os.urandom(9 << 20), chunked=True)
        status, headers, _ = Reader(s, 10).response()
    assert status == 413 and headers.get("connection") == "close"


def test_http_disconnect_when_the_client_leaves_mid_body(server, outdir):
    s = server.connect()
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n")
    s.sendall(b"y" * 200000)
    assert wait_for_text(outdir / "upload-started", 5)
    s.close()
    assert wait_for_text(outdir / "upload-disconnect", 5).startswith("after ")


def test_http_disconnect_when_the_client_leaves_while_the_app_waits(server, outdir):
    s = server.connect()
    s.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_until(lambda: metric(server, "fastsock_requests_in_flight") >= 2,     # and /metrics
               what="the app waiting")
    s.close()
    assert wait_for_text(outdir / "disconnect", 5) == "http.disconnect"


def test_a_response_streams_as_it_is_sent(server, outdir):
    with server.connect() as s:
        s.sendall(b"GET /stream?n=3&delay=0.5&name=streamed HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while b"chunk 0" not in data:
            data += s.recv(65536)
        # the first chunk came on its own, a second before the last one is made
        assert b"chunk 2" not in data and b"Transfer-Encoding: chunked" in data
        while not data.endswith(b"0\r\n\r\n"):
            data += s.recv(65536)
    assert b"chunk 2" in data
    assert wait_for_text(outdir / "streamed") == "sent 3"


def test_send_raises_when_the_client_leaves_mid_response(server, outdir):
    s = server.connect()
    s.sendall(b"GET /stream?n=100&delay=0.05&name=left-mid HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while b"chunk 0" not in data:
        data += s.recv(65536)
    s.close()
    text = wait_for_text(outdir / "left-mid", 5)
    assert text.startswith("ClientDisconnected after") and int(text.split()[-1]) < 100
    assert httpx.get(server.url + "/hello").text == "hello"


def test_a_large_streamed_body_is_whole(server):
    r = httpx.get(server.url + "/big", timeout=10)
    assert r.status_code == 200 and r.content == b"z" * (64 * 65536)


def test_head_keeps_the_apps_content_length(server):
    with server.connect() as s:
        s.sendall(b"HEAD /length HTTP/1.1\r\nHost: t\r\n\r\nGET /length HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = Reader(s)
        status, headers, _ = reader.response(head_only=True)
        assert status == 200 and headers["content-length"] == "5"
        assert reader.response()[2] == b"12345"


@pytest.mark.parametrize("path, status", [("/fail-before", 500), ("/no-response", 500),
                                          ("/bad-header", 500), ("/bad-status", 500)])
def test_an_app_mistake_costs_one_response(server, path, status):
    with server.connect() as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
                  .encode())
        reader = Reader(s)
        first = reader.response()
        assert first[0] == status and b"injected" not in first[2]
        assert reader.response()[2] == b"hello"            # the same connection goes on


def test_an_app_failing_mid_response_cuts_it(server):
    with server.connect() as s:
        s.sendall(b"GET /fail-mid HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_until_close(s)
    assert data.startswith(b"HTTP/1.1 200") and b"a" * 10 in data
    assert not data.endswith(b"0\r\n\r\n")
    assert "ASGI app failed: GET /fail-mid" in server.log()


def test_a_websocket_handshake_the_app_fails_on_is_500_and_the_connection_closes(server):
    """The app asserts an http scope: its error is a 500, and what the client sent behind the
    handshake is never read as a request (a proxy may take the upgrade for done)."""
    with server.connect() as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                  b"\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_until_close(s)
    assert data.startswith(b"HTTP/1.1 500 ") and b"hello" not in data
    assert data.count(b"HTTP/1.1 ") == 1
    assert "AssertionError: websocket" in server.log()


def test_the_servers_own_routes_and_app_metrics_across_workers(server):
    assert httpx.get(server.url + "/healthz").text == "ok\n"
    assert httpx.get(server.url + "/readyz").status_code == 200
    before = _hits(server)
    for _ in range(30):
        httpx.get(server.url + "/hello")
    assert _hits(server) - before >= 30        # summed over both workers, from either one


def _hits(server) -> float:
    text = httpx.get(server.url + "/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("asgi_app_hits_total"))


def test_lifespan_shutdown_runs_in_each_worker(tmp_path):
    s = start_server(tmp_path, "--workers", "2", app=APP,
                     env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    wait_until(lambda: len(children(s.proc.pid)) == 2, what="two workers", server=s)
    workers = set(children(s.proc.pid))
    assert len(workers) == 2
    assert s.stop() == 0
    assert {int(p.name.split("-")[1]) for p in tmp_path.glob("shutdown-*")} == workers


@pytest.mark.parametrize("mode, message", [
    ("fail", "lifespan startup failed: no database"),
    ("raise", "lifespan startup failed: RuntimeError: startup exploded"),
])
def test_a_failing_lifespan_startup_stops_the_server_clearly(tmp_path, mode, message):
    proc = subprocess.run(
        [sys.executable, "-m", "fastsock", APP, "--port", str(free_port()), "--host",
         "127.0.0.1", "--workers", "2"], cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={**os.environ, "FASTSOCK_TEST_DIR": str(tmp_path), "ASGI_LIFESPAN": mode})
    assert proc.returncode == 3
    assert message in proc.stderr and "could not start the app" in proc.stderr


def test_an_app_without_lifespan_is_served_unless_lifespan_is_required(tmp_path):
    env = {"FASTSOCK_TEST_DIR": str(tmp_path), "ASGI_LIFESPAN": "none"}
    s = start_server(tmp_path, app=APP, env=env)
    try:
        assert httpx.get(s.url + "/hello").text == "hello"
        assert "does not take the lifespan scope" in s.log()
    finally:
        s.stop()
    proc = subprocess.run(
        [sys.executable, "-m", "fastsock", APP, "--port", str(free_port()), "--host",
         "127.0.0.1", "--lifespan", "on"], cwd=ROOT, capture_output=True, text=True,
        timeout=30, env={**os.environ, **env})
    assert proc.returncode == 3 and "--lifespan on" in proc.stderr


def test_drain_lets_an_app_request_in_flight_finish(tmp_path):
    s = start_server(tmp_path, "--workers", "1", app=APP,
                     env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    try:
        with s.connect() as c:
            c.sendall(b"GET /sleep?s=1 HTTP/1.1\r\nHost: t\r\n\r\n")
            wait_until(lambda: metric(s, "fastsock_requests_in_flight") >= 2,
                       what="the request in flight", server=s)
            os.kill(s.proc.pid, signal.SIGTERM)
            status, headers, body = Reader(c, 5).response()
        assert (status, body) == (200, b"slept") and headers.get("connection") == "close"
        assert s.proc.wait(10) == 0
    finally:
        s.stop()


def test_proxy_protocol_names_the_client(tmp_path):
    s = start_server(tmp_path, "--proxy-protocol", app=APP,
                     env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    try:
        with s.connect() as c:
            c.sendall(b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\n"
                      b"GET /x/scope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = read_until_close(c)
        assert json.loads(data.partition(b"\r\n\r\n")[2])["client"] == ["203.0.113.7", 5555]
    finally:
        s.stop()


def test_the_access_log_has_the_app_requests_with_their_ids(tmp_path):
    s = start_server(tmp_path, "--access-log", "json", app=APP,
                     env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    try:
        r = httpx.get(s.url + "/hello", headers={"X-Request-ID": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        wait_for_log(s, "abc-123", stream="stdout")
        line = json.loads(next(l for l in s.stdout().splitlines() if "abc-123" in l))
        assert line["path"] == "/hello" and line["status"] == 200
    finally:
        s.stop()


def tasks_by_worker(server) -> tuple[int, int]:
    pid, count = httpx.get(server.url + "/tasks").text.split()
    return int(pid), int(count)


def wait_for_tasks(server, pids: set, baseline: int, timeout: float = 5.0) -> dict:
    """Each worker's task count once it is back at baseline (the request's task ends a
    moment after its finally noted it); -> the last count seen from each pid."""
    seen: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, count = tasks_by_worker(server)
        seen[pid] = count
        if all(seen.get(p) == baseline for p in pids):
            break
        time.sleep(0.02)
    return seen


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("how", ["head", "leave"])
def test_an_endless_stream_that_is_not_sent_ends_the_apps_task(serve, tmp_path, workers, how):
    server = serve("--workers", str(workers), app=APP, env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    baseline = tasks_by_worker(server)[1]       # lifespan's: the same in every worker
    socks = [server.connect() for _ in range(3)]
    for i, s in enumerate(socks):
        listen = "&listen=1" if how == "head" and i == 0 else ""
        method = "HEAD" if how == "head" else "GET"
        s.sendall(f"{method} /forever?name=s{i}{listen} HTTP/1.1\r\nHost: t\r\n\r\n"
                  "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    for s in socks:
        reader = Reader(s)
        if how == "head":
            status, headers, _ = reader.response(head_only=True)
            assert status == 200 and headers["content-type"] == "text/event-stream"
            assert reader.response()[2] == b"ok\n"     # the next answer: no body between
        else:
            while b"data: x" not in reader.buf:
                reader._more()
        s.close()
    ends = [wait_for_text(tmp_path / f"s{i}", 5).split() for i in range(3)]
    assert [outcome for _, outcome in ends] == ["ClientDisconnected"] * 3, server.log()
    if how == "head":
        assert wait_for_text(tmp_path / "s0-receive") == "http.disconnect"
    pids = {int(pid) for pid, _ in ends}
    seen = wait_for_tasks(server, pids, baseline)
    assert all(seen.get(p) == baseline for p in pids), (baseline, seen)
