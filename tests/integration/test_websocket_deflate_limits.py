"""permessage-deflate at --ws-max-message over real sockets: a compressed text message that
inflates past the limit is 1007 when the text within the limit is invalid UTF-8, else 1009;
one that inflates to the limit exactly is served. The same however it is cut (one frame, a
compressed first frame and continuation frames) and however the reads fall (written whole,
in 7-byte and 1-byte pieces); after such a failure the connection is closed, its compression
context never used again."""
from __future__ import annotations

import random
import socket
import zlib

import pytest

from tests.support import wsframes as W
from tests.support.servers import start_server

LIMIT = 4096
DEFLATE = "permessage-deflate"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("wsdeflate"), "--workers", "2",
                     "--ws-max-message", str(LIMIT), app="tests.apps.websockets_hostile:app")
    yield s
    s.stop()


def text(n: int, seed: int = 1) -> bytes:
    """n bytes of ASCII that compress only so much (the compressed frames are long enough
    to be cut into many reads)."""
    rng = random.Random(seed)
    return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(n))


def wire(payload: bytes, cut: str, compressor=None) -> bytes:
    data = W.deflated(payload, compressor)
    if cut == "one-frame":
        return W.frame(W.OP_TEXT, data, rsv=4)
    # RSV1 on the first frame only (RFC 7692 §6.1); the rest as continuations
    size = max(1, len(data) // 5)
    return W.frame(W.OP_TEXT, data[:size], fin=False, rsv=4) + \
        W.fragments(W.OP_CONT, data[size:], size)


def send(sock: socket.socket, data: bytes, pieces: int) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for i in range(0, len(data), pieces or len(data)):
            sock.sendall(data[i:i + (pieces or len(data))])
    except (BrokenPipeError, ConnectionResetError):
        pass                    # the server failed the connection before the rest came


def opened(server) -> tuple[socket.socket, bytes]:
    status, headers, sock, rest = W.upgrade(server.port, "/echo", extensions=DEFLATE,
                                            timeout=10)
    assert status == 101 and "permessage-deflate" in (headers.get(
        "sec-websocket-extensions") or "")
    return sock, rest


def outcome(server, payload: bytes, cut: str, pieces: int, before: bytes = b"") -> str:
    """"echoed" or "closed <code>" (the TCP connection then ended, nothing more read)."""
    sock, rest = opened(server)
    frames = W.ServerFrames(sock, rest, timeout=10)
    compressor = zlib.compressobj(wbits=-15)        # context takeover across messages
    inflater = W.Inflater()
    try:
        if before:
            send(sock, wire(before, cut, compressor), pieces)
            assert inflater.decompress(frames.message()[1]) == before
        send(sock, wire(payload, cut, compressor), pieces)
        f = frames.next()
        if f.opcode == W.OP_CLOSE:
            code = f.close_code
            # failed: the server closes the TCP connection (never reads a next message)
            send(sock, wire(b"again", cut, compressor), 0)
            assert frames.closed(10), "the connection outlived its failure"
            return f"closed {code}"
        assert f.opcode == W.OP_TEXT and f.rsv1
        data = f.payload
        while not f.fin:                            # (the echo may come in fragments)
            f = frames.next()
            data += f.payload
        assert inflater.decompress(data) == payload
        return "echoed"
    finally:
        sock.close()


EURO = "€".encode()     # E2 82 AC
CASES = {
    "exactly the limit": (text(LIMIT), "echoed"),
    "one past the limit": (text(LIMIT + 1), "closed 1009"),
    "far past the limit": (text(LIMIT * 8), "closed 1009"),
    "invalid well within, past the limit": (text(100) + b"\xff" + text(LIMIT * 2), "closed 1007"),
    "invalid last byte within the limit": (text(LIMIT - 1) + b"\xff" + text(50), "closed 1007"),
    "invalid first byte past the limit": (text(LIMIT) + b"\xff" + text(50), "closed 1009"),
    "a character straddling the limit": (text(LIMIT - 1) + EURO + text(50), "closed 1009"),
    "a character ending at the limit": (text(LIMIT - 3) + EURO, "echoed"),
    "a character cut at the limit, then invalid": (text(LIMIT - 1) + b"\xe2\x28" + text(50),
                                                   "closed 1009"),
    "a bad continuation within the limit": (text(LIMIT - 2) + b"\xe2\x28" + text(50),
                                            "closed 1007"),
    "a surrogate within the limit": (text(LIMIT - 3) + b"\xed\xa0\x80" + text(9), "closed 1007"),
    "invalid, inflating to the limit": (text(10) + b"\xff" + text(LIMIT - 11), "closed 1007"),
}


@pytest.mark.parametrize("pieces", [0, 7, 1], ids=["whole", "7-byte-writes", "1-byte-writes"])
@pytest.mark.parametrize("cut", ["one-frame", "fragments"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_compressed_text_message_at_the_limit(server, case, cut, pieces):
    payload, expected = CASES[case]
    if pieces == 1 and len(payload) > LIMIT * 2:
        pieces = 64             # (a byte a write for 30 KiB of frames: needlessly slow)
    assert outcome(server, payload, cut, pieces) == expected


@pytest.mark.parametrize("case", ["one past the limit", "invalid well within, past the limit",
                                  "a character straddling the limit"])
def test_after_a_message_the_context_holds_the_same_judgement(server, case):
    # the message before fills the compression window (context takeover): the failing one
    # refers back into it, and the judgement is the same
    payload, expected = CASES[case]
    assert outcome(server, payload, "fragments", 7, before=text(LIMIT, seed=2)) == expected
    # (text(n) is a prefix of text(m): the failing message's start is all back-references)
    assert outcome(server, payload, "one-frame", 0, before=text(LIMIT - 10)) == expected
