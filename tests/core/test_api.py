"""core's public face matches the documented socketserver API (the API of 3.13)."""

import ast
import inspect
import os
import socket
import socketserver
import sys

import core

EXPECTED_ALL = {
    "BaseServer", "TCPServer", "UDPServer",
    "ThreadingMixIn", "ThreadingTCPServer", "ThreadingUDPServer",
    "BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler",
}
if hasattr(os, "fork"):
    EXPECTED_ALL |= {"ForkingMixIn", "ForkingTCPServer", "ForkingUDPServer"}
if hasattr(socket, "AF_UNIX"):
    EXPECTED_ALL |= {"UnixStreamServer", "UnixDatagramServer",
                     "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer"}
if hasattr(os, "fork") and hasattr(socket, "AF_UNIX"):
    EXPECTED_ALL |= {"ForkingUnixStreamServer", "ForkingUnixDatagramServer"}

SERVERS = ["BaseServer", "TCPServer", "UDPServer", "UnixStreamServer", "UnixDatagramServer",
           "ForkingTCPServer", "ForkingUDPServer", "ThreadingTCPServer", "ThreadingUDPServer",
           "ForkingUnixStreamServer", "ForkingUnixDatagramServer",
           "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer"]

DOCUMENTED_METHODS = [
    "fileno", "handle_request", "serve_forever", "service_actions", "shutdown",
    "server_close", "finish_request", "get_request", "handle_error", "handle_timeout",
    "process_request", "server_activate", "server_bind", "verify_request",
    "shutdown_request", "close_request", "__enter__", "__exit__",
]

CLASS_ATTRIBUTES = [
    "address_family", "socket_type", "allow_reuse_address", "allow_reuse_port",
    "request_queue_size", "timeout", "max_packet_size",
    "max_children", "block_on_close", "active_children", "daemon_threads",
]


def callable_shape(obj):
    """What a caller can rely on: names, kinds and defaults (a *args name is not callable by)."""
    shape = []
    for p in inspect.signature(obj).parameters.values():
        named = p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        shape.append((p.name if named else "*", p.kind, p.default))
    return shape


def test_all_is_exactly_the_documented_names():
    assert len(core.__all__) == len(set(core.__all__)), "a name is listed twice"
    assert set(core.__all__) == EXPECTED_ALL
    for name in core.__all__:
        assert hasattr(core, name), name


def test_all_covers_the_running_stdlib():
    # 3.11's socketserver lacks the Forking Unix classes that 3.12 added; core has them.
    assert set(socketserver.__all__) <= set(core.__all__)


def test_predefined_classes_put_the_mixin_first():
    for name in core.__all__:
        cls = getattr(core, name)
        for prefix, mixin in (("Forking", "ForkingMixIn"), ("Threading", "ThreadingMixIn")):
            if name.startswith(prefix) and not name.endswith("MixIn"):
                base = name[len(prefix):]
                assert cls.__bases__ == (getattr(core, mixin), getattr(core, base)), name


def test_server_classes_have_the_documented_methods_and_signatures():
    for name in SERVERS:
        ours, theirs = getattr(core, name, None), getattr(socketserver, name, None)
        if ours is None or theirs is None:
            continue
        assert callable_shape(ours) == callable_shape(theirs), name
        for meth in DOCUMENTED_METHODS:
            if not hasattr(theirs, meth):
                continue  # fileno(): BaseServer leaves it to the socket-based servers
            assert callable_shape(getattr(ours, meth)) == \
                callable_shape(getattr(theirs, meth)), f"{name}.{meth}"


def test_class_attributes_default_as_documented():
    for name in SERVERS:
        ours, theirs = getattr(core, name, None), getattr(socketserver, name, None)
        if ours is None or theirs is None:
            continue
        for attr in CLASS_ATTRIBUTES:
            assert hasattr(ours, attr) == hasattr(theirs, attr), f"{name}.{attr}"
            if hasattr(theirs, attr):
                assert getattr(ours, attr) == getattr(theirs, attr), f"{name}.{attr}"


def test_forking_collect_children_takes_blocking_by_keyword():
    assert callable_shape(core.ForkingMixIn.collect_children) == \
        callable_shape(socketserver.ForkingMixIn.collect_children)


def test_handler_attributes_default_as_documented():
    for name in ("BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler"):
        ours, theirs = getattr(core, name), getattr(socketserver, name)
        assert callable_shape(ours) == callable_shape(theirs)
        for meth in ("setup", "handle", "finish"):
            assert callable(getattr(ours, meth))
    for attr in ("rbufsize", "wbufsize", "timeout", "disable_nagle_algorithm"):
        assert getattr(core.StreamRequestHandler, attr) == \
            getattr(socketserver.StreamRequestHandler, attr), attr


def test_core_is_standard_library_only():
    stdlib = sys.stdlib_module_names
    here = os.path.dirname(core.__file__)
    for fname in sorted(os.listdir(here)):
        if not fname.endswith(".py"):
            continue
        with open(os.path.join(here, fname)) as f:
            tree = ast.parse(f.read(), fname)
        for node in _walk_imports(tree):
            assert node in stdlib or node == "", f"{fname} imports {node}"


def _walk_imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            yield "" if node.level else node.module.split(".")[0]
