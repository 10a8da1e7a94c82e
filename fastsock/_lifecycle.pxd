# One connection's life apart from its requests: the bytes it has read, what it waits for (its
# state) and until when (its deadline), and how it ends. Connection (_conn) extends it with the
# exchange: requests in, responses out. No I/O: the loop does it, and asks.

from fastsock._context cimport Context, Limits
from fastsock._handoff cimport Endpoint, Deferred, BodyIn
from fastsock._message cimport Request
from fastsock._parser cimport RequestParser, ParseError
from fastsock._stream_out cimport StreamOut
from fastsock._tls cimport TLSSession
from fastsock._sys cimport sockaddr_in6
from fastsock._writer cimport OutBuffer
from fastsock._wsconn cimport WsSession

# What a connection waits for: ONE table gives each state its value and its name (state_name,
# STATE_NAMES). Order matters: every state from C_CLOSING on reads no further request. A hang-up
# in C_WAIT, C_STREAM_IN or C_STREAM_OUT ends the work of its handler or producer.
cdef extern from *:
    """
    #define FS_CONN_STATES(X) \
        X(C_PROXY, "proxy")     /* waiting for the PROXY protocol header: header deadline */ \
        X(C_HANDSHAKE, "handshake") /* its TLS handshake (_tls): handshake deadline */ \
        X(C_HEAD, "head")       /* reading a request head: header deadline, from accept or its \
                                   first byte */ \
        X(C_BODY, "body")       /* reading a request body: body deadline */ \
        X(C_IDLE, "idle")       /* between requests: keep-alive deadline */ \
        X(C_WAIT, "wait")       /* a handler works elsewhere (asyncio, a thread): no deadline (its \
                                   runner's) */ \
        X(C_STREAM_IN, "stream_in") /* ... and the request's body streams to it as it comes: body \
                                       deadline */ \
        X(C_WRITE, "write")     /* a response is being written: write timer, renewed on \
                                   progress */ \
        X(C_STREAM_OUT, "stream_out") /* its body streams out: write timer while output waits */ \
        X(C_WEBSOCKET, "websocket") /* upgraded: frames both ways (_wsconn), its ping and close \
                                       timers */ \
        X(C_CLOSING, "closing") /* no more requests: send what is queued, then close */ \
        X(C_REFUSED, "refused") /* a request was refused: send the answer, then linger */ \
        X(C_LINGER, "linger")   /* our side is shut; input is read and dropped until the client \
                                   closes */ \
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
        C_HANDSHAKE
        C_HEAD
        C_BODY
        C_IDLE
        C_WAIT
        C_STREAM_IN
        C_WRITE
        C_STREAM_OUT
        C_WEBSOCKET
        C_CLOSING
        C_REFUSED
        C_LINGER
        C_CLOSED
        N_CONN_STATES
    const char* const fs_conn_state_names[]


cdef class Lifecycle(Endpoint):
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
    cdef Deferred deferred          # what C_WAIT and C_STREAM_IN wait for
    cdef BodyIn body_in             # the body streamed to the handler (C_STREAM_IN)
    cdef bint body_unread           # the streamed body of the request being answered is not
                                    # all in: a response now closes the connection (lingering),
                                    # and nothing after it is parsed
    cdef Request waiting_req        # ... and the request it answers
    cdef double started             # when that request was dispatched
    cdef StreamOut streaming        # the response body streaming out (C_STREAM_OUT), or None
    cdef bint last_response         # the response being sent says "Connection: close": once
                                    # its streamed body is out, C_CLOSING (not C_WRITE)
    cdef bint resume_queued         # in the bridge's batch to send (_bridge._resumed): once
    cdef bint input_ended           # the client half-closed: answer what is here, then close
    cdef WsSession ws               # the WebSocket it was upgraded to (C_WEBSOCKET), or None
    cdef TLSSession tls             # its TLS (the loop reads and writes through it), or None
    cdef object peer
    cdef sockaddr_in6 addr          # the peer's, as accept() gave it (an IPv4 one fits in it:
                                    # 28 bytes, not a sockaddr_storage's 128, per connection)

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
        return self.state == C_STREAM_OUT

    cdef inline bint awaits_room(self) noexcept:
        """Someone waits for its output to drain: a pushed stream, a WebSocket's sender."""
        return self.state == C_STREAM_OUT or self.state == C_WEBSOCKET

    cdef inline bint input_closed(self) noexcept:
        """The client half-closed: nothing more is read."""
        return self.input_ended

    cdef inline bint lingers(self) noexcept:
        return self.state == C_LINGER

    cdef inline bint is_closed(self) noexcept:
        return self.state == C_CLOSED

    cdef inline bint is_idle(self) noexcept:
        """Between requests, with nothing of the next one here: closing it loses nothing."""
        return (self.state == C_IDLE or self.state == C_HANDSHAKE
                or (self.state == C_HEAD and self.rend == self.rstart))

    cdef inline bint expired(self, double now) noexcept:
        return self.deadline <= now

    cdef char* read_space(self, Py_ssize_t* room) except? NULL
    cdef int received(self, Py_ssize_t n) except -1
    cdef int _proxy_header(self) except -1
    cdef void refuse_plain_http(self) noexcept
    cdef int upgrade(self, WsSession ws, Request req) except -1
    cdef int websocket_input(self) except -1
    cdef void _release_input(self) noexcept
    cdef bint end_input(self) noexcept
    cdef bint finished(self) noexcept
    cdef bint must_linger(self) noexcept
    cdef bint wants_read(self) noexcept
    cdef void settle(self) noexcept
    cdef void linger(self) noexcept
    cdef double _write_deadline(self) noexcept
    cdef void _start_body(self) noexcept
    cdef bint _body_on_time(self) noexcept
    cdef int on_timeout(self) except -2
    cdef int refuse(self, ParseError error, int status) except -1
    cdef void _cancel_deferred(self)
    cdef void release(self)
    cdef object client(self)
