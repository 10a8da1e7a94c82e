# cython: cdivision=True
# Writing into room reserved in a C buffer (the caller has made sure of it): bytes, short runs,
# numbers in decimal and hex, and the test of 8 bytes at a time that lets plain text be copied
# as it is. The access log writes its lines with these. Declarations and inline code only: no
# module of its own.

from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

cdef extern from *:
    """
    static __attribute__((unused)) const char fs_digits2[201] =     /* "00" .. "99" */
        "0001020304050607080910111213141516171819"
        "2021222324252627282930313233343536373839"
        "4041424344454647484950515253545556575859"
        "6061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    static __attribute__((unused)) const char fs_hex[17] = "0123456789abcdef";
    """
    const char fs_digits2[200]
    const char fs_hex[16]


cdef inline char* _put(char* p, const char* s, Py_ssize_t n) noexcept nogil:
    memcpy(p, s, n)
    return p + n


cdef inline char* _put_var(char* p, const char* s, Py_ssize_t n) noexcept nogil:
    """_put of a length known only when it runs: a short one (most a line holds) in two
    overlapping moves, not a call."""
    cdef uint64_t a, b
    cdef uint32_t c, d
    if n > 16:
        memcpy(p, s, n)
    elif n >= 8:
        memcpy(&a, s, 8)
        memcpy(&b, s + n - 8, 8)
        memcpy(p, &a, 8)
        memcpy(p + n - 8, &b, 8)
    elif n >= 4:
        memcpy(&c, s, 4)
        memcpy(&d, s + n - 4, 4)
        memcpy(p, &c, 4)
        memcpy(p + n - 4, &d, 4)
    elif n > 0:
        p[0] = s[0]
        p[n >> 1] = s[n >> 1]
        p[n - 1] = s[n - 1]
    return p + n


cdef inline bint _plain8(const char* s, bint json) noexcept nogil:
    """None of the 8 bytes at s needs encoding: all ASCII and none below 0x20 (a control
    character is escaped in text lines too), and in JSON no '"' and no '\\' (a byte that wraps
    below 0 sets its high bit; a borrow it passes on only follows such a byte)."""
    cdef uint64_t w, ones = 0x0101010101010101ULL, highs = ones * 0x80
    memcpy(&w, s, 8)
    if not json:
        return ((w | (w - ones * 0x20)) & highs) == 0
    return ((w | (w - ones * 0x20) | ((w ^ (ones * 0x22)) - ones) | ((w ^ (ones * 0x5c)) - ones))
            & highs) == 0


cdef inline char* _put_int(char* p, long long v) noexcept nogil:
    cdef char digits[24]
    cdef int i = 24
    cdef unsigned long long u = <unsigned long long>(-v) if v < 0 else <unsigned long long>v
    if v < 0:
        p[0] = c'-'
        p += 1
    if u < 1000:                        # a status, most sizes: no loop
        if u >= 100:
            return _put_3digits(p, <long long>u)
        if u >= 10:
            p[0], p[1] = fs_digits2[2 * u], fs_digits2[2 * u + 1]
            return p + 2
        p[0] = <char>(c'0' + u)
        return p + 1
    while u >= 100:
        i -= 2
        digits[i], digits[i + 1] = fs_digits2[2 * (u % 100)], fs_digits2[2 * (u % 100) + 1]
        u //= 100
    if u >= 10:
        i -= 2
        digits[i], digits[i + 1] = fs_digits2[2 * u], fs_digits2[2 * u + 1]
    else:
        i -= 1
        digits[i] = <char>(c'0' + u)
    return _put(p, digits + i, 24 - i)


cdef inline char* _put_3digits(char* p, long long v) noexcept nogil:
    """0 <= v < 1000, as three digits."""
    p[0] = <char>(c'0' + v // 100)
    p[1] = fs_digits2[2 * (v % 100)]
    p[2] = fs_digits2[2 * (v % 100) + 1]
    return p + 3


cdef inline char* _put_hex4(char* p, unsigned int c) noexcept nogil:
    p[0] = fs_hex[(c >> 12) & 15]
    p[1] = fs_hex[(c >> 8) & 15]
    p[2] = fs_hex[(c >> 4) & 15]
    p[3] = fs_hex[c & 15]
    return p + 4
