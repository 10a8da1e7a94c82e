# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The time the worker's thread spends inside the steps of its asyncio tasks.

While asyncio runs the worker's thread, its waits happen inside the asyncio loop (uvloop's
included), out of fastsock's sight; the thread's CPU time counts what runs, but not a handler
that blocks off the CPU (a synchronous sleep or client call in an `async def`), which holds the
loop as surely. The worker's asyncio loop makes every task through a StepClock (its task
factory): the task drives a TimedCoroutine, which times each step of the coroutine it wraps
(two clock reads a step) and forwards everything else to it."""
cimport cython

from fastsock._sys cimport monotonic

from asyncio import Task, iscoroutine
from collections.abc import Coroutine
from types import CoroutineType


cdef class StepClock:
    """The task factory of the worker's asyncio loop (loop.set_task_factory): a Task over the
    coroutine, timed."""

    def __call__(self, loop, coro, **kwargs):
        if type(coro) is not CoroutineType and not iscoroutine(coro):
            return Task(coro, loop=loop, **kwargs)  # its TypeError, at once, as without us
        cdef TimedCoroutine timed = TimedCoroutine.__new__(TimedCoroutine)
        timed.clock, timed.coro = self, coro
        return Task(timed, loop=loop, **kwargs)


@cython.freelist(16)
cdef class TimedCoroutine:
    """A coroutine's stand-in: send, throw and close reach it, timed; its attributes
    (cr_frame, cr_running, __qualname__ ...) are its own, for whoever inspects the task."""

    def __await__(self):
        return self

    def __next__(self):
        cdef double began = monotonic()
        try:
            return self.coro.send(None)
        finally:
            self.clock.seconds += monotonic() - began

    def send(self, value):
        cdef double began = monotonic()
        try:
            return self.coro.send(value)
        finally:
            self.clock.seconds += monotonic() - began

    def throw(self, *args):
        cdef double began = monotonic()
        try:
            return self.coro.throw(*args)
        finally:
            self.clock.seconds += monotonic() - began

    def close(self):
        return self.coro.close()

    def __getattr__(self, name):
        return getattr(self.coro, name)

    def __repr__(self):
        return repr(self.coro)


Coroutine.register(TimedCoroutine)  # what it is to asyncio.iscoroutine (Task takes it)
