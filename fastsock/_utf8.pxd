# UTF-8 validation (RFC 3629), incremental: Björn Höhrmann's DFA
# (https://bjoern.hoehrmann.de/utf-8/decoder/dfa/), with 8 bytes at a time while the text is
# ASCII. The state goes from one call to the next, so a code point may be split across frames
# or reads; the DFA rejects at the first byte no valid text can continue with (overlongs,
# surrogates, past U+10FFFF), so an invalid prefix is found as soon as it arrives.
# Declarations and inline C only: no module of its own.

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    #define FS_UTF8_ACCEPT 0
    #define FS_UTF8_REJECT 12

    /* bytes -> character classes (256), then (state + class) -> state */
    static const uint8_t fs_utf8d[] = {
      0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
      0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
      0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
      0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
      1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,
      7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,
      8,8,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
      10,3,3,3,3,3,3,3,3,3,3,3,3,4,3,3,11,6,6,6,5,8,8,8,8,8,8,8,8,8,8,8,
      0,12,24,36,60,96,84,12,12,12,48,72,12,12,12,12,12,12,12,12,12,12,12,12,
      12,0,12,12,12,12,12,0,12,0,12,12,12,24,12,12,12,12,12,24,12,24,12,12,
      12,12,12,12,12,12,12,24,12,12,12,12,12,24,12,12,12,12,12,12,12,24,12,12,
      12,12,12,12,12,12,12,36,12,36,12,12,12,36,12,12,12,12,12,36,12,36,12,12,
      12,36,12,12,12,12,12,12,12,12,12,12,
    };

    /* Check p[:n], going on from *state (FS_UTF8_ACCEPT between code points). Returns n when
       every byte may still be (part of) valid text, else the index of the first byte that
       makes it invalid (*state is then FS_UTF8_REJECT). *ascii is cleared at a non-ASCII byte.
       Past a non-ASCII byte the DFA takes 16 bytes at a time and looks for REJECT (a sink)
       once a block: found, the block is gone through again for the byte. */
    static inline Py_ssize_t fs_utf8_check(unsigned int *state, const unsigned char *p,
                                           Py_ssize_t n, int *ascii) {
        unsigned int s = *state, s0;
        Py_ssize_t i = 0, j, end;
        unsigned char high = 0;
        uint64_t w;
        while (i < n) {
            if (s == FS_UTF8_ACCEPT) {
                while (i + 8 <= n) {
                    memcpy(&w, p + i, 8);
                    if (w & 0x8080808080808080ULL) break;
                    i += 8;
                }
                if (i >= n) break;
            }
            end = n - i > 16 ? i + 16 : n;
            s0 = s;
            for (j = i; j < end; j++) {
                high |= p[j];
                s = fs_utf8d[256 + s + fs_utf8d[p[j]]];
            }
            if (s == FS_UTF8_REJECT) {
                for (s = s0; ; i++) {
                    s = fs_utf8d[256 + s + fs_utf8d[p[i]]];
                    if (s == FS_UTF8_REJECT) break;
                }
                break;
            }
            i = end;
        }
        if (high & 0x80) *ascii = 0;
        *state = s;
        return s == FS_UTF8_REJECT ? i : n;
    }
    """
    enum:
        FS_UTF8_ACCEPT
        FS_UTF8_REJECT
    Py_ssize_t fs_utf8_check(unsigned int* state, const unsigned char* p, Py_ssize_t n,
                             bint* ascii) noexcept nogil
