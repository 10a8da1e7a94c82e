# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""permessage-deflate (RFC 7692): the negotiation of a client's Sec-WebSocket-Extensions offer,
and one connection's compressor and decompressor (zlib's raw deflate), with a cap on what a
message inflates to: a compression bomb stops at the cap, it never takes memory past it.

Sans-IO. zlib's streams are made at the first message that needs one (an idle connection that
never sends or receives a compressed message holds none); each is freed after every message
when its side takes no context over. zlib's allocations are counted (memory()).
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memcmp, memcpy, memset

from fastsock._bytebuf cimport ByteBuf, bytebuf_free, bytebuf_reserve
from fastsock._chars cimport _eq_ci, _is_ows, fs_init_char_classes, is_token

fs_init_char_classes()

cdef extern from *:
    """
    #include <stdlib.h>
    #include <zlib.h>
    /* zlib's allocations, counted in *opaque: each block carries its size in front of it */
    static voidpf fs_zalloc(voidpf opaque, uInt items, uInt size) {
        size_t n = (size_t)items * size;
        size_t* p = (size_t*)malloc(n + 16);
        if (p == NULL) return Z_NULL;
        p[0] = n;
        *(Py_ssize_t*)opaque += (Py_ssize_t)n;
        return (char*)p + 16;
    }
    static void fs_zfree(voidpf opaque, voidpf address) {
        size_t* p = (size_t*)((char*)address - 16);
        *(Py_ssize_t*)opaque -= (Py_ssize_t)p[0]; free(p);
    }
    """
    void* fs_zalloc(void* opaque, unsigned int items, unsigned int size) noexcept
    void fs_zfree(void* opaque, void* address) noexcept

# what ends every flushed message, stripped by the sender, put back by the receiver (§7.2.1)
cdef const unsigned char* TAIL = b"\x00\x00\xff\xff"
cdef enum:
    MIN_STEP = 256          # the least room inflate or deflate is given to write into
    IN_STEP = 1 << 30       # zlib counts input in an unsigned int: longer input goes in steps


cdef class PerMessageDeflate:
    """One connection's permessage-deflate: what was agreed, a compressor and a decompressor.
    Made by negotiate() (or directly, in tests, with the parameters it would agree)."""

    def __init__(self, bint server_no_context_takeover=False,
                 bint client_no_context_takeover=False, int server_max_window_bits=15,
                 int client_max_window_bits=15, int level=1, int mem_level=8):
        if not 9 <= server_max_window_bits <= 15:   # zlib's raw deflate has no 8 (see negotiate)
            raise ValueError(f"server_max_window_bits {server_max_window_bits}: 9..15")
        if not 8 <= client_max_window_bits <= 15:
            raise ValueError(f"client_max_window_bits {client_max_window_bits}: 8..15")
        if not 0 <= level <= 9:
            raise ValueError(f"compression level {level}: 0..9")
        if not 1 <= mem_level <= 9:
            raise ValueError(f"mem_level {mem_level}: 1..9")
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.level = level
        self.mem_level = mem_level

    def __dealloc__(self):
        if self.inflater_ready:
            z_inflateEnd(&self.inflater)
        self._end_deflater()

    cdef void _end_deflater(self) noexcept:
        if self.deflater_ready:
            z_deflateEnd(&self.deflater)
            self.deflater_ready = False

    cdef int _start(self, bint deflater) except -1:
        """The compressor's or the decompressor's zlib stream, made at its first message."""
        cdef z_stream* s = &self.deflater if deflater else &self.inflater
        cdef int ret
        memset(s, 0, sizeof(z_stream))
        s.zalloc = fs_zalloc
        s.zfree = fs_zfree
        s.opaque = &self.zlib_bytes
        if deflater:
            ret = z_deflateInit2(s, self.level, Z_DEFLATED, -self.server_max_window_bits,
                                 self.mem_level, Z_DEFAULT_STRATEGY)
        else:   # the client's window is at most what was agreed (§7.1.2.2): larger is its error
            ret = z_inflateInit2(s, -self.client_max_window_bits)
        if ret == Z_MEM_ERROR:
            raise MemoryError()
        if ret != Z_OK:
            raise RuntimeError(f"zlib's init: {ret}")
        if deflater:
            self.deflater_ready = True
        else:
            self.inflater_ready = True
        return 0

    cdef int _after_final_block(self) except -1:
        """The message that ended with a final block (BFINAL set, §7.2.3.3) has ended: the next
        starts a new stream, which may still refer to the last one's window (the client takes
        its context over: else the stream is freed, see inflate_end)."""
        cdef unsigned char window[32768]
        cdef unsigned int n = 0
        self.stream_ended = False
        z_inflateGetDictionary(&self.inflater, window, &n)
        z_inflateReset(&self.inflater)
        if n:
            z_inflateSetDictionary(&self.inflater, window, n)
        return 0

    cdef int _inflate_input(self, ByteBuf* out, Py_ssize_t cap) except -2:
        """Inflate what the inflater's input holds into out, never past cap (+1 byte to see it
        pass): 0, 1 (past the cap), -1 (corrupt)."""
        cdef z_stream* s = &self.inflater
        cdef Py_ssize_t room, step
        cdef int ret
        while True:
            if out.cap - out.len < MIN_STEP:
                bytebuf_reserve(out, MIN_STEP)
            step = out.cap - out.len
            room = cap - out.len
            if room < step:
                step = room + 1 if room >= 0 else 1
            if step > IN_STEP:
                step = IN_STEP
            s.next_out = <unsigned char*>out.data + out.len
            s.avail_out = <unsigned int>step
            ret = z_inflate(s, Z_SYNC_FLUSH)
            out.len += step - s.avail_out
            if out.len > cap:
                return 1
            if ret == Z_STREAM_END:         # a final block: the rest of the message is not
                self.stream_ended = True    # deflate data (as zlib's own unused_data)
                return 0
            if ret == Z_MEM_ERROR:
                raise MemoryError()
            if ret == Z_BUF_ERROR:          # no progress possible: all input is in
                return 0
            if ret != Z_OK:                 # Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR
                return -1
            if s.avail_in == 0 and s.avail_out != 0:
                return 0

    cdef int inflate(self, const char* p, Py_ssize_t n, ByteBuf* out, Py_ssize_t cap) except -2:
        cdef int r
        cdef Py_ssize_t take
        if not self.inflater_ready:
            self._start(False)
        if self.stream_ended:
            return 0
        while n > 0:
            take = n if n < IN_STEP else IN_STEP
            self.inflater.next_in = <unsigned char*>p
            self.inflater.avail_in = <unsigned int>take
            r = self._inflate_input(out, cap)
            if r != 0:
                return r
            if self.stream_ended:
                return 0
            p += take - self.inflater.avail_in
            n -= take - self.inflater.avail_in
        return 0

    cdef int inflate_end(self, ByteBuf* out, Py_ssize_t cap) except -2:
        cdef int r = 0
        if not self.stream_ended:
            r = self.inflate(<const char*>TAIL, 4, out, cap)
            if r == 0 and not self.stream_ended and not (self.inflater.data_type & 128):
                return -1   # the message ended inside a block: cut short, or no deflate data
        if r == 0 and self.client_no_context_takeover:      # freed until the next message
            z_inflateEnd(&self.inflater)
            self.inflater_ready = self.stream_ended = False
        elif r == 0 and self.stream_ended:
            self._after_final_block()
        return r

    cdef int deflate(self, const char* p, Py_ssize_t n, ByteBuf* out) except -1:
        cdef z_stream* s
        cdef Py_ssize_t take, step, start = out.len
        cdef int ret
        if not self.deflater_ready:
            self._start(True)
        s = &self.deflater
        while True:                         # every input step, then the flush's own output
            take = n if n < IN_STEP else IN_STEP
            s.next_in = <unsigned char*>p
            s.avail_in = <unsigned int>take
            while True:
                if out.cap - out.len < MIN_STEP:
                    bytebuf_reserve(out, MIN_STEP + take // 2)
                step = out.cap - out.len
                if step > IN_STEP:
                    step = IN_STEP
                s.next_out = <unsigned char*>out.data + out.len
                s.avail_out = <unsigned int>step
                ret = z_deflate(s, Z_SYNC_FLUSH)
                out.len += step - s.avail_out
                if ret == Z_MEM_ERROR:
                    raise MemoryError()
                if ret != Z_OK and ret != Z_BUF_ERROR:
                    raise RuntimeError(f"deflate: {ret}")
                if s.avail_out != 0:        # zlib had room left: it wrote all it had
                    break
            p += take
            n -= take
            if n <= 0:
                break
        # a sync flush ends with an empty stored block, 00 00 ff ff: the receiver puts it back
        if out.len - start >= 4 and memcmp(out.data + out.len - 4, TAIL, 4) == 0:
            out.len -= 4
        elif out.len == start:              # an empty message right after another: zlib makes
            bytebuf_reserve(out, 1)         # no second flush, but an empty payload is no
            out.data[out.len] = 0           # deflate data. A lone empty stored block's first
            out.len += 1                    # byte is (§7.2.3.6): the stream is byte-aligned
        if self.server_no_context_takeover:
            self._end_deflater()            # ~the whole window: freed until the next message
        return 0

    # What tests and the Python layer see: the same, on bytes.

    def compress(self, data):
        """One whole message compressed, its 00 00 ff ff tail stripped (as on the wire)."""
        cdef bytes b = bytes(data)
        cdef ByteBuf out = ByteBuf(NULL, 0, 0)
        try:
            self.deflate(b, len(b), &out)
            return PyBytes_FromStringAndSize(out.data, out.len)
        finally:
            bytebuf_free(&out)

    def decompress(self, data, Py_ssize_t cap=1 << 62, bint fin=True):
        """(status, inflated) of a message's compressed bytes (fin: the message's end too):
        status 0, 1 (it would pass cap: inflated stops there), -1 (corrupt stream)."""
        cdef bytes b = bytes(data)
        cdef ByteBuf out = ByteBuf(NULL, 0, 0)
        try:
            r = self.inflate(b, len(b), &out, cap)
            if r == 0 and fin:
                r = self.inflate_end(&out, cap)
            return r, PyBytes_FromStringAndSize(out.data, out.len)
        finally:
            bytebuf_free(&out)

    def memory(self):
        """Bytes zlib holds for this connection now (its streams' allocations)."""
        return self.zlib_bytes


# The negotiation (RFC 7692 §5, §7.1) over the Sec-WebSocket-Extensions grammar (RFC 6455 §9.1):
#   extension-list = 1#( extension-token *( OWS ";" OWS token [ OWS "=" OWS
#                                                                (token / quoted-string) ] ) )

cdef struct Offer:              # one permessage-deflate offer's parameters as read
    bint ok                     # no unknown, repeated or badly valued parameter so far
    bint server_no_context_takeover, client_no_context_takeover
    int server_max_window_bits  # 0: absent
    int client_max_window_bits  # 0: absent, -1: present without a value


cdef inline Py_ssize_t _ows(const char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    while i < n and _is_ows(p[i]):
        i += 1
    return i


cdef inline Py_ssize_t _token(const char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    while i < n and is_token(<unsigned char>p[i]):
        i += 1
    return i


cdef int _window_bits(const char* v, Py_ssize_t n) noexcept:
    """8..15 written plainly (no sign, no leading zero), else -1."""
    if n == 1 and c'8' <= v[0] <= c'9':
        return v[0] - c'0'
    if n == 2 and v[0] == c'1' and c'0' <= v[1] <= c'5':
        return 10 + v[1] - c'0'
    return -1


cdef Py_ssize_t _quoted(const char* p, Py_ssize_t i, Py_ssize_t n, char* val,
                        Py_ssize_t* vn) noexcept:
    """The quoted-string at p[i] (its opening quote) unescaped into val (room for 16 bytes:
    *vn = 17 when longer); -> the index past its closing quote, or -1 when it is malformed."""
    cdef unsigned char c
    vn[0] = 0
    i += 1
    while i < n:
        c = <unsigned char>p[i]
        if c == c'"':
            return i + 1
        if c == c'\\':
            i += 1
            if i >= n:
                return -1
            c = <unsigned char>p[i]
        if c < 0x20 and c != c'\t' or c == 0x7f:
            return -1
        if vn[0] < 16:
            val[vn[0]] = <char>c
            vn[0] += 1
        else:
            vn[0] = 17
        i += 1
    return -1


cdef void _param(Offer* o, const char* name, Py_ssize_t nn, const char* v, Py_ssize_t vn,
                 bint has_value) noexcept:
    """One parameter of a permessage-deflate offer into o (o.ok false when it spoils the offer:
    unknown, repeated, a value where none belongs or a bad one)."""
    cdef int bits = _window_bits(v, vn) if has_value else 0
    if _eq_ci(name, nn, b"server_no_context_takeover", 26):
        o.ok = o.ok and not has_value and not o.server_no_context_takeover
        o.server_no_context_takeover = True
    elif _eq_ci(name, nn, b"client_no_context_takeover", 26):
        o.ok = o.ok and not has_value and not o.client_no_context_takeover
        o.client_no_context_takeover = True
    elif _eq_ci(name, nn, b"server_max_window_bits", 22):
        o.ok = o.ok and bits > 0 and o.server_max_window_bits == 0
        o.server_max_window_bits = bits
    elif _eq_ci(name, nn, b"client_max_window_bits", 22):
        o.ok = o.ok and bits >= 0 and o.client_max_window_bits == 0
        o.client_max_window_bits = bits if has_value else -1
    else:
        o.ok = False


cdef int _next_offer(const char* p, Py_ssize_t n, Py_ssize_t* at, Offer* o) noexcept:
    """The next extension of the list from *at: 1 a permessage-deflate offer (read into o),
    0 another extension, -1 the end of the list, -2 a list that breaks the grammar."""
    cdef Py_ssize_t i = at[0], s, nn, vn, ns
    cdef char val[17]
    cdef bint pmd, has_value
    while i < n and (p[i] == c',' or p[i] == c' ' or p[i] == c'\t'):
        i += 1                          # empty elements of a list are allowed (RFC 9110 §5.6.1)
    if i >= n:
        return -1
    s = i
    i = _token(p, i, n)
    if i == s:
        return -2
    pmd = _eq_ci(p + s, i - s, b"permessage-deflate", 18)
    memset(o, 0, sizeof(Offer))
    o.ok = True
    i = _ows(p, i, n)
    while i < n and p[i] == c';':
        ns = _ows(p, i + 1, n)
        i = _token(p, ns, n)
        nn = i - ns
        if nn == 0:
            return -2
        i = _ows(p, i, n)
        has_value = i < n and p[i] == c'='
        vn = 0
        if has_value:
            i = _ows(p, i + 1, n)
            if i < n and p[i] == c'"':
                i = _quoted(p, i, n, val, &vn)
                if i < 0:
                    return -2
                for s in range(vn if vn <= 16 else 0):
                    if not is_token(<unsigned char>val[s]):
                        o.ok = False    # a quoted value must still be a token (§9.1)
                if vn == 0:
                    o.ok = False
            else:
                s = i
                i = _token(p, i, n)
                if i == s:
                    return -2
                vn = i - s
                memcpy(val, p + s, vn if vn <= 16 else 16)
                if vn > 16:
                    vn = 17
            i = _ows(p, i, n)
        if pmd:
            _param(o, p + ns, nn, val, vn, has_value)
    if i < n and p[i] != c',':
        return -2
    at[0] = i
    return 1 if pmd else 0


def negotiate(offers, *, bint enabled=True, int server_max_window_bits=15,
              int client_max_window_bits=15, bint server_no_context_takeover=False,
              bint client_no_context_takeover=False, int level=1, int mem_level=8):
    """The client's Sec-WebSocket-Extensions value (str or bytes; "" or None: no offer) ->
    (the response's Sec-WebSocket-Extensions value, the connection's PerMessageDeflate), or
    (None, None) when no permessage-deflate offer is acceptable (or it is not enabled, or the
    value breaks the grammar anywhere). The keywords are the server's side: the largest windows
    it uses and asks for, whether it keeps its own window between messages (and asks the
    client not to), its compression level and zlib's memLevel. The first acceptable offer is
    taken; one with an unknown, repeated or badly valued parameter is declined, as is one that
    limits the server to 8 bits (zlib's raw deflate has no window under 9)."""
    cdef bytes raw
    cdef Offer o
    cdef Py_ssize_t at = 0
    cdef int r, server_bits, client_bits
    # the server's side first: an operator's typo is an error whatever the client offers
    PerMessageDeflate(server_max_window_bits=server_max_window_bits,
                      client_max_window_bits=client_max_window_bits, level=level,
                      mem_level=mem_level)
    if not enabled or not offers:
        return None, None
    if isinstance(offers, str):
        try:
            raw = (<str>offers).encode("latin-1")
        except UnicodeEncodeError:
            return None, None
    else:
        raw = bytes(offers)
    found = None
    while True:                         # the whole list is read: one that breaks the grammar
        r = _next_offer(raw, len(raw), &at, &o)     # is no offer at all
        if r == -2:
            return None, None
        if r == -1:
            return found if found is not None else (None, None)
        if r == 0 or not o.ok or found is not None:
            continue
        if o.server_max_window_bits == 8:
            continue                    # a window zlib cannot compress with: not honoured
        server_bits = server_max_window_bits
        if 0 < o.server_max_window_bits < server_bits:
            server_bits = o.server_max_window_bits
        client_bits = 15                # not offered: the client may use any window
        if o.client_max_window_bits == -1:
            client_bits = client_max_window_bits
        elif o.client_max_window_bits > 0:
            client_bits = min(o.client_max_window_bits, client_max_window_bits)
        pmd = PerMessageDeflate(
            server_no_context_takeover=o.server_no_context_takeover or server_no_context_takeover,
            client_no_context_takeover=o.client_no_context_takeover or client_no_context_takeover,
            server_max_window_bits=server_bits, client_max_window_bits=client_bits,
            level=level, mem_level=mem_level)
        params = ["permessage-deflate"]
        if pmd.server_no_context_takeover:
            params.append("server_no_context_takeover")
        if pmd.client_no_context_takeover:
            params.append("client_no_context_takeover")
        if o.server_max_window_bits or server_bits < 15:
            params.append(f"server_max_window_bits={server_bits}")
        if o.client_max_window_bits > 0 or (o.client_max_window_bits == -1 and client_bits < 15):
            params.append(f"client_max_window_bits={client_bits}")
        found = ("; ".join(params), pmd)
