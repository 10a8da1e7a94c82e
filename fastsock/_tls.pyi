# Type stubs for the compiled per-connection TLS.
from typing import Any

CIPHERS: tuple[str, ...]
FAILURES: tuple[str, ...]
VERSIONS: tuple[str, ...]

class TLSInfo:
    version: str
    cipher: str
    client_cert: str | None
    client_subject: str | None
    cipher_suite: int
    def asgi(self) -> dict[str, Any]: ...
    def wsgi(self) -> dict[str, str]: ...

class TLSSession: ...
