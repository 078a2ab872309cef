"""Import a request handler (or any object) named ``module:attribute``, and the
standard-library modules handlers share with the master."""

import importlib
import sys

from .errors import HandlerImportError

__all__ = ["import_object", "is_spec", "check_handler", "check_spec", "import_shared_stdlib",
           "SHARED_STDLIB"]


def is_spec(value):
    return isinstance(value, str)


def check_spec(spec, what="handler"):
    """Split ``module:attribute``; HandlerImportError if *spec* is not of that form."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise HandlerImportError(f"{what} {spec!r} is not of the form MODULE:NAME "
                                 "(e.g. myapp.handlers:EchoHandler)")
    return module_name, attr


def import_object(spec, what="handler"):
    """Import ``module:attribute`` (the attribute may be dotted) and return the object.

    The current directory comes first on sys.path, as ``python -m`` would have it.
    A failure of any kind raises HandlerImportError naming the path and the cause.
    """
    module_name, attr = check_spec(spec, what)
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        obj = importlib.import_module(module_name)
    except Exception as e:
        raise HandlerImportError(
            f"cannot import {what} module {module_name!r}: {type(e).__name__}: {e}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HandlerImportError(
                f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def check_handler(obj, spec):
    """Return *obj* if a server can call it as a request handler, else raise.

    A handler is called with (request, client_address, server), as socketserver
    calls RequestHandlerClass; a class whose constructor takes those will do.
    """
    import inspect
    if not callable(obj):
        raise HandlerImportError(f"{spec} is {type(obj).__name__!s} {obj!r:.60}, not a request "
                                 "handler class (e.g. a socketserver.BaseRequestHandler "
                                 "subclass)")
    try:
        inspect.signature(obj).bind(None, None, None)
    except TypeError:
        raise HandlerImportError(f"{spec} cannot be called as handler(request, client_address, "
                                 "server); give a request handler class") from None
    except ValueError:
        pass  # no signature to inspect (a builtin): let it be tried
    return obj


# Standard-library modules that HTTP handlers (http.server, wsgiref, xmlrpc.server)
# import.  The master imports them once, before forking, so every worker shares
# their pages instead of holding a private copy each (several MiB per worker).  They
# do not change with a deploy; the application's own modules are still imported by
# each worker after its fork (unless preload), so a reload serves the code on disk.
SHARED_STDLIB = ("ssl", "email.parser", "email.message", "email.utils", "http.client",
                 "http.server", "mimetypes", "html", "shutil", "socketserver")


def import_shared_stdlib():
    """Import SHARED_STDLIB (in the master, before its first fork)."""
    for name in SHARED_STDLIB:
        try:
            importlib.import_module(name)
        except ImportError:  # a Python built without it (ssl): workers do without too
            pass
