"""WebSocket frames as a client sends them (RFC 6455 §5.2), built byte by byte in Python, so the
tests can send what no well-behaved client library would: reserved bits, unknown opcodes,
unmasked or oversized frames, non-minimal lengths, payloads cut anywhere. And the other side of
a raw-socket test: the server's frames read as they came (`ServerFrames`, `parse_frame`), its
compressed messages inflated (`Inflater`), and the opening handshake over a plain socket
(`upgrade`)."""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
          mask: bytes | None = None, masked: bool = True, length_form: int | None = None,
          declared: int | None = None) -> bytes:
    """One client frame. `rsv` is the 3-bit RSV field (4 = RSV1); `mask` the 4-byte key (random
    when None); `masked=False` sends none. `length_form` (7, 16 or 64) forces a length encoding,
    minimal or not; `declared` writes a length other than the payload's."""
    n = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)])
    form = length_form or (7 if n < 126 else 16 if n < 65536 else 64)
    bit = 0x80 if masked else 0
    if form == 7:
        head += bytes([bit | n])
    elif form == 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4) if mask is None else mask
    return head + key + apply_mask(payload, key)


def apply_mask(payload: bytes, key: bytes) -> bytes:
    """payload XOR the repeated 4-byte key (masking and unmasking are the same)."""
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big")


def close(code: int | None = None, reason: bytes = b"", **kw: object) -> bytes:
    """A client close frame: no payload when code is None."""
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(OP_CLOSE, payload, **kw)  # type: ignore[arg-type]


def fragments(opcode: int, payload: bytes, size: int, **kw: object) -> bytes:
    """A message cut into frames of `size` payload bytes (at least one frame)."""
    parts = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
    return b"".join(frame(opcode if i == 0 else OP_CONT, part, fin=i == len(parts) - 1,
                          **kw)  # type: ignore[arg-type]
                    for i, part in enumerate(parts))


def pieces(opcode: int, payload: bytes, size: int, **kw: object) -> list[bytes]:
    """fragments(), one frame an item: to send other frames between them."""
    parts = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
    return [frame(opcode if i == 0 else OP_CONT, part, fin=i == len(parts) - 1,
                  **kw)  # type: ignore[arg-type]
            for i, part in enumerate(parts)]


def parse_server_frames(data: bytes) -> list[tuple[int, bool, bool, bytes]]:
    """Frames a server wrote, as (opcode, fin, rsv1, payload); refuses a masked one."""
    frames = []
    i = 0
    while i < len(data):
        b0, b1 = data[i], data[i + 1]
        assert not b1 & 0x80, "a server frame is never masked"
        n, i = b1 & 0x7F, i + 2
        if n == 126:
            n, i = struct.unpack("!H", data[i:i + 2])[0], i + 2
        elif n == 127:
            n, i = struct.unpack("!Q", data[i:i + 8])[0], i + 8
        frames.append((b0 & 0x0F, bool(b0 & 0x80), bool(b0 & 0x40), data[i:i + n]))
        i += n
    return frames


def deflated(payload: bytes, compressor: object = None) -> bytes:
    """A message's payload as a permessage-deflate client sends it (RFC 7692 §7.2.1): raw
    deflate, flushed, its 00 00 ff ff tail cut. Pass the same zlib compressor across messages
    for context takeover."""
    import zlib
    c = compressor or zlib.compressobj(wbits=-15)
    data = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)  # type: ignore[attr-defined]
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


class Inflater:
    """A compressed message the server sent (its frames' payloads joined), inflated
    (RFC 7692 §7.2.2); one Inflater across messages for context takeover."""

    def __init__(self, window_bits: int = 15, takeover: bool = True):
        self.window_bits, self.takeover = window_bits, takeover
        self._d = zlib.decompressobj(wbits=-window_bits)

    def decompress(self, payload: bytes) -> bytes:
        if not self.takeover:
            self._d = zlib.decompressobj(wbits=-self.window_bits)
        return self._d.decompress(payload + b"\x00\x00\xff\xff")


# ---------------------------------------------------------------- the server's frames, one by one


@dataclass
class Frame:
    opcode: int
    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    payload: bytes
    masked: bool = False            # a server must never mask (RFC 6455 §5.1)
    header_size: int = 2            # 2, 4 or 10 (+4 when masked): the length encoding that came

    @property
    def close_code(self) -> int | None:
        """A close frame's code, None when its body is empty."""
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode()

    @property
    def text(self) -> str:
        return self.payload.decode()


def parse_frame(data: bytes | bytearray) -> tuple[Frame, int] | None:
    """The first whole frame in data and the bytes it took, or None while it is incomplete."""
    if len(data) < 2:
        return None
    first, second = data[0], data[1]
    n, at = second & 0x7F, 2
    if n == 126:
        if len(data) < 4:
            return None
        n, at = struct.unpack_from("!H", data, 2)[0], 4
    elif n == 127:
        if len(data) < 10:
            return None
        n, at = struct.unpack_from("!Q", data, 2)[0], 10
    masked = bool(second & 0x80)
    key = b""
    if masked:
        if len(data) < at + 4:
            return None
        key, at = bytes(data[at:at + 4]), at + 4
    if len(data) < at + n:
        return None
    payload = bytes(data[at:at + n])
    if masked:
        payload = apply_mask(payload, key)
    return Frame(opcode=first & 0x0F, fin=bool(first & 0x80), rsv1=bool(first & 0x40),
                 rsv2=bool(first & 0x20), rsv3=bool(first & 0x10), payload=payload,
                 masked=masked, header_size=at), at + n


class ServerFrames:
    """The server's frames off a socket, one at a time, as they came (nothing validated or
    joined: the tests judge). leftover: the bytes read past the handshake's head."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"", timeout: float = 5.0):
        self.sock, self.buf = sock, bytearray(leftover)
        sock.settimeout(timeout)

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return False
        self.buf += data
        return True

    def next(self) -> Frame:
        """The next frame; ConnectionError when the TCP connection ends first (TimeoutError
        when nothing comes within the timeout)."""
        while True:
            found = parse_frame(self.buf)
            if found:
                f, used = found
                del self.buf[:used]
                return f
            if not self._fill():
                raise ConnectionError(f"the server closed the connection ({len(self.buf)} "
                                      f"bytes of a frame unread)")

    def message(self) -> tuple[int, bytes, list[Frame]]:
        """A whole data message: (its opcode, its payload, the control frames that came between
        its fragments). ConnectionError on a close frame instead."""
        controls: list[Frame] = []
        opcode, parts = None, []
        while True:
            f = self.next()
            if f.opcode >= 0x8:
                controls.append(f)
                if f.opcode == OP_CLOSE:
                    raise ConnectionError(f"closed with {f.close_code} instead of a message")
                continue
            if opcode is None:
                opcode = f.opcode
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts), controls

    def closed(self, timeout: float = 5.0) -> bool:
        """Whether the server ends the TCP connection (EOF or reset) within timeout, discarding
        what comes before."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                self.buf.clear()
        except TimeoutError:
            return False
        return True


# ---------------------------------------------------------------------------- the handshake


GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"      # RFC 6455 §1.3


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer key with (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class Headers(list):
    """A response head's fields: (lower-case name, value) pairs in order; `key` is the
    Sec-WebSocket-Key the request sent (accept_key(headers.key) is the answer it must get)."""

    key: str | None = None

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self if k == name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.get_all(name)
        return ", ".join(values) if values else default


def upgrade(port: int, path: str = "/echo", *, subprotocols: Iterable[str] | None = None,
            extensions: str | None = None, headers: Iterable[tuple[str, str]] = (),
            key: str | None = None, version: str | None = "13", host: str | None = None,
            timeout: float = 5.0, head: bytes | None = None
            ) -> tuple[int, Headers, socket.socket, bytes]:
    """Open a TCP connection to 127.0.0.1:port, send an upgrade request, read the response head.
    Returns (status, headers, the socket, what came after the head). extensions: the
    Sec-WebSocket-Extensions value as written; headers: more fields (added as given, so a test
    can repeat or misspell one); version None / key "" leave that field out; head: the whole
    request as bytes instead (any malformation). The socket is the caller's to close."""
    if head is None:
        key = base64.b64encode(os.urandom(16)).decode() if key is None else key
        lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}",
                 "Upgrade: websocket", "Connection: Upgrade"]
        if key:
            lines.append(f"Sec-WebSocket-Key: {key}")
        if version is not None:
            lines.append(f"Sec-WebSocket-Version: {version}")
        if subprotocols:
            lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
        if extensions:
            lines.append(f"Sec-WebSocket-Extensions: {extensions}")
        lines += [f"{k}: {v}" for k, v in headers]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before a response head: {data[:300]!r}")
            data += chunk
            if len(data) > 1 << 16:
                raise ConnectionError(f"no end to the response head: {data[:300]!r}")
    except BaseException:
        sock.close()
        raise
    raw, _, leftover = data.partition(b"\r\n\r\n")
    status_line, *fields = raw.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    parsed = Headers()
    parsed.key = key
    for line in fields:
        name, _, value = line.partition(":")
        parsed.append((name.strip().lower(), value.strip()))
    return status, parsed, sock, leftover
