# Type stubs for the compiled permessage-deflate (RFC 7692).

class PerMessageDeflate:
    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int
    client_max_window_bits: int
    level: int
    mem_level: int
    def __init__(self, server_no_context_takeover: bool = False,
                 client_no_context_takeover: bool = False, server_max_window_bits: int = 15,
                 client_max_window_bits: int = 15, level: int = 1,
                 mem_level: int = 8) -> None: ...
    def compress(self, data: bytes | bytearray | memoryview) -> bytes: ...
    def decompress(self, data: bytes | bytearray | memoryview, cap: int = ...,
                   fin: bool = True) -> tuple[int, bytes]: ...
    def memory(self) -> int: ...

def negotiate(offers: str | bytes | None, *, enabled: bool = True,
              server_max_window_bits: int = 15, client_max_window_bits: int = 15,
              server_no_context_takeover: bool = False, client_no_context_takeover: bool = False,
              level: int = 1, mem_level: int = 8
              ) -> tuple[str, PerMessageDeflate] | tuple[None, None]: ...
