"""The streams of bench/stream_chunks.py: GET / answers $STREAM_CHUNKS small chunks from a plain
generator, pulled in the thread pool (`pooled`, the default) or on the loop (`inline`,
pull_inline=True)."""
import os

from fastsock import App

CHUNKS = int(os.environ.get("STREAM_CHUNKS", "1"))
pooled, inline = App(), App()


def chunks():
    for _ in range(CHUNKS):
        yield b"data: tick\n\n"


@pooled.get("/")
def pooled_stream(req):
    return chunks()


@inline.get("/", pull_inline=True)
def inline_stream(req):
    return chunks()
