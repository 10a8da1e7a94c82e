# A listening socket of one worker's loop: what it dispatches to, and what its accept queue
# holds (_listener.pyx).

from fastsock._tlsctx cimport TLSContext


cdef class Listener:
    cdef int fd
    cdef int tag                # its epoll tag: its index in Loop.listeners
    cdef object sock
    cdef object dispatch
    cdef TLSContext tls         # its TLS settings, or None (cleartext)
    cdef bint watched
    cdef unsigned long long cookie  # the socket's SO_COOKIE (0: none): one per socket, the
                                    # same in every worker that shares it
    cdef bint accept_queue(self, long long* length, long long* limit) noexcept


cdef Listener open_listener(object sock, int tag, object dispatch, TLSContext tls)
