/* New TLS connections as fast as one core can open them: bench/tls.py's handshake load.

   C connections at once (epoll, non-blocking); each one connects, does a full handshake (a new
   SSL per connection, no session offered: the client keeps none, asks for no ticket, so the
   server can resume nothing), writes one GET, reads one response (its head and Content-Length
   bytes, or up to the server's close), sends close_notify and closes. Then it starts again,
   until the duration is over. At the end one JSON line on stdout:

       {"done": N, "failed": F, "resumed": R, "seconds": S, "client_cpu": C,
        "version": "TLSv1.3", "cipher": "...", "first_error": "..."}

   resumed counts connections OpenSSL reports as resumed (it must stay 0: every one is a full
   handshake). Certificates are not verified (a load generator; TLS 1.3 still checks the
   server's CertificateVerify signature).

       tls_handshakes PORT CONNECTIONS SECONDS [MAX_VERSION: 1.2|1.3]

   Built by bench/tls.py: cc -O2 tls_handshakes.c -lssl -lcrypto */
#define _GNU_SOURCE     /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 16384

static const char REQUEST[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

enum state { CONNECTING, HANDSHAKE, WRITING, READING };

struct conn {
    int fd;
    SSL *ssl;
    enum state state;
    size_t have;        /* bytes of the response read */
    long want;          /* head + body length once the head is in, else -1 */
    char buf[BUF];
};

static SSL_CTX *ctx;
static struct sockaddr_in addr;
static int ep;
static long done, failed, resumed;
static char version[32], cipher[64], first_error[256];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void note_error(const char *what) {
    if (first_error[0])
        return;
    unsigned long e = ERR_peek_last_error();
    char detail[160] = "";
    if (e)
        ERR_error_string_n(e, detail, sizeof detail);
    snprintf(first_error, sizeof first_error, "%s%s%s%s%s", what, errno ? ": " : "",
             errno ? strerror(errno) : "", detail[0] ? ": " : "", detail);
}

static void start(struct conn *c);

static void finish(struct conn *c, int ok) {
    if (ok) {
        done++;
        if (SSL_session_reused(c->ssl))
            resumed++;
        if (!version[0]) {
            snprintf(version, sizeof version, "%s", SSL_get_version(c->ssl));
            snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(c->ssl));
        }
        SSL_shutdown(c->ssl);               /* close_notify, not waited for */
    } else {
        failed++;
    }
    SSL_free(c->ssl);
    close(c->fd);                           /* (also drops it from the epoll set) */
    start(c);
}

static void start(struct conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
        perror("socket");
        exit(2);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    c->have = 0;
    c->want = -1;
    c->state = CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        /* out of ports or the like: counted when its event comes, not retried in a loop */
        note_error("connect");
    }
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

/* Has the response in c->buf come whole? (head parsed once; Content-Length bytes after it) */
static int response_complete(struct conn *c) {
    if (c->want < 0) {
        char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
        if (!end)
            return 0;
        long body = 0;
        for (char *p = c->buf; p < end; p++) {
            if ((p == c->buf || p[-1] == '\n') && !strncasecmp(p, "content-length:", 15)) {
                body = strtol(p + 15, NULL, 10);
                break;
            }
        }
        c->want = (end - c->buf) + 4 + body;
    }
    return (long)c->have >= c->want;
}

/* Drive one connection as far as it goes without blocking. */
static void step(struct conn *c) {
    for (;;) {
        int r, err;
        switch (c->state) {
        case CONNECTING: {
            int so = 0;
            socklen_t len = sizeof so;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so, &len);
            if (so) {
                errno = so;
                note_error("connect");
                return finish(c, 0);
            }
            c->state = HANDSHAKE;
            break;
        }
        case HANDSHAKE:
            r = SSL_connect(c->ssl);
            if (r == 1) {
                c->state = WRITING;
                break;
            }
            err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                return;
            note_error("handshake");
            return finish(c, 0);
        case WRITING:
            r = SSL_write(c->ssl, REQUEST, sizeof REQUEST - 1);
            if (r > 0) {
                c->state = READING;
                break;
            }
            err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                return;
            note_error("write");
            return finish(c, 0);
        case READING:
            r = SSL_read(c->ssl, c->buf + c->have, BUF - 1 - c->have);
            if (r > 0) {
                c->have += r;
                if (response_complete(c))
                    return finish(c, strncmp(c->buf, "HTTP/1.1 200", 12) == 0);
                if (c->have >= BUF - 1) {
                    note_error("response too long");
                    return finish(c, 0);
                }
                break;
            }
            err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                return;
            if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL) {
                /* closed by the server: a whole response if it had no length */
                int ok = c->want < 0 && c->have > 12 &&
                         strncmp(c->buf, "HTTP/1.1 200", 12) == 0;
                if (!ok)
                    note_error("closed before the response");
                return finish(c, ok);
            }
            note_error("read");
            return finish(c, 0);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT CONNECTIONS SECONDS [1.2|1.3]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    double seconds = atof(argv[3]);
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (argc > 4 && !strcmp(argv[4], "1.2"))
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ep = epoll_create1(0);
    struct conn *conns = calloc(n, sizeof *conns);
    double t0 = now(), end = t0 + seconds;
    for (int i = 0; i < n; i++)
        start(&conns[i]);
    struct epoll_event events[256];
    while (now() < end) {
        int k = epoll_wait(ep, events, 256, 100);
        for (int i = 0; i < k; i++)
            step(events[i].data.ptr);
    }
    double elapsed = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    for (char *p = first_error; *p; p++)
        if (*p == '"' || *p == '\\')
            *p = '\'';
    printf("{\"done\": %ld, \"failed\": %ld, \"resumed\": %ld, \"seconds\": %.4f, "
           "\"client_cpu\": %.4f, \"version\": \"%s\", \"cipher\": \"%s\", "
           "\"first_error\": \"%s\"}\n", done, failed, resumed, elapsed, cpu, version, cipher,
           first_error);
    return 0;
}
