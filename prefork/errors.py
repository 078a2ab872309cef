"""The typed errors prefork raises.  Library code raises them; only the CLI turns
them into a message and an exit status.  The library raises PreforkError,
ConfigError, HandlerImportError and BootError (``prefork.__all__``); BindError
and PidfileError come from the command's sockets and pidfile."""

__all__ = ["PreforkError", "ConfigError", "HandlerImportError", "BootError", "BindError",
           "PidfileError"]


class PreforkError(Exception):
    """Base of every error prefork raises on purpose."""


class ConfigError(PreforkError, ValueError):
    """A setting has a wrong type or value; the message names it and what would be right."""


class HandlerImportError(PreforkError):
    """The request handler (a ``module:attribute`` path) cannot be imported or is no handler."""


class BootError(PreforkError):
    """Workers cannot boot: the pool gave up instead of forking in a loop.

    ``note`` is what the last failed worker reported (its exception, one line);
    ``import_failed`` is true when it could not import the handler.
    """

    def __init__(self, message, note="", import_failed=False):
        super().__init__(message)
        self.note = note
        self.import_failed = import_failed


class BindError(PreforkError):
    """A listening socket cannot be had: the address is in use, needs privilege, ..."""


class PidfileError(PreforkError):
    """The pidfile is held by a live master, or cannot be written."""
