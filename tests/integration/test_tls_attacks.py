"""TLS attacked over real sockets (issue 23): bytes that cross records and reads, clients that
pin a worker, failed handshakes by the thousand (memory), lies and resets mid-stream, operator
typos, a drain with handshakes in flight. Each test says what it holds; servers run
tests/apps/tls_attacks.py on 127.0.0.1, certificates are trustme's."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme

from tests.support.metrics import samples
from tests.support.servers import ROOT, children, free_port
from tests.support.sockets import Reader
from tests.support.tls import failures, scrape
from tests.support.tls import tls_metric as metric
from tests.support.waiting import wait_until

APP = "tests.apps.tls_attacks:app"
MIB = hashlib.shake_256(b"fastsock tls attacks").digest(1 << 16) * 16
OPENSSL = "openssl"


# ---------------------------------------------------------------- helpers

class Pki:
    """A trustme CA and a server certificate for a.test, written under directory."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.ca_path = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        leaf = self.ca.issue_cert("a.test", "localhost", "127.0.0.1")
        self.cert, self.key = directory / "server.crt", directory / "server.key"
        self.cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        self.key.write_bytes(leaf.private_key_pem.bytes())
        self.dir = directory

    def client_pair(self, ca: trustme.CA | None = None) -> tuple[Path, Path]:
        leaf = (ca or self.ca).issue_cert("client@a.test")
        cert, key = self.dir / f"client-{id(leaf)}.crt", self.dir / f"client-{id(leaf)}.key"
        cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        return cert, key


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


def start(serve, pki: Pki, *args: str, workers: int = 2, client: tuple | None = None):
    """A TLS server; its metrics on a cleartext port of their own (a scrape is no handshake)."""
    metrics_port = free_port()
    server = serve("--workers", str(workers), "--metrics-port", str(metrics_port),
                   "--tls-cert", str(pki.cert), "--tls-key", str(pki.key), *args, app=APP)
    server.metrics_port = metrics_port
    wait_until(lambda: len(children(server.proc.pid)) == workers, what="workers", server=server)
    wait_until(lambda: _served(server, pki, client), what="a TLS answer", server=server)
    return server


def _served(server, pki, client: tuple | None = None) -> bool:
    ctx = context(pki)
    if client is not None:
        ctx.load_cert_chain(*map(str, client))
    try:
        with connect(server, pki, ctx) as s:
            return request(s, "/")[2] == b"hello"
    except OSError:
        return False


def context(pki: Pki, **kw) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_path))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def raw_socket(server, rcvbuf: int = 0, nodelay: bool = False,
               timeout: float = 20.0) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", server.port))
    return s


def connect(server, pki: Pki, ctx: ssl.SSLContext | None = None, name: str = "a.test",
            **raw) -> ssl.SSLSocket:
    s = raw_socket(server, **raw)
    try:
        return (ctx or context(pki)).wrap_socket(s, server_hostname=name)
    except BaseException:
        s.close()
        raise


def request(sock, path: str = "/", headers: str = "") -> tuple[int, dict, bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a.test\r\n{headers}\r\n".encode())
    return Reader(sock, timeout=30).response()


def get(path: str, headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: a.test\r\n{headers}\r\n".encode()


def client_hello(pki: Pki, name: str = "a.test", **kw) -> bytes:
    """The bytes of a real ClientHello (Python's ssl, through memory BIOs)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context(pki, **kw).wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def closed_by_server(sock: socket.socket, timeout: float = 30.0) -> bool:
    """Read (and drop) until the server closes or resets: True; False at the timeout."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, ssl.SSLError, ssl.SSLEOFError):
            return True
        except TimeoutError:
            return False
    return False


def workers(server) -> list[int]:
    return sorted(children(server.proc.pid))


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_anon(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


def no_trouble(server) -> None:
    """The worker never crashed, and the log holds no traceback nor OpenSSL's retry error."""
    log = server.log()
    assert "Traceback" not in log, log[-3000:]
    assert "bad write retry" not in log, log[-3000:]
    assert "respawn" not in log.lower() and "died" not in log.lower(), log[-3000:]


def read_chunked_sha(reader: Reader) -> tuple[int, str, int]:
    status, headers, body = reader.response()
    return status, hashlib.sha256(body).hexdigest(), len(body)


# ---------------------------------------------------------------- 1. bytes that cross

def test_two_clients_pipelining_through_one_worker(serve, pki):
    """Two TLS connections, each 5 rounds of 40 requests in one write, on one worker: every
    answer on its own connection, in order."""
    server = start(serve, pki, workers=1)
    a, b = connect(server, pki), connect(server, pki)
    ra, rb = Reader(a, timeout=30), Reader(b, timeout=30)
    for rnd in range(5):
        a.sendall(b"".join(get(f"/n/{rnd * 1000 + i}") for i in range(40)))
        b.sendall(b"".join(get(f"/n/{rnd * 1000 + 500 + i}") for i in range(40)))
        got_a = [ra.response()[2] for _ in range(40)]
        got_b = [rb.response()[2] for _ in range(40)]
        assert got_a == [f"n={rnd * 1000 + i}".encode() for i in range(40)]
        assert got_b == [f"n={rnd * 1000 + 500 + i}".encode() for i in range(40)]
    a.close(), b.close()
    no_trouble(server)


def test_request_heads_in_one_byte_records(serve, pki):
    """Three requests on one connection, every byte of each head its own TLS record (and, with
    TCP_NODELAY, mostly its own segment and read): each answered."""
    server = start(serve, pki, workers=1)
    s = connect(server, pki, nodelay=True)
    reader = Reader(s, timeout=30)
    for i in range(3):
        head = get(f"/n/{i}", headers=f"X-Pad: {'p' * 200}\r\nAccept: */*\r\n")
        for k in range(len(head)):
            assert s.send(head[k:k + 1]) == 1
        assert reader.response()[2] == f"n={i}".encode()
    s.close()
    no_trouble(server)


def test_openssl_records_of_512_bytes_split_a_large_head(serve, pki):
    """openssl s_client -max_send_frag 512: a 6 KB head crosses twelve records."""
    server = start(serve, pki, workers=1)
    head = get("/n/5", headers=f"X-Big: {'b' * 6000}\r\nConnection: close\r\n")
    out = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{server.port}",
                          "-servername", "a.test", "-CAfile", str(pki.ca_path), "-quiet",
                          "-max_send_frag", "512"], input=head, capture_output=True,
                         timeout=30)
    assert b"HTTP/1.1 200" in out.stdout and out.stdout.endswith(b"n=5"), out
    no_trouble(server)


@pytest.mark.parametrize("path", ["/stream/20", "/blob/20"])
def test_pipelined_requests_after_a_20_mib_response(serve, pki, path):
    """20 MiB (streamed, or whole) then 300 small requests, all sent in one go: OpenSSL takes
    the records of those 300 while the response is going out, more than the read buffer holds
    then (plaintext no epoll edge announces): all 301 answered, the large one whole."""
    server = start(serve, pki, workers=1)
    s = connect(server, pki)
    s.sendall(get(path) + b"".join(get(f"/n/{i}") for i in range(300)))
    reader = Reader(s, timeout=30)
    status, headers, body = reader.response()
    assert status == 200 and len(body) == 20 << 20
    assert hashlib.sha256(body).digest() == hashlib.sha256(MIB * 20).digest()
    assert [reader.response()[2] for _ in range(300)] == [f"n={i}".encode() for i in range(300)]
    s.close()
    no_trouble(server)


def test_slow_reader_gets_every_byte_in_order(serve, pki):
    """A client with a small receive window reads 8 MiB whole and 4 MiB streamed slowly, with
    more requests sent while the first answers are half out (partial SSL writes, then more
    output appended behind them): every byte in order, no 'bad write retry'."""
    server = start(serve, pki, workers=1)
    s = connect(server, pki, rcvbuf=4096)
    s.sendall(get("/blob/8") + get("/n/1"))
    first = b""
    while len(first) < 1 << 20:             # a MiB in small reads: the server's writes stall
        chunk = s.recv(4096)
        assert chunk, f"closed after {len(first)} bytes"
        first += chunk
    s.sendall(get("/stream/4") + get("/n/2") + get("/blob/1"))
    reader = Reader(s, timeout=30)
    reader.buf = first
    status, _, body = reader.response()
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(MIB * 8).digest()
    assert reader.response()[2] == b"n=1"
    status, _, body = reader.response()
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(MIB * 4).digest()
    assert reader.response()[2] == b"n=2"
    assert reader.response()[2] == MIB
    s.close()
    no_trouble(server)


# ---------------------------------------------------------------- 2. pinned forever

def test_half_a_client_hello_then_silence(serve, pki):
    """Closed at the handshake deadline, counted timeout."""
    server = start(serve, pki, "--tls-handshake-timeout", "1", workers=1)
    before = failures(server, "timeout")
    hello = client_hello(pki)
    s = raw_socket(server)
    s.sendall(hello[:len(hello) // 2])
    assert closed_by_server(s)
    wait_until(lambda: failures(server, "timeout") == before + 1, what="timeout counted")
    no_trouble(server)


def test_client_hello_then_never_reading(serve, pki):
    """A ClientHello from a client whose receive window is tiny and who never reads the
    ServerHello: closed by the handshake deadline all the same."""
    server = start(serve, pki, "--tls-handshake-timeout", "1", workers=1)
    before = failures(server, "timeout")
    s = raw_socket(server, rcvbuf=1024)
    s.sendall(client_hello(pki))
    wait_until(lambda: failures(server, "timeout") == before + 1, timeout=15,
               what="timeout counted")
    assert closed_by_server(s)
    no_trouble(server)


def test_handshake_cap_holds_and_the_worker_serves(serve, pki):
    """3x --tls-max-handshakes stalled handshakes on one worker: the cap holds (the rest
    closed at once, counted too_many), a kept-alive client is served at once meanwhile, a new
    one as soon as the stalled go away."""
    cap = 8
    server = start(serve, pki, "--tls-max-handshakes", str(cap), "--tls-handshake-timeout", "60",
                   workers=1)
    kept = connect(server, pki)
    assert request(kept, "/n/1")[2] == b"n=1"
    before = failures(server, "too_many")
    hello = client_hello(pki)
    stalled = []
    for _ in range(3 * cap):
        s = raw_socket(server)
        s.sendall(hello[:40])
        stalled.append(s)
    wait_until(lambda: failures(server, "too_many") == before + 2 * cap, what="2*cap refused")
    refused = sum(closed_by_server(s, timeout=0.5) for s in stalled)
    assert refused == 2 * cap               # the first `cap` still wait in their handshake
    assert request(kept, "/n/2")[2] == b"n=2"
    with pytest.raises((ssl.SSLError, OSError)):
        connect(server, pki)                # the cap is full: a new one is refused too
    for s in stalled:
        s.close()
    tries = []

    def served() -> bool:
        tries.append(1)
        return _served(server, pki)
    wait_until(served, what="a new client served")
    # the one refused above, and each try made before the worker saw the stalled go (refused
    # too: the cap still full then)
    refused_tries = len(tries) - 1
    assert before + 2 * cap + 1 <= failures(server, "too_many") \
        <= before + 2 * cap + 1 + refused_tries
    no_trouble(server)


def test_slow_drip_after_the_handshake(serve, pki):
    """The header timeout counts from the handshake's end: a head dripped a byte a while gets
    its 408 at the header timeout, long before the drip ends."""
    server = start(serve, pki, "--header-timeout", "1", "--tls-handshake-timeout", "30",
                   workers=1)
    s = connect(server, pki)
    head = get("/n/1", headers="X-Slow: " + "d" * 100 + "\r\n")
    s.settimeout(0.25)
    got = b""
    for k in range(len(head) - 2):          # ~30 s of drip; the answer comes after ~1 s
        try:
            s.send(head[k:k + 1])
        except OSError:
            break
        try:
            got += s.recv(4096)
            if b"\r\n\r\n" in got:
                break
        except TimeoutError:
            continue
        except (ssl.SSLError, OSError):
            break
    assert got.startswith(b"HTTP/1.1 408"), (k, got)
    assert k < 20
    no_trouble(server)


def test_client_stops_reading_mid_response(serve, pki):
    """The write timer (the keep-alive timeout, renewed at each send) closes a TLS connection
    whose client took 64 KiB of 20 MiB and stopped."""
    server = start(serve, pki, "--keepalive-timeout", "1", workers=1)
    closes = metric(server, "fastsock_connections_closed_total", reason="error")
    s = connect(server, pki, rcvbuf=4096)
    s.sendall(get("/blob/20"))
    taken = 0
    while taken < 1 << 16:
        chunk = s.recv(4096)
        assert chunk, f"closed after {taken} bytes"
        taken += len(chunk)
    wait_until(lambda: metric(server, "fastsock_connections_closed_total", reason="error")
               == closes + 1, timeout=15, what="the stalled connection closed")
    assert closed_by_server(s, timeout=5)
    s.close()
    no_trouble(server)


# ---------------------------------------------------------------- 3. memory

def _read_until_closed(sock: socket.socket) -> None:
    closed_by_server(sock, timeout=10)
    sock.close()


def _memory(pid: int) -> tuple[int, int]:
    return rss_anon(pid), fds(pid)


def test_failed_handshakes_leak_nothing(serve, pki, capsys):
    """2,000 handshakes that fail in five ways (garbage, plain HTTP, TLS 1.1, no shared cipher,
    a client certificate of another CA) on one worker that requires client certificates:
    after a warm-up, its anonymous memory grows < 100 bytes per failure and its fds return."""
    server = start(serve, pki, "--tls-verify-client", "required",
                   "--tls-client-ca", str(pki.ca_path), workers=1, client=pki.client_pair())
    (pid,) = workers(server)
    stranger = pki.client_pair(trustme.CA())
    bad_cert = context(pki)
    bad_cert.load_cert_chain(*map(str, stranger))
    old_ctx = context(pki, minimum_version=ssl.TLSVersion.TLSv1,
                      maximum_version=ssl.TLSVersion.TLSv1_1)
    old_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    old = _hello_of(old_ctx)
    no_cipher_ctx = context(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    no_cipher_ctx.set_ciphers("AES128-SHA")
    no_cipher = _hello_of(no_cipher_ctx)

    def raw(data: bytes) -> None:
        s = raw_socket(server)
        s.sendall(data)
        _read_until_closed(s)

    def client_cert() -> None:
        try:
            with connect(server, pki, bad_cert) as s:
                request(s, "/")
        except (ssl.SSLError, OSError):
            return
        raise AssertionError("a certificate of another CA was accepted")

    kinds = [lambda: raw(os.urandom(64)), lambda: raw(get("/")), lambda: raw(old),
             lambda: raw(no_cipher), client_cert]

    def fail(n: int) -> None:
        for i in range(n):
            kinds[i % len(kinds)]()

    fail(300)                               # warm-up: OpenSSL's and malloc's caches
    before_fail = metric(server, "fastsock_tls_handshake_failures_total")
    wait_until(lambda: metric(server, "fastsock_connections_open") <= 1, what="all closed")
    rss0, fds0 = _memory(pid)
    fail(2000)
    wait_until(lambda: metric(server, "fastsock_connections_open") <= 1, what="all closed")
    rss1, fds1 = _memory(pid)
    failed = metric(server, "fastsock_tls_handshake_failures_total") - before_fail
    by_reason = {k: v for k, v in samples(scrape(server),
                 "fastsock_tls_handshake_failures_total").items() if v}
    with capsys.disabled():
        print(f"\n[failed handshakes] {failed:.0f} failures {by_reason}; RssAnon {rss0} -> "
              f"{rss1} ({(rss1 - rss0) / 2000:+.1f} B/failure); fds {fds0} -> {fds1}")
    assert failed == 2000
    assert fds1 <= fds0 + 1
    assert (rss1 - rss0) / 2000 < 100
    assert _served_with(server, pki, pki.client_pair())
    no_trouble(server)


def _hello_of(ctx: ssl.SSLContext, name: str = "a.test") -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def _served_with(server, pki, pair) -> bool:
    ctx = context(pki)
    ctx.load_cert_chain(*map(str, pair))
    with connect(server, pki, ctx) as s:
        return request(s, "/")[2] == b"hello"


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_resumed_handshakes_leak_nothing(serve, pki, capsys, version):
    """2,000 resumed handshakes (a request each) on one worker: counted resumed, anonymous
    memory grows < 100 bytes each after a warm-up, fds return."""
    server = start(serve, pki, workers=1)
    (pid,) = workers(server)
    tls_version = getattr(ssl.TLSVersion, version)
    ctx = context(pki, minimum_version=tls_version, maximum_version=tls_version)
    with connect(server, pki, ctx) as s:
        assert request(s, "/")[2] == b"hello"
        session = s.session

    def resume(n: int) -> int:
        nonlocal session
        reused = 0
        for _ in range(n):
            raw = raw_socket(server)
            with ctx.wrap_socket(raw, server_hostname="a.test", session=session) as s:
                assert request(s, "/")[2] == b"hello"
                reused += s.session_reused
                session = s.session
        return reused

    assert resume(300) == 300
    wait_until(lambda: metric(server, "fastsock_connections_open") <= 1, what="all closed")
    resumed0 = metric(server, "fastsock_tls_handshakes_total", resumed="true")
    rss0, fds0 = _memory(pid)
    assert resume(2000) == 2000
    wait_until(lambda: metric(server, "fastsock_connections_open") <= 1, what="all closed")
    rss1, fds1 = _memory(pid)
    with capsys.disabled():
        print(f"\n[resumed {version}] RssAnon {rss0} -> {rss1} "
              f"({(rss1 - rss0) / 2000:+.1f} B/handshake); fds {fds0} -> {fds1}")
    assert metric(server, "fastsock_tls_handshakes_total", resumed="true") == resumed0 + 2000
    assert fds1 <= fds0 + 1
    assert (rss1 - rss0) / 2000 < 100
    no_trouble(server)


# ---------------------------------------------------------------- 4. lies and crashes

def _alive(server, pki, pids) -> None:
    assert _served(server, pki)
    assert workers(server) == pids          # no worker died and was replaced
    no_trouble(server)


def test_close_notify_and_alerts_mid_request(serve, pki):
    """Half a request, then close_notify; half a request, then a fatal alert in clear; each
    connection ends, the worker serves on."""
    server = start(serve, pki, workers=1)
    pids = workers(server)
    s = connect(server, pki)
    s.sendall(b"GET /n/1 HTTP/1.1\r\nHo")
    try:
        raw = s.unwrap()                    # close_notify, then the server's (or its close)
        assert closed_by_server(raw)
    except (ssl.SSLError, ConnectionResetError):
        pass                # closed without a close_notify of its own, or after a 400 for
                            # the half request (TLS 1.3 allows it; Python's unwrap does not)
    s.close()
    s = connect(server, pki)
    s.sendall(b"GET /n/1 HTTP/1.1\r\nHo")
    plain = socket.socket(fileno=os.dup(s.fileno()))
    plain.sendall(b"\x15\x03\x03\x00\x02\x02\x28")     # alert(fatal, handshake_failure), clear
    assert closed_by_server(s)
    plain.close(), s.close()
    _alive(server, pki, pids)


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_resets_mid_handshake_and_mid_response(serve, pki):
    """A TCP RST after half a ClientHello, after a whole one, and while 20 MiB go out: each
    closed and counted, the worker serves on."""
    server = start(serve, pki, workers=1)
    pids = workers(server)
    closed = failures(server, "closed")
    hello = client_hello(pki)
    for part in (hello[:30], hello):
        s = raw_socket(server)
        s.sendall(part)
        if part is hello:
            s.recv(1)                       # the ServerHello came: the handshake is half done
        _reset(s)
    wait_until(lambda: failures(server, "closed") == closed + 2, what="two counted closed")
    s = connect(server, pki, rcvbuf=4096)
    s.sendall(get("/blob/20") + get("/stream/20"))
    s.recv(4096)
    _reset(s)
    wait_until(lambda: metric(server, "fastsock_connections_open") <= 1, what="reset closed",
               server=server)
    _alive(server, pki, pids)


class SClient:
    """openssl s_client with its stdout and stderr read by threads; `slow`: stdout read a
    64 KiB piece every 5 ms (a client slower than the server: its socket buffers fill)."""

    def __init__(self, server, pki, *args: str, slow: bool = False):
        import threading
        self.p = subprocess.Popen([OPENSSL, "s_client", "-connect", f"127.0.0.1:{server.port}",
                                   "-servername", "a.test", "-CAfile", str(pki.ca_path),
                                   "-no_ticket", *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = [], []
        self.threads = [threading.Thread(target=self._pump, args=(self.p.stdout, self.out, slow),
                                         daemon=True),
                        threading.Thread(target=self._pump, args=(self.p.stderr, self.err, False),
                                         daemon=True)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _pump(f, into: list, slow: bool) -> None:
        while True:
            data = os.read(f.fileno(), 65536)
            if not data:
                return
            into.append(data)
            if slow:
                time.sleep(0.005)

    def stderr(self) -> bytes:
        return b"".join(self.err)

    def send(self, data: bytes) -> None:
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def finish(self, timeout: float = 120) -> tuple[bytes, bytes]:
        try:
            self.p.wait(timeout=timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
            for t in self.threads:
                t.join(10)
            self.p.stdin.close()
        return b"".join(self.out), self.stderr()


def test_tls12_renegotiation_is_refused(serve, pki):
    """openssl s_client -tls1_2, then "R": refused (no renegotiation), no crash; a request
    after it on the same connection is answered, or the connection is closed."""
    server = start(serve, pki, workers=1)
    pids = workers(server)
    c = SClient(server, pki, "-tls1_2")
    wait_until(lambda: b"Verification: OK" in b"".join(c.out) or b"Verify return code: 0"
               in b"".join(c.out), what="the handshake")
    c.send(b"R\n")
    wait_until(lambda: b"RENEGOTIATING" in c.stderr(), what="s_client renegotiating")
    if c.p.poll() is None:
        try:
            c.send(get("/n/9", headers="Connection: close\r\n"))
        except BrokenPipeError:
            pass
    out, err = c.finish(timeout=30)
    assert b"n=9" in out or b"alert" in err.lower() or b"error" in err.lower(), (out[-500:],
                                                                                err[-1000:])
    _alive(server, pki, pids)


def test_tls13_key_update_while_a_response_streams(serve, pki):
    """openssl s_client -tls1_3: a KeyUpdate that asks for the server's ("K"), then one that
    does not ("k"), while 3,000,000 numbered lines stream to a client slower than the server
    (its answer waits for room to send: the read-wants-write path): every line, in order."""
    server = start(serve, pki, workers=1)
    pids = workers(server)
    n = 3_000_000
    c = SClient(server, pki, "-tls1_3", slow=True)
    sent0 = metric(server, "fastsock_response_bytes_total")
    c.send(get(f"/lines/{n}", headers="Connection: close\r\n"))
    wait_until(lambda: metric(server, "fastsock_response_bytes_total") > sent0 + (1 << 20),
               what="the response under way")
    c.send(b"K\n")
    wait_until(lambda: c.stderr().count(b"KEYUPDATE") == 1, what="the first KeyUpdate")
    c.send(b"k\n")
    wait_until(lambda: c.stderr().count(b"KEYUPDATE") == 2, what="the second KeyUpdate")
    assert metric(server, "fastsock_response_bytes_total") < sent0 + n * 9  # mid-response
    out, err = c.finish()
    assert b"\r\n\r\n" in out, (len(out), out[-300:], err[-1500:])
    # s_client's notes on stdout between reads ("read R BLOCK" as a KeyUpdate is taken)
    body = re.sub(rb"read [RW] BLOCK\n", b"", out[out.index(b"\r\n\r\n") + 4:])
    lines = _dechunk(body).split(b"\n")
    assert lines[-1] == b"" and len(lines) == n + 1, (len(lines), err[-1000:])
    assert all(int(line) == i for i, line in enumerate(lines[:-1]))
    _alive(server, pki, pids)


def _dechunk(body: bytes) -> bytes:
    out, i = [], 0
    while True:
        j = body.index(b"\r\n", i)
        size = int(body[i:j], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[j + 2:j + 2 + size])
        i = j + 2 + size + 2


# a TLS 1.2 ClientHello written by hand: what Python's ssl will not send

def _ext(kind: int, data: bytes) -> bytes:
    return struct.pack("!HH", kind, len(data)) + data


def _v16(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def hand_hello(sni: bytes | None = b"a.test", alpn: list[bytes] | None = None,
               ticket: bytes | None = None) -> bytes:
    exts = b""
    if sni is not None:
        exts += _ext(0, _v16(b"\x00" + _v16(sni)))
    exts += _ext(10, _v16(b"\x00\x1d\x00\x17"))                 # x25519, P-256
    exts += _ext(11, b"\x01\x00")
    exts += _ext(13, _v16(b"\x04\x03\x08\x04\x04\x01"))         # ECDSA, RSA-PSS, RSA SHA-256
    exts += _ext(23, b"")                                       # extended master secret
    if alpn is not None:
        exts += _ext(16, _v16(b"".join(bytes([len(p)]) + p for p in alpn)))
    if ticket is not None:
        exts += _ext(35, ticket)
    body = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32)
            + _v16(b"\xc0\x2b\xc0\x2f\xc0\x2c\xc0\x30") + b"\x01\x00" + _v16(exts))
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + _v16(hs)


def server_flight(server, hello: bytes) -> dict:
    """Send hello; read the server's records until ServerHelloDone, a ChangeCipherSpec, an
    alert or the close: {"types": handshake message types, "alert": description or None}."""
    s = raw_socket(server, timeout=10)
    s.sendall(hello)
    buf, types, alert = b"", [], None
    hs = b""
    try:
        while True:
            while len(buf) >= 5 and len(buf) >= 5 + struct.unpack("!H", buf[3:5])[0]:
                kind, n = buf[0], struct.unpack("!H", buf[3:5])[0]
                payload, buf = buf[5:5 + n], buf[5 + n:]
                if kind == 21:
                    alert = payload[1]
                    return {"types": types, "alert": alert}
                if kind == 20:
                    types.append("ccs")
                    return {"types": types, "alert": alert}
                if kind == 22:
                    hs += payload
                    while len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
                        types.append(hs[0])
                        hs = hs[4 + int.from_bytes(hs[1:4], "big"):]
                        if types[-1] == 14:
                            return {"types": types, "alert": alert}
            data = s.recv(65536)
            if not data:
                return {"types": types, "alert": alert, "closed": True}
            buf += data
    except (TimeoutError, ConnectionResetError):
        return {"types": types, "alert": alert, "closed": True}
    finally:
        s.close()


FULL = [2, 11, 12, 14]          # ServerHello, Certificate, ServerKeyExchange, ServerHelloDone


@pytest.mark.parametrize("case", ["sni255", "sni_nul", "sni_bad_chars", "alpn1000",
                                  "alpn1000_http11_last", "ticket10k_garbage"])
def test_hostile_client_hellos(serve, pki, case):
    """SNI names of 255 bytes, with a NUL, of invalid characters; an ALPN list of 1,000
    protocols (without and with http/1.1 last); a 10 KB garbage session ticket: a full
    handshake with the default certificate or a clean alert — the worker never falls."""
    server = start(serve, pki, workers=1)
    pids = workers(server)
    label = b".".join([b"a" * 63] * 4)[:255]
    protocols = [b"p%04d" % i for i in range(1000)]
    hello, expect = {
        "sni255": (hand_hello(sni=label), "full"),
        "sni_nul": (hand_hello(sni=b"a.test\x00.evil"), "alert"),
        "sni_bad_chars": (hand_hello(sni=b"a b/c\xff\x01.test"), "full"),
        "alpn1000": (hand_hello(alpn=protocols), "alert"),
        "alpn1000_http11_last": (hand_hello(alpn=protocols + [b"http/1.1"]), "full"),
        "ticket10k_garbage": (hand_hello(ticket=os.urandom(10_000)), "full"),
    }[case]
    got = server_flight(server, hello)
    if expect == "full":
        assert got["types"] == FULL and got["alert"] is None, got
    else:
        assert got["alert"] is not None, got
    _alive(server, pki, pids)


def test_forged_ticket_under_an_all_zero_key(serve, pki, tmp_path):
    """A real session of this server (openssl s_client -sess_out), sealed in a ticket under
    an all-zero key name, AES and HMAC key: not taken — a full handshake."""
    from cryptography.hazmat.primitives import hashes, hmac, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    server = start(serve, pki, workers=1)
    sess = tmp_path / "sess.pem"
    subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{server.port}", "-tls1_2",
                    "-servername", "a.test", "-CAfile", str(pki.ca_path), "-sess_out",
                    str(sess)], input=b"", capture_output=True, timeout=30, check=True)
    der = subprocess.run([OPENSSL, "sess_id", "-in", str(sess), "-outform", "DER"],
                         capture_output=True, timeout=30, check=True).stdout
    zero, iv = bytes(32), os.urandom(16)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(zero), modes.CBC(iv)).encryptor()
    sealed = enc.update(padder.update(der) + padder.finalize()) + enc.finalize()
    mac = hmac.HMAC(zero, hashes.SHA256())
    mac.update(bytes(16) + iv + sealed)
    ticket = bytes(16) + iv + sealed + mac.finalize()
    got = server_flight(server, hand_hello(ticket=ticket))
    assert got["types"] == FULL and got["alert"] is None, got


# ---------------------------------------------------------------- 5. operator typos

def _run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastsock", APP, "--host", "127.0.0.1",
                           "--port", str(free_port()), "--workers", "1", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=30, env=os.environ.copy())


def _encrypted_key(pki: Pki) -> Path:
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(pki.key.read_bytes(), None)
    path = pki.dir / "encrypted.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"s3cret")))
    return path


TYPOS = {
    "cert_is_a_directory": (lambda p: ["--tls-cert", str(p.dir), "--tls-key", str(p.key)],
                            "--tls-cert"),
    "cert_is_empty": (lambda p: ["--tls-cert", str(_empty(p)), "--tls-key", str(p.key)],
                      "--tls-cert"),
    "cert_is_a_key": (lambda p: ["--tls-cert", str(p.key), "--tls-key", str(p.key)],
                      "--tls-cert"),
    "count_mismatch": (lambda p: ["--tls-cert", f"{p.cert},{p.cert}", "--tls-key", str(p.key)],
                       "--tls-key"),
    "required_without_ca": (lambda p: ["--tls-cert", str(p.cert), "--tls-key", str(p.key),
                                       "--tls-verify-client", "required"],
                            "--tls-verify-client"),
    "ciphers_garbage": (lambda p: ["--tls-cert", str(p.cert), "--tls-key", str(p.key),
                                   "--tls-ciphers", "garbage"], "--tls-ciphers"),
    "groups_nope": (lambda p: ["--tls-cert", str(p.cert), "--tls-key", str(p.key),
                               "--tls-groups", "nope"], "--tls-groups"),
    "min_version_1_1": (lambda p: ["--tls-cert", str(p.cert), "--tls-key", str(p.key),
                                   "--tls-min-version", "1.1"], "--tls-min-version"),
    "empty_passphrase_file": (lambda p: ["--tls-cert", str(p.cert), "--tls-key",
                                         str(_encrypted_key(p)), "--tls-key-password-file",
                                         str(_empty(p))], "--tls-key-password-file"),
    "with_uds": (lambda p: ["--tls-cert", str(p.cert), "--tls-key", str(p.key),
                            "--uds", str(p.dir / "s.sock")], "--tls-cert"),
}


def _empty(p: Pki) -> Path:
    path = p.dir / "empty"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("typo", sorted(TYPOS))
def test_operator_typos_exit_2_with_one_line(pki, typo):
    """Each typo: exit status 2, one line on stderr that names the option, no traceback."""
    args, option = TYPOS[typo]
    r = _run_cli(*args(pki))
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and option in lines[0], r.stderr


def test_bad_certificate_while_serving_keeps_the_old(serve, pki):
    """The certificate file replaced by garbage while two workers serve: each logs it and
    counts a failed reload, keeps serving the old certificate, and none dies."""
    server = start(serve, pki)
    pids = workers(server)
    failed = metric(server, "fastsock_tls_reloads_total", result="failed")
    serial = _serial(server, pki)
    pki.cert.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    wait_until(lambda: metric(server, "fastsock_tls_reloads_total", result="failed")
               >= failed + 2, timeout=20, what="two failed reloads", server=server)
    assert "not reloaded" in server.log()
    for _ in range(10):
        assert _serial(server, pki) == serial
    assert workers(server) == pids
    no_trouble(server)


def _serial(server, pki) -> int:
    with connect(server, pki) as s:
        der = s.getpeercert(binary_form=True)
    from cryptography import x509
    return x509.load_der_x509_certificate(der).serial_number


# ---------------------------------------------------------------- 6. draining

def test_sigterm_with_handshakes_and_idle_keepalives(serve, pki):
    """SIGTERM while 5 handshakes stall half-way, 5 TLS keep-alives sit idle and 3 requests
    are in flight: the in-flight ones are answered whole, the others closed, and the server
    exits long before --graceful-timeout (30 s) — the stalled handshakes do not hold it."""
    server = start(serve, pki, "--graceful-timeout", "30", "--tls-handshake-timeout", "60",
                   "--keepalive-timeout", "60")
    hello = client_hello(pki)
    stalled = []
    for _ in range(5):
        s = raw_socket(server)
        s.sendall(hello[:40])
        stalled.append(s)
    idle = [connect(server, pki) for _ in range(5)]
    for s in idle:
        assert request(s, "/")[2] == b"hello"
    busy = [connect(server, pki) for _ in range(3)]
    for s in busy:
        s.sendall(get("/async/slow?s=2"))
    wait_until(lambda: metric(server, "fastsock_requests_in_flight") >= 3, what="3 in flight")
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    for s in busy:
        status, headers, body = Reader(s, timeout=30).response()
        assert (status, body) == (200, b"slow done")
    for s in idle + stalled:
        assert closed_by_server(s, timeout=30)
    server.proc.wait(timeout=25)
    took = time.monotonic() - t0
    assert server.proc.returncode == 0, server.log()[-2000:]
    assert took < 15, took                  # a hang guard: far below the graceful timeout
