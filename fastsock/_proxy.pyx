# cython: language_level=3, boundscheck=False, wraparound=False
"""PROXY protocol v1 (text) and v2 (binary) headers, as load balancers such as AWS NLB send them
before the first byte of HTTP. Sans-IO: bytes in, the client's address out."""
from libc.string cimport memcmp, memchr

import ipaddress

cdef bytes V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
cdef Py_ssize_t V1_MAX = 107         # the longest v1 line, CRLF included (spec section 2.1)


class ProxyHeaderError(ValueError):
    pass


cdef object parse_proxy_header(const char* buf, Py_ssize_t n):
    """None: need more bytes. (consumed, (host, port) or None for LOCAL/UNKNOWN) when whole.
    Raises ProxyHeaderError for anything that is not a valid header."""
    cdef Py_ssize_t m = min(n, 12)
    if memcmp(buf, <const char*>V2_SIGNATURE, m) == 0:
        return None if n < 16 else _v2(buf, n)
    m = min(n, 6)
    if memcmp(buf, b"PROXY ", m) == 0:
        return _v1(buf, n)
    raise ProxyHeaderError("no PROXY protocol header")


cdef object _v1(const char* buf, Py_ssize_t n):
    cdef const char* nl = <const char*>memchr(buf, b'\n', min(n, V1_MAX))
    if nl == NULL:
        if n >= V1_MAX:
            raise ProxyHeaderError("PROXY v1 line too long")
        return None
    cdef Py_ssize_t end = nl - buf
    if end < 1 or buf[end - 1] != b'\r':
        raise ProxyHeaderError("PROXY v1 line without CRLF")
    try:
        line = buf[:end - 1].decode("ascii", "strict")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 line is not ASCII") from None
    parts = line.split(" ")
    if parts[1:] == ["UNKNOWN"] or (len(parts) >= 2 and parts[1] == "UNKNOWN"):
        return end + 1, None
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("malformed PROXY v1 line")
    _, proto, src, dst, sport, dport = parts
    version = 4 if proto == "TCP4" else 6
    try:
        if ipaddress.ip_address(src).version != version or \
                ipaddress.ip_address(dst).version != version:
            raise ValueError
    except ValueError:
        raise ProxyHeaderError("bad address in PROXY v1 line") from None
    for port in (sport, dport):
        if not port.isdigit() or len(port) > 5 or int(port) > 65535 or \
                (len(port) > 1 and port[0] == "0"):
            raise ProxyHeaderError("bad port in PROXY v1 line")
    return end + 1, (src, int(sport))


cdef object _v2(const char* buf, Py_ssize_t n):
    cdef const unsigned char* b = <const unsigned char*>buf
    cdef int ver_cmd = b[12], fam = b[13]
    cdef Py_ssize_t length = (b[14] << 8) | b[15]
    if ver_cmd >> 4 != 2 or (ver_cmd & 0xF) > 1:
        raise ProxyHeaderError("bad PROXY v2 version or command")
    if n < 16 + length:
        return None
    if (ver_cmd & 0xF) == 0:                # LOCAL: a health check from the balancer itself
        return 16 + length, None
    if fam == 0x11:                         # TCP over IPv4
        if length < 12:
            raise ProxyHeaderError("short PROXY v2 IPv4 block")
        host = str(ipaddress.IPv4Address(bytes(b[16:20])))
        return 16 + length, (host, (b[24] << 8) | b[25])
    if fam == 0x21:                         # TCP over IPv6
        if length < 36:
            raise ProxyHeaderError("short PROXY v2 IPv6 block")
        host = str(ipaddress.IPv6Address(bytes(b[16:32])))
        return 16 + length, (host, (b[48] << 8) | b[49])
    if fam == 0x00:                         # UNSPEC: keep the connection's own address
        return 16 + length, None
    raise ProxyHeaderError("unsupported PROXY v2 address family")


def parse(data: bytes):
    """Python entry, for tests: the same answers as the loop gets."""
    return parse_proxy_header(data, len(data))
