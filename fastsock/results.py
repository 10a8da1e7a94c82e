"""What a handler's outcome becomes on the wire: its result made into something the writer
sends, the exception it raised into an error response."""
from __future__ import annotations

import logging

from fastsock._message import BadRequest, Response
from fastsock.responses import POOL_FULL, SERVER_ERROR, TEXT

error_log = logging.getLogger("fastsock.error")


class HTTPError(Exception):
    """Raise from a handler to answer with a status: `raise HTTPError(403, "no")`."""

    def __init__(self, status: int, body="", headers=None):
        super().__init__(status, body)
        self.status, self.body, self.headers = status, body, headers


def to_response(result):
    """What a handler may return, made into something the writer sends: str, bytes,
    dict/list (JSON) and Response go as they are. What cannot be sent raises TypeError naming
    its type (a 500, before anything is sent)."""
    t = type(result)
    if t is str or t is bytes or t is Response or t is dict or t is list:
        return result
    if t is tuple:
        if not 2 <= len(result) <= 3:
            raise TypeError(f"a handler's tuple is (body, status[, headers]), not "
                            f"{len(result)} items")
        body, status, *rest = result
        if type(body) is Response:
            body.status = status
            return body
        return Response(body, status, headers=rest[0] if rest else None)
    if result is None:
        return Response(None, 204)
    return Response(result)     # bytes-like, a set (JSON), or an iterator to stream


def as_response(result) -> Response:
    """What middleware and after hooks see: always a Response of its own (a Response a
    handler returns is copied, so one shared between requests is never changed)."""
    t = type(result)
    if t is str or t is bytes or t is dict or t is list:
        return Response(result)
    if t is Response:
        return result.copy()
    if isinstance(result, HTTPError):
        return Response(result.body, result.status, headers=result.headers)
    response = to_response(result)
    return response if type(response) is Response else Response(response)


def busy_response() -> Response:
    """503 with Retry-After when the thread pool's backlog is full (a copy: middleware may
    change it)."""
    return as_response(POOL_FULL)


def error_response(req, exc: BaseException) -> Response:
    """The response for what a handler raised (the traceback of a bug is logged once)."""
    if isinstance(exc, HTTPError):
        return Response(exc.body, exc.status, headers=exc.headers)
    if isinstance(exc, BadRequest):
        error_log.info("bad request: %s %s: %s", req.method, req.path, exc)
        return Response(f"{exc}\n", 400, content_type=TEXT)
    error_log.error("handler failed: %s %s", req.method, req.path, exc_info=exc)
    return SERVER_ERROR
