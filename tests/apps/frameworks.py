"""A FastAPI app and a Flask app as their users write them, for fastsock.testing.TestClient's
tests: a lifespan that opens and closes a resource, routes that raise, a route that blocks until
the test sets RELEASE. What the lifespan did goes to EVENTS (the test reads it)."""
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from flask import Flask, jsonify
from flask import request as flask_request
from pydantic import BaseModel

EVENTS: list[str] = []
RELEASE = threading.Event()         # the blocking routes wait for it (the test sets it)
FAIL_AT: set[str] = set()           # "startup" / "shutdown": the lifespan raises there


def make_fastapi() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if "startup" in FAIL_AT:
            raise ConnectionError("no database at startup")
        app.state.db = "connected"
        EVENTS.append("startup")
        yield
        EVENTS.append("shutdown")
        if "shutdown" in FAIL_AT:
            raise RuntimeError("the database would not close")

    app = FastAPI(lifespan=lifespan)

    class User(BaseModel):
        name: str

    @app.get("/", response_class=PlainTextResponse)
    async def index(request: Request):
        return f"db {request.app.state.db}"

    @app.get("/users/{user_id}")
    async def user(user_id: int):
        if user_id == 0:
            raise HTTPException(404, "no such user")
        return {"id": user_id}

    @app.post("/users", status_code=201)
    async def create(user: User):
        return {"created": user.name}

    @app.get("/boom")
    async def boom():
        raise ValueError("the app's own bug")

    @app.get("/boom-sync")
    def boom_sync():
        raise KeyError("missing")

    @app.get("/stream")
    async def stream():
        async def lines():
            for i in range(3):
                yield f"line {i}\n"
        return StreamingResponse(lines(), media_type="text/plain")

    @app.get("/blocks")
    def blocks():               # FastAPI runs a plain def in its thread pool
        RELEASE.wait(30)
        return {"late": True}

    return app


def make_flask() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def index():
        return "hello from Flask"

    @app.post("/echo")
    def echo():
        return jsonify(got=flask_request.get_json())

    @app.get("/boom")
    def boom():
        raise ValueError("the app's own bug")

    @app.get("/blocks")
    def blocks():
        RELEASE.wait(30)
        return "late"

    return app


def failing_wsgi(environ, start_response):
    """A bare WSGI app with a bug: nothing between it and the server catches it."""
    raise ZeroDivisionError("a bare WSGI bug")
