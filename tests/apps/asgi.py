"""Raw ASGI 3 apps for the ASGI tests. Outcomes a test waits for go to files in
$FASTSOCK_TEST_DIR. $ASGI_LIFESPAN: "fail" fails startup, "raise" raises in it, "none" takes no
lifespan scope (raises at once, as apps without lifespan do)."""
import asyncio
import json
import os
from pathlib import Path

from prometheus_client import Counter

from tests.support.garbage import freed_since_last_call

OUT = Path(os.environ.get("FASTSOCK_TEST_DIR", "/tmp"))
LIFESPAN = os.environ.get("ASGI_LIFESPAN", "")
HITS = Counter("asgi_app_hits", "Requests the ASGI test app answered.")


def note(name: str, text: str) -> None:
    (OUT / (name + ".tmp")).write_text(text)
    (OUT / (name + ".tmp")).rename(OUT / name)


async def _lifespan(scope, receive, send):
    if LIFESPAN == "none":
        raise RuntimeError("no lifespan here")
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if LIFESPAN == "fail":
                await send({"type": "lifespan.startup.failed", "message": "no database"})
                return
            if LIFESPAN == "raise":
                raise RuntimeError("startup exploded")
            scope["state"]["db"] = "connected"
            scope["state"]["pid"] = os.getpid()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            note(f"shutdown-{os.getpid()}", "done")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _text(send, body: bytes, status: int = 200, headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), *headers]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> tuple[bytes, int]:
    body, messages = b"", 0
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += message.get("body", b"")
        messages += 1
        if not message.get("more_body"):
            return body, messages


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(scope, receive, send)
    assert scope["type"] == "http", scope["type"]
    HITS.inc()
    path = scope["path"][len(scope["root_path"]):]     # as routers see it
    query = scope["query_string"].decode()
    if path.endswith("/scope"):
        body, _ = await _read_body(receive)
        view = {k: v for k, v in scope.items() if k not in ("headers", "state", "raw_path",
                                                            "query_string", "asgi")}
        view["headers"] = [[k.decode("latin-1"), v.decode("latin-1")]
                           for k, v in scope["headers"]]
        view["raw_path"] = scope["raw_path"].decode("latin-1")
        view["query_string"] = scope["query_string"].decode("latin-1")
        view["asgi"] = scope["asgi"]
        view["state"] = {k: v for k, v in scope["state"].items()}
        view["body"] = body.decode("latin-1")
        data = json.dumps(view).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})
        return
    if path == "/hello":
        return await _text(send, b"hello")
    if path == "/upload":           # body messages as they come; the first one noted
        total, messages = 0, 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                note("upload-disconnect", f"after {total}")
                return
            if message.get("body"):
                if not total:
                    note("upload-started", str(len(message["body"])))
                total += len(message["body"])
            messages += 1
            if not message.get("more_body"):
                break
        return await _text(send, f"{total} {messages}".encode())
    if path == "/stream":           # ?n=COUNT&delay=SECONDS&name=NOTE
        params = dict(p.split("=") for p in query.split("&") if p)
        n, delay = int(params.get("n", 3)), float(params.get("delay", 0))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        sent = 0
        try:
            for i in range(n):
                if i and delay:
                    await asyncio.sleep(delay)
                await send({"type": "http.response.body", "body": b"chunk %d\n" % i,
                            "more_body": True})
                sent += 1
            await send({"type": "http.response.body", "body": b""})
            note(params.get("name", "stream"), f"sent {sent}")
        except OSError as e:
            note(params.get("name", "stream"), f"{type(e).__name__} after {sent}")
        return
    if path == "/forever":          # an endless stream; ?name=NOTE&listen=1
        params = dict(p.split("=") for p in query.split("&") if p)
        name = params.get("name", "forever")
        outcome = "returned"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        try:
            await send({"type": "http.response.body", "body": b"data: x\n\n",
                        "more_body": True})
            if params.get("listen"):    # as Starlette listens: the request, then the end
                while (message := await receive())["type"] == "http.request":
                    pass
                note(name + "-receive", message["type"])
            while True:
                await asyncio.sleep(0.05)
                await send({"type": "http.response.body", "body": b"data: x\n\n",
                            "more_body": True})
        except OSError as e:
            outcome = type(e).__name__
            raise
        finally:
            note(name, f"{os.getpid()} {outcome}")
    if path == "/tasks":            # this worker's tasks besides this request's own
        return await _text(send, b"%d %d" % (os.getpid(), len(asyncio.all_tasks()) - 1))
    if path == "/wait-disconnect":  # the body is in; waits for http.disconnect
        await _read_body(receive)
        message = await receive()
        note("disconnect", message["type"])
        return
    if path == "/big":              # a body larger than the output's high water mark
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for _ in range(64):
            await send({"type": "http.response.body", "body": b"z" * 65536, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/fail-before":
        raise RuntimeError("the app failed before answering")
    if path == "/fail-mid":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a" * 10, "more_body": True})
        raise RuntimeError("the app failed mid-response")
    if path == "/no-response":
        return
    if path == "/bad-header":
        return await _text(send, b"no", headers=[(b"x-bad", b"a\r\ninjected: yes")])
    if path == "/bad-status":
        await send({"type": "http.response.start", "status": "200", "headers": []})
        await send({"type": "http.response.body", "body": b"x"})
        return
    if path == "/sleep":
        await asyncio.sleep(float(query.partition("=")[2] or 1))
        return await _text(send, b"slept")
    if path == "/length":           # says its length: HEAD keeps it
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else b"12345"})
        return
    if path == "/pid":
        return await _text(send, str(os.getpid()).encode())
    if path == "/garbage":          # objects requests left in cycles (tests/support/garbage.py)
        return await _text(send, str(freed_since_last_call()).encode())
    await _text(send, b"not found", 404)
