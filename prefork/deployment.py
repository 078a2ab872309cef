"""What a master is given besides its server and settings, and how its run ended.

A server run from Python needs none of it: ``serve_forever()`` runs the master
with an empty Deployment.  The `prefork` command fills one in: the further
sockets it serves, the control socket, the metrics listener, the files only the
master may hold, how to read the settings again on a reload, how to start a new
master image, and, in the new master of an upgrade, what to do once it is ready.
The master returns how its run ended, so the command knows whether the sockets
and files it made are still its own.
"""

import dataclasses
import enum

__all__ = ["Deployment", "Ending"]


@dataclasses.dataclass(frozen=True)
class Deployment:
    servers: tuple = ()       # more servers, one per further listening socket, served by
    #                           the same pool; their hooks apply to their own sockets
    control: object = None    # a listening Unix socket (an object with accept() and
    #                           fileno()) to answer status, reload, upgrade, stop, scale on
    master_files: tuple = ()  # objects whose fileno() (-1 once closed) no worker may keep
    reread: object = None     # on a reload: a callable returning the new Config; raising
    #                           abandons the reload.  None: the server's own attributes
    upgrade: object = None    # upgrade.Plan for a new master image; None refuses SIGUSR2
    takeover: object = None   # in the new master of an upgrade: called once it is ready
    idle_channel: tuple = ()  # in the new master of an upgrade: the old master's channel
    #                           for idle keep-alive connections (its two sockets), shared
    metrics: object = None    # a listening TCP socket to serve /metrics, /ready, /live on


class Ending(enum.Enum):
    STOPPED = "stopped"          # by a signal, shutdown() or the control socket
    HANDED_OVER = "handed over"  # to a new master: its sockets and files are the new one's
