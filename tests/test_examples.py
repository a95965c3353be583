"""The README's demo works: examples/space_demo.py end to end."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_space_demo_shows_the_zero_copy_handoff(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path))  # its build cache goes under HOME
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "space_demo.py")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "map_lookup_beta=2" in r.stdout
    assert "the host reads the string in place: ABCDEFGHIJKLMNOPQRSTUVWXYZ..." in r.stdout
    assert "producer exited with 0" in r.stdout
