"""CPython's own test_subprocess, with subprocess.Popen starting programs in a space.

The suite is the interpreter's (`test.test_subprocess`), run by
tests/_cpython_subprocess_suite.py in a Python of its own: it replaces
subprocess.Popen for the whole process and opens the one Space a process may
have.  Its tests of refused arguments must fail with the space's ValueError;
every other test must pass.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

RUNNER = os.path.join(os.path.dirname(__file__), "_cpython_subprocess_suite.py")


def test_cpython_test_subprocess_passes_with_programs_in_a_space():
    if importlib.util.find_spec("test") is None or importlib.util.find_spec("test.test_subprocess") is None:
        pytest.skip(f"{sys.executable} has no test.test_subprocess "
                    "(on Debian: apt install libpython3.X-testsuite; scripts/bootstrap.sh does)")
    run = subprocess.run([sys.executable, RUNNER], capture_output=True, text=True, timeout=600)
    lines = run.stdout.splitlines()
    assert lines, f"the runner printed no summary:\n{run.stderr[-4000:]}"
    summary = json.loads(lines[-1])
    assert summary["failed"] == [], run.stderr[-8000:]
    assert summary["unexpected_successes"] == []
    assert run.returncode == 0, run.stderr[-4000:]
    # What ran: the POSIX classes' ~200 tests (a few skip on any Linux).
    assert summary["ran"] - summary["skipped"] > 150, summary
