#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris, libFuzzer) of the compiled request parser, PROXY header
parser and WebSocket frame reader (with permessage-deflate). Run through fuzz/run.sh: it builds
them instrumented for libFuzzer (clang, -fsanitize=fuzzer-no-link) and preloads libFuzzer,
whose symbols they need when they load.

    FUZZ_TARGET=requests|proxy|websocket python fuzz/fuzz_parsers.py [libFuzzer options] DIR...

(The target is chosen by the environment, not an argument: libFuzzer re-runs this command
line for -merge and -jobs.)

A finding is any crash, or an uncaught exception: for requests, a parse that differs between
the input fed whole and fed in two pieces (split where the input's first byte says), or an
accepted request whose fields cannot be read; for PROXY headers, anything but a header taken
or ProxyHeaderError; for WebSocket frames (a client's stream: its first byte picks the limits
and whether permessage-deflate was agreed), events that differ between the stream read whole
and in two reads, a failure with a code other than 1002/1007/1009, a message over the limit,
or a Close whose code an endpoint may not send.
"""
import importlib
import os
import sys

import atheris

_parser = _proxy = _wsframes = _wsdeflate = None   # imported in main(), after atheris.Setup()

LIMITS = dict(max_request_line=256, max_header_bytes=1024, max_header_count=16,
              max_body_size=4096, max_chunk_ext=32)     # small: the limits' paths get reached


def instrumented(module) -> bool:
    with open(module.__file__, "rb") as f:
        return b"__sanitizer_cov_8bit_counters_init" in f.read()


def outcome(pieces):
    parser = _parser.RequestParser(**LIMITS)
    events = []
    for piece in pieces:
        for e in parser.feed(piece):
            if e == "continue":
                continue
            # every field a handler may read, lazily decoded ones included
            events.append((e.method, e.path, e.raw_path, e.query_string, e.query.items(),
                           e.headers.items(), e.headers.get("host"), e.body, e.keep_alive,
                           e.http_version))
    return events, parser.error_status


def one_request_input(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    cut = data[0] % (len(body) + 1)
    whole = outcome([body])
    split = outcome([body[:cut], body[cut:]])
    if whole != split:
        raise AssertionError(f"split at {cut} parses differently:\n{whole}\n{split}")


def one_proxy_input(data: bytes) -> None:
    try:
        found = _proxy.parse(data)
    except _proxy.ProxyHeaderError:
        return
    if found is not None:
        used, peer = found
        assert 0 < used <= len(data), used


def ws_events(options: int, pieces) -> list:
    deflate = None
    if options & 1:         # agreed as the server does: 4 KiB windows, context taken over
        _, deflate = _wsdeflate.negotiate("permessage-deflate; client_max_window_bits",
                                          server_max_window_bits=12, client_max_window_bits=12,
                                          mem_level=5)
    max_message = 64 << (options >> 1 & 7)      # 64 B .. 8 KiB: the limits' paths get reached
    reader = _wsframes.FrameReader(max_message, max_message // 2 if options & 16 else max_message,
                                   deflate)
    events = []
    for piece in pieces:
        events += reader.feed(piece)
        ends = [i for i, e in enumerate(events) if e[0] in ("fail", "close")]
        if ends:                    # the connection's end: nothing after it is read
            del events[ends[0] + 1:]
            break
    # a failure's reason is for the log: where the reads fall can change which check fails
    # first (inflating, or the UTF-8 of what inflated so far), never the code
    events = [e[:2] if e[0] == "fail" else e for e in events]
    for e in events:
        if e[0] == "fail":
            assert e[1] in (1002, 1007, 1009), e
        elif e[0] == "close":
            assert e[1] == 1005 or _wsframes.valid_close_code(e[1]), e
        elif e[0] in ("text", "binary"):
            size = len(e[1].encode("utf-8", "surrogatepass") if e[0] == "text" else e[1])
            assert size <= max_message, (size, max_message)
    return events


def one_websocket_input(data: bytes) -> None:
    if len(data) < 2:
        return
    options, stream = data[0], data[2:]
    cut = data[1] % (len(stream) + 1)
    whole = ws_events(options, [stream])
    split = ws_events(options, [stream[:cut], stream[cut:]])
    if whole != split:
        raise AssertionError(f"split at {cut} reads differently:\n{whole}\n{split}")


TARGETS = {"requests": one_request_input, "proxy": one_proxy_input,
           "websocket": one_websocket_input}


def main() -> None:
    target = os.environ.get("FUZZ_TARGET", "")
    if target not in TARGETS:
        sys.exit("usage: FUZZ_TARGET=requests|proxy|websocket fuzz_parsers.py "
                 "[libFuzzer options] DIR...")
    global _parser, _proxy, _wsframes, _wsdeflate
    atheris.Setup(sys.argv, TARGETS[target])
    _parser = importlib.import_module("fastsock._parser")
    _proxy = importlib.import_module("fastsock._proxy")
    _wsframes = importlib.import_module("fastsock._wsframes")
    _wsdeflate = importlib.import_module("fastsock._wsdeflate")
    module = {"requests": _parser, "proxy": _proxy, "websocket": _wsframes}[target]
    if not instrumented(module):
        sys.exit(f"{module.__file__} is not built for fuzzing: run fuzz/run.sh, which builds "
                 f"it with FASTSOCK_FUZZ=1 and clang")
    atheris.Fuzz()


if __name__ == "__main__":
    main()
