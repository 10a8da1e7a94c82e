# The hand-back: how work done off the loop's thread (a thread pool, asyncio tasks) comes back
# to it. ConnIO (_resume) and the Loop (_turn, _timers, _keep_aio) extend it: the hooks at the end.

from fastsock._conn cimport Connection
from fastsock._steps cimport StepClock


cdef class Bridge:
    cdef public object aio          # the worker's asyncio loop, or None (set when made)
    cdef bint in_aio                # the asyncio loop is running the thread now
    cdef bint aio_stopping          # its stop() is asked for: once (uvloop queues each one,
                                    # and a second would stop its next run)
    cdef object aio_tick            # the asyncio timer handle of the next tick, while in_aio
    cdef public int tasks           # handler tasks and thread jobs not finished (even those
                                    # whose client left): asyncio runs until they are done
    cdef public int ws_handlers     # WebSocket handlers running: a drain waits for them too
                                    # (up to its deadline), not only for the connections
    cdef int wake_fd                # an eventfd: threads wake the loop through it
    cdef object inbox               # deque of (fn, arg) from threads, run on the loop
    cdef bint wake_armed            # the eventfd is written and not yet read
    cdef list resumed               # connections answered since the last send (_resumed)
    cdef bint in_turn               # handling the events of one epoll_wait
    cdef double idle                # seconds the thread waited for events (saturation's
                                    # busy time is the rest): timed around epoll_wait; while
                                    # asyncio runs the thread, what neither its CPU time nor
                                    # the time in task steps and turns accounts for
    cdef readonly StepClock steps   # the asyncio loop's task factory: time in task steps
    cdef double aio_wall            # while in asyncio: the clock, the thread's CPU time and
    cdef double aio_cpu             # the time in steps when its idle time was last counted
    cdef double aio_stepped         # (_aio_idle)

    cdef int _open_bridge(self) except -1
    cdef int _run_aio(self, int epfd) except -1
    cdef void _aio_check(self)
    cdef void _aio_idle(self, double now) noexcept
    cdef int _run_inbox(self) except -1
    cdef int _send_all_resumed(self) except -1

    # the loop's side
    cdef int _turn(self, int timeout_ms) except -1      # handle ready events (0: no wait)
    cdef double _timers(self)       # read the clock, tick when due: -> seconds to next tick
    cdef bint _keep_aio(self)       # handlers still wait (a requested drain started first)
    cdef void _resume(self, Connection c)   # send what c has, read what came meanwhile
