"""An app with startup/shutdown hooks, request hooks, middleware and error handlers; it writes
what happens to files in $LIFECYCLE_DIR so tests can see which process did what."""
import asyncio
import os
from pathlib import Path

from fastsock import App, Response

DIR = Path(os.environ["LIFECYCLE_DIR"])
(DIR / f"imported-{os.getpid()}").touch()          # which processes imported the app

app = App()
resources = {}


def note(name: str) -> None:
    (DIR / f"{name}-{os.getpid()}").touch()


@app.on_startup
def open_pool():
    if os.environ.get("FAIL_STARTUP"):
        raise RuntimeError("the database is not there")
    resources["pool"] = f"pool of {os.getpid()}"
    note("startup")


@app.on_startup
async def open_client():
    await asyncio.sleep(0)
    resources["client"] = "async client"
    note("async-startup")


@app.on_shutdown
async def close_pool():
    note("shutdown")


@app.before_request
def tag(req):
    req.state.tagged = "before"
    if req.headers.get("x-block"):
        return Response(b"blocked by a hook\n", 403)


@app.after_request
def stamp(req, result):
    if isinstance(result, Response):
        result.headers = (result.headers or []) + [("X-After", "yes")]
        return result
    return Response(result, headers=[("X-After", "yes")])


@app.middleware
def timing(req, call_next):
    req.state.outer = "sync middleware"
    return call_next(req)


@app.middleware
async def async_timing(req, call_next):
    req.state.outer = "async middleware"
    return await call_next(req)


class Missing(Exception):
    pass


@app.errorhandler(Missing)
def missing(req, exc):
    return Response(f"no such thing: {exc}\n", 404)


@app.get("/pool")
def pool(req):
    return {"pool": resources["pool"], "client": resources["client"],
            "state": vars(req.state)}


@app.get("/async-pool")
async def async_pool(req):
    return {"pool": resources["pool"], "state": vars(req.state)}


@app.get("/missing/{name}")
def find(req, name):
    raise Missing(name)


@app.get("/async-missing")
async def async_find(req):
    raise Missing("async")
