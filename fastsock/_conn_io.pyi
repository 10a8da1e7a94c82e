# Type stubs for the compiled connections' I/O (the Loop's base).
from fastsock._bridge import Bridge

class ConnIO(Bridge): ...
