"""Several hosts behind one nginx, with the upstream block docs/deploy gives: while
one host reloads, another upgrades, one is down and one stops, no request fails."""

import os
import re
import signal

from ..prefork.harness import ROOT, Running, wait_for
from .helpers import WSGI_APPS, HttpLoad, Nginx, free_port, needs_nginx, subreaper, upgrade

pytestmark = needs_nginx

HOSTS_CONF = os.path.join(ROOT, "docs", "deploy", "nginx-hosts.conf")


def upstream_block(addresses):
    """The documented upstream block, its example hosts replaced by *addresses*."""
    with open(HOSTS_CONF) as f:
        text = "\n".join(line for line in f if not line.lstrip().startswith("#"))
    examples = re.findall(r"server (\S+)", text)
    assert len(examples) == len(addresses) == 3
    for example, address in zip(examples, addresses, strict=True):
        text = text.replace(f"server {example}", f"server {address}", 1)
    return text


def test_hosts_reloading_upgrading_down_and_stopping_fail_no_request(sockdir, tmp_path):
    down = free_port()  # a host that is not there at all
    new = None
    args = ["--workers", "2", "wsgiapps:application"]  # kept-alive connections, too
    with subreaper(), Running(sockdir, cli=args, tag="a", pythonpath=[WSGI_APPS]) as a, \
            Running(sockdir, cli=args, tag="b", pythonpath=[WSGI_APPS]) as b:
        hosts = [f"{h}:{p}" for h, p in (a.address, b.address)] + [f"127.0.0.1:{down}"]
        nginx = Nginx(str(tmp_path / "nginx"), None, free_port(), upstream_block(hosts))
        load = HttpLoad(nginx, max_requests=200_000, max_seconds=60)
        load.start()
        try:
            wait_for(lambda: load.ok > 50, "requests through nginx")
            a.signal(signal.SIGHUP)  # host A reloads
            a.expect("RELOADING=1")
            a.expect("READY=1")
            wait_for(lambda n=load.ok: load.ok > n + 50, "requests after the reload")
            new = upgrade(b)  # host B upgrades its master
            assert b.wait_exit() == 0
            wait_for(lambda n=load.ok: load.ok > n + 50, "requests after the upgrade")
            a.signal(signal.SIGTERM)  # host A goes away for good
            assert a.wait_exit() == 0
            # The test made A's listening socket; with A gone, close it too, so A's
            # port refuses connections as a stopped host's does.
            a.listener.close()
            wait_for(lambda n=load.ok: load.ok > n + 200, "requests with one host left")
        finally:
            load.stop()
            nginx.close()
            if new:
                new.stop()
        print(f"\nfigure: several hosts: {load.ok} requests answered, {len(load.bad)} failed")
        assert load.bad == [] and load.ok > 350
