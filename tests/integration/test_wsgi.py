"""WSGI (PEP 3333) apps over real sockets: the environ (checked by wsgiref.validate), wsgi.input
streamed, responses streamed, close() in every case (done, failed, client gone mid-body and
mid-response), start_response's exc_info, the thread pool."""
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.support.metrics import metric
from tests.support.servers import ROOT, free_port, start_server
from tests.support.sockets import Reader, garbage_left, post, read_until_close
from tests.support.waiting import wait_for_text, wait_until


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    return tmp_path_factory.mktemp("wsgi-out")


@pytest.fixture(scope="module")
def server(tmp_path_factory, outdir):
    s = start_server(tmp_path_factory.mktemp("wsgi"), "--workers", "2", "--threads", "4",
                     "--root-path", "/api", "--max-body-size", str(8 << 20),
                     app="tests.apps.wsgi:app",
                     env={"FASTSOCK_TEST_DIR": str(outdir)})
    yield s
    s.stop()


def test_the_environ_passes_wsgiref_validate_and_holds_the_request(server):
    r = httpx.post(server.url + "/environ/caf%C3%A9?a=1&b=%20", content=b"payload",
                   headers={"X-Thing": "one", "Content-Type": "text/x-test",
                            "X_Spoofed": "dropped"})
    assert r.status_code == 200, server.log()
    env = r.json()
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == "/api"
    assert env["PATH_INFO"] == "/environ/caf\xc3\xa9"          # the bytes, as latin-1
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["CONTENT_TYPE"] == "text/x-test"
    assert env["CONTENT_LENGTH"] == "7"
    assert env["HTTP_X_THING"] == "one"
    assert "HTTP_X_SPOOFED" not in env                          # "_" in a name: left out
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(server.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"].isdigit()
    assert env["wsgi.url_scheme"] == "http" and env["wsgi.version"] == [1, 0]
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is True
    assert env["wsgi.run_once"] is False and env["errors_writable"]
    assert env["body"] == "payload"


def test_a_request_leaves_nothing_for_the_cycle_collector(server):
    assert garbage_left(server, "/hello") < 10


def test_repeated_header_fields_are_joined(server):
    with server.connect() as s:
        s.sendall(b"GET /environ HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nX-A: 2\r\n\r\n")
        status, _, body = Reader(s).response()
    assert status == 200 and json.loads(body)["HTTP_X_A"] == "1,2"


def test_hello_then_head_on_one_connection(server):
    with server.connect() as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\nHEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = Reader(s)
        status, headers, body = reader.response()
        assert (status, headers["content-type"], body) == (200, "text/plain", b"hello")
        status, headers, _ = reader.response(head_only=True)
    assert status == 200


def test_the_app_runs_in_the_thread_pool_and_a_blocking_one_stalls_nothing(server):
    assert httpx.get(server.url + "/thread").text.startswith("fastsock-handler")
    slow = threading.Thread(target=httpx.get, args=(server.url + "/sleep?s=3",),
                            kwargs={"timeout": 10})
    slow.start()
    try:
        # /metrics counts itself: 2 is the blocking request and this one
        wait_until(lambda: metric(server, "fastsock_requests_in_flight") >= 2,
                   what="the blocking request in its thread")
        for _ in range(5):
            assert httpx.get(server.url + "/hello").text == "hello"
        assert metric(server, "fastsock_requests_in_flight") >= 2    # it still runs
    finally:
        slow.join()


def test_a_long_body_is_streamed_to_wsgi_input_while_it_arrives(server, outdir):
    size = 4 << 20
    with server.connect(timeout=10) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        s.sendall(b"x" * (size // 2))
        # the app has read the first part before the rest is even sent
        assert int(wait_for_text(outdir / "upload-started", 5)) > 0
        assert not (outdir / "upload-done").exists()
        s.sendall(b"x" * (size - size // 2))
        status, _, body = Reader(s, 10).response()
    total, reads = map(int, body.split())
    assert status == 200 and total == size and reads > 1


def test_a_chunked_body_reads_by_lines(server):
    lines = b"".join(b"line %d\n" % i for i in range(50000))
    with server.connect(timeout=10) as s:
        post(s, "/read-lines", lines, chunked=True)
        status, _, body = Reader(s, 10).response()
    assert status == 200 and body == b"50000 lines; last line 49999\n"


def test_a_streamed_body_past_the_limit_is_413(server):
    with server.connect(timeout=10) as s:
        post(s, "/upload", os.urandom(9 << 20), chunked=True)    # --max-body-size 8 MiB
        status, headers, _ = Reader(s, 10).response()
    assert status == 413 and headers.get("connection") == "close"


def test_an_iterable_is_streamed_as_it_is_made_and_closed(server, outdir):
    with server.connect(timeout=10) as s:
        s.sendall(b"GET /stream?n=3&delay=0.5&name=streamed HTTP/1.1\r\nHost: t\r\n\r\n")
        data = s.recv(65536)
        while b"chunk 0" not in data:
            data += s.recv(65536)
        assert b"Transfer-Encoding: chunked" in data
        assert b"chunk 2" not in data                          # not held for the rest
        while not data.endswith(b"0\r\n\r\n"):
            data += s.recv(65536)
    assert b"chunk 2" in data
    assert wait_for_text(outdir / "streamed") == "closed after 3"


@pytest.mark.parametrize("status", [204, 304])
def test_a_bodiless_status_sends_no_body_of_a_streamed_iterable(server, outdir, status):
    # issue 19: no chunked framing after a 204 or 304: the next response is read right
    name = f"bodiless-{status}"
    with server.connect(timeout=10) as s:
        s.sendall(b"GET /bodiless?status=%d&name=%s HTTP/1.1\r\nHost: t\r\n\r\n"
                  % (status, name.encode()) + b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = Reader(s)
        got, headers, _ = reader.response()
        assert (got, reader.response()[::2]) == (status, (200, b"hello"))
        assert "transfer-encoding" not in headers and "content-length" not in headers
    assert wait_for_text(outdir / name).startswith("closed")


def test_close_is_called_when_the_client_leaves_mid_response(server, outdir):
    s = server.connect()
    s.sendall(b"GET /stream?n=100&delay=0.1&name=left-mid HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while b"chunk 0" not in data:
        data += s.recv(65536)
    s.close()
    text = wait_for_text(outdir / "left-mid", 5)
    assert text.startswith("closed after") and int(text.split()[-1]) < 100
    assert httpx.get(server.url + "/hello").text == "hello"


def test_close_is_called_when_the_client_leaves_mid_body(server, outdir):
    s = server.connect()
    s.sendall(b"POST /upload-closing HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
    s.sendall(b"y" * 200000)
    wait_until(lambda: metric(server, "fastsock_requests_in_flight") >= 2,
               what="the app reading the body")
    s.close()
    assert wait_for_text(outdir / "upload-closed", 5) == "closed"
    assert wait_for_text(outdir / "upload-error", 5) == "ClientDisconnected"
    assert httpx.get(server.url + "/hello").text == "hello"


def test_an_app_failing_before_its_body_is_a_500_and_closed(server, outdir):
    r = httpx.get(server.url + "/fail-before")
    assert r.status_code == 500
    assert wait_for_text(outdir / "fail-before") == "closed after 0"
    assert "WSGI app failed: GET /fail-before" in server.log()


def test_an_app_failing_mid_response_cuts_the_stream_and_is_closed(server, outdir):
    with server.connect() as s:
        s.sendall(b"GET /fail-mid HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_until_close(s)
    assert data.startswith(b"HTTP/1.1 200") and b"a" * 10 in data
    assert not data.endswith(b"0\r\n\r\n")                  # never ended as if complete
    assert wait_for_text(outdir / "fail-mid") == "closed after 2"


def test_exc_info_before_the_head_replaces_the_response(server):
    r = httpx.get(server.url + "/exc-info")
    assert r.status_code == 500 and r.text == "error page"


def test_exc_info_after_the_head_reraises_and_cuts_the_response(server):
    with server.connect() as s:
        s.sendall(b"GET /exc-info-late HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_until_close(s)
    assert data.startswith(b"HTTP/1.1 200") and b"first" in data and b"never" not in data
    assert "ValueError: late" in server.log()


def test_start_response_twice_without_exc_info_is_a_500(server):
    assert httpx.get(server.url + "/second-start").status_code == 500


def test_the_legacy_write_callable(server):
    assert httpx.get(server.url + "/write").text == "written returned"


def test_nothing_the_app_hands_over_reaches_the_wire_unchecked(server):
    r = httpx.get(server.url + "/bad-header")
    assert r.status_code == 500 and "injected" not in r.headers
    assert httpx.get(server.url + "/str-body").status_code == 500
    assert httpx.get(server.url + "/hello").text == "hello"


def test_the_servers_own_routes_answer_before_the_app(server):
    assert httpx.get(server.url + "/healthz").text == "ok\n"
    assert httpx.get(server.url + "/readyz").status_code == 200
    assert httpx.post(server.url + "/healthz").status_code == 405
    assert "fastsock_requests_total" in httpx.get(server.url + "/metrics").text


def test_a_plain_wsgi_app_is_one_bounded_route_label(server):
    for path in ("/hello", "/hello?x=1", "/stream?n=1", "/nope/1", "/nope/2"):
        httpx.get(server.url + path)
    text = httpx.get(server.url + "/metrics").text
    routes = {line.split('route="')[1].split('"')[0] for line in text.splitlines()
              if line.startswith("fastsock_requests_total{")}
    assert routes <= {"*", "/healthz", "/readyz", "/metrics"}, routes


def test_interface_wsgi_is_taken_as_told(tmp_path):
    s = start_server(tmp_path, "--interface", "wsgi", app="tests.apps.wsgi:app",
                     env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    try:
        assert httpx.get(s.url + "/hello").text == "hello"
    finally:
        s.stop()


def test_a_wsgi_app_needs_threads():
    proc = subprocess.run(
        [sys.executable, "-m", "fastsock", "tests.apps.wsgi:app", "--port", str(free_port()),
         "--host", "127.0.0.1", "--threads", "0"], cwd=ROOT, capture_output=True, text=True,
        timeout=30)
    assert proc.returncode == 3 and "--threads must be above 0" in proc.stderr


def get_when_free(server, path: str, timeout: float = 5.0):
    """GET path, asked again while it is a 503 (pool full), up to the deadline: a thread's
    end is counted on the loop a moment after the app's close() has noted it."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(server.url + path)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(0.02)


def endless_server(serve, tmp_path, workers: int):
    # as many threads as streams, and no queue: one stream still held makes the GET a 503
    return serve("--workers", str(workers), "--threads", "2", "--thread-backlog", "0",
                 app="tests.apps.wsgi:app", env={"FASTSOCK_TEST_DIR": str(tmp_path)})


@pytest.mark.parametrize("workers", [1, 2])
def test_head_on_an_endless_stream_closes_it_and_frees_its_thread(serve, tmp_path, workers):
    server = endless_server(serve, tmp_path, workers)
    socks = [server.connect() for _ in range(2)]
    for i, s in enumerate(socks):
        s.sendall(f"HEAD /forever?name=head-{i} HTTP/1.1\r\nHost: t\r\n\r\n"
                  "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    for s in socks:
        reader = Reader(s)
        status, headers, _ = reader.response(head_only=True)
        assert status == 200 and headers["content-type"] == "text/event-stream"
        assert reader.response()[2] == b"ok\n"         # the next answer: no body between
        s.close()
    for i in range(2):
        assert wait_for_text(tmp_path / f"head-{i}", 5) == "finally", server.log()
    assert get_when_free(server, "/hello").status_code == 200


@pytest.mark.parametrize("workers", [1, 2])
def test_a_client_leaving_an_endless_stream_closes_it_and_frees_its_thread(serve, tmp_path,
                                                                           workers):
    server = endless_server(serve, tmp_path, workers)
    socks = [server.connect() for _ in range(2)]
    for i, s in enumerate(socks):
        s.sendall(f"GET /forever?name=left-{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    for s in socks:
        data = b""
        while b"data: x" not in data:
            data += s.recv(65536)
        s.close()
    for i in range(2):
        assert wait_for_text(tmp_path / f"left-{i}", 5) == "finally", server.log()
    assert get_when_free(server, "/hello").status_code == 200
