"""fastsock: a fast HTTP/1.1 server and micro-framework with a Cython epoll core."""
from fastsock._message import BadRequest, Request, Response
from fastsock.app import App, HTTPError
from fastsock.version import __version__ as __version__  # (re-exported)

__all__ = ["App", "BadRequest", "HTTPError", "Request", "Response", "run"]


def run(app, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """Serve an app from a script; options are Config fields (see `fastsock --help`)."""
    from fastsock.config import Config
    from fastsock.server import serve  # the server only when one is started

    serve(Config(host=host, port=port, **options), app)
