# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The app's awaits on a WebSocket session (_wsconn): `await` on one does what a coroutine
would, without a coroutine's frames. An idle WebSocket's handler waits in one small object and
a Future (not three frames, about 650 bytes); a message already here, or an output with room,
is taken (or written) at once, with no Future and no exception: the interpreter's `await` and
the Task resume it through its am_send slot, which hands a result back as a value. It speaks
the coroutine protocol (send, throw, close) so that `await`, create_task and wait_for take it
as one. On the loop's thread, as the session."""
cimport cython

from fastsock._wsconn cimport WsSession

from collections.abc import Coroutine


class WebSocketDisconnect(Exception):
    """The WebSocket closed: `code` is the peer's close code (1005: it gave none; 1006: the
    connection went without a Close), or the one the server closed it with."""

    def __init__(self, code: int = 1000, reason: str = ""):
        super().__init__(code, reason)
        self.code, self.reason = code, reason


WebSocketDisconnect.__module__ = "fastsock.websocket"       # where the app imports it from


@cython.freelist(16)
cdef class Awaiting:
    """await it: receiving() -> the next message (str or bytes), WebSocketDisconnect once
    closed (StopAsyncIteration for `async for`); receiving_asgi() -> the ASGI event;
    sending() -> None once the message is framed into the output (waiting while the output
    is over its bound)."""

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self._next()

    def send(self, value):
        return self._next()

    def throw(self, typ, val=None, tb=None):
        self._drop()
        if val is None:
            raise typ
        raise val.with_traceback(tb) if tb is not None else val

    def close(self):
        self._drop()

    cdef object _next(self):
        cdef int done = 0
        value = self._step(&done)
        if done:
            raise StopIteration(value)
        return value

    cdef object _step(self, int* done):
        """-> the Future to wait on, or (*done set) the result."""
        if self.kind == SEND:
            return self._send(done)
        return self._receive(done)

    cdef object _receive(self, int* done):
        cdef WsSession s = self.session
        self.future = None
        try:
            message = s.receive()
        except ConnectionError:
            if self.kind == RECEIVE_ITER:
                raise StopAsyncIteration from None
            if self.kind == RECEIVE_ASGI:
                self.message.told_closed = True     # (its cycle)
                done[0] = 1
                return {"type": "websocket.disconnect", "code": s.close_code,
                        "reason": s.close_reason}
            raise WebSocketDisconnect(s.close_code, s.close_reason) from None
        if message is not None:
            done[0] = 1
            if self.kind == RECEIVE_ASGI:
                if type(message) is str:
                    return {"type": "websocket.receive", "text": message}
                return {"type": "websocket.receive", "bytes": message}
            return message
        if s.waiting is not None:
            raise RuntimeError("another task is already receiving on this WebSocket")
        return self._wait_on(s, False)

    cdef object _send(self, int* done):
        cdef WsSession s = self.session
        if self.future is not None:             # woken: the output has room (or it closed)
            self.future = None
            done[0] = 1
            return None
        message, self.message = self.message, None
        try:
            room = s.send(message)
        except ConnectionError:
            raise WebSocketDisconnect(s.close_code or 1006, s.close_reason) from None
        if room:
            done[0] = 1
            return None
        return self._wait_on(s, True)

    cdef object _wait_on(self, WsSession s, bint drain):
        if drain:       # every sender waiting for room waits on one future (a chat room's
            future = s.draining     # broadcast: several tasks sending to one slow client)
            if future is None or future.done():
                future = s.draining = s.aio.create_future()
        else:
            future = s.waiting = s.aio.create_future()
        future._asyncio_future_blocking = True      # what Future.__await__ sets when it yields
        self.future = future
        return future

    cdef void _drop(self):
        """Thrown into (cancelled) or closed: the session wakes it no more."""
        if self.future is not None and self.session.waiting is self.future:
            self.session.waiting = None     # (a drain's future is the other senders' too)
        self.future = None
        self.message = None


cdef extern from *:
    """
    typedef PyObject* (*fs_step_fn)(PyObject*, int*);
    static fs_step_fn fs_step = NULL;
    static PySendResult fs_am_send(PyObject* self, PyObject* arg, PyObject** result) {
        int done = 0;
        PyObject* r = fs_step(self, &done);
        *result = r;
        if (r == NULL) return PYGEN_ERROR;
        return done ? PYGEN_RETURN : PYGEN_NEXT;
    }
    static void fs_give_am_send(PyObject* type, fs_step_fn step) {
        PyTypeObject* t = (PyTypeObject*)type;
        fs_step = step;
        if (t->tp_as_async != NULL) t->tp_as_async->am_send = fs_am_send;
    }
    """
    ctypedef object (*fs_step_fn)(object, int*)
    void fs_give_am_send(object type, fs_step_fn step)


cdef object _awaiting_step(object self, int* done):
    return (<Awaiting>self)._step(done)


fs_give_am_send(Awaiting, _awaiting_step)
Coroutine.register(Awaiting)        # what it is to asyncio.iscoroutine (create_task)


def receiving(WsSession session, bint stop=False):
    """The awaitable of the session's next message; stop: StopAsyncIteration at the close."""
    cdef Awaiting a = Awaiting.__new__(Awaiting)
    a.session, a.kind = session, RECEIVE_ITER if stop else RECEIVE
    return a


def receiving_asgi(WsSession session, cycle):
    """The awaitable of ASGI's next websocket.receive event (a dict), or websocket.disconnect
    once closed (cycle.told_closed set)."""
    cdef Awaiting a = Awaiting.__new__(Awaiting)
    a.session, a.message, a.kind = session, cycle, RECEIVE_ASGI
    return a


def sending(WsSession session, message):
    """The awaitable of sending message (str: text, bytes-like: binary) on the session."""
    cdef Awaiting a = Awaiting.__new__(Awaiting)
    a.session, a.message, a.kind = session, message, SEND
    return a
