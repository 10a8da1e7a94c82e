# A TLS listener's settings: the SSL_CTX of each certificate (chosen by SNI), ALPN, client
# verification, session tickets. Made once; a reload makes another.

from fastsock._openssl cimport SSL, SSL_CTX, X509

cdef extern from *:
    """
    #define FS_MAX_CERTS 16
    typedef struct { int n; SSL_CTX* ctx[FS_MAX_CERTS]; X509* leaf[FS_MAX_CERTS]; } fs_sni_table;
    """
    enum:
        FS_MAX_CERTS
    ctypedef struct fs_sni_table:
        int n
        SSL_CTX* ctx[FS_MAX_CERTS]
        X509* leaf[FS_MAX_CERTS]


cdef class TLSContext:
    cdef fs_sni_table table         # the certificates' contexts; [0] the default
    cdef readonly list certificates     # [(file, subject, notAfter as Unix time)]
    cdef readonly list files            # every file it was made of (watched for changes)
    cdef readonly bint client_verify    # client certificates are asked for

    cdef int _configure(self, SSL_CTX* ctx, bytes password, str client_ca, str verify,
                        str min_version, str ciphers, str ciphersuites, str groups,
                        bint tickets, bint ktls) except -1
    cdef int _load(self, SSL_CTX* ctx, str cert, str key, bytes password) except -1
    cdef SSL* new_ssl(self, int fd) noexcept


cdef str x509_subject(X509* cert)
cdef str x509_pem(X509* cert)
cdef str _x509_text(X509* cert, bint pem)
cdef str openssl_reason()
