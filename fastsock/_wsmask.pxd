# A client frame's payload unmasked (RFC 6455 §5.3): each byte XOR the 4-byte key, 32 bytes a
# step with 16-byte vectors (GCC's and clang's vector extensions: SSE2 on x86-64, NEON on
# arm64, plain words elsewhere), then 8, then 1. It also says whether any byte it wrote was
# not ASCII, so a text message that is ASCII is never checked again.
# Declarations and inline C only: no module of its own.

from libc.stdint cimport uint64_t

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    typedef uint64_t fs_v2 __attribute__((vector_size(16)));

    /* dst[i] = src[i] ^ mask[(at + i) % 4] for i < n (dst may be src). Answers the OR of the
       bytes written, its high bits only: nonzero when a byte was not ASCII. */
    static inline uint64_t fs_unmask(unsigned char *dst, const unsigned char *src,
                                     Py_ssize_t n, const unsigned char *mask, unsigned int at) {
        unsigned char m[4];
        uint32_t key4;
        uint64_t key8, w, seen = 0, halves[2];
        fs_v2 key, a, b, seen16 = {0, 0};
        Py_ssize_t i = 0;
        m[0] = mask[at & 3];            /* the key from this phase: 4 bytes, then 8 and 16 */
        m[1] = mask[(at + 1) & 3];
        m[2] = mask[(at + 2) & 3];
        m[3] = mask[(at + 3) & 3];
        memcpy(&key4, m, 4);
        key8 = (uint64_t)key4 | ((uint64_t)key4 << 32);     /* the 4 bytes twice, any endian */
        if (n >= 32) {
            key = (fs_v2){key8, key8};
            for (; i + 32 <= n; i += 32) {
                memcpy(&a, src + i, 16);
                memcpy(&b, src + i + 16, 16);
                a ^= key;
                b ^= key;
                seen16 |= a | b;
                memcpy(dst + i, &a, 16);
                memcpy(dst + i + 16, &b, 16);
            }
            memcpy(halves, &seen16, 16);
            seen = halves[0] | halves[1];
        }
        for (; i + 8 <= n; i += 8) {
            memcpy(&w, src + i, 8);
            w ^= key8;
            seen |= w;
            memcpy(dst + i, &w, 8);
        }
        for (; i < n; i++) {
            dst[i] = src[i] ^ m[i & 3];
            seen |= dst[i];
        }
        return seen & 0x8080808080808080ULL;
    }
    """
    uint64_t fs_unmask(unsigned char* dst, const unsigned char* src, Py_ssize_t n,
                       const unsigned char* mask, unsigned int at) noexcept nogil
