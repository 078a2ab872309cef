#!/usr/bin/env python3
"""Metrics scraping: what a scraper costs prefork's master while the pool serves.

prefork serves the kit's WSGI app (4 workers, --metrics-bind) under wrk -c64 with
keep-alive; a scraper GETs /metrics at 0, 1 and 100 Hz (a new connection each
time, as Prometheus's would be, on a fixed schedule) for --seconds, --rounds times
in turn.  From /proc (psutil): the master's CPU time, over the run and per scrape
beyond the run without a scraper, and the workers' per request, to compare a
scrape with serving.  Then, under the same load, one `prefork top` screen and one
scrape, printed as they are.  gunicorn, granian and uWSGI have no such endpoint
of their own to set beside it (uWSGI's stats server is a JSON dump on a socket,
and needs a plugin for Prometheus), so the comparison is with serving itself.

usage: python benchmarks/metrics_bench.py [--rounds 3] [--seconds 10]
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import _driver as d
import psutil

WORKERS = 4
CONNS = 64
RATES = (0, 1, 100)


def cpu(proc):
    t = proc.cpu_times()
    return t.user + t.system


def workers_cpu(master):
    total = 0.0
    for child in master.children():
        try:
            total += cpu(child)
        except psutil.Error:
            pass
    return total


def scrape(port):
    """GET /metrics on a new connection, as a Prometheus scrape: the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2]


class Scraper(threading.Thread):
    """Scrapes *port* at *rate* a second, on a fixed schedule (a late scrape does not
    push the next ones back), until stop()."""

    def __init__(self, port, rate):
        super().__init__(daemon=True)
        self.port, self.rate, self.sizes = port, rate, []
        self.done = threading.Event()

    def run(self):
        start = time.monotonic()
        while not self.done.wait(max(0.0, start + len(self.sizes) / self.rate
                                     - time.monotonic())):
            self.sizes.append(len(scrape(self.port)))

    def stop(self):
        self.done.set()
        self.join()


def one_run(port, metrics_port, master, seconds, rate):
    """wrk for *seconds* with a scraper at *rate* Hz: (req/s, master CPU s, workers CPU s,
    scrapes, mean bytes a scrape)."""
    scraper = Scraper(metrics_port, rate) if rate else None
    m0, w0 = cpu(master), workers_cpu(master)
    if scraper:
        scraper.start()
    out = subprocess.run(["wrk", "-t1", f"-c{CONNS}", f"-d{seconds}s",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    if scraper:
        scraper.stop()
    sizes = scraper.sizes if scraper else []
    m1, w1 = cpu(master), workers_cpu(master)
    rps = float(out.split("Requests/sec:")[1].split()[0])
    return rps, m1 - m0, w1 - w0, len(sizes), statistics.mean(sizes) if sizes else 0


def main():
    p = d.parser(__doc__, rounds=3, seconds=10)
    a = p.parse_args()
    kit, env, _, _ = d.prepare(a, gunicorn=False)
    port, metrics_port = d.free_port(), d.free_port()
    ctl = d.scratch("prefork.ctl")
    cmd = [sys.executable, "-m", "prefork", "serve", "--workers", str(WORKERS), "--bind",
           f"127.0.0.1:{port}", "--metrics-bind", f"127.0.0.1:{metrics_port}", "--control",
           ctl, "--log-level", "warning", "hello:app"]
    proc = subprocess.Popen(cmd, env=env, cwd=kit, start_new_session=True)
    try:
        if not d.wait_http(port, 30):
            sys.exit("metrics_bench: error: prefork did not answer")
        master = psutil.Process(proc.pid)
        subprocess.run(["wrk", "-t1", "-c8", "-d1s", f"http://127.0.0.1:{port}/"],
                       capture_output=True)  # every worker has imported the app
        print(f"Python {sys.version.split()[0]}; prefork, {WORKERS} workers, the kit's WSGI "
              f"app, wrk -c{CONNS} keep-alive, {a.seconds} s a run, {a.rounds} rounds\n")
        print(f"{'scraper':>8} {'req/s':>8} {'master CPU ms':>14} {'scrapes':>8} "
              f"{'bytes':>7} {'workers us/req':>15}")
        found = {rate: [] for rate in RATES}
        for _ in range(a.rounds):
            for rate in RATES:
                run = one_run(port, metrics_port, master, a.seconds, rate)
                found[rate].append(run)
                rps, m, w, n, size = run
                print(f"{rate:>6} Hz {rps:8.0f} {m * 1e3:14.1f} {n:8d} {size:7.0f} "
                      f"{w / (rps * a.seconds) * 1e6:15.1f}", flush=True)
        base = statistics.median(r[1] for r in found[0])
        serving = statistics.median(r[2] / (r[0] * a.seconds) for r in found[0])
        print("\nfigure                                                   value")
        for rate in RATES[1:]:
            per = statistics.median((r[1] - base) / r[3] for r in found[rate] if r[3])
            share = statistics.median(r[1] / a.seconds for r in found[rate])
            got = statistics.median(r[3] for r in found[rate]) / a.seconds
            print(f"scrapes a second asked {rate}, made{got:>35.1f}")
            print(f"master CPU per scrape at {rate} Hz, ms (beyond 0 Hz){per * 1e3:>26.2f}")
            print(f"master CPU at {rate} Hz, share of one core{share * 100:>30.2f} %")
            print(f"one scrape / one request served (CPU){per / serving:>28.1f}")
        print(f"master CPU with no scraper, share of one core"
              f"{base / a.seconds * 100:>22.2f} %")
        print(f"workers' CPU per request, us{serving * 1e6:>38.1f}")
        load = subprocess.Popen(["wrk", "-t1", f"-c{CONNS}", "-d6s",
                                 f"http://127.0.0.1:{port}/"], stdout=subprocess.DEVNULL)
        time.sleep(2)  # the load under way: what the screen and the scrape show
        top = subprocess.run([sys.executable, "-m", "prefork", "top", "-n", "2", "--control",
                              ctl], capture_output=True, text=True, env=env).stdout
        text = scrape(metrics_port).decode()
        status = json.loads(subprocess.run(
            [sys.executable, "-m", "prefork", "status", "--json", "--control", ctl],
            capture_output=True, text=True, env=env).stdout)
        load.wait()
        screens = top.split("master ")
        print("\nprefork top, its second screen, under the load:\n")
        print("master " + screens[-1].rstrip())
        print(f"\none scrape of /metrics under the load ({len(text)} bytes):\n")
        print(text.rstrip())
        print(f"\n(status --json: {len(status['workers'])} workers)")
    finally:
        d.stop_group(proc)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
