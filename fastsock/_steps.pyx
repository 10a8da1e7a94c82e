# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The time the worker's thread spends inside the steps of its asyncio tasks.

While asyncio runs the worker's thread, its waits happen inside the asyncio loop (uvloop's
included), out of fastsock's sight; the thread's CPU time counts what runs, but not a handler
that blocks off the CPU (a synchronous sleep or client call in an `async def`), which holds the
loop as surely. The worker's asyncio loop makes every task through a StepClock (its task
factory): the task drives a TimedCoroutine, which times each step of the coroutine it wraps
(two clock reads a step) and forwards everything else to it.

The task sends into it through its am_send slot, a C function (_timed_send) that sends into the
coroutine the same way: a step's result or exception passes through as it is, with no frame of
this module in the app's tracebacks and no StopIteration made for a return."""
cimport cython
from cpython.ref cimport PyObject

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
        if kwargs:                      # name=, context= (asyncio passes them when given)
            return Task(timed, loop=loop, **kwargs)
        return Task(timed, loop=loop)


@cython.freelist(16)
cdef class TimedCoroutine:
    """A coroutine's stand-in: send, throw and close reach it, timed; its attributes
    (cr_frame, cr_running, __qualname__ ...) are its own, for whoever inspects the task."""

    def __cinit__(self):
        self.clock = _unowned           # never None, even if made from Python (no factory)

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


cdef extern from *:
    """
    typedef int (*fs_send_fn)(PyObject*, PyObject*, PyObject**);
    static fs_send_fn fs_timed_send = NULL;
    static PySendResult fs_steps_am_send(PyObject* self, PyObject* arg, PyObject** result) {
        return (PySendResult)fs_timed_send(self, arg, result);
    }
    static void fs_steps_give_am_send(PyObject* type, fs_send_fn fn) {
        PyTypeObject* t = (PyTypeObject*)type;
        fs_timed_send = fn;
        if (t->tp_as_async != NULL) t->tp_as_async->am_send = fs_steps_am_send;
    }
    static int fs_iter_send(PyObject* it, PyObject* arg, PyObject** result) {
        return (int)PyIter_Send(it, arg, result);
    }
    """
    ctypedef int (*fs_send_fn)(PyObject*, PyObject*, PyObject**) noexcept
    void fs_steps_give_am_send(object type, fs_send_fn fn)
    int fs_iter_send(PyObject* it, PyObject* arg, PyObject** result) noexcept


cdef int _timed_send(PyObject* self, PyObject* arg, PyObject** result) noexcept:
    """am_send: a step of the coroutine, timed. Raises nothing itself: the coroutine's
    exception, if any, is left set for the task (PYGEN_ERROR)."""
    cdef TimedCoroutine timed = <TimedCoroutine>self
    cdef double began = monotonic()
    cdef int status = fs_iter_send(<PyObject*>timed.coro, arg, result)
    timed.clock.seconds += monotonic() - began
    return status


cdef StepClock _unowned = StepClock()
fs_steps_give_am_send(TimedCoroutine, _timed_send)
Coroutine.register(TimedCoroutine)  # what it is to asyncio.iscoroutine (Task takes it)
