"""The `prefork` command: what `prefork serve` adds to the library (sockets from
--bind, systemd or an old master; the pidfile, the control socket, logging and
daemon mode; the new master's half of an upgrade), and the client commands that
talk to a running master.  The library (``import prefork``) never imports it.

    cli        the parser; errors become one line and an exit status
    serve      `prefork serve` and `prefork check`: the composition of a master
    preflight  the handler imported once in a child, before anything is bound
    listeners  --bind addresses, systemd's and an old master's sockets, the control socket
    process    the pidfile, user and group, logging, detaching
    takeover   the new master's half of an upgrade
    client     status, reload, upgrade, stop and scale of a running master
"""

from .cli import main

__all__ = ["main"]
