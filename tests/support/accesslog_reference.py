"""The access log's lines as fastsock wrote them in Python before its C formatter
(fastsock/_accesslog.pyx), kept as the reference the C lines must equal byte for byte
(tests/unit/test_accesslog.py), but for the control characters of a text line's request id
and client, escaped (an id the app set to "a\nb" would have split the line). `now` is the
time.time() the line is stamped with."""
from __future__ import annotations

import time
from json.encoder import encode_basestring as _json_str  # the C string encoder

_THREE_DIGITS = [f"{i:03}" for i in range(1000)]


def _text(s: str) -> str:
    """A text field: its control characters escaped as JSON escapes them, the rest as it is."""
    return "".join(_json_str(c)[1:-1] if c < " " else c for c in s)


def line(req, status: int, nbytes: int, seconds: float, now: float, json: bool) -> bytes:
    request_id = req.request_id
    second = int(now)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
    stamp = f"{stamp}{_THREE_DIGITS[int((now - second) * 1000) % 1000]}Z"
    us = int(seconds * 1e6)
    duration = f"{us // 1000}.{_THREE_DIGITS[us % 1000]}"
    client = req.client[0] if req.client else "-"
    ua = req.user_agent
    if json:
        text = (f'{{"time":"{stamp}","method":"{req.method}","path":{_json_str(req.path)},'
                f'"status":{status},"bytes":{nbytes},"duration_ms":{duration},'
                f'"client":{_json_str(client)},'
                f'"user_agent":{"null" if ua is None else _json_str(ua)},'
                f'"request_id":{"null" if request_id is None else _json_str(request_id)}'
                + (f',"ws_messages_in":{req.ws_in},"ws_messages_out":{req.ws_out},'
                   f'"ws_close":{req.ws_close or 1006}' if status == 101 else "") + '}\n')
    else:
        text = (f'{stamp} {_text(client)} "{req.method} {req.raw_path.decode()} '
                f'HTTP/{req.http_version}" '
                f'{status} {nbytes} {duration}ms {_json_str(ua or "-")} '
                f'{_text(request_id or "-")}'
                + (f' ws_in={req.ws_in} ws_out={req.ws_out} ws_close={req.ws_close or 1006}'
                   if status == 101 else "") + '\n')
    return text.encode("utf-8", "backslashreplace")
