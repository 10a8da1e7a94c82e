# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The hand-back from handlers that run off the loop's thread.

Threads hand results back with call_soon_threadsafe(): an inbox, and one eventfd write per
batch, which wakes epoll. While asyncio handlers wait, the asyncio loop runs the thread and the
epoll loop turns inside it (its fd is one of asyncio's readers); with nothing waiting, the
thread is the epoll loop's alone again, so an app of plain handlers never pays for asyncio.
Connections answered meanwhile are sent in a batch: once every ready handler has run.
"""
from fastsock._sys cimport (
    close, eventfd, read, write, errno, EFD_NONBLOCK, EFD_CLOEXEC, monotonic, thread_cpu,
)
from fastsock._steps cimport StepClock

import logging
from collections import deque

error_log = logging.getLogger("fastsock.error")


cdef class Bridge:
    """The hand-back half of a Loop (attributes in _bridge.pxd)."""

    def __cinit__(self):
        self.wake_fd = -1

    def __dealloc__(self):
        if self.wake_fd >= 0:
            close(self.wake_fd)

    cdef int _open_bridge(self) except -1:
        self.inbox = deque()
        self.resumed = []
        self.steps = StepClock()
        self.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.wake_fd < 0:
            raise OSError(errno, "eventfd")
        return 0

    # ------------------------------------------------------------------ the asyncio turn

    cdef int _run_aio(self, int epfd) except -1:
        """Run the asyncio loop, with epfd among its readers, until no handler waits."""
        aio = self.aio
        self.in_aio = True
        self.aio_stopping = False
        self.aio_wall, self.aio_cpu = monotonic(), thread_cpu()
        self.aio_stepped = self.steps.seconds
        aio.add_reader(epfd, self._aio_readable)
        self.aio_tick = aio.call_later(max(0.0, self._timers()), self._aio_tick)
        try:
            aio.run_forever()
        finally:
            self.aio_tick.cancel()          # the latest of the chain: none is left behind
            self.aio_tick = None
            aio.remove_reader(epfd)
            self._aio_idle(monotonic())
            self.in_aio = False
            self._timers()
        if self.resumed:                    # stopped before its _send_resumed ran
            self._send_resumed()
        return 0

    cdef void _aio_idle(self, double now) noexcept:
        """While asyncio runs the thread its waits are not timed here (uvloop's are out of
        reach). Busy since the last count is at least the thread's CPU time, and at least the
        time in task steps and in the epoll loop's turns (a handler blocked off the CPU, a
        synchronous sleep in an `async def`, holds the loop all the same): the larger of the
        two; the rest is waiting."""
        cdef double cpu = thread_cpu(), stepped = self.steps.seconds
        cdef double off = (now - self.aio_wall) - max(cpu - self.aio_cpu,
                                                      stepped - self.aio_stepped)
        if off > 0:
            self.idle += off
        self.aio_wall, self.aio_cpu, self.aio_stepped = now, cpu, stepped

    def _aio_readable(self):
        cdef double began = monotonic()     # a turn runs inline handlers: timed as a step
        try:
            self._turn(0)
            self._aio_check()
        finally:
            self.steps.seconds += monotonic() - began

    def _aio_tick(self):
        cdef double wait = self._timers()
        if self.in_aio:
            self.aio_tick = self.aio.call_later(max(0.0, wait), self._aio_tick)
        self._aio_check()

    cdef void _aio_check(self):
        if not self._keep_aio() and not self.aio_stopping:
            self.aio_stopping = True
            self.aio.stop()

    def task_done(self):
        """A task or thread job counted in `tasks` ended (its runner calls this)."""
        self.tasks -= 1
        if self.in_aio:
            self._aio_check()

    # ------------------------------------------------------------------ resumed batches

    def _resumed(self, Connection c):
        """A deferred response, or a pushed chunk, was written into c. It is sent once every
        handler that is ready has run — at the end of this turn of the loop, or of this asyncio
        iteration — not as it comes: the handlers' Python runs back to back, then the sends
        (a FastAPI hello: 76 -> 56 µs of CPU per request, bench/interfaces.py)."""
        if c.resume_queued:                 # already in this batch
            return
        if self.in_aio:
            if not self.resumed:
                self.aio.call_soon(self._send_resumed)
        elif not self.in_turn:
            self._resume(c)
            return
        c.resume_queued = True
        self.resumed.append(c)

    def _send_resumed(self):
        self._send_all_resumed()
        if self.in_aio:
            self._aio_check()

    cdef int _send_all_resumed(self) except -1:
        cdef Connection c
        while self.resumed:
            resumed, self.resumed = self.resumed, []
            for c in resumed:
                c.resume_queued = False
                self._resume(c)
        return 0

    def _later(self, Connection c):
        """c has more to do that must wait for the others (a stream polling with empty
        chunks): drive it at the next turn, through the inbox."""
        self.call_soon_threadsafe(self._resumed, c)

    # ------------------------------------------------------------------ threads

    def call_soon_threadsafe(self, fn, arg):
        """From any thread: fn(arg) on the loop's thread, at its next turn (how a thread
        pool hands results back without an asyncio loop). One eventfd write per batch."""
        cdef unsigned long long one = 1
        self.inbox.append((fn, arg))
        if not self.wake_armed:
            self.wake_armed = True
            write(self.wake_fd, &one, 8)

    cdef int _run_inbox(self) except -1:
        cdef unsigned long long n
        cdef Py_ssize_t _k
        read(self.wake_fd, &n, 8)
        self.wake_armed = False             # before taking: a later append writes again
        inbox = self.inbox
        for _k in range(len(inbox)):        # what came meanwhile waits for the next turn
            fn, arg = inbox.popleft()
            try:
                fn(arg)
            except Exception:
                error_log.exception("a callback from a thread failed")
        if self.in_aio:
            self._aio_check()
        return 0

    # ------------------------------------------------------------------ the loop's side

    cdef int _turn(self, int timeout_ms) except -1:
        raise NotImplementedError

    cdef double _timers(self):
        return 0.0

    cdef bint _keep_aio(self):
        return False

    cdef void _resume(self, Connection c):
        pass
