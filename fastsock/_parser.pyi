# Type stubs for the compiled request parser.
from fastsock._head import HeadParser
from fastsock._message import Request

# (name, status, metric label) of every parse error, indexed by its value; [0] is "no error"
PARSE_ERRORS: tuple[tuple[str, int, str], ...]

class RequestParser(HeadParser):
    @property
    def error_status(self) -> int: ...
    @property
    def error_reason(self) -> str | None: ...
    def __new__(cls, max_request_line: int = 8192, max_header_bytes: int = 65536,
                max_header_count: int = 100, max_body_size: int = 1048576,
                max_chunk_ext: int = 1024) -> RequestParser: ...
    def feed(self, data: bytes) -> list[Request | str]: ...
