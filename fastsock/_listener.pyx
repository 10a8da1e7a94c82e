# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A listening socket of one worker's loop: set up once, and asked how full its accept queue
is (once a tick, for the saturation figures)."""
from fastsock._sys cimport (
    getsockopt, socklen_t, tcp_info, IPPROTO_TCP, TCP_INFO, SOL_SOCKET, SO_COOKIE,
)

import socket as _socket

cdef enum:
    TCP_LISTEN = 10             # tcp_info.tcpi_state of a listening socket (linux/tcp_states.h)


cdef Listener open_listener(object sock, int tag, object dispatch, TLSContext tls):
    """sock (bound and listening, maybe shared with other workers), non-blocking, as the loop's
    listener of tag: its requests answered by dispatch, over tls when set."""
    cdef Listener listener = Listener.__new__(Listener)
    cdef socklen_t size = sizeof(listener.cookie)
    sock.setblocking(False)
    listener.sock = sock
    listener.fd = sock.fileno()
    listener.tag = tag
    listener.dispatch = dispatch
    listener.tls = tls
    if getsockopt(listener.fd, SOL_SOCKET, SO_COOKIE, &listener.cookie, &size) < 0:
        listener.cookie = 0
    if sock.family in (_socket.AF_INET, _socket.AF_INET6):
        # accepted sockets inherit it: no setsockopt per connection
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        # the kernel hands a connection over once its first bytes are in (or after ~1 s),
        # so accepting it and reading its request is one wake-up, not two; a client that
        # connects and says nothing costs no fd and wakes no worker meanwhile (as nginx's
        # "listen ... deferred")
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_DEFER_ACCEPT, 1)
    return listener


cdef class Listener:
    """A listening socket and the dispatch callable for the requests it brings."""

    cdef bint accept_queue(self, long long* length, long long* limit) noexcept:
        """The connections waiting to be accepted and the queue's limit (the backlog, capped
        by net.core.somaxconn), as TCP_INFO tells of a listening socket; False when it has no
        such figures (closed, or not TCP)."""
        cdef tcp_info info
        cdef socklen_t size = sizeof(info)
        if self.fd < 0 or getsockopt(self.fd, IPPROTO_TCP, TCP_INFO, &info, &size) < 0 \
                or info.tcpi_state != TCP_LISTEN:
            return False
        length[0], limit[0] = info.tcpi_unacked, info.tcpi_sacked
        return True
