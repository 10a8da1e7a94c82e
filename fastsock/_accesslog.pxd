# The access log: a line per answered request, formatted in C into one buffer, written to stdout
# in batches of whole lines.

from fastsock._message cimport Request

cdef enum:
    PIPE_BUF = 4096             # a write of at most this many bytes to a pipe is never split
    FLUSH_AT = 32768            # bytes of lines that are written before the loop's tick
    STAMP_ROOM = 32


cdef class AccessLog:
    cdef public int fd
    cdef readonly bint json         # else text
    cdef char* buf                  # lines not written yet
    cdef Py_ssize_t n, cap
    cdef long long second           # the second the cached stamp is of
    cdef char stamp[STAMP_ROOM]     # "YYYY-MM-DDTHH:MM:SS." of that second
    cdef Py_ssize_t stamp_len

    cdef double wall_offset         # time.time() - the monotonic clock, as of the last tick

    cdef int add(self, Request req, int status, long long nbytes, double seconds,
                 double end) except -1
    cdef int _format(self, Request req, int status, long long nbytes, double seconds,
                     double now) except -1
    cdef int _reserve(self, Py_ssize_t more) except -1
    cdef void _stamp(self, double now) noexcept
    cpdef flush(self)


cdef double wall_clock() noexcept nogil
cdef int run_hook(Request req, int status, long long nbytes, double seconds,
                  double end) except -1
