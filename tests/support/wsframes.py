"""WebSocket frames as a client sends them (RFC 6455 §5.2), built byte by byte in Python, so the
tests can send what no well-behaved client library would: reserved bits, unknown opcodes,
unmasked or oversized frames, non-minimal lengths, payloads cut anywhere."""
from __future__ import annotations

import os
import struct

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
