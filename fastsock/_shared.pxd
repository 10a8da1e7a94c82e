# Memory shared by the master and its workers: one header, one slot per worker.
# Each field has one writer: the header is the master's, a slot is its worker's. Readers (the
# master, and whichever worker answers a scrape) use plain loads; counters only grow. The
# exceptions, aside_lock and aside, are changed by workers with atomic builtins.

cdef enum:
    N_BOUNDS = 16           # histogram bucket bounds (DURATION_BOUNDS in _shared.pyx); +Inf extra
    REQ_CELLS = 1024        # (route, method, status) request counters per slot; a power of 2
    DUR_CELLS = 256         # (route, method) duration histograms per slot; a power of 2
    N_PARSE_REASONS = 64
    N_WS_CODES = 12         # WebSocket close codes counted by name (_wsconn.CLOSE_CODES) + other
    N_TLS_CIPHERS = 16      # TLS ciphers counted by name (_tls.CIPHERS) + other
    N_TLS_FAILURES = 8      # why TLS handshakes failed (_tls.FAILURES)
    N_LISTENERS = 2         # listeners whose accept queue a slot reports: main, metrics

# Where a handler runs while its request waits off the loop (a Deferred's kind): the in-flight
# gauge's label. Inline handlers are the rest of in_flight (HANDLER_KINDS in _shared.pyx).
cdef enum:
    K_ASYNC = 0
    K_THREAD = 1
    K_WSGI = 2
    K_ASGI = 3
    N_KINDS = 4

# Why a connection closed: ONE table gives each reason its value and its metric label
# (fastsock_connections_closed_total{reason=...}); the slots' counters are indexed by it.
cdef extern from *:
    """
    #define FS_CLOSE_REASONS(X) \
        X(CLOSE_CLIENT, "client")                   /* the client closed or reset it */ \
        X(CLOSE_KEEPALIVE, "keepalive_timeout")     /* idle past the keep-alive timeout */ \
        X(CLOSE_HEADER_TIMEOUT, "header_timeout") \
        X(CLOSE_BODY_TIMEOUT, "body_timeout") \
        X(CLOSE_ERROR, "error")     /* refused request, bad PROXY header, I/O error, failed \
                                       stream */ \
        X(CLOSE_SERVER, "server")                   /* Connection: close, HTTP/1.0, draining */ \
        X(CLOSE_LENGTH, "response_length")  /* a streamed body broke its app's Content-Length */ \
        X(CLOSE_PING_TIMEOUT, "ping_timeout")   /* a WebSocket's pong did not come in time */ \
        X(CLOSE_CLOSE_TIMEOUT, "close_timeout") /* a WebSocket's Close did not come back */ \
        X(CLOSE_TLS_HANDSHAKE, "tls_handshake") /* its TLS handshake failed, timed out or was \
                                                   refused (..._tls_handshake_failures_total) */
    typedef enum {
    #define FS_ENUM(e, name) e,
        FS_CLOSE_REASONS(FS_ENUM)
    #undef FS_ENUM
        N_CLOSE_REASONS
    } fs_close_reason;
    static const char* const fs_close_reason_names[] __attribute__((unused)) = {
    #define FS_NAME(e, name) name,
        FS_CLOSE_REASONS(FS_NAME)
    #undef FS_NAME
    };
    """
    ctypedef enum CloseReason "fs_close_reason":
        CLOSE_CLIENT
        CLOSE_KEEPALIVE
        CLOSE_HEADER_TIMEOUT
        CLOSE_BODY_TIMEOUT
        CLOSE_ERROR
        CLOSE_SERVER
        CLOSE_LENGTH
        CLOSE_PING_TIMEOUT
        CLOSE_CLOSE_TIMEOUT
        CLOSE_TLS_HANDSHAKE
        N_CLOSE_REASONS
    const char* const fs_close_reason_names[]

cdef enum:
    SLOT_FREE = 0
    SLOT_STARTING = 1
    SLOT_RUNNING = 2
    SLOT_DRAINING = 3
    SLOT_RETIRING = 4       # serving, and asking the master for a replacement (--max-requests)
    SLOT_START_FAILED = 5   # the app could not start in it (import, startup hook): stop all

# TLS session-ticket keys, the master's: a ring of three (name 16, HMAC 32, AES 32 bytes each);
# it writes the next and then moves `current` to it (_tlsctx reads them in OpenSSL's callback)
cdef struct TicketKeys:
    long long current
    unsigned char keys[3][80]

cdef struct Header:
    long long ready         # 1 while every worker is up and the server is not draining
    long long draining      # 1 once shutdown has begun
    long long workers_alive
    long long restarts      # workers respawned after dying unexpectedly
    long long aside_lock    # held (a worker's pid) while a worker decides to stop watching a
                            # listener: two deciding at once could leave too few watching
    long long aside         # listeners workers stand aside from now (atomic add and sub)
    TicketKeys tickets

cdef struct ReqCell:
    long long key           # 0: empty; else KEY_USED (_shared.pyx) | route << 24
                            # | method << 16 | status
    long long count

cdef struct DurCell:
    long long key           # 0: empty; else KEY_USED | route << 8 | method
    long long count
    double sum
    long long buckets[N_BOUNDS + 1]     # not cumulative; the last is +Inf

cdef struct Slot:
    long long pid
    long long state         # SLOT_* above
    double heartbeat        # the loop's clock (CLOCK_MONOTONIC) when it last turned: watchdog
    long long conns         # open connections now: also lets workers balance accepts
    long long watching      # bit i: this worker's epoll watches listener i
    long long aside         # bit i: it stands aside from listener i (in the header's count)
    double woke             # the loop's clock when it last woke from epoll_wait; 0 while
                            # it waits there (a worker neither waiting nor woken lately is
                            # taken as stuck in a handler)
    long long in_flight
    long long waiting_kinds[N_KINDS]    # of in_flight: requests whose handler runs off the loop
    long long accepted
    long long request_bytes
    long long response_bytes
    long long untracked     # requests whose (route, method, status) found no free cell
    long long refused_concurrency   # requests answered 503 past --limit-concurrency
    long long refused_pool  # requests answered 503 past the thread pool's backlog
    long long shed_fds      # connections closed at accept: out of file descriptors
    # saturation (_saturation.pyx), each written at the worker's tick
    double busy             # seconds its loop was busy: not waiting for events
    double saturation       # how full it is, 0..1, smoothed
    long long pool_threads  # its thread pool's size, and the jobs in it, running or queued
    long long pool_jobs
    long long tasks         # asyncio tasks not done
    long long accept_queue[N_LISTENERS]     # connections waiting in each listener's accept
    long long accept_limit[N_LISTENERS]     # queue and its limit (TCP_INFO); limit <= 0: none
    unsigned long long accept_cookie[N_LISTENERS]   # the socket's (SO_COOKIE): workers that
                            # share a listener report the same queue, counted once
    long long ws_open       # WebSockets open now, ever opened, messages and wire bytes each way
    long long ws_opened
    long long ws_messages_in
    long long ws_messages_out
    long long ws_bytes_in
    long long ws_bytes_out
    long long ws_closes[N_WS_CODES]
    long long closed[N_CLOSE_REASONS]
    long long tls_handshakes[2][N_TLS_CIPHERS][2]   # [TLS 1.2, 1.3][cipher][resumed]
    long long tls_failures[N_TLS_FAILURES]
    long long tls_ktls[2]                           # connections the kernel encrypts, decrypts
    long long tls_reloads[2]                        # certificates reloaded: ok, failed
    long long parse_errors[N_PARSE_REASONS]
    ReqCell req_cells[REQ_CELLS]
    DurCell dur_cells[DUR_CELLS]

cdef class SharedState:
    cdef object mm
    cdef char* base
    cdef readonly int nslots
    cdef readonly Py_ssize_t app_bytes  # each area for application metrics (fastsock.appmetrics)
    cdef Header* header
    cdef list nudge_fds             # an eventfd per slot, made before the fork: any worker can
                                    # wake the worker in slot i to watch the listeners again
    cdef Slot* slot(self, int i) noexcept
    cdef void _tls_sums(self, Slot* s, dict tls)
    cdef void _saturation_figures(self, Slot* s, dict totals, list queues)

cdef void count_request(Slot* s, int route, int method, int status, double seconds) noexcept nogil
cdef void forget_the_dead(Slot* s) noexcept nogil
