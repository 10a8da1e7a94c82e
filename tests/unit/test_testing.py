"""fastsock.testing.TestClient: the app in this process, through the same connection, parser,
dispatcher, hooks and writer as the server — no socket. The app-level tests use it."""
import os

import pytest

from fastsock import App, HTTPError, Response
from fastsock.testing import TestClient


@pytest.fixture
def app():
    app = App()

    @app.get("/")
    def index(req):
        return "hello"

    @app.get("/users/{user_id:int}")
    def user(req, user_id):
        return {"id": user_id, "client": list(req.client)}

    @app.post("/echo")
    def echo(req):
        return req.body

    @app.post("/json")
    def post_json(req):
        return {"got": req.json()}, 201

    @app.get("/async")
    async def in_async(req):
        import asyncio
        await asyncio.sleep(0.01)
        return {"async": True}

    @app.get("/thread", threaded=True)
    def in_thread(req):
        import threading
        return threading.current_thread().name

    @app.get("/teapot")
    def teapot(req):
        raise HTTPError(418, "short and stout")

    @app.get("/boom")
    def boom(req):
        raise RuntimeError("exploded")

    @app.get("/stream")
    def stream(req):
        return Response(f"{i}," for i in range(5))

    @app.get("/inject")
    def inject(req):
        return Response("x", headers=[("X-Evil", "a\r\nSet-Cookie: b")])
    return app


def test_routes_params_bodies_and_statuses(app):
    with TestClient(app) as client:
        assert client.get("/").text == "hello"
        assert client.get("/users/7").json() == {"id": 7, "client": ["testclient", 50000]}
        assert client.post("/echo", content=b"abc").content == b"abc"
        r = client.post("/json", json={"k": [1, 2]})
        assert r.status_code == 201 and r.json() == {"got": {"k": [1, 2]}}
        assert client.post("/json", content=b"{nope").status_code == 400
        assert client.get("/missing").status_code == 404
        assert client.post("/").status_code == 405
        assert client.head("/").content == b""


def test_async_threaded_errors_and_streams_as_the_server_runs_them(app):
    with TestClient(app) as client:
        assert client.get("/async").json() == {"async": True}
        assert client.get("/thread").text.startswith("fastsock-handler")
        r = client.get("/teapot")
        assert r.status_code == 418 and r.text == "short and stout"
        assert client.get("/boom").status_code == 500
        assert client.get("/stream").text == "0,1,2,3,4,"
        assert client.get("/inject").status_code == 500      # the writer's validation too


def test_hooks_and_lifecycle_run_in_the_client(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFECYCLE_DIR", str(tmp_path))
    import importlib
    import tests.apps.lifecycle as module
    module = importlib.reload(module)
    with TestClient(module.app) as client:
        assert (tmp_path / f"startup-{os.getpid()}").exists()
        r = client.get("/pool")
        assert r.headers["x-after"] == "yes"
        assert r.json()["state"] == {"tagged": "before", "outer": "sync middleware"}
        assert client.get("/async-pool").json()["state"]["outer"] == "async middleware"
        assert client.get("/missing/x").status_code == 404
        assert client.get("/pool", headers={"X-Block": "1"}).status_code == 403
    assert (tmp_path / f"shutdown-{os.getpid()}").exists()


def test_a_handler_that_never_answers_is_a_read_timeout_not_a_hang():
    import threading

    import httpx
    app = App()
    release = threading.Event()

    @app.get("/stuck", threaded=True)
    def stuck(req):
        release.wait(10)
        return "late"

    @app.get("/ok")
    def ok(req):
        return "ok"

    with TestClient(app, timeout=0.3) as client:        # httpx's timeout
        with pytest.raises(httpx.ReadTimeout):     # the handler waits 10 s for release
            client.get("/stuck")
        release.set()
        assert client.get("/ok").text == "ok"
