"""The plain-text twin of json_hello: the same route, a str of the same message."""
from fastsock import App

app = App()


@app.get("/")
def hello(req):
    return "Hello, World!"
