# The part of OpenSSL 3's C API the TLS rooms call (_tlsctx: contexts, _tls: connections).

from libc.stdint cimport uint64_t
from libc.time cimport tm

cdef extern from "openssl/ssl.h" nogil:
    ctypedef struct SSL_CTX
    ctypedef struct SSL
    ctypedef struct SSL_METHOD
    ctypedef struct SSL_CIPHER
    ctypedef struct BIO
    ctypedef struct BIO_METHOD
    ctypedef struct X509
    ctypedef struct X509_NAME
    ctypedef struct ASN1_TIME
    ctypedef struct stack_st_X509_NAME "struct stack_st_X509_NAME"
    enum:
        SSL_ERROR_NONE
        SSL_ERROR_SSL
        SSL_ERROR_WANT_READ
        SSL_ERROR_WANT_WRITE
        SSL_ERROR_SYSCALL
        SSL_ERROR_ZERO_RETURN
        SSL_FILETYPE_PEM
        TLS1_2_VERSION
        TLS1_3_VERSION
        SSL_VERIFY_NONE
        SSL_VERIFY_PEER
        SSL_VERIFY_FAIL_IF_NO_PEER_CERT
        SSL_VERIFY_CLIENT_ONCE
        SSL_SESS_CACHE_OFF
        X509_V_OK
    long SSL_MODE_RELEASE_BUFFERS
    long SSL_MODE_ENABLE_PARTIAL_WRITE
    long SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
    uint64_t SSL_OP_ENABLE_KTLS
    uint64_t SSL_OP_NO_RENEGOTIATION
    uint64_t SSL_OP_IGNORE_UNEXPECTED_EOF
    uint64_t SSL_OP_NO_TICKET
    uint64_t SSL_OP_NO_COMPRESSION
    uint64_t SSL_OP_SINGLE_ECDH_USE
    uint64_t SSL_OP_NO_SSLv3
    const SSL_METHOD* TLS_server_method()
    SSL_CTX* SSL_CTX_new(const SSL_METHOD* method)
    void SSL_CTX_free(SSL_CTX* ctx)
    int SSL_CTX_use_certificate_chain_file(SSL_CTX* ctx, const char* path)
    int SSL_CTX_use_PrivateKey_file(SSL_CTX* ctx, const char* path, int kind)
    int SSL_CTX_check_private_key(const SSL_CTX* ctx)
    X509* SSL_CTX_get0_certificate(const SSL_CTX* ctx)
    void SSL_CTX_set_default_passwd_cb_userdata(SSL_CTX* ctx, void* u)
    long SSL_CTX_set_min_proto_version(SSL_CTX* ctx, int version)
    long SSL_CTX_set_mode(SSL_CTX* ctx, long mode)
    uint64_t SSL_CTX_set_options(SSL_CTX* ctx, uint64_t options)
    int SSL_CTX_set_cipher_list(SSL_CTX* ctx, const char* s)
    int SSL_CTX_set_ciphersuites(SSL_CTX* ctx, const char* s)
    long SSL_CTX_set1_groups_list(SSL_CTX* ctx, const char* s)
    long SSL_CTX_set_dh_auto(SSL_CTX* ctx, int onoff)
    long SSL_CTX_set_session_cache_mode(SSL_CTX* ctx, long mode)
    long SSL_CTX_set_timeout(SSL_CTX* ctx, long t)
    int SSL_CTX_set_num_tickets(SSL_CTX* ctx, size_t n)
    int SSL_CTX_set_session_id_context(SSL_CTX* ctx, const unsigned char* sid, unsigned int n)
    void SSL_CTX_set_verify(SSL_CTX* ctx, int mode, void* callback)
    void SSL_CTX_set_verify_depth(SSL_CTX* ctx, int depth)
    int SSL_CTX_load_verify_locations(SSL_CTX* ctx, const char* file, const char* path)
    stack_st_X509_NAME* SSL_load_client_CA_file(const char* file)
    void SSL_CTX_set_client_CA_list(SSL_CTX* ctx, stack_st_X509_NAME* names)
    SSL* SSL_new(SSL_CTX* ctx)
    void SSL_free(SSL* ssl)
    int SSL_set_fd(SSL* ssl, int fd)
    int SSL_do_handshake(SSL* ssl)
    void SSL_set_accept_state(SSL* ssl)
    int SSL_read_ex(SSL* ssl, void* buf, size_t n, size_t* got)
    int SSL_write_ex(SSL* ssl, const void* buf, size_t n, size_t* put)
    int SSL_get_error(const SSL* ssl, int ret)
    int SSL_shutdown(SSL* ssl)
    int SSL_has_pending(const SSL* ssl)
    int SSL_session_reused(const SSL* ssl)
    int SSL_version(const SSL* ssl)
    BIO* SSL_get_rbio(const SSL* ssl)
    BIO* SSL_get_wbio(const SSL* ssl)
    const char* SSL_get_version(const SSL* ssl)
    const SSL_CIPHER* SSL_get_current_cipher(const SSL* ssl)
    const char* SSL_CIPHER_get_name(const SSL_CIPHER* c)
    unsigned short SSL_CIPHER_get_protocol_id(const SSL_CIPHER* c)
    X509* SSL_get0_peer_certificate(const SSL* ssl)
    long SSL_get_verify_result(const SSL* ssl)
    int SSL_is_init_finished(const SSL* ssl)

cdef extern from "openssl/bio.h" nogil:
    bint BIO_get_ktls_send(BIO* b)
    bint BIO_get_ktls_recv(BIO* b)
    BIO* BIO_new(const BIO_METHOD* kind)
    const BIO_METHOD* BIO_s_mem()
    int BIO_free(BIO* b)
    long BIO_get_mem_data(BIO* b, char** pp)

cdef extern from "openssl/x509.h" nogil:
    X509_NAME* X509_get_subject_name(const X509* x)
    const ASN1_TIME* X509_get0_notAfter(const X509* x)
    int X509_NAME_print_ex(BIO* out, const X509_NAME* nm, int indent, unsigned long flags)
    unsigned long XN_FLAG_RFC2253
    int ASN1_TIME_to_tm(const ASN1_TIME* s, tm* t)
    const char* X509_verify_cert_error_string(long n)

cdef extern from "openssl/pem.h" nogil:
    int PEM_write_bio_X509(BIO* bp, X509* x)

cdef extern from "openssl/err.h" nogil:
    void ERR_clear_error()
    unsigned long ERR_get_error()
    unsigned long ERR_peek_last_error()
    int ERR_GET_REASON(unsigned long e)
    void ERR_error_string_n(unsigned long e, char* buf, size_t n)
