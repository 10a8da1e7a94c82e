# One connection's TLS: OpenSSL on its socket, driven by the loop (ConnIO) — the handshake, then
# recv_into/send in place of recv/send. The listener's settings are _tlsctx's.

from fastsock._openssl cimport SSL
from fastsock._shared cimport Slot
from fastsock._tlsctx cimport TLSContext

cdef enum:
    HS_DONE = 0             # established: requests from now on
    HS_WANT = 1             # waiting for the socket (`wants`: EPOLLIN or EPOLLOUT)
    HS_PLAIN_HTTP = 2       # a cleartext HTTP request came: answered 400 in clear
    HS_FAILED = 3           # refused or broken: close (counted and logged)

cdef enum:                  # indexes of _tls.FAILURES, the metric's reason label
    F_TIMEOUT = 0
    F_PLAIN_HTTP = 1
    F_NOT_TLS = 2
    F_PROTOCOL = 3
    F_CLIENT_CERT = 4
    F_CLOSED = 5
    F_TOO_MANY = 6


cdef class TLSInfo:
    cdef readonly str version       # "TLSv1.2", "TLSv1.3"
    cdef readonly str cipher        # OpenSSL's name of the cipher
    cdef readonly int cipher_suite  # its IANA number
    cdef readonly str client_cert   # the verified client certificate (PEM), or None
    cdef readonly str client_subject    # ... its subject (RFC 4514), or None


cdef class TLSSession:
    cdef SSL* ssl
    cdef int fd
    cdef unsigned int wants         # what OpenSSL waits for after HS_WANT or EAGAIN
    cdef int broken                 # an error seen after data was returned: the next call's
    cdef bint read_wants_write      # a read waits for room to send (a TLS 1.3 KeyUpdate's
                                    # answer): the loop reads again when the socket is writable
    cdef bint peeked                # the first byte was looked at (TLS, not cleartext)
    cdef TLSContext context         # kept until the handshake ends (its SNI table is used)
    cdef TLSInfo _info

    cdef int handshake(self, Slot* slot, double now) except -1
    cdef int failed(self, Slot* slot, int reason, double now, str why) except -1
    cdef void fail(self, Slot* slot, int reason, double now, str why) noexcept
    cdef void established(self, Slot* slot) noexcept
    cdef ssize_t recv_into(self, char* p, Py_ssize_t room) noexcept
    cdef ssize_t send(self, const char* p, Py_ssize_t n) noexcept
    cdef ssize_t _io_error(self, int err) noexcept
    cdef void close_notify(self) noexcept
    cdef TLSInfo info(self)
    cdef bint pending(self) noexcept


cdef TLSSession new_session(TLSContext context, int fd)
