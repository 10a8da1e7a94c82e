# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""One connection's exchange: requests out of its read buffer, to the dispatch callable, and
their results into its output, in order: at once, deferred to a handler (C_WAIT), its body
streamed in (C_STREAM_IN) or out (StreamOut), or upgraded to a WebSocket (C_WEBSOCKET, _wsconn).
Its life (buffers, states, deadlines, end) is Lifecycle's. No I/O."""
from cpython.pythread cimport PyThread_get_thread_ident
from libc.string cimport memmove

from fastsock._accesslog cimport run_hook
from fastsock._context cimport Context, Limits
from fastsock._handoff cimport Deferred, BodyIn, Feed
from fastsock._lifecycle cimport (
    Lifecycle, C_PROXY, C_HEAD, C_WAIT, C_STREAM_IN, C_WRITE, C_STREAM_OUT, C_WEBSOCKET,
    C_CLOSING, C_REFUSED,
)
from fastsock._message cimport Request, Response, Dispatcher, M_HEAD
from fastsock._parser cimport (
    RequestParser, E_BODY_TOO_LARGE, NEED_DATA, SEND_CONTINUE, PARSE_ERROR, HEAD_READY,
    REQUEST_READY, fs_error_table,
)
from fastsock._requestids cimport ECHO, echo_id
from fastsock._shared cimport count_request, CLOSE_CLIENT, CLOSE_ERROR, CLOSE_SERVER, CLOSE_LENGTH
from fastsock._stream_out cimport (
    StreamOut, stream_out, OUT_GOING, OUT_QUIET, OUT_DONE, OUT_BROKEN,
)
from fastsock._sys cimport monotonic
from fastsock._writer cimport OutBuffer, write_response, write_continue, close_stream
from fastsock._wsconn cimport WsSession

from fastsock._lifecycle import STATE_NAMES  # no-cython-lint: re-exported (_conn.pyi)

import logging

error_log = logging.getLogger("fastsock.error")

from fastsock import responses
cdef Response SERVER_ERROR = responses.SERVER_ERROR

# the request the loop's thread is in (its dispatch, response, stream pulled), borrowed and
# cleared before the caller returns: what error-log records are tagged with (logs.current_request)
cdef void* _handling = NULL
cdef unsigned long _loop_thread = 0     # the thread connections are set up in: the loop's


def handling():
    """The request the calling thread's loop is handling now, else None."""
    if _handling != NULL and PyThread_get_thread_ident() == _loop_thread:
        return <Request>_handling
    return None


cdef inline int _complete(Context ctx, Request req, int status, unsigned long long nbytes,
                          double t0) except -1:
    """A response is written (a streamed one: to its last byte): count it, log it. (Small, so
    it is inlined: the hook's call and its try are run_hook's, paid only when one is set.)"""
    cdef double end = monotonic()
    if ctx.limits.count_requests:
        count_request(ctx.slot, req.route_id, req.method_id, status, end - t0)
    if req.on_complete is not None:
        run_hook(req, status, nbytes, end - t0, end)
    return 0


cdef class Connection(Lifecycle):
    """One client connection, driven by its loop (or by feed() in tests)."""

    def __init__(self, Context ctx, dispatch):
        self.setup(ctx, dispatch, -1)

    cdef void setup(self, Context ctx, object dispatch, int fd):
        cdef Limits* lim = &ctx.limits
        self.ctx = ctx
        self.dispatch = dispatch
        self.c_dispatch = dispatch if isinstance(dispatch, Dispatcher) else None
        self.fd = fd
        self.out = OutBuffer.__new__(OutBuffer)
        self.parser = RequestParser.__new__(
            RequestParser, lim.max_request_line, lim.max_header_bytes, lim.max_header_count,
            lim.max_body_size, lim.max_chunk_ext)
        self.parser.announce_heads = ctx.on_head is not None
        self.state = C_PROXY if lim.proxy_protocol else C_HEAD     # born in it, with:
        self.deadline = ctx.now + lim.header_timeout
        self.since = ctx.now
        self.close_reason = CLOSE_SERVER
        global _loop_thread
        _loop_thread = PyThread_get_thread_ident()

    # ---------------------------------------------------------------- requests to responses

    cdef int produce(self) except -1:
        """Fill the output up to its bound: answer the whole requests buffered, in order, pull
        chunks of the response being streamed, or read a WebSocket's frames."""
        cdef Py_ssize_t used
        cdef Py_ssize_t high_water = self.ctx.limits.output_high_water
        cdef int r = NEED_DATA
        cdef bint need_data = False     # what is buffered can never be a whole request
        if self.state == C_WEBSOCKET:
            return self.websocket_input()
        if self.state == C_STREAM_OUT:
            if self.out.pending() < high_water and not self.streaming.pushed:
                self._pull()
            if self.state == C_STREAM_OUT or self.out.pending():
                return 0
            # the stream ended and wrote nothing (framed by its Content-Length: no chunked
            # terminator whose send would call us again): what is buffered behind it is next
        if self.state == C_STREAM_IN:
            return self._stream_body_in()
        if self.state >= C_CLOSING or self.state == C_PROXY or self.state == C_WAIT:
            return 0
        while ((self.rend > self.rstart or self.parser.head_announced())
               and self.out.pending() < high_water
               and self.out.tail_n == 0):       # (a tail: nothing may be written after it)
            r = self.parser.parse(self.rbuf + self.rstart, self.rend - self.rstart, &used)
            self.rstart += used
            if r == NEED_DATA:
                need_data = True
                break
            if r == SEND_CONTINUE:
                write_continue(self.out)
                continue
            if r == HEAD_READY:
                self._on_head()
                if self.state == C_STREAM_IN:
                    return self._stream_body_in()
                if self.state >= C_CLOSING or self.state == C_STREAM_OUT:
                    break       # answered before its body: nothing after it is parsed
                continue
            if r == PARSE_ERROR:
                self.refuse(self.parser.error, fs_error_table[<int>self.parser.error].status)
                break
            self._respond(self.parser.take_request())
            if self.state != C_WRITE:       # closing, streaming, or in its handler
                break
        if (self.input_ended and (need_data or self.rend == self.rstart)
                and self.state < C_CLOSING and self.state != C_STREAM_OUT
                and not self.in_handler()):
            # half-closed: every whole request is answered (one held back by output not yet
            # sent is parsed once it is); a partial one can never complete
            self._end(C_CLOSING, CLOSE_CLIENT)
        if self.rstart == self.rend:
            self.rstart = self.rend = 0
        return 0

    cdef int _respond(self, Request req) except -1:
        cdef Context ctx = self.ctx
        cdef double t0 = ctx.now    # when epoll woke us: with a pipelined one's wait behind others
        cdef Deferred d
        global _handling
        _handling = <void*>req             # (borrowed: cleared before it returns)
        try:
            self._to(C_WRITE)
            req.client = self.client()
            if self.tls is not None:
                req.tls = self.tls.info()
                req._scheme = "https"
            ctx.slot.in_flight += 1
            result = None
            if ctx.limits.limit_concurrency and (
                    ctx.waiting + ctx.streaming >= ctx.limits.limit_concurrency):
                result = ctx.refusal(req)       # a 503, or None: never refused
            if result is None:
                try:
                    if self.c_dispatch is not None:     # the app's, the id layer: from C
                        result = self.c_dispatch.dispatch(req)
                    else:
                        result = self.dispatch(req)
                except BaseException:
                    # dispatch answers handler errors itself; this is the last line of defence
                    error_log.exception("dispatch failed for %s %s", req.method, req.path)
                    result = SERVER_ERROR
            if type(result) is Deferred:
                d = <Deferred>result
                if not d.done:              # the handler runs elsewhere: wait for it
                    d.conn = self
                    self.deferred, self.waiting_req, self.started = d, req, t0
                    self._to(C_STREAM_IN if self.body_in is not None else C_WAIT)
                    ctx.handler_waits()
                    ctx.slot.waiting_kinds[d.kind] += 1
                    return 0
                result = d.result
            ctx.slot.in_flight -= 1
            return self._write_result(req, result, t0)
        finally:
            _handling = NULL

    cdef int _on_head(self) except -1:
        """A head with a body is in (some route streams its body): its route streams it (dispatch
        now, push the body as it comes), or the body is gathered whole, under the limit."""
        cdef Request req = self.parser.pending
        found = self.ctx.on_head(req)
        if found is None:
            self.parser.max_body_size = self.ctx.limits.max_body_size
            return 0
        self.body_in = <BodyIn?>found
        self.body_in.conn = self
        self.parser.max_body_size = self.body_in.limit
        req.body = b""                      # it is req.stream()'s
        self.body_unread = True             # until the body is all in (an answer before
        self._respond(req)                  # that closes the connection: _write_result)
        return 0

    cdef int _stream_body_in(self) except -1:
        """Parse what is here of the streamed body and hand it to the handler."""
        cdef Py_ssize_t used
        cdef int r
        cdef BodyIn body = self.body_in
        cdef Request req
        while not body.full():
            if self.rend == self.rstart and not self.parser.head_announced():
                break                       # nothing here (and maybe no buffer: NULL)
            r = self.parser.parse(self.rbuf + self.rstart, self.rend - self.rstart, &used)
            self.rstart += used
            if r == SEND_CONTINUE:
                write_continue(self.out)
                continue
            if r == PARSE_ERROR:
                self._cancel_deferred()
                self.body_in = None
                body.finish("refused")
                self.refuse(self.parser.error, fs_error_table[<int>self.parser.error].status)
                break
            chunk = self.parser.take_body()
            if r == REQUEST_READY:
                req = self.parser.take_request()
                if req.body:
                    chunk = chunk + req.body
                    req.body = b""
            if chunk:
                if body.total + len(chunk) > body.limit:
                    self._cancel_deferred()
                    self.body_in = None
                    body.finish("body too large")
                    self.refuse(E_BODY_TOO_LARGE, 413)
                    break
                body.push(chunk)
            if r == REQUEST_READY:
                self.body_in = None
                self.body_unread = False
                if self.state == C_STREAM_IN:
                    self._to(C_WAIT)        # the body is all in; the handler still works
                body.finish(None)
                break
            if r == NEED_DATA:
                break                       # all taken, or a partial line waits for more
        if self.rstart == self.rend:
            self.rstart = self.rend = 0
        return 0

    cdef int resume(self, object result) except -1:
        """The deferred response is here (on the loop's thread): write it; the loop sends."""
        cdef Request req = self.waiting_req
        cdef Deferred d = self.deferred
        if not self.in_handler() or d is None:
            return 0                    # closed meanwhile
        self.deferred, self.waiting_req = None, None
        self.ctx.waiting -= 1
        self.ctx.slot.waiting_kinds[d.kind] -= 1
        self.ctx.slot.in_flight -= 1
        self.ctx.now = monotonic()
        self._to(C_WRITE)
        global _handling
        _handling = <void*>req
        try:
            self._write_result(req, result, self.started)
        finally:
            _handling = NULL
        if self.ctx.on_resume is not None:
            self.ctx.on_resume(self)
        return 0

    cdef int _write_result(self, Request req, object result, double t0) except -1:
        cdef Context ctx = self.ctx
        cdef bint http11 = req.is_http11
        cdef bint head_only = req.method_id == M_HEAD
        cdef bint keep_alive, chunked
        cdef int status = 200
        cdef unsigned long long mark
        cdef Py_ssize_t owed, id_n = 0
        cdef const char* id_p = NULL       # its id to echo (ECHO), written before the Date line
        if type(result) is WsSession:       # completed (counted, logged) when it closes
            self.streamed, self.streamed_status, self.streamed_t0 = req, 101, t0
            self.streamed_mark = self.out.total
            return self.upgrade(<WsSession>result, req)
        if self.body_in is not None:        # answered before its streamed body was all in:
            self.body_in.finish("answered before the body was read")   # the connection
            self.body_in = None             # closes after this response (body_unread)
        keep_alive = req.keep_alive and ctx.keep_alive and not self.body_unread
        mark = self.out.total
        extra = req.response_headers
        if extra is ECHO:
            extra = echo_id(req, &id_p, &id_n)
        try:
            stream = write_response(self.out, result, keep_alive, head_only, http11, extra,
                                    ctx.date_line, &owed, id_p, id_n)
        except Exception:
            error_log.exception("invalid response for %s %s", req.method, req.path)
            if type(result) is Response and type((<Response>result).body) is not bytes:
                close_stream((<Response>result).body)   # never to be pulled: told so
            result = SERVER_ERROR
            stream = write_response(self.out, result, keep_alive, head_only, http11, None,
                                    ctx.date_line, &owed, NULL, 0)
        if type(result) is Response:
            status = (<Response>result).status
        if stream is not None and not head_only:    # logged at its last byte: _stream_complete
            self.streamed, self.streamed_status = req, status
            self.streamed_mark, self.streamed_t0 = mark, t0
        if stream is not None:
            if not http11 and owed < 0:
                keep_alive = False          # HTTP/1.0: the stream ends with the connection
                                            # (HEAD too: its head said "Connection: close")
            chunked = http11 and owed < 0
            if head_only:
                close_stream(stream)
            elif hasattr(stream, "__anext__"):
                # an async iterator: its chunks are pushed in from the asyncio loop
                feed = Feed.__new__(Feed)
                (<Feed>feed).conn = self
                self._start_stream(stream_out(feed, True, owed, chunked), keep_alive)
                if ctx.on_stream is None:
                    self.cut_stream("an async stream needs the server's asyncio loop")
                else:
                    ctx.on_stream(feed, stream)
            else:
                self._start_stream(stream_out(stream, False, owed, chunked), keep_alive)
        if not keep_alive and self.state == C_WRITE:
            self._end(C_CLOSING, CLOSE_SERVER)
        if (stream is None or head_only) and (ctx.limits.count_requests
                                              or req.on_complete is not None):
            _complete(ctx, req, status, self.out.total - mark, t0)
        return 0

    cdef int _stream_complete(self, Py_ssize_t unsent) except -1:
        """A streamed response or WebSocket ended (`unsent` bytes never sent): complete it once."""
        cdef Request req = self.streamed
        if req is None:
            return 0
        self.streamed = None
        if self.ctx.limits.count_requests or req.on_complete is not None:
            _complete(self.ctx, req, self.streamed_status,
                      self.out.total - self.streamed_mark - unsent, self.streamed_t0)
        return 0

    cdef void release(self):
        """Closing: a stream still going out ends here, with what of it was sent."""
        if self.streamed is not None:
            try:
                self._stream_complete(self.out.pending())
            except Exception:
                error_log.exception("completing a stream failed")
        Lifecycle.release(self)

    # ---------------------------------------------------------------- the hand-offs' side

    cdef void pushed(self):
        """A pushed chunk or end is in the output: let the loop send it (once per batch)."""
        if self.ctx.on_resume is not None and not self.resume_queued:
            self.ctx.on_resume(self)

    cdef bint has_room(self) noexcept:
        return self.out.pending() < self.ctx.limits.output_high_water

    cdef void output_drained(self):
        """The loop sent output: a pushed stream or a WebSocket's sender waiting goes on."""
        if self.streaming is not None and self.streaming.pushed and self.has_room():
            (<Feed>self.streaming.source).drained()
        elif self.ws is not None and self.has_room():
            self.ws.drained()

    cdef void _start_stream(self, StreamOut s, bint keep_alive) noexcept:
        """Its head is written; its body streams out, then the connection goes on or closes."""
        self.streaming = s
        self.ctx.stream_begins()            # in the app until its last chunk (_streamed)
        self.last_response = not keep_alive
        if not keep_alive:
            self.close_reason = CLOSE_SERVER
        self._to(C_STREAM_OUT)

    cdef int _streamed(self, int step) except -1:
        """What a step of the streamed response came to (StreamOut's OUT_*)."""
        if step == OUT_GOING:
            return 0
        if step == OUT_QUIET:               # a polling stream: ask again at the loop's next
            if self.ctx.on_later is not None:   # turn, after the others' events
                self.ctx.on_later(self)
            return 0
        self.streaming = None
        self.ctx.streaming -= 1
        self._stream_complete(0)            # its last byte is in the output
        if step == OUT_DONE:                # what the stream is framed by is written
            self._to(C_CLOSING if self.last_response else C_WRITE)
        elif step == OUT_BROKEN:
            self._end(C_REFUSED, CLOSE_LENGTH)
        else:
            self._end(C_REFUSED, CLOSE_ERROR)
        return 0

    cdef int _pull(self) except -1:
        """The next chunks of a stream pulled on the loop's thread: its request's."""
        global _handling
        cdef Request req = self.streamed
        _handling = <void*>req
        try:
            self._streamed(self.streaming.pull(self.out))
        finally:
            _handling = NULL
        return 0

    cdef int stream_chunk(self, object chunk) except -1:
        if self.streaming is not None:
            self._streamed(self.streaming.chunk(self.out, chunk))
        return 0

    cdef int end_stream(self) except -1:
        if self.streaming is not None:
            self._streamed(self.streaming.end(self.out))
        return 0

    cdef int cut_stream(self, str why) except -1:
        if self.streaming is not None:
            self._streamed(self.streaming.cut(self.out, why))
        return 0

    # ---------------------------------------------------------------- Python API, for tests

    def feed(self, bytes data):
        """Bytes in as if read from the socket -> all it would send, as if read at once."""
        cdef Py_ssize_t room, n, pos = 0
        cdef char* p
        cdef bint progressed
        cdef list sent = []
        while True:
            progressed = False
            if pos < len(data) and self.state < C_CLOSING:
                p = self.read_space(&room)
                if p != NULL:
                    n = min(room, len(data) - pos)
                    memmove(p, <const char*>data + pos, n)
                    pos += n
                    self.received(n)
                    progressed = True
            self.ctx.now = monotonic()
            self.produce()
            if self.out.pending():
                sent.append(self.out.getvalue())
                self.out.consume(self.out.pending())
                self.output_drained()       # as the loop after a send: a pushed stream goes on
                progressed = True
            self.settle()
            if not progressed and (self.state != C_STREAM_OUT or self.streaming.pushed):
                return b"".join(sent)
