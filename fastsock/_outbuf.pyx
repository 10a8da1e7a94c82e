# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""A connection's output buffer: the bytes waiting to be sent, and the pool its memory comes from.

No HTTP here: the writer (_writer) appends responses to it, the connection sends from it. Marks
count bytes ever written, so a rollback drops exactly what was written since, wherever it moved.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memmove

# Buffers of BUFFER_SIZE for connections' input and output, taken when data arrives and given
# back when a connection goes idle or closes: an idle keep-alive connection holds none (as in
# nginx), and a busy one takes from here rather than from malloc. At most POOL_MAX are kept.
# Shared by every thread of the worker (a buffer can be given back by a dealloc anywhere):
# safe because take_buffer and give_buffer run no Python code, so the GIL makes each whole.
cdef char* _pool[POOL_MAX]
cdef int _pooled = 0


cdef char* take_buffer() noexcept:
    global _pooled
    if _pooled:
        _pooled -= 1
        return _pool[_pooled]
    return <char*>malloc(BUFFER_SIZE)


cdef void give_buffer(char* p, Py_ssize_t cap) noexcept:
    """Back to the pool; a grown buffer (after a large response or head) is freed: shrunk."""
    global _pooled
    if p == NULL:
        return
    if cap == BUFFER_SIZE and _pooled < POOL_MAX:
        _pool[_pooled] = p
        _pooled += 1
    else:
        free(p)


def pooled_buffers():
    """How many buffers the pool holds now (for tests)."""
    return _pooled


cdef class OutBuffer:
    """A growable byte buffer of response data waiting to be sent. Its memory is taken at the
    first write and given back by release() once everything is sent."""

    def __dealloc__(self):
        give_buffer(self.data, self.cap)

    cdef int write(self, const char* src, Py_ssize_t n) except -1:
        cdef Py_ssize_t need, cap
        cdef char* p
        if n == 0:                          # no buffer may exist yet: memcpy to NULL is UB
            return 0
        if self.tail_n:                     # order first: the tail goes in, then what follows
            self._flatten()
        if self.end + n > self.cap:
            if self.data == NULL:
                self.data = take_buffer()
                if self.data == NULL:
                    raise MemoryError()
                self.cap = BUFFER_SIZE
            if self.start > 0:                  # slide unsent bytes to the front first
                memmove(self.data, self.data + self.start, self.end - self.start)
                self.end -= self.start
                self.start = 0
            need = self.end + n
            if need > self.cap:
                cap = max(need, self.cap * 2)
                p = <char*>realloc(self.data, cap)
                if p == NULL:
                    raise MemoryError()
                self.data = p
                self.cap = cap
        memcpy(self.data + self.end, src, n)
        self.end += n
        self.total += n
        return 0

    cdef int write_tail(self, object owner, const char* p, Py_ssize_t n) except -1:
        """n bytes at p, which owner keeps alive, go out after what is buffered, by reference."""
        if self.tail_n:
            self._flatten()
        self.tail, self.tail_p, self.tail_n = owner, p, n
        self.total += n
        return 0

    cdef int _flatten(self) except -1:
        cdef const char* p = self.tail_p
        cdef Py_ssize_t n = self.tail_n
        _owner = self.tail                  # keeps the bytes at p alive while they are copied
        self.tail, self.tail_p, self.tail_n = None, NULL, 0
        self.write(p, n)
        self.total -= n                     # counted once, by write_tail
        return 0

    cdef int write_bytes(self, bytes b) except -1:
        return self.write(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

    cdef void release(self) noexcept:
        """Nothing waits to be sent: give the memory back (a grown buffer shrinks to none)."""
        if self.data != NULL and self.start == self.end:
            give_buffer(self.data, self.cap)
            self.data = NULL
            self.cap = self.start = self.end = 0

    cdef int rollback(self, unsigned long long mark) except -1:
        """Drop the bytes written since mark(), wherever they now sit (the end of the buffer,
        the tail). None of them may be sent yet: its callers (write_response) never send
        between mark and rollback, so this is a bug, refused rather than half undone."""
        cdef Py_ssize_t n = <Py_ssize_t>(self.total - mark)
        if mark > self.total or n > self.pending():
            raise AssertionError("rollback of bytes already sent")
        if self.tail_n:                     # written last: dropped first
            if n < self.tail_n:
                self.tail_n -= n
                n = 0
            else:
                n -= self.tail_n
                self.tail, self.tail_p, self.tail_n = None, NULL, 0
        self.end -= n
        self.total = mark
        return 0

    cdef void consume(self, Py_ssize_t n) noexcept:
        cdef Py_ssize_t buffered = self.end - self.start
        if n < buffered:
            self.start += n
            return
        self.start = self.end = 0
        if self.tail_n:
            self.tail_p += n - buffered
            self.tail_n -= n - buffered
            if self.tail_n == 0:
                self.tail, self.tail_p = None, NULL

    def getvalue(self):
        head = PyBytes_FromStringAndSize(self.data + self.start, self.end - self.start)
        return head + PyBytes_FromStringAndSize(self.tail_p, self.tail_n) if self.tail_n else head

    # ---- for tests only: tests/test_writer.py drives the buffer against a model of it
    def _test_write(self, bytes b):
        self.write_bytes(b)

    def _test_write_tail(self, bytes b):
        self.write_tail(b, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

    def _test_consume(self, Py_ssize_t n):
        """As a send of n bytes (at most pending()) would."""
        assert 0 <= n <= self.pending()
        self.consume(n)

    def _test_flatten(self):
        if self.tail_n:
            self._flatten()

    def _test_release(self):
        self.release()

    def _test_mark(self):
        return self.mark()

    def _test_rollback(self, unsigned long long mark):
        self.rollback(mark)

    def _test_state(self):
        """(pending bytes, bytes ever written)"""
        return self.pending(), self.total
