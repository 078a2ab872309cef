"""prefork: a supervising pre-fork master built on core.

    from prefork import PreforkTCPServer
    PreforkTCPServer.workers = 4
    with PreforkTCPServer(("127.0.0.1", 8000), "myapp:Handler") as server:
        server.serve_forever()
"""

from .config import Config
from .deployment import Deployment, Ending
from .errors import BootError, ConfigError, HandlerImportError, PreforkError
from .mixin import (
    PreforkMixIn,
    PreforkTCPServer,
    PreforkUDPServer,
    PreforkUnixDatagramServer,
    PreforkUnixStreamServer,
)
from .worker import WorkerInfo

__all__ = [
    "PreforkMixIn", "PreforkTCPServer", "PreforkUDPServer",
    "PreforkUnixStreamServer", "PreforkUnixDatagramServer",
    "Config", "WorkerInfo", "Deployment", "Ending",
    "PreforkError", "ConfigError", "HandlerImportError", "BootError",
]
