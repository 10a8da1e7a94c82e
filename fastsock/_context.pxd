# What every connection of one loop shares: the limits, the counter slot, the clock, the Date
# line, and the hooks the loop gives its connections.

from fastsock._shared cimport Slot, SharedState

cdef struct Limits:
    double header_timeout           # to receive a request head, from accept or its first byte
    double keepalive_timeout        # idle between requests; also the write timer
    double body_timeout             # a request body's grace period
    double min_body_rate            # bytes/s a body averages after its grace period (0: none)
    double graceful_timeout         # for in-flight work once draining starts
    Py_ssize_t output_high_water    # stop reading while this much output waits
    Py_ssize_t max_request_line
    Py_ssize_t max_header_bytes
    Py_ssize_t max_header_count
    Py_ssize_t max_body_size
    Py_ssize_t max_chunk_ext
    bint proxy_protocol             # a PROXY protocol header comes first on every connection
    int limit_concurrency           # requests in the app at once, past which 503 (0: none)
    bint count_requests             # per-request counters and durations (metrics on)
    double tls_handshake_timeout    # a TLS handshake's deadline, from accept
    int tls_max_handshakes          # TLS handshakes under way at once, past which a new
                                    # connection is closed at once (counted)
    double ws_shortest_timer        # the shortest WebSocket timer (ping interval, pong and
                                    # close timeouts): the loop ticks often enough for it


cdef class Context:
    cdef Limits limits
    cdef SharedState shared
    cdef Slot* slot
    cdef double now                 # the loop's clock, read once per wake-up
    cdef bytes date_line            # "Date: ...\r\n", renewed by the loop once a second
    cdef bint keep_alive            # False once draining: every response closes its connection
    cdef int waiting                # connections in C_WAIT: the loop runs asyncio while > 0
    cdef int handshaking            # connections in their TLS handshake (C_HANDSHAKE)
    cdef int streaming              # connections streaming a response out (C_STREAM_OUT):
                                    # with `waiting`, the requests in the app (--limit-concurrency)
    cdef int in_app_peak            # the most in the app at once since the last tick
    cdef object on_resume           # callable(conn) once a deferred response is written (the
                                    # loop sends it), or None (feed() in tests)
    cdef object on_later            # callable(conn): drive it again at the loop's next turn,
                                    # after the other connections' events; or None
    cdef public object on_stream    # callable(feed, async_iterator): push its chunks, or None
    cdef public object on_refused   # callable(req) past --limit-concurrency: the refusal (and
                                    # its log line), or None for a request never refused
    cdef public object on_head      # callable(req) -> BodyIn when its route streams its body
                                    # (it is then dispatched at once), or None; None: no
                                    # route streams, and heads are not announced

    cdef object refusal(self, req)

    # a request enters the app: waits for its handler, or streams its response out
    cdef inline void handler_waits(self) noexcept:
        self.waiting += 1
        if self.waiting + self.streaming > self.in_app_peak:
            self.in_app_peak = self.waiting + self.streaming

    cdef inline void stream_begins(self) noexcept:
        self.streaming += 1
        if self.waiting + self.streaming > self.in_app_peak:
            self.in_app_peak = self.waiting + self.streaming
