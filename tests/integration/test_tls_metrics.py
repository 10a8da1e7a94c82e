"""TLS metrics as Prometheus scrapes them (issue 23, point 6): handshakes by version, cipher
and resumption, failures for every reason caused here, the certificates' expiry gauges."""
from __future__ import annotations

import datetime
import ssl

from tests.support.metrics import samples
from tests.support.tls import Pki, client_context, connect, request, scrape, start_tls
from tests.support.waiting import wait_until

REASONS = ("timeout", "plain_http", "not_tls", "protocol", "client_certificate", "closed",
           "too_many")
V = ssl.TLSVersion


def _gone(sock) -> bool:
    """The server closed it (EOF, or a reset when our bytes were left unread)."""
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _failures(server) -> dict:
    found = samples(scrape(server), "fastsock_tls_handshake_failures_total")
    return {r: found[f'{{reason="{r}"}}'] for r in REASONS}


def test_handshakes_failures_and_expiry(serve, tmp_path):
    """One worker: --tls-max-handshakes is per worker, and too_many is one of the reasons."""
    pki, clients, strangers = (Pki(tmp_path / d, d) for d in ("pki", "clients", "strangers"))
    a_end = datetime.datetime(2031, 5, 17, 12, 30, 45, tzinfo=datetime.timezone.utc)
    b_end = datetime.datetime(2029, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    a = pki.issue("a.test", not_after=a_end)
    b = pki.issue("b.test", not_after=b_end)
    server = start_tls(serve, [a, b], "--tls-client-ca", str(clients.ca_path),
                       "--tls-verify-client", "optional", "--tls-handshake-timeout", "0.5",
                       "--tls-max-handshakes", "2", workers=1)
    before = _failures(server)
    ca = pki.ca_path

    # handshakes: TLS 1.2 with a chosen cipher, full then resumed; TLS 1.3 twice
    tls12 = client_context(ca, maximum=V.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    with connect(server, tls12) as s:
        assert request(s, "/")[0] == 200
        session = s.session
    with connect(server, tls12, session=session) as s:
        assert request(s, "/")[0] == 200 and s.session_reused
    for _ in range(2):
        with connect(server, client_context(ca, minimum=V.TLSv1_3), "b.test") as s:
            assert request(s, "/")[0] == 200 and s.cipher()[0] == "TLS_AES_256_GCM_SHA384"

    # failures: two silent clients fill the cap (a third: too_many), then time out
    silent = [server.connect(), server.connect()]
    wait_until(lambda: sum(samples(scrape(server), "fastsock_connections_accepted_total")
                           .values()) >= 6, what="the silent ones accepted")
    with server.connect() as third:
        assert _gone(third)
    for s in silent:
        assert _gone(s)                                    # closed at the deadline
        s.close()
    with server.connect() as s:                            # plain_http
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    with server.connect() as s:                            # not_tls
        s.sendall(b"\x00garbage")
        assert _gone(s)
    server.connect().close()                               # closed
    old = client_context(ca, minimum=V.TLSv1_1, maximum=V.TLSv1_1,
                         ciphers="DEFAULT:@SECLEVEL=0")
    for ctx in (old, client_context(ca, cert=strangers.issue(common_name="x"))):
        try:                                               # protocol, client_certificate
            with connect(server, ctx) as s:
                request(s, "/")
            raise AssertionError("served")
        except (ssl.SSLError, ConnectionError):
            pass
    expected = {"timeout": 2, "plain_http": 1, "not_tls": 1, "protocol": 1,
                "client_certificate": 1, "closed": 1, "too_many": 1}
    wait_until(lambda: _failures(server) == {r: before[r] + expected[r] for r in REASONS},
               what=f"failures {expected}", server=server)

    text = scrape(server)
    handshakes = samples(text, "fastsock_tls_handshakes_total")
    assert handshakes == {
        '{cipher="ECDHE-ECDSA-AES128-GCM-SHA256",resumed="false",version="TLSv1.2"}': 1.0,
        '{cipher="ECDHE-ECDSA-AES128-GCM-SHA256",resumed="true",version="TLSv1.2"}': 1.0,
        '{cipher="TLS_AES_256_GCM_SHA384",resumed="false",version="TLSv1.3"}': 2.0}
    expiry = samples(text, "fastsock_tls_certificate_expiry_timestamp_seconds")
    assert expiry == {
        f'{{file="{a.cert}",subject="{a.leaf.subject.rfc4514_string()}"}}': a_end.timestamp(),
        f'{{file="{b.cert}",subject="{b.leaf.subject.rfc4514_string()}"}}': b_end.timestamp()}
    ktls = samples(text, "fastsock_tls_ktls_total")
    assert set(ktls) == {'{direction="send"}', '{direction="recv"}'}
    assert all(0 <= n <= 4 for n in ktls.values())
