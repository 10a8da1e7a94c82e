"""Operating fastsock: access logs, proxies, PROXY protocol, Unix sockets, socket activation,
(running as PID 1: tests/system/test_pid1.py)."""
import json
import os
import socket
import struct
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.servers import ROOT, free_port
from tests.support.sockets import read_until_close


def wait_for_log(server, text, timeout=5.0, stream="stdout"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = server.stdout() if stream == "stdout" else server.log()
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in the {stream} log")


# ---------------------------------------------------------------- access log

def test_json_access_log_lines_parse_and_request_ids_echo(serve):
    server = serve("--access-log", "json")
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/users/7?x=1", headers={"User-Agent": "probe/1.0", "X-Request-ID": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        r2 = c.post("/echo", content=b"12345")
        generated = r2.headers["x-request-id"]
        assert generated
        c.get("/healthz")
        c.get("/missing")
    wait_for_log(server, '"path":"/missing"')
    lines = [json.loads(line) for line in server.stdout().splitlines()]
    assert [l["path"] for l in lines] == ["/users/7", "/echo", "/missing"]   # no /healthz
    first, second, third = lines
    assert first["method"] == "GET" and first["status"] == 200
    assert first["user_agent"] == "probe/1.0" and first["request_id"] == "abc-123"
    assert first["client"] == "127.0.0.1" and first["bytes"] > 0
    assert first["duration_ms"] >= 0 and first["time"].endswith("Z")
    assert second["request_id"] == generated and second["method"] == "POST"
    assert third["status"] == 404
    assert "fastsock serving" not in server.stdout()         # the error log is on stderr
    assert "fastsock serving" in server.log()


def test_text_access_log_and_health_when_asked(serve):
    server = serve("--access-log", "text", "--log-health")
    server.get("/healthz", headers={"User-Agent": "kube-probe/1.30"})
    server.get("/n/4")
    out = wait_for_log(server, "/n/4")
    assert '"GET /healthz HTTP/1.1" 200' in out and '"kube-probe/1.30"' in out
    assert '"GET /n/4 HTTP/1.1" 200 ' in out


def test_access_log_off_by_default(serve):
    server = serve()
    assert "x-request-id" not in server.get("/").headers
    assert server.stop() == 0           # a stopped worker has flushed whatever it logged
    assert server.stdout() == ""


# ---------------------------------------------------------------- behind proxies

def client_seen(server, headers):
    return server.get("/inspect", headers=headers).json()["client"][0]


def test_forwarded_headers_ignored_from_untrusted_peer(serve):
    server = serve("--forwarded-allow-ips", "10.0.0.0/8")
    assert client_seen(server, {"X-Forwarded-For": "203.0.113.9"}) == "127.0.0.1"
    assert client_seen(server, {"Forwarded": "for=203.0.113.9"}) == "127.0.0.1"
    server = serve()                                         # default: nobody is trusted
    assert client_seen(server, {"X-Forwarded-For": "203.0.113.9"}) == "127.0.0.1"


def test_the_peer_address_is_the_clients_over_ipv4_and_ipv6(serve, tmp_path):
    # the connection keeps accept()'s address in 28 bytes (a sockaddr_in6): both families
    assert client_seen(serve(), {}) == "127.0.0.1"
    port = free_port()
    with open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "fastsock", "tests.apps.native:app",
                                 "--host", "::1", "--port", str(port), "--workers", "2"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (tmp_path / "err").read_text()
            try:
                with socket.create_connection(("::1", port), timeout=1) as s:
                    local = s.getsockname()[1]
                    s.sendall(b"GET /inspect HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    body = read_until_close(s).partition(b"\r\n\r\n")[2]
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "no server on [::1]"
                time.sleep(0.05)
        assert json.loads(body)["client"] == ["::1", local]
    finally:
        proc.terminate()
        proc.wait(10)


def test_an_ipv4_proxy_on_a_dual_stack_listener_is_trusted_as_its_ipv4_address(tmp_path):
    # --host :: takes IPv4 clients too, as IPv4-mapped IPv6 peers (::ffff:127.0.0.1): the
    # operator's --forwarded-allow-ips names them as IPv4 (127.0.0.1, 10.0.0.0/8) and must
    # still trust them; req.client stays what accept() gave
    port = free_port()
    with open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "fastsock", "tests.apps.native:app",
                                 "--host", "::", "--port", str(port), "--workers", "2",
                                 "--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)

    def client(xff: str) -> list:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /inspect HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      b"X-Forwarded-For: " + xff.encode() + b"\r\n\r\n")
            return json.loads(read_until_close(s).partition(b"\r\n\r\n")[2])["client"]
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (tmp_path / "err").read_text()
            try:
                seen = client("203.0.113.9")
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "no server on [::]"
                time.sleep(0.05)
        assert seen == ["203.0.113.9", 0]
        # a mapped hop in the chain is a trusted proxy too
        assert client("198.51.100.4, ::ffff:10.1.2.3")[0] == "198.51.100.4"
        assert client("")[0] == "::ffff:127.0.0.1"
    finally:
        proc.terminate()
        proc.wait(10)


def test_forwarded_headers_from_trusted_peer(serve):
    server = serve("--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8", "--access-log", "json")
    assert client_seen(server, {"X-Forwarded-For": "203.0.113.9"}) == "203.0.113.9"
    # a chain: the nearest untrusted hop is the client; what lies beyond it is not believed
    assert client_seen(server, {"X-Forwarded-For": "1.1.1.1, 203.0.113.9, 10.1.2.3"}) == \
        "203.0.113.9"
    assert client_seen(server, {"Forwarded": 'for="[2001:db8::1]:4711";proto=https'}) == \
        "2001:db8::1"
    out = wait_for_log(server, "2001:db8::1")
    assert '"client":"203.0.113.9"' in out


# ---------------------------------------------------------------- PROXY protocol

def proxy_v2(src: str, sport: int, command: int = 1) -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton("10.0.0.1") + struct.pack("!HH", sport, 80)
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20 | command, 0x11])
            + struct.pack("!H", len(body) + 7) + body + b"\x04\x00\x04abcd")   # one TLV


def inspect_over(server, preface: bytes):
    with server.connect() as s:
        s.sendall(preface + b"GET /inspect HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = read_until_close(s)
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def test_proxy_protocol_v1_and_v2(serve):
    server = serve("--proxy-protocol", "--forwarded-allow-ips", "127.0.0.1")
    _, body = inspect_over(server, b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\n")
    assert json.loads(body)["client"] == ["203.0.113.7", 5555]
    _, body = inspect_over(server, b"PROXY TCP6 2001:db8::7 2001:db8::1 6666 80\r\n")
    assert json.loads(body)["client"] == ["2001:db8::7", 6666]
    _, body = inspect_over(server, proxy_v2("198.51.100.4", 4444))
    assert json.loads(body)["client"] == ["198.51.100.4", 4444]
    _, body = inspect_over(server, proxy_v2("198.51.100.4", 4444, command=0))   # LOCAL
    assert json.loads(body)["client"][0] == "127.0.0.1"
    _, body = inspect_over(server, b"PROXY UNKNOWN\r\n")
    assert json.loads(body)["client"][0] == "127.0.0.1"
    # the balancer's word wins over a header the client wrote
    with server.connect() as s:
        s.sendall(b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\nGET /inspect HTTP/1.1\r\n"
                  b"Host: t\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n")
        assert b'"203.0.113.7"' in read_until_close(s)


@pytest.mark.parametrize("preface", [
    b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",                       # no header at all
    b"PROXY TCP4 203.0.113.7 10.0.0.1 5555\r\n",                # a field missing
    b"PROXY TCP4 999.0.113.7 10.0.0.1 5555 80\r\n",             # not an address
    b"PROXY TCP4 2001:db8::7 10.0.0.1 5555 80\r\n",             # family mismatch
    b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 99999\r\n",          # port out of range
    b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\n",               # bare LF
    b"PROXY " + b"x" * 200 + b"\r\n",                           # longer than v1 allows
    b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + b"\x00" * 12,   # v2 with version 3
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04" + b"\x00" * 4,    # v2 block too short
])
def test_malformed_proxy_header_is_refused(serve, preface):
    server = serve("--proxy-protocol")
    with server.connect() as s:
        s.sendall(preface + b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_until_close(s) == b""
    assert "refused connection" in server.log()


# ---------------------------------------------------------------- sockets

def test_unix_socket(serve, tmp_path):
    path = str(tmp_path / "fastsock.sock")
    stale = socket.socket(socket.AF_UNIX)           # a socket file left by an earlier run
    stale.bind(path)
    stale.close()
    r = None
    proc = subprocess.Popen([sys.executable, "-m", "fastsock", "tests.apps.native:app", "--uds", path,
                             "--workers", "1"], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                transport = httpx.HTTPTransport(uds=path)
                r = httpx.Client(transport=transport).get("http://fastsock/inspect")
                break
            except (httpx.ConnectError, FileNotFoundError):
                time.sleep(0.05)
        assert r.status_code == 200
        assert r.json()["path"] == "/inspect"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_systemd_socket_activation(tmp_path):
    import fcntl
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = fcntl.fcntl(listener.fileno(), fcntl.F_DUPFD, 10)     # out of the way of fd 3
    listener.close()
    # as systemd does: the socket at fd 3, LISTEN_FDS=1, LISTEN_PID naming the process that
    # takes it (bash sets it to its own pid, then execs fastsock under that pid)
    # the metrics port is bound by fastsock itself beside the socket it is given, as on EC2
    metrics_port = free_port()
    proc = subprocess.Popen(
        ["bash", "-c", f'exec 3<&{fd} {fd}<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec "{sys.executable}" '
                     f'-m fastsock tests.apps.native:app --port 1 --workers 1 --host 127.0.0.1 '
                     f'--metrics-port {metrics_port}'],
        cwd=ROOT, pass_fds=(fd,), stderr=subprocess.PIPE)
    os.close(fd)
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert r.text == "hello"
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 404
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert metrics.status_code == 200 and "fastsock_requests_total" in metrics.text
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    assert b"on http://127.0.0.1:%d" % port in proc.stderr.read()
