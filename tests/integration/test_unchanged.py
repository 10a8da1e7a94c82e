"""Apps served unchanged (issue 21, point 3): real Flask, FastAPI, Django and native apps over
real sockets keep their framing and headers (a declared Content-Length however the body
arrives, one Date, HEAD announcing what GET sends or nothing), read the host of an absolute-form
target, get their cookies joined as the frameworks expect, log a failing body's traceback,
win over fastsock's reserved paths (said once at start), add their checks to readiness, and
never show a refused body as their traceback."""
from __future__ import annotations

import os
import signal
import socket

import pytest

from tests.apps.unchanged import (
    APP_DATE, BIG, GEN_BODY, LONG_DECLARED, PIECE, SHORT_DECLARED, SHORT_SENT,
)
from tests.support.metrics import samples
from tests.support.servers import ready, start_server
from tests.support.sockets import read_until_close
from tests.support.waiting import wait_for_log, wait_until

GEN = b"".join(GEN_BODY)
SERVER_METRICS = "/fastsock/metrics"


def scrape(server) -> str:
    return server.get(getattr(server, "metrics_path", "/metrics")).text


@pytest.fixture(scope="module")
def flagdir(tmp_path_factory):
    return tmp_path_factory.mktemp("unchanged-flags")


def _start(tmp_path_factory, flagdir, app: str, *args: str):
    return start_server(tmp_path_factory.mktemp(app.rsplit(":", 1)[1]), "--workers", "2",
                        *args, app=app, env={"FASTSOCK_TEST_DIR": str(flagdir)})


@pytest.fixture(scope="module")
def flask(tmp_path_factory, flagdir):
    s = _start(tmp_path_factory, flagdir, "tests.apps.unchanged:flask_app", "--threads", "4")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def fastapi(tmp_path_factory, flagdir):
    # its own /metrics is the app's (test_a_default_reserved_path...): the server's moved
    s = _start(tmp_path_factory, flagdir, "tests.apps.unchanged:fastapi_app",
               "--metrics-path", SERVER_METRICS)
    s.metrics_path = SERVER_METRICS
    yield s
    s.stop()


@pytest.fixture(scope="module")
def django(tmp_path_factory, flagdir):
    s = _start(tmp_path_factory, flagdir, "tests.apps.django_unchanged:app")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def native(tmp_path_factory, flagdir):
    s = _start(tmp_path_factory, flagdir, "tests.apps.unchanged:native_app")
    yield s
    s.stop()


@pytest.fixture
def servers(flask, fastapi, django, native):
    return {"flask": flask, "fastapi": fastapi, "django": django, "native": native}


class Exchange:
    """One request on a raw socket: the head's lines as sent (repeats kept), the body as
    framed, and whether the server closed the connection after it."""

    def __init__(self, server, target: str, method: str = "GET", extra: str = ""):
        with server.connect(timeout=10) as sock:
            sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n"
                         .encode("latin-1"))
            data = read_until_close(sock, timeout=10) if method != "HEAD" else \
                self._head_only(sock)
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.fields = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
        self.headers = {k.lower(): v for k, v in self.fields}
        self.raw_rest = rest
        self.body = self._unframe(rest) if method != "HEAD" else b""

    @staticmethod
    def _head_only(sock: socket.socket) -> bytes:
        sock.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                break
            data += more
        return data

    def _unframe(self, rest: bytes) -> bytes:
        if self.headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                if not size_line:
                    return body             # cut before its end
                size = int(size_line, 16)
                if size == 0:
                    return body
                body, rest = body + rest[:size], rest[size + 2:]
        return rest

    def count(self, name: str) -> int:
        return sum(1 for k, _ in self.fields if k.lower() == name.lower())


def _closed_by(server, reason: str) -> float:
    return samples(scrape(server), "fastsock_connections_closed_total").get(
        f'{{reason="{reason}"}}', 0.0)


# ---------------------------------------------------------------- framing and headers

@pytest.mark.parametrize("app, path, size", [
    ("flask", "/file", BIG), ("django", "/file", BIG),
    ("fastapi", "/parts", 4 * PIECE), ("fastapi", "/file", BIG),
])
def test_a_declared_content_length_is_sent_as_such_however_the_body_arrives(
        servers, app, path, size):
    server = servers[app]
    r = Exchange(server, path, extra="Connection: close\r\n")
    assert r.status == 200, server.log()
    assert r.headers.get("content-length") == str(size), r.fields
    assert "transfer-encoding" not in r.headers
    assert len(r.body) == size
    if path == "/file":
        assert r.body[:512] == bytes(range(256)) * 2


@pytest.mark.parametrize("app, path", [("flask", "/file"), ("fastapi", "/date")])
def test_the_apps_date_is_the_only_date(servers, app, path):
    r = Exchange(servers[app], path, extra="Connection: close\r\n")
    assert r.status == 200
    assert r.count("date") == 1, r.fields
    if app == "fastapi":
        assert r.headers["date"] == APP_DATE


def test_a_response_without_a_date_still_gets_the_servers(fastapi):
    r = Exchange(fastapi, "/host", extra="Connection: close\r\n")
    assert r.count("date") == 1 and r.headers["date"].endswith(" GMT")


@pytest.mark.parametrize("app", ["flask", "fastapi"])
def test_head_announces_what_get_sends_or_nothing(servers, app):
    server = servers[app]
    get = Exchange(server, "/gen", extra="Connection: close\r\n")
    assert get.body == GEN
    head = Exchange(server, "/gen", method="HEAD")
    assert head.status == 200
    assert head.headers.get("content-length") in (None, str(len(GEN))), head.fields
    assert "transfer-encoding" not in head.headers or \
        get.headers.get("transfer-encoding") == "chunked"


@pytest.mark.parametrize("app", ["flask", "fastapi"])
def test_a_body_shorter_than_declared_is_cut_logged_and_counted(servers, app):
    server = servers[app]
    before = _closed_by(server, "response_length")
    r = Exchange(server, "/short")          # keep-alive asked: the server closes it anyway
    assert r.headers["content-length"] == str(SHORT_DECLARED)
    assert "transfer-encoding" not in r.headers
    assert len(r.raw_rest) == SHORT_SENT    # what it sent, then the close: never more
    wait_for_log(server, "fewer bytes than its Content-Length")
    wait_until(lambda: _closed_by(server, "response_length") == before + 1,
               what="the broken length counted", server=server)


@pytest.mark.parametrize("app", ["flask", "fastapi"])
def test_a_body_longer_than_declared_is_cut_at_the_declared_length(servers, app):
    server = servers[app]
    before = _closed_by(server, "response_length")
    r = Exchange(server, "/long")
    assert r.headers["content-length"] == str(LONG_DECLARED)
    assert len(r.raw_rest) == LONG_DECLARED     # the rest never goes, and the connection ends
    wait_for_log(server, "more bytes than its Content-Length")
    wait_until(lambda: _closed_by(server, "response_length") == before + 1,
               what="the broken length counted", server=server)


# ---------------------------------------------------------------- the request as the app sees it

@pytest.mark.parametrize("app", ["flask", "fastapi", "native"])
def test_the_authority_of_an_absolute_form_target_is_the_host(servers, app):
    r = Exchange(servers[app], "http://other.example:9000/host?x=1",
                 extra="Connection: close\r\n")
    assert r.status == 200, servers[app].log()
    import json
    seen = json.loads(r.body)
    assert seen["host"] == "other.example:9000"
    if app == "flask":
        assert seen["HTTP_HOST"] == "other.example:9000"
        assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("other.example", "9000")
    if app != "native":
        assert seen["url"] == "http://other.example:9000/host?x=1"


def test_an_origin_form_target_keeps_the_host_field(flask):
    import json
    r = Exchange(flask, "/host", extra="Connection: close\r\n")
    seen = json.loads(r.body)
    assert seen["host"] == "127.0.0.1" and seen["SERVER_NAME"] == "127.0.0.1"
    assert seen["SERVER_PORT"] == str(flask.port)


def test_two_cookie_lines_are_joined_with_a_semicolon_for_wsgi(flask):
    import json
    r = Exchange(flask, "/cookies", extra="Cookie: a=1\r\nCookie: b=2; c=3\r\n"
                 "Connection: close\r\n")
    seen = json.loads(r.body)
    assert seen["HTTP_COOKIE"] == "a=1; b=2; c=3"
    assert seen["cookies"] == {"a": "1", "b": "2", "c": "3"}


def test_a_wsgi_body_failing_half_way_logs_its_own_traceback(flask):
    r = Exchange(flask, "/fail-mid")
    assert r.raw_rest.startswith(b"b\r\nfirst part\n")      # chunked, never terminated
    assert not r.raw_rest.endswith(b"0\r\n\r\n")
    log = wait_for_log(flask, "fail-mid marker")
    assert "Traceback" in log and "NoneType: None" not in log, log


# ---------------------------------------------------------------- fastsock's paths and the app's

@pytest.mark.parametrize("app, path", [
    ("flask", "/healthz"), ("fastapi", "/healthz"), ("django", "/healthz"),
    ("native", "/healthz"),
])
def test_the_apps_own_route_wins_over_a_reserved_path_and_is_said_once(servers, app, path):
    server = servers[app]
    r = server.get(path)
    if path == "/healthz":
        assert (r.status_code in (200, 503) and r.json() == {"db": "down"}), r.text
    else:
        assert r.text == "app metrics\n"
    log = server.log()
    said = [line for line in log.splitlines() if f"the app's own {path} " in line]
    assert len(said) == 1, log                  # one line, from the master, not one a worker


def test_a_reserved_path_the_app_does_not_have_stays_the_servers(servers):
    for server in servers.values():
        assert server.get("/readyz").status_code == 200
    assert "fastsock_requests_total" in servers["flask"].get("/metrics").text


def test_a_moved_reserved_path_serves_beside_the_apps(tmp_path, flagdir):
    s = start_server(tmp_path, "--healthz-path", "/fastsock/healthz",
                     app="tests.apps.unchanged:fastapi_app",
                     env={"FASTSOCK_TEST_DIR": str(flagdir)})
    try:
        assert s.get("/healthz").json() == {"db": "down"}
        assert s.get("/fastsock/healthz").status_code == 200
        assert "the app's own /healthz" not in s.log()
        # /metrics is left where it is: the app's own wins, said once (no metrics here)
        assert s.get("/metrics").text == "app metrics\n"
        said = [line for line in s.log().splitlines() if "the app's own /metrics " in line]
        assert len(said) == 1 and "--metrics-path" in said[0], s.log()
    finally:
        s.stop()


def test_a_catch_all_route_leaves_the_reserved_paths_to_the_server(tmp_path):
    (tmp_path / "catchall.py").write_text(
        "from flask import Flask\n"
        "app = Flask(__name__)\n"
        "@app.get('/<path:anything>')\n"
        "def page(anything):\n"
        "    return 'page ' + anything\n")
    s = start_server(tmp_path, app="catchall:app", env={"PYTHONPATH": f"{tmp_path}:"
                                                         + os.environ.get("PYTHONPATH", "")})
    try:
        assert s.get("/some/page").text == "page some/page"
        assert s.get("/healthz").text != "page healthz"
        assert s.get("/readyz").status_code == 200
        assert "the app's own" not in s.log()
    finally:
        s.stop()


def test_the_apps_check_joins_readiness(tmp_path, flagdir):
    s = start_server(tmp_path, "--ready-check", "tests.apps.unchanged:ready_check",
                     app="tests.apps.unchanged:flask_app",
                     env={"FASTSOCK_TEST_DIR": str(flagdir)})
    flag = flagdir / "db-down"
    try:
        wait_until(lambda: ready(s) == 200, what="ready", server=s)
        flag.touch()
        wait_until(lambda: ready(s) == 503, what="the app's check says not ready", server=s)
        assert s.get("/healthz").json() == {"db": "down"}       # liveness is not readiness
        flag.unlink()
        wait_until(lambda: ready(s) == 200, what="ready again", server=s)
    finally:
        flag.unlink(missing_ok=True)
        s.stop()


def test_a_raising_check_is_not_ready_and_logged(tmp_path, flagdir):
    s = start_server(tmp_path, "--ready-check", "tests.apps.unchanged:raising_ready_check",
                     app="tests.apps.unchanged:native_app")
    try:
        # (asked again until the check has run: a 503 may come first from the start)
        wait_until(lambda: ready(s) == 503 and "the database does not answer" in s.log(),
                   what="not ready, the check's failure logged", server=s)
    finally:
        s.stop()


def test_draining_is_not_ready_whatever_the_apps_check_says(tmp_path, flagdir):
    s = start_server(tmp_path, "--ready-check", "tests.apps.unchanged:ready_check",
                     "--shutdown-delay", "3", app="tests.apps.unchanged:fastapi_app",
                     env={"FASTSOCK_TEST_DIR": str(flagdir)})
    try:
        wait_until(lambda: ready(s) == 200, what="ready", server=s)
        s.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: ready(s) == 503, what="readiness off on SIGTERM", server=s)
        assert s.proc.wait(20) == 0
    finally:
        s.stop()


@pytest.mark.parametrize("value, says", [
    ("nomodule_xyz:check", "--ready-check"), ("tests.apps.unchanged:missing", "--ready-check"),
    ("no-colon", "--ready-check"), ("tests.apps.unchanged:BIG", "--ready-check"),
])
def test_a_bad_ready_check_stops_the_start_in_one_line(tmp_path, value, says):
    import subprocess
    import sys

    from tests.support.servers import ROOT, free_port
    proc = subprocess.run(
        [sys.executable, "-m", "fastsock", "tests.apps.unchanged:native_app", "--port",
         str(free_port()), "--host", "127.0.0.1", "--ready-check", value],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------- a refused body

def _upload(server, size: int, chunked: bool) -> int:
    from tests.support.sockets import post
    with server.connect(timeout=10) as sock:
        try:
            post(sock, "/upload", b"u" * size, chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass                        # refused before the body was all sent
        data = read_until_close(sock, timeout=10)
    return int(data.split(b" ", 2)[1]) if data else 0


@pytest.mark.parametrize("app", ["flask", "fastapi"])
@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_a_refused_body_is_a_413_and_one_line_never_the_apps_traceback(
        tmp_path, flagdir, app, chunked):
    s = start_server(tmp_path, "--threads", "2", "--metrics-path", SERVER_METRICS,
                     app=f"tests.apps.unchanged:{app}_app",
                     env={"FASTSOCK_TEST_DIR": str(flagdir)})
    s.metrics_path = SERVER_METRICS
    try:
        assert _upload(s, 2 * 1024 * 1024, chunked) == 413
        log = wait_for_log(s, "413")
        assert s.get("/upload").status_code == 405      # the worker serves on
        log = s.log()
        assert "Traceback" not in log and "ClientDisconnected" not in log, log
        assert "ClientDisconnect" not in log and "Exception on" not in log, log
        assert len([line for line in log.splitlines() if "413" in line]) == 1, log
        assert sum(samples(scrape(s), "fastsock_requests_total").values()) >= 1
    finally:
        s.stop()


@pytest.mark.parametrize("app", ["flask", "fastapi"])
def test_pipelined_heads_without_a_length_leave_the_connection_in_step(servers, app):
    """A HEAD whose head says no length sends no body: the next response on the same
    connection starts right after it (a client that trusts framing is never misled)."""
    from tests.support.sockets import Reader
    with servers[app].connect(timeout=10) as sock:
        sock.sendall(b"HEAD /gen HTTP/1.1\r\nHost: t\r\n\r\n" * 2 +
                     b"GET /gen HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = Reader(sock)
        for _ in range(2):
            status, headers, _ = reader.response(head_only=True)
            assert status == 200 and headers.get("content-length") in (None, str(len(GEN)))
        status, headers, body = reader.response()
        assert (status, body) == (200, GEN)
