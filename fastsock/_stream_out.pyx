# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A streamed response body, framed into an OutBuffer: by chunks (HTTP/1.1), by the app's
Content-Length (counted: more or fewer bytes cut the connection), or by the close (HTTP/1.0).
The head is gone already when it starts, so it never writes an error response: a body that
fails is cut, so the client sees a broken body rather than one that looks whole."""
from fastsock._writer cimport (
    OutBuffer, write_chunk, write_raw_chunk, write_counted_chunk, write_stream_end, close_stream,
)

import logging
import sys

error_log = logging.getLogger("fastsock.error")

# empty chunks pulled in one go before the others' turn: an empty chunk sends nothing, so no
# send (nor its EPOLLOUT) would come to ask for the next one
cdef int EMPTY_PULLS = 16
STEP_NAMES = tuple([fs_out_step_names[_i].decode("ascii") for _i in range(N_OUT_STEPS)])


cdef StreamOut stream_out(object source, bint pushed, Py_ssize_t owed, bint chunked):
    cdef StreamOut s = StreamOut.__new__(StreamOut)
    s.source, s.pushed, s.left, s.chunked = source, pushed, owed, chunked
    return s


cdef class StreamOut:
    """Attributes in _stream_out.pxd. The Python methods are for tests."""

    def __init__(self, source, Py_ssize_t owed=-1, bint chunked=True):
        self.source, self.left, self.chunked = source, owed, chunked

    cdef int pull(self, OutBuffer out) except -1:
        """Pull chunks until one writes something (the loop sends it before asking for the
        next, so each leaves as soon as it is made: an event stream is not held back), the
        body ends, or EMPTY_PULLS come empty (a polling stream: OUT_QUIET)."""
        cdef Py_ssize_t before = out.pending()
        cdef int _pulls, step
        for _pulls in range(EMPTY_PULLS):
            try:
                chunk = next(self.source)
            except StopIteration:
                return self.end(out)
            except Exception:
                return self.cut(out, "streamed response failed")
            step = self.chunk(out, chunk)
            if step != OUT_GOING or out.pending() != before:
                return step
        return OUT_QUIET

    cdef int chunk(self, OutBuffer out, object chunk) except -1:
        cdef Py_ssize_t n
        try:
            if self.left >= 0:
                n = write_counted_chunk(out, chunk, self.left)
                if n > self.left:       # (cut at the declared length: the rest never goes)
                    self.left = 0
                    return self._broken("more bytes than its Content-Length")
                self.left -= n
            elif self.chunked:
                write_chunk(out, chunk)
            else:
                write_raw_chunk(out, chunk)
        except Exception:
            return self.cut(out, "streamed response yielded an invalid chunk")
        return OUT_GOING

    cdef int end(self, OutBuffer out) except -1:
        if self.left > 0:
            return self._broken("fewer bytes than its Content-Length")
        if self.chunked:
            write_stream_end(out)
        self.close()
        return OUT_DONE

    cdef int _broken(self, str why) except -1:
        """Fewer bytes than declared: what was sent goes out, then the connection closes, so
        the client sees a body shorter than its head said (never one that looks whole)."""
        error_log.error("streamed response: %s (%d bytes still due)", why, self.left)
        self.close()
        return OUT_BROKEN

    cdef int cut(self, OutBuffer out, str why) except -1:
        """Chunked, the good chunks still go out and the terminator never does; delimited by
        the close (HTTP/1.0) any end would look whole, so what is queued is dropped. The
        traceback is logged when an exception is being handled (a pull or chunk that raised);
        one pushed in (Feed.fail) was logged where it was raised: the line alone here."""
        error_log.error(why, exc_info=sys.exc_info()[1] is not None)
        self.close()
        if not self.chunked and self.left < 0:
            out.consume(out.pending())
        return OUT_CUT

    cdef void close(self):
        """Let go of the source, telling it so (its close(): see close_stream)."""
        if self.source is not None:
            source, self.source = self.source, None
            close_stream(source)

    # ---------------------------------------------------------------- Python API, for tests

    def pull_into(self, OutBuffer out):
        """-> the step's name (STEP_NAMES)."""
        return STEP_NAMES[self.pull(out)]

    def chunk_into(self, OutBuffer out, chunk):
        return STEP_NAMES[self.chunk(out, chunk)]

    def end_into(self, OutBuffer out):
        return STEP_NAMES[self.end(out)]

    def cut_into(self, OutBuffer out, str why="cut"):
        return STEP_NAMES[self.cut(out, why)]

    @property
    def open(self):
        """Its source is not let go of yet."""
        return self.source is not None
