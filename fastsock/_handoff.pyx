# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""What passes between a connection and a handler that waits (in asyncio or a thread): a
response that comes later (Deferred), a request body streamed in as it arrives (BodyIn), and
a response body pushed from asyncio (Feed). All run on the loop's thread."""
from fastsock._message cimport Response
from fastsock._shared cimport N_KINDS
from fastsock._writer cimport close_stream

import logging
from collections import deque

error_log = logging.getLogger("fastsock.error")


cdef class Endpoint:
    """The connection as a hand-off sees it; Connection overrides every method."""

    cdef int resume(self, object result) except -1:
        raise NotImplementedError

    cdef void pushed(self):
        pass

    cdef int stream_chunk(self, object chunk) except -1:
        raise NotImplementedError

    cdef int end_stream(self) except -1:
        raise NotImplementedError

    cdef int cut_stream(self, str why) except -1:
        raise NotImplementedError

    cdef bint has_room(self) noexcept:
        return False


cdef class Deferred:
    """A response that comes later. Dispatch returns one when the handler runs elsewhere (an
    asyncio task, a thread); the connection waits (C_WAIT) and reads no further request, so
    pipelined responses stay in order. complete(result) — on the loop's thread — writes the
    response; if the client goes first, on_cancel() is called instead and the result, when it
    comes, is dropped. kind: where the handler runs (KIND_ASYNC, KIND_THREAD, KIND_WSGI,
    KIND_ASGI of fastsock._shared), for the in-flight gauge."""

    def __cinit__(self, int kind=0):
        self.kind = kind if 0 <= kind < N_KINDS else 0

    cpdef complete(self, object result):
        if self.done:                   # cancelled, or answered (504): never to be sent
            if type(result) is Response and type((<Response>result).body) is not bytes:
                close_stream((<Response>result).body)   # ... its producer told so
            return
        self.done = True
        self.on_cancel = None           # the handler's: it often holds this Deferred (a cycle)
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.resume(result)
        else:
            self.result = result        # completed before the connection took it

    @property
    def is_done(self):
        """Completed or cancelled: a result handed in now is never sent."""
        return self.done

    cdef void cancel(self):
        self.conn = None
        self.done = True
        if self.on_cancel is not None:
            on_cancel, self.on_cancel = self.on_cancel, None
            try:
                on_cancel()
            except Exception:
                error_log.exception("cancelling a handler failed")


cdef class BodyIn:
    """A request body streamed to its handler as it arrives (a route with stream=True): the
    connection pushes chunks in; the handler takes them with take() (through req.stream()).
    Past BODY_IN_HIGH_WATER bytes not taken, the connection stops reading: back-pressure on
    the client. The route's limit is enforced on the total (413)."""

    def __init__(self, Py_ssize_t limit):
        self.chunks = deque()
        self.limit = limit

    cdef int push(self, bytes chunk) except -1:
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        self.total += len(chunk)
        self._wake()
        return 0

    cdef void finish(self, object error):
        """The body is whole (error None), or will never be (why)."""
        self.done = True
        self.error = error
        self.conn = None
        self._wake()

    def _wake(self):
        if self.waiter is not None:
            waiter, self.waiter = self.waiter, None
            waiter()

    def take(self):
        """-> the next chunk, or None when none is here yet (set waiter, then ask again);
        StopAsyncIteration at the end; ConnectionError if the body will never be whole."""
        cdef bint was_full
        if self.chunks:
            was_full = self.full()
            chunk = self.chunks.popleft()
            self.buffered -= len(chunk)
            if was_full and not self.full() and self.conn is not None:
                self.conn.pushed()         # room again: the loop reads on
            return chunk
        if self.done:
            if self.error is not None:
                raise ConnectionError(self.error)
            raise StopAsyncIteration
        return None


cdef class Feed:
    """The way into a connection for a body streamed from elsewhere (an async iterator run
    on the asyncio loop): write() each chunk, then end() or fail(), all on the loop's thread.
    write() answers whether the output has room; when it has not, wait until on_drain() is
    called. If the client goes first, on_cancel() is called and writes are dropped."""

    def write(self, chunk):
        cdef Endpoint c = self.conn
        if c is None:
            return False
        c.stream_chunk(chunk)
        c.pushed()
        return self.conn is not None and c.has_room()

    def end(self):
        cdef Endpoint c = self.conn
        if c is not None:
            self.conn, self.on_cancel = None, None
            c.end_stream()
            c.pushed()

    def fail(self, str why="streamed response failed"):
        cdef Endpoint c = self.conn
        if c is not None:
            self.conn, self.on_cancel = None, None
            c.cut_stream(why)
            c.pushed()

    @property
    def closed(self):
        return self.conn is None

    def close(self):                # the connection is going: see close_stream
        self.conn = None
        if self.on_cancel is not None:
            self.on_cancel()

    cdef void drained(self):
        if self.on_drain is not None:
            waiter, self.on_drain = self.on_drain, None
            try:
                waiter()
            except Exception:
                error_log.exception("resuming a stream failed")
