"""WSGI (PEP 3333) applications — Flask, Django, ... — served by fastsock.

Each request runs `app(environ, start_response)` in the worker's thread pool, so the loop keeps
serving while the app blocks. A body of up to common.STREAM_ABOVE bytes is read whole before
the app starts; a larger or chunked one is streamed: `wsgi.input` reads it from the connection as
the app asks, under --max-body-size (413 past it), never gathered whole. A response whose length is
known (a list, or a Content-Length up to GATHER_UP_TO) goes out whole; any other is streamed
chunked from the same thread as the app yields it, with back-pressure. The iterable's close() is
called in every case — done, failed, or the client gone — in the thread that iterated it.
"""
from __future__ import annotations

import io
import logging
import queue
import sys
import threading
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from fastsock._handoff import BodyIn, Deferred
from fastsock._shared import KIND_WSGI
from fastsock.adapters.common import (
    REFUSALS,
    ClientDisconnected,
    app_response,
    head_body,
    split_authority,
    stream_large_bodies,
)
from fastsock.adapters.routelabels import RouteLabels
from fastsock.dispatch import answer_reserved
from fastsock.responses import GATEWAY_TIMEOUT, POOL_FULL, SERVER_ERROR
from fastsock.version import __version__

if TYPE_CHECKING:                       # for the annotations only: no import at run time
    import asyncio

error_log = logging.getLogger("fastsock.error")

GATHER_UP_TO = 1 << 20      # a response with a Content-Length up to this is sent whole
_END = object()



class WSGIApp:
    """A PEP 3333 application, as the server serves it (one per worker)."""

    def __init__(self, app, config, runner, workers: int = 1):
        if not runner.threads:
            raise ValueError("a WSGI app runs in the thread pool: --threads must be above 0")
        self.app, self.runner = app, runner
        self.labels = RouteLabels(app)
        self.max_body_size = config.max_body_size
        self.refused = refusal_for(app)
        self.startup = self.shutdown = ()
        host, port = (config.uds, "0") if config.uds else (config.host, str(config.port))
        # what every environ holds: copied, then the request's own keys set
        self.base = {
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": workers > 1,
            "wsgi.run_once": False, "wsgi.input_terminated": True,
            "SCRIPT_NAME": config.root_path, "SERVER_NAME": host, "SERVER_PORT": port,
            "SERVER_SOFTWARE": f"fastsock/{__version__}",
        }

    def route_names(self) -> dict[int, str]:
        return self.labels.names

    def body_streams(self, runner, default_limit: int):
        """A large or chunked body streams to wsgi.input as it arrives."""
        return stream_large_bodies(self.max_body_size)

    def dispatcher(self, reserved, runner):
        reserved_answer = answer_reserved(reserved)
        loop = runner.loop
        limit = runner.threads + runner.backlog
        timeout = runner.timeout
        fallback = self.labels.fallback

        def dispatch(req):
            answer = reserved_answer(req)
            if answer is not None:
                return answer
            if runner.thread_jobs >= limit:
                runner.refused()
                return POOL_FULL
            req.route_id = fallback         # until the app tells its route
            deferred = Deferred(KIND_WSGI)
            call = _Call(self, req, deferred, loop)
            deferred.on_cancel = call.gone
            runner.submit(call.run)
            if timeout:         # (asyncio's timers: it runs while the call is in flight)
                loop.tasks += 1
                call.timer = runner.aio.call_later(timeout, call.expire)
            return deferred
        return dispatch

    def environ(self, req, wsgi_input) -> dict:
        environ = self.base.copy()
        path = req.path
        if not path.isascii():          # PEP 3333: the bytes, as latin-1
            path = unquote_to_bytes(req.raw_path).decode("latin-1")
        environ["REQUEST_METHOD"] = req.method
        environ["PATH_INFO"] = path
        environ["QUERY_STRING"] = req.query_string.decode("latin-1")
        environ["SERVER_PROTOCOL"] = "HTTP/" + req.http_version
        environ["wsgi.url_scheme"] = req.scheme
        client = req.client
        if client:
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
        environ["wsgi.input"] = wsgi_input
        environ.update(req.cgi_headers())
        if req.tls is not None:
            environ.update(req.tls.wsgi())
        authority = req.authority
        if authority is not None:       # absolute-form: the target names the server
            environ["SERVER_NAME"], environ["SERVER_PORT"] = split_authority(
                authority, req.scheme)
        return environ


class BodyRefused(ClientDisconnected):
    """What wsgi.input raises when the server refused the body (413 past --max-body-size, or
    400 for broken chunked framing): the server has answered and logged it, the app's
    response to it goes nowhere."""


def refusal_for(app) -> type[ClientDisconnected]:
    """The exception wsgi.input raises for a refused body. For an app on werkzeug (Flask) it
    is also werkzeug's RequestEntityTooLarge: the framework answers it as its own refusal
    (an HTTPException) instead of logging it as the app's failure with a traceback."""
    if not any(cls.__module__.split(".")[0] in ("flask", "werkzeug")
               for cls in type(app).__mro__):
        return BodyRefused
    try:
        from werkzeug.exceptions import RequestEntityTooLarge
    except ImportError:
        return BodyRefused

    class WerkzeugBodyRefused(BodyRefused, RequestEntityTooLarge):
        def __init__(self, why: str = "refused"):
            RequestEntityTooLarge.__init__(self)    # (it resets args: the OSError's after)
            BodyRefused.__init__(self, why)
    return WerkzeugBodyRefused


class _Call:
    """One request in the thread pool: the environ, start_response, the iterable's chunks
    handed to the loop, close()."""

    def __init__(self, adapter: WSGIApp, req, deferred, loop):
        self.adapter, self.req, self.deferred, self.loop = adapter, req, deferred, loop
        self.status: int | None = None
        self.headers: list[tuple[str, str]] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.environ: dict | None = None
        self.head_sent = False          # the response is the loop's: no exc_info may change it
        self.is_gone = False
        self.pending: list = []         # write()'s data before the head went out
        self.feed = None
        # once the response streams (the methods of that path say type: ignore[union-attr])
        self.room: threading.Event | None = None

    # -- on a pool thread

    def run(self) -> None:
        req = self.req
        body_in = req.body_stream
        wsgi_input: _Input | io.BytesIO | _NoBody
        if body_in is not None:
            wsgi_input = _Input(body_in, self.loop, self.adapter.refused)
        else:
            wsgi_input = io.BytesIO(req.body) if req.body else _NO_BODY
        result = None
        try:
            environ = self.environ = self.adapter.environ(req, wsgi_input)
            result = self.adapter.app(environ, self.start_response)
            self._respond(result, environ)
        except Exception as e:          # noqa: BLE001  (the app's error: logged, then a 500)
            if self.is_gone and isinstance(e, OSError):
                error_log.debug("%s %s: the client went away", req.method, req.path)
            else:
                error_log.error("WSGI app failed: %s %s", req.method, req.path, exc_info=e)
            self._to_loop(self._failed, None)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:       # noqa: BLE001  (the app's close(): logged)
                    error_log.exception("WSGI close() failed: %s %s", req.method, req.path)

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.head_sent:          # too late to change: the PEP says re-raise
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise RuntimeError("WSGI: start_response called a second time without exc_info")
        if type(status) is not str or len(status) < 4 or not status[:3].isdigit() or \
                status[3] != " ":
            raise ValueError(f"WSGI: invalid status {status!r}")
        if type(headers) is not list:
            raise TypeError(f"WSGI: headers must be a list, not {type(headers).__name__}")
        self.status, self.headers = int(status[:3]), headers
        # the app has routed the request by now (Flask forgets it once it returns)
        # (environ is set before the app runs)
        self.req.route_id = self.adapter.labels.for_environ(self.environ)  # type: ignore[arg-type]
        return self.write

    def write(self, data) -> None:
        """The legacy write() callable: data goes out before the iterable's."""
        if self.status is None:
            raise RuntimeError("WSGI: write() before start_response")
        if not self.head_sent:
            self.pending.append(data)
        else:
            self._push(data)

    def _respond(self, result, environ) -> None:
        chunks = self.pending
        size = sum(map(len, chunks))
        if type(result) is list or type(result) is tuple:
            chunks.extend(result)
            return self._send_whole(chunks, environ)
        iterator = iter(result)
        known = None
        for chunk in iterator:
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
                if known is None:
                    known = self._content_length()
                if known < 0 or size >= known:
                    break
        else:
            return self._send_whole(chunks, environ)         # all of it is here
        if 0 <= known <= size:
            return self._send_whole(chunks, environ)         # all it said it would send
        self._send_streamed(chunks, iterator, environ)

    def _content_length(self) -> int:
        """The Content-Length the app set, up to GATHER_UP_TO; -1 when none (or larger)."""
        for name, value in self.headers or ():
            if len(name) == 14 and name.lower() == "content-length":
                return int(value) if value.isdigit() and int(value) <= GATHER_UP_TO else -1
        return -1

    def _send_whole(self, chunks: list, environ) -> None:
        if self.status is None:
            raise RuntimeError("WSGI: the app returned without calling start_response")
        body: object = chunks[0] if len(chunks) == 1 and type(chunks[0]) is bytes \
            else b"".join(chunks)
        self.head_sent = True
        if not body and self.req.method == "HEAD":
            body = head_body(self.headers)
        self._to_loop(self._complete, app_response(self.status, self.headers, body))

    def _send_streamed(self, chunks: list, iterator, environ) -> None:
        if self.status is None:
            raise RuntimeError("WSGI: the app yielded its body without calling start_response")
        self.room = threading.Event()
        self.head_sent = True
        self._to_loop(self._complete, app_response(self.status, self.headers, _Stream(self)))
        self._wait_room()               # the loop has the head: the feed is attached (or not)
        for chunk in chunks:
            self._push(chunk)
        for chunk in iterator:
            if chunk:
                self._push(chunk)
        self._to_loop(self._end, None)

    def _push(self, chunk) -> None:
        """Hand one chunk to the loop and wait until the output has room for more."""
        if self.is_gone:
            raise ClientDisconnected("the client went away")
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"WSGI: the app yielded a {type(chunk).__name__}, not bytes")
        self.room.clear()  # type: ignore[union-attr]
        self._to_loop(self._write, chunk)
        self._wait_room()
        if self.is_gone:
            raise ClientDisconnected("the client went away")

    def _wait_room(self) -> None:
        while not self.room.wait(1.0) and not self.is_gone:  # type: ignore[union-attr]
            pass

    def _to_loop(self, fn, arg) -> None:
        self.loop.call_soon_threadsafe(fn, arg)

    # -- on the loop's thread

    def _complete(self, response) -> None:
        self.deferred.complete(response)
        if self.room is None:
            self._finished()
    def _write(self, chunk) -> None:
        feed = self.feed
        if feed is None or feed.write(chunk) or feed.closed:
            self.room.set()  # type: ignore[union-attr]
        else:
            feed.on_drain = self.room.set

    def _end(self, _) -> None:
        if self.feed is not None:
            self.feed.end()
        self._finished()

    def _failed(self, _) -> None:
        if self.feed is not None:
            self.feed.fail("the WSGI app failed mid-response")
        else:
            self.deferred.complete(SERVER_ERROR)
        self._finished()

    def _finished(self) -> None:
        self.feed = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.loop.task_done()

    def attach(self, feed) -> None:
        self.feed = feed
        if feed is not None:
            feed.on_cancel = self.gone
        self.room.set()  # type: ignore[union-attr]

    def gone(self) -> None:
        """The client went away, or its body was refused: the app's thread stops at its next
        chunk (or read)."""
        self.is_gone = True
        self.feed = None
        if self.room is not None:
            self.room.set()

    def expire(self) -> None:
        """--handler-timeout: 504 unless the response has begun (a thread cannot be stopped:
        what it sends later is dropped)."""
        if not self.head_sent:
            self.deferred.complete(GATEWAY_TIMEOUT)
            self.gone()


class _Stream:
    """The streamed body as the connection sees it: the app's thread pushes into the feed."""

    def __init__(self, call: _Call):
        self.call = call

    def attach_feed(self, feed) -> None:
        self.call.attach(feed)

    def __aiter__(self):
        return self

    async def __anext__(self):          # never pulled
        raise StopAsyncIteration

    def close(self) -> None:
        """The connection will not stream (HEAD): to the app's thread that is the client gone
        (issue 19), so its next chunk raises, the iterable is closed and the thread is free."""
        self.call.gone()


class _Input:
    """wsgi.input of a streamed body: read from the connection as the app asks (each chunk
    fetched on the loop's thread, so the connection reads on only as the app takes). A read
    waits as long as the connection's body deadline lets the body come: when it passes (or the
    client goes), the connection ends the body and the read raises ClientDisconnected."""

    def __init__(self, body_in: BodyIn, loop, refused: type[ClientDisconnected]):
        self.body_in, self.loop, self.refused = body_in, loop, refused
        self.buffer = b""
        self.done = False
        self.arrived: queue.SimpleQueue = queue.SimpleQueue()

    def _fetch(self) -> bytes:
        """The next chunk (b"" at the end), waiting for it."""
        if self.done:
            return b""
        self.loop.call_soon_threadsafe(self._take, None)
        chunk = self.arrived.get()
        if chunk is _END:
            self.done = True
            return b""
        if isinstance(chunk, Exception):
            self.done = True
            raise chunk
        return chunk

    def _take(self, _=None) -> None:    # on the loop's thread
        chunk: object
        try:
            chunk = self.body_in.take()
        except StopAsyncIteration:
            chunk = _END
        except ConnectionError as e:
            why = str(e)
            chunk = self.refused(why) if why in REFUSALS else ClientDisconnected(why)
        if chunk is None:
            self.body_in.waiter = self._take
            return
        self.arrived.put(chunk)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = [self.buffer]
            self.buffer = b""
            while True:
                chunk = self._fetch()
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        while len(self.buffer) < size:
            chunk = self._fetch()
            if not chunk:
                break
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def readline(self, size: int = -1) -> bytes:
        while b"\n" not in self.buffer and (size is None or size < 0 or
                                            len(self.buffer) < size):
            chunk = self._fetch()
            if not chunk:
                break
            self.buffer += chunk
        end = self.buffer.find(b"\n") + 1 or len(self.buffer)
        if size is not None and 0 <= size < end:
            end = size
        line, self.buffer = self.buffer[:end], self.buffer[end:]
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class _NoBody:
    """wsgi.input of a request without a body (most of them): nothing to read, no state."""

    def read(self, size: int = -1) -> bytes:
        return b""

    def readline(self, size: int = -1) -> bytes:
        return b""

    def readlines(self, hint: int = -1) -> list:
        return []

    def __iter__(self):
        return iter(())


_NO_BODY = _NoBody()
