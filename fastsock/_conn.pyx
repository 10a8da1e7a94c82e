# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""One connection: its read buffer, parser, output buffer and state, and the way a request goes
from bytes to a response. No I/O: the loop reads into read_space(), calls received() and
produce(), sends what the output buffer holds, then settle() picks the state and deadline.
"""
from libc.stdlib cimport realloc
from libc.string cimport memmove

from fastsock._message cimport Request, Response, M_HEAD
from fastsock._parser cimport (
    RequestParser, ParseError, E_NONE, E_HEAD_TOO_LARGE, E_BODY_TOO_LARGE, NEED_DATA,
    SEND_CONTINUE, PARSE_ERROR, HEAD_READY, REQUEST_READY, fs_error_table,
)
from fastsock._proxy cimport parse_proxy_header
from fastsock._shared cimport (
    SharedState, count_request, CLOSE_CLIENT, CLOSE_KEEPALIVE, CLOSE_HEADER_TIMEOUT,
    CLOSE_BODY_TIMEOUT, CLOSE_ERROR, CLOSE_SERVER, CLOSE_LENGTH,
)
from fastsock._sys cimport (
    monotonic, sockaddr_in, sockaddr_in6, AF_INET, AF_INET6, inet_ntop, ntohs,
)
from fastsock._writer cimport (
    OutBuffer, take_buffer, give_buffer, BUFFER_SIZE, write_response, write_chunk,
    write_raw_chunk, write_counted_chunk, write_stream_end, write_continue,
    write_error, close_stream,
)
from fastsock._writer import EPOCH_DATE_LINE

import logging

error_log = logging.getLogger("fastsock.error")

cdef double LINGER_SECONDS = 2.0
cdef int EMPTY_PULLS = 16           # empty chunks pulled in one go before the others' turn
cdef double NEVER = 1e18             # a deadline that does not come
from fastsock import responses
cdef Response SERVER_ERROR = responses.SERVER_ERROR
STATE_NAMES = tuple([fs_conn_state_names[_i].decode("ascii") for _i in range(N_CONN_STATES)])


cdef class Context:
    """What every connection of one loop shares: limits, the counter slot, the clock, the Date
    line, and whether keep-alive is still on."""

    def __init__(self, Limits limits, SharedState shared=None, int slot=-1):
        if shared is None:              # on its own (tests, no master): a private slot
            shared, slot = SharedState(1), 0
        if not 0 <= slot < shared.nslots:
            raise ValueError(f"no slot {slot} in a shared state of {shared.nslots}")
        self.limits = limits
        self.shared = shared
        self.slot = shared.slot(slot)
        self.now = monotonic()
        self.date_line = EPOCH_DATE_LINE
        self.keep_alive = True

    @property
    def waiting(self):
        return self.waiting


cdef class Connection:
    """One client connection, driven by its loop (or by feed() in tests)."""

    def __init__(self, Context ctx, dispatch):
        self.setup(ctx, dispatch, -1)

    def __dealloc__(self):
        give_buffer(self.rbuf, self.rcap)

    cdef void setup(self, Context ctx, object dispatch, int fd):
        cdef Limits* lim = &ctx.limits
        self.ctx = ctx
        self.dispatch = dispatch
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

    # ---------------------------------------------------------------- states

    cdef void _to(self, ConnState s) noexcept:
        """Every change of state goes through here, and a state's deadline starts as it is
        entered (settle() renews the write timer as output leaves). The PROXY header and the
        head after it share one header deadline."""
        cdef Context ctx = self.ctx
        if s == C_HEAD:
            if self.state != C_PROXY:
                self.deadline = ctx.now + ctx.limits.header_timeout
        elif s == C_BODY or s == C_STREAM_IN:
            self._start_body()
        elif s == C_IDLE:
            self.since = ctx.now
            self.deadline = ctx.now + ctx.limits.keepalive_timeout
        elif s == C_WAIT:
            self.deadline = NEVER
        elif s == C_LINGER:
            self.deadline = ctx.now + LINGER_SECONDS
        self.state = s

    cdef void _end(self, ConnState s, int reason) noexcept:
        """To a state that reads no further request (C_CLOSING on), and why it will close."""
        self._to(s)
        self.close_reason = reason

    # ---------------------------------------------------------------- input

    cdef char* read_space(self, Py_ssize_t* room) except? NULL:
        """Where the next read goes, and how much fits. NULL when the head outgrew every limit
        (refused with 431: drive it) or memory ran out (state C_CLOSED)."""
        cdef Py_ssize_t max_rbuf, cap
        cdef char* p
        if self.rbuf == NULL:
            self.rbuf = take_buffer()
            if self.rbuf == NULL:
                self._end(C_CLOSED, CLOSE_ERROR)
                return NULL
            self.rcap = BUFFER_SIZE
        if self.rend == self.rcap:                  # make room: slide, then grow
            if self.rstart > 0:
                memmove(self.rbuf, self.rbuf + self.rstart, self.rend - self.rstart)
                self.rend -= self.rstart
                self.rstart = 0
            else:
                max_rbuf = (self.ctx.limits.max_request_line + self.ctx.limits.max_header_bytes
                            + 4096)
                if self.rcap >= max_rbuf or self.state >= C_CLOSING:
                    if self.state < C_CLOSING:
                        self.refuse(E_HEAD_TOO_LARGE, 431)
                    return NULL
                cap = min(self.rcap * 2, max_rbuf)
                p = <char*>realloc(self.rbuf, cap)
                if p == NULL:
                    self._end(C_CLOSED, CLOSE_ERROR)
                    return NULL
                self.rbuf = p
                self.rcap = cap
        room[0] = self.rcap - self.rend
        return self.rbuf + self.rend

    cdef int received(self, Py_ssize_t n) except -1:
        """n bytes were read into read_space()."""
        self.rend += n
        self.rx_total += n
        if self.state == C_PROXY:
            self._proxy_header()
        return 0

    cdef int _proxy_header(self) except -1:
        """Take the PROXY protocol header off the front of the input, once it is whole:
        the state becomes C_HEAD, or C_CLOSED when the header is refused."""
        try:
            found = parse_proxy_header(self.rbuf + self.rstart, self.rend - self.rstart)
        except ValueError as e:
            error_log.info("refused connection from %s:%s: %s", *self.client(), e)
            self._end(C_CLOSED, CLOSE_ERROR)
            return 0
        if found is None:
            return 0
        used, peer = found
        self.rstart += used
        self._to(C_HEAD)
        if peer is not None:
            self.peer = peer
        return 0

    # ---------------------------------------------------------------- requests to responses

    cdef int produce(self) except -1:
        """Fill the output buffer up to its bound: answer every whole request buffered, in
        order, or pull chunks of the response being streamed."""
        cdef Py_ssize_t used
        cdef Py_ssize_t high_water = self.ctx.limits.output_high_water
        cdef int r = NEED_DATA
        cdef bint need_data = False     # what is buffered can never be a whole request
        if self.stream is not None:
            if self.out.pending() < high_water and type(self.stream) is not Feed:
                self._pump()
            if self.stream is not None or self.out.pending():
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
                if self.state >= C_CLOSING or self.stream is not None:
                    break       # answered before its body: nothing after it is parsed
                continue
            if r == PARSE_ERROR:
                self.refuse(self.parser.error, fs_error_table[<int>self.parser.error].status)
                break
            self._respond(self.parser.take_request())
            if self.state >= C_CLOSING or self.stream is not None or self.in_handler():
                break
        if (self.input_ended and (need_data or self.rend == self.rstart)
                and self.state < C_CLOSING and self.stream is None and not self.in_handler()):
            # half-closed: every whole request is answered (one held back by output not yet
            # sent is parsed once it is); a partial one can never complete
            self._end(C_CLOSING, CLOSE_CLIENT)
        if self.rstart == self.rend:
            self.rstart = self.rend = 0
        return 0

    cdef int _respond(self, Request req) except -1:
        cdef Context ctx = self.ctx
        cdef double t0 = ctx.now    # when epoll woke us: a pipelined request's time includes
                                    # its wait behind the ones before it, as its client sees it
        cdef Deferred d
        self._to(C_WRITE)
        req.client = self.client()
        ctx.slot.in_flight += 1
        try:
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
                ctx.waiting += 1
                return 0
            result = d.result
        ctx.slot.in_flight -= 1
        return self._write_result(req, result, t0)

    cdef int _on_head(self) except -1:
        """A head with a body is in (announced heads: some route streams its body). Either
        its route streams it — dispatch now, push the body to the handler as it comes — or
        the body is gathered whole, under the server's limit."""
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

    cdef void _cancel_deferred(self):
        cdef Deferred d = self.deferred
        if d is not None:
            self.deferred, self.waiting_req = None, None
            self.ctx.waiting -= 1
            self.ctx.slot.in_flight -= 1
            d.cancel()

    cdef void pushed(self):
        """A pushed chunk or end is in the output: let the loop send it."""
        if self.ctx.on_resume is not None:
            self.ctx.on_resume(self)

    cdef bint has_room(self) noexcept:
        return self.out.pending() < self.ctx.limits.output_high_water

    cdef void output_drained(self):
        """The loop sent output: a pushed stream waiting for room may go on."""
        if self.stream is not None and type(self.stream) is Feed and self.has_room():
            (<Feed>self.stream).drained()

    cdef int resume(self, object result) except -1:
        """The deferred response is here (on the loop's thread): write it, answer what was
        pipelined behind it, and let the loop send."""
        cdef Request req = self.waiting_req
        if not self.in_handler():
            return 0                    # closed meanwhile
        self.deferred, self.waiting_req = None, None
        self.ctx.waiting -= 1
        self.ctx.slot.in_flight -= 1
        self.ctx.now = monotonic()
        self._to(C_WRITE)
        self._write_result(req, result, self.started)
        if self.ctx.on_resume is not None:
            self.ctx.on_resume(self)
        return 0

    cdef int _write_result(self, Request req, object result, double t0) except -1:
        cdef Context ctx = self.ctx
        cdef bint http11 = req.is_http11
        cdef bint head_only = req.method_id == M_HEAD
        cdef bint keep_alive
        cdef int status = 200
        cdef double elapsed
        cdef unsigned long long mark
        cdef Py_ssize_t owed
        if self.body_in is not None:        # answered before its streamed body was all in:
            self.body_in.finish("answered before the body was read")   # the connection
            self.body_in = None             # closes after this response (body_unread)
        keep_alive = req.keep_alive and ctx.keep_alive and not self.body_unread
        mark = self.out.total
        try:
            stream = write_response(self.out, result, keep_alive, head_only, http11,
                                    req.response_headers, ctx.date_line, &owed)
        except Exception:
            error_log.exception("invalid response for %s %s", req.method, req.path)
            if type(result) is Response and type((<Response>result).body) is not bytes:
                close_stream((<Response>result).body)   # never to be pulled: told so
            result = SERVER_ERROR
            stream = write_response(self.out, result, keep_alive, head_only, http11, None,
                                    ctx.date_line, &owed)
        if stream is not None:
            if not http11 and owed < 0:
                keep_alive = False          # HTTP/1.0: the stream ends with the connection
                                            # (HEAD too: its head said "Connection: close")
            if head_only:
                close_stream(stream)
            else:
                self.stream = stream
                self.stream_left = owed
                self.stream_chunked = http11 and owed < 0
                if hasattr(stream, "__anext__"):
                    # an async iterator: its chunks are pushed in from the asyncio loop
                    self.stream = Feed.__new__(Feed)
                    (<Feed>self.stream).conn = self
                    if ctx.on_stream is None:
                        self.cut_stream("an async stream needs the server's asyncio loop")
                    else:
                        ctx.on_stream(self.stream, stream)
        if not keep_alive:
            self._end(C_CLOSING, CLOSE_SERVER)
        if type(result) is Response:
            status = (<Response>result).status
        if ctx.limits.count_requests or req.on_complete is not None:
            elapsed = monotonic() - t0
            if ctx.limits.count_requests:
                count_request(ctx.slot, req.route_id, req.method_id, status, elapsed)
            if req.on_complete is not None:
                try:
                    req.on_complete(req, status, self.out.total - mark, elapsed)
                except Exception:
                    error_log.exception("completion hook failed for %s %s", req.method,
                                        req.path)
        return 0

    cdef int _pump(self) except -1:
        """Pull one chunk of a streamed body: the loop sends it before asking for the next,
        so each chunk leaves as soon as it is made (an event stream is not held back)."""
        cdef Py_ssize_t before = self.out.pending()
        cdef int pulls
        # an empty chunk sends nothing, so no send (nor its EPOLLOUT) would come to ask for
        # the next one: pull on now; a stream that keeps yielding nothing (polling) is asked
        # again at the loop's next turn, after every other connection's events
        for pulls in range(EMPTY_PULLS):
            try:
                chunk = next(self.stream)
            except StopIteration:
                return self.end_stream()
            except Exception:
                return self.cut_stream("streamed response failed")
            self.stream_chunk(chunk)
            if self.stream is None or self.out.pending() != before:
                return 0
        if self.ctx.on_later is not None:
            self.ctx.on_later(self)
        return 0

    cdef int stream_chunk(self, object chunk) except -1:
        cdef Py_ssize_t n
        try:
            if self.stream_left >= 0:
                n = write_counted_chunk(self.out, chunk, self.stream_left)
                if n > self.stream_left:
                    self.stream_left = 0
                    return self._broken_length("more bytes than its Content-Length")
                self.stream_left -= n
            elif self.stream_chunked:
                write_chunk(self.out, chunk)
            else:
                write_raw_chunk(self.out, chunk)
        except Exception:
            return self.cut_stream("streamed response yielded an invalid chunk")
        return 0

    cdef int end_stream(self) except -1:
        if self.stream_left > 0:
            return self._broken_length("fewer bytes than its Content-Length")
        if self.stream_chunked:
            write_stream_end(self.out)
        close_stream(self.stream)
        self.stream = None
        return 0

    cdef int _broken_length(self, str why) except -1:
        """A streamed body broke the length its app declared. Fewer bytes: what was sent goes
        out, then the connection closes, so the client sees a body shorter than its head said
        (never one that looks whole). More: cut at the declared length, then closed."""
        error_log.error("streamed response: %s (%d bytes still due)", why, self.stream_left)
        close_stream(self.stream)
        self.stream = None
        self._end(C_REFUSED, CLOSE_LENGTH)
        return 0

    cdef int cut_stream(self, str why) except -1:
        """The head is gone already: all that is left is to cut the connection, so the client
        sees a broken body rather than one that looks whole. Chunked, the good chunks still go
        out and the terminator never does; delimited by the close (HTTP/1.0) any end would look
        whole, so what is queued is dropped."""
        error_log.exception(why)
        close_stream(self.stream)
        self.stream = None
        if not self.stream_chunked and self.stream_left < 0:
            self.out.consume(self.out.pending())
        self._end(C_REFUSED, CLOSE_ERROR)
        return 0

    cdef int refuse(self, ParseError error, int status) except -1:
        """Answer a request the server will not serve (status), and stop reading requests."""
        if error != E_NONE:
            self.ctx.slot.parse_errors[<int>error] += 1
        error_log.info("refused request from %s:%s: %d %s", *self.client(), status,
                       fs_error_table[<int>error].name.decode("ascii") if error else "timeout")
        write_error(self.out, status, self.ctx.date_line)
        self._end(C_REFUSED, CLOSE_ERROR)
        return 0

    # ---------------------------------------------------------------- state and deadlines

    cdef bint end_input(self) noexcept:
        """The client shut its side (a read of 0): -> True when nothing is left to answer, so
        the loop closes now; else the requests already here are answered first."""
        self.input_ended = True
        if self.state == C_LINGER or self.state == C_PROXY:
            return True
        return self.rend == self.rstart and self.out.pending() == 0 and self.stream is None

    cdef bint finished(self) noexcept:
        """Everything is sent and nothing more will be: the loop closes it or lingers."""
        return ((self.state == C_CLOSING or self.state == C_REFUSED) and self.stream is None
                and self.out.pending() == 0)

    cdef bint must_linger(self) noexcept:
        """The client may still be sending: closing with unread input would reset the
        connection and could destroy the response before the client reads it."""
        return not self.input_ended and (self.state == C_REFUSED or self.rend > self.rstart
                                         or self.body_unread)

    cdef void linger(self) noexcept:
        self._to(C_LINGER)

    cdef bint wants_read(self) noexcept:
        """Reading pauses while a stream is sent, once no more requests will be read, and while
        the output is over its bound (back-pressure)."""
        return (self.stream is None and self.state < C_CLOSING and not self.input_ended
                and self.state != C_WAIT
                and (self.state != C_STREAM_IN or not self.body_in.full())
                and self.out.pending() < self.ctx.limits.output_high_water)

    cdef void settle(self) noexcept:
        """After I/O: the state that says what the connection waits for, and its deadline.
        A deadline starts when its wait starts: a request buffered behind a long response gets
        its header deadline when the response is done, not when it arrived. Buffers with
        nothing in them go back to the pool: an idle connection holds none."""
        cdef Context ctx = self.ctx
        self.out.release()
        if self.rend == self.rstart:
            self._release_input()
        if self.in_handler():               # (its deadline was set as it began: _to)
            return
        if self.state >= C_CLOSING:
            if self.state != C_LINGER and self.state != C_CLOSED:
                self.deadline = self._write_deadline()
            return
        if self.stream is not None or self.out.pending():
            if self.state != C_WRITE:
                self._to(C_WRITE)
            self.deadline = self._write_deadline()
        elif self.parser.in_body():
            if self.state != C_BODY:
                self._to(C_BODY)
        elif self.state == C_PROXY:
            pass
        elif self.rend > self.rstart:
            if self.state != C_HEAD:
                self._to(C_HEAD)
        elif self.state == C_WRITE:         # a response is done and nothing else is here
            self._to(C_IDLE)

    cdef double _write_deadline(self) noexcept:
        """While output waits, the client must take some within the keep-alive timeout
        (renewed at each send). A stream with nothing to send waits for its producer: no
        server timer (an event stream may be quiet for minutes; the handler's timeout and
        the client's leaving still end it)."""
        if self.out.pending():
            return self.ctx.now + self.ctx.limits.keepalive_timeout
        return NEVER

    cdef void _start_body(self) noexcept:
        """A request body begins: its grace period starts (see _body_on_time)."""
        self.body_since = self.ctx.now
        self.body_rx = self.rx_total
        self.deadline = self.ctx.now + self.ctx.limits.body_timeout

    cdef bint _body_on_time(self) noexcept:
        """The body's deadline passed: is it still arriving at --min-body-rate on average
        since it began (as Kestrel's MinRequestBodyDataRate)? Then the deadline moves to when
        that average would fall below the rate. No timer is renewed per byte: a client
        dripping a byte now and then cannot hold the request for ever."""
        cdef double rate = self.ctx.limits.min_body_rate
        cdef double due
        if self.body_in is not None and self.body_in.full():
            self._start_body()              # the handler is behind, not the client
            return True
        if rate <= 0:
            return False
        due = self.body_since + <double>(self.rx_total - self.body_rx) / rate
        if due > self.ctx.now:
            self.deadline = due
            return True
        return False

    cdef int on_timeout(self) except -2:
        """The deadline passed: -1 when a 408 was queued (drive it), -3 when the deadline
        moved (a body still on time), else the CLOSE_* reason to close it with."""
        if self.state == C_STREAM_IN or self.state == C_BODY:
            if self._body_on_time():
                return -3
        if self.in_handler():               # a streamed body stopped coming
            error_log.info("request timeout from %s:%s (streamed body)", *self.client())
            return CLOSE_BODY_TIMEOUT
        if self.state == C_HEAD or self.state == C_PROXY:
            if self.rend == self.rstart:
                return CLOSE_HEADER_TIMEOUT
            error_log.info("request timeout from %s:%s (head)", *self.client())
            self.refuse(E_NONE, 408)
            self.close_reason = CLOSE_HEADER_TIMEOUT
            return -1
        if self.state == C_BODY:
            error_log.info("request timeout from %s:%s (body)", *self.client())
            self.refuse(E_NONE, 408)
            self.close_reason = CLOSE_BODY_TIMEOUT
            return -1
        if self.state == C_IDLE:
            return CLOSE_KEEPALIVE
        if self.state == C_LINGER:
            return self.close_reason
        return CLOSE_ERROR                  # the client stopped reading what we send

    cdef void release(self):
        """The connection is closing: cancel a handler still working for it, let go of a
        stream still open, and of its buffers."""
        if self.body_in is not None:
            self.body_in.finish("the client went away")
            self.body_in = None
        self._cancel_deferred()
        if self.stream is not None:
            close_stream(self.stream)
            self.stream = None
        self._to(C_CLOSED)
        self.out.consume(self.out.pending())
        self.out.release()
        self._release_input()

    cdef void _release_input(self) noexcept:
        if self.rbuf != NULL:
            give_buffer(self.rbuf, self.rcap)
            self.rbuf = NULL
            self.rcap = self.rstart = self.rend = 0

    cdef object client(self):
        """(host, port) of the peer, worked out once per connection, on first use."""
        cdef char host[64]
        cdef sockaddr_in* a4
        cdef sockaddr_in6* a6
        if self.peer is None:
            if self.addr.ss_family == AF_INET:
                a4 = <sockaddr_in*>&self.addr
                inet_ntop(AF_INET, &a4.sin_addr, host, 64)
                self.peer = (host.decode("ascii"), ntohs(a4.sin_port))
            elif self.addr.ss_family == AF_INET6:
                a6 = <sockaddr_in6*>&self.addr
                inet_ntop(AF_INET6, &a6.sin6_addr, host, 64)
                self.peer = (host.decode("ascii"), ntohs(a6.sin6_port))
            else:
                self.peer = ("", 0)
        return self.peer

    # ---------------------------------------------------------------- Python API, for tests

    def feed(self, bytes data):
        """Hand in bytes as if read from the socket; return what would be sent (everything the
        connection produces, as if the client read it at once)."""
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
                progressed = True
            self.settle()
            if not progressed and (self.stream is None or type(self.stream) is Feed):
                return b"".join(sent)

    def hang_up(self):
        """As if the client went away: the loop closes the connection (a waiting handler is
        cancelled)."""
        self.release()

    def end_of_input(self):
        """As if a read returned 0 (the client half-closed): -> True when the loop would close
        the connection now; else feed(b"") gives what is still sent before it closes."""
        return self.end_input()

    @property
    def state_name(self):
        return STATE_NAMES[self.state]

    @property
    def wants_input(self):
        return self.wants_read()

    @property
    def is_finished(self):
        return self.finished()

    def expire(self):
        """As if the deadline passed: -> "drive" when a 408 was queued, else the close reason."""
        r = self.on_timeout()
        return "drive" if r == -1 else "later" if r == -3 else r

