"""A Flask app served by fastsock, unchanged: `fastsock examples.flask_app:app` (WSGI is
detected). Each request runs in the worker's thread pool; the metrics' route label is the
Flask URL rule (/users/<int:user_id>), and prometheus_client metrics are summed over workers."""
from flask import Flask, Response, jsonify, request
from prometheus_client import Counter

app = Flask(__name__)
USERS_CREATED = Counter("example_users_created", "Users created through the example app.")


@app.get("/")
def index():
    return "hello from Flask\n"


@app.get("/users/<int:user_id>")
def user(user_id):
    return jsonify(id=user_id)


@app.post("/users")
def create_user():
    data = request.get_json()
    if not isinstance(data, dict) or "name" not in data:
        return jsonify(error="name is required"), 422
    USERS_CREATED.inc()
    return jsonify(created=data["name"]), 201


@app.post("/upload")
def upload():
    """Reads the body as it arrives (wsgi.input streams it) and counts it."""
    total = 0
    while chunk := request.stream.read(65536):
        total += len(chunk)
    return jsonify(bytes=total)


@app.get("/stream")
def stream():
    return Response((f"line {i}\n" for i in range(5)), mimetype="text/plain")
