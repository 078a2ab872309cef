"""Run a prefork server for a test, on a listening socket the test made.

usage: serve.py SERVER FD HANDLER [setting=value ...]
SERVER: tcp | udp | unix | unixgram, or module:Class (a PreforkMixIn server)
FD: the inherited, already bound socket to serve (as systemd would pass it)
HANDLER: module:Name, imported by each worker after fork; prefix "class:" to
import it here and pass the class itself
Standard input closing makes a thread call shutdown().  Logs go to stderr.
"""

import logging
import socket
import sys
import threading

import prefork
from prefork.loader import import_object

SERVERS = {"tcp": prefork.PreforkTCPServer, "udp": prefork.PreforkUDPServer,
           "unix": prefork.PreforkUnixStreamServer, "unixgram": prefork.PreforkUnixDatagramServer}


def value(text):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(process)d %(levelname)s %(message)s")
    kind, fd, handler, *settings = sys.argv[1:]
    cls = SERVERS.get(kind) or import_object(kind, "server")
    if handler.startswith("class:"):
        handler = import_object(handler[len("class:"):])
    server = cls.over_socket(socket.socket(fileno=int(fd)), handler)
    for item in settings:
        key, _, text = item.partition("=")
        setattr(server, key, value(text))

    def stop_on_eof():
        sys.stdin.read()
        server.shutdown()

    threading.Thread(target=stop_on_eof, daemon=True).start()
    try:
        server.serve_forever()
    except prefork.PreforkError as e:
        print(f"serve: error: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
