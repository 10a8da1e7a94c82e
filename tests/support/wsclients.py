"""Real WebSocket clients, one function each, all with the same shape: connect to an echo
endpoint, send each message (str: a text message, bytes: a binary one), collect one reply per
message, close with 1000, and return what came back (`Echoed`): the replies, the close code the
server's close frame carried, the subprotocol and extensions it accepted.

    websockets_roundtrip, wsproto_roundtrip, aiohttp_roundtrip, picows_roundtrip: the client
        libraries (each with its own framing, masking and handshake code);
    chromium_roundtrip: headless Chromium (Debian's `chromium`) on tests/support/wspage.html,
        served by the server under test, whose script opens `new WebSocket(...)`.

`CLIENTS` maps a name to each library's function, for tests parametrised over them.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import selectors
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

PAGE = Path(__file__).with_name("wspage.html")
# a generous hang guard for one exchange, never a performance bound
TIMEOUT = 20.0

Message = str | bytes


@dataclass
class Echoed:
    replies: list[Message] = field(default_factory=list)
    close_code: int | None = None           # the code in the server's close frame
    subprotocol: str | None = None          # the Sec-WebSocket-Protocol it accepted
    extensions: str | None = None           # the Sec-WebSocket-Extensions it accepted
    origin: str | None = None               # the browser's origin (chromium_roundtrip)


def page_html() -> bytes:
    """The Chromium page, for a server under test to serve (GET, text/html)."""
    return PAGE.read_bytes()


def _split(url: str) -> tuple[str, int, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(f"only ws:// URLs (loopback tests): {url!r}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return parts.hostname or "127.0.0.1", parts.port or 80, target


# ---------------------------------------------------------------------------------- websockets


def websockets_roundtrip(url: str, messages: list[Message], *, subprotocols=None,
                         compress: bool = False) -> Echoed:
    """The `websockets` library's asyncio client."""
    from websockets.asyncio.client import connect

    async def run() -> Echoed:
        async with asyncio.timeout(TIMEOUT):
            ws = await connect(url, subprotocols=subprotocols,
                               compression="deflate" if compress else None, max_size=None)
            out = Echoed(subprotocol=ws.subprotocol,
                         extensions=ws.response.headers.get("Sec-WebSocket-Extensions"))
            for message in messages:
                await ws.send(message)
                out.replies.append(await ws.recv())
            await ws.close(1000)
            rcvd = ws.protocol.close_rcvd          # the server's close frame
            out.close_code = rcvd.code if rcvd else None
            return out

    return asyncio.run(run())


# ------------------------------------------------------------------------------------- wsproto


def wsproto_roundtrip(url: str, messages: list[Message], *, subprotocols=None,
                      compress: bool = False) -> Echoed:
    """wsproto (sans-IO) over a plain blocking socket."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import (
        AcceptConnection,
        BytesMessage,
        CloseConnection,
        RejectConnection,
        Request,
        TextMessage,
    )
    from wsproto.events import (
        Message as WsMessage,
    )
    from wsproto.extensions import PerMessageDeflate

    host, port, target = _split(url)
    ws = WSConnection(ConnectionType.CLIENT)
    out = Echoed()
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:

        def events():
            data = sock.recv(65536)
            ws.receive_data(data or None)          # None: the peer closed the TCP connection
            if not data:
                raise ConnectionError("the server closed the TCP connection")
            yield from ws.events()

        sock.sendall(ws.send(Request(
            host=f"{host}:{port}", target=target, subprotocols=list(subprotocols or []),
            extensions=[PerMessageDeflate()] if compress else [])))
        accepted = False
        while not accepted:
            for event in events():
                if isinstance(event, RejectConnection):
                    raise ConnectionError(f"refused with {event.status_code}")
                if isinstance(event, AcceptConnection):
                    accepted = True
                    out.subprotocol = event.subprotocol
                    out.extensions = ", ".join(e.name for e in event.extensions) or None
        pending: Message | None = None
        for message in messages:
            sock.sendall(ws.send(WsMessage(data=message)))
            parts: list = []
            while pending is None:
                for event in events():
                    if isinstance(event, TextMessage | BytesMessage):
                        parts.append(event.data)
                        if event.message_finished:
                            pending = "".join(parts) if isinstance(event, TextMessage) \
                                else b"".join(parts)
                    elif isinstance(event, CloseConnection):
                        raise ConnectionError(f"closed early with {event.code}")
            out.replies.append(pending)
            pending = None
        sock.sendall(ws.send(CloseConnection(code=1000)))
        while out.close_code is None:
            for event in events():
                if isinstance(event, CloseConnection):
                    out.close_code = event.code
        # after the close handshake the server closes TCP first (RFC 6455 7.1.1)
        sock.settimeout(TIMEOUT)
        while sock.recv(65536):
            pass
    return out


# ------------------------------------------------------------------------------------- aiohttp


def aiohttp_roundtrip(url: str, messages: list[Message], *, subprotocols=None,
                      compress: bool = False) -> Echoed:
    """aiohttp's ClientSession.ws_connect."""
    import aiohttp

    async def run() -> Echoed:
        async with asyncio.timeout(TIMEOUT), aiohttp.ClientSession() as session:
            async with session.ws_connect(url, protocols=tuple(subprotocols or ()),
                                          compress=15 if compress else 0,
                                          autoclose=False, max_msg_size=0) as ws:
                out = Echoed(subprotocol=ws.protocol,
                             extensions=ws._response.headers.get("Sec-WebSocket-Extensions"))
                for message in messages:
                    if isinstance(message, str):
                        await ws.send_str(message)
                    else:
                        await ws.send_bytes(message)
                    reply = await ws.receive()
                    if reply.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        raise ConnectionError(f"got {reply.type!r} instead of a reply")
                    out.replies.append(reply.data)
                await ws.close(code=1000)
                out.close_code = ws.close_code
                return out

    return asyncio.run(run())


# -------------------------------------------------------------------------------------- picows


def picows_roundtrip(url: str, messages: list[Message], *, subprotocols=None,
                     compress: bool = False) -> Echoed:
    """picows' client (Cython). It has no permessage-deflate: compress=True is an error."""
    if compress:
        raise ValueError("picows has no permessage-deflate")
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    class Listener(WSListener):
        def __init__(self) -> None:
            self.replies: asyncio.Queue = asyncio.Queue()
            self.closed = asyncio.get_running_loop().create_future()
            self.parts: list[bytes] = []
            self.kind: WSMsgType | None = None

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                if not self.closed.done():
                    self.closed.set_result(int(frame.get_close_code().value))
                if not transport.is_close_frame_sent:
                    transport.send_close(frame.get_close_code())
                transport.disconnect()
                return
            if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
                self.kind, self.parts = frame.msg_type, []
            elif frame.msg_type != WSMsgType.CONTINUATION:
                return                              # ping/pong: auto-pong answers pings
            self.parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                data = b"".join(self.parts)
                self.replies.put_nowait(data.decode() if self.kind == WSMsgType.TEXT else data)

    async def run() -> Echoed:
        headers = {"Sec-WebSocket-Protocol": ", ".join(subprotocols)} if subprotocols else None
        async with asyncio.timeout(TIMEOUT):
            transport, listener = await ws_connect(Listener, url, extra_headers=headers,
                                                   max_frame_size=1 << 30)
            response = transport.response
            out = Echoed(subprotocol=response.headers.get("Sec-WebSocket-Protocol"),
                         extensions=response.headers.get("Sec-WebSocket-Extensions"))
            for message in messages:
                if isinstance(message, str):
                    transport.send(WSMsgType.TEXT, message.encode())
                else:
                    transport.send(WSMsgType.BINARY, message)
                out.replies.append(await listener.replies.get())
            transport.send_close(1000)
            out.close_code = await listener.closed
            await transport.wait_disconnected()
            return out

    return asyncio.run(run())


CLIENTS = {
    "websockets": websockets_roundtrip,
    "wsproto": wsproto_roundtrip,
    "aiohttp": aiohttp_roundtrip,
    "picows": picows_roundtrip,
}


# ------------------------------------------------------------------------------------ chromium


def chromium_command() -> list[str]:
    """Headless Chromium as root in a container: --no-sandbox (the setuid/namespace sandbox
    refuses root), no GPU, no first-run work, console messages on stderr."""
    from tests.support.tools import need
    return [need("chromium", "apt-get install --no-install-recommends chromium"),
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--enable-logging=stderr", "--v=0"]


def _encode(message: Message) -> dict:
    if isinstance(message, str):
        return {"t": message}
    return {"b": base64.b64encode(message).decode()}


def _decode(item: dict) -> Message:
    return item["t"] if "t" in item else base64.b64decode(item["b"])


def chromium_roundtrip(page_url: str, messages: list[Message], *, ws_url: str | None = None,
                       subprotocols=None, timeout: float = 60.0) -> Echoed:
    """Headless Chromium opens page_url (tests/support/wspage.html as the server under test
    serves it), whose script connects to ws_url (default: ws://<the page's host>/echo), sends
    the messages, closes with 1000 after the last reply and logs the outcome to the console;
    the outcome is read off chromium's stderr, then chromium is stopped. The browser always
    offers permessage-deflate: `extensions` says what the server accepted."""
    query = {"messages": json.dumps([_encode(m) for m in messages])}
    if ws_url:
        query["ws"] = ws_url
    if subprotocols:
        query["protocols"] = json.dumps(list(subprotocols))
    url = page_url + "#" + urllib.parse.urlencode(query)
    with tempfile.TemporaryDirectory(prefix="fastsock-chromium-") as profile:
        proc = subprocess.Popen([*chromium_command(), f"--user-data-dir={profile}", url],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            line = _console_result(proc, timeout)
        finally:
            _stop_group(proc)
    found = json.loads(line)
    if found["error"] and found["close_code"] in (None, 1006):
        raise ConnectionError(f"chromium: {found['error']} (close code {found['close_code']})")
    return Echoed(replies=[_decode(r) for r in found["replies"]], close_code=found["close_code"],
                  subprotocol=found["protocol"] or None, extensions=found["extensions"] or None,
                  origin=found["origin"])


def _console_result(proc: subprocess.Popen, timeout: float) -> str:
    """The page's outcome, waiting on chromium's stderr: the JSON comes in console lines
    "WSRESULT i/n chunk" (chromium cuts a long console message short, so the page sends it in
    pieces), printed as [pid:tid:time:INFO:CONSOLE:N] "WSRESULT i/n ...", source: URL (N)."""
    marker = b'"WSRESULT '
    chunks: dict[int, str] = {}
    seen: list[bytes] = []
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                break
            data = os.read(proc.stderr.fileno(), 65536)
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                seen.append(line)
                at = line.find(marker)
                if at < 0 or b"CONSOLE" not in line[:at]:
                    continue
                body = line[at + len(marker):]
                body = body[:body.rindex(b'", source:')].decode()
                place, _, chunk = body.partition(" ")
                index, total = (int(n) for n in place.split("/"))
                chunks[index] = chunk
                if len(chunks) == total:
                    return "".join(chunks[i] for i in range(total))
    tail = b"\n".join(seen[-20:]).decode(errors="replace")
    raise AssertionError(f"no whole WSRESULT from chromium within {timeout}s (exit "
                         f"{proc.poll()}, {len(chunks)} pieces); its stderr ends:\n{tail}")


def _stop_group(proc: subprocess.Popen) -> None:
    """Chromium and the helpers it started (its own session: the group id is its pid)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):   # KILL: any helper TERM left behind
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
    if proc.stderr:
        proc.stderr.close()
