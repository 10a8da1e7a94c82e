"""The PROXY protocol parser on its own: bytes in, the client's address out."""
import socket
import struct

import pytest

from fastsock._proxy import ProxyHeaderError, parse


def v2(family: int, body: bytes, command: int = 1) -> bytes:
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20 | command, family])
            + struct.pack("!H", len(body)) + body)


def test_v1_whole_and_in_pieces():
    line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"
    assert parse(line + b"GET /") == (len(line), ("192.0.2.1", 56324))
    for i in range(1, len(line)):
        assert parse(line[:i]) is None                  # not whole yet: wait for more


def test_v2_ipv4_ipv6_local_and_pieces():
    body4 = socket.inet_aton("192.0.2.1") + socket.inet_aton("10.0.0.1") + struct.pack("!HH", 1, 2)
    head = v2(0x11, body4)
    assert parse(head) == (len(head), ("192.0.2.1", 1))
    for i in range(1, len(head)):
        assert parse(head[:i]) is None
    body6 = (socket.inet_pton(socket.AF_INET6, "2001:db8::1")
             + socket.inet_pton(socket.AF_INET6, "2001:db8::2") + struct.pack("!HH", 3, 4))
    assert parse(v2(0x21, body6)) == (52, ("2001:db8::1", 3))
    assert parse(v2(0x11, body4, command=0)) == (28, None)
    assert parse(v2(0x00, b"")) == (16, None)


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
    b"PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n",
    b"PROXY " + b"9" * 120,
    v2(0x31, b"\x00" * 12),
])
def test_malformed_is_refused(data):
    with pytest.raises(ProxyHeaderError):
        parse(data)


def test_a_v1_line_with_non_ascii_bytes_is_refused_as_a_proxy_header_error():
    # found by the fuzzer (fuzz/run.sh): it raised UnicodeDecodeError instead
    with pytest.raises(ProxyHeaderError, match="not ASCII"):
        parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 56324\xff\xff 443\r\n")


def test_error_type():
    with pytest.raises(ProxyHeaderError):
        parse(b"NOPE")
