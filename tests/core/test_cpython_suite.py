"""CPython's own socketserver tests (Lib/test/test_socketserver.py), run on core.

The module under test is swapped before the suite imports it, as a user swaps it:
``sys.modules["socketserver"] = core``.  One test is left out: ``test_all`` finds
the names a module must export by their ``__module__`` being ``"socketserver"``,
which core's classes (``core.base``, ``core.servers``...) are not;
tests/core/test_api.py checks core's ``__all__`` against core's own modules instead.
"""

import re
import subprocess
import sys

import pytest

RUN_ON_CORE = """
import sys
import unittest

import core

sys.modules["socketserver"] = core
try:
    from test import test_socketserver as suite
except ImportError as e:
    print(f"no CPython test suite here: {e}")
    sys.exit(77)
assert suite.socketserver is core
suite.MiscTestCase.test_all = unittest.skip("names found by __module__ == 'socketserver'")(
    suite.MiscTestCase.test_all)
tests = unittest.defaultTestLoader.loadTestsFromModule(suite)
result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(tests)
sys.exit(0 if result.wasSuccessful() else 1)
"""


def test_cpythons_socketserver_tests_pass_on_core():
    proc = subprocess.run([sys.executable, "-c", RUN_ON_CORE], capture_output=True,
                          text=True, timeout=240)
    if proc.returncode == 77:
        pytest.skip(proc.stdout.strip() + " (a Python built without its test package)")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "test_threads_reaped (" in proc.stdout  # it ran (and, the run being OK, passed)
    ran = re.search(r"^Ran (\d+) tests", proc.stdout, re.M)
    assert ran and int(ran[1]) >= 20
    assert proc.stdout.rstrip().endswith("OK (skipped=1)")  # test_all, and nothing else
