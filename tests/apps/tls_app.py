"""The apps tests/integration/test_tls*.py serve over TLS: `app` (native), `asgi_app` and
`wsgi_app` each answer what they see of the connection's TLS."""
import hashlib
import json
import os

from fastsock import App, Response
from fastsock.websocket import WebSocket

app = App()

# 20 MiB that are not all one byte (compressible runs would hide a record split wrong)
BLOB = hashlib.shake_256(b"fastsock tls").digest(1 << 16) * 320
BLOB_SHA256 = hashlib.sha256(BLOB).hexdigest()


@app.get("/")
def index(req):
    return "hello"


@app.get("/tls")
def tls(req):
    t = req.tls
    return {"scheme": req.scheme, "client": list(req.client), "pid": os.getpid(),
            "tls": None if t is None else {
                "version": t.version, "cipher": t.cipher,
                "client_subject": t.client_subject, "client_cert": t.client_cert}}


@app.post("/sha256", stream=True, max_body_size=64 << 20)
async def sha256(req):
    h, n = hashlib.sha256(), 0
    async for chunk in req.stream():
        h.update(chunk)
        n += len(chunk)
    return {"bytes": n, "sha256": h.hexdigest()}


@app.get("/blob")
def blob(req):
    return Response(BLOB, content_type="application/octet-stream",
                    headers=[("X-Sha256", BLOB_SHA256)])


@app.websocket("/ws")
async def ws_echo(ws: WebSocket):
    async for message in ws:
        await ws.send(message)


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    tls_ext = scope.get("extensions", {}).get("tls")
    body = json.dumps({"scheme": scope["scheme"], "tls": tls_ext}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ, start_response):
    keys = ("wsgi.url_scheme", "HTTPS", "SSL_CLIENT_S_DN", "SSL_CLIENT_CERT", "SSL_CLIENT_VERIFY")
    body = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
