"""The native `sameprocess` command: it is what pip installs, it serves `run`
without Python (the rest of the launcher tests reach it through
`python -m sameprocess run`, which execs it), it hands every other verb to
the Python package, and it forwards signals it inherited as ignored."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from _server_helpers import (  # noqa: F401  (fixtures)
    FALLBACK, SP, TIMEOUT, clean_env, read_line, server, sockdir, wait_pid_gone,
)
from sameprocess._cli.run import native_launcher


@pytest.fixture(scope="module")
def native() -> str:
    path = native_launcher()
    if path is None:
        pytest.fail("no native sameprocess in the environment's bin/: reinstall the package "
                    "(pip install -e .)", pytrace=False)
    return path


def test_the_installed_command_is_native(native):
    with open(native, "rb") as f:
        assert f.read(4) == b"\x7fELF"


def test_run_starts_no_python(native, server, build):
    launcher = subprocess.Popen([native, "run", "--socket", server.path, build("sleeper.c")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=clean_env())
    try:
        assert read_line(launcher.stdout) == b"ready\n"
        assert os.readlink(f"/proc/{launcher.pid}/exe") == os.path.realpath(native)
        assert not any(os.path.basename(m).startswith(("libpython", "python"))
                       for m in open(f"/proc/{launcher.pid}/maps").read().split())
        launcher.stdin.close()
        assert launcher.wait(TIMEOUT) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
        launcher.wait()
        launcher.stdout.close()


def test_environment_strings_are_passed_as_given(native, server, build):
    """Natively a program gets the very strings its parent passed to execve,
    in order and duplicates included: so must a program of `sameprocess run`
    get its launcher's."""
    wrapper = build("exec_env.c")
    natively = subprocess.run([wrapper, "/usr/bin/env"], capture_output=True, text=True, timeout=TIMEOUT)
    assert natively.stdout.splitlines() == ["DUP=first", "PATH=/usr/bin:/bin", "DUP=second"]
    # "env" by name: the path search takes the first PATH, as execvp's getenv would.
    for program in ("/usr/bin/env", "env"):
        spaced = subprocess.run([wrapper, native, "run", "--socket", server.path, "--", program],
                                capture_output=True, text=True, timeout=TIMEOUT)
        assert (spaced.returncode, spaced.stdout, spaced.stderr) == (0, natively.stdout, "")


def test_other_verbs_are_the_python_packages(native, server):
    ours = subprocess.run([native, "ps", "--socket", server.path], capture_output=True, text=True,
                          env=clean_env(), timeout=TIMEOUT)
    python = server.cli("ps")
    assert (ours.returncode, ours.stdout, ours.stderr) == (python.returncode, python.stdout, python.stderr)
    for args in (["--help"], ["run", "--help"], ["bogus-verb"], []):
        ours = subprocess.run([native, *args], capture_output=True, text=True, env=clean_env(), timeout=TIMEOUT)
        python = subprocess.run(SP + args, capture_output=True, text=True, env=clean_env(), timeout=TIMEOUT)
        assert (ours.returncode, ours.stdout, ours.stderr) == (python.returncode, python.stdout, python.stderr)


def test_the_python_launcher_is_the_fallback(server, build):
    result = subprocess.run([SP[0], "-c", FALLBACK, "run", "--socket", server.path, build("exit_code.c"), "7"],
                            capture_output=True, text=True, env=clean_env(), timeout=TIMEOUT)
    assert (result.returncode, result.stderr) == (7, "")


# -- inherited dispositions ------------------------------------------------------------------------
def sig_ignored(text: str) -> int:
    return int(next(line for line in text.splitlines() if line.startswith("SigIgn:")).split()[1], 16)


@pytest.mark.parametrize("traps", ["", "trap '' PIPE", "trap '' INT QUIT USR1 XFSZ PIPE"])
def test_the_program_keeps_the_dispositions_it_inherits(native, server, traps):
    """Natively known exactly, SIGPIPE and SIGXFSZ included (a Python launcher
    could not tell them)."""
    script = f'{traps}\n"$@" grep SigIgn: /proc/self/status'
    shell = ["/bin/sh", "-c", script, "sh"]
    ours = subprocess.run(shell + [native, "run", "--socket", server.path, "--"], capture_output=True,
                          text=True, env=clean_env(), timeout=TIMEOUT)
    natively = subprocess.run(shell + ["env"], capture_output=True, text=True, env=clean_env(), timeout=TIMEOUT)
    assert ours.returncode == natively.returncode == 0, ours.stderr
    assert sig_ignored(ours.stdout) == sig_ignored(natively.stdout)


# A non-interactive shell starts a background job with SIGINT and SIGQUIT
# ignored.  `kill -INT` still reaches such a program natively if it installs
# its own handler; through `sameprocess run` the launcher must forward it.
BACKGROUND_JOB = 'fifo=$1; shift; "$@" <"$fifo" & echo "pid=$!"; wait $!; echo "status=$?"'


def background_job(command: list[str], fifo) -> list[str]:
    """Run `command <fifo &` in sh -c, send SIGINT, then SIGQUIT to the job once
    it is ready, end its input; the lines it and the shell printed."""
    if not fifo.exists():
        os.mkfifo(fifo)
    # Unbuffered: the shell's and the program's lines may come in one read,
    # and a buffered reader would hide the second from read_line's select.
    shell = subprocess.Popen(["/bin/sh", "-c", BACKGROUND_JOB, "sh", str(fifo), *command],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=clean_env(), bufsize=0)
    try:
        with open(fifo, "wb") as job_input:     # returns once the job opened its end
            lines = [read_line(shell.stdout).decode(), read_line(shell.stdout).decode()]
            pid = int(next(line for line in lines if line.startswith("pid="))[4:])
            assert "ready\n" in lines
            for sig in (signal.SIGINT, signal.SIGQUIT):
                os.kill(pid, sig)
                lines.append(read_line(shell.stdout).decode())
        out, _ = shell.communicate(timeout=TIMEOUT)
        return [line for line in lines + out.decode().splitlines(keepends=True) if not line.startswith("pid=")]
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()


@pytest.mark.parametrize("launcher", ["native", "python"])
def test_signals_a_background_job_ignores_are_forwarded(native, server, build, tmp_path, launcher):
    prog = build("srv_siglog.c")
    natively = background_job([prog], tmp_path / "input")
    assert natively == ["ready\n", f"got {int(signal.SIGINT)}\n", f"got {int(signal.SIGQUIT)}\n", "eof\n",
                        "status=0\n"]
    command = [native] if launcher == "native" else [SP[0], "-c", FALLBACK]
    assert background_job(command + ["run", "--socket", server.path, prog], tmp_path / "input") == natively
