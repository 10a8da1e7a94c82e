"""The WebSocket clients of tests/support/wsclients.py, proven against a reference server:
uvicorn (its `websockets` and `wsproto` implementations) serving the Starlette echo app of
tests/apps/ws_reference.py; and fastsock serving the same app, and its native twin
(tests/apps/ws_reference_native.py). The server is a fixture
parametrised over WS_SERVERS (a start function returning a Server each)."""
from __future__ import annotations

import os
import subprocess
import sys
import zlib

import pytest

from tests.support import wsframes as wf
from tests.support.servers import ROOT, Server, free_port, start_server
from tests.support.waiting import wait_until
from tests.support.wsclients import CLIENTS, chromium_roundtrip

APP = "tests.apps.ws_reference:app"


def start_uvicorn(tmp_path, ws: str) -> Server:
    port = free_port()
    log_path, out_path = tmp_path / f"uvicorn-{port}.err", tmp_path / f"uvicorn-{port}.out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    with open(log_path, "wb") as err, open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port),
             "--ws", ws, "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, stdout=out, stderr=err, env=env)
    server = Server(proc, port, log_path, out_path)

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}:\n{server.log()}")
        try:
            server.connect(0.5).close()
            return True
        except OSError:
            return False

    wait_until(listening, 15, what="uvicorn listening", server=server)
    return server


WS_SERVERS = {
    "uvicorn-websockets": lambda tmp: start_uvicorn(tmp, "websockets"),
    "uvicorn-wsproto": lambda tmp: start_uvicorn(tmp, "wsproto"),
    # the same Starlette app through fastsock's ASGI adapter, and as a native app
    "fastsock-asgi": lambda tmp: start_server(tmp, app=APP),
    "fastsock": lambda tmp: start_server(tmp, app="tests.apps.ws_reference_native:app"),
}

MESSAGES = ["hello", "", "ünïcödé ✓ 𝄞", b"\x00\xff binary \x80", b"", "x" * 70_000,
            bytes(range(256)) * 300]


@pytest.fixture(scope="module", params=list(WS_SERVERS))
def ws_server(request, tmp_path_factory):
    server = WS_SERVERS[request.param](tmp_path_factory.mktemp("ws"))
    yield server
    server.stop()


def ws_url(server: Server, path: str = "/echo") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


@pytest.mark.parametrize("client", list(CLIENTS))
def test_each_client_echoes_text_and_binary_then_closes_1000(ws_server, client):
    echoed = CLIENTS[client](ws_url(ws_server), MESSAGES)
    assert echoed.replies == MESSAGES
    assert [type(r) for r in echoed.replies] == [type(m) for m in MESSAGES]
    assert echoed.close_code == 1000
    assert echoed.subprotocol is None


@pytest.mark.parametrize("client", list(CLIENTS))
def test_each_client_negotiates_a_subprotocol(ws_server, client):
    echoed = CLIENTS[client](ws_url(ws_server), ["ping"], subprotocols=["chat.v2", "chat.v1"])
    assert echoed.subprotocol == "chat.v2"
    assert echoed.replies == ["ping"]


@pytest.mark.parametrize("client", ["websockets", "wsproto", "aiohttp"])
def test_each_client_with_permessage_deflate(ws_server, client):
    # compressible and incompressible messages, both ways through the deflate context
    messages = ["a" * 50_000, os.urandom(20_000), "short", b"b" * 10]
    echoed = CLIENTS[client](ws_url(ws_server), messages, compress=True)
    assert echoed.replies == messages
    assert "permessage-deflate" in (echoed.extensions or "")
    assert echoed.close_code == 1000


@pytest.mark.parametrize("client", list(CLIENTS))
def test_without_compression_no_extension_is_accepted(ws_server, client):
    echoed = CLIENTS[client](ws_url(ws_server), ["a" * 1000])
    assert not echoed.extensions


def test_picows_refuses_compression_it_does_not_have(ws_server):
    with pytest.raises(ValueError, match="permessage-deflate"):
        CLIENTS["picows"](ws_url(ws_server), ["x"], compress=True)


@pytest.mark.parametrize("client", list(CLIENTS))
def test_each_client_fails_fast_on_a_refused_upgrade(ws_server, client):
    """A path with no WebSocket route: the helper raises, it does not hang or return."""
    with pytest.raises(Exception):  # noqa: B017  (each library has its own error type)
        CLIENTS[client](ws_url(ws_server, "/no-such-socket"), ["x"])


def test_chromium_on_a_same_origin_page(ws_server):
    page = f"http://127.0.0.1:{ws_server.port}/ws-page"
    messages = ["from the browser", "ünïcödé ✓", b"\x00\x01\xfe\xff", "y" * 100_000]
    echoed = chromium_roundtrip(page, messages)
    assert echoed.replies == messages
    assert echoed.close_code == 1000
    assert echoed.origin == f"http://127.0.0.1:{ws_server.port}"
    # Chromium always offers permessage-deflate; uvicorn's implementations accept it
    assert "permessage-deflate" in (echoed.extensions or "")


def test_chromium_subprotocol_and_the_origin_the_app_sees(ws_server):
    page = f"http://127.0.0.1:{ws_server.port}/ws-page"
    echoed = chromium_roundtrip(page, ["x"], subprotocols=["chat.v1"])
    assert echoed.subprotocol == "chat.v1"
    assert echoed.replies == ["x"]
    # /origin sends the Origin header the handshake carried, then closes 1000
    origin = chromium_roundtrip(page, ["ignored"], ws_url=ws_url(ws_server, "/origin"))
    assert origin.replies == [f"http://127.0.0.1:{ws_server.port}"]
    assert origin.close_code == 1000


def test_chromium_reports_a_refused_upgrade(ws_server):
    page = f"http://127.0.0.1:{ws_server.port}/ws-page"
    with pytest.raises(ConnectionError, match="chromium"):
        chromium_roundtrip(page, ["x"], ws_url=ws_url(ws_server, "/no-such-socket"))


# ------------------------------------------- the raw-socket helpers (tests/support/wsframes.py)


def test_raw_handshake_then_frames_by_hand(ws_server):
    status, headers, sock, leftover = wf.upgrade(ws_server.port, subprotocols=["chat.v1", "x"])
    with sock:
        assert status == 101
        assert headers.get("sec-websocket-accept") == wf.accept_key(headers.key)
        assert headers.get("sec-websocket-protocol") == "chat.v1"
        assert headers.get("upgrade").lower() == "websocket"
        reader = wf.ServerFrames(sock, leftover)
        sock.sendall(wf.frame(wf.OP_TEXT, b"hello"))
        f = reader.next()
        assert (f.opcode, f.fin, f.text, f.masked) == (wf.OP_TEXT, True, "hello", False)
        # a fragmented message with a ping between its fragments: the pong comes (same
        # payload), and the message is echoed whole
        first, second, third = wf.pieces(wf.OP_BINARY, b"0123456789" * 30, 100)
        sock.sendall(first + wf.frame(wf.OP_PING, b"are you there") + second + third)
        opcode, data, controls = reader.message()
        assert (opcode, data) == (wf.OP_BINARY, b"0123456789" * 30)
        assert [(c.opcode, c.payload) for c in controls] == [(wf.OP_PONG, b"are you there")]
        # a 64-bit length
        sock.sendall(wf.frame(wf.OP_BINARY, b"z" * 70_000))
        assert reader.message()[1] == b"z" * 70_000
        # the close handshake: our 1000 comes back, then the server ends TCP
        sock.sendall(wf.close(1000, b"done"))
        closing = reader.next()
        assert (closing.opcode, closing.close_code) == (wf.OP_CLOSE, 1000)
        assert reader.closed()


def test_raw_compressed_message_both_ways(ws_server):
    status, headers, sock, leftover = wf.upgrade(
        ws_server.port, extensions="permessage-deflate; client_max_window_bits")
    with sock:
        assert status == 101
        assert "permessage-deflate" in headers.get("sec-websocket-extensions", "")
        reader = wf.ServerFrames(sock, leftover)
        compressor, inflater = zlib.compressobj(wbits=-15), wf.Inflater()
        for message in ("ü" * 3000, "short", "ü" * 3000):
            sock.sendall(wf.frame(wf.OP_TEXT, wf.deflated(message.encode(), compressor), rsv=4))
            f = reader.next()
            payload = inflater.decompress(f.payload) if f.rsv1 else f.payload
            assert (f.opcode, payload.decode()) == (wf.OP_TEXT, message)


@pytest.mark.parametrize("kw", [{"version": "12"}, {"version": None}, {"key": ""}])
def test_raw_handshake_refusals_come_as_a_status(ws_server, kw):
    """The helper hands back a refused upgrade's status and head (the reference server's
    statuses differ: uvicorn's websockets says 400 to version 12 where RFC 6455 §4.4 wants
    426; fastsock's tests hold it to the RFC)."""
    status, headers, sock, leftover = wf.upgrade(ws_server.port, **kw)
    sock.close()
    assert 400 <= status < 500
    assert headers.get("sec-websocket-accept") is None


def test_raw_unmasked_frame_fails_the_connection(ws_server):
    """An unmasked client frame (RFC 6455 §5.1): no echo, the connection failed; a close frame
    first, if any, says 1002 (uvicorn's websockets sends one, its wsproto only closes TCP)."""
    status, _, sock, leftover = wf.upgrade(ws_server.port)
    with sock:
        assert status == 101
        reader = wf.ServerFrames(sock, leftover)
        sock.sendall(wf.frame(wf.OP_TEXT, b"no mask", masked=False))
        frames = []
        with pytest.raises(ConnectionError):
            while True:
                frames.append(reader.next())
        assert [(f.opcode, f.close_code) for f in frames] in ([], [(wf.OP_CLOSE, 1002)])
