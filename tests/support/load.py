"""A bounded background load for process tests: threads sending GETs over keep-alive
connections, recording every success, failure and the worker PID that answered."""
import threading
import time

import httpx


class Load:
    def __init__(self, url: str, path: str = "/pid", threads: int = 4, max_seconds: float = 60,
                 max_requests: int = 200_000):
        self.url, self.path, self.threads = url, path, threads
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.ok = 0
        self.errors: list[str] = []
        self.pids: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if self.ok + len(self.errors) >= self.max_requests:
                        return
                try:
                    r = client.get(self.path)
                    with self._lock:
                        if r.status_code == 200:
                            self.ok += 1
                            self.pids.add(r.text)
                        else:
                            self.errors.append(f"status {r.status_code}")
                except httpx.HTTPError as e:
                    with self._lock:
                        self.errors.append(repr(e))

    def __enter__(self):
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._workers:
            t.join(15)

    def wait_for(self, n: int, timeout: float = 10):
        deadline = time.monotonic() + timeout
        start = self.ok
        while self.ok - start < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.ok - start >= n, f"load stalled: {self.errors[-3:]}"
