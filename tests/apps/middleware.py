"""Apps of the middleware matrix (tests/integration/test_middleware.py): one route per handler
kind and return value, wrapped by an auth middleware and a tagging one, written plain (`sync_app`),
`async def` (`async_app`), or one of each in both orders (`mixed_app`: plain auth outside an
async tagger; `mixed_inverse_app`: async auth outside a plain tagger).

The auth middleware answers 401 unless `Authorization: yes`, without calling the rest; the
tagger adds `X-Seen-<name>: <type of what call_next returned> <its status>` and, with ?teapot=1,
sets the status to 418. /calls counts the handlers that ran (behind the same middleware).
"""
import asyncio
import threading
import time
from pathlib import Path

from fastsock import App, Response

CALLS = {"n": 0}
_lock = threading.Lock()


def _called() -> None:
    with _lock:
        CALLS["n"] += 1


def _routes(app: App) -> App:
    @app.get("/inline")
    def inline(req):
        _called()
        return "inline"

    @app.get("/bytes")
    def raw(req):
        _called()
        return b"raw"

    @app.get("/json")
    def json_(req):
        _called()
        return {"kind": "json"}

    @app.get("/tuple")
    def tuple_(req):
        _called()
        return "made", 201, {"X-Handler": "1"}

    @app.get("/response")
    def response(req):
        _called()
        return Response(b"resp", 202, content_type="text/x-resp")

    @app.get("/none")
    def none(req):
        _called()

    @app.get("/async")
    async def async_(req):
        _called()
        await asyncio.sleep(0)
        return {"kind": "async"}

    @app.get("/threaded", threaded=True)
    def threaded(req):
        _called()
        return "threaded"

    @app.get("/stream/inline")
    def stream_inline(req):
        _called()
        return (f"{i}," for i in range(3))

    @app.get("/stream/async")
    async def stream_async(req):
        _called()

        async def gen():
            for i in range(3):
                yield f"{i},"
                await asyncio.sleep(0)
        return gen()

    @app.get("/stream/threaded", threaded=True)
    def stream_threaded(req):
        _called()

        def gen():
            for i in range(3):
                time.sleep(0.001)
                yield f"{i},"
        return gen()

    @app.get("/async/wait")
    async def async_wait(req):
        mark = Path(req.query["mark"])
        (mark.parent / (mark.name + ".part")).write_text("started")    # renamed: never seen empty
        (mark.parent / (mark.name + ".part")).replace(mark.parent / (mark.name + ".started"))
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            part = mark.parent / (mark.name + ".part")   # renamed once written: never seen empty
            part.write_text("cancelled")
            part.replace(mark)
            raise

    @app.get("/calls")
    def calls(req):
        return {"n": CALLS["n"]}
    return app


def _tag(name: str, resp, req):
    resp.headers.append((f"X-Seen-{name}", f"{type(resp).__name__} {resp.status}"))
    if req.query.get("teapot"):
        resp.status = 418
    return resp


def _denied(req) -> bool:
    return req.headers.get("authorization") != "yes"


def sync_auth(req, call_next):
    if _denied(req):
        return "denied", 401
    return call_next(req)


async def async_auth(req, call_next):
    if _denied(req):
        return "denied", 401
    return await call_next(req)


def sync_tag(req, call_next):
    return _tag("sync", call_next(req), req)


async def async_tag(req, call_next):
    return _tag("async", await call_next(req), req)


def _app(*middleware) -> App:
    app = App()
    for mw in middleware:
        app.middleware(mw)
    return _routes(app)


sync_app = _app(sync_auth, sync_tag)
async_app = _app(async_auth, async_tag)
mixed_app = _app(sync_auth, async_tag)
mixed_inverse_app = _app(async_auth, sync_tag)


def forgetful(req, call_next):
    call_next(req)                  # and no return: a mistake, not a 204


forgetful_app = _app(forgetful)
