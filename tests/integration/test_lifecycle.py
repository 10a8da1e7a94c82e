"""The app's lifecycle over real servers: startup and shutdown hooks in each worker, a failing
startup stopping the server, importing the app in the workers only, request hooks,
middleware, error handlers and req.state."""
import os
import subprocess
import sys

import httpx
import pytest

from tests.support.servers import ROOT, children, free_port
from tests.support.waiting import wait_until

APP = "tests.apps.lifecycle:app"


def pids(tmp_path, what: str) -> set[int]:
    return {int(p.name.rsplit("-", 1)[1]) for p in tmp_path.glob(f"{what}-*")}


def test_startup_and_shutdown_hooks_run_in_each_worker(serve, tmp_path):
    server = serve("--workers", "2", app=APP, env={"LIFECYCLE_DIR": str(tmp_path)})
    wait_until(lambda: server.get("/readyz").status_code == 200, what="ready", server=server)
    workers = set(children(server.proc.pid))
    assert pids(tmp_path, "startup") == workers == pids(tmp_path, "async-startup")
    assert pids(tmp_path, "imported") == {server.proc.pid}      # preloaded by the master
    seen = {server.get("/pool").json()["pool"] for _ in range(20)}
    assert seen <= {f"pool of {w}" for w in workers}            # each worker its own pool
    assert server.stop() == 0
    assert pids(tmp_path, "shutdown") == workers


def test_no_preload_imports_the_app_in_the_workers_only(serve, tmp_path):
    server = serve("--workers", "2", "--no-preload", app=APP,
                   env={"LIFECYCLE_DIR": str(tmp_path)})
    wait_until(lambda: server.get("/readyz").status_code == 200, what="ready", server=server)
    assert pids(tmp_path, "imported") == set(children(server.proc.pid))
    assert server.get("/pool").status_code == 200


def test_a_failing_startup_hook_stops_the_server_with_a_clear_message(tmp_path):
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "fastsock", APP, "--port", str(port), "--host", "127.0.0.1",
         "--workers", "2"], cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={**os.environ, "LIFECYCLE_DIR": str(tmp_path), "FAIL_STARTUP": "1"})
    assert proc.returncode == 3
    assert "cannot run a startup hook" in proc.stderr
    assert "the database is not there" in proc.stderr
    assert "could not start the app" in proc.stderr


def test_an_async_hook_runs_around_a_plain_handler_too(serve, tmp_path):
    (tmp_path / "mixed.py").write_text(
        "from fastsock import App\n"
        "app = App()\n"
        "@app.before_request\n"
        "async def check(req):\n"
        "    if not req.headers.get('authorization'):\n"
        "        return 'who are you?', 401\n"
        "@app.get('/')\n"
        "def index(req):\n"
        "    return 'hello'\n")
    server = serve(app="mixed:app", env={"PYTHONPATH": str(tmp_path)})
    assert (server.get("/").status_code, server.get("/").text) == (401, "who are you?")
    assert server.get("/", headers={"Authorization": "x"}).text == "hello"


@pytest.fixture(scope="module")
def hooked(tmp_path_factory):
    from tests.support.servers import start_server
    tmp = tmp_path_factory.mktemp("hooked")
    s = start_server(tmp, app=APP, env={"LIFECYCLE_DIR": str(tmp)})
    yield s
    s.stop()


@pytest.mark.parametrize("path", ["/pool", "/async-pool"])
def test_hooks_and_middleware_wrap_plain_and_async_handlers(hooked, path):
    r = httpx.get(hooked.url + path)
    assert r.status_code == 200 and r.headers["x-after"] == "yes"
    # both middlewares wrap both routes: the async one, registered last, is the inner one
    assert r.json()["state"] == {"tagged": "before", "outer": "async middleware"}


def test_a_before_hook_can_answer_and_error_handlers_catch_by_type(hooked):
    r = httpx.get(hooked.url + "/pool", headers={"X-Block": "1"})
    assert r.status_code == 403 and r.text == "blocked by a hook\n"
    assert r.headers["x-after"] == "yes"                # after hooks see every response
    r = httpx.get(hooked.url + "/missing/cheese")
    assert r.status_code == 404 and r.text == "no such thing: cheese\n"
    r = httpx.get(hooked.url + "/async-missing")
    assert r.status_code == 404 and r.text == "no such thing: async\n"
    assert httpx.get(hooked.url + "/healthz").headers.get("x-after") is None
