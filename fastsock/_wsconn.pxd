# One WebSocket once its handshake is accepted: frames in to the app's inbox, the app's messages
# out as frames, pings and their pongs, the closing handshake. No I/O: the connection in state
# "websocket" (_lifecycle) hands it the bytes it read and sends what it writes.

from fastsock._context cimport Context
from fastsock._handoff cimport Endpoint
from fastsock._message cimport Request
from fastsock._outbuf cimport OutBuffer
from fastsock._wsdeflate cimport PerMessageDeflate
from fastsock._wsframes cimport FrameReader

cdef enum:
    WS_OPEN = 0
    WS_CLOSE_SENT = 1       # our Close is out: the peer's is awaited until close_due
    WS_DONE = 2             # both Closes exchanged, the protocol broken, or the connection gone

# what take_input() tells the connection
cdef enum:
    WS_GO_ON = 0            # read on (or pause while inbox_full())
    WS_CLOSED = 1           # the closing handshake is done: send what is queued, then close
    WS_BROKEN = 2           # the client broke the protocol: send our Close, then linger


cdef class WsOptions:
    cdef public Py_ssize_t max_message      # bytes of one message (inflated): past it, 1009
    cdef public Py_ssize_t max_frame        # bytes of one frame's payload: past it, 1009
    cdef public Py_ssize_t max_queue        # bytes received, not yet taken by the app, past
                                            # which reading pauses (back-pressure)
    cdef public Py_ssize_t compress_from    # messages shorter than this go uncompressed
    cdef public double ping_interval        # a ping when this long has passed (0: none)
    cdef public double ping_timeout         # ... and its pong must come within this
    cdef public double close_timeout        # our Close sent, the peer's must come within this
    cdef public bint compression            # permessage-deflate offered by clients is agreed


cdef class WsSession:
    cdef WsOptions opts
    cdef Context ctx
    cdef Endpoint conn              # None until attached, and once the connection is gone
    cdef OutBuffer out
    cdef FrameReader reader
    cdef PerMessageDeflate deflate
    cdef object first               # the oldest message not yet received by the app, or None
    cdef list more                  # the messages after it, from more_at on (None: none)
    cdef Py_ssize_t more_at
    cdef Py_ssize_t queued          # bytes of those messages
    cdef int phase
    cdef readonly int close_code    # once closed: the peer's code (1005: none), ours when we
    cdef readonly str close_reason  # failed the connection, 1006 when it went without a Close
    cdef object waiting             # the Future a Receiving waits on (resolved: a message or
    cdef object draining            # the end came), and a Sending's (the output has room)
    cdef public object aio          # the asyncio loop the app's side runs on
    cdef public object on_closed    # callable(session) when it ends, or None
    cdef double ping_due, pong_due, close_due
    cdef unsigned int pings         # the last ping's number: its payload
    cdef readonly bytes head        # the 101 response, built by agree()
    cdef readonly str subprotocol
    cdef str accept_value, offered_extensions
    cdef Request req                # the handshake's: its counts and close code, for the
                                    # access log's line at the close

    cdef object peer                # the client's (host, port), for log lines
    cdef int attach(self, Context ctx, Endpoint conn, OutBuffer out, object peer,
                    Request req) except -1
    cdef int take_input(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t* used) except -1
    cdef bint inbox_full(self) noexcept
    cdef double deadline(self) noexcept
    cdef int on_timeout(self, double now) except -2
    cdef void going_away(self)
    cdef void gone(self)
    cdef void drained(self)
    cdef void _finish(self, int code, str reason)
    cdef void _queue(self, message)
    cdef object _take(self)
