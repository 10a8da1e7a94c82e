"""A FastAPI app served by fastsock, unchanged: `fastsock examples.fastapi_app:app` (ASGI is
detected). Its lifespan runs in each worker; the metrics' route label is the route's path
(/users/{user_id}), and prometheus_client metrics are summed over workers."""
import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, StreamingResponse
from prometheus_client import Counter
from pydantic import BaseModel

USERS_CREATED = Counter("example_users_created", "Users created through the example app.")


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.greeting = "hello from FastAPI"      # open pools and clients here, per worker
    yield


app = FastAPI(lifespan=lifespan)


class User(BaseModel):
    name: str


@app.get("/", response_class=PlainTextResponse)
async def index(request: Request):
    return request.app.state.greeting + "\n"


@app.get("/users/{user_id}")
async def user(user_id: int):
    if user_id == 0:
        raise HTTPException(404, "no such user")
    return {"id": user_id}


@app.post("/users", status_code=201)
async def create_user(user: User):
    USERS_CREATED.inc()
    return {"created": user.name}


@app.post("/upload")
async def upload(request: Request):
    """Reads the body as it arrives (more_body messages) and counts it."""
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
    return {"bytes": total}


@app.get("/stream")
async def stream():
    async def lines():
        for i in range(5):
            yield f"line {i}\n"
            await asyncio.sleep(0.01)
    return StreamingResponse(lines(), media_type="text/plain")


@app.websocket("/ws/echo")
async def echo(websocket: WebSocket):
    """A FastAPI WebSocket route, served as uvicorn would: `websocat ws://localhost:8000/ws/echo`."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
