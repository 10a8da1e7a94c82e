# A response body that streams out: pulled from the app's iterator, or pushed in through a Feed
# (asyncio), framed and written into the connection's OutBuffer. Sans-IO: it never touches a
# socket; each step says what it came to, and the connection changes state by it.

from fastsock._writer cimport OutBuffer

cdef enum:
    OUT_GOING = 0       # more to come
    OUT_QUIET = 1       # only empty chunks for a while: pull again at the loop's next turn
    OUT_DONE = 2        # ended whole (a chunked body's terminator is written)
    OUT_BROKEN = 3      # broke its Content-Length: the connection is cut (CLOSE_LENGTH)
    OUT_CUT = 4         # failed or yielded garbage: the connection is cut (CLOSE_ERROR)


cdef class StreamOut:
    cdef object source              # the app's iterator, or the Feed its chunks come through
    cdef readonly bint pushed       # a Feed: chunks are pushed in, never pulled
    cdef readonly bint chunked      # framed as chunks (HTTP/1.1), else by length or close
    cdef readonly Py_ssize_t left   # bytes its Content-Length still owes, or -1 (none)

    cdef int pull(self, OutBuffer out) except -1
    cdef int chunk(self, OutBuffer out, object chunk) except -1
    cdef int end(self, OutBuffer out) except -1
    cdef int cut(self, OutBuffer out, str why) except -1
    cdef int _broken(self, str why) except -1
    cdef void close(self)


cdef StreamOut stream_out(object source, bint pushed, Py_ssize_t owed, bint chunked)
