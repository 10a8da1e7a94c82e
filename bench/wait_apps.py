"""The apps bench/waiting.py serves: each answers / (wrk asks for it)."""
import asyncio
import time

from fastsock import App

async_app = App()           # awaits 10 ms: a call to a database or another service


@async_app.get("/")
async def awaiting(req):
    await asyncio.sleep(0.01)
    return "waited"


thread_app = App()          # blocks 10 ms in the thread pool: a blocking client library


@thread_app.get("/", threaded=True)
def blocking(req):
    time.sleep(0.01)
    return "waited"


inline_hello = App()        # the thread hop's price: the same hello inline and threaded


@inline_hello.get("/")
def hello(req):
    return "hello"


thread_hello = App()


@thread_hello.get("/", threaded=True)
def hello_in_a_thread(req):
    return "hello"
