cdef object parse_proxy_header(const char* buf, Py_ssize_t n)
