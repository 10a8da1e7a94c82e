# A response body that streams out: pulled from the app's iterator, or pushed in through a Feed
# (asyncio), framed and written into the connection's OutBuffer. Sans-IO: it never touches a
# socket; each step says what it came to, and the connection changes state by it.

from fastsock._writer cimport OutBuffer

# What one step of a streamed body came to: ONE table gives each its value and its name
# (STEP_NAMES).
cdef extern from *:
    """
    #define FS_OUT_STEPS(X) \
        X(OUT_GOING, "going")   /* more to come */ \
        X(OUT_QUIET, "quiet")   /* only empty chunks for a while: pull again at the loop's next \
                                   turn */ \
        X(OUT_DONE, "done")     /* ended whole (a chunked body's terminator is written) */ \
        X(OUT_BROKEN, "broken") /* broke its Content-Length: the connection is cut \
                                   (CLOSE_LENGTH) */ \
        X(OUT_CUT, "cut")       /* failed or yielded garbage: the connection is cut (CLOSE_ERROR) */
    typedef enum {
    #define FS_ENUM(e, name) e,
        FS_OUT_STEPS(FS_ENUM)
    #undef FS_ENUM
        N_OUT_STEPS
    } fs_out_step;
    static const char* const fs_out_step_names[] __attribute__((unused)) = {
    #define FS_NAME(e, name) name,
        FS_OUT_STEPS(FS_NAME)
    #undef FS_NAME
    };
    """
    ctypedef enum OutStep "fs_out_step":
        OUT_GOING
        OUT_QUIET
        OUT_DONE
        OUT_BROKEN
        OUT_CUT
        N_OUT_STEPS
    const char* const fs_out_step_names[]


cdef class StreamOut:
    cdef object source              # the app's iterator, or the Feed its chunks come through
    cdef readonly bint pushed       # a Feed: chunks are pushed in, never pulled
    cdef readonly bint chunked      # framed as chunks (HTTP/1.1), else by length or close
    cdef readonly Py_ssize_t left   # bytes its Content-Length still owes, or -1 (none)

    cdef int pull(self, OutBuffer out) except -1
    cdef int chunk(self, OutBuffer out, object chunk) except -1
    cdef int end(self, OutBuffer out) except -1
    cdef int cut(self, OutBuffer out, str why) except -1
    cdef int _broken(self, str why) except -1
    cdef void close(self)


cdef StreamOut stream_out(object source, bint pushed, Py_ssize_t owed, bint chunked)
