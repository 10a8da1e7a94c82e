# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A TLS listener's settings, made once (at start-up, and again on a reload): the SSL_CTX of each
certificate, the certificate chosen by SNI, ALPN, client verification, and the session-ticket
keys every worker shares (attributes in _tlsctx.pxd). Connections are _tls's.
"""
from libc.string cimport memcpy
from libc.time cimport tm
from posix.time cimport time_t

from fastsock._openssl cimport *
from fastsock._shared cimport SharedState, TicketKeys

import os

cdef extern from "<time.h>" nogil:
    time_t timegm(tm* t)

cdef extern from *:
    """
    #include <string.h>
    #include <openssl/ssl.h>
    #include <openssl/rand.h>
    #include <openssl/evp.h>
    #include <openssl/core_names.h>
    #include <openssl/x509v3.h>

    /* The certificates of one listener: the first is the default, another is chosen when the
       client's SNI name matches it (its SAN names, wildcards included; as nginx's
       server_name, an unknown name gets the default). */
    static int fs_sni_cb(SSL* s, int* al, void* arg) {
        fs_sni_table* t = (fs_sni_table*)arg;
        const char* name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
        int i;
        if (name == NULL || t->n < 2) return SSL_TLSEXT_ERR_OK;
        for (i = 0; i < t->n; i++) {
            if (X509_check_host(t->leaf[i], name, 0, 0, NULL) == 1) {
                if (i > 0 && SSL_set_SSL_CTX(s, t->ctx[i]) == NULL)
                    return SSL_TLSEXT_ERR_ALERT_FATAL;
                return SSL_TLSEXT_ERR_OK;
            }
        }
        return SSL_TLSEXT_ERR_OK;
    }

    /* ALPN: only what is served. A client that offers ALPN without http/1.1 gets the
       no_application_protocol alert (RFC 7301 3.2), as nginx does. */
    static const unsigned char fs_alpn_served[] = "\\x08http/1.1";
    static int fs_alpn_cb(SSL* s, const unsigned char** out, unsigned char* outlen,
                          const unsigned char* in, unsigned int inlen, void* arg) {
        if (SSL_select_next_proto((unsigned char**)out, outlen, fs_alpn_served, 9, in, inlen)
                == OPENSSL_NPN_NEGOTIATED)
            return SSL_TLSEXT_ERR_OK;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }

    /* Session tickets: three keys in a ring (the layout of _shared's TicketKeys); the master
       writes the next one, then moves `current` to it. Tickets are made with the current key
       and taken with it or the one before (renewed then); any other is a full handshake. */
    typedef struct { unsigned char name[16], hmac[32], aes[32]; } fs_ticket_key;
    typedef struct { long long current; fs_ticket_key keys[3]; } fs_ticket_ring;
    static fs_ticket_ring fs_own_ring;              /* without a master: this process's own */
    static fs_ticket_ring* fs_ring = &fs_own_ring;

    static int fs_ticket_cb(SSL* s, unsigned char* name, unsigned char* iv,
                            EVP_CIPHER_CTX* c, EVP_MAC_CTX* h, int enc) {
        long long cur = __atomic_load_n(&fs_ring->current, __ATOMIC_ACQUIRE);
        fs_ticket_key* k = &fs_ring->keys[cur % 3];
        int r = 1;
        OSSL_PARAM p[3];
        if (enc) {
            if (RAND_bytes(iv, 16) <= 0) return -1;
            memcpy(name, k->name, 16);
            if (!EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, k->aes, iv)) return -1;
        } else {
            if (memcmp(name, k->name, 16) != 0) {
                k = &fs_ring->keys[(cur + 2) % 3];
                r = 2;
                if (memcmp(name, k->name, 16) != 0) return 0;
            }
            if (!EVP_DecryptInit_ex(c, EVP_aes_256_cbc(), NULL, k->aes, iv)) return -1;
        }
        p[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k->hmac, 32);
        p[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char*)"sha256", 0);
        p[2] = OSSL_PARAM_construct_end();
        if (!EVP_MAC_CTX_set_params(h, p)) return -1;
        return r;
    }

    /* a key's passphrase: the one given, or none (never OpenSSL's prompt on a terminal) */
    static int fs_passwd_cb(char* buf, int size, int rw, void* u) {
        size_t n = u ? strlen((const char*)u) : 0;
        if (n == 0 || n > (size_t)size) return 0;
        memcpy(buf, u, n);
        return (int)n;
    }

    static void fs_set_callbacks(SSL_CTX* ctx, fs_sni_table* t, int tickets) {
        SSL_CTX_set_tlsext_servername_callback(ctx, fs_sni_cb);
        SSL_CTX_set_tlsext_servername_arg(ctx, t);
        SSL_CTX_set_alpn_select_cb(ctx, fs_alpn_cb, NULL);
        if (tickets) SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, fs_ticket_cb);
    }
    static void fs_use_ring(void* ring) { fs_ring = ring ? (fs_ticket_ring*)ring : &fs_own_ring; }
    static void* fs_own_ring_p(void) { return &fs_own_ring; }
    static void fs_publish(long long* current, long long v) {
        __atomic_store_n(current, v, __ATOMIC_RELEASE);
    }
    """
    void fs_set_callbacks(SSL_CTX* ctx, fs_sni_table* t, int tickets)
    void SSL_CTX_set_default_passwd_cb(SSL_CTX* ctx, void* cb)
    void* fs_passwd_cb
    void fs_use_ring(void* ring)
    void* fs_own_ring_p()
    void fs_publish(long long* current, long long v)

MAX_CERTIFICATES = FS_MAX_CERTS
VERIFY_MODES = {"none": SSL_VERIFY_NONE, "optional": SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE,
                "required": SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE
                | SSL_VERIFY_FAIL_IF_NO_PEER_CERT}
MIN_VERSIONS = {"1.2": TLS1_2_VERSION, "1.3": TLS1_3_VERSION}
TICKET_LIFETIME = 3600          # seconds a ticket resumes a session (and a key makes tickets)


class TLSError(ValueError):
    """A TLS setting OpenSSL refused: the file or value, and OpenSSL's reason."""


cdef str openssl_reason():
    """OpenSSL's error queue, first cause first (its last entry alone is often "PEM lib")."""
    cdef char buf[256]
    cdef unsigned long e = ERR_get_error()
    reasons = []
    while e != 0:
        ERR_error_string_n(e, buf, sizeof(buf))
        text = buf.decode("utf-8", "replace").rpartition(":")[2]    # (no [-1]: wraparound off)
        if text not in reasons:
            reasons.append(text)
        e = ERR_get_error()
    return "; ".join(reasons) or "refused by OpenSSL"


cdef str x509_subject(X509* cert):
    """The certificate's subject, as RFC 4514 writes it."""
    return _x509_text(cert, False)


cdef str x509_pem(X509* cert):
    return _x509_text(cert, True)


cdef str _x509_text(X509* cert, bint pem):
    cdef BIO* b = BIO_new(BIO_s_mem())
    cdef char* p
    cdef long n
    if b == NULL:
        raise MemoryError()
    try:
        if pem:
            PEM_write_bio_X509(b, cert)
        else:
            X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253)
        n = BIO_get_mem_data(b, &p)
        return p[:n].decode("utf-8", "replace")
    finally:
        BIO_free(b)


cdef double _not_after(X509* cert):
    cdef tm t
    if ASN1_TIME_to_tm(X509_get0_notAfter(cert), &t) != 1:
        return 0.0
    return <double>timegm(&t)


def ticket_key_ring_size():
    """Bytes of the ring _shared keeps for the workers (checked against its TicketKeys)."""
    return sizeof(TicketKeys)


def fill_ring(SharedState shared=None, bint all_keys=False):
    """A new ticket key in the ring (the master's, or this process's own): the next slot is
    written, then made current; all_keys: every slot first (no slot is ever left zero, which
    would let a client forge a ticket under an all-zero key)."""
    cdef TicketKeys* ring = (<TicketKeys*>fs_own_ring_p() if shared is None
                             else &shared.header.tickets)
    cdef bytes fresh
    cdef long long nxt
    if all_keys:
        for i in range(3):
            fresh = os.urandom(80)
            memcpy(ring.keys[i], <char*>fresh, 80)
    nxt = ring.current + 1
    fresh = os.urandom(80)
    memcpy(ring.keys[nxt % 3], <char*>fresh, 80)
    fs_publish(&ring.current, nxt)


def use_shared_ticket_keys(SharedState shared):
    """This worker makes and takes tickets with the master's keys (any worker resumes any
    worker's session)."""
    fs_use_ring(&shared.header.tickets if shared is not None else NULL)


fill_ring(all_keys=True)           # this process's own ring, until a master's is used


cdef class TLSContext:
    """One listener's TLS: made from files by TLSContext(settings), never changed after; a
    reload makes another (connections keep the one they began with)."""

    def __cinit__(self):
        self.table.n = 0

    def __dealloc__(self):
        cdef int i
        for i in range(self.table.n):
            SSL_CTX_free(self.table.ctx[i])

    def __init__(self, list pairs, *, bytes password=None, str client_ca="",
                 str verify="none", str min_version="1.2", str ciphers="",
                 str ciphersuites="", str groups="", bint tickets=True, bint ktls=True):
        """pairs: [(certificate chain file, key file)], the first the default. Raises
        TLSError naming what OpenSSL refused."""
        cdef int i
        cdef SSL_CTX* ctx
        if not pairs or len(pairs) > FS_MAX_CERTS:
            raise TLSError(f"1 to {FS_MAX_CERTS} certificates, not {len(pairs)}")
        self.files = []
        self.certificates = []
        self.client_verify = verify != "none"
        ERR_clear_error()
        for cert, key in pairs:
            ctx = SSL_CTX_new(TLS_server_method())
            if ctx == NULL:
                raise MemoryError()
            self.table.ctx[self.table.n] = ctx
            self.table.n += 1
            self._configure(ctx, password, client_ca, verify, min_version, ciphers,
                            ciphersuites, groups, tickets, ktls)
            self._load(ctx, cert, key, password)
            self.table.leaf[self.table.n - 1] = SSL_CTX_get0_certificate(ctx)
            leaf = self.table.leaf[self.table.n - 1]
            self.certificates.append((cert, x509_subject(leaf), _not_after(leaf)))
            self.files += [cert, key]
        if client_ca:
            self.files.append(client_ca)
        for i in range(self.table.n):
            fs_set_callbacks(self.table.ctx[i], &self.table, tickets)

    cdef int _configure(self, SSL_CTX* ctx, bytes password, str client_ca, str verify,
                        str min_version, str ciphers, str ciphersuites, str groups,
                        bint tickets, bint ktls) except -1:
        cdef stack_st_X509_NAME* names
        cdef bytes sid = b"fastsock"
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF
                            | SSL_OP_NO_COMPRESSION | (SSL_OP_ENABLE_KTLS if ktls else 0)
                            | (0 if tickets else SSL_OP_NO_TICKET))
        # partial writes: an SSL_write_ex is a send(); RELEASE_BUFFERS: an idle connection
        # holds no 16 KiB record buffers (as nginx)
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                         | SSL_MODE_RELEASE_BUFFERS)
        if SSL_CTX_set_min_proto_version(ctx, MIN_VERSIONS[min_version]) != 1:
            raise TLSError(f"--tls-min-version {min_version}: {openssl_reason()}")
        if ciphers and SSL_CTX_set_cipher_list(ctx, ciphers.encode()) != 1:
            raise TLSError(f"--tls-ciphers {ciphers!r}: {openssl_reason()}")
        if ciphersuites and SSL_CTX_set_ciphersuites(ctx, ciphersuites.encode()) != 1:
            raise TLSError(f"--tls-ciphersuites {ciphersuites!r}: {openssl_reason()}")
        if groups and SSL_CTX_set1_groups_list(ctx, groups.encode()) != 1:
            raise TLSError(f"--tls-groups {groups!r}: {openssl_reason()}")
        SSL_CTX_set_dh_auto(ctx, 1)         # DHE suites use the RFC 7919 group of the key's size
        # stateless tickets only: no server-side cache for a worker to miss
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF)
        SSL_CTX_set_timeout(ctx, TICKET_LIFETIME)
        SSL_CTX_set_num_tickets(ctx, 1 if tickets else 0)
        SSL_CTX_set_session_id_context(ctx, <const unsigned char*><char*>sid, len(sid))
        SSL_CTX_set_verify(ctx, VERIFY_MODES[verify], NULL)
        if client_ca:
            if SSL_CTX_load_verify_locations(ctx, client_ca.encode(), NULL) != 1:
                raise TLSError(f"--tls-client-ca {client_ca}: {openssl_reason()}")
            names = SSL_load_client_CA_file(client_ca.encode())
            if names == NULL:
                raise TLSError(f"--tls-client-ca {client_ca}: {openssl_reason()}")
            SSL_CTX_set_client_CA_list(ctx, names)
            SSL_CTX_set_verify_depth(ctx, 10)
        return 0

    cdef int _load(self, SSL_CTX* ctx, str cert, str key, bytes password) except -1:
        if SSL_CTX_use_certificate_chain_file(ctx, os.fsencode(cert)) != 1:
            raise TLSError(f"--tls-cert {cert}: {openssl_reason()}")
        # the passphrase, set for the load only
        SSL_CTX_set_default_passwd_cb(ctx, fs_passwd_cb)
        SSL_CTX_set_default_passwd_cb_userdata(ctx, <char*>password if password else NULL)
        try:
            if SSL_CTX_use_PrivateKey_file(ctx, os.fsencode(key), SSL_FILETYPE_PEM) != 1:
                why = openssl_reason()
                hint = ""
                if "decrypt" in why or "password" in why:
                    hint = (" (encrypted: its passphrase goes in --tls-key-password-file)"
                            if password is None else
                            " (--tls-key-password-file is empty)" if not password else
                            " (a wrong passphrase in --tls-key-password-file)")
                raise TLSError(f"--tls-key {key} cannot be used{hint}: {why}")
        finally:
            SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL)
        if SSL_CTX_check_private_key(ctx) != 1:
            raise TLSError(f"--tls-key {key} does not match --tls-cert {cert}: "
                           f"{openssl_reason()}")
        return 0

    cdef SSL* new_ssl(self, int fd) noexcept:
        """A server-side SSL on fd (NULL: out of memory)."""
        cdef SSL* ssl = SSL_new(self.table.ctx[0])
        if ssl == NULL:
            return NULL
        if SSL_set_fd(ssl, fd) != 1:
            SSL_free(ssl)
            return NULL
        SSL_set_accept_state(ssl)
        return ssl
