# One connection's exchange: requests in, responses out. Its life (buffers, states, deadlines,
# the loop's questions) is Lifecycle's (_lifecycle.pxd); what it shares with the other
# connections of its loop is the Context (_context.pxd).

from fastsock._context cimport Context, Limits
from fastsock._lifecycle cimport Lifecycle, ConnState
from fastsock._message cimport Request, Dispatcher
from fastsock._stream_out cimport StreamOut


cdef class Connection(Lifecycle):
    cdef object dispatch            # callable(req) -> result (its listener's)
    cdef Dispatcher c_dispatch      # the same when it is a Dispatcher (called from C), else None
    # the request whose body streams out: counted and logged at its last byte, not its head
    cdef Request streamed
    cdef int streamed_status
    cdef unsigned long long streamed_mark   # out.total before its head
    cdef double streamed_t0

    cdef void setup(self, Context ctx, object dispatch, int fd)
    cdef int produce(self) except -1
    cdef int _respond(self, Request req) except -1
    cdef int _on_head(self) except -1
    cdef int _stream_body_in(self) except -1
    cdef int resume(self, object result) except -1
    cdef int _write_result(self, Request req, object result, double t0) except -1
    cdef int _stream_complete(self, Py_ssize_t unsent) except -1
    cdef void release(self)
    cdef void pushed(self)
    cdef bint has_room(self) noexcept
    cdef void output_drained(self)
    cdef void _start_stream(self, StreamOut s, bint keep_alive) noexcept
    cdef int _streamed(self, int step) except -1
    cdef int _pull(self) except -1
    cdef int stream_chunk(self, object chunk) except -1
    cdef int end_stream(self) except -1
    cdef int cut_stream(self, str why) except -1
