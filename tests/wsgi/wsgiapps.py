"""WSGI applications that the served tests run in real prefork workers."""

import os
import select
import threading


def application(environ, start_response):
    """/ says hello and the worker's pid; /hang never answers; /echo sends the body back;
    /gate?DIR makes DIR/entered and answers once the test opens the gate (open_gate)."""
    path = environ["PATH_INFO"]
    if path == "/hang":
        threading.Event().wait()  # a request the worker can never finish
    if path == "/gate":  # says it is in, then waits for the test's word: a request in flight
        gate = environ["QUERY_STRING"]
        word = os.path.join(gate, "word")
        os.mkfifo(word)
        fd = os.open(word, os.O_RDONLY | os.O_NONBLOCK)  # open first: the test's end finds it
        try:
            open(os.path.join(gate, "entered"), "w").close()
            waiter = select.poll()
            waiter.register(fd, select.POLLIN)
            waiter.poll(10_000)  # until the test opens and closes its end (open_gate)
        finally:
            os.close(fd)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"passed the gate"]
    if path == "/fail":
        raise RuntimeError("failing on purpose")
    if path.endswith("/where"):  # where the application is mounted, and the path in it
        body = f"{environ['SCRIPT_NAME']}|{path}".encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    body = f"{environ.get('apps.greeting', 'hello')} from {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def held(gate):
    """A factory, as `prefork serve 'wsgiapps:held("GATE")'` calls it: in a worker (whose
    parent is the master), the boot waits until the test closes its end of the FIFO
    GATE/boot (made before the master starts), and fails while GATE/fail exists."""
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
        in_worker = f.read().startswith(b"prefork: master")
    if in_worker:
        if os.path.exists(os.path.join(gate, "fail")):
            raise RuntimeError("told to fail at boot")
        fd = os.open(os.path.join(gate, "boot"), os.O_RDONLY | os.O_NONBLOCK)
        try:
            waiter = select.poll()
            waiter.register(fd, select.POLLIN)
            waiter.poll(10_000)  # until the test closes its end: end of file, or hang-up
        finally:
            os.close(fd)
    return application


def make(greeting="hello", *, loud=False):
    """A factory, as `prefork serve 'wsgiapps:make("hi", loud=True)'` calls it."""
    greeting = greeting.upper() if loud else greeting

    def app(environ, start_response):
        environ["apps.greeting"] = greeting
        return application(environ, start_response)
    return app
