"""The app tests/integration/test_tls_attacks.py serves over TLS: answers that number
themselves (pipelining, order), large bodies whole and streamed (records, partial writes), a
handler that waits (draining)."""
import asyncio
import hashlib

from fastsock import App, Response

app = App()

# 1 MiB that is not one byte repeated (a record split or reordered shows in its sha256)
MIB = hashlib.shake_256(b"fastsock tls attacks").digest(1 << 16) * 16


def blob(mb: int) -> bytes:
    return MIB * mb


@app.get("/")
def index(req):
    return "hello"


@app.get("/n/{i:int}")
def numbered(req, i):
    return f"n={i}"


@app.get("/blob/{mb:int}")
def whole(req, mb):
    """mb MiB as one body (sent by reference, after the head)."""
    return Response(blob(mb), content_type="application/octet-stream")


@app.get("/stream/{mb:int}")
def stream(req, mb):
    """mb MiB streamed in 64 KiB chunks (chunked)."""
    def chunks():
        for _ in range(mb):
            for i in range(16):
                yield MIB[i << 16:(i + 1) << 16]
    return chunks()


@app.get("/lines/{n:int}")
def lines(req, n):
    """n numbered lines, streamed: their order and count are checked line by line."""
    def gen():
        for i in range(0, n, 1000):
            yield "".join(f"{j:08d}\n" for j in range(i, min(n, i + 1000)))
    return gen()


@app.get("/async/slow")
async def slow(req):
    await asyncio.sleep(float(req.query.get("s", "1")))
    return "slow done"
