# Type stubs for the compiled request ids.
from fastsock._message import Request

ECHO_ID: list[tuple[str, str]]

class RequestIds:
    prefix: str
    def assign(self, req: Request) -> None: ...

def echo_lines_of(req: Request, date_line: bytes) -> bytes | None: ...
