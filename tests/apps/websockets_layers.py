"""A native app whose WebSocket routes run inside its middleware (async and plain), before and
after hooks and error handlers, for tests/integration/test_websocket_app.py and
tests/unit/test_testclient_websocket.py. Headers say which layers saw the handshake's answer;
the handlers log what they were told."""
import asyncio
import logging

from fastsock import App
from fastsock._message import Response
from fastsock.websocket import WebSocket, WebSocketDisconnect

app = App()
log = logging.getLogger("tests.websockets_layers")


class NoSeat(Exception):
    pass


@app.middleware
async def outer(req, call_next):
    if req.path == "/mw-deny":          # denied without calling call_next
        return Response(b"not here\n", 403, headers=[("X-Denied-By", "middleware")])
    if req.path == "/mw-raise":
        raise RuntimeError("a middleware failed")
    if req.path == "/mw-slow":          # never gets to call_next (--ws-handshake-timeout)
        log.warning("mw-slow: in the middleware")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            log.warning("mw-slow: the middleware was cancelled")
            raise
    response = await call_next(req)
    if req.path == "/mw-twice":         # a second handshake of one request: refused
        await call_next(req)
    response.headers.append(("X-Async-MW", str(response.status)))
    if req.path == "/mw-bad-header":    # a header a 101 may not have from the app
        response.headers.append(("Sec-WebSocket-Accept", "forged"))
    if req.path == "/mw-deny-after":    # the handler accepted; the middleware says no
        return Response(b"changed my mind\n", 409)
    return response


@app.middleware
def inner(req, call_next):              # plain, around the async handler: in the pool
    response = call_next(req)
    response.headers.append(("X-Plain-MW", str(response.status)))
    return response


@app.before_request
def token(req):
    if req.path.startswith("/private") and req.query.get("token") != "secret":
        return Response(b"missing token\n", 401, headers=[("WWW-Authenticate", "Bearer")])
    if req.path == "/hook-nonsense":
        return 42                       # not something a response can be made of
    if req.path == "/hook-101":
        return Response(b"", 101)       # a 101 for a WebSocket nobody accepted
    return None


@app.after_request
async def after(req, response):
    response.headers.append(("X-After", str(response.status)))


@app.errorhandler(NoSeat)
def no_seat(req, exc):
    return Response(f"no seat: {exc}\n".encode(), 409)


@app.get("/http")
def http(req):
    return "plain HTTP\n"


@app.websocket("/echo")
async def echo(ws: WebSocket):
    async for message in ws:
        await ws.send(message)


@app.websocket("/private/echo")
async def private_echo(ws: WebSocket):
    await ws.accept(headers=[("X-Handler", "private")])
    log.warning("opened %s", ws.request.path)
    async for message in ws:
        log.warning("got %s", message)
        await ws.send(message)


async def _told(ws: WebSocket, name: str):
    try:
        await ws.accept()
        await ws.send("should never go")
        log.warning("%s: the handler was not told", name)
    except WebSocketDisconnect as e:
        log.warning("%s: the handler was told %d", name, e.code)


@app.websocket("/mw-deny")
async def mw_deny(ws: WebSocket):
    log.warning("mw-deny: the handler ran")


@app.websocket("/mw-raise")
async def mw_raise(ws: WebSocket):
    log.warning("mw-raise: the handler ran")


@app.websocket("/mw-bad-header")
async def mw_bad_header(ws: WebSocket):
    await _told(ws, "mw-bad-header")


@app.websocket("/mw-deny-after")
async def mw_deny_after(ws: WebSocket):
    await _told(ws, "mw-deny-after")


@app.websocket("/mw-twice")
async def mw_twice(ws: WebSocket):
    await _told(ws, "mw-twice")


@app.websocket("/mw-slow")
async def mw_slow(ws: WebSocket):
    log.warning("mw-slow: the handler ran")


@app.websocket("/never-answers")
async def never_answers(ws: WebSocket):
    await asyncio.sleep(3600)           # neither accepts nor refuses: --ws-handshake-timeout


@app.websocket("/hook-101")
async def hook_101(ws: WebSocket):
    log.warning("hook-101: the handler ran")


@app.websocket("/hook-nonsense")
async def hook_nonsense(ws: WebSocket):
    log.warning("hook-nonsense: the handler ran")


@app.websocket("/raise-before")
async def raise_before(ws: WebSocket):
    raise NoSeat("the room is full")


@app.websocket("/raise-before-unhandled")
async def raise_before_unhandled(ws: WebSocket):
    raise KeyError("nobody handles this")


@app.websocket("/raise-after")
async def raise_after(ws: WebSocket):
    await ws.accept()
    await ws.send("accepted")
    raise NoSeat("too late for the error handler")


@app.websocket("/accept-twice")
async def accept_twice(ws: WebSocket):
    await ws.accept()
    await ws.accept()


@app.websocket("/accept-then-return")
async def accept_then_return(ws: WebSocket):
    await ws.accept()


@app.websocket("/refuse")
async def refuse(ws: WebSocket):
    await ws.close()
