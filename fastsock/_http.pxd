# Declarations shared by the sans-IO HTTP core (_http.pyx) and the event loop (_loop.pyx).

cdef enum:
    NEED_DATA = 0       # feed more bytes
    REQUEST_READY = 1   # a whole request (head and body) is ready: take_request()
    SEND_CONTINUE = 2   # the client waits for "100 Continue" before sending its body
    PARSE_ERROR = 3     # refused: error_status / error_reason; nothing more may be parsed


cdef class OutBuffer:
    cdef char* data
    cdef Py_ssize_t start       # first byte not yet sent
    cdef Py_ssize_t end         # one past the last byte written
    cdef Py_ssize_t cap
    cdef unsigned long long total   # bytes ever written, for the access log and metrics
    cdef int write(self, const char* src, Py_ssize_t n) except -1
    cdef int write_bytes(self, bytes b) except -1
    cdef void consume(self, Py_ssize_t n) noexcept
    cdef inline Py_ssize_t pending(self) noexcept:
        return self.end - self.start


cdef class Request:
    cdef readonly str method
    cdef readonly str path
    cdef readonly bytes raw_path
    cdef readonly bytes query_string
    cdef readonly str http_version
    cdef readonly bytes body
    cdef readonly bint keep_alive
    cdef public object client
    cdef public dict path_params
    cdef readonly int method_id     # index in METHOD_NAMES, 0 for others: a metrics label
    cdef public int route_id        # set by the router: a metrics label (0: no route matched)
    cdef bytes _head                # the field lines, validated, without the request line
    # where User-Agent and X-Request-ID sit in _head (-1: absent), for the access log
    cdef Py_ssize_t ua_off, ua_len, rid_off, rid_len
    cdef object _headers
    cdef object _query


cdef class Response:
    cdef public int status
    cdef public object body          # bytes, or an iterator of chunks (streamed)
    cdef public list headers         # [(name, value), ...] as str
    cdef public str content_type


cdef class RequestParser:
    # limits
    cdef Py_ssize_t max_request_line
    cdef Py_ssize_t max_header_bytes
    cdef Py_ssize_t max_header_count
    cdef Py_ssize_t max_body_size
    cdef Py_ssize_t max_chunk_ext

    cdef int state
    # head scanning; offsets are relative to the start of the current request's bytes
    cdef Py_ssize_t scan_pos
    cdef Py_ssize_t line_start
    cdef Py_ssize_t head_start      # first byte of the request line (after leading CRLFs)
    cdef Py_ssize_t fields_start    # first byte of the first field line
    cdef Py_ssize_t field_count
    cdef Py_ssize_t method_end
    cdef Py_ssize_t target_end
    cdef int minor                  # HTTP/1.<minor>
    cdef int host_count
    cdef long long content_length   # -1: none
    cdef bint chunked
    cdef bint has_te
    cdef bint conn_close
    cdef bint conn_keep_alive
    cdef bint expect_continue
    cdef Py_ssize_t ua_off, ua_len, rid_off, rid_len
    # body
    cdef Request pending
    cdef long long remaining         # CL body bytes still to come, or bytes left in this chunk
    cdef char* body_buf
    cdef Py_ssize_t body_len
    cdef Py_ssize_t body_cap
    cdef Py_ssize_t trailer_bytes

    cdef object _pybuf              # feed()'s own buffer (tests); the loop keeps its own
    cdef readonly int error_status
    cdef readonly str error_reason

    cdef void _reset(self) noexcept
    cdef int _fail(self, int status, str reason) except -1
    cdef int _parse_head(self, const char* buf, Py_ssize_t n, Py_ssize_t* end_pos) except -1
    cdef int _request_line(self, const char* p, Py_ssize_t n) except -1
    cdef int _field_line(self, const char* p, Py_ssize_t n, bint trailer) except -1
    cdef int _framing_field(self, const char* name, Py_ssize_t nlen, const char* v, Py_ssize_t vlen) except -1
    cdef int _transfer_encoding(self, const char* v, Py_ssize_t vlen) except -1
    cdef void _connection_tokens(self, const char* v, Py_ssize_t vlen) noexcept
    cdef int _head_done(self, const char* buf) except -1
    cdef int _grow_body(self, Py_ssize_t extra) except -1
    cdef int _append_body(self, const char* p, Py_ssize_t n) except -1
    cdef int _body_done(self) except -1
    cdef int _parse_body(self, const char* buf, Py_ssize_t n, Py_ssize_t* pos) except -1
    cdef int _chunk_size_line(self, const char* s, Py_ssize_t n) except -1
    cdef int _chunk_ext(self, const char* s, Py_ssize_t n) except -1
    cdef int parse(self, const char* buf, Py_ssize_t n, Py_ssize_t* consumed) except -1
    cdef Request take_request(self)
    cdef inline bint in_body(self) noexcept:
        return 1 <= self.state <= 5


cdef object write_response(OutBuffer out, object result, bint keep_alive, bint head_only, bint http11,
                          bytes extra=*)
cdef int write_chunk(OutBuffer out, object chunk) except -1
cdef int write_error(OutBuffer out, int status) except -1
cdef void set_date(bytes date_line)
