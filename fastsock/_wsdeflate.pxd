# permessage-deflate (RFC 7692): the offer's negotiation, and one connection's compressor and
# decompressor (zlib's raw deflate), with a cap on what a message inflates to. Sans-IO.

from fastsock._bytebuf cimport ByteBuf

# zlib's C API (linked with -lz; the build needs zlib's header: Debian's zlib1g-dev)
cdef extern from "zlib.h":
    ctypedef void* (*alloc_func)(void* opaque, unsigned int items, unsigned int size)
    ctypedef void (*free_func)(void* opaque, void* address)
    ctypedef struct z_stream:
        unsigned char* next_in          # (const in fact: zlib reads it only)
        unsigned int avail_in
        unsigned char* next_out
        unsigned int avail_out
        alloc_func zalloc
        free_func zfree
        void* opaque
        int data_type       # inflate: +128 when it stopped between two blocks
    enum:
        Z_OK, Z_STREAM_END, Z_NEED_DICT, Z_BUF_ERROR, Z_MEM_ERROR
        Z_SYNC_FLUSH, Z_DEFLATED, Z_DEFAULT_STRATEGY
    int z_inflateInit2 "inflateInit2"(z_stream* s, int window_bits) noexcept
    int z_inflate "inflate"(z_stream* s, int flush) noexcept
    int z_inflateReset "inflateReset"(z_stream* s) noexcept
    int z_inflateEnd "inflateEnd"(z_stream* s) noexcept
    int z_inflateGetDictionary "inflateGetDictionary"(z_stream* s, unsigned char* d,
                                                      unsigned int* n) noexcept
    int z_inflateSetDictionary "inflateSetDictionary"(z_stream* s, const unsigned char* d,
                                                      unsigned int n) noexcept
    int z_deflateInit2 "deflateInit2"(z_stream* s, int level, int method, int window_bits,
                                      int mem_level, int strategy) noexcept
    int z_deflate "deflate"(z_stream* s, int flush) noexcept
    int z_deflateReset "deflateReset"(z_stream* s) noexcept
    int z_deflateEnd "deflateEnd"(z_stream* s) noexcept


cdef class PerMessageDeflate:
    # what was agreed (negotiate(): the response says the same)
    cdef readonly bint server_no_context_takeover
    cdef readonly bint client_no_context_takeover
    # 9..15: zlib's raw deflate has no 8, so an offer that limits the server to 8 is declined
    # (RFC 7692 §7.1.2.1: a server must not accept what it cannot honour)
    cdef readonly int server_max_window_bits
    cdef readonly int client_max_window_bits    # 8..15: the window the client compresses with
    cdef readonly int level             # the server's compression level (zlib's 0..9)
    cdef readonly int mem_level         # zlib's memLevel (1..9): its hash tables' size
    # zlib's streams, made at the first message that needs each; their allocations counted
    cdef z_stream inflater
    cdef z_stream deflater
    cdef bint inflater_ready, deflater_ready
    cdef bint stream_ended               # the message's data ended with a final block
    cdef Py_ssize_t zlib_bytes
    # Append what p[:n] (a compressed message's next bytes) inflates to, to out. -> 0, or 1 when
    # out.len would pass cap (nothing more is inflated: the message is a 1009; out.len may be
    # cap + 1), -1 on a corrupt stream (invalid data: the caller closes with 1007).
    cdef int inflate(self, const char* p, Py_ssize_t n, ByteBuf* out, Py_ssize_t cap) except -2
    # The message's last frame came: inflate the 00 00 ff ff tail (RFC 7692 §7.2.2), and free
    # the decompressor if the client does not take its context over. Same answers as inflate
    # (-1 also for a message that ends inside a deflate block).
    cdef int inflate_end(self, ByteBuf* out, Py_ssize_t cap) except -2
    # One whole message compressed into out (appended), its 00 00 ff ff tail stripped; the
    # compressor freed after it if the server does not take its context over.
    cdef int deflate(self, const char* p, Py_ssize_t n, ByteBuf* out) except -1
    # internals
    cdef void _end_deflater(self) noexcept
    cdef int _start(self, bint deflater) except -1
    cdef int _after_final_block(self) except -1
    cdef int _inflate_input(self, ByteBuf* out, Py_ssize_t cap) except -2
