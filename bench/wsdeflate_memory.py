"""What permessage-deflate costs one connection: zlib's bytes (PerMessageDeflate.memory(),
counted by its allocation hooks: tracemalloc cannot see zlib's malloc) after one 4 KiB message
(JSON) each way, for a few settings of the server's; and the compressor's output and CPU per
message by level.

    taskset -c 0 python bench/wsdeflate_memory.py
"""
import json
import time
import zlib
from typing import Any

from fastsock._wsdeflate import negotiate

MESSAGE = json.dumps([{"id": i, "user": f"user{i}", "text": "hello there, how are you today?",
                       "ts": 1733350000 + i} for i in range(60)]).encode()[:4096]
CHROME = "permessage-deflate; client_max_window_bits"       # what browsers offer


def from_client(bits: int) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -bits)
    return (c.compress(MESSAGE) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def main() -> None:
    print("zlib's bytes after a message in (inflate), then one out (+deflate)")
    print(f"{'setting':44s} {'response':74s} {'inflate':>8s} {'+deflate':>9s}")
    settings_by_label: list[tuple[str, dict[str, Any]]] = [
        ("windows 15, memLevel 8 (zlib's defaults)", {}),
        ("the same, server_no_context_takeover", {"server_no_context_takeover": True}),
        ("the same, both sides' no_context_takeover", {"server_no_context_takeover": True,
                                                       "client_no_context_takeover": True}),
        ("windows 15, memLevel 5", {"mem_level": 5}),
        ("windows 12, memLevel 5", {"server_max_window_bits": 12, "client_max_window_bits": 12,
                                    "mem_level": 5}),
        ("windows 10, memLevel 4", {"server_max_window_bits": 10, "client_max_window_bits": 10,
                                    "mem_level": 4}),
    ]
    for label, settings in settings_by_label:
        response, pmd = negotiate(CHROME, **settings)
        assert response is not None and pmd is not None
        status, _ = pmd.decompress(from_client(pmd.client_max_window_bits))
        assert status == 0
        inflate_only = pmd.memory()
        pmd.compress(MESSAGE)
        print(f"{label:44s} {response:74s} {inflate_only:8d} {pmd.memory():9d}")
    print(f"\n{len(MESSAGE)} B of JSON, compressed by level (windows 15, memLevel 8):")
    for level in (1, 3, 6, 9):
        first_pmd = negotiate(CHROME, level=level)[1]
        _, pmd = negotiate(CHROME, level=level)
        assert first_pmd is not None and pmd is not None
        first = len(first_pmd.compress(MESSAGE))
        n = 2000
        t = time.process_time()
        for _ in range(n):
            again = pmd.compress(MESSAGE)
        us = (time.process_time() - t) / n * 1e6
        print(f"  level {level}: first message {first} B, the same again {len(again)} B, "
              f"{us:.1f} us CPU per message")


if __name__ == "__main__":
    main()
