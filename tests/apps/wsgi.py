"""Plain PEP 3333 apps for the WSGI tests. Outcomes a test waits for (close() called, what an
app read) go to files in $FASTSOCK_TEST_DIR."""
import json
import os
import sys
import time
from pathlib import Path
from wsgiref.validate import validator

from tests.support.garbage import freed_since_last_call

OUT = Path(os.environ.get("FASTSOCK_TEST_DIR", "/tmp"))


def note(name: str, text: str) -> None:
    (OUT / (name + ".tmp")).write_text(text)
    (OUT / (name + ".tmp")).rename(OUT / name)


def _environ_view(environ) -> dict:
    view = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int, tuple))}
    view["input_kind"] = type(environ["wsgi.input"]).__name__
    view["errors_writable"] = hasattr(environ["wsgi.errors"], "write")
    return view


def _echo_environ(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    view = _environ_view(environ)
    view["body"] = body.decode("latin-1")
    data = json.dumps(view).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


class _Closing:
    """An iterable that records its close() and what it ended with."""

    def __init__(self, name, chunks, delay=0.0, fail_at=None):
        self.name, self.chunks, self.delay, self.fail_at = name, chunks, delay, fail_at
        self.sent = 0

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError("the app failed mid-response")
            if i and self.delay:
                time.sleep(self.delay)
            self.sent += 1
            yield chunk

    def close(self):
        note(self.name, f"closed after {self.sent}")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ["QUERY_STRING"]
    if path.startswith("/environ"):
        return validator(_echo_environ)(environ, start_response)
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]
    if path == "/stream":           # ?n=COUNT&delay=SECONDS&name=NOTE
        params = dict(p.split("=") for p in query.split("&") if p)
        n, delay = int(params.get("n", 3)), float(params.get("delay", 0))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Closing(params.get("name", "stream"),
                        [b"chunk %d\n" % i for i in range(n)], delay)
    if path == "/fail-mid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Closing("fail-mid", [b"a" * 10, b"b" * 10, b"c"], fail_at=2)
    if path == "/fail-before":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Closing("fail-before", [b"x"], fail_at=0)
    if path == "/exc-info":         # an error page replaces the response not yet sent
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"error page"]
    if path == "/exc-info-late":    # too late: the head is out, so start_response re-raises
        write = start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"first "
            time.sleep(0.05)
            try:
                raise ValueError("late")
            except ValueError:
                start_response("500 Internal Server Error", [], sys.exc_info())
            yield b"never"
        del write
        return body()
    if path == "/second-start":     # start_response twice without exc_info: a 500
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b""]
    if path == "/write":            # the legacy write() callable
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"returned"]
    if path == "/upload":           # reads wsgi.input in pieces, tells how they came
        stream = environ["wsgi.input"]
        total, reads, first_at = 0, 0, None
        while True:
            piece = stream.read(65536)
            if not piece:
                break
            if first_at is None:
                first_at = time.monotonic()
                note("upload-started", str(len(piece)))
            total += len(piece)
            reads += 1
        note("upload-done", f"{total} {reads}")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{total} {reads}".encode()]
    if path == "/read-lines":
        lines = environ["wsgi.input"].readlines()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d lines; last %s" % (len(lines), lines[-1] if lines else b"-")]
    if path == "/upload-closing":   # reads the body slowly, records its close()
        stream = environ["wsgi.input"]

        def body():
            try:
                while stream.read(65536):
                    pass
                yield b"read it all"
            except OSError as e:
                note("upload-error", type(e).__name__)
                raise
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Wrapped(body(), "upload-closed")
    if path == "/sleep":
        time.sleep(float(query.partition("=")[2] or 1))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]
    if path == "/bad-header":
        start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
        return [b"no"]
    if path == "/str-body":
        start_response("200 OK", [])
        return ["a str is not bytes"]
    if path == "/garbage":          # objects requests left in cycles (tests/support/garbage.py)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(freed_since_last_call()).encode()]
    if path == "/thread":
        import threading
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [threading.current_thread().name.encode()]
    if path == "/forever":          # an endless event stream; its finally noted as ?name=
        name = query.partition("=")[2] or "forever"
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return _forever(name)
    if path == "/bodiless":         # ?status=204&name=NOTE: a streamed body it must not send
        params = dict(p.split("=") for p in query.split("&") if p)
        start_response(f"{params['status']} Whatever", [])
        return _Closing(params["name"], [b"never ", b"sent"])
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def _forever(name):
    try:
        while True:
            yield b"data: x\n\n"
            time.sleep(0.05)
    finally:
        note(name, "finally")


class _Wrapped:
    def __init__(self, it, name):
        self.it, self.name = it, name

    def __iter__(self):
        return self.it

    def close(self):
        note(self.name, "closed")
