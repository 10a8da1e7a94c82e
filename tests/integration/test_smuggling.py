"""Every malformed or smuggling vector, over a real socket: refused with its status, the
connection closed, and the request hidden behind it never answered."""
import pytest

from tests.support.sockets import read_until_close
from tests.support.vectors import SMUGGLED, VECTORS


@pytest.mark.parametrize("name, raw, status", VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_refused_and_hidden_request_never_answered(server, name, raw, status):
    with server.connect() as s:
        s.sendall(raw + SMUGGLED)
        data = read_until_close(s)          # returns only once the server closes
    assert data.startswith(b"HTTP/1.1 %d " % status), data[:200]
    assert data.count(b"HTTP/1.1 ") == 1
    assert b"Connection: close" in data
    assert b"SMUGGLED" not in data


def test_refusals_are_logged(server):
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        read_until_close(s)
    assert "refused request from 127.0.0.1" in server.log()
    assert "400 duplicate Host" in server.log()


def test_server_still_serves_after_every_vector(server):
    for _, raw, _ in VECTORS:
        with server.connect() as s:
            s.sendall(raw + SMUGGLED)
            read_until_close(s)
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert read_until_close(s).endswith(b"hello")
