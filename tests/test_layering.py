"""The layers, as the imports show them: ``core`` below everything; ``prefork``
on core's public names only; the decisions (policy, its actions, the adaptive
pool, the settings) free of I/O; the library free of the command.  A violating
import fails here, whatever the tests of behaviour say."""

import ast
import os
import subprocess
import sys

import core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What the pure modules may import: the decisions take `now` and samples as
# arguments; a clock, a process, a socket or a file of their own is a layering fault.
PURE = {
    "prefork/policy.py": {"dataclasses", "math", "random", "signal", ".actions", ".adaptive",
                          ".errors"},
    "prefork/actions.py": {"dataclasses"},
    "prefork/adaptive.py": set(),
    "prefork/config.py": {"dataclasses", "difflib", "ipaddress", "math", "re", "tomllib",
                          ".errors"},
}


def sources(folder):
    for dirpath, _, names in os.walk(os.path.join(ROOT, folder)):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                yield os.path.relpath(path, ROOT), path


def imports(path):
    """[(module imported, [names taken from it])]: ".x" for a relative import."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found.append((module, [alias.name for alias in node.names]))
    return found, tree


def test_core_imports_nothing_of_prefork():
    for rel, path in sources("core"):
        for module, _ in imports(path)[0]:
            assert not module.startswith("prefork"), f"{rel} imports {module}"


def test_prefork_uses_only_the_names_core_exports():
    public = set(core.__all__)
    for rel, path in sources("prefork"):
        found, tree = imports(path)
        for module, names in found:
            if module == "core":
                assert set(names) <= public, f"{rel}: from core import {names}"
            else:
                assert not module.startswith("core."), f"{rel} imports core's inside: {module}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "core":
                assert node.attr in public, f"{rel} uses core.{node.attr}, not in core.__all__"


def test_the_decisions_import_no_io():
    for rel, allowed in PURE.items():
        found, _ = imports(os.path.join(ROOT, rel))
        for module, _ in found:
            assert module in allowed, f"{rel} imports {module}, which the decisions must not"


def test_the_library_does_not_import_the_command():
    for rel, path in sources("prefork"):
        # __main__ is `python -m prefork`: the command's entry, never imported.
        if rel.startswith(os.path.join("prefork", "command")) or rel.endswith("__main__.py"):
            continue
        for module, names in imports(path)[0]:
            assert "command" not in module.split(".") and "command" not in names, \
                f"{rel} imports the command ({module})"


def test_importing_the_library_loads_neither_the_command_nor_psutil():
    code = ("import sys, prefork, prefork.policy, prefork.config; "
            "print(sorted(m for m in sys.modules if m == 'psutil' "
            "or m.startswith(('prefork.command', 'daemon'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_the_http_front_end_stands_on_core_the_parser_and_the_stdlib():
    for rel, path in sources(os.path.join("prefork", "wsgi")):
        for module, _ in imports(path)[0]:
            top = module.split(".")[0]
            allowed = (module.startswith(".") and not module.startswith("..")) \
                or top in ("core", "httptools") or top in sys.stdlib_module_names
            assert allowed, f"{rel} imports {module}: the front end needs only core, " \
                            "httptools and its own modules"


def test_the_master_and_the_worker_loop_know_nothing_of_http():
    # Only the loader reaches the front end, and only for an application.
    for rel, path in sources("prefork"):
        if rel.startswith(os.path.join("prefork", "wsgi")) or rel == "prefork/loader.py":
            continue
        for module, names in imports(path)[0]:
            assert "wsgi" not in module.split(".") and "wsgi" not in names \
                and module != "httptools", f"{rel} imports {module}"
    code = ("import sys, prefork, prefork.master, prefork.worker, prefork.loader; "
            "prefork.loader.load_handler('examples.hello:Hello'); "
            "print(sorted(m for m in sys.modules if m.startswith(('prefork.wsgi', "
            "'httptools'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
