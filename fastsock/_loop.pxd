# One worker's event loop: its listeners, epoll, timers, draining. The connections' I/O is
# ConnIO's (_conn_io.pxd), the hand-back from handlers the Bridge's (_bridge.pxd).

from fastsock._accept cimport AcceptPolicy
from fastsock._conn_io cimport ConnIO
from fastsock._conn cimport Connection
from fastsock._listener cimport Listener
from fastsock._saturation cimport TickMarks
from fastsock._sys cimport epoll_event

cdef enum:
    MAX_EVENTS = 512


cdef class Loop(ConnIO):
    cdef list listeners
    cdef bint exclusive             # workers share the listeners: wake one, and rotate
    cdef bint drain_requested       # set by drain() (a signal handler, dispatch); run() acts
    cdef double drain_deadline
    cdef double next_tick
    cdef double tick_interval
    cdef object on_tick             # callable once a tick (the access log's flush), or None
    cdef public object on_drain     # callable as draining begins (the handshakes of WebSockets
                                    # still waiting for their handler refused), or None
    cdef AcceptPolicy accepts       # which worker accepts: stand aside, balance, shed
    cdef public object pool         # what runs handlers off the loop (a Runner: its
                                    # pool's and tasks' figures are read once a tick), or None
    cdef TickMarks marks            # the figures at the last saturation sample
    cdef epoll_event events[MAX_EVENTS]

    cdef int _turn(self, int timeout_ms) except -1
    cdef double _timers(self)
    cdef bint _keep_aio(self)
    cdef int _on_event(self, epoll_event* e) except -1
    cdef void _event_failed(self, epoll_event* e)
    cdef int _ctl(self, int op, int fd, unsigned int events, unsigned long long tag) except -1
    cdef int _watch(self, Listener l) except -1
    cdef int _unwatch(self, Listener l) except -1
    cdef int _watch_again(self) except -1
    cdef void _start_drain(self)
    cdef void _close_websockets(self)
    cdef void _close_listeners(self)
    cdef void _close_idle(self)
    cdef void _tick(self)
    cdef void _sample(self)
    cdef int _accept(self, Listener l) except -1
