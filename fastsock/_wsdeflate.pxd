# permessage-deflate (RFC 7692): the offer's negotiation, and one connection's compressor and
# decompressor (zlib's raw deflate), with a cap on what a message inflates to. Sans-IO.

from fastsock._bytebuf cimport ByteBuf


cdef class PerMessageDeflate:
    cdef bint server_no_context_takeover
    cdef bint client_no_context_takeover
    cdef int server_max_window_bits     # 8..15 (zlib takes 9..15: 8 is used as 9, RFC 7692 §7.1.2.1)
    cdef int client_max_window_bits
    # Append what p[:n] (a compressed message's next bytes) inflates to, to out. -> 0, or 1 when
    # out.len would pass cap (nothing more is inflated: the message is a 1009), -1 on a corrupt
    # stream (a 1007... the caller closes with 1002/1007 as the RFC says: invalid data is 1007).
    cdef int inflate(self, const char* p, Py_ssize_t n, ByteBuf* out, Py_ssize_t cap) except -2
    # The message's last frame came: inflate the 00 00 ff ff tail (RFC 7692 §7.2.2), and reset
    # the window if the client does not take its context over. Same answers as inflate.
    cdef int inflate_end(self, ByteBuf* out, Py_ssize_t cap) except -2
    # One whole message compressed into out (appended), its 00 00 ff ff tail stripped; the
    # window reset after it if the server does not take its context over.
    cdef int deflate(self, const char* p, Py_ssize_t n, ByteBuf* out) except -1
