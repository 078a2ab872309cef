"""The kit's hello answer from a Flask application, for the benchmarks."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "hello\n"
