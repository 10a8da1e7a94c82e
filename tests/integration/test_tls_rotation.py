"""Certificates that rotate without a restart (issue 23, point 2), over real sockets with 2
workers: files replaced in place and the Kubernetes way (a `..data` symlink swapped to a new
directory) while a kept-alive connection is open; a bad new file kept out; SIGHUP."""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.support.servers import children
from tests.support.tls import (
    Pair, Pki, client_context, connect, request, served_serial, start_tls, tls_metric,
)
from tests.support.waiting import wait_for_log, wait_until

RELOADS = "fastsock_tls_reloads_total"


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


def install(pair: Pair, cert: Path, key: Path) -> None:
    """Each file written beside, then renamed over the old one (an atomic replace)."""
    for src, dst in ((pair.cert, cert), (pair.key, key)):
        shutil.copyfile(src, dst.with_suffix(".new"))
        os.replace(dst.with_suffix(".new"), dst)


def all_new_handshakes_see(server, ca, serial: int, n: int = 12) -> bool:
    """n handshakes in a row (over both workers) get the certificate with this serial."""
    return all(served_serial(server, ca) == serial for _ in range(n))


def keepalive(server, ca):
    s = connect(server, client_context(ca))
    assert request(s, "/")[0] == 200
    return s


def test_files_replaced_in_place_while_a_connection_is_open(serve, pki, tmp_path):
    old, new = pki.issue("a.test"), pki.issue("a.test")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    install(old, cert, key)
    server = start_tls(serve, [Pair(cert, key, old.leaf)])
    assert all_new_handshakes_see(server, pki.ca_path, old.serial)
    kept = keepalive(server, pki.ca_path)
    install(new, cert, key)
    wait_until(lambda: tls_metric(server, RELOADS, result="ok") >= 2, what="both workers "
               "reloaded", server=server)
    assert all_new_handshakes_see(server, pki.ca_path, new.serial)
    # the connection made before goes on, with its own certificate
    assert request(kept, "/")[0] == 200
    assert request(kept, "/tls")[0] == 200
    kept.close()
    wait_for_log(server, "TLS certificate loaded")


def test_kubernetes_secret_symlink_swap(serve, pki, tmp_path):
    """kubelet's layout: tls.crt -> ..data/tls.crt, ..data -> ..2024_01; a renewal writes
    ..2024_02 and renames a new ..data link over the old one."""
    mount = tmp_path / "secret"
    mount.mkdir()
    old, new = pki.issue("a.test"), pki.issue("a.test")

    def version(name: str, pair: Pair) -> None:
        d = mount / name
        d.mkdir()
        shutil.copyfile(pair.cert, d / "tls.crt")
        shutil.copyfile(pair.key, d / "tls.key")
        (mount / "..data_tmp").symlink_to(name)
        os.replace(mount / "..data_tmp", mount / "..data")

    version("..2024_01", old)
    for f in ("tls.crt", "tls.key"):
        (mount / f).symlink_to(f"..data/{f}")
    server = start_tls(serve, [Pair(mount / "tls.crt", mount / "tls.key", old.leaf)])
    kept = keepalive(server, pki.ca_path)
    version("..2024_02", new)
    shutil.rmtree(mount / "..2024_01")
    wait_until(lambda: tls_metric(server, RELOADS, result="ok") >= 2, what="both workers "
               "reloaded", server=server)
    assert all_new_handshakes_see(server, pki.ca_path, new.serial)
    assert request(kept, "/")[0] == 200
    kept.close()


@pytest.mark.parametrize("bad", ["garbage", "key-of-another"])
def test_a_bad_new_file_is_logged_counted_and_the_old_kept(serve, pki, tmp_path, bad):
    old, other = pki.issue("a.test"), pki.issue("a.test")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    install(old, cert, key)
    server = start_tls(serve, [Pair(cert, key, old.leaf)])
    kept = keepalive(server, pki.ca_path)
    if bad == "garbage":
        (tmp_path / "garbage").write_bytes(b"-----BEGIN CERTIFICATE-----\nxx\n" * 3)
        os.replace(tmp_path / "garbage", cert)
    else:
        shutil.copyfile(other.key, tmp_path / "k.new")
        os.replace(tmp_path / "k.new", key)
    wait_until(lambda: tls_metric(server, RELOADS, result="failed") >= 2,
               what="both workers failed to reload", server=server)
    assert tls_metric(server, RELOADS, result="ok") == 0
    wait_for_log(server, "TLS certificates not reloaded, the ones loaded before are kept")
    assert all_new_handshakes_see(server, pki.ca_path, old.serial)
    assert request(kept, "/")[0] == 200
    kept.close()


def test_sighup_new_workers_serve_the_new_certificate(serve, pki, tmp_path):
    old, new = pki.issue("a.test"), pki.issue("a.test")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    install(old, cert, key)
    server = start_tls(serve, [Pair(cert, key, old.leaf)])
    # the port answers once the master listens, maybe before it has forked both workers
    wait_until(lambda: len(set(children(server.proc.pid))) == 2, timeout=30,
               what="both workers started", server=server)
    before = set(children(server.proc.pid))
    install(new, cert, key)
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(set(children(server.proc.pid))) == 2
               and not set(children(server.proc.pid)) & before,
               timeout=30, what="both workers replaced", server=server)
    # the master loaded them (its own log line), so the new workers start with them
    wait_for_log(server, f"[{server.proc.pid}] INFO TLS certificate loaded: {cert}")
    assert all_new_handshakes_see(server, pki.ca_path, new.serial)


def test_sighup_with_a_bad_file_keeps_the_old_certificate(serve, pki, tmp_path):
    old = pki.issue("a.test")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    install(old, cert, key)
    server = start_tls(serve, [Pair(cert, key, old.leaf)])
    wait_until(lambda: len(set(children(server.proc.pid))) == 2, timeout=30,
               what="both workers started", server=server)
    before = set(children(server.proc.pid))
    cert.write_bytes(b"not a certificate")
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(set(children(server.proc.pid))) == 2
               and not set(children(server.proc.pid)) & before,
               timeout=30, what="both workers replaced", server=server)
    assert server.proc.poll() is None
    assert all_new_handshakes_see(server, pki.ca_path, old.serial)
