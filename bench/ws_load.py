"""The WebSocket load generator of bench/websocket.py: picows' client (Cython framing) on uvloop,
one process, C connections each keeping W messages in flight (send one as each echo comes back).
The generator is made cheap so that the server is what is measured: its frames are masked once
at start-up (one mask for all: the server unmasks them all the same), and the replacements for
the echoes one read brought are written in one write (picows' `last_in_buffer`), not one each.
It reads the server's CPU time (/proc, its whole process tree) at the start and end of the
measured window itself, so the count and the CPU are taken over the same interval.

    taskset -c 1 python bench/ws_load.py URL --pid SERVER_PID [--connections 100] [--inflight 8]
        [--size 32] [--text] [--duration 10] [--warmup 1]

Prints one JSON line: messages echoed in the window, the window's seconds, the server's and this
process's CPU seconds in it, and the echoes of the wrong size (must be 0).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (cpu_split: a process tree's CPU from /proc)


def masked_frame(payload: bytes, opcode: int) -> bytes:
    """One final client frame, masked (RFC 6455 5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 1 << 16:
        length = bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode]) + length + mask + body


class State:
    def __init__(self, payload: bytes, kind: WSMsgType):
        self.payload, self.kind = payload, kind
        self.frame = masked_frame(payload, 1 if kind == WSMsgType.TEXT else 2)
        self.frames = [self.frame * k for k in range(65)]      # k frames in one write
        self.echoed = 0             # whole messages back, all along
        self.wrong = 0              # whole messages back whose size is not what was sent
        self.in_flight = 0
        self.sending = True
        self.drained: asyncio.Future | None = None


class Client(WSListener):
    def __init__(self, state: State):
        self.state, self.got, self.owed = state, 0, 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.write = transport.underlying_transport.write

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.disconnect()
            return
        state = self.state
        if kind not in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            pass                                    # pings are answered by picows
        elif frame.fin:
            self.got += frame.payload_size
            state.echoed += 1
            if self.got != len(state.payload):
                state.wrong += 1
            self.got = 0
            if state.sending:
                self.owed += 1
            else:
                state.in_flight -= 1
        else:
            self.got += frame.payload_size
        if self.owed and frame.last_in_buffer:
            while self.owed > 64:
                self.write(state.frames[64])
                self.owed -= 64
            self.write(state.frames[self.owed])
            self.owed = 0
        if not state.sending:
            if state.in_flight == 0 and state.drained and not state.drained.done():
                state.drained.set_result(None)


async def main(args) -> dict:
    kind = WSMsgType.TEXT if args.text else WSMsgType.BINARY
    state = State(b"x" * args.size, kind)
    conns: list[WSTransport] = []
    for start in range(0, args.connections, 50):    # in batches: no listen backlog overflow
        batch = range(start, min(start + 50, args.connections))
        conns += [t for t, _ in await asyncio.gather(
            *(ws_connect(lambda: Client(state), args.url, max_frame_size=1 << 24)
              for _ in batch))]
    for transport in conns:
        transport.underlying_transport.write(state.frame * args.inflight)
    state.in_flight = len(conns) * args.inflight
    await asyncio.sleep(args.warmup)
    count0, server0, client0, t0 = (state.echoed, sum(bench.cpu_split(args.pid)),
                                    time.process_time(), time.monotonic())
    await asyncio.sleep(args.duration)
    count1, server1, client1, t1 = (state.echoed, sum(bench.cpu_split(args.pid)),
                                    time.process_time(), time.monotonic())
    state.sending = False
    state.drained = asyncio.get_running_loop().create_future()
    try:
        await asyncio.wait_for(state.drained, 30)
    except TimeoutError:
        pass
    lost = state.in_flight
    for transport in conns:
        transport.send_close()
    for transport in conns:
        try:
            await asyncio.wait_for(transport.wait_disconnected(), 5)
        except TimeoutError:
            transport.disconnect(graceful=False)
    return {"messages": count1 - count0, "seconds": t1 - t0, "server_cpu": server1 - server0,
            "client_cpu": client1 - client0, "wrong_size": state.wrong, "lost": lost,
            "connections": len(conns)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("--pid", type=int, required=True, help="the server's PID (its CPU time)")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--inflight", type=int, default=8, help="messages in flight per connection")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--text", action="store_true", help="text messages (default: binary)")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=1)
    print(json.dumps(uvloop.run(main(ap.parse_args()))))
