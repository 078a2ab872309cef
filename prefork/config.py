"""One typed, validated, frozen Config, merged from defaults, a TOML file, the
environment and the command line (in rising precedence).

Every setting is described once, in OPTIONS: its type, default and help.  The same
table makes the command-line flags (``--max-requests``), the TOML keys
(``max_requests``, or ``max-requests``), and the environment variables
(``PREFORK_MAX_REQUESTS``).  Text from a file, the environment or the command line
is parsed here and nowhere else; a bad value raises ConfigError naming where it
came from and what would be right.
"""

import dataclasses
import difflib
import math
import os
import re

from .errors import ConfigError

__all__ = ["Config", "OPTIONS", "SETTINGS", "POOL_SETTINGS", "load", "parse_value"]

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    kind: str      # int, workers, seconds, size, bool, str, spec, mode, binds, level
    default: object
    help: str
    minimum: int = 0
    flag: bool = True  # a --flag of its own; False for the command's positional argument


OPTIONS = [
    Option("handler", "spec", "", "what to serve, MODULE:NAME: a request handler class "
           "(the command's argument, when given, wins)", flag=False),
    Option("bind", "binds", (), "address to serve, repeatable: HOST:PORT, [::1]:PORT, unix:PATH, "
           "unix:@NAME, udp://HOST:PORT, unixgram:PATH, fd://N (default: the sockets systemd "
           "passes, else 127.0.0.1:8000)"),
    Option("workers", "workers", 2, "worker processes to keep serving: N, or MIN..MAX for "
           "an adaptive pool that grows while all are busy and shrinks when idle", 1),
    Option("shrink_after", "seconds", 10.0, "adaptive pool: seconds of idle surplus before "
           "one worker is retired"),
    Option("max_workers", "int", 0, "hard cap on live worker processes, reloads included "
           "(default: twice --workers, or twice MAX)"),
    Option("max_requests", "int", 0, "recycle a worker after this many requests (0: never)"),
    Option("max_requests_jitter", "int", 0, "add a random 0..N to each worker's max_requests"),
    Option("timeout", "seconds", 30.0, "kill a worker silent this long, after logging its "
           "stack (0: never)"),
    Option("boot_timeout", "seconds", 30.0, "time a new worker has to import and become ready"),
    Option("graceful_timeout", "seconds", 30.0, "time a retiring worker has to finish its request"),
    Option("max_rss", "size", 0, "recycle a worker whose resident memory passes this "
           "(e.g. 512M; 0: no limit)"),
    Option("backlog", "int", 2048, "listen backlog of stream sockets", 1),
    Option("preload", "bool", False, "import the handler once in the master, before forking"),
    Option("pidfile", "str", "", "write the master's pid here, locked while it runs"),
    Option("control", "str", "", "the master's control socket (mode 0600), for "
           "status, reload, upgrade, stop and scale"),
    Option("daemon", "bool", False, "detach and run in the background (not under systemd)"),
    Option("user", "str", "", "switch to this user after binding"),
    Option("group", "str", "", "switch to this group after binding"),
    Option("umask", "mode", None, "umask for the master and workers (octal, e.g. 027)"),
    Option("socket_mode", "mode", 0o660, "mode of Unix sockets the master creates (octal)"),
    Option("socket_group", "str", "", "group of Unix sockets the master creates"),
    Option("name", "str", "", "name shown in process titles and logs"),
    Option("log_level", "level", "info", "debug, info, warning or error"),
    Option("error_log", "str", "", "log to this file instead of standard error"),
    Option("debug", "bool", False, "show tracebacks for errors"),
]
_BY_NAME = {o.name: o for o in OPTIONS}
LEVELS = ("debug", "info", "warning", "error")
POOL_SETTINGS = ("workers", "workers_max", "shrink_after", "max_workers", "max_requests",
                 "max_requests_jitter", "timeout", "boot_timeout", "graceful_timeout",
                 "max_rss", "preload", "name")


@dataclasses.dataclass(frozen=True)
class Config:
    """The settings.  Times are seconds; sizes are bytes; 0 means "no limit"."""

    workers: int = 2              # given as (MIN, MAX) or "MIN..MAX": MIN, with MAX below
    workers_max: int = 0          # an adaptive pool's MAX; 0: a fixed pool of ``workers``
    shrink_after: float = 10.0
    max_workers: int = 0          # 0: twice ``workers`` (twice ``workers_max`` if adaptive)
    max_requests: int = 0
    max_requests_jitter: int = 0
    timeout: float = 30.0
    boot_timeout: float = 30.0
    graceful_timeout: float = 30.0
    max_rss: int = 0
    preload: bool = False
    name: str = ""
    handler: str = ""             # MODULE:NAME; the command's argument, else the file or env
    bind: tuple = ()
    backlog: int = 2048
    pidfile: str = ""
    control: str = ""
    daemon: bool = False
    user: str = ""
    group: str = ""
    umask: object = None
    socket_mode: int = 0o660
    socket_group: str = ""
    log_level: str = "info"
    error_log: str = ""
    debug: bool = False

    def __post_init__(self):
        if isinstance(self.workers, str):
            object.__setattr__(self, "workers",
                               parse_value(_BY_NAME["workers"], self.workers, "workers"))
        for o in OPTIONS:
            _check(o, getattr(self, o.name), o.name)
        if isinstance(self.workers, tuple):
            low, high = self.workers
            object.__setattr__(self, "workers", low)
            object.__setattr__(self, "workers_max", high)
        if isinstance(self.workers_max, bool) or not isinstance(self.workers_max, int) or \
                (self.workers_max and self.workers_max < self.workers):
            raise ConfigError(f"workers_max: expected 0 (a fixed pool) or a whole number >= "
                              f"workers ({self.workers}), got {self.workers_max!r}")
        if self.max_workers == 0:
            object.__setattr__(self, "max_workers", 2 * max(self.workers, self.workers_max))
        if self.workers_max > self.max_workers:
            raise ConfigError(f"workers {self.workers}..{self.workers_max} must not exceed "
                              f"max_workers ({self.max_workers}); raise max_workers or lower "
                              "the range")
        if self.workers > self.max_workers:
            raise ConfigError(f"workers ({self.workers}) must not exceed max_workers "
                              f"({self.max_workers}); raise max_workers or lower workers")
        if self.boot_timeout <= 0:
            raise ConfigError(f"boot_timeout must be more than 0 seconds, not {self.boot_timeout}")

    @property
    def adaptive(self):
        return self.workers_max > self.workers

    @classmethod
    def from_object(cls, obj):
        """A Config of the pool settings that *obj* (a server) sets; defaults elsewhere."""
        return cls(**{name: getattr(obj, name) for name in POOL_SETTINGS
                      if getattr(obj, name, None) is not None})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


SETTINGS = tuple(f.name for f in dataclasses.fields(Config))


def _check(o, value, where):
    """Type and range of an already-typed value; raise ConfigError naming *where*."""
    def bad(expected):
        shown = f"{value[0]!r}..{value[1]!r}" if isinstance(value, tuple) and \
            len(value) == 2 else repr(value)
        raise ConfigError(f"{where}: expected {expected}, got {shown}")

    if o.kind == "workers" and isinstance(value, tuple):
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                      for v in value) or not 1 <= value[0] <= value[1]:
            bad("a range MIN..MAX of whole numbers with 1 <= MIN <= MAX")
    elif o.kind in ("int", "size", "workers"):
        if isinstance(value, bool) or not isinstance(value, int) or value < o.minimum:
            bad(f"a whole number >= {o.minimum}" + (" or a range MIN..MAX"
                                                    if o.kind == "workers" else ""))
    elif o.kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            bad("a number of seconds >= 0")
    elif o.kind == "bool":
        if not isinstance(value, bool):
            bad("true or false")
    elif o.kind == "str":
        if not isinstance(value, str):
            bad("a string")
    elif o.kind == "spec":
        if not isinstance(value, str):
            bad("a string, MODULE:NAME")
        module, sep, attr = value.partition(":")
        if value and not (module and sep and attr):
            raise ConfigError(f"{where} {value!r} is not of the form MODULE:NAME "
                              "(e.g. myapp.handlers:EchoHandler)")
    elif o.kind == "mode":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 0 <= value <= 0o777):
            bad("an octal mode from 000 to 777")
    elif o.kind == "level":
        if value not in LEVELS:
            bad("one of " + ", ".join(LEVELS))
    elif o.kind == "binds":
        if not isinstance(value, tuple) or not all(isinstance(b, str) and b for b in value):
            bad("a list of addresses")


_SIZE = re.compile(r"(\d+)\s*([kmgt]?)i?b?", re.I)
_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


def parse_value(o, text, where):
    """Turn *text* (from the command line or the environment) into *o*'s type."""
    text = text.strip()
    try:
        if o.kind == "int":
            return int(text)
        if o.kind == "workers":
            low, sep, high = text.partition("..")
            return (int(low), int(high)) if sep else int(text)
        if o.kind == "seconds":
            return float(text)
        if o.kind == "size":
            m = _SIZE.fullmatch(text)
            if not m:
                raise ValueError
            return int(m.group(1)) * _UNITS[m.group(2).lower()]
        if o.kind == "bool":
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if o.kind == "mode":
            return int(text, 8)
        if o.kind == "binds":
            return tuple(b.strip() for b in text.split(",") if b.strip())
        if o.kind == "level":
            return text.lower()
        return text
    except ValueError:
        expected = {"int": "a whole number", "workers": "a whole number or a range such "
                    "as 2..16", "seconds": "a number of seconds",
                    "size": "a size such as 512M or 1G", "bool": "true or false",
                    "mode": "an octal mode such as 0660"}[o.kind]
        raise ConfigError(f"{where}: expected {expected}, got {text!r}") from None


def _from_file(path):
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    values = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        o = _BY_NAME.get(name)
        if o is None:
            raise ConfigError(f"unknown key {key!r} in {path}{_suggest(name)}")
        where = f"key {key!r} in {path}"
        if o.kind == "binds":
            value = (value,) if isinstance(value, str) else tuple(value) \
                if isinstance(value, list) else value
        elif o.kind in ("mode", "workers") and isinstance(value, str):
            value = parse_value(o, value, where)
        elif o.kind == "size" and isinstance(value, str):
            value = parse_value(o, value, where)
        elif o.kind == "seconds" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif o.kind == "level" and isinstance(value, str):
            value = value.lower()
        _check(o, value, where)
        values[name] = value
    return values


def _from_env(environ):
    values = {}
    for key, text in environ.items():
        if not key.startswith("PREFORK_") or key == "PREFORK_CONFIG":
            continue
        name = key[len("PREFORK_"):].lower()
        o = _BY_NAME.get(name)
        if o is None:
            raise ConfigError(f"unknown environment variable {key}"
                              f"{_suggest(name, prefix='PREFORK_', upper=True)}")
        values[name] = parse_value(o, text, key)
        _check(o, values[name], key)
    return values


def _suggest(name, prefix="", upper=False):
    close = difflib.get_close_matches(name, list(_BY_NAME), n=1)
    if not close:
        return ""
    guess = prefix + (close[0].upper() if upper else close[0])
    return f" (did you mean {guess}?)"


def load(cli_values, config_file=None, environ=None):
    """Merge defaults < file < environment < *cli_values* into a Config.

    *cli_values* maps option names to typed values given on the command line.
    The file is *config_file*, else PREFORK_CONFIG from the environment.
    """
    env = os.environ if environ is None else environ
    path = config_file or env.get("PREFORK_CONFIG", "")
    merged = {}
    if path:
        merged.update(_from_file(path))
    merged.update(_from_env(env))
    merged.update(cli_values)
    return Config(**merged)
