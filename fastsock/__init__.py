"""fastsock: a fast HTTP/1.1 server and micro-framework with a Cython epoll core."""
from fastsock import appmetrics
from fastsock._http import Request, Response
from fastsock.app import App, HTTPError

__all__ = ["App", "HTTPError", "Request", "Response"]
__version__ = "0.1.0"

# prometheus_client metrics the app defines are summed across workers (see appmetrics)
appmetrics.install()
