# accesslog.py is compiled as it is; this gives AccessLog C attributes, and log() a typed
# Request and C numbers (no attribute looked up by name, no arithmetic on Python ints).
cimport cython
from fastsock._message cimport Request

cdef class AccessLog:
    cdef public int fd
    cdef bint json
    cdef list lines
    cdef Py_ssize_t size
    cdef long long _second
    cdef str _stamp

    @cython.locals(now=double, second="long long", us="long long")
    cpdef log(self, Request req, int status, long long nbytes, double seconds)
