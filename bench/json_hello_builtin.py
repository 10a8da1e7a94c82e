"""json_hello with fastsock's own JSON encoder, orjson installed or not (App(use_orjson=False))."""
from fastsock import App

app = App(use_orjson=False)


@app.get("/")
def hello(req):
    return {"message": "Hello, World!"}
