# JSON for a handler's dict or list, encoded in C (Response and the writer call it).

cdef bytes json_bytes(object value)
