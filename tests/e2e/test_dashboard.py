"""The Grafana dashboard's queries asked of a real Prometheus (Debian's), which scrapes
a loaded master through docs/deploy/prometheus.yml: each panel's PromQL must parse,
and answer with the series the panel draws."""

import json
import os
import re
import shutil
import signal
import urllib.parse

import pytest

from ..prefork.harness import ROOT, Running, wait_for
from .helpers import WSGI_APPS, Foreground, fetch, free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DEPLOY = os.path.join(ROOT, "docs", "deploy")


class Prometheus(Foreground):
    """docs/deploy/prometheus.yml run in the foreground with its example targets
    replaced by *targets* and a scrape every second."""

    def __init__(self, directory, targets):
        with open(os.path.join(DEPLOY, "prometheus.yml")) as f:
            text = f.read()
        examples = re.search(r"targets: (\[.*\])", text).group(1)
        text = text.replace(examples, json.dumps(targets), 1)
        text = text.replace("scrape_interval: 15s", "scrape_interval: 1s", 1)
        assert "10.0.0" not in text and "scrape_interval: 1s" in text
        os.makedirs(directory, exist_ok=True)
        conf = os.path.join(directory, "prometheus.yml")
        with open(conf, "w") as f:
            f.write(text)
        self.port = free_port()
        super().__init__([PROMETHEUS, f"--config.file={conf}",
                          f"--storage.tsdb.path={os.path.join(directory, 'data')}",
                          f"--web.listen-address=127.0.0.1:{self.port}"],
                         os.path.join(directory, "prometheus.log"))
        wait_for(self._ready, "prometheus to be ready")

    def _ready(self):
        try:
            return fetch(("127.0.0.1", self.port), "/-/ready")[0] == 200
        except OSError:
            assert self.proc.poll() is None, self.output()
            return False

    def api(self, path, **params):
        status, body = fetch(("127.0.0.1", self.port),
                             f"/api/v1/{path}?{urllib.parse.urlencode(params)}")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (params, answer)
        return answer["data"]

    def query(self, expr):
        """{labels as a sorted tuple of (name, value): value} of an instant query."""
        return {tuple(sorted(r["metric"].items())): float(r["value"][1])
                for r in self.api("query", query=expr)["result"]}


def panels():
    """[(panel title, expr)] of docs/deploy/grafana-dashboard.json, and its template
    variables' queries."""
    with open(os.path.join(DEPLOY, "grafana-dashboard.json")) as f:
        board = json.load(f)
    exprs = [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", ())]
    variables = {v["name"]: v["query"] for v in board["templating"]["list"]
                 if v["type"] == "query"}
    return exprs, variables


def scrape(port):
    status, body = fetch(("127.0.0.1", port), "/metrics")
    assert status == 200
    return body.decode()


@pytest.mark.skipif(not os.path.exists(PROMETHEUS), reason="prometheus not installed "
                    "(Debian prometheus)")
def test_every_panel_of_the_dashboard_answers_from_prometheus(sockdir, tmp_path):
    port = free_port()
    master = Running(sockdir, pythonpath=[WSGI_APPS], cli=[
        "--metrics-bind", f"127.0.0.1:{port}", "--workers", "2", "--max-requests", "30",
        "wsgiapps:application"])
    target = f"127.0.0.1:{port}"
    prometheus = None
    try:
        prometheus = Prometheus(str(tmp_path / "prometheus"), [target])
        up = f'up{{job="prefork", instance="{target}"}}'
        wait_for(lambda: list(prometheus.query(up).values()) == [1.0], "a first scrape")
        # Load after the first scrape, so that each counter is seen rising: requests,
        # workers recycled at max_requests, a reload, the workers it boots.
        for _ in range(100):
            assert fetch(master.address)[0] == 200
        master.signal(signal.SIGHUP)
        wait_for(lambda: reloaded(scrape(port)), "the reload to retire the old workers")

        exprs, variables = panels()

        def ask(expr):
            return prometheus.query(expr.replace("$job", "prefork").replace("$instance",
                                                                             target))

        missing = {}

        def seen():
            # Requests go on while the scrapes come, few enough that a worker lives
            # through two scrapes (its CPU is drawn as a rate).
            for _ in range(2):
                assert fetch(master.address)[0] == 200
            answers = {(title, expr): ask(expr) for title, expr in exprs}
            missing.clear()
            missing.update({k: v for k, v in answers.items() if not _draws(*k, v)})
            return answers if not missing else None

        try:
            answers = wait_for(seen, "every panel's series in prometheus", timeout=60,
                               interval=0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}; still without: {missing}") from None
        assert len(answers) == len(exprs) >= 10
        # The template variables: Grafana's label_values(METRIC, LABEL).
        for name, query in variables.items():
            metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", query).groups()
            metric = metric.replace("$job", "prefork")
            values = prometheus.api(f"label/{label}/values", **{"match[]": metric})
            assert values == [{"job": "prefork", "instance": target}[name]], (name, values)
    finally:
        if prometheus is not None:
            prometheus.close()
        master.close()


def reloaded(text):
    """Whether the master's metrics *text* say a reload is done: generation 2 serving,
    an old worker or more retired for it, none booting or retiring any more."""
    value = dict(re.findall(r"^(prefork_\S+) (\S+)$", text, re.MULTILINE))
    return (value["prefork_generation"] == "2"
            and float(value['prefork_worker_exits_total{reason="reload"}']) >= 1
            and value['prefork_workers{state="booting"}'] == "0"
            and value['prefork_workers{state="retiring"}'] == "0")


def _draws(title, expr, answer):
    """Whether *answer* to a panel's *expr* has what the panel draws once the pool
    has served, recycled workers and reloaded."""
    values = list(answer.values())
    if not values:
        return False
    if "requests_total" in expr or "request_duration" in expr or "boot_seconds" in expr:
        return all(v > 0 for v in values)  # NaN (nothing yet in the window) is not > 0
    if title == "Workers by state":
        return {dict(k)["state"] for k in answer} == {"booting", "idle", "busy", "retiring"}
    if "worker_exits_total" in expr:
        by = {dict(k)["reason"]: v for k, v in answer.items()}
        return by.get("max_requests", 0) > 0 and by.get("reload", 0) > 0
    if "reloads_total" in expr:
        return {dict(k)["result"]: v for k, v in answer.items()}.get("ok", 0) > 0
    if "resident_bytes" in expr:
        return len(values) >= 2 and all(v > 1 << 20 for v in values)
    if "listen_queue_limit" in expr:
        return all(v > 0 for v in values)
    return all(v >= 0 for v in values)  # queues, CPU, idle connections, upgrades
