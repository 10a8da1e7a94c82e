# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""One connection's TLS: OpenSSL on its socket, driven by the loop (attributes in _tls.pxd).
handshake() takes it to established; recv_into() and send() then read and write like recv()
and send() — n, 0 at the end, or -1 with errno EAGAIN (`wants` says for what) or another
error. The loop watches the socket for what OpenSSL waits for; the connection never sees TLS.
"""
from libc.errno cimport errno, EAGAIN, ECONNRESET, EPIPE, EPROTO
from libc.string cimport strcmp

from fastsock._openssl cimport *
from fastsock._shared cimport Slot, N_TLS_CIPHERS
from fastsock._sys cimport recv, MSG_PEEK, EPOLLIN, EPOLLOUT
from fastsock._tlsctx cimport TLSContext, openssl_reason, x509_pem, x509_subject

import logging

error_log = logging.getLogger("fastsock.error")

# the ciphers counted by name (Mozilla's intermediate set); any other counts as "other"
CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
           "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
           "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
           "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
           "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
           "other")
# why a handshake failed: fastsock_tls_handshake_failures_total{reason}
FAILURES = ("timeout", "plain_http", "not_tls", "protocol", "client_certificate", "closed",
            "too_many")
VERSIONS = ("TLSv1.2", "TLSv1.3")
_CIPHER_BYTES = tuple(name.encode("ascii") for name in CIPHERS if name != "other")   # pointed into
cdef const char* _cipher_names[N_TLS_CIPHERS]
cdef int _n_ciphers = len(_CIPHER_BYTES)
for _i in range(_n_ciphers):
    _cipher_names[_i] = <bytes>_CIPHER_BYTES[_i]

cdef extern from *:
    """
    /* OpenSSL's reasons for a client certificate refused (ssl/sslerr.h) */
    #include <openssl/sslerr.h>
    #include <errno.h>
    static inline void fs_set_errno(int e) { errno = e; }
    #define FS_CLIENT_CERT_REASON(r) ((r) == SSL_R_CERTIFICATE_VERIFY_FAILED || \\
        (r) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE || \\
        (r) == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED)
    """
    bint FS_CLIENT_CERT_REASON(int r)
    void set_errno "fs_set_errno"(int e)

cdef double LOG_EVERY = 1.0         # seconds between failure lines (scanners fail thousands)
cdef double _next_log = 0.0
cdef long long _unlogged = 0


cdef int _cipher_index(const SSL* ssl) noexcept:
    cdef const char* name = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl))
    cdef int i
    if name != NULL:
        for i in range(_n_ciphers):
            if strcmp(name, _cipher_names[i]) == 0:
                return i
    return _n_ciphers


cdef TLSSession new_session(TLSContext context, int fd):
    """fd's TLS, before its handshake; None when OpenSSL has no memory for it."""
    cdef TLSSession s = TLSSession.__new__(TLSSession)
    s.ssl = context.new_ssl(fd)
    if s.ssl == NULL:
        return None
    s.fd = fd
    s.context = context
    return s


cdef class TLSInfo:
    """What a request's handler can know of its connection's TLS (req.tls)."""

    def asgi(self):
        """The ASGI TLS extension's dict (scope["extensions"]["tls"]): a new one each time
        (an app may change its scope)."""
        return {"server_cert": None,
                "client_cert_chain": [self.client_cert] if self.client_cert else [],
                "client_cert_name": self.client_subject,
                "client_cert_error": None,
                "tls_version": 0x0304 if self.version == "TLSv1.3" else 0x0303,
                "cipher_suite": self.cipher_suite}

    def wsgi(self):
        """The CGI variables Apache's mod_ssl and nginx's uwsgi/fastcgi params set."""
        cgi = {"HTTPS": "on", "SSL_PROTOCOL": self.version, "SSL_CIPHER": self.cipher,
               "SSL_CLIENT_VERIFY": "SUCCESS" if self.client_cert else "NONE"}
        if self.client_cert:
            cgi["SSL_CLIENT_S_DN"] = self.client_subject
            cgi["SSL_CLIENT_CERT"] = self.client_cert
        return cgi

    def __repr__(self):
        return (f"TLSInfo(version={self.version!r}, cipher={self.cipher!r}, "
                f"client_subject={self.client_subject!r})")


cdef class TLSSession:

    def __dealloc__(self):
        if self.ssl != NULL:
            SSL_free(self.ssl)

    cdef int handshake(self, Slot* slot, double now) except -1:
        """One step of the handshake: HS_DONE, HS_WANT (`wants` says for what), HS_PLAIN_HTTP
        (a cleartext request came: answer it 400 in clear), or HS_FAILED (counted, logged)."""
        cdef unsigned char first
        cdef ssize_t n
        cdef int r, err
        if not self.peeked:
            # a TLS record starts with 22 (handshake); a letter is an HTTP method, in clear
            n = recv(self.fd, &first, 1, MSG_PEEK)
            if n < 0 and errno == EAGAIN:
                self.wants = EPOLLIN
                return HS_WANT
            if n <= 0:
                return self.failed(slot, F_CLOSED, now, "closed before its ClientHello")
            self.peeked = True
            if first != 22:
                if 65 <= first <= 90:
                    self.fail(slot, F_PLAIN_HTTP, now, "a plain HTTP request on the TLS port")
                    return HS_PLAIN_HTTP
                return self.failed(slot, F_NOT_TLS, now, "not a TLS record")
        ERR_clear_error()
        r = SSL_do_handshake(self.ssl)
        if r == 1:
            self.established(slot)
            return HS_DONE
        err = SSL_get_error(self.ssl, r)
        if err == SSL_ERROR_WANT_READ:
            self.wants = EPOLLIN
            return HS_WANT
        if err == SSL_ERROR_WANT_WRITE:
            self.wants = EPOLLOUT
            return HS_WANT
        if err == SSL_ERROR_SSL:
            reason = ERR_GET_REASON(ERR_peek_last_error())
            return self.failed(slot, F_CLIENT_CERT if FS_CLIENT_CERT_REASON(reason)
                               else F_PROTOCOL, now, openssl_reason())
        return self.failed(slot, F_CLOSED, now, "the client closed or reset it")

    cdef int failed(self, Slot* slot, int reason, double now, str why) except -1:
        self.fail(slot, reason, now, why)
        return HS_FAILED

    cdef void fail(self, Slot* slot, int reason, double now, str why) noexcept:
        """Counted always; logged at most once a second per worker, with how many more."""
        global _next_log, _unlogged
        slot.tls_failures[reason] += 1
        ERR_clear_error()
        if now < _next_log:
            _unlogged += 1
            return
        _next_log = now + LOG_EVERY
        try:
            more = f" (and {_unlogged} more since the last line)" if _unlogged else ""
            error_log.info("TLS handshake failed: %s: %s%s", FAILURES[reason], why, more)
        except Exception:
            pass
        _unlogged = 0

    cdef void established(self, Slot* slot) noexcept:
        cdef int version = 1 if SSL_version(self.ssl) == TLS1_3_VERSION else 0
        slot.tls_handshakes[version][_cipher_index(self.ssl)][SSL_session_reused(self.ssl)] += 1
        if BIO_get_ktls_send(SSL_get_wbio(self.ssl)):
            slot.tls_ktls[0] += 1
        if BIO_get_ktls_recv(SSL_get_rbio(self.ssl)):
            slot.tls_ktls[1] += 1
        self.context = None     # its SNI table is read during the handshake only

    cdef ssize_t recv_into(self, char* p, Py_ssize_t room) noexcept:
        """Fill p with plaintext until room is full or the socket is drained (so a short
        read means drained, as recv's does)."""
        cdef size_t got
        cdef Py_ssize_t total = 0
        cdef int err
        self.wants = 0
        self.read_wants_write = False
        while total < room:
            if SSL_read_ex(self.ssl, p + total, room - total, &got) == 1:
                total += got
                continue
            err = SSL_get_error(self.ssl, 0)
            self.read_wants_write = err == SSL_ERROR_WANT_WRITE
            if total:
                if err != SSL_ERROR_WANT_READ and err != SSL_ERROR_WANT_WRITE:
                    self.broken = err       # said on the next call, after this data
                return total
            return self._io_error(err)
        return total

    cdef ssize_t send(self, const char* p, Py_ssize_t n) noexcept:
        """Write plaintext until all is taken or the socket is full (partial writes give one
        record at a time: a short count means full, as send's does), or -1 and errno."""
        cdef size_t put
        cdef Py_ssize_t total = 0
        cdef int err
        self.wants = 0
        while total < n:
            if SSL_write_ex(self.ssl, p + total, n - total, &put) != 1:
                err = SSL_get_error(self.ssl, 0)
                if total and (err == SSL_ERROR_WANT_WRITE or err == SSL_ERROR_WANT_READ):
                    ERR_clear_error()
                    return total
                # broken (a reset): said now, whatever went before, or the loop would wait for
                # an edge a dead socket never gives; after the peer's EOF OpenSSL says
                # "close_notify", which for a write is a broken pipe, not 0 bytes taken
                if self._io_error(err) == 0:
                    set_errno(EPIPE)
                return -1
            total += put
        return total

    cdef ssize_t _io_error(self, int err) noexcept:
        if self.broken:
            err, self.broken = self.broken, 0
        if err == SSL_ERROR_WANT_READ or err == SSL_ERROR_WANT_WRITE:
            self.wants = EPOLLIN if err == SSL_ERROR_WANT_READ else EPOLLOUT
            set_errno(EAGAIN)
            return -1
        ERR_clear_error()
        if err == SSL_ERROR_ZERO_RETURN:
            return 0                        # close_notify (or the end, unexpected EOF ignored)
        if err == SSL_ERROR_SSL:
            set_errno(EPROTO)
        elif errno == 0 or errno == EAGAIN:
            set_errno(ECONNRESET)
        return -1

    cdef bint pending(self) noexcept:
        """Plaintext OpenSSL holds that no socket event will announce."""
        return SSL_has_pending(self.ssl) != 0

    cdef void close_notify(self) noexcept:
        """Say goodbye in TLS (best effort, never waits): nothing is read after it."""
        if SSL_is_init_finished(self.ssl):
            SSL_shutdown(self.ssl)
        ERR_clear_error()

    cdef TLSInfo info(self):
        """req.tls: made once per connection, on its first request."""
        cdef TLSInfo i
        cdef X509* cert
        cdef const SSL_CIPHER* cipher
        if self._info is None:
            i = TLSInfo.__new__(TLSInfo)
            i.version = SSL_get_version(self.ssl).decode("ascii")
            cipher = SSL_get_current_cipher(self.ssl)
            i.cipher = SSL_CIPHER_get_name(cipher).decode("ascii")
            i.cipher_suite = SSL_CIPHER_get_protocol_id(cipher)
            cert = SSL_get0_peer_certificate(self.ssl)
            if cert != NULL and SSL_get_verify_result(self.ssl) == X509_V_OK:
                i.client_subject = x509_subject(cert)
                i.client_cert = x509_pem(cert)
            self._info = i
        return self._info
