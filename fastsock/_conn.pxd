# One connection's protocol state, apart from the loop that does its I/O.

from fastsock._handoff cimport Endpoint, Deferred, BodyIn, Feed
from fastsock._message cimport Request
from fastsock._parser cimport RequestParser, ParseError
from fastsock._shared cimport Slot, SharedState
from fastsock._sys cimport sockaddr_storage
from fastsock._writer cimport OutBuffer

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
    bint count_requests             # per-request counters and durations (metrics on)

# What a connection waits for: ONE table gives each state its value and its name (state_name,
# STATE_NAMES). Order matters: every state from C_CLOSING on reads no further request. A hang-up
# in C_WAIT or C_STREAM_IN cancels its handler.
cdef extern from *:
    """
    #define FS_CONN_STATES(X) \
        X(C_PROXY, "proxy")     /* waiting for the PROXY protocol header: header deadline */ \
        X(C_HEAD, "head")       /* reading a request head: header deadline, from accept or its first byte */ \
        X(C_BODY, "body")       /* reading a request body: body deadline */ \
        X(C_IDLE, "idle")       /* between requests: keep-alive deadline */ \
        X(C_WAIT, "wait")       /* a handler works elsewhere (asyncio, a thread): no deadline (its runner's) */ \
        X(C_STREAM_IN, "stream_in") /* ... and the request's body streams to it as it comes: body deadline */ \
        X(C_WRITE, "write")     /* a response is being written or streamed: write timer, renewed on progress */ \
        X(C_CLOSING, "closing") /* no more requests: send what is queued, then close */ \
        X(C_REFUSED, "refused") /* a request was refused: send the answer, then linger */ \
        X(C_LINGER, "linger")   /* our side is shut; input is read and dropped until the client closes */ \
        X(C_CLOSED, "closed")   /* done: the loop closes it */
    typedef enum {
    #define FS_ENUM(e, name) e,
        FS_CONN_STATES(FS_ENUM)
    #undef FS_ENUM
        N_CONN_STATES
    } fs_conn_state;
    static const char* const fs_conn_state_names[] __attribute__((unused)) = {
    #define FS_NAME(e, name) name,
        FS_CONN_STATES(FS_NAME)
    #undef FS_NAME
    };
    """
    ctypedef enum ConnState "fs_conn_state":
        C_PROXY
        C_HEAD
        C_BODY
        C_IDLE
        C_WAIT
        C_STREAM_IN
        C_WRITE
        C_CLOSING
        C_REFUSED
        C_LINGER
        C_CLOSED
        N_CONN_STATES
    const char* const fs_conn_state_names[]


cdef class Context:
    cdef Limits limits
    cdef SharedState shared
    cdef Slot* slot
    cdef double now                 # the loop's clock, read once per wake-up
    cdef bytes date_line            # "Date: ...\r\n", renewed by the loop once a second
    cdef bint keep_alive            # False once draining: every response closes its connection
    cdef int waiting                # connections in C_WAIT: the loop runs asyncio while > 0
    cdef object on_resume           # callable(conn) once a deferred response is written (the
                                    # loop sends it), or None (feed() in tests)
    cdef object on_later            # callable(conn): drive it again at the loop's next turn,
                                    # after the other connections' events; or None
    cdef public object on_stream    # callable(feed, async_iterator): push its chunks, or None
    cdef public object on_head      # callable(req) -> BodyIn when its route streams its body
                                    # (it is then dispatched at once), or None; None: no
                                    # route streams, and heads are not announced


cdef class Connection(Endpoint):
    cdef int fd                     # the loop's; the connection itself never does I/O
    cdef unsigned int interest      # the loop's epoll registration
    cdef unsigned int missed        # the loop's: input events that came while its handler
                                    # worked, left in the socket to read after the response
    cdef ConnState state
    cdef double deadline
    cdef double since               # when it was accepted or last went idle
    cdef double body_since          # when the request body being read began
    cdef unsigned long long rx_total    # bytes ever read, and when the body began
    cdef unsigned long long body_rx
    cdef int close_reason           # CLOSE_* (see _shared.pxd) for when it ends
    cdef char* rbuf
    cdef Py_ssize_t rstart, rend, rcap
    cdef OutBuffer out
    cdef RequestParser parser
    cdef Context ctx
    cdef object dispatch
    cdef Deferred deferred          # what C_WAIT and C_STREAM_IN wait for
    cdef BodyIn body_in             # the body streamed to the handler (C_STREAM_IN)
    cdef bint body_unread           # the streamed body of the request being answered is not
                                    # all in: a response now closes the connection (lingering),
                                    # and nothing after it is parsed
    cdef Request waiting_req        # ... and the request it answers
    cdef double started             # when that request was dispatched
    cdef object stream              # the iterator a streamed response body comes from
    cdef bint input_ended           # the client half-closed: answer what is here, then close
    cdef bint stream_chunked        # ... framed as chunks (HTTP/1.1), else by closing (1.0)
    cdef Py_ssize_t stream_left     # ... or by the app's Content-Length: bytes still due (-1)
    cdef object peer
    cdef sockaddr_storage addr

    cdef void setup(self, Context ctx, object dispatch, int fd)
    cdef void _to(self, ConnState s) noexcept
    cdef void _end(self, ConnState s, int reason) noexcept

    # the loop's questions
    cdef inline bint awaits_handler(self) noexcept:
        """Its handler has the whole request: what comes now is the next request's."""
        return self.state == C_WAIT

    cdef inline bint in_handler(self) noexcept:
        """A handler has its request (its body may still stream in)."""
        return self.state == C_WAIT or self.state == C_STREAM_IN

    cdef inline bint streams_out(self) noexcept:
        return self.stream is not None

    cdef inline bint input_closed(self) noexcept:
        """The client half-closed: nothing more is read."""
        return self.input_ended

    cdef inline bint lingers(self) noexcept:
        return self.state == C_LINGER

    cdef inline bint is_closed(self) noexcept:
        return self.state == C_CLOSED

    cdef inline bint is_idle(self) noexcept:
        """Between requests, with nothing of the next one here: closing it loses nothing."""
        return self.state == C_IDLE or (self.state == C_HEAD and self.rend == self.rstart)

    cdef inline bint expired(self, double now) noexcept:
        return self.deadline <= now

    cdef char* read_space(self, Py_ssize_t* room) except? NULL
    cdef int received(self, Py_ssize_t n) except -1
    cdef int produce(self) except -1
    cdef bint end_input(self) noexcept
    cdef bint finished(self) noexcept
    cdef bint must_linger(self) noexcept
    cdef bint wants_read(self) noexcept
    cdef void settle(self) noexcept
    cdef void linger(self) noexcept
    cdef int on_timeout(self) except -2
    cdef void _start_body(self) noexcept
    cdef bint _body_on_time(self) noexcept
    cdef double _write_deadline(self) noexcept
    cdef void release(self)
    cdef void _release_input(self) noexcept
    cdef object client(self)
    cdef int refuse(self, ParseError error, int status) except -1
    cdef int _respond(self, Request req) except -1
    cdef int _write_result(self, Request req, object result, double t0) except -1
    cdef int resume(self, object result) except -1
    cdef void pushed(self)
    cdef int stream_chunk(self, object chunk) except -1
    cdef int end_stream(self) except -1
    cdef int cut_stream(self, str why) except -1
    cdef bint has_room(self) noexcept
    cdef int _pump(self) except -1
    cdef void output_drained(self)
    cdef int _broken_length(self, str why) except -1
    cdef int _proxy_header(self) except -1
    cdef int _on_head(self) except -1
    cdef int _stream_body_in(self) except -1
    cdef void _cancel_deferred(self)
