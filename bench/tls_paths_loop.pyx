# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""bench/tls_paths.py's server: one epoll loop (edge-triggered, as fastsock/_conn_io.pyx) that
answers every request head with a fixed hello response, over one of four paths:

    plain   recv / send, no TLS (the cleartext baseline)
    pyssl   Python's ssl: an SSLObject between two MemoryBIOs, driven from here per read/write
    ossl    OpenSSL called directly: SSL_set_fd on the socket, SSL_accept / SSL_read_ex /
            SSL_write_ex non-blocking, SSL_ERROR_WANT_READ/WRITE mapped onto epoll interest
    ktls    ossl with SSL_OP_ENABLE_KTLS: the kernel takes the record layer when it can
            (counted after each handshake with BIO_get_ktls_send/recv; else ossl's path)

Built by bench/tls_paths.py into a temp dir; not part of the fastsock package.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc

import ssl as pyssl

cdef extern from "Python.h":
    char* PyByteArray_AS_STRING(object)

cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EAGAIN
        EINTR

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
    struct epoll_event:
        unsigned int events
        epoll_data_t data
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLRDHUP
        EPOLLET
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        unsigned short sa_family
    enum:
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        MSG_NOSIGNAL
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    int accept4(int fd, sockaddr* addr, socklen_t* addrlen, int flags)
    int setsockopt(int fd, int level, int name, const void* val, socklen_t n)

cdef extern from "<netinet/in.h>" nogil:
    enum:
        IPPROTO_TCP

cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_NODELAY

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "openssl/ssl.h" nogil:
    ctypedef struct SSL_CTX
    ctypedef struct SSL
    ctypedef struct SSL_METHOD
    ctypedef struct BIO
    enum:
        SSL_ERROR_WANT_READ
        SSL_ERROR_WANT_WRITE
        SSL_ERROR_ZERO_RETURN
        SSL_FILETYPE_PEM
        TLS1_3_VERSION
    long SSL_MODE_RELEASE_BUFFERS
    long SSL_MODE_ENABLE_PARTIAL_WRITE
    long SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
    uint64_t SSL_OP_ENABLE_KTLS
    uint64_t SSL_OP_NO_RENEGOTIATION
    const SSL_METHOD* TLS_server_method()
    SSL_CTX* SSL_CTX_new(const SSL_METHOD* method)
    void SSL_CTX_free(SSL_CTX* ctx)
    int SSL_CTX_use_certificate_chain_file(SSL_CTX* ctx, const char* path)
    int SSL_CTX_use_PrivateKey_file(SSL_CTX* ctx, const char* path, int kind)
    int SSL_CTX_check_private_key(const SSL_CTX* ctx)
    long SSL_CTX_set_min_proto_version(SSL_CTX* ctx, int version)
    long SSL_CTX_set_mode(SSL_CTX* ctx, long mode)
    uint64_t SSL_CTX_set_options(SSL_CTX* ctx, uint64_t options)
    void SSL_CTX_set_read_ahead(SSL_CTX* ctx, int yes)
    SSL* SSL_new(SSL_CTX* ctx)
    void SSL_free(SSL* ssl)
    int SSL_set_fd(SSL* ssl, int fd)
    int SSL_accept(SSL* ssl)
    int SSL_read_ex(SSL* ssl, void* buf, size_t n, size_t* got)
    int SSL_write_ex(SSL* ssl, const void* buf, size_t n, size_t* put)
    int SSL_get_error(const SSL* ssl, int ret)
    int SSL_shutdown(SSL* ssl)
    BIO* SSL_get_rbio(const SSL* ssl)
    BIO* SSL_get_wbio(const SSL* ssl)
    const char* SSL_get_version(const SSL* ssl)
    const char* SSL_get_cipher_name(const SSL* ssl)

cdef extern from "openssl/bio.h" nogil:
    bint BIO_get_ktls_send(BIO* b)
    bint BIO_get_ktls_recv(BIO* b)

cdef extern from "openssl/err.h" nogil:
    void ERR_clear_error()
    unsigned long ERR_get_error()
    void ERR_error_string_n(unsigned long e, char* buf, size_t n)

cdef enum:
    PLAIN = 0
    PYSSL = 1
    OSSL = 2
    KTLS = 3
    BUF = 65536             # the loop's one read buffer (plaintext, or ciphertext for pyssl)
    MAX_BATCH = 64          # responses written in one call (more pipelined: several calls)
    EVENTS = 256

PATHS = {"plain": PLAIN, "pyssl": PYSSL, "ossl": OSSL, "ktls": KTLS}
cdef unsigned int EDGE = EPOLLET | EPOLLRDHUP


cdef class Conn:
    """One connection: its socket, its TLS state (an SSL*, or an SSLObject and its BIOs), how
    much of a request head's end it has seen, and output that waits for room."""
    cdef int fd
    cdef unsigned int interest
    cdef int match              # bytes of b"\\r\\n\\r\\n" matched at the end of the last read
    cdef bint established
    cdef SSL* ssl
    cdef object sslobj, incoming, outgoing
    cdef bytes waiting          # pyssl/plain: ciphertext for the socket; ossl: plaintext
    cdef Py_ssize_t waiting_at

    def __dealloc__(self):
        if self.ssl != NULL:
            SSL_free(self.ssl)


cdef class Loop:
    cdef int epfd, lfd, path
    cdef SSL_CTX* ctx
    cdef object pyctx
    cdef dict conns
    cdef char* buf
    cdef bytearray pybuf        # pyssl: plaintext out of SSLObject.read(n, buffer)
    cdef object pyview          # pyssl: the ciphertext buffer, as recv fills it
    cdef list batches           # the response repeated 1..MAX_BATCH times
    cdef public long long requests, handshakes, failed, ktls_send, ktls_recv
    cdef public str version, cipher, detail

    def __cinit__(self):
        self.epfd = -1
        self.buf = <char*>malloc(BUF)

    def __dealloc__(self):
        if self.ctx != NULL:
            SSL_CTX_free(self.ctx)
        if self.epfd >= 0:
            close(self.epfd)
        free(self.buf)

    def __init__(self, int listen_fd, str path, bytes response, str cert="", str key="",
                 bint read_ahead=True):
        cdef epoll_event ev
        self.path = PATHS[path]
        self.lfd = listen_fd
        self.conns = {}
        self.batches = [response * k for k in range(MAX_BATCH + 1)]
        self.version = self.cipher = self.detail = ""
        if self.path == PYSSL:
            self.pyctx = pyssl.SSLContext(pyssl.PROTOCOL_TLS_SERVER)
            self.pyctx.minimum_version = pyssl.TLSVersion.TLSv1_3
            self.pyctx.load_cert_chain(cert, key)
            self.pybuf = bytearray(BUF)
            self.pyview = memoryview(bytearray(BUF))
        elif self.path in (OSSL, KTLS):
            self._openssl_context(cert.encode(), key.encode(), read_ahead)
        self.epfd = epoll_create1(0)
        ev.events = EPOLLIN             # the listener: level-triggered, accept until EAGAIN
        ev.data.ptr = NULL
        if self.epfd < 0 or epoll_ctl(self.epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0:
            raise OSError(errno, "epoll")

    cdef int _openssl_context(self, bytes cert, bytes key, bint read_ahead) except -1:
        self.ctx = SSL_CTX_new(TLS_server_method())
        if self.ctx == NULL:
            raise MemoryError()
        SSL_CTX_set_min_proto_version(self.ctx, TLS1_3_VERSION)
        # as Python's ssl and nginx do: an idle connection gives its record buffers back
        SSL_CTX_set_mode(self.ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE
                         | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
        SSL_CTX_set_options(self.ctx, SSL_OP_NO_RENEGOTIATION)
        if self.path == KTLS:
            SSL_CTX_set_options(self.ctx, SSL_OP_ENABLE_KTLS)
        if read_ahead:                  # one recv for a record's header and body, not two
            SSL_CTX_set_read_ahead(self.ctx, 1)
        if (SSL_CTX_use_certificate_chain_file(self.ctx, cert) != 1
                or SSL_CTX_use_PrivateKey_file(self.ctx, key, SSL_FILETYPE_PEM) != 1
                or SSL_CTX_check_private_key(self.ctx) != 1):
            raise ValueError(f"certificate or key refused: {_ssl_error()}")
        return 0

    def run(self):
        """Serve until a signal handler raises (SIGTERM -> SystemExit in bench/tls_paths.py)."""
        cdef epoll_event events[EVENTS]
        cdef int n, i
        cdef Conn c
        while True:
            n = epoll_wait(self.epfd, events, EVENTS, 500)
            if n < 0 and errno != EINTR:
                raise OSError(errno, "epoll_wait")
            PyErr_CheckSignals()
            for i in range(n):
                if events[i].data.ptr == NULL:
                    self._accept()
                    continue
                c = <Conn>events[i].data.ptr
                if c.fd < 0:
                    continue
                if events[i].events & (EPOLLERR | EPOLLHUP):
                    self._close(c)
                    continue
                if events[i].events & EPOLLOUT:
                    self._flush(c)
                if c.fd >= 0 and events[i].events & (EPOLLIN | EPOLLRDHUP):
                    self._on_readable(c)

    cdef int _accept(self) except -1:
        cdef int fd, one = 1
        cdef epoll_event ev
        cdef Conn c
        while True:
            fd = accept4(self.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                return 0
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
            c = Conn.__new__(Conn)
            c.fd = fd
            c.interest = EPOLLIN
            if self.path == PYSSL:
                c.incoming = pyssl.MemoryBIO()
                c.outgoing = pyssl.MemoryBIO()
                c.sslobj = self.pyctx.wrap_bio(c.incoming, c.outgoing, server_side=True)
            elif self.path != PLAIN:
                c.ssl = SSL_new(self.ctx)
                SSL_set_fd(c.ssl, fd)
            else:
                c.established = True
            self.conns[fd] = c
            ev.events = EPOLLIN | EDGE
            ev.data.ptr = <void*>c
            epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev)
            self._on_readable(c)        # the ClientHello may be there already

    cdef int _on_readable(self, Conn c) except -1:
        if self.path == PYSSL:
            return self._read_pyssl(c)
        if self.path == PLAIN:
            return self._read_plain(c)
        return self._read_openssl(c)

    cdef int _heads(self, Conn c, const char* p, Py_ssize_t n) noexcept:
        """Request heads ended in these n bytes (b"\\r\\n\\r\\n", also across reads)."""
        cdef int heads = 0, m = c.match
        cdef Py_ssize_t i
        for i in range(n):
            if p[i] == (10 if m & 1 else 13):     # CR LF CR LF
                m += 1
                if m == 4:
                    heads += 1
                    m = 0
            else:
                m = 1 if p[i] == 13 else 0
        c.match = m
        self.requests += heads
        return heads

    # -- plain -------------------------------------------------------------------------------

    cdef int _read_plain(self, Conn c) except -1:
        cdef ssize_t n
        cdef int heads
        while True:
            n = recv(c.fd, self.buf, BUF, 0)
            if n < 0 and errno == EINTR:
                continue
            if n < 0 and errno == EAGAIN:
                return 0
            if n <= 0:
                self._close(c)
                return 0
            heads = self._heads(c, self.buf, n)
            while heads > 0 and c.fd >= 0:
                self._send_plain(c, self.batches[min(heads, MAX_BATCH)], 0)
                heads -= MAX_BATCH
            if c.fd < 0 or n < BUF:
                return 0

    cdef int _send_plain(self, Conn c, bytes data, Py_ssize_t at) except -1:
        """Send data[at:], or keep what the socket has no room for (EPOLLOUT)."""
        cdef ssize_t n
        cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
        if c.waiting is not None:       # behind what waits already
            c.waiting = c.waiting[c.waiting_at:] + data[at:]
            c.waiting_at = 0
            return 0
        while at < size:
            n = send(c.fd, PyBytes_AS_STRING(data) + at, size - at, MSG_NOSIGNAL)
            if n < 0:
                if errno == EINTR:
                    continue
                if errno == EAGAIN:
                    c.waiting, c.waiting_at = data, at
                    return self._want(c, EPOLLIN | EPOLLOUT)
                self._close(c)
                return 0
            at += n
        return 0

    # -- pyssl: SSLObject + MemoryBIO --------------------------------------------------------

    cdef int _read_pyssl(self, Conn c) except -1:
        cdef ssize_t n
        cdef Py_ssize_t got
        cdef int heads
        cdef object sslobj = c.sslobj, incoming = c.incoming
        cdef char* raw = PyByteArray_AS_STRING(self.pyview.obj)
        while True:
            n = recv(c.fd, raw, BUF, 0)
            if n < 0 and errno == EINTR:
                continue
            if n < 0 and errno == EAGAIN:
                return 0
            if n <= 0:
                self._close(c)
                return 0
            incoming.write(self.pyview[:n])
            if not c.established:
                try:
                    sslobj.do_handshake()
                except pyssl.SSLWantReadError:
                    self._flush_pyssl(c)
                    continue
                except pyssl.SSLError as e:
                    self.failed += 1
                    self.detail = str(e)
                    self._close(c)
                    return 0
                c.established = True
                self.handshakes += 1
                self.version, self.cipher = sslobj.version(), sslobj.cipher()[0]
            while incoming.pending or sslobj.pending():
                try:
                    got = sslobj.read(BUF, self.pybuf)
                except pyssl.SSLWantReadError:
                    break
                except (pyssl.SSLZeroReturnError, pyssl.SSLEOFError):
                    got = 0
                if got == 0:            # close_notify: answer it, then close
                    try:
                        sslobj.unwrap()
                    except pyssl.SSLError:
                        pass
                    self._flush_pyssl(c)
                    self._close(c)
                    return 0
                heads = self._heads(c, PyByteArray_AS_STRING(self.pybuf), got)
                while heads > 0:
                    sslobj.write(self.batches[min(heads, MAX_BATCH)])
                    heads -= MAX_BATCH
            self._flush_pyssl(c)
            if c.fd < 0 or n < BUF:
                return 0

    cdef int _flush_pyssl(self, Conn c) except -1:
        """What the SSLObject wrote into its outgoing BIO, onto the socket."""
        if c.outgoing.pending and c.fd >= 0:
            self._send_plain(c, c.outgoing.read(), 0)
        return 0

    # -- ossl / ktls: SSL* on the socket -----------------------------------------------------

    cdef int _read_openssl(self, Conn c) except -1:
        cdef int r, err, heads
        cdef size_t got
        if not c.established:
            ERR_clear_error()
            r = SSL_accept(c.ssl)
            if r != 1:
                err = SSL_get_error(c.ssl, r)
                if err == SSL_ERROR_WANT_READ:
                    return self._want(c, EPOLLIN)
                if err == SSL_ERROR_WANT_WRITE:
                    return self._want(c, EPOLLIN | EPOLLOUT)
                self.failed += 1
                self.detail = _ssl_error()
                self._close(c)
                return 0
            c.established = True
            self.handshakes += 1
            if BIO_get_ktls_send(SSL_get_wbio(c.ssl)):
                self.ktls_send += 1
            if BIO_get_ktls_recv(SSL_get_rbio(c.ssl)):
                self.ktls_recv += 1
            self.version = SSL_get_version(c.ssl).decode()
            self.cipher = SSL_get_cipher_name(c.ssl).decode()
        while c.fd >= 0:
            ERR_clear_error()
            r = SSL_read_ex(c.ssl, self.buf, BUF, &got)
            if r != 1:
                err = SSL_get_error(c.ssl, r)
                if err == SSL_ERROR_WANT_READ:
                    return 0
                if err == SSL_ERROR_WANT_WRITE:     # (a key update's answer)
                    return self._want(c, EPOLLIN | EPOLLOUT)
                if err == SSL_ERROR_ZERO_RETURN:    # close_notify: answer it, then close
                    SSL_shutdown(c.ssl)
                self._close(c)
                return 0
            heads = self._heads(c, self.buf, got)
            while heads > 0 and c.fd >= 0:
                self._write_openssl(c, self.batches[min(heads, MAX_BATCH)])
                heads -= MAX_BATCH
        return 0

    cdef int _write_openssl(self, Conn c, bytes data) except -1:
        cdef int r, err
        cdef size_t put
        if c.waiting is not None:
            c.waiting = c.waiting[c.waiting_at:] + data
            c.waiting_at = 0
            return 0
        ERR_clear_error()
        r = SSL_write_ex(c.ssl, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), &put)
        if r == 1 and <Py_ssize_t>put == PyBytes_GET_SIZE(data):
            return 0
        if r == 1:                      # a partial write (ENABLE_PARTIAL_WRITE)
            c.waiting, c.waiting_at = data, put
            return self._want(c, EPOLLIN | EPOLLOUT)
        err = SSL_get_error(c.ssl, r)
        if err == SSL_ERROR_WANT_WRITE or err == SSL_ERROR_WANT_READ:
            c.waiting, c.waiting_at = data, 0
            return self._want(c, EPOLLIN | EPOLLOUT)
        self._close(c)
        return 0

    # -- room to send ------------------------------------------------------------------------

    cdef int _flush(self, Conn c) except -1:
        """EPOLLOUT: send what waits, then read on if a handshake or a read waited for it."""
        cdef bytes data = c.waiting
        cdef Py_ssize_t at = c.waiting_at
        c.waiting = None
        c.waiting_at = 0
        if data is not None:
            if self.path in (OSSL, KTLS):
                self._write_openssl(c, data[at:])
            else:
                self._send_plain(c, data, at)
        if c.fd >= 0 and c.waiting is None:
            self._want(c, EPOLLIN)
            if self.path in (OSSL, KTLS):
                self._read_openssl(c)   # a handshake or a read that wanted to write goes on
        return 0

    cdef int _want(self, Conn c, unsigned int interest) except -1:
        cdef epoll_event ev
        if interest != c.interest:
            c.interest = interest
            ev.events = interest | EDGE
            ev.data.ptr = <void*>c
            epoll_ctl(self.epfd, EPOLL_CTL_MOD, c.fd, &ev)
        return 0

    cdef void _close(self, Conn c):
        if c.fd < 0:
            return
        epoll_ctl(self.epfd, EPOLL_CTL_DEL, c.fd, NULL)
        close(c.fd)
        if c.ssl != NULL:
            SSL_free(c.ssl)
            c.ssl = NULL
        del self.conns[c.fd]
        c.fd = -1


cdef str _ssl_error():
    cdef char text[256]
    cdef unsigned long e = ERR_get_error()
    if e == 0:
        return "(no OpenSSL error queued)"
    ERR_error_string_n(e, text, sizeof(text))
    return text.decode()
