"""A service of your own, as examples/service/Dockerfile packs it: a Flask app, served by
fastsock as any WSGI app is (`fastsock myservice:app`)."""
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(service="myservice", served_by="fastsock")


@app.get("/items/<int:item_id>")
def item(item_id: int):
    return jsonify(id=item_id)
