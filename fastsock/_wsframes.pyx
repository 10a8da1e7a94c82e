# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""WebSocket frames (RFC 6455 §5): the reader of a client's frames and the writer of the server's.

Sans-IO: bytes in, events out (next_event); frames into an OutBuffer (write_*). The reader
enforces masking, joins fragments with control frames between them, checks text as UTF-8 while
it arrives (an invalid prefix fails at once, not at the message's end), caps frame and message
sizes at the header that would pass them, and inflates permessage-deflate messages under the
same cap. A protocol error is one WS_FAIL event carrying the close code (1002, 1007, 1009);
after it, every call answers WS_FAIL again.
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object s)
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL

from fastsock._bytebuf cimport bytebuf_reserve, bytebuf_free
from fastsock._utf8 cimport fs_utf8_check, FS_UTF8_ACCEPT, FS_UTF8_REJECT
from fastsock._wsmask cimport fs_unmask

cdef enum:
    CHUNK = 4096                # a compressed payload is unmasked this much at a time
    REASON_MAX = 123            # a close frame's reason: 125 bytes of payload less the code
    SMALL_FRAME = 512           # a frame up to this is copied to the output in one write

cdef str UTF8_BAD = "a text message that is not valid UTF-8"
cdef str UTF8_CUT = "a text message that ends inside a UTF-8 sequence"


cdef class FrameReader:
    """A client's frames in, events out. `max_message` caps a message's bytes (inflated when
    compressed), `max_frame` a frame's declared payload; `deflate` is the connection's
    permessage-deflate, or None when it was not agreed (RSV1 is then a protocol error)."""

    def __cinit__(self):
        self.close_reason, self.held = "", b""

    def __init__(self, Py_ssize_t max_message, Py_ssize_t max_frame,
                 PerMessageDeflate deflate=None):
        if max_message < 1 or max_frame < 1:
            raise ValueError(f"WebSocket limits must be positive: max_message={max_message}, "
                             f"max_frame={max_frame}")
        self.max_message, self.max_frame, self.deflate = max_message, max_frame, deflate

    def __dealloc__(self):
        bytebuf_free(&self.buf)

    cdef int _fail(self, int code, str reason) except -1:
        self.failed = 1
        self.close_code = code
        self.close_reason = reason
        self.message = None
        self.left = 0
        self.in_message = 0
        bytebuf_free(&self.buf)
        return WS_FAIL

    cdef int next_event(self, const unsigned char* data, Py_ssize_t n, Py_ssize_t* used) except -1:
        cdef int event
        if self.failed:
            used[0] = n
            return WS_FAIL
        event = self._next(data, n, used)
        if event == WS_FAIL:
            used[0] = n                     # nothing more is read
        return event

    cdef int _next(self, const unsigned char* data, Py_ssize_t n, Py_ssize_t* used) except -1:
        cdef Py_ssize_t pos = 0, hlen, m
        cdef unsigned long long plen
        cdef const unsigned char* p
        cdef unsigned char ctrl[125]
        cdef int b0, b1, opcode
        while True:
            if self.left == 0:              # a frame header: checked from its first 2 bytes
                if n - pos < 2:
                    used[0] = pos
                    return WS_NEED_MORE
                b0, b1 = data[pos], data[pos + 1]
                if self._check_header(b0, b1):
                    return WS_FAIL
                opcode = b0 & 0x0F
                plen = b1 & 0x7F
                hlen = 6 if plen < 126 else (8 if plen == 126 else 14)
                if n - pos < hlen:
                    used[0] = pos           # the header's bytes: given again with more
                    return WS_NEED_MORE
                p = data + pos + 2
                if plen == 126:
                    plen = (<unsigned long long>p[0] << 8) | p[1]
                    p += 2
                elif plen == 127:
                    plen = 0
                    for m in range(8):
                        plen = (plen << 8) | p[m]
                    p += 8
                    if plen >> 63:
                        return self._fail(1002, "a 64-bit payload length with its high bit set")
                if opcode >= 8:             # whole before it is read (at most 139 bytes)
                    if <unsigned long long>(n - pos - hlen) < plen:
                        used[0] = pos
                        return WS_NEED_MORE
                    fs_unmask(ctrl, data + pos + hlen, <Py_ssize_t>plen, p, 0)
                    used[0] = pos + hlen + <Py_ssize_t>plen
                    return self._control(opcode, ctrl, <Py_ssize_t>plen)
                if plen > <unsigned long long>self.max_frame:
                    return self._fail(1009, f"a frame of {plen} bytes (the limit: "
                                            f"{self.max_frame})")
                if opcode != OP_CONTINUATION:       # a message begins
                    self.msg_opcode, self.compressed, self.in_message = opcode, b0 & 0x40, 1
                    self.utf8_state, self.ascii, self.checked = FS_UTF8_ACCEPT, 1, 0
                if not self.compressed and (<unsigned long long>self.buf.len + plen
                                            > <unsigned long long>self.max_message):
                    return self._fail(1009, f"a message of over {self.max_message} bytes")
                pos += hlen
                if (b0 & 0x80 and opcode != OP_CONTINUATION and not self.compressed
                        and <unsigned long long>(n - pos) >= plen):
                    used[0] = pos + <Py_ssize_t>plen    # one frame, all here: no copy to buf
                    self.in_message = 0
                    return self._whole(data + pos, <Py_ssize_t>plen, p)
                memcpy(self.mask, p, 4)
                self.mask_at = 0
                self.fin = b0 & 0x80
                self.opcode = opcode
                self.left = plen
            if self.left:                   # the payload, as much as is here
                m = n - pos
                if <unsigned long long>m > self.left:
                    m = <Py_ssize_t>self.left
                if m and self._payload(data + pos, m):
                    return WS_FAIL
                pos += m
                if self.left:
                    used[0] = pos
                    return WS_NEED_MORE
            if self.fin:
                used[0] = pos
                return self._message_end()

    cdef int _check_header(self, int b0, int b1) except -1:
        """0, or WS_FAIL for what the first two bytes of a frame already break."""
        cdef int opcode = b0 & 0x0F
        if b0 & 0x30:
            return self._fail(1002, "RSV2 or RSV3 set: no agreed extension uses them")
        if opcode >= 8:
            if opcode > OP_PONG:
                return self._fail(1002, f"unknown opcode {opcode:#x}")
            if not b0 & 0x80:
                return self._fail(1002, "a fragmented control frame")
            if b0 & 0x40:
                return self._fail(1002, "RSV1 set on a control frame")
            if (b1 & 0x7F) > 125:
                return self._fail(1002, "a control frame's payload over 125 bytes")
        else:
            if opcode > OP_BINARY:
                return self._fail(1002, f"unknown opcode {opcode:#x}")
            if b0 & 0x40:
                if self.deflate is None:
                    return self._fail(1002, "RSV1 set without permessage-deflate")
                if opcode == OP_CONTINUATION:
                    return self._fail(1002, "RSV1 set on a continuation frame")
            if opcode == OP_CONTINUATION and not self.in_message:
                return self._fail(1002, "a continuation frame with no message to continue")
            if opcode != OP_CONTINUATION and self.in_message:
                return self._fail(1002, "a new message before the last one's final frame")
        if not b1 & 0x80:
            return self._fail(1002, "an unmasked frame from a client")
        return 0

    cdef int _whole(self, const unsigned char* src, Py_ssize_t n,
                    const unsigned char* mask) except -1:
        """A message of one frame, all in data: unmasked straight into its bytes or str."""
        cdef unsigned int state = FS_UTF8_ACCEPT
        cdef bint ascii = 1
        cdef uint64_t seen
        if self.msg_opcode == OP_BINARY:
            msg = PyBytes_FromStringAndSize(NULL, n)
            fs_unmask(<unsigned char*>PyBytes_AS_STRING(msg), src, n, mask, 0)
            self.message = msg
            return WS_BINARY
        msg = PyUnicode_New(n, 127)         # ASCII is the bet: then this str is the message
        seen = fs_unmask(<unsigned char*>PyUnicode_DATA(msg), src, n, mask, 0)
        if seen:                # CPython's strict decoder checks RFC 3629 too
            try:
                msg = PyUnicode_DecodeUTF8(<char*>PyUnicode_DATA(msg), n, NULL)
            except UnicodeDecodeError:      # the DFA only says why
                fs_utf8_check(&state, <unsigned char*>PyUnicode_DATA(msg), n, &ascii)
                return self._fail(1007, UTF8_BAD if state == FS_UTF8_REJECT else UTF8_CUT)
        self.message = msg
        return WS_TEXT

    cdef int _payload(self, const unsigned char* p, Py_ssize_t m) except -1:
        """m bytes of the current frame's payload: unmasked (and inflated) onto buf."""
        cdef unsigned char chunk[CHUNK]
        cdef Py_ssize_t k
        cdef int r
        self.left -= <unsigned long long>m
        if self.compressed:
            while m:
                k = m if m < CHUNK else CHUNK
                fs_unmask(chunk, p, k, self.mask, self.mask_at)
                self.mask_at = (self.mask_at + <unsigned int>k) & 3
                r = self.deflate.inflate(<const char*>chunk, k, &self.buf, self.max_message)
                if r:
                    return self._inflate_failed(r)
                p += k
                m -= k
        else:
            bytebuf_reserve(&self.buf, m)
            fs_unmask(<unsigned char*>self.buf.data + self.buf.len, p, m, self.mask,
                      self.mask_at)
            self.mask_at = (self.mask_at + <unsigned int>m) & 3
            self.buf.len += m
        if self.msg_opcode == OP_TEXT:
            return self._check_text()
        return 0

    cdef int _check_text(self) except -1:
        fs_utf8_check(&self.utf8_state, <unsigned char*>self.buf.data + self.checked,
                      self.buf.len - self.checked, &self.ascii)
        self.checked = self.buf.len
        if self.utf8_state == FS_UTF8_REJECT:
            return self._fail(1007, UTF8_BAD)
        return 0

    cdef int _inflate_failed(self, int r) except -1:
        cdef Py_ssize_t within
        if r == 1:
            if self.msg_opcode == OP_TEXT:
                # the text inflated within the cap is checked first: invalid there, it is a
                # 1007 however the reads fell (one read may inflate past the cap at once)
                within = min(self.buf.len, self.max_message)
                if within > self.checked:
                    fs_utf8_check(&self.utf8_state, <unsigned char*>self.buf.data + self.checked,
                                  within - self.checked, &self.ascii)
                    self.checked = within
                if self.utf8_state == FS_UTF8_REJECT:
                    return self._fail(1007, UTF8_BAD)
            return self._fail(1009, f"a message inflating past {self.max_message} bytes")
        return self._fail(1007, "a compressed message that does not inflate")

    cdef int _message_end(self) except -1:
        """The message's final frame is read: its event. buf's memory goes back (an idle
        connection holds none)."""
        cdef int r
        if self.compressed:
            r = self.deflate.inflate_end(&self.buf, self.max_message)
            if r:
                return self._inflate_failed(r)
            if self.msg_opcode == OP_TEXT and self._check_text():
                return WS_FAIL
        self.in_message = 0
        if self.msg_opcode == OP_BINARY:
            self.message = PyBytes_FromStringAndSize(self.buf.data, self.buf.len)
            bytebuf_free(&self.buf)
            return WS_BINARY
        if self.utf8_state != FS_UTF8_ACCEPT:
            return self._fail(1007, UTF8_CUT)
        if self.ascii:                      # one copy, no decoding
            self.message = PyUnicode_New(self.buf.len, 127)
            if self.buf.len:
                memcpy(PyUnicode_DATA(self.message), self.buf.data, self.buf.len)
        else:
            self.message = PyUnicode_DecodeUTF8(self.buf.data, self.buf.len, NULL)
        bytebuf_free(&self.buf)
        return WS_TEXT

    cdef int _control(self, int opcode, const unsigned char* p, Py_ssize_t n) except -1:
        cdef int code
        cdef unsigned int state = FS_UTF8_ACCEPT
        cdef bint ascii = 1
        if opcode != OP_CLOSE:
            self.message = PyBytes_FromStringAndSize(<const char*>p, n)
            return WS_PING if opcode == OP_PING else WS_PONG
        if n == 0:
            self.close_code, self.close_reason = 1005, ""
            return WS_CLOSE
        if n == 1:
            return self._fail(1002, "a close frame with a 1-byte payload")
        code = (p[0] << 8) | p[1]
        if not close_code_valid(code):
            return self._fail(1002, f"close code {code} is not one a peer may send")
        fs_utf8_check(&state, p + 2, n - 2, &ascii)
        if state != FS_UTF8_ACCEPT:
            return self._fail(1007, "a close reason that is not valid UTF-8")
        self.close_code = code
        self.close_reason = PyUnicode_DecodeUTF8(<const char*>p + 2, n - 2, NULL)
        return WS_CLOSE

    def feed(self, bytes data, Py_ssize_t read_size=0):
        """Tests' door: every event data (after what an earlier feed left) gives, as tuples:
        ("text", str), ("binary" | "ping" | "pong", bytes), ("close" | "fail", code, reason).
        read_size > 0 hands data over in reads of that size, as a socket might."""
        cdef list events = []
        cdef bytes whole = self.held + data if self.held else data
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(whole)
        cdef Py_ssize_t pos = 0, used = 0, n = PyBytes_GET_SIZE(whole)
        cdef Py_ssize_t end = n if read_size <= 0 else min(n, len(self.held) + read_size)
        cdef int event
        while True:
            event = self.next_event(p + pos, end - pos, &used)
            pos += used
            if event == WS_NEED_MORE:
                if end == n:
                    break
                end = min(n, end + read_size)
            elif event == WS_CLOSE or event == WS_FAIL:
                events.append((_NAMES[event], self.close_code, self.close_reason))
                if event == WS_FAIL:
                    break
            else:
                events.append((_NAMES[event], self.message))
        self.held = whole[pos:]
        return events


_NAMES = {WS_TEXT: "text", WS_BINARY: "binary", WS_PING: "ping", WS_PONG: "pong",
          WS_CLOSE: "close", WS_FAIL: "fail"}


cdef int write_frame(OutBuffer out, int opcode, const char* p, Py_ssize_t n, bint rsv1) except -1:
    cdef unsigned char h[4 + SMALL_FRAME]
    cdef int hlen = 2, i
    h[0] = 0x80 | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        h[1] = <unsigned char>n
    elif n < 65536:
        h[1], h[2], h[3] = 126, <unsigned char>(n >> 8), <unsigned char>n
        hlen = 4
    else:
        h[1] = 127
        for i in range(8):
            h[2 + i] = <unsigned char>(<unsigned long long>n >> (56 - 8 * i))
        hlen = 10
    if n <= SMALL_FRAME:                # one write for the two (p may be NULL when n is 0)
        if n:
            memcpy(h + hlen, p, n)
        return out.write(<const char*>h, hlen + n)
    out.write(<const char*>h, hlen)
    return out.write(p, n)


cdef int _write_data(OutBuffer out, int opcode, const char* p, Py_ssize_t n,
                     PerMessageDeflate deflate, Py_ssize_t compress_from) except -1:
    cdef ByteBuf z
    if deflate is None or n < compress_from:
        return write_frame(out, opcode, p, n, 0)
    z.data, z.len, z.cap = NULL, 0, 0
    try:
        deflate.deflate(p, n, &z)
        write_frame(out, opcode, z.data, z.len, 1)
    finally:
        bytebuf_free(&z)
    return 0


cdef int write_message(OutBuffer out, object message, PerMessageDeflate deflate,
                       Py_ssize_t compress_from) except -1:
    cdef const char* p
    cdef Py_ssize_t n
    cdef Py_buffer view
    if isinstance(message, str):        # its UTF-8, as CPython holds or caches it: no bytes
        p = PyUnicode_AsUTF8AndSize(message, &n)
        return _write_data(out, OP_TEXT, p, n, deflate, compress_from)
    if isinstance(message, bytes):
        return _write_data(out, OP_BINARY, PyBytes_AS_STRING(message),
                           PyBytes_GET_SIZE(message), deflate, compress_from)
    if isinstance(message, (bytearray, memoryview)):
        PyObject_GetBuffer(message, &view, PyBUF_SIMPLE)
        try:
            _write_data(out, OP_BINARY, <const char*>view.buf, view.len, deflate, compress_from)
        finally:
            PyBuffer_Release(&view)
        return 0
    raise TypeError(f"a WebSocket message is str (text) or bytes, bytearray or memoryview "
                    f"(binary), not {type(message).__name__}")


cdef int write_close(OutBuffer out, int code, str reason) except -1:
    """A close frame: the code and the reason's UTF-8, cut to 123 bytes at a code point's
    start. 1005, 1006 and 1015 say "no code" and are never sent: an empty payload goes."""
    cdef char payload[2 + REASON_MAX]
    cdef const char* r
    cdef Py_ssize_t n = 0
    if code == 1005 or code == 1006 or code == 1015:
        return write_frame(out, OP_CLOSE, NULL, 0, 0)
    if not close_code_valid(code):
        raise ValueError(f"close code {code} may not be sent (1000-1003, 1007-1014, 3000-4999)")
    payload[0], payload[1] = <char>(code >> 8), <char>(code & 0xFF)
    if reason:
        try:
            r = PyUnicode_AsUTF8AndSize(reason, &n)
        except UnicodeEncodeError:      # a lone surrogate: sent as U+FFFD, not refused
            encoded = reason.encode("utf-8", "replace")
            r, n = PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded)
        if n > REASON_MAX:
            n = REASON_MAX
            while n > 0 and (<unsigned char>r[n] & 0xC0) == 0x80:
                n -= 1
        memcpy(payload + 2, r, n)
    return write_frame(out, OP_CLOSE, payload, n + 2, 0)


cdef bint close_code_valid(int code) noexcept:
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


# Tests' doors to the writers (the server calls the cdef functions).
def server_frame(int opcode, bytes payload, bint rsv1=False):
    """One frame as the server writes it."""
    out = OutBuffer()
    write_frame(out, opcode, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), rsv1)
    return out.getvalue()


def message_frame(message, PerMessageDeflate deflate=None, Py_ssize_t compress_from=0,
                  Py_ssize_t repeat=1):
    """A whole message as write_message writes it (`repeat` times: bench/ws_frames.py)."""
    out = OutBuffer()
    for _ in range(repeat):
        write_message(out, message, deflate, compress_from)
    return out.getvalue()


def close_frame(int code, str reason=""):
    """A close frame as write_close writes it."""
    out = OutBuffer()
    write_close(out, code, reason)
    return out.getvalue()


def valid_close_code(int code):
    """Whether a peer may send this close code."""
    return close_code_valid(code)
