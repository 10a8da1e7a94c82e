# A request's field lines read back out of its validated head (Request's headers, raw_headers
# and cgi_headers): head is the request's head, fields_off where its field lines start.

from libc.string cimport memchr

cdef list split_fields(bytes head, Py_ssize_t fields_off)
cdef list raw_fields(bytes head, Py_ssize_t fields_off, bint* websocket)
cdef dict cgi_fields(bytes head, Py_ssize_t fields_off)


# inline: the field loop of each reader above, and of the WebSocket handshake's checks
cdef inline bint next_field(const char* p, Py_ssize_t n, Py_ssize_t* i, Py_ssize_t* ns,
                            Py_ssize_t* colon, Py_ssize_t* vs, Py_ssize_t* ve) noexcept:
    """The next field line of a validated head from i: its name is p[ns:colon], its value
    p[vs:ve] (the whitespace around it left out); i moves past the line. False at the end."""
    cdef const char* cr
    cdef Py_ssize_t end
    while i[0] < n:
        cr = <const char*>memchr(p + i[0], c'\r', n - i[0])
        end = n if cr == NULL else cr - p
        if end == i[0]:                 # the empty line that ends the head
            i[0] = end + 2
            continue
        ns[0] = colon[0] = i[0]
        while colon[0] < end and p[colon[0]] != c':':
            colon[0] += 1
        vs[0] = colon[0] + 1
        while vs[0] < end and (p[vs[0]] == c' ' or p[vs[0]] == c'\t'):
            vs[0] += 1
        ve[0] = end
        while ve[0] > vs[0] and (p[ve[0] - 1] == c' ' or p[ve[0] - 1] == c'\t'):
            ve[0] -= 1
        i[0] = end + 2
        return True
    return False
