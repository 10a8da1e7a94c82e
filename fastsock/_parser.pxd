# The sans-IO request parser: RequestParser, the state machine a connection feeds.

# Its results, refusals and states are declared with the head (_head.pxd), and cimported from
# here as well: a connection cimports all it needs of the parser from _parser.
from fastsock._head cimport *
from fastsock._message cimport Request


cdef class RequestParser(HeadParser):
    # the head's fields and methods are HeadParser's; the body's are here
    cdef Py_ssize_t max_chunk_ext
    cdef char* body_buf
    cdef Py_ssize_t body_len
    cdef Py_ssize_t body_cap
    cdef Py_ssize_t trailer_bytes
    cdef object _pybuf              # feed()'s own buffer (tests); a connection keeps its own

    cdef void _reset(self) noexcept
    cdef bytes take_body(self)
    cdef int _grow_body(self, Py_ssize_t extra) except -1
    cdef int _append_body(self, const char* p, Py_ssize_t n) except -1
    cdef int _body_done(self) except -1
    cdef int _parse_body(self, const char* buf, Py_ssize_t n, Py_ssize_t* pos) except -1
    cdef int _chunk_size_line(self, const char* s, Py_ssize_t n) noexcept
    cdef int _chunk_ext(self, const char* s, Py_ssize_t n) noexcept
    cdef int parse(self, const char* buf, Py_ssize_t n, Py_ssize_t* consumed) except -1
    cdef Request take_request(self)
    cdef inline bint in_body(self) noexcept:
        return S_BODY_CL <= self.state <= S_TRAILERS

    cdef inline bint head_announced(self) noexcept:
        return self.state == S_HEAD_DONE    # parse on, even with no byte yet
