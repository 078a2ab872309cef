"""A small Flask shop, as prefork serves a Flask application (docs/wsgi.rst):

    cd examples && prefork serve flaskshop:app

It answers /, takes an order by form post (/order), an upload (/upload), streams
(/stream), sends files from SHOP_FILES (/files/NAME) and says who asked (/client).
"""

import hashlib
import os

from flask import Flask, abort, request, send_from_directory

VERSION = "1"
FILES = os.environ.get("SHOP_FILES", os.path.join(os.path.dirname(__file__), "files"))
FORM = ('<form method="post"><input name="item"><input name="quantity">'
        '<button>order</button></form>\n')

app = Flask(__name__)


@app.get("/")
def home():
    return f"flask shop v{VERSION}, worker {os.getpid()}\n", {"Content-Type": "text/plain"}


@app.route("/order", methods=["GET", "POST"])
def order():
    if request.method == "GET":
        return FORM
    item, quantity = request.form.get("item"), request.form.get("quantity", "")
    if not item or not quantity.isdigit():
        abort(400)
    return f"ordered {quantity} x {item}\n", {"Content-Type": "text/plain"}


@app.post("/upload")
def upload():
    digest, size = hashlib.sha256(), 0
    while chunk := request.stream.read(65536):
        digest.update(chunk)
        size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


@app.get("/stream")
def stream():
    count = min(int(request.args.get("lines", "5")), 10_000)
    return (f"line {i}\n" for i in range(count)), {"Content-Type": "text/plain"}


@app.get("/files/<name>")
def files(name):
    return send_from_directory(FILES, name)


@app.get("/client")
def client():
    return f"{request.remote_addr} {request.scheme}\n", {"Content-Type": "text/plain"}
