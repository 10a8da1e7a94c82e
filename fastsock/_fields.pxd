# A request's field lines read back out of its validated head (Request's headers, raw_headers
# and cgi_headers): head is the request's head, fields_off where its field lines start.

cdef list split_fields(bytes head, Py_ssize_t fields_off)
cdef list raw_fields(bytes head, Py_ssize_t fields_off, bint* websocket)
cdef dict cgi_fields(bytes head, Py_ssize_t fields_off)
