# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The connections' I/O: read into them, send what they produce, linger, close (attributes in
_conn_io.pxd). What a request means is the connection's business; when to accept, tick or
drain is the Loop's, which extends this.
"""
from libc.string cimport memcpy, memset

from fastsock._bridge cimport Bridge
from fastsock._conn cimport Connection
from fastsock._context cimport Context
from fastsock._lifecycle cimport C_PROXY, C_HANDSHAKE, C_HEAD
from fastsock._shared cimport (
    CLOSE_CLIENT, CLOSE_ERROR, CLOSE_SERVER, CLOSE_KEEPALIVE, CLOSE_TLS_HANDSHAKE,
)
from fastsock._sys cimport *
from fastsock._tls cimport (
    TLSSession, new_session, HS_DONE, HS_WANT, HS_PLAIN_HTTP, F_CLOSED, F_TOO_MANY,
)
from fastsock._tlsctx cimport TLSContext
from fastsock._writer cimport OutBuffer

import logging

error_log = logging.getLogger("fastsock.error")

cdef enum:
    MAX_READS = 16              # reads of one connection per event before the others' turn

# how connections are watched: by edge, and told of a half-close along with the data before it
cdef unsigned int EDGE = EPOLLET | EPOLLRDHUP


cdef class ConnIO(Bridge):
    """Connections are watched by edge (EDGE): each handler reads or sends until the socket
    says it would block, and a change of interest re-arms the edge."""

    def __cinit__(self):
        self.epfd = -1

    def __dealloc__(self):
        if self.epfd >= 0:
            close(self.epfd)

    cdef int _adopt(self, int fd, sockaddr_storage* addr, object dispatch,
                    TLSContext tls) except -1:
        """A connection just accepted on fd: watch it, and read its request (TCP_DEFER_ACCEPT:
        it is in already); with tls, its handshake first. -> 1, or 0 when it could not be
        watched, or was refused (closed)."""
        cdef epoll_event ev
        cdef Context ctx = self.ctx
        cdef Connection c = Connection.__new__(Connection)
        cdef TLSSession session = None
        if tls is not None:
            if ctx.handshaking >= ctx.limits.tls_max_handshakes:
                ctx.slot.tls_failures[F_TOO_MANY] += 1      # cheap to refuse: no SSL made
                close(fd)
                return 0
            session = new_session(tls, fd)
            if session is None:
                close(fd)
                error_log.warning("no memory for a TLS connection")
                return 0
        c.setup(ctx, dispatch, fd)
        if session is not None:
            c.tls = session
            if c.state == C_HEAD:           # (after a PROXY header, when one is expected)
                c._to(C_HANDSHAKE)
        memcpy(&c.addr, addr, sizeof(c.addr))     # (IPv4 and IPv6 fit; a Unix peer is "")
        c.interest = EPOLLIN
        self.conns[fd] = c
        ev.events = EPOLLIN | EDGE          # edge-triggered: no re-poll of a drained socket
        ev.data.ptr = <void*>c              # the conns dict keeps it alive
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev) < 0:
            del self.conns[fd]
            close(fd)
            error_log.warning("epoll_ctl failed for a new connection: errno %d", errno)
            return 0
        ctx.slot.conns += 1
        ctx.slot.accepted += 1
        try:
            self._on_readable(c, 0)
        except Exception:
            error_log.exception("connection from %s:%s failed", *c.client())
            self._close(c, CLOSE_ERROR)
        return 1

    cdef void _resume(self, Connection c):
        """Send what c has, then read what came for it while its handler worked."""
        if c.fd < 0:
            return
        try:
            self._drive(c)
            if c.missed and c.fd >= 0 and not c.in_handler():
                c.missed = 0
                self._on_readable(c, False)
        except Exception:
            error_log.exception("connection from %s:%s failed", *c.client())
            self._close(c, CLOSE_ERROR)

    cdef int _on_readable(self, Connection c, bint hangup) except -1:
        """Connections are edge-triggered: read until the socket is drained (a short read
        says so, unless the client hung up: its end of input makes no edge of its own), the
        connection closes, or reading pauses (back-pressure)."""
        cdef ssize_t n
        cdef Py_ssize_t room
        cdef char* p
        cdef int reads = 0
        if c.state <= C_HANDSHAKE and c.tls is not None and not self._tls_start(c):
            return 0
        if c.input_closed():                # nothing more to read: a hang-up, or room to send
            return self._drive(c)
        while True:
            if c.lingers():
                return self._discard(c)
            reads += 1
            if reads > MAX_READS:           # a fast sender: let the others have a turn, and
                return self._rearm(c)       # have epoll report this one again
            p = c.read_space(&room)
            if p == NULL:                   # refused (head too large), or out of memory
                if c.is_closed():
                    self._close(c, c.close_reason)
                else:
                    self._drive(c)
                return 0
            n = recv(c.fd, p, room, 0) if c.tls is None else c.tls.recv_into(p, room)
            if n <= 0:
                if n < 0 and errno == EINTR:
                    continue
                if n < 0 and errno == EAGAIN:
                    return 0
                if n < 0 or c.end_input():              # reset, or closed with nothing left
                    self._close(c, CLOSE_CLIENT)
                else:                                   # half-closed: answer what is here
                    self._drive(c)
                return 0
            self.ctx.slot.request_bytes += n
            c.received(n)
            if c.is_closed():
                self._close(c, c.close_reason)
                return 0
            self._drive(c)
            if c.fd < 0 or c.lingers():
                return 0                    # closed, or _drive drained it already
            if hangup and c.awaits_room():  # ... or while its response streams, or a
                self._close(c, CLOSE_CLIENT)    # WebSocket is open
                return 0
            if c.awaits_handler():
                if hangup:                  # half-closed while its handler works: as above
                    self._close(c, CLOSE_CLIENT)
                elif n == room:             # more is there: read it after the response
                    c.missed = EPOLLIN
                return 0
            if (n < room and not hangup) or not (c.interest & EPOLLIN):
                return 0

    cdef int _tls_start(self, Connection c) except -1:
        """The PROXY header (if expected), then the handshake's next step. -> 1 once it is
        established (requests from now on), else 0: waiting, refused or closed."""
        cdef int r
        if c.state == C_PROXY and not self._peek_proxy(c):
            return 0
        r = c.tls.handshake(self.ctx.slot, self.ctx.now)
        if r == HS_DONE:
            c._to(C_HEAD)
            self._want(c, EPOLLIN)
            return 1
        if r == HS_WANT:
            self._want(c, c.tls.wants)
        elif r == HS_PLAIN_HTTP:
            c.refuse_plain_http()
            self._drive(c)
        else:
            self._close(c, CLOSE_TLS_HANDSHAKE)
        return 0

    cdef int _peek_proxy(self, Connection c) except -1:
        """A PROXY header before a ClientHello: looked at in the socket (MSG_PEEK), then
        exactly its bytes taken out, so that OpenSSL reads the ClientHello from the start.
        -> 1 once it is taken, else 0 (incomplete: the next bytes make an edge; or refused)."""
        cdef Py_ssize_t room, used
        cdef ssize_t n
        if c.read_space(&room) == NULL:
            self._close(c, CLOSE_ERROR)
            return 0
        n = recv(c.fd, c.rbuf, c.rcap, MSG_PEEK)
        if n < 0 and (errno == EAGAIN or errno == EINTR):
            return 0
        if n <= 0:
            self._close(c, CLOSE_CLIENT)
            return 0
        c.rstart = c.rend = 0
        c.received(n)
        if c.state == C_PROXY:              # not whole yet: it must fit in one buffer
            c.rstart = c.rend = 0
            if n == c.rcap:
                self._close(c, CLOSE_ERROR)
            return 0
        if c.is_closed():
            self._close(c, c.close_reason)
            return 0
        used = c.rstart
        c.rstart = c.rend = 0
        if recv(c.fd, c.rbuf, used, 0) != used:     # (peeked: it is there)
            self._close(c, CLOSE_ERROR)
            return 0
        return 1

    cdef int _want(self, Connection c, unsigned int want) except -1:
        cdef epoll_event ev
        if want != c.interest:
            c.interest = want
            ev.events = want | EDGE
            ev.data.ptr = <void*>c
            if epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &ev) < 0:
                self._close(c, CLOSE_ERROR)
        return 0

    cdef void _tls_later(self, Connection c):
        """OpenSSL holds plaintext no socket event will announce: read it at the next turn."""
        if c.tls.pending() and not c.in_handler():
            c.missed = EPOLLIN
            self._later(c)

    cdef int _rearm(self, Connection c) except -1:
        cdef epoll_event ev
        if c.tls is not None:
            self._tls_later(c)
        ev.events = c.interest | EDGE
        ev.data.ptr = <void*>c
        if epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &ev) < 0:
            self._close(c, CLOSE_ERROR)
        return 0

    cdef int _discard(self, Connection c) except -1:
        """Lingering: read and drop until the socket is drained; close when the client has."""
        cdef ssize_t n
        while True:
            n = recv(c.fd, self.scratch, SCRATCH, 0)
            if n > 0:
                continue
            if n < 0 and errno == EINTR:
                continue
            if n == 0 or errno != EAGAIN:
                self._close(c, c.close_reason)
            return 0

    cdef int _drive(self, Connection c) except -1:
        """Make every bit of progress possible without blocking: let the connection answer
        what it has, send; then pick the epoll interest."""
        cdef ssize_t n
        cdef Py_ssize_t pending
        cdef unsigned int want
        cdef epoll_event ev
        while True:
            c.produce()
            pending = c.out.pending()
            if pending == 0:
                break
            if c.out.tail_n:
                n = self._send_with_tail(c)
            elif c.tls is None:
                n = send(c.fd, c.out.data + c.out.start, pending, MSG_NOSIGNAL)
            else:
                n = c.tls.send(c.out.data + c.out.start, pending)
            if n < 0:
                if errno == EAGAIN or errno == EINTR:
                    break
                self._close(c, CLOSE_CLIENT)
                return 0
            c.out.consume(n)
            self.ctx.slot.response_bytes += n
            if n < pending:
                break                       # the socket buffer is full: wait for EPOLLOUT
        if c.awaits_room():
            c.output_drained()              # a pushed stream or a WebSocket's sender goes on
        if c.finished():
            # a TLS client's records may wait unread in the socket (a KeyUpdate, an alert sent
            # while the response streamed): a close then resets it, cutting the response
            if not c.must_linger() and not (c.tls is not None
                                            and recv(c.fd, self.scratch, 1, MSG_PEEK) > 0):
                self._close(c, c.close_reason)
                return 0
            if c.tls is not None:
                c.tls.close_notify()
            shutdown(c.fd, SHUT_WR)
            c.linger()
            want = EPOLLIN
        else:
            want = (EPOLLOUT if c.out.pending() else 0) | (EPOLLIN if c.wants_read() else 0)
            if c.tls is not None and c.tls.read_wants_write:
                want |= EPOLLOUT            # then _on_event reads again
            if want == 0 and c.awaits_handler():
                # its handler works: the watch stays, what comes is noted (c.missed) and read
                # after the response — two epoll_ctl calls fewer per deferred request
                want = c.interest & EPOLLIN
            c.settle()
        if want != c.interest:
            # a change of interest re-arms the edge: input or room already there is reported
            c.interest = want
            c.missed = 0
            ev.events = want | EDGE
            ev.data.ptr = <void*>c
            if epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &ev) < 0:
                error_log.warning("epoll_ctl failed for a connection: errno %d", errno)
                self._close(c, CLOSE_ERROR)
                return 0
            if want & EPOLLIN and c.tls is not None:
                self._tls_later(c)          # reading again: the socket's edge cannot say it
        if c.lingers():
            self._discard(c)                # what came before our shutdown: no new edge for it
        return 0

    cdef ssize_t _send_with_tail(self, Connection c) noexcept:
        """The buffered bytes and the large body after them, in one call, without a copy
        (with TLS, one call each)."""
        cdef iovec iov[2]
        cdef msghdr msg
        cdef OutBuffer out = c.out
        cdef ssize_t n, m
        if c.tls is not None:
            n = c.tls.send(out.data + out.start, out.end - out.start)
            if n != out.end - out.start:
                return n
            m = c.tls.send(<const char*>out.tail_p, out.tail_n)
            if m < 0 and errno != EAGAIN:
                return m                    # broken: closed, whatever the head took
            return n + m if m > 0 else n
        memset(&msg, 0, sizeof(msg))
        iov[0].iov_base = out.data + out.start
        iov[0].iov_len = out.end - out.start
        iov[1].iov_base = <void*>out.tail_p
        iov[1].iov_len = out.tail_n
        if iov[0].iov_len:
            msg.msg_iov, msg.msg_iovlen = &iov[0], 2
        else:
            msg.msg_iov, msg.msg_iovlen = &iov[1], 1
        return sendmsg(c.fd, &msg, MSG_NOSIGNAL)

    cdef void _close(self, Connection c, int reason):
        if c.fd < 0:
            return
        self.ctx.slot.closed[reason] += 1
        if c.state == C_HANDSHAKE and (reason == CLOSE_CLIENT or reason == CLOSE_ERROR):
            # reset (EPOLLERR) or broken outside the handshake's own step: still its failure
            c.tls.fail(self.ctx.slot, F_CLOSED, self.ctx.now, "reset during the handshake")
        if c.tls is not None and (reason == CLOSE_SERVER or reason == CLOSE_KEEPALIVE):
            c.tls.close_notify()            # an orderly end: the client knows it is whole
        c.release()
        del self.conns[c.fd]
        # out of the epoll set first: close() removes it only when no other process holds
        # the socket (a handler's forked child may), and the registration points at c
        epoll_ctl(self.epfd, EPOLL_CTL_DEL, c.fd, NULL)
        close(c.fd)
        c.fd = -1
        self.closed.append(c)
        self.ctx.slot.conns -= 1
        if self.draining and not self.conns and not self.ws_handlers:
            self.running = False        # (else the drain's tick ends it: _close_idle)

    cdef void _close_all(self):
        cdef Connection c
        for c in list(self.conns.values()):
            self._close(c, CLOSE_SERVER)
