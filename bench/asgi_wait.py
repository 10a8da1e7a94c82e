"""A raw ASGI app that awaits 10 ms, for uvicorn and granian in bench/waiting.py."""
import asyncio


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await asyncio.sleep(0.01)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": b"waited"})
