# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The connections' I/O: read into them, send what they produce, linger, close (attributes in
_conn_io.pxd). What a request means is the connection's business; when to accept, tick or
drain is the Loop's, which extends this.
"""
from libc.string cimport memcpy, memset

from fastsock._bridge cimport Bridge
from fastsock._conn cimport Connection
from fastsock._context cimport Context
from fastsock._shared cimport CLOSE_CLIENT, CLOSE_ERROR, CLOSE_SERVER
from fastsock._sys cimport *
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

    cdef int _adopt(self, int fd, sockaddr_storage* addr, object dispatch) except -1:
        """A connection just accepted on fd: watch it, and read its request (TCP_DEFER_ACCEPT:
        it is in already). -> 1, or 0 when it could not be watched (closed)."""
        cdef epoll_event ev
        cdef Context ctx = self.ctx
        cdef Connection c = Connection.__new__(Connection)
        c.setup(ctx, dispatch, fd)
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
            n = recv(c.fd, p, room, 0)
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

    cdef int _rearm(self, Connection c) except -1:
        cdef epoll_event ev
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
            if c.out.tail_n == 0:
                n = send(c.fd, c.out.data + c.out.start, pending, MSG_NOSIGNAL)
            else:
                n = self._send_with_tail(c.fd, c.out)
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
            if not c.must_linger():
                self._close(c, c.close_reason)
                return 0
            shutdown(c.fd, SHUT_WR)
            c.linger()
            want = EPOLLIN
        else:
            want = (EPOLLOUT if c.out.pending() else 0) | (EPOLLIN if c.wants_read() else 0)
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
        if c.lingers():
            self._discard(c)                # what came before our shutdown: no new edge for it
        return 0

    cdef ssize_t _send_with_tail(self, int fd, OutBuffer out) noexcept:
        """The buffered bytes and the large body after them, in one call, without a copy."""
        cdef iovec iov[2]
        cdef msghdr msg
        memset(&msg, 0, sizeof(msg))
        iov[0].iov_base = out.data + out.start
        iov[0].iov_len = out.end - out.start
        iov[1].iov_base = <void*>out.tail_p
        iov[1].iov_len = out.tail_n
        if iov[0].iov_len:
            msg.msg_iov, msg.msg_iovlen = &iov[0], 2
        else:
            msg.msg_iov, msg.msg_iovlen = &iov[1], 1
        return sendmsg(fd, &msg, MSG_NOSIGNAL)

    cdef void _close(self, Connection c, int reason):
        if c.fd < 0:
            return
        self.ctx.slot.closed[reason] += 1
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
