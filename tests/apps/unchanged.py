"""Flask, FastAPI and native apps written as their users write them, for
tests/integration/test_unchanged.py: files sent with their length, bodies in several messages,
the app's own Date, generator routes, the request's host and cookies, a body that fails
half-way or lies about its length, and routes of their own at /healthz and /metrics.
(Django's are in tests/apps/django_unchanged.py: its settings are per process.) No
`from __future__ import annotations`: FastAPI reads the handlers' annotations."""
import os
import tempfile

from fastsock import App

BIG = 3 * 1024 * 1024
PIECE = 300_000
GEN_BODY = [b"x" * 20, b"y" * 20, b"z" * 17]          # 57 bytes, as the Flask route
APP_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
SHORT_DECLARED, SHORT_SENT = 3 * 1024 * 1024, 2 * 1024 * 1024
LONG_DECLARED, LONG_SENT = 2 * 1024 * 1024, 3 * 1024 * 1024
FLAG_DIR = os.environ.get("FASTSOCK_TEST_DIR") or tempfile.gettempdir()


def big_file() -> str:
    """A 3 MB file (made once, at import: the master's, before the fork)."""
    path = os.path.join(FLAG_DIR, "big.bin")
    if not os.path.exists(path) or os.path.getsize(path) != BIG:
        data = bytes(range(256)) * (BIG // 256)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
    return path


BIG_PATH = big_file()


def ready_check() -> bool:
    """--ready-check: not ready while FLAG_DIR/db-down exists."""
    return not os.path.exists(os.path.join(FLAG_DIR, "db-down"))


def raising_ready_check() -> bool:
    raise RuntimeError("the database does not answer")


def _pieces(total: int, size: int = 65536):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield b"a" * n
        sent += n


# ---------------------------------------------------------------- Flask (WSGI)

def _flask():
    from flask import Flask, Response, jsonify, request, send_file

    app = Flask(__name__)

    @app.get("/file")
    def file():
        return send_file(BIG_PATH, mimetype="application/octet-stream", conditional=True)

    @app.get("/gen")
    def gen():
        return Response(iter(GEN_BODY), mimetype="text/plain")

    @app.get("/host")
    def host():
        env = request.environ
        return jsonify(host=request.host, url=request.url, HTTP_HOST=env.get("HTTP_HOST"),
                       SERVER_NAME=env["SERVER_NAME"], SERVER_PORT=env["SERVER_PORT"])

    @app.get("/cookies")
    def cookies():
        return jsonify(cookies=request.cookies.to_dict(),
                       HTTP_COOKIE=request.environ.get("HTTP_COOKIE"))

    @app.get("/fail-mid")
    def fail_mid():
        def body():
            yield b"first part\n"
            raise RuntimeError("the generator broke: fail-mid marker")
        return Response(body(), mimetype="text/plain")

    @app.get("/short")
    def short():
        return Response(_pieces(SHORT_SENT), headers={"Content-Length": str(SHORT_DECLARED)})

    @app.get("/long")
    def long():
        return Response(_pieces(LONG_SENT), headers={"Content-Length": str(LONG_DECLARED)})

    @app.post("/upload")
    def upload():
        return jsonify(bytes=len(request.get_data()))

    @app.get("/healthz")
    def healthz():
        return jsonify(db="down"), 503

    return app


flask_app = _flask()


# ---------------------------------------------------------------- FastAPI (ASGI)

def _fastapi():
    from fastapi import FastAPI, Request
    from fastapi.responses import (
        FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse,
    )

    app = FastAPI()

    @app.get("/parts")
    def parts():
        total = 4 * PIECE
        return StreamingResponse(_pieces(total, PIECE), media_type="application/octet-stream",
                                 headers={"Content-Length": str(total)})

    @app.get("/file")
    def file():
        return FileResponse(BIG_PATH)

    @app.get("/date")
    def date():
        return Response(b"dated", media_type="text/plain", headers={"Date": APP_DATE})

    @app.api_route("/gen", methods=["GET", "HEAD"])     # (FastAPI adds no HEAD by itself)
    def gen():
        return StreamingResponse(iter(GEN_BODY), media_type="text/plain")

    @app.get("/host")
    def host(request: Request):
        return {"host": request.headers["host"], "url": str(request.url)}

    @app.get("/short")
    def short():
        return StreamingResponse(_pieces(SHORT_SENT),
                                 headers={"Content-Length": str(SHORT_DECLARED)})

    @app.get("/long")
    def long():
        return StreamingResponse(_pieces(LONG_SENT),
                                 headers={"Content-Length": str(LONG_DECLARED)})

    @app.post("/upload")
    async def upload(request: Request):
        return {"bytes": len(await request.body())}

    @app.get("/healthz")
    def healthz():
        return JSONResponse({"db": "down"}, status_code=503)

    @app.get("/metrics")
    def metrics():
        return PlainTextResponse("app metrics\n")

    return app


fastapi_app = _fastapi()


# ---------------------------------------------------------------- fastsock's own App

native_app = App()


@native_app.get("/host")
def native_host(req):
    return {"host": req.headers.get("host")}


@native_app.get("/healthz")
def native_healthz(req):
    return {"db": "down"}
