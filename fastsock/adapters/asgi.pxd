# asgi.py is compiled as it is; this gives its per-request object C attributes.

cdef class _Cycle:
    cdef public object req, deferred, scope, labels, aio, task, timer, status, headers, feed
    cdef public object recv_waiter, send_waiter
    cdef public bint body_done, is_gone, started, complete, closed, told_gone
