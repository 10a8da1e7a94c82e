# A connection's output buffer and the pool of buffers its memory (and the read buffer's) comes
# from. No HTTP: the writer (_writer.pxd) appends responses to it.

cdef enum:
    BUFFER_SIZE = 16384         # a connection's input or output buffer, from the pool
    POOL_MAX = 64               # buffers the pool keeps for reuse

cdef char* take_buffer() noexcept
cdef void give_buffer(char* p, Py_ssize_t cap) noexcept


cdef class OutBuffer:
    cdef char* data
    cdef Py_ssize_t start       # first byte not yet sent
    cdef Py_ssize_t end         # one past the last byte written
    cdef Py_ssize_t cap
    cdef unsigned long long total   # bytes ever written, for the access log and metrics
    # after the buffered bytes: a large body sent from the object that holds it, not copied
    cdef object tail
    cdef const char* tail_p
    cdef Py_ssize_t tail_n
    cdef int write_tail(self, object owner, const char* p, Py_ssize_t n) except -1
    cdef int _flatten(self) except -1
    cdef int write(self, const char* src, Py_ssize_t n) except -1
    cdef int write_bytes(self, bytes b) except -1
    cdef void consume(self, Py_ssize_t n) noexcept
    cdef void release(self) noexcept
    cdef inline Py_ssize_t pending(self) noexcept:
        return self.end - self.start + self.tail_n
    # A mark counts bytes ever written, not a place in the buffer: a slide or a flatten moves
    # bytes, never the count, so rollback(mark) drops exactly what was written since.
    cdef inline unsigned long long mark(self) noexcept:
        return self.total
    cdef int rollback(self, unsigned long long mark) except -1
