"""fastsock: a fast HTTP/1.1 server and micro-framework with a Cython epoll core."""
from fastsock import appmetrics
from fastsock._message import BadRequest, Request, Response
from fastsock.app import App, HTTPError

__all__ = ["App", "BadRequest", "HTTPError", "Request", "Response", "run"]
__version__ = "0.1.0"


def run(app, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """Serve an app from a script; options are Config fields (see `fastsock --help`)."""
    from fastsock.config import Config
    from fastsock.server import serve

    serve(Config(host=host, port=port, **options), app)

# prometheus_client metrics the app defines are summed across workers (see appmetrics)
appmetrics.install()
