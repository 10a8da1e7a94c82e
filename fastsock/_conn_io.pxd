# The connections' I/O: read into them, send what they produce, linger, close. The Loop extends
# it (accepting, timers, draining); the Bridge under it hands back what handlers answered.

from fastsock._bridge cimport Bridge
from fastsock._conn cimport Connection
from fastsock._context cimport Context
from fastsock._sys cimport sockaddr_storage
from fastsock._tlsctx cimport TLSContext
from fastsock._writer cimport OutBuffer

cdef enum:
    SCRATCH = 4096              # what a lingering connection's input is read into and dropped


cdef class ConnIO(Bridge):
    cdef int epfd
    cdef Context ctx
    cdef dict conns                 # fd -> Connection, for timers and draining
    cdef list closed                # closed during this batch of events: kept alive until
                                    # its end, as later events of the batch may name them
    cdef bint running
    cdef bint draining              # the last connection's close ends the loop
    cdef char scratch[SCRATCH]

    cdef int _adopt(self, int fd, sockaddr_storage* addr, object dispatch,
                    TLSContext tls) except -1
    cdef int _on_readable(self, Connection c, bint hangup) except -1
    cdef int _tls_start(self, Connection c) except -1
    cdef int _peek_proxy(self, Connection c) except -1
    cdef int _want(self, Connection c, unsigned int want) except -1
    cdef void _tls_later(self, Connection c)
    cdef int _rearm(self, Connection c) except -1
    cdef int _discard(self, Connection c) except -1
    cdef int _drive(self, Connection c) except -1
    cdef ssize_t _send_with_tail(self, Connection c) noexcept
    cdef void _close(self, Connection c, int reason)
    cdef void _close_all(self)
