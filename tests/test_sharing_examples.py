"""The sharing examples run, and programs build with the documented flags."""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sameprocess import _runtime
from _sharing_util import TIMEOUT, merged

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sharing"


def run_example(script: str, *args: str, tmp_path) -> str:
    env = dict(os.environ, SAMEPROCESS_EXAMPLES_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                       timeout=TIMEOUT, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_cpp_pipeline(tmp_path):
    text = tmp_path / "words.txt"
    text.write_text("the cat and the dog and the bird\n" * 100)
    out = run_example("pipeline.py", str(text), tmp_path=tmp_path)
    assert "800 words, 5 distinct" in out and "; exiting" in out
    assert re.search(r"the\s+300\n", out) and re.search(r"and\s+200\n", out)
    assert "map destroyed and unpublished" in out


def test_c_producer_numpy_consumer(tmp_path):
    pytest.importorskip("numpy")
    out = run_example("numpy_demo.py", "100000", tmp_path=tmp_path)
    produced = re.search(r"100000 doubles at (0x[0-9a-f]+)", out)
    consumed = re.search(r"100000 samples at (0x[0-9a-f]+)", out)
    assert produced and consumed and produced.group(1) == consumed.group(1)  # no copy
    assert "unpublished and freed" in out


def test_channel_ping_pong(tmp_path):
    out = run_example("pingpong.py", "2000", tmp_path=tmp_path)
    assert "2000 round trips, ball hit 2000 times" in out
    assert "pong: answered 2000 times" in out


def test_flags_build_a_program_the_documented_way(space, tmp_path):
    exe = tmp_path / "tool"
    source = Path(__file__).parent / "programs" / "rt_tool.c"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(source), *_runtime.compile_flags()], check=True,
                   timeout=TIMEOUT)
    r = space.run([str(exe), "in_space", "alloc", "10"], capture_output=True, text=True, timeout=TIMEOUT)
    assert merged(r.stdout)["in_space"] == "1"
    flags = _runtime.compile_flags(libs=False)
    assert flags == [f"-I{_runtime.include_dir()}"]
    assert (_runtime.include_dir() / "sameprocess.hpp").is_file()


def test_config_verb(capsys):
    from sameprocess._cli import config
    parser = argparse.ArgumentParser()
    config.register(parser.add_subparsers(dest="verb"), [])
    for argv, expected in ((["config", "--cflags", "--libs"], _runtime.compile_flags()),
                           (["config"], _runtime.compile_flags()),
                           (["config", "--libs"], _runtime.compile_flags(cflags=False))):
        args = parser.parse_args(argv)
        assert args.handler(args) == 0
        assert shlex.split(capsys.readouterr().out) == expected
    args = parser.parse_args(["config", "--include-dir"])
    assert args.handler(args) == 0
    assert capsys.readouterr().out.strip() == str(_runtime.include_dir())
