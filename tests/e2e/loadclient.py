"""HTTP load for the tests under a real systemd, run inside the container by its
own python3 (the standard library only).

    python3 loadclient.py TARGET [--connections N] [--max-seconds S]

TARGET is ``unix:/path`` or ``HOST:PORT``.  N threads each send GET / on a new
connection, wait for the whole answer, and go again, until told to stop or until
the bound in time (each request has a 10 s limit).  It reads commands on standard
input, one a line, and answers on standard output:

    after N    answers "ok TOTAL" once N more requests have been answered
    stop       stops, then prints the summary as one JSON line and exits

End of input is a stop.  The summary: requests answered, failures (each with its
reason), connections refused, the slowest answer and the five slowest, and how
many answers each version of the application gave (an answer's first two words,
e.g. "shop v2").
"""

import argparse
import http.client
import json
import socket
import sys
import threading
import time


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Load:
    def __init__(self, target, connections, max_seconds, timeout=10.0):
        self.target, self.timeout = target, timeout
        self.end = time.monotonic() + max_seconds
        self.lock = threading.Condition()
        self.stopping = False
        self.ok = 0
        self.failed, self.latencies, self.versions = [], [], {}
        self.refused = 0
        self.threads = [threading.Thread(target=self.loop, daemon=True)
                        for _ in range(connections)]

    def connection(self):
        if self.target.startswith("unix:"):
            return UnixHTTPConnection(self.target[5:], self.timeout)
        host, port = self.target.rsplit(":", 1)
        return http.client.HTTPConnection(host, int(port), timeout=self.timeout)

    def loop(self):
        while not self.stopping and time.monotonic() < self.end:
            started = time.monotonic()
            conn = self.connection()
            try:
                conn.request("GET", "/", headers={"Connection": "close"})
                response = conn.getresponse()
                body = response.read().decode(errors="replace")
                error = None if response.status == 200 else f"status {response.status}"
            except ConnectionRefusedError as e:
                error, body = f"refused: {e}", ""
            except (OSError, http.client.HTTPException) as e:
                error, body = f"{type(e).__name__}: {e}", ""
            finally:
                conn.close()
            took = time.monotonic() - started
            with self.lock:
                self.latencies.append(took)
                if error:
                    self.failed.append(error)
                    self.refused += error.startswith("refused")
                else:
                    self.ok += 1
                    version = " ".join(body.split()[:2])
                    self.versions[version] = self.versions.get(version, 0) + 1
                self.lock.notify_all()

    def after(self, n):
        with self.lock:
            goal = self.ok + n
            self.lock.wait_for(lambda: self.ok >= goal or time.monotonic() >= self.end,
                               timeout=max(0.0, self.end - time.monotonic()))
            return self.ok

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(self.timeout + 5)
        slow = sorted(self.latencies, reverse=True)
        return {"requests": self.ok, "failed": self.failed, "refused": self.refused,
                "slowest": round(slow[0], 3) if slow else 0.0,
                "slowest5": [round(s, 3) for s in slow[:5]], "versions": self.versions}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    load = Load(args.target, args.connections, args.max_seconds)
    for t in load.threads:
        t.start()
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["after"]:
            print(f"ok {load.after(int(words[1]))}", flush=True)
        elif words[:1] == ["stop"]:
            break
    print(json.dumps(load.stop()), flush=True)


if __name__ == "__main__":
    main()
