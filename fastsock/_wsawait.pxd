# The app's awaits on a WebSocket session: receive and send as compiled awaitables (no
# coroutine frames), resumed through am_send.

from fastsock._wsconn cimport WsSession

cdef enum:
    RECEIVE = 0             # the next message, WebSocketDisconnect at the close
    RECEIVE_ITER = 1        # the same, StopAsyncIteration at the close (`async for`)
    SEND = 2                # a message out, waiting while the output is over its bound
    RECEIVE_ASGI = 3        # ASGI's websocket.receive event, websocket.disconnect at the close


cdef class Awaiting:
    cdef WsSession session
    cdef object future              # the Future it waits on, or None
    cdef object message             # SEND's, until it is written; RECEIVE_ASGI's cycle
    cdef int kind
    cdef object _next(self)
    cdef object _step(self, int* done)
    cdef object _receive(self, int* done)
    cdef object _send(self, int* done)
    cdef object _wait_on(self, WsSession s, bint drain)
    cdef void _drop(self)
