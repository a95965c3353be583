"""`sameprocess demo` end to end, on a test server, with small objects."""
from __future__ import annotations

import re
import subprocess

from _server_helpers import SP, clean_env, server, sockdir  # noqa: F401


def test_demo_hands_objects_over_by_pointer(server, tmp_path):
    cache = tmp_path / "cache"
    args = SP + ["demo", "--socket", server.path, "--length", "100000", "--entries", "1000",
                 "--cache", str(cache)]
    result = subprocess.run(args, capture_output=True, text=True, env=clean_env(), timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "identical to what the producer computed" in out
    producer = re.search(r"^   producer (.*)$", out, re.M).group(1)
    consumers = re.findall(r"^   consumer (.*)$", out, re.M)
    assert consumers == [producer, producer]        # by pointer, and through the pipe
    assert "string_len=100000" in producer and "map_size=1000" in producer
    assert re.search(r"handoff by pointer: +\d+\.\d+ ms", out)
    assert re.search(r"handoff through a pipe: +\d+\.\d+ ms", out)
    assert server.log().count("spawned pid") == 2   # two separate launches in the space
    built = list(cache.iterdir())
    again = subprocess.run(args, capture_output=True, text=True, env=clean_env(), timeout=600)
    assert again.returncode == 0 and list(cache.iterdir()) == built, "built once, then cached"
