"""A FastAPI hello world (ASGI), for bench/interfaces.py."""
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
async def hello():
    return "hello"
