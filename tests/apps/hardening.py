"""Routes for the hardening tests: handlers that fork, streams that go quiet or yield empty
chunks. Outcomes a test waits for go to files in $FASTSOCK_TEST_DIR."""
import asyncio
import multiprocessing
import os
import time
from pathlib import Path

from fastsock import App, Response

OUT = Path(os.environ.get("FASTSOCK_TEST_DIR", "/tmp"))
app = App()


def note(name: str, text: str) -> None:
    (OUT / (name + ".tmp")).write_text(text)
    (OUT / (name + ".tmp")).rename(OUT / name)


def _child(name: str, seconds: float) -> None:
    """A forked child that outlives the response: it notes its pid, then waits (bounded)."""
    note(name, str(os.getpid()))
    time.sleep(seconds)


@app.get("/fork")
def fork(req):
    """?how=os|mp&name=NOTE: fork a child that lives ~10 s, as a handler starting a helper
    process would (os.fork, or multiprocessing with its default start method)."""
    name = req.query.get("name", "child")
    if req.query.get("how") == "mp":
        multiprocessing.get_context("fork").Process(target=_child, args=(name, 10.0),
                                                    daemon=False).start()
    else:
        pid = os.fork()
        if pid == 0:
            try:
                _child(name, 10.0)
            finally:
                os._exit(0)
    return "forked"


@app.get("/quiet")
def quiet(req):
    """An event stream quiet for ?s= seconds between its first and last chunk."""
    seconds = float(req.query.get("s", "2"))
    name = req.query.get("name")

    async def events():
        try:
            yield "first\n"
            await asyncio.sleep(seconds)
            yield "last\n"
        finally:
            if name:
                note(name, "ended")
    return Response(events())


@app.get("/empty-chunks")
def empty_chunks(req):
    """Empty chunks between real ones, as template engines yield them."""
    return Response(iter(["a", "", b"", "b", "", "c"]))


@app.post("/drip", stream=True, max_body_size=1 << 20)
async def drip(req):
    n = 0
    try:
        async for chunk in req.stream():
            n += len(chunk)
    except (ConnectionError, asyncio.CancelledError):     # (cancelled: the client is gone)
        note(req.query.get("name", "drip"), f"cut after {n}")
        raise
    return {"bytes": n}


@app.get("/pid")
def pid(req):
    return str(os.getpid())


@app.get("/kb/{n:int}")
def kilobytes(req, n):
    return b"K" * (n << 10)


def wsgi_drip(environ, start_response):
    """A WSGI app reading a streamed body whole; notes ?name= when the read is cut."""
    name = environ["QUERY_STRING"].partition("=")[2]
    try:
        body = environ["wsgi.input"].read()
    except OSError:
        if name:
            note(name, "cut")
        raise
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d" % len(body)]
