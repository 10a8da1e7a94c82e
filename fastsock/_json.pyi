# Type stubs for the compiled JSON encoder.
from typing import Any

def json_encode(value: Any) -> bytes: ...
