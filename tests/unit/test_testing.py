"""fastsock.testing.TestClient: the app in this process, through the same connection, parser,
dispatcher, hooks and writer as the server — no socket. The app-level tests use it."""
import os

import httpx
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
    with TestClient(app, raise_server_exceptions=False) as client:
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
        # both middlewares wrap both routes: the async one, registered last, is the inner one
        assert r.json()["state"] == {"tagged": "before", "outer": "async middleware"}
        assert client.get("/async-pool").json()["state"]["outer"] == "async middleware"
        assert client.get("/missing/x").status_code == 404
        assert client.get("/pool", headers={"X-Block": "1"}).status_code == 403
    assert (tmp_path / f"shutdown-{os.getpid()}").exists()


def test_a_handler_that_never_answers_is_a_read_timeout_not_a_hang():
    import threading

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


def test_a_timed_out_request_never_stalls_the_next():
    """Issue 21: after one request timed out, the next waited for the first handler. Handlers
    that block past the client's timeout (a thread, a task) stay blocked while the next
    requests are answered."""
    import asyncio
    import threading

    app = App()
    release = threading.Event()

    @app.get("/stuck-thread", threaded=True, timeout=60)
    def stuck_thread(req):
        release.wait(30)
        return "late"

    @app.get("/stuck-task", timeout=60)
    async def stuck_task(req):
        while not release.is_set():
            await asyncio.sleep(0.01)
        return "late"

    @app.get("/stuck-stream")
    def stuck_stream(req):
        async def events():
            yield "first\n"
            while not release.is_set():
                await asyncio.sleep(0.01)
        return Response(events(), content_type="text/event-stream")

    @app.get("/ok")
    def ok(req):
        return "ok"

    @app.get("/ok-async")
    async def ok_async(req):
        return "ok"

    try:
        with TestClient(app, timeout=0.3) as client:
            for stuck in ("/stuck-thread", "/stuck-task", "/stuck-stream"):
                with pytest.raises(httpx.ReadTimeout):
                    client.get(stuck)
                assert not release.is_set()
                assert client.get("/ok").text == "ok"
                assert client.get("/ok-async").text == "ok"
    finally:
        release.set()


@pytest.mark.parametrize("path", ["/boom", "/boom-async", "/boom-thread", "/boom-stream"])
def test_server_exceptions_are_raised_in_the_test_by_default(path):
    """As Starlette's TestClient: what the app raised (and the server would log and answer
    500) is raised in the test; raise_server_exceptions=False gives the 500."""
    app = App()

    @app.get("/boom")
    def boom(req):
        raise RuntimeError("exploded inline")

    @app.get("/boom-async")
    async def boom_async(req):
        raise RuntimeError("exploded in a task")

    @app.get("/boom-thread", threaded=True)
    def boom_thread(req):
        raise RuntimeError("exploded in a thread")

    @app.get("/boom-stream")
    def boom_stream(req):
        def chunks():
            yield "first,"
            raise RuntimeError("exploded mid-stream")
        return Response(chunks())

    @app.get("/fine")
    def fine(req):
        return "fine"

    with TestClient(app) as client:
        with pytest.raises(RuntimeError, match="exploded"):
            client.get(path)
        assert client.get("/fine").text == "fine"       # raised once, not again
    with TestClient(app, raise_server_exceptions=False) as client:
        if path == "/boom-stream":          # its head went: cut, as a real client sees it
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
                client.get(path)
        else:
            assert client.get(path).status_code == 500


def test_http_errors_and_error_handlers_are_responses_not_exceptions():
    app = App()

    @app.errorhandler(KeyError)
    def missing(req, exc):
        return {"missing": str(exc)}, 404

    @app.get("/teapot")
    def teapot(req):
        raise HTTPError(418, "short and stout")

    @app.get("/key")
    def key(req):
        raise KeyError("k")

    with TestClient(app) as client:
        assert client.get("/teapot").status_code == 418
        assert client.get("/key").status_code == 404
        assert client.post("/teapot").status_code == 405


# -- WSGI and ASGI apps, as their users write them

@pytest.fixture
def frameworks():
    import tests.apps.frameworks as module
    module.EVENTS.clear()
    module.FAIL_AT.clear()
    module.RELEASE.clear()
    yield module
    module.RELEASE.set()


def test_a_fastapi_app_with_its_lifespan(frameworks):
    app = frameworks.make_fastapi()
    with TestClient(app) as client:
        assert frameworks.EVENTS == ["startup"]
        assert client.get("/").text == "db connected"
        assert client.get("/users/7").json() == {"id": 7}
        assert client.get("/users/0").status_code == 404
        assert client.get("/users/x").status_code == 422
        r = client.post("/users", json={"name": "ada"})
        assert r.status_code == 201 and r.json() == {"created": "ada"}
        assert client.get("/stream").text == "line 0\nline 1\nline 2\n"
        assert client.head("/users/7").content == b""
    assert frameworks.EVENTS == ["startup", "shutdown"]


def test_a_fastapi_app_raises_its_errors_or_answers_500(frameworks):
    app = frameworks.make_fastapi()
    with TestClient(app) as client:
        with pytest.raises(ValueError, match="the app's own bug"):
            client.get("/boom")
        with pytest.raises(KeyError):
            client.get("/boom-sync")
        assert client.get("/users/7").json() == {"id": 7}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom").status_code == 500
        assert client.get("/boom-sync").status_code == 500


@pytest.mark.parametrize("where", ["startup", "shutdown"])
def test_a_failing_lifespan_is_raised(frameworks, where):
    frameworks.FAIL_AT.add(where)
    app = frameworks.make_fastapi()
    if where == "startup":
        with pytest.raises(ConnectionError, match="no database at startup") as raised:
            TestClient(app).__enter__()
        assert type(raised.value) is ConnectionError   # the app's own, as Starlette raises it
        return
    client = TestClient(app).__enter__()
    assert client.get("/").text == "db connected"
    with pytest.raises(RuntimeError, match="the database would not close"):
        client.__exit__(None, None, None)


def test_a_flask_app(frameworks):
    app = frameworks.make_flask()
    with TestClient(app) as client:
        assert client.get("/").text == "hello from Flask"
        assert client.post("/echo", json={"k": 1}).json() == {"got": {"k": 1}}
        assert client.get("/missing").status_code == 404
        assert client.get("/boom").status_code == 500       # Flask answers its own errors


def test_a_bare_wsgi_app_raises_its_errors_or_answers_500(frameworks):
    with TestClient(frameworks.failing_wsgi) as client:
        with pytest.raises(ZeroDivisionError):
            client.get("/")
    with TestClient(frameworks.failing_wsgi, raise_server_exceptions=False) as client:
        assert client.get("/").status_code == 500


@pytest.mark.parametrize("make", ["make_fastapi", "make_flask"])
def test_a_framework_request_that_timed_out_never_stalls_the_next(frameworks, make):
    app = getattr(frameworks, make)()
    with TestClient(app, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/blocks")
        assert not frameworks.RELEASE.is_set()
        assert client.get("/").status_code == 200
        frameworks.RELEASE.set()


def test_pushed_streams_past_the_output_bound_arrive_whole():
    """A body pushed in (async iterator, a threaded handler's generator, a WSGI app's) waits
    for room past --output-high-water: the client makes room as the loop's send does."""
    app = App()
    chunk, count = b"x" * 65536, 48            # 3 MiB, past the 1 MiB bound

    @app.get("/async")
    async def in_async(req):
        async def gen():
            for _ in range(count):
                yield chunk
        return Response(gen())

    @app.get("/thread", threaded=True)
    def in_thread(req):
        return Response(chunk for _ in range(count))

    def wsgi(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (chunk for _ in range(count))

    with TestClient(app, timeout=10) as client:
        assert client.get("/async").content == chunk * count
        assert client.get("/thread").content == chunk * count
    with TestClient(wsgi, timeout=10) as client:
        assert client.get("/").content == chunk * count


def test_what_is_not_an_app_is_refused_at_once():
    with pytest.raises(ValueError, match="not an application"):
        TestClient(object())
    with pytest.raises(ValueError, match="neither a fastsock App, a WSGI app"):
        TestClient(lambda: None)


@pytest.mark.parametrize("mode, raised, match", [
    ("fail", RuntimeError, "lifespan startup failed: no database"),    # startup.failed sent
    ("raise", RuntimeError, "startup exploded"),                       # the app's exception
])
def test_a_raw_asgi_lifespan_that_fails_is_raised(monkeypatch, tmp_path, mode, raised, match):
    import tests.apps.asgi as module
    monkeypatch.setattr(module, "LIFESPAN", mode)
    monkeypatch.setattr(module, "OUT", tmp_path)
    with pytest.raises(raised, match=match):
        TestClient(module.app).__enter__()


def test_a_raw_asgi_app_without_lifespan_is_served(monkeypatch, tmp_path):
    import tests.apps.asgi as module
    monkeypatch.setattr(module, "LIFESPAN", "none")
    monkeypatch.setattr(module, "OUT", tmp_path)
    with TestClient(module.app) as client:
        r = client.get("/scope?q=1")
        assert r.status_code == 200 and r.json()["state"] == {}     # no lifespan state
        assert r.json()["query_string"] == "q=1"
