# RFC 9110's character classes in one table, and the small tests on bytes the parser (head and
# body) and the writer make. Declarations and inline code only: no module of its own.

cdef extern from *:
    """
    #include <string.h>
    /* One table of character classes, one bit per class, filled once per module at import:
       static, so each module that cimports this has its own copy and no symbol is shared. */
    static unsigned char fs_char_class[256];
    enum { FS_TOKEN = 1, FS_FIELD_VALUE = 2, FS_TARGET = 4, FS_HOST = 8 };
    static __attribute__((unused)) void fs_init_char_classes(void) {
        const char* tchar_extra = "!#$%&'*+-.^_`|~";
        const char* host_extra = "-._~!$&'()*+,;=:%[]";
        for (int c = 0; c < 256; c++) {
            int alnum = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
            unsigned char k = 0;
            if (alnum || (c && strchr(tchar_extra, c))) k |= FS_TOKEN;        /* RFC 9110 tchar */
            if (c == 9 || (c >= 32 && c <= 126) || c >= 128) k |= FS_FIELD_VALUE; /* + obs-text */
            if (c >= 33 && c <= 126) k |= FS_TARGET;                          /* visible ASCII */
            if (alnum || (c && strchr(host_extra, c))) k |= FS_HOST;
            fs_char_class[c] = k;
        }
    }
    """
    unsigned char fs_char_class[256]
    enum:
        FS_TOKEN
        FS_FIELD_VALUE
        FS_TARGET
        FS_HOST
    void fs_init_char_classes() noexcept nogil

cdef inline bint is_token(unsigned char c) noexcept nogil:
    return fs_char_class[c] & FS_TOKEN

cdef inline bint is_field_value(unsigned char c) noexcept nogil:
    return fs_char_class[c] & FS_FIELD_VALUE

cdef inline int _lower(int c) noexcept:
    return c + 32 if 65 <= c <= 90 else c

cdef inline bint _eq_ci(const char* p, Py_ssize_t n, const char* lit, Py_ssize_t litn) noexcept:
    """Case-insensitive compare of p[:n] with an all-lowercase literal."""
    cdef Py_ssize_t i
    if n != litn:
        return False
    for i in range(n):
        if _lower(<unsigned char>p[i]) != <unsigned char>lit[i]:
            return False
    return True

cdef inline bint _is_ows(char c) noexcept:
    return c == c' ' or c == c'\t'
