"""The documentation builds cleanly and its core reference covers the whole API."""

import os
import re
import subprocess
import sys

import core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def test_nitpicky_build_passes(tmp_path):
    # -n: every cross-reference must resolve; -W: any warning fails the build.
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-n", "-W", "--keep-going", "-q", "-b", "html",
         DOCS, str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def read_reference():
    with open(os.path.join(DOCS, "core.rst")) as f:
        return f.read()


def documented_classes(text):
    """Class name -> the text of its directive and body."""
    found = {}
    blocks = re.split(r"\n(?=\.\. class:: )", text)
    for block in blocks[1:]:
        head, _, _ = block.partition("\n\n")
        for line in head.splitlines():
            m = re.match(r"(?:\.\. class::)?\s+(\w+)", line)
            if m:
                found[m.group(1)] = block
    return found


def test_every_public_class_has_a_directive_and_a_heading():
    text = read_reference()
    classes = documented_classes(text)
    headings = set(re.findall(r"^(\S.*)\n\^+$", text, re.M))
    for name in core.__all__:
        assert name in classes, f"{name} is not documented"
        if not name.startswith(("Forking", "Threading")) or name.endswith("MixIn"):
            assert any(name in h for h in headings), f"{name} has no heading"


def members(block):
    return re.findall(r"^   \.\. (?:method|attribute):: (\w+)", block, re.M)


def test_members_are_nested_under_their_class():
    classes = documented_classes(read_reference())
    base = members(classes["BaseServer"])
    for name in ["fileno", "handle_request", "serve_forever", "service_actions", "shutdown",
                 "server_close", "address_family", "RequestHandlerClass", "server_address",
                 "socket", "allow_reuse_address", "allow_reuse_port", "request_queue_size",
                 "socket_type", "timeout", "finish_request", "get_request", "handle_error",
                 "handle_timeout", "process_request", "server_activate", "server_bind",
                 "verify_request", "shutdown_request", "close_request"]:
        assert name in base, f"BaseServer.{name} is not documented"
    assert {"max_children", "active_children", "block_on_close", "collect_children"} <= \
        set(members(classes["ForkingMixIn"]))
    assert {"daemon_threads", "block_on_close"} <= set(members(classes["ThreadingMixIn"]))
    assert {"rfile", "wfile", "rbufsize", "wbufsize", "timeout", "disable_nagle_algorithm"} <= \
        set(members(classes["StreamRequestHandler"]))


def test_handler_methods_in_call_order():
    handler = members(documented_classes(read_reference())["BaseRequestHandler"])
    methods = [m for m in handler if m in ("setup", "handle", "finish")]
    assert methods == ["setup", "handle", "finish"]


def test_the_settings_tables_are_made_from_the_declaration():
    from prefork.config import settings_table
    for name, pool in (("settings-table.txt", False), ("pool-settings-table.txt", True)):
        with open(os.path.join(DOCS, name)) as f:
            documented = f.read()
        assert documented == settings_table(pool), (
            f"docs/{name} is out of date; remake it with: python -c 'from prefork.config "
            f"import settings_table; print(settings_table({pool}), end=\"\")' > docs/{name}")
