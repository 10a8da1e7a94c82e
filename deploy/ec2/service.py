from fastsock import App

app = App()


@app.get("/")
def index(req):
    return "hello from fastsock on EC2"
