# wsgi.py is compiled as it is; this gives its per-request object C attributes.

cdef class _Call:
    cdef public object adapter, req, deferred, loop, status, headers, timer, environ
    cdef public object pending, feed, room
    cdef public bint head_sent, is_gone
