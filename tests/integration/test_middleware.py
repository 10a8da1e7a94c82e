"""Issue 21, "Must hold 4": one middleware model, over real sockets. Every handler kind (inline,
async, threaded; whole or streamed; each return value) x middleware written plain, async, or
one of each in both orders (tests/apps/middleware.py): the auth middleware keeps every route
shut without the header (the handler never runs), and the tagger always sees a Response it can
change (a header, the status)."""
import subprocess
import sys

import httpx
import pytest

from tests.support.servers import ROOT, free_port
from tests.support.waiting import wait_for_text

ROUTES = {          # path -> (status, content type, body) of the handler's answer
    "/inline": (200, "text/plain; charset=utf-8", b"inline"),
    "/bytes": (200, "application/octet-stream", b"raw"),
    "/json": (200, "application/json", b'{"kind":"json"}'),
    "/tuple": (201, "text/plain; charset=utf-8", b"made"),
    "/response": (202, "text/x-resp", b"resp"),
    "/none": (204, None, b""),
    "/async": (200, "application/json", b'{"kind":"async"}'),
    "/threaded": (200, "text/plain; charset=utf-8", b"threaded"),
    "/stream/inline": (200, "application/octet-stream", b"0,1,2,"),
    "/stream/async": (200, "application/octet-stream", b"0,1,2,"),
    "/stream/threaded": (200, "application/octet-stream", b"0,1,2,"),
}
APPS = {            # app -> the taggers it has
    "sync_app": ("sync",), "async_app": ("async",), "mixed_app": ("async",),
    "mixed_inverse_app": ("sync",),
}
AUTH = {"Authorization": "yes"}


@pytest.fixture(scope="module", params=sorted(APPS))
def server(request, tmp_path_factory):
    from tests.support.servers import start_server
    s = start_server(tmp_path_factory.mktemp("middleware"), "--workers", "1", "--threads", "4",
                     app=f"tests.apps.middleware:{request.param}")
    s.taggers = APPS[request.param]
    yield s
    s.stop()


def calls(server) -> int:
    return httpx.get(server.url + "/calls", headers=AUTH).json()["n"]


@pytest.mark.parametrize("path", sorted(ROUTES))
def test_auth_middleware_shuts_every_kind_of_route(server, path):
    before = calls(server)
    r = httpx.get(server.url + path)
    assert (r.status_code, r.text) == (401, "denied")
    assert calls(server) == before                  # the handler never ran


@pytest.mark.parametrize("path", sorted(ROUTES))
def test_middleware_sees_a_response_it_can_change(server, path):
    status, content_type, body = ROUTES[path]
    r = httpx.get(server.url + path, headers=AUTH)
    assert r.status_code == status, server.log()
    assert r.content == body
    assert r.headers.get("content-type") == content_type
    for name in server.taggers:
        assert r.headers[f"x-seen-{name}"] == f"Response {status}"
    if path == "/tuple":
        assert r.headers["x-handler"] == "1"        # the handler's own headers kept
    r = httpx.get(server.url + path + "?teapot=1", headers=AUTH)
    assert r.status_code == 418
    assert r.content == (b"" if status == 204 else body)


def test_nothing_was_logged_as_an_error(server):
    httpx.get(server.url + "/stream/threaded", headers=AUTH)
    assert "Traceback" not in server.log() and "ERROR" not in server.log()


def test_a_plain_middleware_over_async_parts_never_deadlocks_a_small_pool(serve):
    # mixed_app: the plain auth (in a pool thread, waiting on the asyncio loop) outside the
    # async tagger, around a threaded handler that needs a pool thread of its own: with one
    # thread and four requests at once, every one is answered
    from concurrent.futures import ThreadPoolExecutor
    server = serve("--threads", "1", app="tests.apps.middleware:mixed_app")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: httpx.get(server.url + "/threaded", headers=AUTH,
                                                    timeout=20), range(4)))
    assert [(r.status_code, r.text) for r in answers] == [(200, "threaded")] * 4


def test_without_a_pool_a_plain_middleware_around_async_parts_stops_the_start():
    proc = subprocess.run(
        [sys.executable, "-m", "fastsock", "tests.apps.middleware:mixed_app", "--port",
         str(free_port()), "--host", "127.0.0.1", "--workers", "1", "--threads", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "sync_auth is a plain middleware around an async part" in proc.stderr
    assert "(--threads 0)" in proc.stderr


def test_a_middleware_that_returns_nothing_is_a_500_naming_it(serve):
    server = serve(app="tests.apps.middleware:forgetful_app")
    r = server.get("/inline")
    assert (r.status_code, r.text) == (500, "Internal Server Error\n")
    assert "the middleware forgetful returned None" in server.log()


def test_a_client_that_leaves_cancels_the_async_handler_under_any_middleware(server, tmp_path):
    mark = tmp_path / "mark"
    s = server.connect()
    s.sendall(f"GET /async/wait?mark={mark} HTTP/1.1\r\nHost: t\r\nAuthorization: yes\r\n\r\n"
              .encode())
    # once the handler runs (a client that leaves before: it never starts)
    assert wait_for_text(tmp_path / "mark.started", timeout=10) == "started"
    s.close()
    assert wait_for_text(mark, timeout=10) == "cancelled"
