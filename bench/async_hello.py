"""The plain-text hello as an `async def` handler: each request a task on the worker's
asyncio loop (the price of the asyncio path, bench/instructions.py)."""
from fastsock import App

app = App()


@app.get("/")
async def hello(req):
    return "Hello, World!"
