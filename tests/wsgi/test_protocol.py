"""The WSGI front end's answers, rule by rule (RFC 9110/9112, PEP 3333), with real
sockets against core's ThreadingTCPServer.  Applications that follow PEP 3333 run
under wsgiref.validate, which checks every response they make."""

import io
import json
import os
import re
import select
import socket
import threading
import time
from wsgiref.validate import validator

import pytest

from prefork.wsgi import FileWrapper

from .helpers import Served, read_all, split_response, unchunk

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
TEXT = [("Content-Type", "text/plain")]

pytestmark = pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")


def app_of(body_parts, headers=(), status="200 OK"):
    def app(environ, start_response):
        start_response(status, [*TEXT, *headers])
        return body_parts() if callable(body_parts) else body_parts
    return app


# -- framing ----------------------------------------------------------------------------

def test_a_list_gets_its_content_length_and_goes_in_one_piece():
    with Served(app_of([b"hello"])) as s:  # (the validator would hide the list)
        code, headers, body = split_response(s.exchange(GET))
    assert (code, headers["content-length"], body) == (200, "5", b"hello")
    assert "transfer-encoding" not in headers and "date" in headers
    assert headers["connection"] == "close"


def test_a_generator_is_chunked_to_http11_and_delimited_by_close_to_http10():
    gen = app_of(lambda: (b"part%d;" % i for i in range(3)))
    with Served(validator(gen)) as s:
        code, headers, body = split_response(s.exchange(GET))
        assert headers["transfer-encoding"] == "chunked"
        assert unchunk(body) == b"part0;part1;part2;"
        code, headers, body = split_response(s.exchange(b"GET / HTTP/1.0\r\n\r\n"))
        assert "transfer-encoding" not in headers and body == b"part0;part1;part2;"


def test_the_applications_content_length_is_the_bodys_end():
    long_app = app_of([b"0123456789"], [("Content-Length", "4")])
    with Served(long_app) as s:
        _, headers, body = split_response(s.exchange(GET))
    assert headers["content-length"] == "4" and body == b"0123"  # never past it
    short_app = app_of(lambda: iter([b"ab"]), [("Content-Length", "10")])
    with Served(short_app) as s:
        with s.connect() as c:
            c.sendall(GET)
            data = read_all(c)  # the connection closes: nothing runs into another answer
    assert split_response(data)[2] == b"ab"


def test_one_date_header_the_applications_when_it_gave_one():
    stamp = "Sun, 06 Nov 1994 08:49:37 GMT"
    with Served(validator(app_of([b"x"], [("Date", stamp)]))) as s:
        data = s.exchange(GET)
    assert data.lower().count(b"\r\ndate: ") == 1 and f"Date: {stamp}".encode() in data
    with Served(validator(app_of([b"x"]))) as s:
        assert s.exchange(GET).lower().count(b"\r\ndate: ") == 1


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_for_204_and_304(status):
    def app(environ, start_response):
        start_response(status, [])
        return [b""]
    with Served(validator(app)) as s:
        code, headers, body = split_response(s.exchange(GET))
    assert code == int(status[:3]) and body == b""
    assert "content-length" not in headers and "transfer-encoding" not in headers


HEAD = b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"


def test_head_has_the_headers_and_no_body():
    with Served(app_of([b"hello"])) as s:
        code, headers, body = split_response(s.exchange(HEAD))
    assert code == 200 and headers["content-length"] == "5" and body == b""
    with Served(validator(app_of([b"hello"], [("Content-Length", "5")]))) as s:
        code, headers, body = split_response(s.exchange(HEAD))
    assert code == 200 and headers["content-length"] == "5" and body == b""


def test_write_callable_and_the_iterable_together():
    def app(environ, start_response):
        write = start_response("200 OK", TEXT)
        write(b"written ")
        return [b"returned"]
    with Served(validator(app)) as s:
        _, headers, body = split_response(s.exchange(GET))
    assert unchunk(body) == b"written returned"


# -- errors -----------------------------------------------------------------------------

def test_an_exception_before_any_byte_is_a_500_and_the_server_goes_on():
    def app(environ, start_response):
        raise RuntimeError("broken")
    with Served(app) as s:
        assert split_response(s.exchange(GET))[0] == 500
        assert split_response(s.exchange(GET))[0] == 500  # still serving
        assert s.take_errors() == ["broken", "broken"]  # to handle_error()


def test_an_exception_after_the_first_byte_closes_the_connection():
    def gen():
        yield b"first"
        raise RuntimeError("midway")
    with Served(app_of(gen)) as s:
        data = s.exchange(GET)
        assert s.take_errors() == ["midway"]
    code, headers, body = split_response(data)
    assert code == 200 and body.startswith(b"5\r\nfirst")
    assert not body.endswith(b"0\r\n\r\n")  # no last chunk: the client sees it cut short


def test_headers_wait_for_the_first_byte_so_exc_info_can_replace_them():
    def app(environ, start_response):
        start_response("200 OK", TEXT)
        try:
            raise ValueError("found late")
        except ValueError:
            import sys
            start_response("500 Internal Server Error", TEXT, sys.exc_info())
        return [b"sorry"]
    with Served(validator(app)) as s:
        code, _, body = split_response(s.exchange(GET))
    assert (code, unchunk(body)) == (500, b"sorry")


def test_exc_info_after_the_head_was_sent_reraises():
    def app(environ, start_response):
        write = start_response("200 OK", TEXT)
        write(b"begun")
        try:
            raise ValueError("too late")
        except ValueError:
            import sys
            start_response("500 Internal Server Error", TEXT, sys.exc_info())
        return [b"never"]
    with Served(app) as s:
        data = s.exchange(GET)
        assert s.take_errors() == ["too late"]
    assert split_response(data)[0] == 200 and b"never" not in data


@pytest.mark.parametrize("headers", [
    [("X-Bad", "a\r\nX-Injected: 1")], [("X Bad", "v")], [(b"X-Bytes", "v")]])
def test_a_header_that_could_break_the_answer_is_a_500(headers):
    with Served(app_of([b"x"], headers)) as s:
        data = s.exchange(GET)
        assert len(s.take_errors()) == 1
    assert split_response(data)[0] == 500 and b"Injected" not in data


def test_hop_by_hop_headers_from_the_application_are_dropped_and_close_is_kept(caplog):
    # Code that runs under werkzeug's server and gunicorn (Flask's Response(headers=
    # {"Transfer-Encoding": "chunked"}), a "Connection: close") runs here too.
    chunky = app_of(lambda: iter([b"ab", b"cd"]), [("Transfer-Encoding", "chunked"),
                                                   ("Keep-Alive", "timeout=5")])
    with Served(chunky) as s:
        for _ in range(2):
            code, headers, body = split_response(s.exchange(GET))
            assert code == 200 and "keep-alive" not in headers
            assert headers["transfer-encoding"] == "chunked" and unchunk(body) == b"abcd"
    said = [r.getMessage() for r in caplog.records if "hop-by-hop" in r.getMessage()]
    assert len(said) == 2  # once for each name, not for each answer
    closing = app_of([b"bye"], [("Connection", "close")])
    with Served(closing) as s, s.connect() as c:
        c.sendall(GET + GET)  # pipelined: the first answer closes the connection
        data = read_all(c)
    assert data.count(b"HTTP/1.1 200") == 1 and data.lower().count(b"connection: close") == 1


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nX-Injected: 1", "a\r", b"v", 7])
def test_a_header_known_from_an_earlier_answer_is_checked_again(value):
    # The first answer makes the name and status known good; the second's value is
    # checked all the same.
    answers = iter([[("X-Known", "fine")], [("X-Known", value)]])

    def app(environ, start_response):
        start_response("200 OK", [*TEXT, *next(answers)])
        return [b"x"]
    with Served(app) as s:
        first, second = s.exchange(GET), s.exchange(GET)
        assert len(s.take_errors()) == 1
    assert split_response(first)[:2] == (200, {**split_response(first)[1], "x-known": "fine"})
    assert split_response(second)[0] == 500 and b"Injected" not in second


@pytest.mark.parametrize("headers", [
    [("Content-Length", "5_0")], [("Content-Length", "+7")], [("Content-Length", "-5")],
    [("Content-Length", " 5")], [("Content-Length", "\u0665")],
    [("Content-Length", "5"), ("Content-Length", "10")],
    [("Content-Length", "1"), ("Content-Length", "1")]])
def test_a_content_length_not_of_digits_or_sent_twice_is_a_500(headers):
    # int() would take 5_0, +7, -5, " 5" and an Arabic-Indic five; a client would not.
    answers = iter([[("Content-Length", "1")], headers])  # the name known good first

    def app(environ, start_response):
        start_response("200 OK", [*TEXT, *next(answers)])
        return [b"x"]
    with Served(app) as s:
        assert split_response(s.exchange(GET))[0] == 200
        data = s.exchange(GET)
        assert len(s.take_errors()) == 1
    code, headers, body = split_response(data)
    assert code == 500 and data.lower().count(b"\r\ncontent-length:") == 1
    assert headers["content-length"] == str(len(body))


@pytest.mark.parametrize("status,headers", [
    ("000 Zero", []), ("600 Beyond", []), ("100 Continue", []), ("101 Switching", []),
    ("200 O\x00K", []), ("200 OK", [("X-Nul", "a\x00b")]), ("200 OK", [("X-Vt", "a\x0bb")]),
    ("200 OK", [("X-Del", "a\x7fb")]), ("\u0662\u0660\u0660 OK", [])])
def test_a_status_or_value_the_rfc_does_not_allow_is_a_500(status, headers):
    with Served(app_of([b"x"], headers, status)) as s:
        first, second = s.exchange(GET), s.exchange(GET)  # careful, then known statuses
        assert len(s.take_errors()) == 2
    for data in (first, second):
        assert split_response(data)[0] == 500 and b"\x00" not in data


def test_tabs_and_latin_1_in_values_pass():
    headers = [("X-Tab", "a\tb"), ("X-Latin", "caf\xe9 \x85")]
    with Served(app_of([b"x"], headers)) as s:
        for _ in range(2):
            data = s.exchange(GET)
            assert split_response(data)[0] == 200
            assert b"X-Tab: a\tb\r\n" in data and b"X-Latin: caf\xe9 \x85\r\n" in data


@pytest.mark.parametrize("body", [[b"one piece"], [b"two", b" pieces"], ["ignored"]])
def test_a_value_not_in_latin_1_is_a_500_not_an_empty_answer(body):
    with Served(app_of(body, [("X-Snow", "snow \u2603")])) as s:
        data = s.exchange(GET)
        assert len(s.take_errors()) == 1
    assert split_response(data)[0] == 500


def test_an_error_answered_to_head_has_its_length_and_no_body():
    def app(environ, start_response):
        raise RuntimeError("broken")
    with Served(app) as s:
        code, headers, body = split_response(s.exchange(HEAD))
        assert s.take_errors() == ["broken"]
        assert (code, body) == (500, b"") and int(headers["content-length"]) > 0
        # Refused before the application runs (a Host that is no host): the same.
        code, headers, body = split_response(
            s.exchange(b"HEAD / HTTP/1.1\r\nHost: a b\r\n\r\n"))
        assert (code, body) == (400, b"") and int(headers["content-length"]) > 0


def test_written_bytes_then_an_empty_file_end_the_chunks_once(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    def app(environ, start_response):
        start_response("200 OK", TEXT)(b"xyz")
        return environ["wsgi.file_wrapper"](open(empty, "rb"))
    with Served(app) as s:
        code, headers, body = split_response(s.exchange(GET))
    assert headers["transfer-encoding"] == "chunked" and body == b"3\r\nxyz\r\n0\r\n\r\n"


def test_no_start_response_and_text_bodies_are_500s():
    def silent(environ, start_response):
        return [b"no status"]

    def text(environ, start_response):
        start_response("200 OK", TEXT)
        return ["a str"]
    for app in (silent, text):
        with Served(app) as s:
            assert split_response(s.exchange(GET))[0] == 500
            assert len(s.take_errors()) == 1


class Closing:
    """An iterable that records that close() was called."""

    closed = []
    event = threading.Event()

    def __init__(self, parts):
        self.parts = parts

    def __iter__(self):
        for part in self.parts:
            if isinstance(part, Exception):
                raise part
            yield part

    def close(self):
        Closing.closed.append(True)
        Closing.event.set()


@pytest.mark.parametrize("parts", [[b"fine"], [b"a", RuntimeError("mid-body")],
                                   [RuntimeError("at once")]])
def test_close_is_always_called(parts):
    Closing.closed.clear()
    with Served(app_of(lambda: Closing(parts))) as s:
        s.exchange(GET)
        s.take_errors()  # an exception mid-body goes to handle_error(), as it should
    assert Closing.closed == [True]


def test_close_is_called_when_the_client_goes_away():
    Closing.closed.clear()
    Closing.event.clear()
    big = [b"x" * 65536] * 200  # more than the socket buffers hold
    with Served(app_of(lambda: Closing(big))) as s:
        c = s.connect()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.sendall(GET)
        c.recv(100)
        c.close()  # a reset, with most of the body unsent
        assert Closing.event.wait(10)
    assert Closing.closed == [True]  # and no error: a client that left is not the app's


# -- files ------------------------------------------------------------------------------

class NoReading(io.FileIO):
    """A file that can only be sent by sendfile(2): read() is an error."""

    def read(self, *args):
        raise AssertionError("read() called: the file was not sent by sendfile")

    readinto = readall = read


def test_file_wrapper_sends_a_file_by_sendfile_with_its_length(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(300_000))

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        f = NoReading(path, "rb")
        f.seek(1000)
        return environ["wsgi.file_wrapper"](f)

    def middleware(environ, start_response):
        return app(environ, start_response)  # passes the wrapper on, as it is
    with Served(middleware) as s:
        code, headers, body = split_response(s.exchange(GET))
        assert split_response(s.exchange(HEAD))[1]["content-length"] == str(299_000)
    assert headers["content-length"] == str(299_000)
    assert body == path.read_bytes()[1000:]


def test_file_wrapper_under_the_validator_is_iterated(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(100_000))

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(path, "rb"), 8192)
    with Served(validator(app)) as s:  # the validator wraps it: no fileno() to see
        _, headers, body = split_response(s.exchange(GET))
    assert headers["transfer-encoding"] == "chunked" and unchunk(body) == path.read_bytes()


def test_file_wrapper_over_something_that_is_no_file():
    def app(environ, start_response):
        start_response("200 OK", TEXT)
        return environ["wsgi.file_wrapper"](io.BytesIO(b"in memory"), 4)
    with Served(validator(app)) as s:
        _, _, body = split_response(s.exchange(GET))
    assert unchunk(body) == b"in memory"
    assert isinstance(FileWrapper(io.BytesIO()), FileWrapper)


# -- request bodies ---------------------------------------------------------------------

def reader(environ, start_response):
    stream = environ["wsgi.input"]
    lines = [stream.readline()]
    lines += stream.readlines()
    start_response("200 OK", TEXT)
    return [json.dumps([x.decode() for x in lines]).encode()]


def test_readline_readlines_and_a_chunked_body():
    body = b"5\r\none\nt\r\n9\r\nwo\nthree\n\r\n0\r\n\r\n"
    with Served(validator(reader)) as s:
        _, _, data = split_response(s.exchange(
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + body))
    assert json.loads(unchunk(data)) == ["one\n", "two\n", "three\n"]


def test_a_request_without_a_body_reads_as_empty_every_way():
    def everything(environ, start_response):
        stream = environ["wsgi.input"]
        seen = [stream.read(100), stream.read(10), stream.readline(), stream.readlines(),
                list(stream)]
        start_response("200 OK", TEXT)
        return [repr(seen).encode()]
    with Served(validator(everything)) as s:
        for request in (GET, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
                        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", GET):
            _, _, body = split_response(s.exchange(request))
            expected = [b"abc", b"", b"", [], []] if request.endswith(b"abc") else \
                [b"", b"", b"", [], []]
            assert unchunk(body) == repr(expected).encode()


def test_100_continue_comes_when_the_application_reads():
    with Served(validator(reader)) as s, s.connect() as c:
        c.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 4\r\n\r\n")
        assert c.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.sendall(b"up\n!")
        assert split_response(read_all(c))[0] == 200


def test_no_100_continue_once_the_answer_has_begun():
    def early(environ, start_response):
        write = start_response("200 OK", TEXT)
        write(b"started;")
        return [b"got:" + environ["wsgi.input"].read()]
    with Served(early) as s, s.connect() as c:
        c.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 5\r\n\r\n")
        seen = b""
        while b"started;" not in seen:
            seen += c.recv(1000)
        c.sendall(b"hello")  # as a client does when no 100 comes
        data = seen + read_all(c)
    assert b"100 Continue" not in data
    assert unchunk(split_response(data)[2]) == b"started;got:hello"


def test_an_application_that_refuses_an_upload_never_receives_it():
    def refuse(environ, start_response):
        start_response("403 Forbidden", TEXT)
        return [b"no"]
    with Served(validator(refuse)) as s, s.connect() as c:
        c.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 1000000\r\n\r\n")
        data = read_all(c)
    assert data.startswith(b"HTTP/1.1 403") and b"100 Continue" not in data


def test_max_body_size_by_content_length_and_by_chunks():
    with Served(reader, max_body_size=10) as s:
        assert split_response(s.exchange(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n"
                                         b"\r\n" + b"x" * 11))[0] == 413
        chunked = b"6\r\nxxxxxx\r\n6\r\nxxxxxx\r\n0\r\n\r\n"
        assert split_response(s.exchange(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
                                         b"chunked\r\n\r\n" + chunked))[0] == 413
        assert split_response(s.exchange(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n"
                                         b"\r\n" + b"x" * 10))[0] == 200


# -- slow clients ----------------------------------------------------------------------

def test_a_slow_head_is_408_and_a_silent_connection_is_closed():
    with Served(app_of([b"x"]), header_timeout=0.3) as s:
        with s.connect() as c:
            c.sendall(b"GET / HTTP/1.1\r\nHo")
            started = time.monotonic()
            data = read_all(c)
        assert data.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5
        with s.connect() as c:  # nothing sent at all: closed without a word
            assert read_all(c) == b""


def test_a_byte_at_a_time_cannot_outlast_header_timeout():
    with Served(app_of([b"x"]), header_timeout=0.5) as s, s.connect() as c:
        started = time.monotonic()
        answer = b""
        for byte in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100:
            try:
                c.sendall(bytes([byte]))
            except OSError:
                break
            if select.select([c], [], [], 0.02)[0]:  # the slow client's pace, or the answer
                break
            if time.monotonic() - started > 3:
                break
        answer = read_all(c)
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 3


def test_a_body_that_stops_coming_is_408():
    with Served(reader, header_timeout=0.3) as s, s.connect() as c:
        c.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        assert read_all(c).startswith(b"HTTP/1.1 408")


def test_why_a_request_was_refused_is_logged_at_debug_level(caplog):
    caplog.set_level("DEBUG", logger="prefork.wsgi")
    with Served(app_of([b"x"])) as s:
        s.exchange(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                   b"Content-Length: 3\r\n\r\nabc")
    said = [r.getMessage() for r in caplog.records if r.name == "prefork.wsgi"]
    assert len(said) == 1 and said[0].startswith("400 Bad Request to 127.0.0.1 ")
    assert "Content-Length" in said[0] or "Transfer-Encoding" in said[0], said


# -- proxies ------------------------------------------------------------------------------

def remote(environ, start_response):
    start_response("200 OK", TEXT)
    return [f"{environ['REMOTE_ADDR']} {environ['wsgi.url_scheme']} "
            f"{environ['SCRIPT_NAME']}|{environ['PATH_INFO']}".encode()]


def test_forwarded_headers_from_an_untrusted_peer_are_ignored():
    forwarded = b"GET /shop/a HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\n" \
                b"X-Forwarded-Proto: https\r\nX-Forwarded-Prefix: /shop\r\n\r\n"
    with Served(validator(remote), forwarded_allow_ips="10.0.0.0/8") as s:
        assert unchunk(split_response(s.exchange(forwarded))[2]) == b"127.0.0.1 http |/shop/a"
    with Served(validator(remote)) as s:  # loopback is trusted by default
        assert unchunk(split_response(s.exchange(forwarded))[2]) == b"6.6.6.6 https /shop|/a"


# -- the access log ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["common", "combined", "json"])
def test_access_log_lines_cannot_be_broken_or_forged(tmp_path, fmt):
    log = tmp_path / "access.log"
    agent = b'evil" 200 1 "x\\ \xe9'
    with Served(validator(app_of([b"hello"])), access_log=str(log),
                access_log_format=fmt) as s:
        s.exchange(b"GET /p?q=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: " + agent + b"\r\n\r\n")
        s.exchange(b"GET /nope HTTP/1.1\r\n\r\n")  # refused: 400, logged too
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    if fmt == "json":
        first = json.loads(lines[0])
        assert first["request"] == "GET /p?q=1 HTTP/1.1" and first["status"] == 200
        assert first["bytes"] == 5 and first["duration"] >= 0
        assert first["user_agent"] == agent.decode("latin-1")
        assert json.loads(lines[1])["status"] == 400
    else:  # what a log parser reads: quoted fields with backslash escapes inside
        quoted = r'"((?:[^"\\]|\\.)*)"'
        pattern = re.compile(rf'(\S+) - - \[[^\]]+\] {quoted} (\d+) (\S+)'
                             + (f" {quoted} {quoted}" if fmt == "combined" else "")
                             + r' \d+\.\d{6}')
        first, second = (pattern.fullmatch(line) for line in lines)
        assert first.group(1, 2, 3, 4) == ("127.0.0.1", "GET /p?q=1 HTTP/1.1", "200", "5")
        assert second.group(1, 2, 3) == ("127.0.0.1", "GET /nope HTTP/1.1", "400")
        if fmt == "combined":
            assert first.group(6) == r'evil\" 200 1 \"x\\ \xe9'


def test_the_handler_settings_are_checked():
    from prefork.wsgi import handler_for
    with pytest.raises(TypeError, match="unknown handler settings: max_bodysize"):
        handler_for(remote, max_bodysize=1)


def test_a_chunked_body_the_application_never_read_is_said_once(caplog):
    from prefork.wsgi import handler
    handler._warned.clear()
    request = (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n")
    with caplog.at_level("WARNING", "prefork.wsgi"):
        with Served(validator(app_of([b"ok"]))) as s:  # reads nothing: a CONTENT_LENGTH app
            assert split_response(s.exchange(request))[0] == 200
            assert split_response(s.exchange(request))[0] == 200
        with Served(validator(reader)) as s:  # reads it: nothing to say
            assert split_response(s.exchange(request))[0] == 200
    said = [r.getMessage() for r in caplog.records if r.name == "prefork.wsgi"]
    assert len(said) == 1 and "chunked body without reading it" in said[0]
