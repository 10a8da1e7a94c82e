"""Apps for tests/integration/test_saturation_attacks2.py: requests held in the app — async, in
the thread pool, a streamed response — each until its own file `release-<id>` (or `release`)
appears in $FASTSOCK_TEST_DIR, so that a test ends some and keeps others; /pid names the
worker a connection reached; /thread-spin keeps a pool thread on the CPU. Each worker's pid is
an app metric (app_worker_pid{worker}: which slot is which process). With
FASTSOCK_TEST_BACKGROUND=1 each worker runs a thread of the app's own doing a little work
periodically (a cache refresher, a heartbeat)."""
import asyncio
import os
import threading
import time
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from fastsock import App, Response

OUT = Path(os.environ.get("FASTSOCK_TEST_DIR", "/tmp"))
HOLD_AT_MOST = 60.0         # seconds: a test that never releases does not leave handlers behind
BACKGROUND_EVERY = 0.02     # seconds between the background thread's bits of work ...
BACKGROUND_WORK = 0.0005    # ... of this much CPU each (2.5 % of a core)

app = App()


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _entered(rid: str) -> None:
    (OUT / f"entered-{rid}.tmp").write_text(str(os.getpid()))
    (OUT / f"entered-{rid}.tmp").rename(OUT / f"entered-{rid}")


def _released(rid: str) -> bool:
    return (OUT / f"release-{rid}").exists() or (OUT / "release").exists()


def _hold(rid: str) -> None:
    limit = time.monotonic() + HOLD_AT_MOST
    while not _released(rid) and time.monotonic() < limit:
        time.sleep(0.01)


async def _ahold(rid: str) -> None:
    limit = time.monotonic() + HOLD_AT_MOST
    while not _released(rid) and time.monotonic() < limit:
        await asyncio.sleep(0.01)


@app.get("/pid")
def pid(req):
    return f"{os.getpid()}\n"


@app.get("/hold-async")
async def hold_async(req):
    rid = req.query["id"]
    _entered(rid)
    await _ahold(rid)
    return "released\n"


@app.get("/hold-thread", threaded=True)
def hold_thread(req):
    rid = req.query["id"]
    _entered(rid)
    _hold(rid)
    return "released\n"


@app.get("/hold-stream")
def hold_stream(req):
    """Answered at once; its body streams until its release: in the app until the last byte."""
    rid = req.query["id"]

    async def body():
        _entered(rid)
        yield b"started\n"
        await _ahold(rid)
        yield b"released\n"
    return Response(body())


@app.get("/async")
async def async_answer(req):
    await asyncio.sleep(int(req.query.get("ms", "1")) / 1000)
    return "async\n"


@app.get("/thread", threaded=True)
def thread_answer(req):
    time.sleep(int(req.query.get("ms", "1")) / 1000)
    return "thread\n"


@app.get("/thread-spin", threaded=True)
def thread_spin(req):
    """CPU in a pool thread: the loop's thread waits for the GIL meanwhile."""
    _spin(int(req.query.get("ms", "50")) / 1000)
    return "spun\n"


class WorkerPid:
    """app_worker_pid: shown per worker (the slot as its `worker` label)."""

    def collect(self):
        yield GaugeMetricFamily("app_worker_pid", "The worker's process id.", value=os.getpid())


REGISTRY.register(WorkerPid())


@app.on_startup
def background():
    if os.environ.get("FASTSOCK_TEST_BACKGROUND") != "1":
        return

    def run():
        while True:
            time.sleep(BACKGROUND_EVERY)
            _spin(BACKGROUND_WORK)
    threading.Thread(target=run, name="app-background", daemon=True).start()
