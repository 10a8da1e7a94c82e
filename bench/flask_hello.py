"""A Flask hello world (WSGI), for bench/interfaces.py."""
from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "hello"
