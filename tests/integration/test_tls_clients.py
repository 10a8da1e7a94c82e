"""Clients no one here wrote, over TLS (issue 23, point 5): curl, openssl s_client, httpx,
Python's ssl, the websockets client (wss); and the paths big bodies take through records:
20 MiB each way, a reader slower than the writer, pipelined requests in one TLS write."""
from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.apps.tls_app import BLOB_SHA256
from tests.support.sockets import Reader
from tests.support.tls import Pki, client_context, connect, request, start_tls
from tests.support.tools import need

REQUEST = b"GET /tls HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
MIB20 = 20 << 20


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


@pytest.fixture
def mtls(serve, pki, tmp_path):
    """A server that requires client certificates of the CA `clients`, and one of them."""
    clients = Pki(tmp_path / "clients", "client-ca")
    server = start_tls(serve, [pki.issue("a.test", "127.0.0.1")], "--tls-client-ca",
                       str(clients.ca_path), "--tls-verify-client", "required")
    return server, clients.issue(common_name="curl client", stem="client")


@pytest.fixture
def server(serve, pki):
    return start_tls(serve, [pki.issue("a.test", "127.0.0.1")])


def curl(server, pki, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [need("curl", "Debian's curl"), "-sS", "--max-time", "20", "--cacert", str(pki.ca_path),
         "--resolve", f"a.test:{server.port}:127.0.0.1", *args,
         f"https://a.test:{server.port}/tls"], capture_output=True, text=True, timeout=30)


def test_curl(server, pki):
    r = curl(server, pki, "--http1.1")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["scheme"] == "https"
    r = curl(server, pki, "--http2")                    # asks h2 by ALPN, gets http/1.1
    assert r.returncode == 0 and json.loads(r.stdout)["tls"]["version"] == "TLSv1.3"


def test_curl_with_and_without_a_client_certificate(mtls, pki):
    server, mine = mtls
    r = curl(server, pki, "--cert", str(mine.cert), "--key", str(mine.key))
    assert r.returncode == 0, r.stderr
    assert "CN=curl client" in json.loads(r.stdout)["tls"]["client_subject"]
    r = curl(server, pki)
    assert r.returncode != 0 and r.stdout == ""


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_openssl_s_client(server, pki, version):
    r = subprocess.run(
        [need("openssl", "Debian's openssl"), "s_client", "-connect", f"127.0.0.1:{server.port}",
         "-servername", "a.test", "-alpn", "http/1.1", version, "-CAfile", str(pki.ca_path),
         "-verify_return_error", "-brief", "-ign_eof"],
        input=REQUEST, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert b"HTTP/1.1 200 " in r.stdout
    want = {"-tls1_2": "TLSv1.2", "-tls1_3": "TLSv1.3"}[version]
    assert f"Protocol version: {want}".encode() in r.stderr
    assert json.loads(r.stdout.partition(b"\r\n\r\n")[2])["tls"]["version"] == want


def test_openssl_s_client_with_a_client_certificate(mtls, pki):
    server, mine = mtls
    r = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername", "a.test",
         "-CAfile", str(pki.ca_path), "-cert", str(mine.cert), "-key", str(mine.key),
         "-verify_return_error", "-brief", "-ign_eof"],
        input=REQUEST, capture_output=True, timeout=30)
    assert b"HTTP/1.1 200 " in r.stdout, r.stderr


def test_httpx(server, pki, mtls):
    r = httpx.get(f"https://127.0.0.1:{server.port}/tls", verify=client_context(pki.ca_path))
    assert r.status_code == 200 and r.json()["scheme"] == "https"
    with_cert, mine = mtls
    r = httpx.get(f"https://127.0.0.1:{with_cert.port}/tls",
                  verify=client_context(pki.ca_path, cert=mine))
    assert r.status_code == 200 and "CN=curl client" in r.json()["tls"]["client_subject"]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"https://127.0.0.1:{with_cert.port}/tls",
                  verify=client_context(pki.ca_path))


def test_python_ssl(server, pki):
    with connect(server, client_context(pki.ca_path)) as s:
        for _ in range(3):                                  # kept alive
            status, _, body = request(s, "/tls")
            assert status == 200 and json.loads(body)["tls"]["version"] == s.version()


def test_websocket_over_tls(server, pki):
    ctx = client_context(pki.ca_path)
    with ws_connect(f"wss://127.0.0.1:{server.port}/ws", ssl=ctx, max_size=None) as ws:
        for message in ("hello", b"\x00\xffbinary", "x" * 200_000, bytes(range(256)) * 4000):
            ws.send(message)
            assert ws.recv(timeout=10) == message


# --- bodies through records

def test_20_mib_upload_streamed(server, pki):
    body = hashlib.shake_256(b"upload").digest(1 << 16) * 320
    with connect(server, client_context(pki.ca_path), timeout=60) as s:
        status, _, answer = request(s, "/sha256", "POST", body)
    assert status == 200
    assert json.loads(answer) == {"bytes": MIB20, "sha256": hashlib.sha256(body).hexdigest()}


def test_20_mib_download_read_slowly(server, pki):
    """A small receive buffer read in small pieces: the server's writes stop part way
    (EAGAIN in OpenSSL) many times."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(60)
    raw.connect(("127.0.0.1", server.port))
    with client_context(pki.ca_path).wrap_socket(raw, server_hostname="a.test") as s:
        s.sendall(b"GET /blob HTTP/1.1\r\nHost: a.test\r\n\r\n")
        reader = Reader(s, timeout=60)
        status, headers, body = reader.response()
        assert status == 200 and len(body) == MIB20
        assert hashlib.sha256(body).hexdigest() == headers["x-sha256"] == BLOB_SHA256
        assert request(s, "/")[0] == 200                   # the connection goes on after it


def test_pipelined_requests_in_one_tls_write(server, pki):
    with connect(server, client_context(pki.ca_path)) as s:
        s.sendall(b"".join(f"GET /tls?i={i} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode()
                           for i in range(50)) + b"POST /sha256 HTTP/1.1\r\nHost: a.test\r\n"
                  b"Content-Length: 5\r\n\r\nhello")
        reader = Reader(s, timeout=30)
        for _ in range(50):
            status, _, body = reader.response()
            assert status == 200 and json.loads(body)["scheme"] == "https"
        status, _, body = reader.response()
        assert json.loads(body)["sha256"] == hashlib.sha256(b"hello").hexdigest()
