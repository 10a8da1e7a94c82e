"""The Autobahn|Testsuite cases (autobahn_cases.json, made by extract_cases.py) for tests over
real sockets: `cases(...)` to parametrise over, `steps(case)` to play a case's client side.

    for kind, value in steps(case):
        if kind in ("send", "close"): sock.sendall(value)   # close: the end of a client's Close
        elif kind == "wait": ...            # the suite waits value seconds (fail-fast cases)
        elif kind in ("close_after", "expect_closed_within"): ...   # see AUTOBAHN_CASES.md
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from tests.support import wsframes as wf

HERE = Path(__file__).resolve().parent


@cache
def _all() -> tuple[dict, ...]:
    return tuple(json.loads((HERE / "autobahn_cases.json").read_text())["cases"])


def cases(*categories: int) -> list[dict]:
    """The cases of those categories (all when none are named), in the suite's order."""
    return [c for c in _all() if not categories or c["category"] in categories]


def case(case_id: str) -> dict:
    return next(c for c in _all() if c["id"] == case_id)


def payload(p: dict | None) -> bytes:
    """A payload as the JSON keeps it: hex, or a unit repeated to its size."""
    if not p:
        return b""
    if "hex" in p:
        return bytes.fromhex(p["hex"])
    unit = bytes.fromhex(p["repeat_hex"])
    return unit * (p["size"] // len(unit))


def _chopped(data: bytes, chopsize: int | None, closes: bool = False
             ) -> Iterator[tuple[str, object]]:
    """A frame's bytes in writes of chopsize; the last one's kind is "close" when the frame
    is a Close the server must take as the client's (told by the case, never guessed from the
    bytes: a chop of a masked payload can look like a Close's header)."""
    pieces = [data[at:at + chopsize] for at in range(0, len(data), chopsize)] \
        if chopsize else [data]
    for i, piece in enumerate(pieces):
        yield "close" if closes and i == len(pieces) - 1 else "send", piece


def steps(c: dict) -> Iterator[tuple[str, object]]:
    """A case's client side as ("send" | "close", bytes) and ("wait" | "close_after" |
    "expect_closed_within", seconds). "close": the write that ends the client's Close (from
    then on the client has closed). Frames are masked with random keys."""
    streaming: dict | None = None                   # a frame whose payload goes out in parts
    binary = False
    for a in c["client"]:
        op = a["op"]
        if op == "frame":
            data = payload(a["payload"])
            if a.get("payload_len") is not None:    # the payload repeated to that length
                n = a["payload_len"]
                data = (data * (n // max(len(data), 1) + 1))[:n] if data else b""
            # the suite's rsv is the 3-bit field as the builder takes it (4 is RSV1)
            # a valid Close's header: no reserved bit, a control frame's length
            closes = a["opcode"] == wf.OP_CLOSE and not a["rsv"] and len(data) < 126
            yield from _chopped(wf.frame(a["opcode"], data, fin=a["fin"], rsv=a["rsv"]),
                                a.get("chopsize"), closes)
        elif op == "message":
            data = payload(a["payload"])
            opcode = wf.OP_BINARY if a["binary"] else wf.OP_TEXT
            size = a.get("fragment_size")
            for piece in wf.pieces(opcode, data, size) if size else [wf.frame(opcode, data)]:
                yield "send", piece
        elif op == "begin_message":
            binary = a["binary"]
        elif op == "begin_message_frame":
            # the header (declared length, mask) now, the payload in the parts that follow
            mask = os.urandom(4)
            header = wf.frame(wf.OP_BINARY if binary else wf.OP_TEXT, b"", mask=mask,
                              declared=a["length"])
            streaming = {"mask": mask, "at": 0}
            yield "send", header
        elif op == "message_frame_data":
            data = payload(a["payload"])
            assert streaming is not None, "message_frame_data outside a frame"
            # the mask goes on from where the frame's payload is
            shift = streaming["at"] % 4
            mask = streaming["mask"][shift:] + streaming["mask"][:shift]
            streaming["at"] += len(data)
            yield "send", wf.apply_mask(data, mask)
        elif op == "end_message":
            streaming = None
        elif op in ("close", "close_frame"):
            reason = payload(a.get("reason"))
            code = a.get("code")
            # no code: the reason alone is the body (7.3.2 sends a 1-byte one)
            data = wf.close(code, reason) if code is not None else wf.frame(wf.OP_CLOSE, reason)
            yield "close" if len(reason) + (2 if code is not None else 0) < 126 else "send", data
        elif op in ("wait", "close_after", "expect_closed_within"):
            yield op, a["seconds"]
        else:
            raise ValueError(f"case {c['id']}: unknown client action {op!r}")


def wire(c: dict) -> bytes:
    """All the bytes a case's client sends, waits left out."""
    return b"".join(v for k, v in steps(c) if k in ("send", "close"))


def server_must_fail(c: dict) -> bool:
    """Whether the server must fail the connection (or answer the client's close with an error
    code): the suite expects it to close first, or allows no 1000 in its close."""
    close = c["expected_close"]
    return not close["closedByMe"] or 1000 not in close["closeCode"]
