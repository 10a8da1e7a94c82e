# dispatch.py is compiled as it is; this gives the request-id layer C attributes, and its
# dispatch a typed Request (its fields read as a struct's, not looked up by name).
from fastsock._requestids cimport RequestIds
from fastsock._message cimport Request

cdef class _WithIds:
    cdef object inner, access_log
    cdef bint log_health
    cdef RequestIds ids
    cdef int first_app_route, route_none
    cpdef object dispatch(self, Request req)
