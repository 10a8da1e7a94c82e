"""Apps that declare a Content-Length and send ?send= bytes in ?parts= pieces, having said
?say= bytes: a native App, a WSGI app and an ASGI app. Each notes how its body ended in
$FASTSOCK_TEST_DIR/?name= (closed by the server, or sent to the end)."""
import asyncio
import os
from pathlib import Path
from urllib.parse import parse_qs

from fastsock import App, Response

OUT = Path(os.environ.get("FASTSOCK_TEST_DIR", "/tmp"))
app = App()


def note(name, text):
    if name:
        (OUT / (name + ".tmp")).write_text(text)
        (OUT / (name + ".tmp")).rename(OUT / name)


def params(query: str) -> tuple[int, int, int, str]:
    q = {k: v[0] for k, v in parse_qs(query).items()}
    return int(q["say"]), int(q["send"]), int(q.get("parts", "4")), q.get("name", "")


def pieces(send: int, parts: int, name: str):
    size, rest = divmod(send, parts)
    try:
        for i in range(parts):
            yield b"x" * (size + (rest if i == parts - 1 else 0))
        note(name, "ended")
    except GeneratorExit:
        note(name, "closed")
        raise


@app.route("/declared", methods=["GET", "HEAD"])
def declared(req):
    say, send, parts, name = params(req.query_string.decode())
    body = pieces(send, parts, name) if parts else b"x" * send
    return Response(body, headers={"Content-Length": str(say)})


def wsgi_app(environ, start_response):
    say, send, parts, name = params(environ["QUERY_STRING"])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(say))])
    return pieces(send, parts, name)


async def asgi_app(scope, receive, send_):
    if scope["type"] != "http":
        return
    say, send, parts, name = params(scope["query_string"].decode())
    await send_({"type": "http.response.start", "status": 200,
                 "headers": [(b"content-length", str(say).encode())]})
    try:
        for piece in pieces(send, parts, ""):
            await send_({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0)
        await send_({"type": "http.response.body", "body": b"", "more_body": False})
        note(name, "ended")
    except OSError:
        note(name, "closed")
