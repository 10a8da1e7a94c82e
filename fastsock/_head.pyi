# Type stubs for the compiled request head: RequestParser's first half.

class HeadParser:
    error: int
    announce_heads: bool
