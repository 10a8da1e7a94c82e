# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""One connection's life apart from its requests: its read buffer, its state and deadline, and
how it ends (attributes in _lifecycle.pxd). No I/O: the loop reads into read_space(), calls
received(), sends what the output buffer holds, then settle() picks the state and deadline;
Connection (_conn) turns the bytes into requests and the results into responses.
"""
from libc.stdlib cimport realloc
from libc.string cimport memmove

from fastsock._context cimport Context
from fastsock._parser cimport ParseError, E_NONE, E_HEAD_TOO_LARGE, fs_error_table
from fastsock._proxy cimport parse_proxy_header
from fastsock._shared cimport (
    CLOSE_CLIENT, CLOSE_KEEPALIVE, CLOSE_HEADER_TIMEOUT, CLOSE_BODY_TIMEOUT, CLOSE_ERROR,
    CLOSE_TLS_HANDSHAKE,
)
from fastsock._tls cimport F_TIMEOUT
from fastsock._sys cimport sockaddr_in, sockaddr_in6, AF_INET, AF_INET6, inet_ntop, ntohs
from fastsock._writer cimport take_buffer, give_buffer, BUFFER_SIZE, write_error
from fastsock._wsconn cimport WsSession, WS_CLOSED, WS_BROKEN

import logging

error_log = logging.getLogger("fastsock.error")

cdef double LINGER_SECONDS = 2.0
cdef double NEVER = 1e18             # a deadline that does not come
cdef bytes PLAIN_HTTP_BODY = b"400 Bad Request: a plain HTTP request was sent to the HTTPS port\n"
cdef bytes PLAIN_HTTP_ON_TLS = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(PLAIN_HTTP_BODY) + PLAIN_HTTP_BODY)
STATE_NAMES = tuple([fs_conn_state_names[_i].decode("ascii") for _i in range(N_CONN_STATES)])


cdef class Lifecycle(Endpoint):
    """What the loop asks a connection, and the states that answer it. Only as a
    Connection's base: a Connection is what is made."""

    def __init__(self, *args, **kwargs):
        raise TypeError("Lifecycle is a Connection's base: make a Connection")

    def __dealloc__(self):
        give_buffer(self.rbuf, self.rcap)

    # ---------------------------------------------------------------- states

    cdef void _to(self, ConnState s) noexcept:
        """Every change of state goes through here, and a state's deadline starts as it is
        entered (settle() renews the write timer as output leaves). The PROXY header and the
        head after it share one header deadline."""
        cdef Context ctx = self.ctx
        if self.state == C_HANDSHAKE and s != C_HANDSHAKE:
            ctx.handshaking -= 1
        if s == C_HANDSHAKE:
            ctx.handshaking += 1
            self.deadline = ctx.now + ctx.limits.tls_handshake_timeout
        elif s == C_HEAD:
            if self.state != C_PROXY:
                self.deadline = ctx.now + ctx.limits.header_timeout
        elif s == C_BODY or s == C_STREAM_IN:
            self._start_body()
        elif s == C_IDLE:
            self.since = ctx.now
            self.deadline = ctx.now + ctx.limits.keepalive_timeout
        elif s == C_WAIT:
            self.deadline = NEVER
        elif s == C_WEBSOCKET:
            self.deadline = self.ws.deadline()
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
        (refused with 431: drive it), when it is full while no request is read (a response
        streams out, or the connection is closing: drive it), or memory ran out (C_CLOSED)."""
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
                if self.state >= C_STREAM_OUT:
                    return NULL     # no request is read now: none to grow the buffer for
                max_rbuf = (self.ctx.limits.max_request_line + self.ctx.limits.max_header_bytes
                            + 4096)
                if self.rcap >= max_rbuf:
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

    cdef int upgrade(self, WsSession ws, Request req) except -1:
        """The app accepted req's WebSocket: the 101 goes out, frames from now on."""
        ws.attach(self.ctx, self, self.out, self.client(), req)
        self.ws = ws
        self.parser = None      # no request is read after it (its states never ask it)
        self._to(C_WEBSOCKET)
        if not self.ctx.keep_alive:         # draining: it goes at once, as the others did
            ws.going_away()
        return 0

    cdef int websocket_input(self) except -1:
        """Frames read go to the WebSocket (until its inbox is full); how it ends."""
        cdef Py_ssize_t used
        cdef int r = self.ws.take_input(<const unsigned char*>self.rbuf + self.rstart,
                                        self.rend - self.rstart, &used)
        self.rstart += used
        if self.rstart == self.rend:
            self.rstart = self.rend = 0
        if r == WS_CLOSED:
            self._end(C_CLOSING, CLOSE_CLIENT)
        elif r == WS_BROKEN:
            self._end(C_REFUSED, CLOSE_ERROR)
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
        self._to(C_HEAD if self.tls is None else C_HANDSHAKE)
        if peer is not None:
            self.peer = peer
        return 0

    cdef void refuse_plain_http(self) noexcept:
        """Cleartext HTTP on the TLS port: a 400 that says so, in clear (as nginx), and the
        connection lingers out like any refused request's."""
        self.tls = None
        self.out.write_bytes(PLAIN_HTTP_ON_TLS)
        self._end(C_REFUSED, CLOSE_TLS_HANDSHAKE)

    cdef void _release_input(self) noexcept:
        if self.rbuf != NULL:
            give_buffer(self.rbuf, self.rcap)
            self.rbuf = NULL
            self.rcap = self.rstart = self.rend = 0

    # ---------------------------------------------------------------- state and deadlines

    cdef bint end_input(self) noexcept:
        """The client shut its side (a read of 0): -> True when nothing is left to answer, so
        the loop closes now; else the requests already here are answered first."""
        self.input_ended = True
        if self.state == C_LINGER or self.state == C_PROXY or self.state == C_WEBSOCKET:
            return True                     # (a WebSocket's client gone without its Close)
        return (self.rend == self.rstart and self.out.pending() == 0
                and self.state != C_STREAM_OUT)

    cdef bint finished(self) noexcept:
        """Everything is sent and nothing more will be: the loop closes it or lingers."""
        return ((self.state == C_CLOSING or self.state == C_REFUSED)
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
        return (self.state < C_CLOSING and not self.input_ended
                and self.state != C_WAIT and self.state != C_STREAM_OUT
                and (self.state != C_STREAM_IN or not self.body_in.full())
                and (self.state != C_WEBSOCKET or not self.ws.inbox_full())
                and self.out.pending() < self.ctx.limits.output_high_water)

    cdef void settle(self) noexcept:
        """After I/O: the state that says what the connection waits for, and its deadline.
        A deadline starts when its wait starts: a request buffered behind a long response gets
        its header deadline when the response is done, not when it arrived. Buffers with
        nothing in them go back to the pool: an idle connection holds none."""
        self.out.release()
        if self.rend == self.rstart:
            self._release_input()
        if self.in_handler():               # (its deadline was set as it began: _to)
            return
        if self.state == C_WEBSOCKET:       # its timers: a ping due, a pong or Close awaited
            self.deadline = self.ws.deadline()
            return
        if self.state >= C_CLOSING or self.state == C_STREAM_OUT:
            if self.state != C_LINGER and self.state != C_CLOSED:
                self.deadline = self._write_deadline()
            return
        if self.out.pending():
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
        """The deadline passed: -1 when a 408 (or a WebSocket's ping) was queued (drive it), -3
        when the deadline moved (a body still on time), else the CLOSE_* reason to close it
        with."""
        cdef int r
        if self.state == C_WEBSOCKET:
            r = self.ws.on_timeout(self.ctx.now)
            self.deadline = self.ws.deadline()
            return r
        if self.state == C_STREAM_IN or self.state == C_BODY:
            if self._body_on_time():
                return -3
        if self.state == C_STREAM_IN:       # a streamed body stopped coming: the handler is
            error_log.info("request timeout from %s:%s (streamed body)", *self.client())
            body = self.body_in             # told (its answer is not awaited), the client
            self.body_in = None             # gets the 408 a gathered body would
            self._cancel_deferred()
            if body is not None:
                body.finish("body timeout")
            self.refuse(E_NONE, 408)
            self.close_reason = CLOSE_BODY_TIMEOUT
            return -1
        if self.in_handler():
            return CLOSE_BODY_TIMEOUT
        if self.state == C_HANDSHAKE:
            self.tls.fail(self.ctx.slot, F_TIMEOUT, self.ctx.now, "no handshake in time")
            return CLOSE_TLS_HANDSHAKE
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

    # ---------------------------------------------------------------- the end

    cdef int refuse(self, ParseError error, int status) except -1:
        """Answer a request the server will not serve (status), and stop reading requests."""
        if error != E_NONE:
            self.ctx.slot.parse_errors[<int>error] += 1
        error_log.info("refused request from %s:%s: %d %s", *self.client(), status,
                       fs_error_table[<int>error].name.decode("ascii") if error else "timeout")
        write_error(self.out, status, self.ctx.date_line)
        self._end(C_REFUSED, CLOSE_ERROR)
        return 0

    cdef void _cancel_deferred(self):
        cdef Deferred d = self.deferred
        if d is not None:
            self.deferred, self.waiting_req = None, None
            self.ctx.waiting -= 1
            self.ctx.slot.in_flight -= 1
            self.ctx.slot.waiting_kinds[d.kind] -= 1
            d.cancel()

    cdef void release(self):
        """The connection is closing: cancel a handler still working for it, let go of a
        stream still open, and of its buffers."""
        if self.body_in is not None:
            self.body_in.finish("the client went away")
            self.body_in = None
        self._cancel_deferred()
        if self.ws is not None:
            self.ws.gone()
            self.ws = None
        if self.streaming is not None:
            self.streaming.close()
            self.streaming = None
            self.ctx.streaming -= 1
        self._to(C_CLOSED)
        self.tls = None
        self.out.consume(self.out.pending())
        self.out.release()
        self._release_input()

    cdef object client(self):
        """(host, port) of the peer, worked out once per connection, on first use."""
        cdef char host[64]
        cdef sockaddr_in* a4
        cdef sockaddr_in6* a6
        if self.peer is None:
            if self.addr.sin6_family == AF_INET:
                a4 = <sockaddr_in*>&self.addr
                inet_ntop(AF_INET, &a4.sin_addr, host, 64)
                self.peer = (host.decode("ascii"), ntohs(a4.sin_port))
            elif self.addr.sin6_family == AF_INET6:
                a6 = <sockaddr_in6*>&self.addr
                inet_ntop(AF_INET6, &a6.sin6_addr, host, 64)
                self.peer = (host.decode("ascii"), ntohs(a6.sin6_port))
            else:
                self.peer = ("", 0)
        return self.peer

    # ---------------------------------------------------------------- Python API, for tests

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
