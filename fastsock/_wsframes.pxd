# WebSocket frames (RFC 6455 §5): the reader of a client's frames (masking enforced, fragments
# joined, control frames between them, UTF-8 checked as bytes arrive, sizes capped) and the
# writer of the server's. Sans-IO: bytes in, events out; frames into an OutBuffer.

from fastsock._bytebuf cimport ByteBuf
from fastsock._outbuf cimport OutBuffer
from fastsock._wsdeflate cimport PerMessageDeflate

cdef enum:
    OP_CONTINUATION = 0x0
    OP_TEXT = 0x1
    OP_BINARY = 0x2
    OP_CLOSE = 0x8
    OP_PING = 0x9
    OP_PONG = 0xA

# what next_event() found
cdef enum:
    WS_NEED_MORE = 0    # every byte given is used (or kept for later: *used says); no event yet
    WS_TEXT = 1         # .message: str
    WS_BINARY = 2       # .message: bytes
    WS_PING = 3         # .message: bytes (the payload; the caller answers with a pong)
    WS_PONG = 4         # .message: bytes
    WS_CLOSE = 5        # .close_code (1005 when the frame had none), .close_reason: str
    WS_FAIL = 6         # the client broke the protocol: close with .close_code (1002, 1007,
                        # 1009) and .close_reason; nothing more is read


cdef class FrameReader:
    cdef Py_ssize_t max_message         # bytes of one message (inflated): past it, 1009
    cdef Py_ssize_t max_frame           # a frame's declared payload: past it, 1009
    cdef PerMessageDeflate deflate      # None unless permessage-deflate was agreed
    cdef object message                 # the event's payload (see above)
    cdef int close_code
    cdef str close_reason
    # internals: the frame being read, the message being joined
    cdef ByteBuf buf
    cdef int opcode, msg_opcode
    cdef bint fin, rsv1, compressed, in_message, failed
    cdef unsigned long long left        # payload bytes of the current frame not yet read
    cdef unsigned char mask[4]
    cdef unsigned int mask_at           # where in the mask the next payload byte is
    cdef unsigned int utf8_state        # the UTF-8 check's state across frames
    cdef Py_ssize_t checked             # bytes of buf already UTF-8 checked
    cdef bint ascii                     # every byte of the text so far is ASCII
    cdef bytes held                     # feed()'s bytes of an unfinished header (tests' door)

    # One event from data[:n]: *used says how many bytes were taken (bytes of an incomplete
    # frame header are left: give them again with what follows). Call again with the rest
    # while it answers an event.
    cdef int next_event(self, const unsigned char* data, Py_ssize_t n, Py_ssize_t* used) except -1
    # its steps
    cdef int _next(self, const unsigned char* data, Py_ssize_t n, Py_ssize_t* used) except -1
    cdef int _fail(self, int code, str reason) except -1
    cdef int _check_header(self, int b0, int b1) except -1
    cdef int _whole(self, const unsigned char* src, Py_ssize_t n,
                    const unsigned char* mask) except -1
    cdef int _payload(self, const unsigned char* p, Py_ssize_t m) except -1
    cdef int _check_text(self) except -1
    cdef int _inflate_failed(self, int r) except -1
    cdef int _message_end(self) except -1
    cdef int _control(self, int opcode, const unsigned char* p, Py_ssize_t n) except -1


# Frames the server sends: never masked (RFC 6455 §5.1).
cdef int write_frame(OutBuffer out, int opcode, const char* p, Py_ssize_t n, bint rsv1) except -1
# A whole message: str as text, bytes/bytearray/memoryview as binary; compressed (RSV1) when
# deflate is not None and the message is at least `compress_from` bytes. TypeError otherwise.
cdef int write_message(OutBuffer out, object message, PerMessageDeflate deflate,
                       Py_ssize_t compress_from) except -1
cdef int write_close(OutBuffer out, int code, str reason) except -1
# A close code a peer may send (RFC 6455 §7.4, the IANA registry): 1000-1003, 1007-1014,
# 3000-4999.
cdef bint close_code_valid(int code) noexcept
