# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""One worker's event loop: accept, read, parse, call the app, write; timers and back-pressure.

It calls one Python callable per request (`dispatch(request) -> result`) and makes no policy of
its own beyond HTTP's: routing, error pages and logging decisions live in the Python layer.
"""
from cpython.exc cimport PyErr_CheckSignals
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memmove, memcpy

from fastsock._sys cimport *
from fastsock._http cimport (
    OutBuffer, Request, Response, RequestParser, write_response, write_chunk, write_error,
    set_date, NEED_DATA, REQUEST_READY, SEND_CONTINUE, PARSE_ERROR,
)
from fastsock._proxy cimport parse_proxy_header
from fastsock._shared cimport (
    SharedState, Slot, SLOT_RUNNING, SLOT_DRAINING, count_request, CLOSE_CLIENT, CLOSE_KEEPALIVE,
    CLOSE_HEADER_TIMEOUT, CLOSE_BODY_TIMEOUT, CLOSE_ERROR, CLOSE_SERVER,
)
from fastsock._http import ERROR_REASONS

import logging
import os
import socket as _socket
from email.utils import formatdate

error_log = logging.getLogger("fastsock.error")

cdef enum:      # a connection's phase decides which deadline runs
    P_HEAD = 0      # reading a request head: header deadline (from accept, or first byte)
    P_BODY = 1      # reading a body: body deadline
    P_IDLE = 2      # between requests: keep-alive deadline
    P_WRITE = 3     # output waiting for the client to read: refreshed on progress
    P_LINGER = 4    # our side is shut; discarding input until the client closes

cdef enum:
    ACCEPT_BATCH = 64
    MAX_EVENTS = 512
    READ_CHUNK = 16384

cdef enum:      # route ids of what the server answers itself; the app's routes start at 16
    ROUTE_NONE = 0
    ROUTE_HEALTHZ = 1
    ROUTE_READYZ = 2
    ROUTE_METRICS = 3

cdef dict REASON_INDEX = {reason: i for i, reason in enumerate(ERROR_REASONS)}

cdef bytes CONTINUE_LINE = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef str V11 = "1.1"
cdef str HEAD = "HEAD"
cdef double LINGER_SECONDS = 2.0
# while draining, a connection idle this long is closed; a busier one gets "Connection: close"
# on its next response instead, so a client that keeps sending never races the close
cdef double DRAIN_IDLE_GRACE = 2.0

cdef Response HEALTH_OK = Response(b"ok\n", 200, content_type="text/plain; charset=utf-8")
cdef Response NOT_READY = Response(b"not ready\n", 503, content_type="text/plain; charset=utf-8")
cdef Response NOT_FOUND = Response(b"Not Found\n", 404, content_type="text/plain; charset=utf-8")
cdef Response SERVER_ERROR = Response(b"Internal Server Error\n", 500,
                                      content_type="text/plain; charset=utf-8")

cdef inline double monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class Connection:
    cdef int fd
    cdef char* rbuf
    cdef Py_ssize_t rstart, rend, rcap
    cdef OutBuffer out
    cdef RequestParser parser
    cdef int phase
    cdef double deadline
    cdef double since               # when the connection was accepted or last went idle
    cdef bint proxy_pending         # a PROXY protocol header is still to come
    cdef int trusted                # peer in --forwarded-allow-ips: -1 not yet known
    cdef unsigned int interest      # the epoll events we are registered for
    cdef bint closing               # send what is queued, then close
    cdef bint refused               # we refused a request: close gently (linger)
    cdef bint http11_stream         # the stream is sent chunked
    cdef bint metrics_only          # accepted on the --metrics-port socket
    cdef int close_reason           # CLOSE_* for when the connection, now closing, ends
    cdef object stream
    cdef object peer
    cdef sockaddr_storage addr

    def __dealloc__(self):
        free(self.rbuf)

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


cdef class Loop:
    cdef int epfd
    cdef int lfd
    cdef object sock                # the listening socket; closed when draining starts
    cdef int spare_fd               # kept open to shed a connection when fds run out
    cdef bint tcp
    cdef object dispatch
    cdef dict conns
    cdef bint running
    cdef bint accepting
    cdef bint draining
    cdef bint drain_requested       # set by a signal handler or --max-requests; acted on by run()
    cdef double drain_deadline
    cdef double now
    cdef double next_tick
    cdef double tick_interval
    cdef double header_timeout, keepalive_timeout, body_timeout, graceful_timeout
    cdef Py_ssize_t high_water      # stop reading a connection whose output is past this
    cdef Py_ssize_t max_rbuf
    cdef object parser_limits
    cdef str healthz, readyz        # None: switched off
    cdef bint log_health
    cdef bint proxy_protocol
    cdef object access_log          # callable(req, status, nbytes, seconds, request_id) or None
    cdef object proxies             # fastsock.proxy.Proxies or None
    cdef long long max_requests     # leave (drain) after this many requests; 0: never
    cdef str rid_prefix
    cdef long long rid_counter
    cdef SharedState shared
    cdef Slot* slot
    cdef bint count_requests        # metrics on: per-request counters and durations
    cdef str metrics_path           # None: /metrics is not served
    cdef bint metrics_port          # /metrics only on its own socket (and not on the main one)
    cdef object metrics_sock
    cdef int mlfd                   # the --metrics-port listener, or -1
    cdef object exposition          # callable(req) -> Response with the metrics text
    cdef bint deferred              # we let a less loaded worker have the last connection
    cdef double resume_accept_at    # 0, or when to watch the listener again after deferring
    cdef epoll_event events[MAX_EVENTS]
    cdef long long served           # requests this worker answered: for --max-requests
    cdef double next_shed_log

    def __cinit__(self):
        self.epfd = -1
        self.spare_fd = -1

    def __init__(self, sock, dispatch, config, SharedState shared=None, int slot=-1,
                 access_log=None, proxies=None, long long max_requests=0, exposition=None,
                 metrics_sock=None):
        """sock: a bound, listening socket (shared with other workers, if any); config: a
        fastsock.config.Config; shared/slot: the master's shared memory and this worker's slot."""
        self.sock = sock
        self.lfd = sock.fileno()
        self.tcp = sock.family in (_socket.AF_INET, _socket.AF_INET6)
        self.dispatch = dispatch
        self.conns = {}
        self.header_timeout = config.header_timeout
        self.keepalive_timeout = config.keepalive_timeout
        self.body_timeout = config.body_timeout
        self.graceful_timeout = config.graceful_timeout
        self.tick_interval = min(1.0, self.header_timeout / 4, self.keepalive_timeout / 4,
                                 self.body_timeout / 4)
        self.high_water = config.output_high_water
        self.max_rbuf = config.max_request_line + config.max_header_bytes + 4096
        self.parser_limits = (config.max_request_line, config.max_header_bytes,
                              config.max_header_count, config.max_body_size,
                              config.max_chunk_ext)
        self.healthz = config.healthz_path or None
        self.readyz = config.readyz_path or None
        self.log_health = config.log_health
        self.proxy_protocol = config.proxy_protocol
        self.access_log = access_log
        self.proxies = proxies
        self.max_requests = max_requests
        self.rid_prefix = os.urandom(6).hex() + "-"
        if shared is None:              # on its own (no master): a private slot
            shared, slot = SharedState(1), 0
            shared.header.ready = 1
        self.shared = shared
        self.slot = shared.slot(slot)
        self.count_requests = config.metrics
        self.exposition = exposition
        self.metrics_path = config.metrics_path if (config.metrics and exposition) else None
        self.metrics_sock = metrics_sock
        self.metrics_port = metrics_sock is not None
        self.mlfd = metrics_sock.fileno() if metrics_sock is not None else -1
        sock.setblocking(False)
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1")
        self.spare_fd = open(b"/dev/null", O_RDONLY | O_CLOEXEC)
        self._watch_listener()
        if self.mlfd >= 0:
            metrics_sock.setblocking(False)
            self._ctl(EPOLL_CTL_ADD, self.mlfd, EPOLLIN)

    def __dealloc__(self):
        if self.epfd >= 0:
            close(self.epfd)
        if self.spare_fd >= 0:
            close(self.spare_fd)

    cdef int _ctl(self, int op, int fd, unsigned int events) except -1:
        cdef epoll_event ev
        ev.events = events
        ev.data.fd = fd
        if epoll_ctl(self.epfd, op, fd, &ev) < 0:
            raise OSError(errno, "epoll_ctl")
        return 0

    cdef void _watch_listener(self):
        # Every idle worker sharing the socket is woken and the first to accept wins. Not
        # EPOLLEXCLUSIVE: it can hand a connection to a worker that is busy in a handler
        # while another sits idle.
        self._ctl(EPOLL_CTL_ADD, self.lfd, EPOLLIN)
        self.accepting = True

    # ------------------------------------------------------------------ the loop

    def run(self):
        cdef int n, i, fd, timeout_ms, err
        cdef unsigned int ev
        cdef Connection c
        self.running = True
        self.now = monotonic()
        self._tick()
        self.slot.pid = os.getpid()
        self.slot.conns = 0             # a dead predecessor's connections died with it
        self.slot.state = SLOT_RUNNING
        while self.running:
            if self.drain_requested and not self.draining:
                self._start_drain()
                if not self.running:
                    break
            if self.resume_accept_at and self.now >= self.resume_accept_at:
                self.resume_accept_at = 0
                if not self.accepting and self.lfd >= 0:
                    self._watch_listener()
            timeout_ms = <int>((min(self.next_tick, self.resume_accept_at or self.next_tick)
                                - self.now) * 1000) + 1
            if timeout_ms < 0:
                timeout_ms = 0
            with nogil:
                n = epoll_wait(self.epfd, self.events, MAX_EVENTS, timeout_ms)
                err = errno
            self.now = monotonic()
            PyErr_CheckSignals()            # Python signal handlers run here
            if n < 0:
                if err != EINTR:
                    raise OSError(err, "epoll_wait")
                continue
            for i in range(n):
                fd = self.events[i].data.fd
                ev = self.events[i].events
                if fd == self.lfd:
                    if self.accepting:
                        if self._defer_to_idler():
                            self.accepting = False
                            self._ctl(EPOLL_CTL_DEL, self.lfd, 0)
                            self.resume_accept_at = self.now + 0.002
                        else:
                            self._accept(self.lfd, False)
                    continue
                if fd == self.mlfd:
                    self._accept(self.mlfd, True)
                    continue
                c = <Connection>self.conns.get(fd)
                if c is None:
                    continue
                if ev & EPOLLERR:
                    self._close(c, CLOSE_ERROR)
                elif ev & (EPOLLIN | EPOLLHUP):
                    self._on_readable(c)
                else:
                    self._drive(c)
            if self.now >= self.next_tick:
                self._tick()
        self._close_all()
        if self.access_log is not None:
            self.access_log.flush()

    def drain(self):
        """Stop accepting; finish what is in flight with "Connection: close"; close idle
        connections; leave run() when none is left, or at the graceful timeout. Safe to call
        from a signal handler, even while a handler runs: the listening socket closes at once,
        the rest happens between events."""
        self._close_listener()
        self.drain_requested = True

    cdef void _start_drain(self):
        cdef Connection c
        if self.draining:
            return
        self.draining = True
        self.drain_deadline = monotonic() + self.graceful_timeout
        self.slot.state = SLOT_DRAINING
        self._close_listener()
        self._close_idle()

    cdef void _close_listener(self):
        """Out of the epoll set first, then closed: the socket lives on in the master and the
        other workers, and epoll would go on reporting it under an fd number we no longer own."""
        if self.lfd < 0:
            return
        if self.accepting:
            self.accepting = False
            self._ctl(EPOLL_CTL_DEL, self.lfd, 0)
        self.sock.close()
        self.lfd = -1
        if self.mlfd >= 0:
            self._ctl(EPOLL_CTL_DEL, self.mlfd, 0)
            self.metrics_sock.close()
            self.mlfd = -1

    cdef void _close_idle(self):
        cdef Connection c
        idle = [c for c in self.conns.values()
                if (c.phase == P_IDLE or (c.phase == P_HEAD and c.rend == c.rstart))
                and self.now - c.since >= DRAIN_IDLE_GRACE]
        for c in idle:
            self._close(c, CLOSE_SERVER)
        if not self.conns:
            self.running = False

    cdef void _tick(self):
        """Once per tick: the Date line, expired deadlines, draining, the access log, and
        accepting again after EMFILE."""
        cdef Connection c
        set_date(("Date: " + formatdate(usegmt=True) + "\r\n").encode("ascii"))
        self.next_tick = self.now + self.tick_interval
        if not self.accepting and self.lfd >= 0:
            self._watch_listener()
        expired = [c for c in self.conns.values() if c.deadline <= self.now]
        for c in expired:
            self._on_timeout(c)
        if self.draining:
            if self.now >= self.drain_deadline:
                self._close_all()
            self._close_idle()
        if self.access_log is not None:
            self.access_log.flush()

    # ------------------------------------------------------------------ accepting

    cdef void _accept(self, int lfd, bint metrics_only):
        cdef int i, fd, one = 1
        cdef socklen_t alen
        cdef sockaddr_storage addr
        cdef Connection c
        for i in range(ACCEPT_BATCH):
            alen = sizeof(addr)
            fd = accept4(lfd, <sockaddr*>&addr, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                if errno == EMFILE or errno == ENFILE:
                    self._shed()
                    return
                if errno == ECONNABORTED or errno == EPROTO or errno == EINTR:
                    continue
                if errno != EAGAIN:
                    error_log.warning("accept failed: errno %d", errno)
                return
            if self.tcp:
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
            c = Connection.__new__(Connection)
            c.fd = fd
            c.addr = addr
            c.rcap = READ_CHUNK
            c.rbuf = <char*>malloc(c.rcap)
            c.out = OutBuffer.__new__(OutBuffer)
            c.parser = RequestParser.__new__(RequestParser, *self.parser_limits)
            c.phase = P_HEAD
            c.deadline = self.now + self.header_timeout
            c.since = self.now
            c.proxy_pending = self.proxy_protocol
            c.trusted = -1
            c.metrics_only = metrics_only
            c.interest = EPOLLIN
            self.conns[fd] = c
            self._ctl(EPOLL_CTL_ADD, fd, EPOLLIN)
            self.slot.conns += 1
            self.slot.accepted += 1

    cdef bint _defer_to_idler(self):
        """Every idle worker is woken for a new connection, and the one already running tends
        to win, so a few long keep-alive connections (a load balancer's) would all land on one
        worker. A worker with more open connections than another running worker lets that one
        take it — once: if nobody did within 2 ms, it accepts after all."""
        cdef int i
        cdef Slot* other
        if self.deferred:
            self.deferred = False
            return False
        for i in range(self.shared.nslots):
            other = self.shared.slot(i)
            if other != self.slot and other.state == SLOT_RUNNING and \
                    other.conns < self.slot.conns:
                self.deferred = True
                return True
        return False

    cdef void _shed(self):
        """Out of file descriptors: accept one connection on the spare fd and close it, so the
        backlog moves and the listener does not stay readable; if even that fails, stop
        accepting until the next tick. Existing connections keep being served."""
        cdef int fd
        if self.spare_fd >= 0:
            close(self.spare_fd)
            self.spare_fd = -1
            fd = accept4(self.lfd, NULL, NULL, SOCK_CLOEXEC)
            if fd >= 0:
                close(fd)
            self.spare_fd = open(b"/dev/null", O_RDONLY | O_CLOEXEC)
        if self.now >= self.next_shed_log:          # a line a second, not one per connection
            self.next_shed_log = self.now + 1.0
            error_log.warning("out of file descriptors: shedding new connections")
        if self.spare_fd < 0 and self.accepting:
            self.accepting = False
            self._ctl(EPOLL_CTL_DEL, self.lfd, 0)

    # ------------------------------------------------------------------ one connection

    cdef void _on_readable(self, Connection c):
        cdef ssize_t n
        cdef char* p
        if c.phase == P_LINGER:
            n = recv(c.fd, c.rbuf, c.rcap, 0)
            if n == 0 or (n < 0 and errno != EAGAIN):
                self._close(c, c.close_reason)
            return
        if c.rend == c.rcap:                # make room: slide, then grow up to the head limit
            if c.rstart > 0:
                memmove(c.rbuf, c.rbuf + c.rstart, c.rend - c.rstart)
                c.rend -= c.rstart
                c.rstart = 0
            else:
                if c.rcap >= self.max_rbuf:
                    self._refuse(c, 431, "request head too large")
                    self._drive(c)
                    return
                p = <char*>realloc(c.rbuf, min(c.rcap * 2, self.max_rbuf))
                if p == NULL:
                    self._close(c, CLOSE_ERROR)
                    return
                c.rbuf = p
                c.rcap = min(c.rcap * 2, self.max_rbuf)
        n = recv(c.fd, c.rbuf + c.rend, c.rcap - c.rend, 0)
        if n <= 0:
            if n < 0 and (errno == EAGAIN or errno == EINTR):
                return
            self._close(c, CLOSE_CLIENT)                  # the client closed or reset
            return
        c.rend += n
        self.slot.request_bytes += n
        if c.proxy_pending and not self._proxy_header(c):
            return
        self._drive(c)

    cdef bint _proxy_header(self, Connection c):
        """Take the PROXY protocol header off the front of the input. False: not yet whole,
        or refused (and the connection closed)."""
        try:
            found = parse_proxy_header(c.rbuf + c.rstart, c.rend - c.rstart)
        except ValueError as e:
            error_log.info("refused connection from %s:%s: %s", *c.client(), e)
            self._close(c, CLOSE_ERROR)
            return False
        if found is None:
            return False
        used, peer = found
        c.rstart += used
        c.proxy_pending = False
        if peer is not None:
            c.peer = peer
            c.trusted = 0       # the balancer told us the client: headers cannot override it
        return True

    cdef int _drive(self, Connection c) except -1:
        """Make every bit of progress possible without blocking: answer buffered requests,
        pull streamed chunks, send; then pick the epoll interest and the deadline."""
        cdef ssize_t n
        cdef Py_ssize_t pending
        cdef unsigned int want
        while True:
            if c.stream is not None:
                if c.out.pending() < self.high_water:
                    self._pump(c)
            elif not c.closing and c.out.pending() < self.high_water:
                self._process(c)
            pending = c.out.pending()
            if pending == 0:
                break
            n = send(c.fd, c.out.data + c.out.start, pending, MSG_NOSIGNAL)
            if n < 0:
                if errno == EAGAIN or errno == EINTR:
                    break
                self._close(c, CLOSE_CLIENT)
                return 0
            c.out.consume(n)
            self.slot.response_bytes += n
            if n < pending:
                break                       # the socket buffer is full: wait for EPOLLOUT
        if c.out.pending() == 0 and c.stream is None and c.closing:
            self._finish(c)
            return 0
        # reading is paused while the output is over its bound or a stream is being sent
        want = 0
        if c.out.pending():
            want = EPOLLOUT
        if c.stream is None and not c.closing and c.out.pending() < self.high_water:
            want |= EPOLLIN
        if want != c.interest:
            c.interest = want
            self._ctl(EPOLL_CTL_MOD, c.fd, want)
        self._set_phase(c)
        return 0

    cdef void _set_phase(self, Connection c):
        if c.parser.in_body():
            if c.phase != P_BODY:
                c.phase = P_BODY
                c.deadline = self.now + self.body_timeout
        elif c.rend > c.rstart:
            if c.phase != P_HEAD:
                c.phase = P_HEAD
                c.deadline = self.now + self.header_timeout
        elif c.out.pending() or c.stream is not None:
            c.phase = P_WRITE
            c.deadline = self.now + self.keepalive_timeout
        elif c.phase != P_IDLE:
            c.phase = P_IDLE
            c.since = self.now
            c.deadline = self.now + self.keepalive_timeout

    cdef int _process(self, Connection c) except -1:
        """Answer every complete request in the read buffer, in order."""
        cdef Py_ssize_t used
        cdef int r
        while True:
            r = c.parser.parse(c.rbuf + c.rstart, c.rend - c.rstart, &used)
            c.rstart += used
            if r == NEED_DATA:
                break
            if r == SEND_CONTINUE:
                c.out.write_bytes(CONTINUE_LINE)
                continue
            if r == PARSE_ERROR:
                self._refuse(c, c.parser.error_status, c.parser.error_reason)
                break
            self._respond(c, c.parser.take_request())
            if c.closing or c.stream is not None or c.out.pending() >= self.high_water:
                break
        if c.rstart == c.rend:
            c.rstart = c.rend = 0
        return 0

    cdef int _respond(self, Connection c, Request req) except -1:
        cdef bint http11 = req.http_version is V11 or req.http_version == V11
        cdef bint head_only = req.method is HEAD
        cdef bint keep_alive
        cdef bint builtin = True        # answered by the server itself, not the app
        cdef int status = 200
        cdef double t0, elapsed
        cdef bytes extra = None
        cdef str rid = None
        cdef unsigned long long mark
        self.served += 1
        if self.max_requests and self.served >= self.max_requests:
            self.drain_requested = True
        req.client = c.client()
        if self.proxies is not None:
            if c.trusted < 0:
                c.trusted = self.proxies.trusts(req.client[0])
            if c.trusted:
                req.client = self.proxies.client(req)
        # the clock read when epoll woke us: a pipelined request's time includes its wait
        # behind the requests before it, as its client sees it; and one clock read less
        t0 = self.now
        path = req.path
        if c.metrics_only:
            result, req.route_id = (self.exposition(req), ROUTE_METRICS) \
                if path == self.metrics_path else (NOT_FOUND, ROUTE_NONE)
        elif path == self.healthz:
            result, req.route_id = HEALTH_OK, ROUTE_HEALTHZ
        elif path == self.readyz:
            req.route_id = ROUTE_READYZ
            result = NOT_READY if (self.draining or self.drain_requested
                                   or not self.shared.header.ready) else HEALTH_OK
        elif path == self.metrics_path and not self.metrics_port:
            result, req.route_id = self.exposition(req), ROUTE_METRICS
        else:
            builtin = False
            if self.access_log is not None:
                rid = req.request_id
                if rid is None:
                    self.rid_counter += 1
                    rid = f"{self.rid_prefix}{self.rid_counter:x}"
                extra = b"X-Request-ID: " + rid.encode("latin-1") + b"\r\n"
            self.slot.in_flight += 1
            try:
                result = self.dispatch(req)
            except BaseException:
                # dispatch catches handler errors itself; this is the last line of defence
                error_log.exception("dispatch failed for %s %s", req.method, req.path)
                result = SERVER_ERROR
            self.slot.in_flight -= 1
        keep_alive = req.keep_alive and not (self.draining or self.drain_requested)
        mark = c.out.total
        try:
            stream = write_response(c.out, result, keep_alive, head_only, http11, extra)
        except Exception:
            error_log.exception("invalid response for %s %s", req.method, req.path)
            result = SERVER_ERROR
            stream = write_response(c.out, result, keep_alive, head_only, http11, extra)
        if stream is not None:
            if head_only:
                getattr(stream, "close", lambda: None)()
            else:
                c.stream = stream
                c.http11_stream = http11
                if not http11:
                    keep_alive = False      # HTTP/1.0: the stream ends with the connection
        if not keep_alive:
            c.closing = True
            c.close_reason = CLOSE_SERVER
        if type(result) is Response:
            status = (<Response>result).status
        if self.count_requests or self.access_log is not None:
            elapsed = monotonic() - t0
            if self.count_requests:
                count_request(self.slot, req.route_id, req.method_id, status, elapsed)
            if self.access_log is not None and (not builtin or self.log_health):
                self.access_log(req, status, c.out.total - mark, elapsed, rid)
        return 0

    cdef int _pump(self, Connection c) except -1:
        """Pull chunks of a streamed body until the output is over its bound or it ends."""
        while c.out.pending() < self.high_water:
            try:
                chunk = next(c.stream)
            except StopIteration:
                if c.http11_stream:
                    write_chunk(c.out, None)
                getattr(c.stream, "close", lambda: None)()
                c.stream = None
                return 0
            except Exception:
                # the head is gone already: all we can do is cut the connection
                error_log.exception("streamed response failed")
                c.stream = None
                c.out.consume(c.out.pending())
                c.closing = True
                c.refused = True
                c.close_reason = CLOSE_ERROR
                return 0
            if c.http11_stream:
                write_chunk(c.out, chunk)
            else:
                c.out.write_bytes(chunk.encode("utf-8") if type(chunk) is str else bytes(chunk))
        return 0

    cdef void _refuse(self, Connection c, int status, str reason):
        cdef object index = REASON_INDEX.get(reason)
        if index is not None:
            self.slot.parse_errors[<int>index] += 1
        error_log.info("refused request from %s:%s: %d %s", *c.client(), status, reason)
        write_error(c.out, status)
        c.closing = True
        c.refused = True
        c.close_reason = CLOSE_ERROR

    cdef void _on_timeout(self, Connection c):
        if (c.phase == P_HEAD and c.rend > c.rstart) or c.phase == P_BODY:
            error_log.info("request timeout from %s:%s (%s)", *c.client(),
                           "body" if c.phase == P_BODY else "head")
            if c.stream is None and not c.closing:
                self._refuse(c, 408, "timeout")
                c.close_reason = CLOSE_BODY_TIMEOUT if c.phase == P_BODY else CLOSE_HEADER_TIMEOUT
                c.phase = P_WRITE
                c.deadline = self.now + LINGER_SECONDS
                self._drive(c)
                return
        self._close(c, CLOSE_KEEPALIVE if c.phase == P_IDLE else
                    CLOSE_HEADER_TIMEOUT if c.phase == P_HEAD else
                    c.close_reason if c.phase == P_LINGER else CLOSE_ERROR)

    cdef void _finish(self, Connection c):
        """Everything is sent and the connection ends. If the client may still be sending,
        shut our side and read until it closes: closing with unread input would reset the
        connection and could destroy the response before the client reads it."""
        if c.refused or c.rend > c.rstart:
            shutdown(c.fd, SHUT_WR)
            c.phase = P_LINGER
            c.deadline = self.now + LINGER_SECONDS
            if c.interest != EPOLLIN:
                c.interest = EPOLLIN
                self._ctl(EPOLL_CTL_MOD, c.fd, EPOLLIN)
        else:
            self._close(c, c.close_reason)

    cdef void _close(self, Connection c, int reason):
        if c.fd < 0:
            return
        self.slot.closed[reason] += 1
        if c.stream is not None:
            getattr(c.stream, "close", lambda: None)()
            c.stream = None
        del self.conns[c.fd]
        close(c.fd)                         # also removes it from the epoll set
        c.fd = -1
        self.slot.conns -= 1
        if self.draining and not self.conns:
            self.running = False

    cdef void _close_all(self):
        cdef Connection c
        for c in list(self.conns.values()):
            self._close(c, CLOSE_SERVER)
