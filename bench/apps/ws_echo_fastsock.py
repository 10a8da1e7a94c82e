"""The native WebSocket echo of bench/websocket.py and bench/ws_memory.py: every message sent
back as it came. With FASTSOCK_BENCH_TRACE=DIR (bench/ws_memory.py --trace), the worker traces
its allocations (tracemalloc) and GET /_snapshot?tag=T writes DIR/T.snapshot."""
from __future__ import annotations

import os

from fastsock import App

app = App()


@app.websocket("/echo")
async def echo(ws):
    async for message in ws:
        await ws.send(message)


_TRACE = os.environ.get("FASTSOCK_BENCH_TRACE")
if _TRACE:
    import tracemalloc

    tracemalloc.start(8)

    @app.get("/_snapshot")
    def snapshot(req):
        tag = req.query.get("tag", "snapshot")
        tracemalloc.take_snapshot().dump(os.path.join(_TRACE, f"{tag}.snapshot"))
        return "ok"
