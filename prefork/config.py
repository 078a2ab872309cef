"""One typed, validated, frozen Config, merged from defaults, a TOML file, the
environment and the command line (in rising precedence).

Every setting is declared once, as a field of Config: its type, its default, its
help and its kind.  Everything else is derived from that declaration: the
command-line flag (``--max-requests``), the TOML key (``max_requests``, or
``max-requests``), the environment variable (``PREFORK_MAX_REQUESTS``), the flag's
metavar and default in ``--help``, the class attributes of PreforkMixIn, and the
settings table of the documentation (settings_table(), checked by a test).

A kind says how a value is written (parse), what a good one is (check), and how
it is shown; text from a file, the environment or the command line is parsed
here and nowhere else.  A bad value raises ConfigError naming where it came from
and what would be right.  This module does no I/O but reading the file it is
given.
"""

import dataclasses
import difflib
import ipaddress
import math
import re
import tomllib

from .errors import ConfigError

__all__ = ["Config", "Setting", "SETTINGS", "POOL_SETTINGS", "load", "parse_value",
           "settings_table"]


LEVELS = ("debug", "info", "warning", "error")


# -- kinds ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Kind:
    """How the values of one kind of setting are written, checked and shown."""

    name: str
    parse: object            # text -> value; raises ValueError
    check: object            # (value, setting) -> what a good value is, or "" when good
    expected: str            # what parse wants, for its error message
    metavar: str = ""
    show: object = str       # default -> text for --help and the docs
    from_toml: object = None  # a TOML value -> a value (None: taken as it is)
    action: str = "store"    # argparse's: "store_true" for a switch, "append" for a list


def _whole(value, s):
    if isinstance(value, bool) or not isinstance(value, int) or value < s.minimum \
            or value > s.maximum:
        top = f" to {s.maximum}" if s.maximum < math.inf else ""
        return f"a whole number from {s.minimum}{top}" if top else \
            f"a whole number >= {s.minimum}"
    if 0 < value < s.least:  # a unit left out, most likely (512 for 512M)
        return f"0 or at least {s.least // 1024 ** 2}M (a size without a unit is in bytes)"
    return ""


def _workers(value, s):
    if isinstance(value, tuple):
        good = len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in value) and 1 <= value[0] <= value[1] \
            <= s.maximum
        return "" if good else "a range MIN..MAX of whole numbers with 1 <= MIN <= MAX " \
            f"<= {s.maximum}"
    bad = _whole(value, s)
    return bad and bad + " or a range MIN..MAX"


def _parse_workers(text):
    low, sep, high = text.partition("..")
    return (int(low), int(high)) if sep else int(text)


def _seconds(value, s):
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) \
        or not math.isfinite(value) or not 0 <= value <= SECONDS_MAX
    return f"a number of seconds from 0 to {SECONDS_MAX} (a year)" if bad else ""


SECONDS_MAX = 365 * 24 * 3600  # past it a timeout is no timeout, and clocks overflow


_SIZE = re.compile(r"(\d+)\s*([kmgt]?)i?b?", re.I)
_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


def _parse_size(text):
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(text)
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _parse_bool(text):
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _spec(value, s):
    if not isinstance(value, str):
        return "a string, MODULE:NAME"
    module, sep, attr = value.partition(":")
    return "" if not value or (module and sep and attr) else "MODULE:NAME"


def _mode(value, s):
    bad = value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                 or not 0 <= value <= 0o777)
    return "an octal mode from 000 to 777" if bad else ""


def _networks(value, s):
    if not isinstance(value, str):
        return "addresses and networks, comma-separated, or *"
    if value.strip() == "*":
        return ""
    for part in filter(None, (p.strip() for p in value.split(","))):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            return f"addresses and networks, comma-separated, or * (not {part!r})"
    return ""


def _choice(value, s):
    return "" if value in s.choices else "one of " + ", ".join(s.choices)


def _binds(value, s):
    good = isinstance(value, tuple) and all(isinstance(b, str) and b for b in value)
    return "" if good else "a list of addresses"


def _mode_from_toml(value):
    """A mode in TOML is a string of octal digits, "0660": a number would be read as
    decimal (660 is 0o1224), and an octal literal looks like one."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise TypeError(value)
    return int(value, 8) if isinstance(value, str) else value


def _parsed_if_text(kind_parse):
    return lambda value: kind_parse(value) if isinstance(value, str) else value


KINDS = {k.name: k for k in [
    Kind("int", int, _whole, "a whole number", "N"),
    Kind("workers", _parse_workers, _workers, "a whole number or a range such as 2..16",
         "N|MIN..MAX", from_toml=_parsed_if_text(_parse_workers)),
    Kind("seconds", float, _seconds, "a number of seconds", "SECONDS", show="{:g}s".format,
         from_toml=lambda v: float(v) if isinstance(v, int) and not isinstance(v, bool)
         else v),
    Kind("size", _parse_size, _whole, "a size such as 512M or 1G", "SIZE",
         from_toml=_parsed_if_text(_parse_size)),
    Kind("bool", _parse_bool, lambda v, s: "" if isinstance(v, bool) else "true or false",
         "true or false", action="store_true"),
    Kind("str", str, lambda v, s: "" if isinstance(v, str) else "a string", "a string"),
    Kind("spec", str, _spec, "MODULE:NAME", "MODULE:NAME"),
    Kind("mode", lambda text: int(text, 8), _mode, "an octal mode such as 0660", "MODE",
         show="{:04o}".format, from_toml=_mode_from_toml),
    Kind("binds", lambda text: tuple(b.strip() for b in text.split(",") if b.strip()),
         _binds, "addresses", "ADDR", action="append",
         from_toml=lambda v: (v,) if isinstance(v, str) else tuple(v)
         if isinstance(v, list) else v),
    Kind("networks", str, _networks, "addresses and networks", "ADDRS"),
    Kind("choice", str.lower, _choice, "a name", "NAME",
         from_toml=lambda v: v.lower() if isinstance(v, str) else v),
    Kind("level", str.lower, lambda v, s: "" if v in LEVELS else "one of " + ", ".join(LEVELS),
         "one of " + ", ".join(LEVELS), "LEVEL",
         from_toml=lambda v: v.lower() if isinstance(v, str) else v),
]}


# -- settings ---------------------------------------------------------------------------

MAX_WORKERS = 4096  # more is a typing mistake: each is a process, and a scoreboard slot


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting, as declared on a Config field."""

    kind: Kind
    default: object
    help: str
    metavar: str = ""        # for --help; the kind's when empty
    minimum: int = 0
    maximum: float = math.inf
    least: int = 0           # a value other than 0 is at least this (a size's unit forgotten)
    choices: tuple = ()      # for a "choice": the names it takes
    pool: bool = False       # a setting of the pool: a PreforkMixIn class attribute too
    source: str = "flag"     # "flag": --flag, TOML key, PREFORK_ variable; "argument":
    #                          the command's argument, a TOML key and a variable;
    #                          "derived": set from another setting only
    name: str = ""           # the field's name, filled in from Config

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    @property
    def env(self):
        return "PREFORK_" + self.name.upper()

    def shown_default(self):
        if self.kind.action == "store_true" or self.default in ("", (), None, 0):
            return ""
        return self.kind.show(self.default)


def setting(kind, default, help, **more):
    """A Config field declaring a setting of *kind* (a name in KINDS)."""
    return dataclasses.field(default=default, metadata={
        "setting": Setting(KINDS[kind], default, help, **more)})


@dataclasses.dataclass(frozen=True)
class Config:
    """The settings.  Times are seconds; sizes are bytes; 0 means "no limit"."""

    handler: str = setting(
        "spec", "", "what to serve, MODULE:NAME: a request handler class, or a WSGI "
        "application (MODULE:factory() calls a factory for it); the command's argument, "
        "when given, wins", source="argument", metavar="MODULE:NAME")
    bind: tuple = setting(
        "binds", (), "address to serve, repeatable: HOST:PORT, [::1]:PORT, unix:PATH, "
        "unix:@NAME, udp://HOST:PORT, unixgram:PATH, fd://N (default: the sockets systemd "
        "passes, else 127.0.0.1:8000)")
    workers: int = setting(
        "workers", 2, "worker processes to keep serving: N, or MIN..MAX for an adaptive "
        "pool that grows while all are busy and shrinks when idle", minimum=1,
        maximum=MAX_WORKERS, pool=True)
    workers_max: int = setting(
        "int", 0, "an adaptive pool's MAX (from workers MIN..MAX); 0: a fixed pool",
        pool=True, source="derived")
    shrink_after: float = setting(
        "seconds", 10.0, "adaptive pool: seconds of idle surplus before one worker is "
        "retired", pool=True)
    max_workers: int = setting(
        "int", 0, "hard cap on live worker processes, reloads included (default: twice "
        "--workers, or twice MAX)", maximum=2 * MAX_WORKERS, pool=True)
    max_requests: int = setting(
        "int", 0, "recycle a worker after this many requests (0: never)", pool=True)
    max_requests_jitter: int = setting(
        "int", 0, "add a random 0..N to each worker's max_requests", pool=True)
    timeout: float = setting(
        "seconds", 30.0, "kill a worker silent this long, after logging its stack (0: never)",
        pool=True)
    boot_timeout: float = setting(
        "seconds", 30.0, "time a new worker has to import and become ready", pool=True)
    graceful_timeout: float = setting(
        "seconds", 30.0, "time a retiring worker has to finish its request", pool=True)
    accept_grace: float = setting(
        "seconds", 0.0, "a graceful stop (TERM) first serves on this long, /ready "
        "answering 503, so load balancers stop sending before the workers leave; a second "
        "TERM stops at once (0: no wait)", pool=True)
    max_rss: int = setting(
        "size", 0, "recycle a worker whose resident memory passes this (e.g. 512M; 0: no "
        "limit)", least=8 * 1024 ** 2, pool=True)
    backlog: int = setting("int", 2048, "listen backlog of stream sockets", minimum=1,
                           maximum=2 ** 31 - 1)
    preload: bool = setting(
        "bool", False, "import the handler once in the master, before forking", pool=True)
    pidfile: str = setting(
        "str", "", "write the master's pid here, locked while it runs", metavar="PATH")
    control: str = setting(
        "str", "", "the master's control socket (mode 0600), for status, reload, upgrade, "
        "stop and scale", metavar="PATH")
    metrics_bind: str = setting(
        "str", "", "serve /metrics (Prometheus), /ready and /live over HTTP on this "
        "address, from the master (off by default)", metavar="HOST:PORT")
    daemon: bool = setting(
        "bool", False, "detach and run in the background (not under systemd)")
    user: str = setting("str", "", "switch to this user after binding", metavar="USER")
    group: str = setting("str", "", "switch to this group after binding", metavar="GROUP")
    umask: object = setting(
        "mode", None, "umask for the master and workers (octal, e.g. 027)")
    socket_mode: int = setting(
        "mode", 0o660, "mode of Unix sockets the master creates (octal)")
    socket_group: str = setting(
        "str", "", "group of Unix sockets the master creates", metavar="GROUP")
    name: str = setting(
        "str", "", "name shown in process titles and logs", metavar="NAME", pool=True)
    max_request_line: int = setting(
        "int", 8190, "HTTP: the longest request target (414 past it)", minimum=1)
    max_headers: int = setting(
        "int", 100, "HTTP: the most header fields in a request (431 past it)", minimum=1)
    max_header_size: int = setting(
        "int", 8190, "HTTP: the longest header field, name and value (431 past it)", minimum=1)
    keepalive_timeout: float = setting(
        "seconds", 75.0, "HTTP: how long the master holds an idle persistent connection "
        "between requests (0: close each connection after its response)", pool=True)
    max_idle_connections: int = setting(
        "int", 1000, "HTTP: the most idle persistent connections the master holds; past "
        "it the longest idle is closed", minimum=1, pool=True)
    max_body_size: int = setting(
        "size", 0, "HTTP: the largest request body (413 past it; e.g. 10M; 0: no limit)")
    header_timeout: float = setting(
        "seconds", 10.0, "HTTP: time a client has to send its request head, and between "
        "two reads of its body (408 after it)")
    forwarded_allow_ips: str = setting(
        "networks", "127.0.0.1,::1", "HTTP: proxies whose X-Forwarded-For, "
        "X-Forwarded-Proto and Forwarded headers are believed (comma-separated "
        "addresses or networks, * for any; peers on a Unix socket always)")
    access_log: str = setting(
        "str", "", "HTTP: write an access log line per request here (- for standard "
        "output)", metavar="PATH|-")
    access_log_format: str = setting(
        "choice", "combined", "HTTP: common, combined or json", choices=(
            "common", "combined", "json"))
    log_level: str = setting("level", "info", "debug, info, warning or error")
    error_log: str = setting(
        "str", "", "log to this file instead of standard error", metavar="PATH")
    debug: bool = setting("bool", False, "show tracebacks for errors")

    def __post_init__(self):
        if isinstance(self.workers, str):
            object.__setattr__(self, "workers", parse_value(_BY_NAME["workers"],
                                                            self.workers, "workers"))
        for s in SETTINGS:
            if s.source != "derived":
                _check(s, getattr(self, s.name), s.name)
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


SETTINGS = tuple(dataclasses.replace(f.metadata["setting"], name=f.name)
                 for f in dataclasses.fields(Config))
_BY_NAME = {s.name: s for s in SETTINGS}
POOL_SETTINGS = tuple(s.name for s in SETTINGS if s.pool)


def _check(s, value, where):
    """Type and range of an already-typed value; raise ConfigError naming *where*."""
    expected = s.kind.check(value, s)
    if not expected:
        return
    if s.kind.name == "spec" and isinstance(value, str):
        raise ConfigError(f"{where} {value!r} is not of the form MODULE:NAME "
                          "(e.g. myapp.handlers:EchoHandler)")
    shown = f"{value[0]!r}..{value[1]!r}" if isinstance(value, tuple) and len(value) == 2 \
        else repr(value)
    raise ConfigError(f"{where}: expected {expected}, got {shown}")


def parse_value(s, text, where):
    """Turn *text* (from the command line or the environment) into *s*'s type."""
    try:
        return s.kind.parse(text.strip())
    except ValueError:
        raise ConfigError(f"{where}: expected {s.kind.expected}, got {text.strip()!r}") \
            from None


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
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: not UTF-8 at byte "
                          f"{e.start}") from None
    values = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        s = _BY_NAME.get(name)
        if s is None or s.source == "derived":
            raise ConfigError(f"unknown key {key!r} in {path}{_suggest(name)}")
        where = f"key {key!r} in {path}"
        if s.kind.from_toml:
            try:
                value = s.kind.from_toml(value)
            except ValueError:
                raise ConfigError(f"{where}: expected {s.kind.expected}, got {value!r}") \
                    from None
            except TypeError:  # a TOML number for an octal mode: 440 is not 0o440
                raise ConfigError(f"{where}: expected an octal mode as a string such as "
                                  f"\"0660\" (a TOML number is read as decimal: {value} is "
                                  f"0o{value:o}), got {value!r}") from None
        _check(s, value, where)
        values[name] = value
    return values


def _from_env(environ):
    values = {}
    for key, text in environ.items():
        if not key.startswith("PREFORK_") or key == "PREFORK_CONFIG":
            continue
        name = key[len("PREFORK_"):].lower()
        s = _BY_NAME.get(name)
        if s is None or s.source == "derived":
            raise ConfigError(f"unknown environment variable {key}"
                              f"{_suggest(name, prefix='PREFORK_', upper=True)}")
        values[name] = parse_value(s, text, key)
        _check(s, values[name], key)
    return values


def _suggest(name, prefix="", upper=False):
    names = [s.name for s in SETTINGS if s.source != "derived"]
    close = difflib.get_close_matches(name, names, n=1)
    if not close:
        return ""
    guess = prefix + (close[0].upper() if upper else close[0])
    return f" (did you mean {guess}?)"


def load(cli_values, config_file, environ):
    """Merge defaults < file < *environ* < *cli_values* into a Config.

    *cli_values* maps setting names to typed values given on the command line.  The
    file is *config_file*, else PREFORK_CONFIG from *environ*.
    """
    path = config_file or environ.get("PREFORK_CONFIG", "")
    merged = {}
    if path:
        merged.update(_from_file(path))
    merged.update(_from_env(environ))
    merged.update(cli_values)
    return Config(**merged)


def settings_table(pool=False):
    """The settings as a reStructuredText table, for the documentation: every one
    with its flag and variable, or (*pool*) the pool's, as PreforkMixIn's attributes."""
    if pool:
        rows = [("class attribute", "default", "meaning")]
        rows += [(f"``{s.name}``", f"``{s.default!r}``", s.help) for s in SETTINGS if s.pool]
    else:
        rows = [("setting (TOML key)", "command line", "environment", "default", "meaning")]
        for s in SETTINGS:
            if s.source == "derived":
                continue
            flag = "``MODULE:HANDLER``" if s.source == "argument" else \
                f"``{s.flag}``" if s.kind.action == "store_true" else \
                f"``{s.flag} {s.metavar or s.kind.metavar}``"
            default = s.shown_default()
            rows.append((f"``{s.name}``", flag, f"``{s.env}``",
                         f"``{default}``" if default else "", s.help))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)

    def line(row):
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([rule, line(rows[0]), rule, *map(line, rows[1:]), rule]) + "\n"
