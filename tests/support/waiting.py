"""Waiting on a condition, never on a fixed sleep: poll a cheap check until it holds or a generous
deadline (a hang guard, not a performance bound) passes."""
from __future__ import annotations

import time
from pathlib import Path


def wait_for_text(path: Path, timeout: float = 10.0) -> str:
    """The text of a file an app writes (a handler's outcome), once it is there."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.read_text()


def wait_until(predicate, timeout=10.0, what="condition", server=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}" +
                         (f"; server log:\n{server.log()}" if server else ""))


def wait_for_log(server, text: str, timeout: float = 10.0, stream: str = "log") -> str:
    """The server's error log (stream="log") or access log ("stdout") once it holds text."""
    read = server.log if stream == "log" else server.stdout
    wait_until(lambda: text in read(), timeout, what=f"{text!r} in the {stream}", server=server)
    return read()
