# One worker's event loop: its listeners and connections, epoll, timers, draining.

from fastsock._conn cimport Connection, Context
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


cdef class Loop:
    cdef int epfd
    cdef int spare_fd               # kept open to shed a connection when fds run out
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
    cdef double next_shed_log
    cdef object on_tick             # callable once a tick (the access log's flush), or None
    cdef public object aio          # the worker's asyncio loop, or None (set when made)
    cdef bint in_aio                # the asyncio loop is running the thread now
    cdef bint aio_stopping          # its stop() is asked for: once (uvloop queues each one,
                                    # and a second would stop its next run)
    cdef object aio_tick            # the asyncio timer handle of the next tick, while in_aio
    cdef public int tasks           # handler tasks and thread jobs not finished (even those
                                    # whose client left): asyncio runs until they are done
    cdef int wake_fd                # an eventfd: threads wake the loop through it
    cdef int nudge_fd               # this worker's slot's eventfd in SharedState (not ours
                                    # to close): other workers call it back to the listeners
    cdef object inbox               # deque of (fn, arg) from threads, run on the loop
    cdef bint wake_armed            # the eventfd is written and not yet read
    cdef list resumed               # connections answered since the last send (_resumed)
    cdef bint in_turn               # handling the events of one epoll_wait
    cdef epoll_event events[MAX_EVENTS]
    cdef char scratch[SCRATCH]

    cdef int _turn(self, int timeout_ms) except -1
    cdef int _run_aio(self) except -1
    cdef void _aio_check(self)
    cdef int _run_inbox(self) except -1
    cdef void _resume(self, Connection c)
    cdef int _on_event(self, epoll_event* e) except -1
    cdef void _event_failed(self, epoll_event* e)
    cdef int _ctl(self, int op, int fd, unsigned int events, unsigned long long tag) except -1
    cdef int _watch(self, Listener l) except -1
    cdef int _unwatch(self, Listener l) except -1
    cdef void _end_aside(self, Listener l)
    cdef int _stand_aside(self, Listener l) except -1
    cdef int _balance(self, Listener l) except -1
    cdef int _watch_again(self) except -1
    cdef int _keep_a_spare(self) except -1
    cdef int _responsive_others(self, long long bit)
    cdef void _call_back(self, long long bit, long long fewer_than)
    cdef void _start_drain(self)
    cdef void _close_listeners(self)
    cdef void _close_idle(self)
    cdef void _tick(self)
    cdef int _accept(self, Listener l) except -1
    cdef void _shed(self, Listener l)
    cdef int _on_readable(self, Connection c, bint hangup) except -1
    cdef int _rearm(self, Connection c) except -1
    cdef int _discard(self, Connection c) except -1
    cdef int _drive(self, Connection c) except -1
    cdef ssize_t _send_with_tail(self, int fd, OutBuffer out) noexcept
    cdef void _close(self, Connection c, int reason)
    cdef void _close_all(self)
