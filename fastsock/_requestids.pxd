# Request ids: each request's (the client's X-Request-ID, else a new one), and the header line
# that echoes it, made for the writer's tail (no header list to check and encode per request).

from fastsock._message cimport Request, Dispatcher

cdef list ECHO                      # req.response_headers of a request whose id is echoed

cdef enum:
    PREFIX_N = 13                   # 12 hex digits and '-'


cdef class RequestIds:
    cdef readonly str prefix        # random per worker: ids of two workers never collide
    cdef char prefix_c[PREFIX_N]    # the same, copied into each id given
    cdef unsigned long long issued

    cpdef assign(self, Request req)


cdef class WithIds(Dispatcher):
    cdef object inner               # the dispatch callable it wraps
    cdef Dispatcher c_inner         # the same when it is a Dispatcher (called from C), else None
    cdef object access_log          # callable(req, status, nbytes, seconds): on_complete
    cdef bint log_health
    cdef RequestIds ids

    cpdef object dispatch(self, Request req)


cdef list echo_id(Request req, const char** id_p, Py_ssize_t* id_n)
