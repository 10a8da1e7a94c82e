"""A WSGI app that blocks 10 ms, for gunicorn's gthread worker in bench/waiting.py."""
import time


def app(environ, start_response):
    time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", "6")])
    return [b"waited"]
