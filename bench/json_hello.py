"""The JSON hello world of the benchmarks: `return {"message": ...}` on /."""
from fastsock import App

app = App()


@app.get("/")
def hello(req):
    return {"message": "Hello, World!"}
