# Type stubs for the compiled accept policy (used by the loop only).

class AcceptPolicy:
    nudge_fd: int
