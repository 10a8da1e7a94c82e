"""The access log: one line per request to stdout, as text or JSON, written in batches.

Lines are buffered and written at most once per loop tick (or when 32 KiB pile up), each write
holding whole lines and at most PIPE_BUF bytes, so lines of several workers never interleave.
"""
from __future__ import annotations

import os
import time
from json.encoder import encode_basestring as _json_str  # the C string encoder

PIPE_BUF = 4096
_THREE_DIGITS = [f"{i:03}" for i in range(1000)]    # "000".."999": no format spec per line


class AccessLog:
    def __init__(self, fmt: str, fd: int = 1):
        self.fd = fd
        self.json = fmt == "json"
        self.lines: list[str] = []
        self.size = 0
        self._second = -1
        self._stamp = ""

    def log(self, req, status: int, nbytes: int, seconds: float):
        """The line of one answered request (the loop calls it once the response is
        written: Request.on_complete)."""
        if req is None:         # (compiled, req is a typed Request: checked, but None passes)
            raise TypeError("log takes a Request, not None")
        request_id = req.request_id
        now = time.time()
        second = int(now)
        if second != self._second:          # format the date once a second
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        stamp = f"{self._stamp}{_THREE_DIGITS[int((now - second) * 1000) % 1000]}Z"
        us = int(seconds * 1e6)
        duration = f"{us // 1000}.{_THREE_DIGITS[us % 1000]}"   # ms, without float formatting
        client = req.client[0] if req.client else "-"
        ua = req.user_agent
        if self.json:
            line = (f'{{"time":"{stamp}","method":"{req.method}","path":{_json_str(req.path)},'
                    f'"status":{status},"bytes":{nbytes},"duration_ms":{duration},'
                    f'"client":{_json_str(client)},'
                    f'"user_agent":{"null" if ua is None else _json_str(ua)},'
                    f'"request_id":{"null" if request_id is None else _json_str(request_id)}}}\n')
        else:
            # the raw path: visible ASCII only, so a decoded %0A cannot forge a log line
            line = (f'{stamp} {client} "{req.method} {req.raw_path.decode()} '
                    f'HTTP/{req.http_version}" '
                    f'{status} {nbytes} {duration}ms {_json_str(ua or "-")} {request_id or "-"}\n')
        self.lines.append(line)
        self.size += len(line)
        if self.size > 32768:
            self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        data = "".join(self.lines).encode("utf-8", "backslashreplace")
        self.lines.clear()
        self.size = 0
        start = 0
        while start < len(data):
            end = len(data)
            if end - start > PIPE_BUF:
                end = data.rfind(b"\n", start, start + PIPE_BUF) + 1 or start + PIPE_BUF
            try:
                start += os.write(self.fd, data[start:end])
            except BlockingIOError:
                continue
            except OSError:
                return          # stdout gone: drop the log rather than the service
