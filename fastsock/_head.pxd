# The request parser's first half: the request head. The parser's results, refusals (one
# table) and states, and HeadParser: the parser's state and the head's methods.
# RequestParser (_parser.pxd) is a HeadParser that also reads the body.

from fastsock._message cimport Request


cdef enum ParseResult:
    NEED_DATA = 0       # feed more bytes
    REQUEST_READY = 1   # a whole request (head and body) is ready: take_request()
    SEND_CONTINUE = 2   # the client waits for "100 Continue" before sending its body
    PARSE_ERROR = 3     # refused: see error; nothing more may be parsed
    HEAD_READY = 4      # announce_heads: a head with a body is in (pending), its body to come

# Why a request was refused: ONE table (an X-macro) gives each error its enum value, name,
# status and metric label; the shared-memory counters are indexed by the enum.
cdef extern from *:
    """
    #define FS_PARSE_ERRORS(X) \
        X(E_NONE, "", 0, "") \
        X(E_HEAD_TOO_LARGE, "request head too large", 431, "request_head_too_large") \
        X(E_BARE_LF, "bare LF", 400, "bare_lf") \
        X(E_EMPTY_LINES, "empty lines before request line", 400, \
          "empty_lines_before_request_line") \
        X(E_REQUEST_LINE_TOO_LONG, "request line too long", 414, "request_line_too_long") \
        X(E_HEADER_BLOCK_TOO_LARGE, "header block too large", 431, "header_block_too_large") \
        X(E_TOO_MANY_FIELDS, "too many header fields", 431, "too_many_header_fields") \
        X(E_INVALID_METHOD, "invalid method", 400, "invalid_method") \
        X(E_INVALID_TARGET, "invalid request target", 400, "invalid_request_target") \
        X(E_INVALID_VERSION, "invalid HTTP version", 400, "invalid_http_version") \
        X(E_UNSUPPORTED_VERSION, "unsupported HTTP version", 505, "unsupported_http_version") \
        X(E_OBS_FOLD, "obs-fold", 400, "obs_fold") \
        X(E_INVALID_FIELD_NAME, "invalid field name", 400, "invalid_field_name") \
        X(E_INVALID_FIELD_VALUE, "invalid character in field value", 400, \
          "invalid_character_in_field_value") \
        X(E_DUPLICATE_HOST, "duplicate Host", 400, "duplicate_host") \
        X(E_INVALID_HOST, "invalid Host", 400, "invalid_host") \
        X(E_MISSING_HOST, "missing Host", 400, "missing_host") \
        X(E_DUPLICATE_CONTENT_LENGTH, "duplicate Content-Length", 400, "duplicate_content_length") \
        X(E_INVALID_CONTENT_LENGTH, "invalid Content-Length", 400, "invalid_content_length") \
        X(E_INVALID_TRANSFER_ENCODING, "invalid Transfer-Encoding", 400, \
          "invalid_transfer_encoding") \
        X(E_CHUNKED_NOT_FINAL, "chunked is not the final coding", 400, \
          "chunked_is_not_the_final_coding") \
        X(E_UNSUPPORTED_CODING, "unsupported transfer coding", 501, "unsupported_transfer_coding") \
        X(E_CL_AND_TE, "both Content-Length and Transfer-Encoding", 400, \
          "both_content_length_and_transfer_encoding") \
        X(E_TE_IN_HTTP10, "Transfer-Encoding in HTTP/1.0", 400, "transfer_encoding_in_http_1_0") \
        X(E_UNSUPPORTED_EXPECTATION, "unsupported expectation", 417, "unsupported_expectation") \
        X(E_BODY_TOO_LARGE, "body too large", 413, "body_too_large") \
        X(E_CHUNK_LINE_TOO_LONG, "chunk size line too long", 400, "chunk_size_line_too_long") \
        X(E_BARE_LF_IN_CHUNK_LINE, "bare LF in chunk size line", 400, \
          "bare_lf_in_chunk_size_line") \
        X(E_BAD_CHUNK_TERMINATOR, "bad chunk terminator", 400, "bad_chunk_terminator") \
        X(E_BARE_LF_IN_TRAILER, "bare LF in trailer", 400, "bare_lf_in_trailer") \
        X(E_TRAILERS_TOO_LARGE, "trailer section too large", 431, "trailer_section_too_large") \
        X(E_INVALID_CHUNK_SIZE, "invalid chunk size", 400, "invalid_chunk_size") \
        X(E_CHUNK_SIZE_OVERFLOW, "chunk size overflow", 400, "chunk_size_overflow") \
        X(E_CHUNK_EXT_TOO_LONG, "chunk extension too long", 400, "chunk_extension_too_long") \
        X(E_INVALID_CHUNK_EXT, "invalid chunk extension", 400, "invalid_chunk_extension")
    typedef enum {
    #define FS_ENUM(e, name, status, label) e,
        FS_PARSE_ERRORS(FS_ENUM)
    #undef FS_ENUM
        N_PARSE_ERRORS
    } fs_parse_error;
    typedef struct { const char* name; int status; const char* label; } fs_error_info;
    static const fs_error_info fs_error_table[] __attribute__((unused)) = {
    #define FS_ROW(e, name, status, label) {name, status, label},
        FS_PARSE_ERRORS(FS_ROW)
    #undef FS_ROW
    };
    """
    ctypedef enum ParseError "fs_parse_error":
        E_NONE
        E_HEAD_TOO_LARGE
        E_BARE_LF
        E_EMPTY_LINES
        E_REQUEST_LINE_TOO_LONG
        E_HEADER_BLOCK_TOO_LARGE
        E_TOO_MANY_FIELDS
        E_INVALID_METHOD
        E_INVALID_TARGET
        E_INVALID_VERSION
        E_UNSUPPORTED_VERSION
        E_OBS_FOLD
        E_INVALID_FIELD_NAME
        E_INVALID_FIELD_VALUE
        E_DUPLICATE_HOST
        E_INVALID_HOST
        E_MISSING_HOST
        E_DUPLICATE_CONTENT_LENGTH
        E_INVALID_CONTENT_LENGTH
        E_INVALID_TRANSFER_ENCODING
        E_CHUNKED_NOT_FINAL
        E_UNSUPPORTED_CODING
        E_CL_AND_TE
        E_TE_IN_HTTP10
        E_UNSUPPORTED_EXPECTATION
        E_BODY_TOO_LARGE
        E_CHUNK_LINE_TOO_LONG
        E_BARE_LF_IN_CHUNK_LINE
        E_BAD_CHUNK_TERMINATOR
        E_BARE_LF_IN_TRAILER
        E_TRAILERS_TOO_LARGE
        E_INVALID_CHUNK_SIZE
        E_CHUNK_SIZE_OVERFLOW
        E_CHUNK_EXT_TOO_LONG
        E_INVALID_CHUNK_EXT
        N_PARSE_ERRORS
    ctypedef struct ErrorInfo "fs_error_info":
        const char* name
        int status
        const char* label
    const ErrorInfo fs_error_table[]


cdef enum ParserState:
    S_HEAD = 0              # reading a request head
    S_BODY_CL = 1           # a body framed by Content-Length          } the body states:
    S_CHUNK_SIZE = 2        # a chunked body: its size line            } in_body() takes
    S_CHUNK_DATA = 3        # ... a chunk's data                       } them as a range,
    S_CHUNK_CRLF = 4        # ... the CRLF after it                    } S_BODY_CL through
    S_TRAILERS = 5          # ... the trailer section after the last   } S_TRAILERS
    S_HEAD_DONE = 6         # announce_heads: the head is in, its body not begun (HEAD_READY)
    S_READY = 7             # a whole request is ready: take_request()
    S_ERROR = 8             # refused: nothing more is parsed


cdef class HeadParser:
    # limits
    cdef Py_ssize_t max_request_line
    cdef Py_ssize_t max_header_bytes
    cdef Py_ssize_t max_header_count
    cdef Py_ssize_t max_body_size
    cdef public bint announce_heads  # stop at HEAD_READY before each body (bodies streamed in)

    cdef ParserState state
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
    cdef Request pending            # the request whose head is in, its body to come
    cdef long long remaining         # CL body bytes still to come, or bytes left in this chunk

    cdef str last_path              # the last path decoded on this connection, to reuse
    cdef readonly ParseError error

    cdef int _fail(self, ParseError error) noexcept
    cdef int _parse_head(self, const char* buf, Py_ssize_t n, Py_ssize_t* end_pos) except -1
    cdef int _request_line(self, const char* p, Py_ssize_t n) noexcept
    cdef int _target_authority(self, const char* p, Py_ssize_t n) noexcept
    cdef int _field_line(self, const char* p, Py_ssize_t n, bint trailer) noexcept
    cdef int _framing_field(self, const char* name, Py_ssize_t nlen,
                            const char* v, Py_ssize_t vlen) noexcept
    cdef int _transfer_encoding(self, const char* v, Py_ssize_t vlen) noexcept
    cdef void _connection_tokens(self, const char* v, Py_ssize_t vlen) noexcept
    cdef int _head_done(self, const char* buf) except -1
