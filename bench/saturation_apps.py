"""The services bench/saturation.py drives past their capacity; each answers GET /.

Their sizes come from the environment, set by the script:
  SAT_POOL       connections to the slow dependency per worker (an asyncio.Semaphore)
  SAT_DELAY_MS   the dependency's latency, MIN,MAX ms (uniform)
  SAT_CPU_MS     CPU ms per request of the CPU-bound handler
  SAT_HOLD_MS    ms the accept scenario's handler holds the loop (a blocking call made inline)
"""
import asyncio
import os
import random
import time

from fastsock import App

POOL = int(os.environ.get("SAT_POOL", "16"))
DELAY_MIN, DELAY_MAX = (float(ms) / 1e3 for ms in os.environ.get("SAT_DELAY_MS", "10,200")
                        .split(","))
CPU_S = float(os.environ.get("SAT_CPU_MS", "1.5")) / 1e3
HOLD_S = float(os.environ.get("SAT_HOLD_MS", "5")) / 1e3

dependency = App()      # async handlers awaiting a database through a pool of POOL connections
_pool = asyncio.Semaphore(POOL)     # bound to a loop on first use: one per worker after the fork


@dependency.get("/")
async def query(req):
    async with _pool:
        await asyncio.sleep(random.uniform(DELAY_MIN, DELAY_MAX))
    return "done"


cpu = App()             # an inline handler computing for CPU_S seconds


@cpu.get("/")
def compute(req):
    # thread CPU time, not wall time: the same work whatever else runs on the core
    end = time.thread_time() + CPU_S
    while time.thread_time() < end:
        pass
    return "done"


hold = App()            # an inline handler blocking the loop: nothing is accepted meanwhile


@hold.get("/")
def blocking(req):
    time.sleep(HOLD_S)
    return "done"
