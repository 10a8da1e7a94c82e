"""Apps for tests/integration/test_attacks.py: hostile-review regressions."""
import asyncio
import os
import threading
from pathlib import Path

from fastsock import App, Response

OUT = Path(os.environ.get("FASTSOCK_TEST_DIR", "/tmp"))
app = App()
_flag = {"set": False}


@app.get("/big-stream")
def big_stream(req):
    n = int(req.query.get("n", "256"))
    return (b"y" * 4096 for _ in range(n))


@app.get("/big-declared")
def big_declared(req):
    n = int(req.query.get("n", "256"))
    return Response((b"y" * 4096 for _ in range(n)), headers={"Content-Length": str(4096 * n)})


@app.get("/poll")
def poll(req):
    """A stream that says "nothing yet" (an empty chunk) until /set is requested: a bounded
    number of polls."""
    def gen():
        for _ in range(int(req.query.get("polls", "3000000"))):
            if _flag["set"]:
                yield b"seen\n"
                return
            yield b""
        yield b"gave-up\n"
    _flag["set"] = False
    return gen()


@app.get("/set")
def set_flag(req):
    _flag["set"] = True
    return "set\n"


@app.route("/cl", methods=["GET", "HEAD", "POST"])
def cl(req):
    """Content-Length ?v= (repeated: several headers), status ?s=, body ?b= bytes, streamed
    in ?parts= pieces (0: a whole body), ?u=1: str pieces of non-ASCII."""
    q = req.query
    status = int(q.get("s", "200"))
    n = int(q.get("b", "5"))
    parts = int(q.get("parts", "0"))
    hdrs = []
    for kv in req.query_string.decode().split("&"):
        if kv.startswith("v="):
            hdrs.append(("Content-Length", kv[2:].replace("%20", " ").replace("%2D", "-")))
    if q.get("u"):
        body = ("é" for _ in range(n))         # 2 bytes each
    elif parts:
        body = (b"z" * (n // parts) for _ in range(parts))
    else:
        body = b"z" * n
    return Response(body, status, headers=hdrs)


# the same, its generator pulled on the loop (not in the pool): written out at once
app.route("/cl-inline", methods=["GET"], pull_inline=True)(cl)
