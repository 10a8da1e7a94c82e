# The output side of a connection: the serializer that appends responses to its output buffer.

# the buffer is _outbuf's; cimported here, so the writer's users cimport it from here too
from fastsock._outbuf cimport OutBuffer, take_buffer, give_buffer, BUFFER_SIZE


cdef object write_response(OutBuffer out, object result, bint keep_alive, bint head_only,
                           bint http11, list extra_headers, bytes date_line,
                           Py_ssize_t* owed, const char* id_p, Py_ssize_t id_n)
cdef void close_stream(object it)
cdef int write_chunk(OutBuffer out, object chunk) except -1
cdef int write_stream_end(OutBuffer out) except -1
cdef int write_raw_chunk(OutBuffer out, object chunk) except -1
cdef Py_ssize_t write_counted_chunk(OutBuffer out, object chunk, Py_ssize_t left) except -1
cdef int write_continue(OutBuffer out) except -1
cdef int write_error(OutBuffer out, int status, bytes date_line) except -1
