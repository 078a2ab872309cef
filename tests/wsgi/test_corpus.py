"""The request corpus (corpus.py) against the WSGI front end: every valid request
gives the application the environ it must, through wsgiref.validate (which checks
the environ and the response against PEP 3333); every invalid one gets its status
and a closed connection, and never reaches the application."""

import json
import wsgiref.validate

import pytest

from .corpus import INVALID, VALID
from .helpers import Served, split_response

SEEN = []


def echo(environ, start_response):
    """The environ's str values and the body read, as JSON."""
    SEEN.append(environ["PATH_INFO"])
    stream, body = environ["wsgi.input"], b""
    while True:  # read(size) until the end: chunked bodies have no CONTENT_LENGTH
        chunk = stream.read(8192)
        if not chunk:
            break
        body += chunk
    shown = {k: v for k, v in environ.items() if isinstance(v, str)}
    shown["wsgi.input_terminated"] = environ.get("wsgi.input_terminated")
    shown["body"] = body.decode("latin-1")
    data = json.dumps(shown).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


@pytest.fixture(scope="module")
def served():
    with Served(wsgiref.validate.validator(echo)) as s:
        yield s


@pytest.mark.parametrize("name,raw,expected,body", VALID, ids=[v[0] for v in VALID])
def test_a_valid_request(served, name, raw, expected, body):
    code, headers, data = split_response(served.exchange(raw))
    assert served.errors == [], served.errors
    assert code == 200, data
    if raw.startswith(b"HEAD"):
        assert data == b""
        return
    env = json.loads(data)
    for key, value in expected.items():
        if value is None:
            assert key not in env, (key, env.get(key))
        else:
            assert env.get(key) == value, (key, env.get(key))
    assert env["body"].encode("latin-1") == body
    assert headers["connection"] == "close"


@pytest.mark.parametrize("name,raw,status", INVALID, ids=[v[0] for v in INVALID])
def test_an_invalid_request(served, name, raw, status):
    SEEN.clear()
    reply = served.exchange(raw)
    code, headers, _ = split_response(reply)
    assert code == status, reply[:200]
    assert headers["connection"] == "close"
    assert SEEN == []  # the application never saw it
    assert served.errors == []


def test_the_corpus_is_large_enough():
    assert len(VALID) + len(INVALID) >= 80
