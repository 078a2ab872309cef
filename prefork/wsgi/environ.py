"""The PEP 3333 environ of a request, and whom to believe about the client.

Header fields come as request.py made them: ``HTTP_*`` keys (``Content-Type`` and
``Content-Length`` their own), a field sent twice joined with ", " (a Cookie with
"; "), a name with an underscore dropped.  ``PATH_INFO`` is the percent-decoded
path, as a latin-1 string.

A proxy in *forwarded_allow_ips* (by default loopback, and any peer on a Unix
socket: nginx on the same host) is believed about the client: ``X-Forwarded-For``
gives REMOTE_ADDR (the address nearest to the proxies that is not one of them),
``X-Forwarded-Proto`` ``wsgi.url_scheme``, and ``X-Forwarded-Prefix`` SCRIPT_NAME (an
application mounted under a path); ``Forwarded`` (RFC 7239) is read only
when neither is there, since a proxy that sets them passes the client's own
``Forwarded`` on.  Anyone else's are passed to the application as headers and
change nothing.
"""

import ipaddress
import sys
from urllib.parse import unquote_to_bytes

import httptools

from . import request as request_mod
from .errors import HTTPError
from .filewrapper import FileWrapper

__all__ = ["base_environ", "build", "Trusted"]


def base_environ(server):
    """What every request's environ on *server* starts from."""
    address = server.server_address
    if isinstance(address, tuple):
        name, port = str(address[0]), str(address[1])
    else:  # a Unix socket: the Host header says more (build() puts it in)
        name, port = "localhost", "80"
    return {"wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
            "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "wsgi.input_terminated": True, "wsgi.file_wrapper": FileWrapper,
            "SERVER_NAME": name, "SERVER_PORT": port, "SCRIPT_NAME": ""}


class Trusted:
    """The proxies whose forwarding headers are believed: a comma-separated list of
    addresses and networks, "*" for any peer, "" for none; Unix-socket peers always."""

    def __init__(self, spec):
        self.anyone = spec.strip() == "*"
        self._seen = {}
        self.networks = [] if self.anyone else [
            ipaddress.ip_network(part.strip(), strict=False)
            for part in spec.split(",") if part.strip()]

    def __contains__(self, address):
        if self.anyone or not address:  # "" is a Unix-socket peer
            return True
        known = self._seen.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address.split("%", 1)[0])
                known = any(ip in net for net in self.networks)
            except ValueError:
                known = False
            if len(self._seen) < 4096:  # the same few peers, a proxy above all
                self._seen[address] = known
        return known


def build(request, base, client, trusted):
    """The environ for *request* (a request.Request) from a client at *client* (the
    socket's peer: (host, port), or "" on a Unix socket)."""
    target = request.target
    authority = None
    if target[:1] == "/" and "#" not in target:  # origin-form, as nearly all are
        path, _, query = target.partition("?")
    else:  # absolute-form (a proxy's), or OPTIONS *
        if target == "*" and request.method != "OPTIONS":  # RFC 9112 3.2.4
            raise HTTPError(400, f"{request.method} *: the asterisk is OPTIONS's alone")
        try:
            url = httptools.parse_url(target.encode("latin-1"))
        except httptools.HttpParserInvalidURLError:
            raise HTTPError(400, f"request target {target[:100]!r}") from None
        path = (url.path or b"/").decode("latin-1")
        query = url.query.decode("latin-1") if url.query else ""
        if url.host:
            authority = _authority(target)
    if "%" in path:
        path = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
    fields = request.fields
    env = base.copy()  # (a copy, then stores: cheaper than one literal merging the three)
    env.update(fields)
    if authority is not None:  # the target names the host: Host is ignored (RFC 9112 3.2.2)
        env["HTTP_HOST"] = authority
    env["REQUEST_METHOD"] = request.method
    env["SERVER_PROTOCOL"] = request.protocol
    env["RAW_URI"] = target
    # PATH_INFO starts with "/" (PEP 3333's tools insist): OPTIONS * has none.
    env["PATH_INFO"] = "" if path == "*" else path
    env["QUERY_STRING"] = query
    if client:
        env["REMOTE_ADDR"] = client[0]
        env["REMOTE_PORT"] = str(client[1])
    else:
        env["REMOTE_ADDR"] = ""
    if not client and "HTTP_HOST" in env:  # on a Unix socket, the name asked for
        host = env["HTTP_HOST"]
        if host.startswith("["):  # [v6]:port
            name, _, rest = host[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            name, _, port = host.partition(":")
        env["SERVER_NAME"] = name
        if port.isdigit():
            env["SERVER_PORT"] = port
    if not _FORWARDING.isdisjoint(fields) and (client[0] if client else "") in trusted:
        _forwarded(env, trusted)
    return env


def _authority(target):
    """The host and port an absolute-form *target* names: http://a.test:8080/p -> a.test:8080
    (without user information); 400 if it is no host."""
    authority = target.partition("://")[2]
    for end in "/?#":
        authority = authority.partition(end)[0]
    authority = authority.rpartition("@")[2]
    if not authority or not request_mod.valid_host(authority):
        raise HTTPError(400, f"request target {target[:100]!r} names no host")
    return authority


_FORWARDING = frozenset(("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                         "HTTP_X_FORWARDED_PREFIX"))


def _forwarded(env, trusted):
    """Believe the proxy: the client's address and the scheme it used.  X-Forwarded-For
    and X-Forwarded-Proto, which proxies such as nginx set, win over Forwarded, which
    such a proxy passes on from the client untouched: a client's own Forwarded must
    not pass for the proxy's word."""
    hops, proto = [], None
    if "HTTP_X_FORWARDED_FOR" in env or "HTTP_X_FORWARDED_PROTO" in env:
        if "HTTP_X_FORWARDED_FOR" in env:
            hops = [h.strip() for h in env["HTTP_X_FORWARDED_FOR"].split(",") if h.strip()]
        if "HTTP_X_FORWARDED_PROTO" in env:
            proto = env["HTTP_X_FORWARDED_PROTO"].split(",")[0].strip().lower()
    elif "HTTP_FORWARDED" in env:  # a proxy that speaks RFC 7239 alone
        for element in env["HTTP_FORWARDED"].split(","):
            for pair in element.split(";"):
                key, _, value = pair.strip().partition("=")
                value = value.strip().strip('"')
                if key.lower() == "for":
                    hops.append(_host_of(value))
                elif key.lower() == "proto":
                    proto = value.lower()
    if hops:
        # The nearest hop that is not a trusted proxy is the client; all of them
        # trusted: the farthest.
        client = next((h for h in reversed(hops) if h not in trusted), hops[0])
        env["REMOTE_ADDR"] = client
        env.pop("REMOTE_PORT", None)
    if proto in ("http", "https"):
        env["wsgi.url_scheme"] = proto
    if "HTTP_X_FORWARDED_PREFIX" in env:
        _mounted(env, env["HTTP_X_FORWARDED_PREFIX"])


def _mounted(env, prefix):
    """The application is mounted under *prefix* (a proxy's location /shop/): it is
    SCRIPT_NAME, and out of PATH_INFO when the proxy passed the path whole."""
    prefix = prefix.split(",")[0].strip().rstrip("/")
    if not prefix:
        return
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    env["SCRIPT_NAME"] = prefix
    path = env["PATH_INFO"]
    if path == prefix or path.startswith(prefix + "/"):
        env["PATH_INFO"] = path[len(prefix):]


def _host_of(node):
    """A Forwarded ``for`` node without its port: 192.0.2.1:80 -> 192.0.2.1, [::1]:80 -> ::1."""
    if node.startswith("["):
        return node[1:].split("]", 1)[0]
    return node.rsplit(":", 1)[0] if node.count(":") == 1 else node
