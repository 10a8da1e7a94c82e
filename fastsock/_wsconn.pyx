# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""One WebSocket after its handshake (RFC 6455 §5-7): the frames its connection reads go to the
app's inbox; the app's messages go out as frames; pings at an interval, each pong awaited; the
closing handshake both ways. No I/O: the connection (state "websocket") gives it what it read
and sends what it writes. The app's side (receive, send, close) runs on the loop's thread."""
from libc.stdint cimport uint32_t

from fastsock._context cimport Context
from fastsock._handoff cimport Endpoint
from fastsock._message cimport Request
from fastsock._outbuf cimport OutBuffer
from fastsock._shared cimport CLOSE_PING_TIMEOUT, CLOSE_CLOSE_TIMEOUT, N_WS_CODES
from fastsock._wsdeflate import negotiate
from fastsock._wsframes cimport (
    FrameReader, WS_NEED_MORE, WS_TEXT, WS_BINARY, WS_PING, WS_PONG, WS_CLOSE,
    OP_PING, OP_PONG, write_frame, write_message, write_close,
)
from fastsock._wshandshake cimport write_accept

import logging

error_log = logging.getLogger("fastsock.error")

cdef double NEVER = 1e18

# fastsock_websocket_closes_total's codes, in the order of the slot's counters; the last: other
CLOSE_CODES = (1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1012)
cdef int _code_index(int code) noexcept:
    cdef int i
    for i in range(N_WS_CODES - 1):
        if <int>CLOSE_CODES[i] == code:
            return i
    return N_WS_CODES - 1


cdef class WsOptions:
    """The limits and timers every WebSocket of a worker shares (from the configuration)."""

    def __init__(self, Py_ssize_t max_message=1 << 20, Py_ssize_t max_frame=1 << 20,
                 Py_ssize_t max_queue=1 << 20, Py_ssize_t compress_from=64,
                 double ping_interval=20.0, double ping_timeout=20.0,
                 double close_timeout=5.0, bint compression=True):
        self.max_message, self.max_frame, self.max_queue = max_message, max_frame, max_queue
        self.compress_from = compress_from
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.close_timeout, self.compression = close_timeout, compression


cdef class WsSession:
    """A WebSocket from the handshake the app accepts to its close. The app's layer (native or
    ASGI) calls agree(), hands the session to its Deferred, then receive() / send() / close()."""

    def __init__(self, WsOptions opts, str accept_value, str offered_extensions=""):
        self.opts = opts
        self.accept_value = accept_value
        self.offered_extensions = offered_extensions
        self.phase = WS_OPEN
        self.close_code = 0
        self.close_reason = ""
        self.ping_due = self.pong_due = self.close_due = NEVER

    # ------------------------------------------------------------ the handshake

    def agree(self, str subprotocol=None, headers=None):
        """The app accepts: the 101 response it will get (permessage-deflate agreed when offered
        and enabled). ValueError for a header the app may not set or cannot be sent."""
        cdef OutBuffer scratch = OutBuffer.__new__(OutBuffer)
        answer = None
        if self.opts.compression and self.offered_extensions:
            # 4 KiB windows and memLevel 5 (the websockets library's defaults): ~50 KB of zlib
            # per connection that keeps its context, not ~300 KB (bench/wsdeflate_memory.py)
            answer, self.deflate = negotiate(self.offered_extensions, server_max_window_bits=12,
                                             client_max_window_bits=12, mem_level=5)
        write_accept(scratch, self.accept_value, subprotocol, answer,
                     list(headers) if headers else [], b"")
        self.head = scratch.getvalue()
        self.subprotocol = subprotocol
        self.reader = FrameReader.__new__(FrameReader)
        self.reader.max_message = self.opts.max_message
        self.reader.max_frame = self.opts.max_frame
        self.reader.deflate = self.deflate

    cdef int attach(self, Context ctx, Endpoint conn, OutBuffer out, object peer,
                    Request req) except -1:
        """The connection takes it (the handshake's answer goes first)."""
        self.ctx, self.conn, self.out, self.peer, self.req = ctx, conn, out, peer, req
        out.write(self.head, len(self.head))
        self.head = self.accept_value = self.offered_extensions = None      # (said, once)
        if self.opts.ping_interval > 0:
            self.ping_due = ctx.now + self.opts.ping_interval
        ctx.slot.ws_open += 1
        ctx.slot.ws_opened += 1
        return 0

    # ------------------------------------------------------------ bytes in

    cdef int take_input(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t* used) except -1:
        """Read frames off p[:n] until it is used up or the inbox is full: WS_GO_ON, or how
        the WebSocket ended (WS_CLOSED, WS_BROKEN)."""
        cdef FrameReader r = self.reader
        cdef Py_ssize_t at = 0, u
        cdef int ev
        cdef int code
        try:
            while not self.inbox_full():
                ev = r.next_event(p + at, n - at, &u)
                at += u
                if ev == WS_NEED_MORE:
                    break
                if ev == WS_TEXT or ev == WS_BINARY:
                    self.ctx.slot.ws_messages_in += 1
                    self.req.ws_in += 1
                    if self.phase == WS_OPEN:       # after our Close, data is dropped
                        self._queue(r.message)
                        self._wake()
                    r.message = None
                elif ev == WS_PING:
                    if self.phase == WS_OPEN:
                        write_frame(self.out, OP_PONG, <bytes>r.message,
                                    len(<bytes>r.message), False)
                elif ev == WS_PONG:     # any pong shows the peer alive (one to an earlier
                    self.pong_due = NEVER   # ping, late; an unsolicited one, RFC 6455 §5.5.3)
                elif ev == WS_CLOSE:
                    code = r.close_code
                    if self.phase == WS_OPEN:       # echo its code (RFC 6455 §5.5.1)
                        write_close(self.out, 1000 if code == 1005 else code, "")
                    self._finish(code, r.close_reason)
                    return WS_CLOSED
                else:                               # WS_FAIL
                    error_log.info("WebSocket from %s:%s failed: %d %s", *self.peer,
                                   r.close_code, r.close_reason)
                    if self.phase == WS_OPEN:
                        write_close(self.out, r.close_code, r.close_reason)
                    self._finish(r.close_code, r.close_reason)
                    return WS_BROKEN
            return WS_GO_ON
        finally:
            used[0] = at
            self.ctx.slot.ws_bytes_in += at

    cdef bint inbox_full(self) noexcept:
        return self.queued >= self.opts.max_queue

    cdef void _queue(self, message):
        """The inbox: the oldest message in `first` (most often the only one: no container
        for it), those after it in `more` (a list made for a burst, dropped once taken)."""
        if self.first is None:
            self.first = message
        else:
            if self.more is None:
                self.more = []
                self.more_at = 0
            self.more.append(message)
        self.queued += len(message)

    cdef object _take(self):
        cdef object message = self.first
        if self.more is None:
            self.first = None
        else:
            self.first = self.more[self.more_at]
            self.more[self.more_at] = None
            self.more_at += 1
            if self.more_at == len(self.more):
                self.more = None
        self.queued -= len(message)
        return message

    # ------------------------------------------------------------ timers

    cdef double deadline(self) noexcept:
        return min(self.ping_due, self.pong_due, self.close_due)

    cdef int on_timeout(self, double now) except -2:
        """-1: a ping was written (send it); else the CLOSE_* reason to close with."""
        cdef unsigned char payload[4]
        if self.close_due <= now:
            self._finish(1006, "no Close came back")
            return CLOSE_CLOSE_TIMEOUT
        if self.pong_due <= now:
            error_log.info("WebSocket from %s:%s closed: no pong within %gs", *self.peer,
                           self.opts.ping_timeout)
            self._finish(1006, "no pong came back")
            return CLOSE_PING_TIMEOUT
        if self.ping_due <= now:
            self.pings += 1
            _pack(payload, self.pings)
            write_frame(self.out, OP_PING, <const char*>payload, 4, False)
            self.ping_due = now + self.opts.ping_interval
            if self.pong_due == NEVER:
                self.pong_due = now + self.opts.ping_timeout
            return -1
        return -3

    # ------------------------------------------------------------ the end

    cdef void going_away(self):
        """The server drains: close with 1001."""
        try:
            self.close(1001, "server shutting down")
        except Exception:
            error_log.exception("closing a WebSocket failed")

    cdef void gone(self):
        """Its connection closed: the app is told (1006 unless a Close was exchanged)."""
        if self.phase != WS_DONE:
            self._finish(1006, "")
        self.conn = None
        self.drained()

    cdef void drained(self):
        cdef object future = self.draining
        if future is not None:
            self.draining = None
            if not future.done():
                future.set_result(None)

    cdef void _finish(self, int code, str reason):
        if self.phase == WS_DONE:
            return
        self.phase = WS_DONE
        self.close_code, self.close_reason = code, reason
        self.ping_due = self.pong_due = self.close_due = NEVER
        if self.ctx is not None:
            self.req.ws_close = code
            self.ctx.slot.ws_open -= 1
            self.ctx.slot.ws_closes[_code_index(code)] += 1
        self._wake()
        if self.on_closed is not None:
            on_closed, self.on_closed = self.on_closed, None
            try:
                on_closed(self)
            except Exception:
                error_log.exception("a WebSocket's close hook failed")

    def _wake(self):
        cdef object future = self.waiting
        if future is not None:
            self.waiting = None
            if not future.done():
                future.set_result(None)

    # ------------------------------------------------------------ the app's side

    def receive(self):
        """-> the next message (str or bytes); None when none is here yet (wait on `waiting`,
        then ask again); ConnectionError once the WebSocket is closed (close_code says how)."""
        cdef bint was_full
        if self.first is not None:
            was_full = self.inbox_full()
            message = self._take()
            if was_full and not self.inbox_full() and self.conn is not None:
                self.conn.pushed()              # room again: the loop reads on
            return message
        if self.phase == WS_DONE or (self.conn is None and self.ctx is not None):
            raise ConnectionError(self.close_code)
        return None

    def send(self, message):
        """Frame message (str: text, bytes-like: binary) into the output. -> True when there is
        room for more, False when the caller should wait on `draining`. ConnectionError once
        closing (our Close sent) or closed; TypeError for anything else."""
        if self.phase != WS_OPEN or self.conn is None:
            raise ConnectionError(self.close_code or 1006)
        cdef unsigned long long before = self.out.total
        write_message(self.out, message, self.deflate, self.opts.compress_from)
        self.ctx.slot.ws_bytes_out += self.out.total - before
        self.ctx.slot.ws_messages_out += 1
        self.req.ws_out += 1
        self.conn.pushed()
        return self.conn is not None and self.conn.has_room()

    def close(self, int code=1000, str reason=""):
        """Start the closing handshake (once; later calls do nothing)."""
        if self.phase != WS_OPEN or self.conn is None:
            return
        write_close(self.out, code, reason)
        self.phase = WS_CLOSE_SENT
        self.close_code, self.close_reason = code, reason
        self.close_due = self.ctx.now + self.opts.close_timeout
        self.conn.pushed()

    @property
    def closed(self):
        return self.phase == WS_DONE

    @property
    def open(self):
        return self.phase == WS_OPEN and self.conn is not None

    @property
    def compressed(self):
        return self.deflate is not None

    @property
    def attached(self):
        """A connection took it (the 101 went out)."""
        return self.ctx is not None


cdef inline void _pack(unsigned char* p, uint32_t v) noexcept:
    p[0] = (v >> 24) & 0xff
    p[1] = (v >> 16) & 0xff
    p[2] = (v >> 8) & 0xff
    p[3] = v & 0xff
