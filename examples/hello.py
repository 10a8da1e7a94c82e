"""The smallest fastsock service: `fastsock examples.hello:app`."""
from fastsock import App, Response

app = App()


@app.get("/")
def index(req):
    return "hello"


@app.post("/echo")
def echo(req):
    return req.body


@app.get("/users/{user_id:int}")
def user(req, user_id):
    return {"id": user_id, "q": req.query.get("q")}


@app.get("/stream")
def stream(req):
    return (f"line {i}\n" for i in range(5))


@app.get("/teapot")
def teapot(req):
    return Response("short and stout", status=418, headers={"X-Kind": "teapot"})
