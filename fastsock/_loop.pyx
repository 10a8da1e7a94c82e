# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""One worker's event loop: epoll, accept, read, send, timers, draining.

It reads into connections and sends what they produce; what a request means is the
connection's business and the dispatch callable's (one per listener). It makes no policy: it
does not know what /healthz is, nor when to recycle itself.
"""
from cpython.exc cimport PyErr_CheckSignals
from cpython.ref cimport PyObject

from fastsock._conn_io cimport ConnIO
from fastsock._accept cimport accept_policy, ACCEPT_BATCH, SHARED_ACCEPT_BATCH
from fastsock._conn cimport Connection
from fastsock._lifecycle cimport C_HANDSHAKE
from fastsock._tlsctx cimport TLSContext
from fastsock._context cimport Context, Limits
from fastsock._listener cimport Listener, open_listener
from fastsock._saturation cimport sample, start_marks
from fastsock._shared cimport (
    SharedState, SLOT_RUNNING, SLOT_DRAINING, SLOT_RETIRING, CLOSE_CLIENT, CLOSE_ERROR,
    CLOSE_SERVER, forget_the_dead,
)
from fastsock._sys cimport *

import logging
import os
from email.utils import formatdate

error_log = logging.getLogger("fastsock.error")

cdef enum:
    MAX_LISTENERS = 16          # epoll tags below this are listeners; above, connections
    WAKE_TAG = MAX_LISTENERS    # the eventfd threads wake the loop with
    NUDGE_TAG = MAX_LISTENERS + 1   # the eventfd other workers ask this one to watch again with

# while draining, a connection idle this long is closed; a busier one gets "Connection: close"
# on its next response instead, so a client that keeps sending never races the close
cdef double DRAIN_IDLE_GRACE = 2.0


cdef class Loop(ConnIO):
    """One worker's loop over its listeners and connections (attributes in _loop.pxd)."""

    def __init__(self, Limits limits, SharedState shared=None, int slot=-1, bint exclusive=False,
                 on_tick=None, aio=None):
        """limits: a Limits struct (a dict of its fields from Python); shared/slot: the
        master's shared memory and this worker's counter slot (a private one when None);
        exclusive: other workers share these listeners, so wake one worker per connection;
        aio: the worker's asyncio loop, run while handlers wait (None: none ever do)."""
        self.ctx = Context(limits, shared, slot)
        self.ctx.on_resume = self._resumed
        self.ctx.on_later = self._later
        self.aio = aio
        self.listeners = []
        self.conns = {}
        self.closed = []
        self.exclusive = exclusive
        self.on_tick = on_tick
        self.tick_interval = min(1.0, limits.header_timeout / 4, limits.keepalive_timeout / 4,
                                 limits.body_timeout / 4, limits.tls_handshake_timeout / 4)
        if limits.ws_shortest_timer > 0:
            self.tick_interval = min(self.tick_interval, limits.ws_shortest_timer / 4)
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1")
        self._open_bridge()
        self._ctl(EPOLL_CTL_ADD, self.wake_fd, EPOLLIN, WAKE_TAG)
        self.accepts = accept_policy(self.ctx.shared, slot if shared is not None else 0,
                                     exclusive and shared is not None)
        if self.accepts.balancing():
            self._ctl(EPOLL_CTL_ADD, self.accepts.nudge_fd, EPOLLIN, NUDGE_TAG)

    def listen(self, sock, dispatch, TLSContext tls=None):
        """Accept connections on sock (bound and listening, maybe shared with other workers);
        each request they carry is answered by dispatch(request) -> result; with tls, over
        TLS."""
        cdef Listener listener
        if len(self.listeners) >= MAX_LISTENERS:
            raise ValueError("too many listeners")
        listener = open_listener(sock, len(self.listeners), dispatch, tls)
        self.listeners.append(listener)
        self._watch(listener)

    def use_tls(self, TLSContext tls):
        """New handshakes on the TLS listeners use tls (a reload); open connections keep
        theirs."""
        cdef Listener listener
        for listener in self.listeners:
            if listener.tls is not None:
                listener.tls = tls

    cdef int _ctl(self, int op, int fd, unsigned int events, unsigned long long tag) except -1:
        cdef epoll_event ev
        ev.events = events
        ev.data.u64 = tag
        if epoll_ctl(self.epfd, op, fd, &ev) < 0:
            raise OSError(errno, "epoll_ctl")
        return 0

    cdef int _watch(self, Listener listener) except -1:
        # Shared by several workers: EPOLLEXCLUSIVE wakes one worker that is waiting in
        # epoll_wait (never one stuck in a handler), not all of them.
        self._ctl(EPOLL_CTL_ADD, listener.fd, EPOLLIN | (EPOLLEXCLUSIVE if self.exclusive else 0),
                  listener.tag)
        listener.watched = True
        self.accepts.watching(1 << listener.tag)
        return 0

    cdef int _unwatch(self, Listener listener) except -1:
        if listener.watched:
            listener.watched = False
            self.accepts.not_watching(1 << listener.tag)
            self._ctl(EPOLL_CTL_DEL, listener.fd, 0, 0)
        return 0

    # ------------------------------------------------------------------ the loop

    def run(self):
        cdef int timeout_ms
        cdef Context ctx = self.ctx
        self.running = True
        ctx.now = monotonic()
        start_marks(&self.marks, ctx.slot, ctx.now, self.idle)
        self._tick()
        ctx.slot.pid = os.getpid()
        forget_the_dead(ctx.slot)       # a dead predecessor's connections, requests died with it
        if not self.drain_requested:
            ctx.slot.state = SLOT_RUNNING
        while self.running:
            if self.drain_requested and not self.draining:
                self._start_drain()
                if not self.running:
                    break
            if (ctx.waiting or self.tasks) and self.aio is not None:
                self._run_aio(self.epfd)    # until no handler waits any more
                continue
            timeout_ms = <int>((self.next_tick - ctx.now) * 1000) + 1
            self._turn(timeout_ms if timeout_ms > 0 else 0)
        self._close_all()
        if self.on_tick is not None:
            self.on_tick()

    cdef int _turn(self, int timeout_ms) except -1:
        """One turn of the loop: wait up to timeout_ms for events, handle them, tick when due."""
        cdef int n, i, err
        cdef Context ctx = self.ctx
        cdef double waited = monotonic() if timeout_ms else 0
        ctx.slot.woke = 0                   # waiting: the others may count on this worker
        with nogil:
            n = epoll_wait(self.epfd, self.events, MAX_EVENTS, timeout_ms)
            err = errno
        ctx.now = monotonic()
        if timeout_ms:                      # (0: in asyncio, which counts its own waits)
            self.idle += ctx.now - waited
        ctx.slot.woke = ctx.now
        if self.accepts.someone_aside():
            self.accepts.keep_a_spare(ctx.now)
        PyErr_CheckSignals()            # Python signal handlers run here
        if n < 0:
            if err != EINTR:
                raise OSError(err, "epoll_wait")
            return 0
        i = 0
        self.in_turn = True
        while i < n:
            # the try is entered once per wake-up, not per event: whatever one event
            # raises (a bug, MemoryError, an epoll_ctl error) costs its connection only
            try:
                while i < n:
                    self._on_event(&self.events[i])
                    i += 1
            except Exception:
                self._event_failed(&self.events[i])
                i += 1
        self.in_turn = False
        if self.resumed:                    # answers handed back by threads in this turn
            self._send_resumed()
        if self.closed:
            self.closed = []
        if ctx.now >= self.next_tick:
            self._tick()
        return 0

    # ------------------------------------------------------------------ the bridge's hooks

    cdef double _timers(self):
        self.ctx.now = monotonic()
        if self.ctx.now >= self.next_tick:
            self._tick()
        return self.next_tick - self.ctx.now

    cdef bint _keep_aio(self):
        if self.drain_requested and not self.draining:
            self._start_drain()
        return self.running and (self.ctx.waiting or self.tasks)

    @property
    def on_head(self):
        return self.ctx.on_head

    @on_head.setter
    def on_head(self, value):
        """callable(req) -> BodyIn or None: which requests stream their bodies in (set it
        before accepting connections)."""
        self.ctx.on_head = value

    def refused_by_pool(self):
        """A request was answered 503: the thread pool's backlog was full (counted)."""
        self.ctx.slot.refused_pool += 1

    @property
    def on_refused(self):
        return self.ctx.on_refused

    @on_refused.setter
    def on_refused(self, value):
        """callable(req) past --limit-concurrency: the refusal, or None to serve it."""
        self.ctx.on_refused = value

    @property
    def on_stream(self):
        return self.ctx.on_stream

    @on_stream.setter
    def on_stream(self, value):
        """callable(feed, async_iterator): how a body streamed from asyncio is pushed."""
        self.ctx.on_stream = value

    cdef int _on_event(self, epoll_event* e) except -1:
        cdef unsigned int ev = e.events
        cdef Connection c
        if e.data.u64 < MAX_LISTENERS:
            return self._accept(<Listener>self.listeners[e.data.u64])
        if e.data.u64 == WAKE_TAG:
            return self._run_inbox()
        if e.data.u64 == NUDGE_TAG:
            return self._watch_again()
        c = <Connection><PyObject*>e.data.ptr
        if c.fd < 0:
            return 0                        # closed earlier in this batch
        if ev & EPOLLERR:
            self._close(c, CLOSE_ERROR)
        elif c.awaits_handler():
            if ev & (EPOLLRDHUP | EPOLLHUP):    # gone (or half-closed) while its handler
                self._close(c, CLOSE_CLIENT)    # works: cancel it, as nginx and uvicorn do
            else:
                c.missed = EPOLLIN              # the next request: read after the response
        elif c.streams_out() and ev & (EPOLLRDHUP | EPOLLHUP):
            # gone (or half-closed) while its response streams: the producer is told (as
            # nginx's 499 and uvicorn's disconnect); a quiet stream would wait for ever
            self._close(c, CLOSE_CLIENT)
        elif ev & (EPOLLIN | EPOLLHUP):
            self._on_readable(c, ev & (EPOLLRDHUP | EPOLLHUP))
        elif ev & EPOLLOUT:
            if c.state == C_HANDSHAKE or (c.tls is not None and c.tls.read_wants_write):
                self._on_readable(c, 0)     # the handshake's next step, a read that waited
            else:
                self._drive(c)              # (a hang-up alone is read when reading resumes)
        return 0

    cdef void _event_failed(self, epoll_event* e):
        """An event raised: log it, close its connection (a listener is left alone until the
        next tick, so a failing accept cannot spin); every other connection carries on."""
        cdef Connection c
        if e.data.u64 < MAX_LISTENERS:
            error_log.exception("accepting a connection failed")
            try:
                self._unwatch(<Listener>self.listeners[e.data.u64])
            except Exception:
                pass
            return
        if e.data.u64 == WAKE_TAG:
            error_log.exception("running callbacks from threads failed")
            return
        c = <Connection><PyObject*>e.data.ptr
        error_log.exception("connection from %s:%s failed", *c.client())
        self._close(c, CLOSE_ERROR)

    def drain(self):
        """Stop accepting; finish what is in flight with "Connection: close"; close idle
        connections; leave run() when none is left, or at the graceful timeout. Safe to call
        from a signal handler or from dispatch: the listeners close at once, the rest happens
        between events."""
        self._close_listeners()
        self.drain_requested = True
        self.ctx.keep_alive = False
        self.ctx.slot.state = SLOT_DRAINING

    def retire(self):
        """Ask the master for a replacement and keep serving; it drains this worker once the
        replacement serves (--max-requests). Without a master, nothing happens."""
        if self.ctx.slot.state == SLOT_RUNNING:
            self.ctx.slot.state = SLOT_RETIRING

    def close_in_child(self):
        """In a process forked from this worker (a handler's os.fork, or multiprocessing's
        default start method): close the copies of the worker's sockets, so that a client
        sees the end of its response when the worker closes it, and nothing of the worker's
        is accepted or served from here. No epoll_ctl: the epoll set is the worker's too."""
        cdef Connection c
        cdef Listener listener
        for c in self.conns.values():
            if c.fd >= 0:
                close(c.fd)
                c.fd = -1
        self.conns = {}
        for listener in self.listeners:
            if listener.fd >= 0:
                listener.sock.detach()      # closed here, not again by the socket object
                close(listener.fd)
                listener.fd = -1
        for fd in (self.epfd, self.wake_fd):
            if fd >= 0:
                close(fd)
        self.epfd = self.wake_fd = -1
        self.accepts.close_in_child()
        self.running = False

    cdef void _start_drain(self):
        self.draining = True
        self.drain_deadline = monotonic() + self.ctx.limits.graceful_timeout
        self._close_listeners()
        if self.on_drain is not None:
            try:
                self.on_drain()
            except Exception:
                error_log.exception("the drain hook failed")
        self._close_websockets()
        self._close_idle()

    cdef void _close_websockets(self):
        """Draining: every open WebSocket is closed with 1001 (its handler is told)."""
        cdef Connection c
        for c in [c for c in self.conns.values() if c.ws is not None]:
            c.ws.going_away()
            self._resume(c)

    cdef void _close_listeners(self):
        """Out of the epoll set first, then closed: the socket lives on in the master and the
        other workers, and epoll would go on reporting it under an fd number we no longer own."""
        cdef Listener listener
        for listener in self.listeners:
            if listener.fd >= 0:
                self._unwatch(listener)
                self.accepts.end_aside(1 << listener.tag)
                listener.sock.close()
                listener.fd = -1

    cdef void _close_idle(self):
        cdef Connection c
        idle = [c for c in self.conns.values()
                if c.is_idle() and self.ctx.now - c.since >= DRAIN_IDLE_GRACE]
        for c in idle:
            self._close(c, CLOSE_SERVER)
        if not self.conns and (not self.ws_handlers or self.ctx.now >= self.drain_deadline):
            self.running = False        # (a WebSocket handler told of its close ends first)

    cdef void _tick(self):
        """Once per tick: the Date line, expired deadlines, draining, the on_tick hook, and
        accepting again after running out of fds."""
        cdef Connection c
        cdef Listener listener
        cdef int reason
        self.ctx.date_line = ("Date: " + formatdate(usegmt=True) + "\r\n").encode("ascii")
        self.ctx.slot.heartbeat = self.ctx.now     # the master's watchdog reads it
        self.next_tick = self.ctx.now + self.tick_interval
        self._sample()
        for listener in self.listeners:
            if listener.fd >= 0 and not listener.watched:
                try:
                    self._watch(listener)
                except OSError:
                    error_log.exception("watching a listener failed; trying again next tick")
        expired = [c for c in self.conns.values() if c.expired(self.ctx.now)]
        for c in expired:
            if c.fd < 0:
                continue
            try:
                reason = c.on_timeout()
                if reason == -1:
                    self._drive(c)
                elif reason != -3:          # (-3: still on time, a new deadline set)
                    self._close(c, reason)
            except Exception:
                error_log.exception("connection from %s:%s failed", *c.client())
                self._close(c, CLOSE_ERROR)
        if self.draining:
            if self.ctx.now >= self.drain_deadline:
                self._close_all()
            self._close_idle()
        if self.on_tick is not None:
            try:
                self.on_tick()
            except Exception:
                error_log.exception("the loop's tick hook failed")

    cdef void _sample(self):
        """Once a tick: how full this worker is, and the figures behind it, into its slot."""
        cdef Context ctx = self.ctx
        if self.in_aio:
            self._aio_idle(ctx.now)
        sample(ctx.slot, &self.marks, ctx.now, self.idle, self.pool, ctx.in_app_peak,
               ctx.limits.limit_concurrency, self.listeners)
        ctx.in_app_peak = ctx.waiting + ctx.streaming

    # ------------------------------------------------------------------ accepting

    cdef int _accept(self, Listener listener) except -1:
        cdef int i, fd, accepted = 0
        cdef socklen_t alen
        cdef sockaddr_storage addr
        cdef Context ctx = self.ctx
        if listener.fd < 0:
            return 0                        # closed by a drain earlier in this batch
        for i in range(SHARED_ACCEPT_BATCH if self.exclusive else ACCEPT_BATCH):
            if listener.fd < 0:
                break                       # a request just read made dispatch drain
            alen = sizeof(addr)
            fd = accept4(listener.fd, <sockaddr*>&addr, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                if errno == EMFILE or errno == ENFILE:
                    if not self.accepts.shed(listener.fd, ctx.now):
                        self._unwatch(listener)  # until the next tick
                    return 0
                if errno == ECONNABORTED or errno == EPROTO or errno == EINTR:
                    continue
                if errno != EAGAIN:
                    error_log.warning("accept failed: errno %d", errno)
                elif i == 0 and self.accepts.balancing():
                    # woken for a connection another worker took first: more workers wait
                    # for connections than there is work (or cores) for
                    if self.accepts.stand_aside(1 << listener.tag, ctx.now):
                        self._unwatch(listener)
                break
            accepted += self._adopt(fd, &addr, listener.dispatch, listener.tls)
        if accepted and self.accepts.balancing() and self.accepts.balance(1 << listener.tag):
            self._unwatch(listener)         # to the back of its queue of waiting workers
            self._watch(listener)
        return 0

    cdef int _watch_again(self) except -1:
        """Another worker called this one back (AcceptPolicy.balance): watch the listeners again."""
        cdef Listener listener
        self.accepts.called_back()
        for listener in self.listeners:
            if listener.fd >= 0 and not listener.watched:
                self._watch(listener)
        return 0
