"""Serve a handler with PreforkTCPServer, for the benchmarks.

usage: prefork_server.py PORT WORKERS MODULE:HANDLER [setting=value ...]
The handler is imported by each worker after fork, as a reload needs.
"""

import sys

from prefork import PreforkTCPServer


def main():
    port, workers, handler, *settings = sys.argv[1:]
    PreforkTCPServer.workers = int(workers)
    for item in settings:
        key, _, value = item.partition("=")
        setattr(PreforkTCPServer, key, type(getattr(PreforkTCPServer, key))(value))
    with PreforkTCPServer(("127.0.0.1", int(port)), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
