#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris, libFuzzer) of the compiled request parser and PROXY header
parser. Run through fuzz/run.sh: it builds them instrumented for libFuzzer (clang,
-fsanitize=fuzzer-no-link) and preloads libFuzzer, whose symbols they need when they load.

    FUZZ_TARGET=requests|proxy python fuzz/fuzz_parsers.py [libFuzzer options] CORPUS_DIR...

(The target is chosen by the environment, not an argument: libFuzzer re-runs this command
line for -merge and -jobs.)

A finding is any crash, or an uncaught exception: for requests, a parse that differs between
the input fed whole and fed in two pieces (split where the input's first byte says), or an
accepted request whose fields cannot be read; for PROXY headers, anything but a header taken
or ProxyHeaderError.
"""
import importlib
import os
import sys

import atheris

_parser = _proxy = None     # imported in main(), after atheris.Setup()

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


def main() -> None:
    target = os.environ.get("FUZZ_TARGET", "")
    if target not in ("requests", "proxy"):
        sys.exit("usage: FUZZ_TARGET=requests|proxy fuzz_parsers.py [libFuzzer options] DIR...")
    global _parser, _proxy
    atheris.Setup(sys.argv, one_request_input if target == "requests" else one_proxy_input)
    _parser = importlib.import_module("fastsock._parser")
    _proxy = importlib.import_module("fastsock._proxy")
    module = _parser if target == "requests" else _proxy
    if not instrumented(module):
        sys.exit(f"{module.__file__} is not built for fuzzing: run fuzz/run.sh, which builds "
                 f"it with FASTSOCK_FUZZ=1 and clang")
    atheris.Fuzz()


if __name__ == "__main__":
    main()
