# The WebSocket opening handshake (RFC 6455 §4.2), sans-IO: the request's checks, and the 101.

from fastsock._message cimport Request
from fastsock._outbuf cimport OutBuffer

# 0: a valid opening handshake; else the status to answer (400, or 426 with VERSION_HEADER)
cpdef int check(Request req)
# The 101 head: the accept value, the subprotocol chosen (None: none; the caller has checked
# that the client offered it: choose_subprotocol), the extensions' response (None: none), the
# app's header lines (name, value as str or bytes; checked as the writer checks them, and none
# the server sets itself in a 101: ValueError, with nothing left written), then the Date line
# (unless the app gave a Date) and the blank line.
cdef int write_accept(OutBuffer out, str accept, str subprotocol, str extensions,
                      list extra_headers, bytes date_line) except -1
