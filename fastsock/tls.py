"""TLS on the main port: the --tls-* options made into a TLSContext (fastsock._tlsctx), and
its reload. The master makes the first before forking, so every worker starts with one that
loaded; each worker then looks at the files once a few seconds and, when they changed, makes
a new one for new handshakes (open connections keep theirs). A file that does not load is
logged, counted, and the context before it kept. SIGHUP makes the master load them again
before its rolling restart, so the new workers start with the new certificates.
"""
from __future__ import annotations

import logging
import os

from fastsock._tlsctx import TLSContext, TLSError
from fastsock.config import Config

log = logging.getLogger("fastsock.error")

CHECK_EVERY = 2.0       # seconds between looks at the files (a stat each)


def load(config: Config) -> TLSContext | None:
    """The TLS context of the options, or None without --tls-cert. Raises TLSError (a
    ValueError) naming the file or setting OpenSSL refused."""
    certs, keys = config.tls_certificates()
    if not certs:
        return None
    password = None
    if config.tls_key_password_file:
        try:
            with open(config.tls_key_password_file, "rb") as f:
                password = (f.read().splitlines() or [b""])[0]     # its first line
        except OSError as e:
            raise TLSError(f"--tls-key-password-file {config.tls_key_password_file}: "
                           f"{e.strerror}") from None
        if b"\0" in password:
            raise TLSError(f"--tls-key-password-file {config.tls_key_password_file}: holds a "
                           f"NUL")
    return TLSContext(list(zip(certs, keys, strict=True)), password=password,
                      client_ca=config.tls_client_ca, verify=config.tls_verify_client,
                      min_version=config.tls_min_version, ciphers=config.tls_ciphers,
                      ciphersuites=config.tls_ciphersuites, groups=config.tls_groups,
                      tickets=config.tls_session_tickets, ktls=config.tls_ktls)


def _signature(paths: list[str]) -> tuple:
    """What changes when a file is rewritten or its mount's symlink is swapped (Kubernetes)."""
    out: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


class Certificates:
    """One process's current TLS context, and its reload."""

    def __init__(self, config: Config, context: TLSContext):
        self.config, self.context = config, context
        self.files = list(context.files)
        if config.tls_key_password_file:
            self.files.append(config.tls_key_password_file)
        self.seen = _signature(self.files)
        self.next_check = 0.0

    def reload(self) -> bool:
        """Load the files again: -> True when the new context is the current one."""
        self.seen = _signature(self.files)
        try:
            context = load(self.config)
        except (TLSError, OSError) as e:
            log.error("TLS certificates not reloaded, the ones loaded before are kept: %s", e)
            return False
        assert context is not None          # (--tls-cert is set: else no Certificates)
        self.context = context
        for file, subject, not_after in context.certificates:
            log.info("TLS certificate loaded: %s (%s, valid until %s)", file, subject,
                     _utc(not_after))
        return True

    def changed(self, now: float) -> bool:
        """The files differ from when they were last loaded (looked at every CHECK_EVERY)."""
        if now < self.next_check:
            return False
        self.next_check = now + CHECK_EVERY
        return _signature(self.files) != self.seen


def _utc(timestamp: float) -> str:
    import time
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
