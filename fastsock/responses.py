"""The responses the server itself gives: one place, shared by the compiled core and the
Python layer (each is immutable once built, so one object serves every request)."""
from fastsock._message import Response

TEXT = "text/plain; charset=utf-8"

SERVER_ERROR = Response(b"Internal Server Error\n", 500, content_type=TEXT)
GATEWAY_TIMEOUT = Response(b"Gateway Timeout\n", 504, content_type=TEXT)
SHUTTING_DOWN = Response(b"Service Unavailable\n", 503, content_type=TEXT)
POOL_FULL = Response(b"Service Unavailable: every thread is busy\n", 503,
                     headers=[("Retry-After", "1")], content_type=TEXT)
CONCURRENCY_FULL = Response(b"Service Unavailable: too many requests in progress\n", 503,
                            headers=[("Retry-After", "1")], content_type=TEXT)
NOT_FOUND = Response(b"Not Found\n", 404, content_type=TEXT)
HEALTH_OK = Response(b"ok\n", 200, content_type=TEXT)
NOT_READY = Response(b"not ready\n", 503, content_type=TEXT)


def method_not_allowed(allow: str) -> Response:
    """405 with the Allow header RFC 9110 15.5.6 requires."""
    return Response(b"Method Not Allowed\n", 405, headers=[("Allow", allow)], content_type=TEXT)
