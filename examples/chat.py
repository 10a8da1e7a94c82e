"""A chat room over WebSockets: every message a client sends goes to everyone in the room.

    fastsock examples.chat:app --workers 1
    open http://localhost:8000/ in two browser tabs

The room lives in one worker's memory: with several workers, clients on different workers are
in different rooms (a real service shares messages through Redis, NATS, a database...).
"""
import json

from fastsock import App, Response
from fastsock.websocket import WebSocket, WebSocketDisconnect

app = App()
room: dict[WebSocket, str] = {}

PAGE = """<!doctype html><meta charset="utf-8"><title>fastsock chat</title>
<input id="name" placeholder="your name"> <input id="text" placeholder="say something" autofocus>
<ul id="log"></ul>
<script>
const ws = new WebSocket(`ws://${location.host}/chat`, ["chat.v1"]);
const log = document.getElementById("log"), text = document.getElementById("text");
ws.onmessage = (e) => { const m = JSON.parse(e.data);
  log.insertAdjacentHTML("beforeend", "<li></li>");
  log.lastChild.textContent = `${m.from}: ${m.text}`; };
text.onkeydown = (e) => { if (e.key === "Enter" && text.value) {
  ws.send(JSON.stringify({name: document.getElementById("name").value || "anonymous",
                          text: text.value})); text.value = ""; } };
</script>
"""


@app.get("/")
def index(req):
    return Response(PAGE, content_type="text/html; charset=utf-8")


@app.websocket("/chat")
async def chat(ws: WebSocket):
    await ws.accept(subprotocol="chat.v1" if "chat.v1" in ws.subprotocols else None)
    room[ws] = "anonymous"
    try:
        async for message in ws:
            try:
                said = json.loads(message)
                name, text = str(said["name"])[:40], str(said["text"])[:2000]
            except (ValueError, KeyError, TypeError):
                await ws.close(1003, "send JSON: {name, text}")
                return
            room[ws] = name
            await broadcast(json.dumps({"from": name, "text": text}))
    finally:
        room.pop(ws, None)


async def broadcast(message: str) -> None:
    for other in list(room):
        try:
            await other.send(message)       # waits while that client is slow to read
        except WebSocketDisconnect:
            room.pop(other, None)
