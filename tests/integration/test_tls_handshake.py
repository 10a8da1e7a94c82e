"""The TLS handshake bounded and cheap to refuse (issue 23, point 3), over real sockets: a
deadline, a cap on handshakes under way, plain HTTP and garbage on the TLS port, the PROXY
protocol before the ClientHello, and session resumption across 2 workers."""
from __future__ import annotations

import json
import socket
import ssl
import struct

import pytest

from tests.support.sockets import read_until_close
from tests.support.tls import (
    Pki, client_context, connect, failures, request, start_tls, tls_metric,
)
from tests.support.waiting import wait_until

HANDSHAKES = "fastsock_tls_handshakes_total"


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


@pytest.fixture
def pair(pki):
    return pki.issue("a.test")


def client_hello(ca) -> bytes:
    """A real ClientHello, as a Python ssl client's first flight."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context(ca).wrap_bio(incoming, outgoing, server_hostname="a.test")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 22 and len(hello) > 100
    return hello


def closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    """The server ends the connection (EOF or reset) before timeout, having sent nothing."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


# --- the deadline and the cap

def test_a_stalled_handshake_is_closed_at_its_deadline(serve, pki, pair):
    server = start_tls(serve, [pair], "--tls-handshake-timeout", "0.5")
    before = failures(server, "timeout")
    hello = client_hello(pki.ca_path)
    with server.connect() as silent, server.connect() as half:
        half.sendall(hello[:len(hello) // 2])
        assert closed_by_server(silent) and closed_by_server(half)
    wait_until(lambda: failures(server, "timeout") == before + 2, what="counted timeout")
    assert request(connect(server, client_context(pki.ca_path)), "/")[0] == 200


def test_past_max_handshakes_a_connection_is_closed_at_once(serve, pki, pair):
    """One worker (the cap is per worker); a deadline far longer than the client waits, so
    only the cap can close the third."""
    server = start_tls(serve, [pair], "--tls-max-handshakes", "2", "--tls-handshake-timeout",
                       "60", workers=1)
    hello = client_hello(pki.ca_path)
    before = {r: failures(server, r) for r in ("too_many", "closed")}
    stalled = [server.connect(), server.connect()]
    for s in stalled:
        s.sendall(hello[:50])
    # both taken in by the worker (a fourth would be refused too: the third tells)
    wait_until(lambda: _accepted(server) >= 2, what="2 handshakes under way")
    third = server.connect()
    third.sendall(hello)
    assert closed_by_server(third, timeout=10)
    wait_until(lambda: failures(server, "too_many") == before["too_many"] + 1,
               what="counted too_many")
    third.close()
    for s in stalled:
        s.close()
    wait_until(lambda: failures(server, "closed") == before["closed"] + 2,
               what="the stalled ones gone")
    status, _, _ = request(connect(server, client_context(pki.ca_path)), "/")
    assert status == 200


def _accepted(server) -> float:
    return tls_metric(server, "fastsock_connections_accepted_total")


# --- not TLS

def test_plain_http_on_the_tls_port_gets_400_saying_so(serve, pair):
    server = start_tls(serve, [pair])
    before = failures(server, "plain_http")
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        data = read_until_close(s, timeout=10)        # and closed: else this waits its 10 s
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"plain HTTP request was sent to the HTTPS port" in body
    assert b"connection: close" in head.lower()
    wait_until(lambda: failures(server, "plain_http") == before + 1, what="counted plain_http")


@pytest.mark.parametrize("junk", [
    b"\x00\x01\x02\x03garbage", b"\xff" * 64, b"get / http/1.1\r\n\r\n",
    b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + bytes(37)],     # an SSLv2 ClientHello
    ids=["binary", "ff", "lowercase-http", "sslv2-hello"])
def test_garbage_is_closed_and_counted_not_tls(serve, pair, junk):
    server = start_tls(serve, [pair])
    before = failures(server, "not_tls")
    with server.connect() as s:
        s.sendall(junk)
        assert closed_by_server(s)
    wait_until(lambda: failures(server, "not_tls") == before + 1, what="counted not_tls")


def test_a_broken_record_is_counted_protocol(serve, pair):
    server = start_tls(serve, [pair])
    before = failures(server, "protocol")
    with server.connect() as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello")             # a handshake record of nonsense
        data = read_until_close(s, timeout=10)
    assert data[:1] in (b"", b"\x15")                       # nothing, or an alert
    wait_until(lambda: failures(server, "protocol") == before + 1, what="counted protocol")


# --- the PROXY protocol before the ClientHello

def proxy_v2(src: str, sport: int) -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton("10.0.0.1") + struct.pack("!HH", sport, 443)
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body))
            + body)


@pytest.mark.parametrize("header, client", [
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 443\r\n", ["203.0.113.7", 5555]),
    (proxy_v2("198.51.100.9", 6666), ["198.51.100.9", 6666])], ids=["v1", "v2"])
def test_proxy_protocol_header_before_the_client_hello(serve, pki, pair, header, client):
    server = start_tls(serve, [pair], "--proxy-protocol")
    raw = server.connect()
    raw.sendall(header)
    with client_context(pki.ca_path).wrap_socket(raw, server_hostname="a.test") as s:
        status, _, body = request(s, "/tls")
    assert status == 200
    seen = json.loads(body)
    assert seen["client"] == client and seen["scheme"] == "https"


def test_proxy_protocol_expected_and_missing_is_refused(serve, pki, pair):
    server = start_tls(serve, [pair], "--proxy-protocol")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with connect(server, client_context(pki.ca_path)) as s:
            request(s, "/")


# --- session resumption

def _resume_many(server, ctx, n: int) -> tuple[int, set]:
    """A first full handshake, then n reconnects each offering the session it was given last:
    -> (how many were resumed, the worker pids that answered them)."""
    with connect(server, ctx) as s:
        assert request(s, "/")[0] == 200       # read: TLS 1.3 tickets come after the handshake
        session = s.session
    resumed, pids = 0, set()
    for _ in range(n):
        with connect(server, ctx, session=session) as s:
            status, _, body = request(s, "/tls")
            assert status == 200
            if s.session_reused:
                resumed += 1
                pids.add(json.loads(body)["pid"])
            session = s.session
    return resumed, pids


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_sessions_resume_on_whichever_worker_answers(serve, pki, pair, version):
    server = start_tls(serve, [pair])
    ctx = client_context(pki.ca_path, minimum=version, maximum=version)
    resumed, pids = _resume_many(server, ctx, 30)
    assert resumed == 30
    # 30 resumptions, accepted by whichever worker woke first: both did, else more until they do
    for _ in range(10):
        if len(pids) == 2:
            break
        resumed, more = _resume_many(server, ctx, 30)
        assert resumed == 30
        pids |= more
    assert len(pids) == 2
    wait_until(lambda: tls_metric(server, HANDSHAKES, resumed="true") >= 30,
               what="resumed counted")


def test_no_session_tickets_never_resumes(serve, pki, pair):
    server = start_tls(serve, [pair], "--no-tls-session-tickets")
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_context(pki.ca_path, minimum=version, maximum=version)
        resumed, _ = _resume_many(server, ctx, 5)
        assert resumed == 0
    wait_until(lambda: tls_metric(server, HANDSHAKES, resumed="false") >= 12,
               what="handshakes counted")
    assert tls_metric(server, HANDSHAKES, resumed="true") == 0
