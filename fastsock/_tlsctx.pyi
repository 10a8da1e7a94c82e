# Type stubs for the compiled TLS listener settings.
from fastsock._shared import SharedState

MAX_CERTIFICATES: int
VERIFY_MODES: dict[str, int]
MIN_VERSIONS: dict[str, int]
TICKET_LIFETIME: int

class TLSError(ValueError): ...

class TLSContext:
    certificates: list[tuple[str, str, float]]
    files: list[str]
    client_verify: bool
    def __init__(self, pairs: list[tuple[str, str]], *, password: bytes | None = None,
                 client_ca: str = "", verify: str = "none", min_version: str = "1.2",
                 ciphers: str = "", ciphersuites: str = "", groups: str = "",
                 tickets: bool = True, ktls: bool = True) -> None: ...

def ticket_key_ring_size() -> int: ...
def fill_ring(shared: SharedState | None = None, all_keys: bool = False) -> None: ...
def use_shared_ticket_keys(shared: SharedState | None) -> None: ...
