"""What a streamed chunk costs, pulled in the thread pool (a plain generator's default) and on
the loop (pull_inline=True): callgrind's instructions in the worker (every thread), per chunk —
the difference between streams of 1 and of 1 + --chunks chunks, over the same requests
(bench/instructions.py's workload: keep-alive, 16 pipelined per write).

    python bench/stream_chunks.py [--requests 400] [--chunks 50]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from instructions import ROOT, count  # noqa: E402


def per_chunk(app: str, requests: int, chunks: int) -> tuple[float, int]:
    totals = []
    for n in (1, 1 + chunks):
        os.environ["STREAM_CHUNKS"] = str(n)
        totals.append(count(["--threads", "4"], f"stream_apps:{app}", ROOT, requests))
    return (totals[1] - totals[0]) / chunks, totals[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--chunks", type=int, default=50)
    args = ap.parse_args()
    print(f"# instructions per streamed chunk (callgrind), {args.requests} requests of 1 and "
          f"{1 + args.chunks} chunks")
    results = {}
    for app in ("inline", "pooled"):
        chunk, one = per_chunk(app, args.requests, args.chunks)
        results[app] = chunk
        print(f"{app:<8} {chunk:>9.0f} per chunk  ({one} per request of one chunk)")
    print(f"pooled / inline: {results['pooled'] / results['inline']:.2f}x per chunk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
