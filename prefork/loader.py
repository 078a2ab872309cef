"""Import what ``module:attribute`` names (``module:factory()`` calls a factory) and
make a request handler class of it: a socketserver handler class as it is, a WSGI
application through prefork.wsgi; and the standard-library modules handlers share
with the master."""

import importlib
import sys

from .errors import HandlerImportError

__all__ = ["import_object", "is_spec", "check_spec", "load_handler", "as_handler", "describe",
           "import_shared_stdlib", "SHARED_STDLIB"]


def is_spec(value):
    return isinstance(value, str)


IMPORT_HINT = "check MODULE:NAME and that the module imports from the current directory"


def check_spec(spec, what="handler"):
    """Split ``module:attribute``; HandlerImportError if *spec* is not of that form."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise HandlerImportError(f"{what} {spec!r} is not of the form MODULE:NAME "
                                 "(e.g. myapp.handlers:EchoHandler)")
    return module_name, attr


def import_object(spec, what="handler"):
    """Import ``module:attribute`` (the attribute may be dotted) and return the object;
    ``module:factory()`` calls the factory and returns what it gives, and
    ``module:factory('prod', debug=False)`` passes it literal arguments.

    The current directory comes first on sys.path, as ``python -m`` would have it.
    A failure of any kind raises HandlerImportError naming the path and the cause.
    """
    module_name, attr = check_spec(spec, what)
    call = None
    if "(" in attr:
        attr, call = _factory_call(spec, attr)
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        obj = importlib.import_module(module_name)
    except Exception as e:
        raise HandlerImportError(f"cannot import {what} module {module_name!r}: "
                                 f"{type(e).__name__}: {e}; {IMPORT_HINT}") from e
    except SystemExit as e:  # a module that ends the program as it is imported
        raise HandlerImportError(f"cannot import {what} module {module_name!r}: it called "
                                 f"sys.exit({e.code!r}) as it was imported") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HandlerImportError(
                f"module {module_name!r} has no attribute {attr!r}; {IMPORT_HINT}") from None
    if call is not None:
        if not callable(obj):
            raise HandlerImportError(f"{spec}: {attr} is not callable, so not a factory")
        args, kwargs = call
        try:
            obj = obj(*args, **kwargs)
        except Exception as e:
            raise HandlerImportError(
                f"{spec}: the factory raised {type(e).__name__}: {e}") from e
    return obj


def _factory_call(spec, text):
    """``name(args)`` -> (name, (args, kwargs)); the arguments must be literals."""
    import ast
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        node = None
    if not isinstance(node, ast.Call) or not _dotted(node.func):
        raise HandlerImportError(f"{spec}: expected NAME or NAME(ARGUMENTS) after the colon")
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    except ValueError:
        raise HandlerImportError(f"{spec}: a factory's arguments must be literals "
                                 "(strings, numbers, True, False, None, lists...)") from None
    if len(kwargs) != len(node.keywords):
        raise HandlerImportError(f"{spec}: **arguments are not literals")
    return ast.unparse(node.func), (args, kwargs)


def _dotted(node):
    import ast
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def load_handler(spec, settings=None):
    """Import what *spec* names and make a request handler class of it: a handler
    class as it is, a WSGI application through prefork.wsgi with *settings* (an
    object with the HTTP settings as attributes, a Config for instance)."""
    return as_handler(import_object(spec), spec, settings)


def as_handler(obj, spec, settings=None):
    """*obj* as a request handler class, or HandlerImportError saying why it is none.

    A class is a socketserver request handler: it is called with (request,
    client_address, server).  Any other callable is a WSGI application, called
    with (environ, start_response), and is served by prefork.wsgi's handler.
    """
    import inspect
    if isinstance(obj, type):
        try:
            inspect.signature(obj).bind(None, None, None)
        except TypeError:
            raise HandlerImportError(f"{spec} is a class that cannot be called as "
                                     "handler(request, client_address, server); give a "
                                     "request handler class or a WSGI application") from None
        except ValueError:
            pass  # no signature to inspect (a builtin): let it be tried
        return obj
    if not callable(obj):
        raise HandlerImportError(f"{spec} is {type(obj).__name__!s} {obj!r:.60}, not a request "
                                 "handler class or a WSGI application")
    try:
        inspect.signature(obj).bind(None, None)
    except TypeError:
        raise HandlerImportError(f"{spec} cannot be called as application(environ, "
                                 "start_response): not a WSGI application") from None
    except ValueError:
        pass
    from . import wsgi  # the HTTP front end, loaded only for an application
    return wsgi.handler_for(obj, settings)


def describe(handler):
    """What kind of thing a loaded handler serves, for `prefork check`."""
    app = getattr(handler, "application", None)
    return "a WSGI application" if app is not None else "a request handler class"


# Standard-library modules that HTTP handlers (http.server, wsgiref, xmlrpc.server)
# and web frameworks (Flask, Django) import.  The master imports them once, before
# forking, so every worker shares their pages instead of holding a private copy each
# (several MiB per worker).  They do not change with a deploy; the application's own
# modules are still imported by each worker after its fork (unless preload), so a
# reload serves the code on disk.
SHARED_STDLIB = ("ssl", "email.parser", "email.message", "email.utils", "http.client",
                 "http.server", "http.cookies", "mimetypes", "html", "shutil", "socketserver",
                 "json", "decimal", "uuid", "hashlib", "hmac", "secrets", "dataclasses",
                 "contextvars", "typing", "datetime", "urllib.parse", "importlib.metadata",
                 "tempfile", "zipfile", "pickle", "unicodedata", "pprint", "platform", "csv")


def import_shared_stdlib(front_end=False):
    """Import SHARED_STDLIB (in the master, before its first fork), and with
    *front_end* the WSGI front end and its parser too: what is served is named by a
    string, and may be an application.  It does not change with a deploy either, and
    shared it spares each worker its own copy (1 MiB); a worker that turns out to
    serve a handler class never touches it."""
    for name in SHARED_STDLIB + (("prefork.wsgi",) if front_end else ()):
        try:
            importlib.import_module(name)
        except ImportError:  # a Python built without it (ssl): workers do without too
            pass
