"""A custom collector (the app's code, on prometheus_client's REGISTRY) that blocks while
FASTSOCK_TEST_DIR/hold exists (up to 60 s), leaving FASTSOCK_TEST_DIR/collecting-<pid> while
it does: a database-backed collector whose database hangs."""
import os
import time
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from fastsock import App

DIR = Path(os.environ["FASTSOCK_TEST_DIR"])


class HangingCollector:
    def collect(self):
        marker = DIR / f"collecting-{os.getpid()}"
        marker.touch()
        deadline = time.monotonic() + 60
        while (DIR / "hold").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        marker.unlink(missing_ok=True)
        yield GaugeMetricFamily("slow_thing", "a figure that takes its time", value=1)


REGISTRY.register(HangingCollector())
app = App()


@app.get("/hello")
def hello(req):
    return f"{os.getpid()}\n"
