"""The command line: help texts, argument parsing, named exit codes and
one-line errors (no tracebacks) when there is no server or the path is bad."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess

import pytest

from _server_helpers import SP, TIMEOUT, clean_env, private_dir
from sameprocess._cli import build_parser, main
from sameprocess._cli.kill import parse_signal
from sameprocess._client import ExitCode


def cli(*args: str, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(SP + list(args), capture_output=True, text=True, timeout=TIMEOUT,
                          env=env or clean_env(), **kwargs)


def one_line_error(result: subprocess.CompletedProcess, prefix: str) -> str:
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(prefix), result.stderr
    return result.stderr


def test_top_level_help_lists_every_verb():
    result = cli("--help")
    assert result.returncode == 0
    for verb in ("serve", "run", "ps", "kill", "stop", "demo"):
        assert f"    {verb} " in result.stdout
    assert "$SAMEPROCESS_SOCKET" in result.stdout


@pytest.mark.parametrize("verb, words", [
    ("serve", ["--socket", "--verbose", "--log-file", "--grace", "0600"]),
    ("run", ["[--] PROGRAM [ARGS...]", "127", "126", "125", "255", "Ctrl-Z"]),
    ("ps", ["--json", "PID"]),
    ("kill", ["-s SIGNAL", "PID"]),
    ("stop", ["--grace", "SIGKILL"]),
    ("gdb", ["--core CORE", "PID|PROGRAM", "GDB ARGS", "--print-command"]),
    ("demo", ["producer", "consumer", "pipe"]),
])
def test_verb_help(verb, words):
    result = cli(verb, "--help")
    assert result.returncode == 0
    for word in words:
        assert word in result.stdout, word


def test_python_dash_m_is_the_same_command():
    assert "usage: sameprocess" in cli("--help").stdout


def test_usage_errors_exit_2():
    assert cli().returncode == ExitCode.USAGE
    assert cli("frobnicate").returncode == ExitCode.USAGE
    result = cli("kill", "-s", "NOPE", "1")
    assert result.returncode == ExitCode.USAGE and "unknown signal 'NOPE'" in result.stderr
    assert cli("kill", "-s", "TERM").returncode == ExitCode.USAGE        # no pid
    assert cli("kill", "abc").returncode == ExitCode.USAGE
    assert cli("stop", "--grace", "-1").returncode == ExitCode.USAGE


def test_run_without_a_program(tmp_path):
    result = cli("run", "--socket", str(tmp_path / "s.sock"))
    assert result.returncode == ExitCode.USAGE
    one_line_error(result, "sameprocess run: no program given")
    assert cli("run", "--socket", str(tmp_path / "s.sock"), "--").returncode == ExitCode.USAGE


def test_remainder_after_double_dash_is_the_programs():
    parser = build_parser()
    args = parser.parse_args(["run", "--socket", "/s", "--", "ls", "--socket", "-l"])
    assert (args.socket, args.command) == ("/s", ["--", "ls", "--socket", "-l"])
    args = parser.parse_args(["run", "ls", "--socket", "x"])
    assert (args.socket, args.command) == (None, ["ls", "--socket", "x"])


@pytest.mark.parametrize("argv", [
    ["run", "ls"], ["run", "ls", "-l", "--socket", "x"], ["run", "--", "ls"], ["run", "--", "-weird"],
    ["run", "--socket", "/s", "ls"], ["run", "--socket", "/s", "--", "ls", "--"], ["run", "--socket=/s", "ls"],
    ["run", "--socket", "/s", "--", "--"], ["run", "ls", "--"],
])
def test_quick_run_parsing_matches_argparse(argv):
    from sameprocess._cli import parse_run_quickly
    quick = parse_run_quickly(argv)
    full = build_parser().parse_args(argv)
    assert quick is not None
    assert (quick.verb, quick.socket, quick.command, quick.handler) == \
        (full.verb, full.socket, full.command, full.handler)


@pytest.mark.parametrize("argv", [
    ["run"], ["run", "--"], ["run", "-h"], ["run", "--help"], ["run", "--socket"], ["run", "-x", "ls"],
    ["run", "--socket", "/s"], ["ps"], [],
])
def test_quick_run_parsing_leaves_the_rest_to_argparse(argv):
    from sameprocess._cli import parse_run_quickly
    assert parse_run_quickly(argv) is None


@pytest.mark.parametrize("text, number", [
    ("TERM", signal.SIGTERM), ("SIGTERM", signal.SIGTERM), ("usr1", signal.SIGUSR1),
    ("9", 9), ("0", 0), ("64", 64),
])
def test_parse_signal(text, number):
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["65", "SIGNOPE", "-1", ""])
def test_parse_signal_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_signal(text)


@pytest.mark.parametrize("verb", ["ps", "kill 123", "stop"])
def test_no_server_is_a_one_line_error(tmp_path, verb):
    path = str(private_dir(tmp_path) / "s.sock")
    words = verb.split()
    result = cli(words[0], "--socket", path, *words[1:])
    assert result.returncode == ExitCode.FAILURE
    assert one_line_error(result, f"sameprocess {words[0]}: ") == \
        f"sameprocess {words[0]}: no server is running at {path}\n"


def test_run_with_an_explicit_socket_never_starts_a_server(tmp_path):
    path = str(private_dir(tmp_path) / "s.sock")
    result = cli("run", "--socket", path, "true")
    assert result.returncode == ExitCode.LAUNCH_FAILED
    one_line_error(result, f"sameprocess run: no server is running at {path}")
    assert not os.path.exists(path)
    env = clean_env(SAMEPROCESS_SOCKET=path)
    assert cli("run", "true", env=env).returncode == ExitCode.LAUNCH_FAILED


def test_socket_path_too_long(tmp_path):
    path = str(private_dir(tmp_path)) + "/" + "x" * 120
    result = cli("serve", "--socket", path)
    assert result.returncode == ExitCode.FAILURE
    one_line_error(result, "sameprocess serve: socket path ")


def test_unsafe_default_directory_is_refused(tmp_path):
    runtime = tmp_path / "runtime"
    (runtime / "sameprocess").mkdir(parents=True)
    os.chmod(runtime / "sameprocess", 0o777)
    result = cli("run", "true", env=clean_env(XDG_RUNTIME_DIR=str(runtime)))
    assert result.returncode == ExitCode.LAUNCH_FAILED
    one_line_error(result, f"sameprocess run: directory {runtime}/sameprocess is open to other users")


def test_main_returns_codes_in_process(tmp_path, capsys):
    path = str(private_dir(tmp_path) / "s.sock")
    assert main(["ps", "--socket", path]) == ExitCode.FAILURE
    assert capsys.readouterr().err == f"sameprocess ps: no server is running at {path}\n"
