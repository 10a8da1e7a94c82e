"""A hostile app for tests/integration/test_request_logs.py and test_limit_concurrency.py:
request ids the app sets to garbage, return values JSON cannot take (its json_default hands
back what it is given), streams that fail, block until the test creates `release` in
$FASTSOCK_TEST_DIR, or yield what is not bytes."""
import asyncio
import dataclasses
import os
import time
from pathlib import Path

from fastsock import App, Response

OUT = Path(os.environ.get("FASTSOCK_TEST_DIR", "/tmp"))


def self_default(o):
    return o                    # json_default that hands back what it was given


app = App(json_default=self_default)


@dataclasses.dataclass
class Node:
    child: object = None


@app.get("/rid/{kind}")
def set_rid(req, kind):
    req.request_id = {"crlf": "a\r\nSet-Cookie: x=1", "lf": "a\nforged", "int": 12345,
                      "bytes": b"abc", "wide": "id-\u2028\u00e9", "nul": "a\x00b",
                      "empty": "", "space": "a b"}[kind]
    return "ok\n"


@app.get("/json/{kind}")
def json_kind(req, kind):
    if kind == "deep":
        v: object = []
        for _ in range(200000):
            v = [v]
        return v
    if kind == "deepdict":
        d: object = {}
        for _ in range(200000):
            d = {"a": d}
        return d
    if kind == "cycle":
        a: list = []
        a.append(a)
        return a
    if kind == "dictcycle":
        d2: dict = {}
        d2["me"] = d2
        return d2
    if kind == "dccycle":
        n = Node()
        n.child = n
        return {"n": n}
    if kind == "bigint":
        return {"x": 10 ** 5000}
    if kind == "opaque":
        return {"x": object()}
    if kind == "bytes":
        return {"x": b"\xff\x00"}
    raise KeyError(kind)


@app.get("/gen/{kind}")
def gen(req, kind):
    def raises():
        yield b"a"
        raise RuntimeError("gen failed")

    def nonbytes():
        yield b"a"
        yield 42

    def forever():
        yield b"a"
        while not (OUT / "release").exists():
            time.sleep(0.01)
        yield b"b"
    return Response({"raises": raises, "nonbytes": nonbytes, "forever": forever}[kind]())


@app.get("/hello")
def hello(req):
    return "hello\n"


@app.get("/agen/{kind}")
def agen(req, kind):
    async def forever():
        yield b"a"
        while not (OUT / "release").exists():
            await asyncio.sleep(0.01)
        yield b"b"

    async def raises():
        yield b"a"
        raise RuntimeError("agen failed")
    return Response({"forever": forever, "raises": raises}[kind]())


@app.get("/throw-thread", threaded=True)
def throw_thread(req):
    raise RuntimeError("thread handler failed")
