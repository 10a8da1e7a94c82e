# One worker's event loop: its listeners and connections, epoll, timers, draining.

from fastsock._accept cimport AcceptPolicy
from fastsock._bridge cimport Bridge
from fastsock._conn cimport Connection
from fastsock._context cimport Context
from fastsock._sys cimport epoll_event
from fastsock._writer cimport OutBuffer

cdef enum:
    MAX_EVENTS = 512
    SCRATCH = 4096


cdef class Listener:
    cdef int fd
    cdef int tag                # its epoll tag: its index in Loop.listeners
    cdef object sock
    cdef object dispatch
    cdef bint watched


cdef class Loop(Bridge):
    cdef int epfd
    cdef Context ctx
    cdef list listeners
    cdef dict conns                 # fd -> Connection, for timers and draining
    cdef list closed                # closed during this batch of events: kept alive until
                                    # its end, as later events of the batch may name them
    cdef bint exclusive             # workers share the listeners: wake one, and rotate
    cdef bint running
    cdef bint draining
    cdef bint drain_requested       # set by drain() (a signal handler, dispatch); run() acts
    cdef double drain_deadline
    cdef double next_tick
    cdef double tick_interval
    cdef object on_tick             # callable once a tick (the access log's flush), or None
    cdef AcceptPolicy accepts       # which worker accepts: stand aside, balance, shed
    cdef epoll_event events[MAX_EVENTS]
    cdef char scratch[SCRATCH]

    cdef int _turn(self, int timeout_ms) except -1
    cdef double _timers(self)
    cdef bint _keep_aio(self)
    cdef void _resume(self, Connection c)
    cdef int _on_event(self, epoll_event* e) except -1
    cdef void _event_failed(self, epoll_event* e)
    cdef int _ctl(self, int op, int fd, unsigned int events, unsigned long long tag) except -1
    cdef int _watch(self, Listener l) except -1
    cdef int _unwatch(self, Listener l) except -1
    cdef int _watch_again(self) except -1
    cdef void _start_drain(self)
    cdef void _close_listeners(self)
    cdef void _close_idle(self)
    cdef void _tick(self)
    cdef int _accept(self, Listener l) except -1
    cdef int _on_readable(self, Connection c, bint hangup) except -1
    cdef int _rearm(self, Connection c) except -1
    cdef int _discard(self, Connection c) except -1
    cdef int _drive(self, Connection c) except -1
    cdef ssize_t _send_with_tail(self, int fd, OutBuffer out) noexcept
    cdef void _close(self, Connection c, int reason)
    cdef void _close_all(self)
