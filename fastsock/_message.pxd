# The message the handler sees: Request, Response, and what labels them in the metrics.

# Route ids label requests in the metrics. The server's own routes come first; an app's routes
# are numbered from FIRST_APP_ROUTE by the router. The loop only copies them into counters.
cpdef enum RouteId:
    ROUTE_NONE = 0          # no route matched
    ROUTE_HEALTHZ = 1
    ROUTE_READYZ = 2
    ROUTE_METRICS = 3
    FIRST_APP_ROUTE = 16

# The methods with a name of their own (a request's method_id, a metrics label): ONE table
# gives each its id and name; any other method is M_OTHER.
cdef extern from *:
    """
    #define FS_METHODS(X) \
        X(M_OTHER, "other") X(M_GET, "GET") X(M_HEAD, "HEAD") X(M_POST, "POST") \
        X(M_PUT, "PUT") X(M_DELETE, "DELETE") X(M_PATCH, "PATCH") X(M_OPTIONS, "OPTIONS") \
        X(M_TRACE, "TRACE") X(M_CONNECT, "CONNECT")
    typedef enum {
    #define FS_ENUM(e, name) e,
        FS_METHODS(FS_ENUM)
    #undef FS_ENUM
        N_METHODS
    } fs_method;
    static const char* const fs_method_names[] __attribute__((unused)) = {
    #define FS_NAME(e, name) name,
        FS_METHODS(FS_NAME)
    #undef FS_NAME
    };
    """
    ctypedef enum MethodId "fs_method":
        M_OTHER
        M_GET
        M_HEAD
        M_POST
        M_PUT
        M_DELETE
        M_PATCH
        M_OPTIONS
        M_TRACE
        M_CONNECT
        N_METHODS
    const char* const fs_method_names[]


cdef enum:
    ID_TEXT_ROOM = 32               # an id the server gives: its worker's prefix, a hex number


cdef class Request:
    cdef readonly str method
    cdef readonly str path
    cdef bint is_http11             # else HTTP/1.0
    cdef readonly bytes body
    cdef readonly bint keep_alive
    cdef public object client
    cdef public dict path_params
    cdef readonly int method_id     # index in METHOD_NAMES, 0 for others: a metrics label
    cdef public int route_id        # set by dispatch: a metrics label (ROUTE_NONE: no route)
    # set by the server's dispatch, read by the connection once the response is written:
    cdef public list response_headers   # [(name, value)] added to the response (validated)
    cdef public object on_complete      # callable(req, status, nbytes, seconds) or None
    cdef object _request_id         # the id as set, or as made once read (a str), or None
    # the id the server gave it (id_len 0: none), as its text: the echo and the access log copy
    # it from here; a str is made of it only when req.request_id is read
    cdef char id_text[ID_TEXT_ROOM]
    cdef int id_len
    cdef bytes _head                # the whole head, validated: request line and fields
    cdef Py_ssize_t fields_off      # where the field lines start in _head
    cdef Py_ssize_t path_off, path_len      # the raw path in _head (len 0: "/")
    cdef Py_ssize_t query_off, query_len    # the query in _head (off -1: none)
    # where User-Agent and X-Request-ID sit in _head (-1: absent), for the access log
    cdef Py_ssize_t ua_off, ua_len, rid_off, rid_len
    cdef object _headers
    cdef object _query
    cdef object _state
    cdef public object body_stream  # what req.stream() returns for a streamed body, or None
    cdef object _scheme             # "https" over TLS, or when a trusted proxy says so;
                                    # None: "http"
    cdef public object tls          # its connection's TLS (_tls.TLSInfo), or None
    cdef readonly bint websocket    # Upgrade: websocket (known once raw_headers is read)
    # a WebSocket's handshake: its messages each way and how it closed (0: not yet), for the
    # access log's line when it closes (_wsconn keeps them)
    cdef readonly unsigned long long ws_in, ws_out
    cdef readonly int ws_close

    cdef str _authority(self)


# a dispatch callable the connection calls from C (a vtable call, no Python call): the app's
# dispatcher and the request-id layer are ones
cdef class Dispatcher:
    cpdef object dispatch(self, Request req)


cdef class Response:
    cdef public int status
    cdef public object body          # bytes, or an iterator of chunks (streamed)
    cdef public list headers         # [(name, value), ...] as str
    cdef public str content_type


cdef str method_name(int method_id)
cdef int method_id(const char* p, Py_ssize_t n) noexcept
