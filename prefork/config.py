"""One typed, validated, frozen Config for the pool.

Settings are read from a server's class attributes (the way socketserver takes
``max_children``), checked once here, and never re-parsed elsewhere.
"""

import dataclasses
import math

from .errors import ConfigError

__all__ = ["Config", "SETTINGS"]


@dataclasses.dataclass(frozen=True)
class Config:
    """The pool's settings.  Times are seconds; sizes are bytes; 0 means "no limit"."""

    workers: int = 2
    max_workers: int = 0          # 0: twice ``workers``
    max_requests: int = 0         # 0: a worker serves for ever
    max_requests_jitter: int = 0
    timeout: float = 30.0         # a worker silent this long is killed; 0: never
    boot_timeout: float = 30.0    # from fork to ready, importing included
    graceful_timeout: float = 30.0
    max_rss: int = 0
    preload: bool = False
    name: str = ""

    def __post_init__(self):
        for field in ("workers", "max_workers", "max_requests", "max_requests_jitter", "max_rss"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{field} must be a whole number >= 0, not {value!r}")
        for field in ("timeout", "boot_timeout", "graceful_timeout"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{field} must be a number of seconds >= 0, not {value!r}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        if self.boot_timeout <= 0:
            raise ConfigError(f"boot_timeout must be more than 0 seconds, not {self.boot_timeout}")
        if not isinstance(self.preload, bool):
            raise ConfigError(f"preload must be true or false, not {self.preload!r}")
        if not isinstance(self.name, str):
            raise ConfigError(f"name must be a string, not {self.name!r}")
        if self.max_workers == 0:
            object.__setattr__(self, "max_workers", 2 * self.workers)
        if self.workers > self.max_workers:
            raise ConfigError(f"workers ({self.workers}) must not exceed max_workers "
                              f"({self.max_workers}); raise max_workers or lower workers")

    @classmethod
    def from_object(cls, obj):
        """Build a Config from the same-named attributes of *obj* (a server)."""
        values = {}
        for field in dataclasses.fields(cls):
            value = getattr(obj, field.name, None)
            if value is not None:
                values[field.name] = value
        return cls(**values)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


SETTINGS = tuple(f.name for f in dataclasses.fields(Config))
