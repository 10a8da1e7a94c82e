"""TLS options over real sockets (issue 23, point 1): a chain served, the minimum version, the
cipher list, ALPN, SNI, an encrypted key, mutual TLS (native, ASGI, WSGI), and the option
mistakes refused at start. Servers run 2 workers; certificates are trustme's, in tmp dirs."""
from __future__ import annotations

import fcntl
import json
import os
import ssl
import subprocess
import sys
import termios
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.servers import ROOT, free_port
from tests.support.tls import (
    Pki, client_context, connect, failures, peer_names, request, start_tls,
)
from tests.support.waiting import wait_until

V = ssl.TLSVersion


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


@pytest.fixture
def pair(pki):
    return pki.issue("a.test")


def get(server, ctx, path="/", name="a.test"):
    """-> (status, body, what the client negotiated)."""
    with connect(server, ctx, name) as s:
        status, _, body = request(s, path)
        return status, body, SimpleNamespace(
            version=s.version(), cipher=s.cipher()[0], alpn=s.selected_alpn_protocol(),
            names=peer_names(s))


def refused(server, ctx, name="a.test") -> bool:
    """The handshake (or, in TLS 1.3, the first read after it) fails."""
    try:
        with connect(server, ctx, name) as s:
            status, _, _ = request(s, "/")
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    return False


# --- a chain, versions, ciphers, ALPN

def test_https_with_an_intermediate_in_the_chain(serve, pki):
    intermediate = pki.ca.create_child_ca()
    leaf = pki.issue("a.test", issuer=intermediate)
    server = start_tls(serve, [leaf])
    # the client trusts the root only: it verifies because the server sends the intermediate
    status, body, s = get(server, client_context(pki.ca_path), "/tls")
    assert status == 200
    seen = json.loads(body)
    assert seen["scheme"] == "https"
    assert seen["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert seen["tls"]["client_subject"] is None


def test_minimum_version_1_3_refuses_a_tls_1_2_client(serve, pki, pair):
    server = start_tls(serve, [pair], "--tls-min-version", "1.3")
    before = failures(server, "protocol")
    assert refused(server, client_context(pki.ca_path, maximum=V.TLSv1_2))
    wait_until(lambda: failures(server, "protocol") == before + 1, what="counted protocol")
    status, _, s = get(server, client_context(pki.ca_path))
    assert status == 200 and s.version == "TLSv1.3"


def test_minimum_version_from_its_environment_variable(serve, pki, pair):
    server = start_tls(serve, [pair], env={"FASTSOCK_TLS_MIN_VERSION": "1.3"})
    assert refused(server, client_context(pki.ca_path, maximum=V.TLSv1_2))


@pytest.mark.parametrize("version", [V.TLSv1, V.TLSv1_1])
def test_tls_1_0_and_1_1_are_always_refused(serve, pki, pair, version):
    """The client offers only 1.0 or 1.1; it needs OpenSSL's security level 0 to offer them at
    all (Debian's default is 2), and it must reach the server: counted there."""
    server = start_tls(serve, [pair])
    ctx = client_context(pki.ca_path, minimum=version, maximum=version,
                         ciphers="DEFAULT:@SECLEVEL=0")
    before = failures(server, "protocol")
    assert refused(server, ctx)
    wait_until(lambda: failures(server, "protocol") == before + 1, what="counted protocol")


def test_cipher_list_is_honoured(serve, pki, pair):
    server = start_tls(serve, [pair], "--tls-ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384")
    before = failures(server, "protocol")
    outside = client_context(pki.ca_path, maximum=V.TLSv1_2,
                             ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    assert refused(server, outside)
    wait_until(lambda: failures(server, "protocol") == before + 1, what="counted protocol")
    inside = client_context(pki.ca_path, maximum=V.TLSv1_2,
                            ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
    status, body, s = get(server, inside, "/tls")
    assert status == 200
    assert s.cipher == json.loads(body)["tls"]["cipher"] == "ECDHE-ECDSA-AES256-GCM-SHA384"


def test_alpn_offers_only_http_1_1(serve, pki, pair):
    server = start_tls(serve, [pair])
    status, _, s = get(server, client_context(pki.ca_path, alpn=["h2", "http/1.1"]))
    assert status == 200 and s.alpn == "http/1.1"
    before = failures(server, "protocol")
    with pytest.raises(ssl.SSLError, match="no application protocol"):
        connect(server, client_context(pki.ca_path, alpn=["h2"]))
    wait_until(lambda: failures(server, "protocol") == before + 1, what="counted protocol")
    status, _, s = get(server, client_context(pki.ca_path))          # no ALPN: served
    assert status == 200 and s.alpn is None


# --- SNI

def test_sni_chooses_the_certificate_by_name(serve, pki):
    a, b = pki.issue("a.test"), pki.issue("b.test", "*.b.test")
    server = start_tls(serve, [a, b])
    for name, names in (("a.test", ["a.test"]), ("b.test", ["b.test", "*.b.test"]),
                        ("x.b.test", ["b.test", "*.b.test"])):
        status, _, s = get(server, client_context(pki.ca_path), name=name)
        assert status == 200 and s.names == names, name
    # an unknown name, and no name at all: the first certificate
    for name in ("c.test", None):
        status, _, s = get(server, client_context(None), name=name)
        assert status == 200 and s.names == ["a.test"], name


# --- the key's passphrase

def _encrypt_key(pair, password: bytes):
    key = serialization.load_pem_private_key(pair.key.read_bytes(), None)
    pair.key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password)))
    assert b"ENCRYPTED" in pair.key.read_bytes()


def test_encrypted_key_with_its_password_file(serve, pki, pair, tmp_path):
    _encrypt_key(pair, b"s3cret passphrase")
    password = tmp_path / "password"
    password.write_bytes(b"s3cret passphrase\n")        # a final newline is not part of it
    server = start_tls(serve, [pair], "--tls-key-password-file", str(password))
    assert get(server, client_context(pki.ca_path))[0] == 200


def _refusal(tmp_path, *args, tty=False) -> tuple[int, list[str]]:
    """fastsock started with args (stdin: /dev/null, or a terminal of its own where OpenSSL
    could prompt): its exit status and stderr lines, or a failure if it waits for anything."""
    cmd = [sys.executable, "-m", "fastsock", "tests.apps.tls_app:app", "--host", "127.0.0.1",
           "--port", str(free_port()), "--workers", "2", *args]
    if not tty:
        r = subprocess.run(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=30)
        return r.returncode, r.stderr.decode().strip().splitlines()
    master, slave = os.openpty()

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    try:
        r = subprocess.run(cmd, cwd=ROOT, stdin=slave, capture_output=True, timeout=30,
                           preexec_fn=controlling_terminal)
    finally:
        os.close(slave)
        os.close(master)
    return r.returncode, r.stderr.decode().strip().splitlines()


def test_wrong_passphrase_refuses_to_start_in_one_line(pki, pair, tmp_path):
    _encrypt_key(pair, b"right")
    password = tmp_path / "password"
    password.write_bytes(b"wrong")
    code, lines = _refusal(tmp_path, "--tls-cert", str(pair.cert), "--tls-key", str(pair.key),
                           "--tls-key-password-file", str(password))
    assert code == 2 and len(lines) == 1, lines
    assert str(pair.key) in lines[0]


def test_encrypted_key_without_a_password_never_prompts(pki, pair, tmp_path):
    """On a terminal OpenSSL's default is to ask for it; fastsock refuses at once instead."""
    _encrypt_key(pair, b"right")
    code, lines = _refusal(tmp_path, "--tls-cert", str(pair.cert), "--tls-key", str(pair.key),
                           tty=True)
    assert code == 2 and len(lines) == 1, lines
    assert str(pair.key) in lines[0]


# --- option mistakes: exit 2, one line

@pytest.mark.parametrize("case", [
    "verify-without-ca", "key-count", "key-without-cert", "min-1.1", "missing-cert",
    "bad-ciphers", "bad-suites", "bad-groups", "mismatched-key", "garbage-cert",
    "bad-verify-mode", "ca-without-cert"])
def test_bad_option_combinations_exit_2_with_one_line(pki, pair, tmp_path, case):
    other = pki.issue("b.test")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    tls = ["--tls-cert", str(pair.cert), "--tls-key", str(pair.key)]
    args = {
        "verify-without-ca": [*tls, "--tls-verify-client", "required"],
        "key-count": ["--tls-cert", f"{pair.cert},{other.cert}", "--tls-key", str(pair.key)],
        "key-without-cert": ["--tls-key", str(pair.key)],
        "ca-without-cert": ["--tls-client-ca", str(pki.ca_path)],
        "min-1.1": [*tls, "--tls-min-version", "1.1"],
        "missing-cert": ["--tls-cert", str(tmp_path / "nope.crt"), "--tls-key", str(pair.key)],
        "bad-ciphers": [*tls, "--tls-ciphers", "NO-SUCH-CIPHER"],
        "bad-suites": [*tls, "--tls-ciphersuites", "TLS_NO_SUCH_SUITE"],
        "bad-groups": [*tls, "--tls-groups", "nosuchcurve"],
        "mismatched-key": ["--tls-cert", str(pair.cert), "--tls-key", str(other.key)],
        "garbage-cert": ["--tls-cert", str(garbage), "--tls-key", str(pair.key)],
        "bad-verify-mode": [*tls, "--tls-client-ca", str(pki.ca_path),
                            "--tls-verify-client", "sometimes"],
    }[case]
    code, lines = _refusal(tmp_path, *args)
    assert code == 2 and len(lines) == 1, lines
    assert "tls" in lines[0].lower(), lines


# --- mutual TLS

@pytest.fixture
def clients(tmp_path):
    """The CA client certificates are verified against, and another one."""
    return Pki(tmp_path / "clients", "client-ca"), Pki(tmp_path / "strangers", "other-ca")


def _client_cert(pki):
    return pki.issue(common_name="client one", stem="client")


def test_client_certificate_required(serve, pki, pair, clients):
    ours, theirs = clients
    server = start_tls(serve, [pair], "--tls-client-ca", str(ours.ca_path),
                       "--tls-verify-client", "required")
    before = failures(server, "client_certificate")
    assert refused(server, client_context(pki.ca_path))                  # no certificate
    wait_until(lambda: failures(server, "client_certificate") == before + 1,
               what="counted client_certificate")
    assert refused(server, client_context(pki.ca_path, cert=_client_cert(theirs)))
    wait_until(lambda: failures(server, "client_certificate") == before + 2,
               what="counted client_certificate")
    mine = _client_cert(ours)
    status, body, _ = get(server, client_context(pki.ca_path, cert=mine), "/tls")
    assert status == 200
    seen = json.loads(body)["tls"]
    assert "CN=client one" in seen["client_subject"]
    assert seen["client_cert"].strip() == mine.cert.read_text().strip()


def test_client_certificate_optional(serve, pki, pair, clients):
    ours, theirs = clients
    server = start_tls(serve, [pair], "--tls-client-ca", str(ours.ca_path),
                       "--tls-verify-client", "optional")
    status, body, _ = get(server, client_context(pki.ca_path), "/tls")
    assert status == 200
    assert json.loads(body)["tls"]["client_subject"] is None
    status, body, _ = get(server, client_context(pki.ca_path, cert=_client_cert(ours)), "/tls")
    assert status == 200 and "CN=client one" in json.loads(body)["tls"]["client_subject"]
    # optional: a certificate that does not verify is refused, not taken as anonymous (nginx)
    assert refused(server, client_context(pki.ca_path, cert=_client_cert(theirs)))


def test_asgi_scope_has_the_client_certificate(serve, pki, pair, clients):
    ours, _ = clients
    server = start_tls(serve, [pair], "--tls-client-ca", str(ours.ca_path),
                       "--tls-verify-client", "required", "--interface", "asgi",
                       app="tests.apps.tls_app:asgi_app")
    mine = _client_cert(ours)
    status, body, _ = get(server, client_context(pki.ca_path, cert=mine), "/")
    assert status == 200
    seen = json.loads(body)
    assert seen["scheme"] == "https"
    assert "CN=client one" in seen["tls"]["client_cert_name"]
    assert seen["tls"]["client_cert_chain"][0].strip() == mine.cert.read_text().strip()


def test_wsgi_environ_has_the_client_certificate(serve, pki, pair, clients):
    ours, _ = clients
    server = start_tls(serve, [pair], "--tls-client-ca", str(ours.ca_path),
                       "--tls-verify-client", "required", "--interface", "wsgi",
                       app="tests.apps.tls_app:wsgi_app")
    status, body, _ = get(server, client_context(pki.ca_path, cert=_client_cert(ours)), "/")
    assert status == 200
    seen = json.loads(body)
    assert seen["wsgi.url_scheme"] == "https" and seen["HTTPS"] == "on"
    assert "CN=client one" in seen["SSL_CLIENT_S_DN"]
    assert seen["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert "BEGIN CERTIFICATE" in seen["SSL_CLIENT_CERT"]
