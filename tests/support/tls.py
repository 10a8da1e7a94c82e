"""TLS for the tests: certificates made by trustme in a test's tmp dir, a fastsock server
serving them (metrics on a cleartext port of their own, so a scrape is never a handshake it
counts), and Python ssl clients that say what they negotiated."""
from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
import trustme
from cryptography import x509

from tests.support.metrics import samples
from tests.support.servers import free_port
from tests.support.sockets import Reader

TLS_APP = "tests.apps.tls_app:app"


@dataclass
class Pair:
    """A certificate chain file and its key file, and what the certificate says."""
    cert: Path
    key: Path
    leaf: x509.Certificate

    @property
    def serial(self) -> int:
        return self.leaf.serial_number


class Pki:
    """A CA (trustme) writing into a directory: its bundle in ca.pem, pairs it issues beside."""

    def __init__(self, directory: Path, name: str = "ca"):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA(organization_name=f"fastsock tests {name}")
        self.ca_path = self.dir / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self.issued = 0

    def issue(self, *names: str, stem: str | None = None, issuer: trustme.CA | None = None,
              **kw) -> Pair:
        """A server (or client) certificate for names, written as STEM.crt (chain) and STEM.key;
        issuer: an intermediate of this CA (the chain file then holds it too)."""
        self.issued += 1
        stem = stem or f"{names[0] if names else 'leaf'}-{self.issued}"
        leaf = (issuer or self.ca).issue_cert(*names, **kw)
        cert, key = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        return Pair(cert, key, x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()))


def start_tls(serve, pairs: list[Pair], *args: str, workers: int = 2, app: str = TLS_APP,
              **kw):
    """A server on TLS with pairs (the first the default); .metrics_port is cleartext."""
    metrics_port = free_port()
    cli = ["--workers", str(workers), "--metrics-port", str(metrics_port),
           "--tls-cert", ",".join(str(p.cert) for p in pairs),
           "--tls-key", ",".join(str(p.key) for p in pairs), *args]
    server = serve(*cli, app=app, **kw)
    server.metrics_port = metrics_port
    return server


def scrape(server) -> str:
    return httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text


def tls_metric(server, name: str, **labels: str) -> float:
    """The sum of one family's samples whose labels include these."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for key, v in samples(scrape(server), name).items()
               if all(w in key for w in want))


def failures(server, reason: str) -> float:
    return tls_metric(server, "fastsock_tls_handshake_failures_total", reason=reason)


def client_context(ca: Path | None, *, cert: Pair | None = None, alpn: list[str] | None = None,
                   minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None,
                   ciphers: str | None = None, check_hostname: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    else:
        ctx.load_verify_locations(str(ca))
        ctx.check_hostname = check_hostname
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def connect(server, ctx: ssl.SSLContext, name: str | None = "a.test", session=None,
            timeout: float = 10.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=name, session=session)
    except BaseException:
        raw.close()
        raise


def request(sock, path: str = "/", method: str = "GET", body: bytes = b"",
            headers: str = "") -> tuple[int, dict, bytes]:
    head = f"{method} {path} HTTP/1.1\r\nHost: a.test\r\n{headers}"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    sock.sendall(head.encode() + b"\r\n" + body)
    return Reader(sock, timeout=30).response()


def peer(sock: ssl.SSLSocket) -> x509.Certificate:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def peer_names(sock: ssl.SSLSocket) -> list[str]:
    san = peer(sock).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return san.value.get_values_for_type(x509.DNSName)


def served_serial(server, ca: Path | None = None, name: str = "a.test") -> int:
    """The serial of the certificate a new handshake gets."""
    with connect(server, client_context(ca), name) as s:
        return peer(s).serial_number
