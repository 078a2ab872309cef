"""Import a request handler (or any object) named ``module:attribute``."""

import importlib
import sys

from .errors import HandlerImportError

__all__ = ["import_object", "is_spec"]


def is_spec(value):
    return isinstance(value, str)


def import_object(spec, what="handler"):
    """Import ``module:attribute`` (the attribute may be dotted) and return the object.

    The current directory comes first on sys.path, as ``python -m`` would have it.
    A failure of any kind raises HandlerImportError naming the path and the cause.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise HandlerImportError(f"{what} {spec!r} is not of the form MODULE:NAME "
                                 "(e.g. myapp.handlers:EchoHandler)")
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
