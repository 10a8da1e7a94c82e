# What passes between a connection and a handler that answers later or streams: Deferred (a
# response to come), BodyIn (a request body streamed to the handler), Feed (a response body
# pushed from asyncio). They hold the connection as an Endpoint: the few things a hand-off
# may ask of it (Connection implements them), so this room needs nothing from _conn.


cdef class Endpoint:
    cdef int resume(self, object result) except -1     # the deferred result is here: write it
    cdef void pushed(self)                  # output or room is here: let the loop drive it
    cdef int stream_chunk(self, object chunk) except -1    # a pushed chunk of the response
    cdef int end_stream(self) except -1
    cdef int cut_stream(self, str why) except -1
    cdef bint has_room(self) noexcept       # its output is under the high-water mark


cdef class Deferred:
    cdef Endpoint conn
    cdef object result
    cdef bint done
    cdef readonly int kind          # where its handler runs (K_* in _shared.pxd): the
                                    # in-flight gauge's label
    cdef public object on_cancel    # callable() run when the client goes first, or None
    cpdef complete(self, object result)
    cdef void cancel(self)


cdef enum:
    BODY_IN_HIGH_WATER = 1048576    # a streamed request body: stop reading past this unread


cdef class BodyIn:
    cdef Endpoint conn
    cdef object chunks              # a deque of bytes not yet taken by the handler
    cdef readonly Py_ssize_t limit  # the route's body limit (413 past it)
    cdef readonly Py_ssize_t total
    cdef Py_ssize_t buffered
    cdef bint done
    cdef object error               # why it ended early, or None
    cdef public object waiter       # callable() to wake the handler waiting for a chunk
    cdef int push(self, bytes chunk) except -1
    cdef void finish(self, object error)
    cdef inline bint full(self) noexcept:
        return self.buffered >= BODY_IN_HIGH_WATER


cdef class Feed:
    cdef Endpoint conn
    cdef public object on_drain     # callable() once the output has room again, or None
    cdef public object on_cancel    # callable() when the client goes first, or None
    cdef void drained(self)
