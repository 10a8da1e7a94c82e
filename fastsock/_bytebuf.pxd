# cython: cdivision=True
# A growable byte buffer in C memory: a WebSocket message as its frames arrive (unmasked,
# inflated). Declarations and inline code only: no module of its own.

from cpython.mem cimport PyMem_Free, PyMem_Realloc


cdef struct ByteBuf:
    char* data
    Py_ssize_t len
    Py_ssize_t cap


cdef inline int bytebuf_reserve(ByteBuf* b, Py_ssize_t more) except -1:
    """Room for `more` bytes after b.len (doubling, so appends stay amortised O(1))."""
    cdef Py_ssize_t need = b.len + more
    cdef Py_ssize_t cap = b.cap if b.cap > 0 else 256
    cdef char* p
    if need <= b.cap:
        return 0
    while cap < need:
        cap *= 2
    p = <char*>PyMem_Realloc(b.data, cap)
    if p == NULL:
        raise MemoryError()
    b.data = p
    b.cap = cap
    return 0


cdef inline void bytebuf_free(ByteBuf* b) noexcept:
    PyMem_Free(b.data)
    b.data = NULL
    b.len = 0
    b.cap = 0
