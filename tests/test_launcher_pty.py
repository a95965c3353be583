"""`sameprocess run` under an interactive bash on a real pty: the terminal is
the program's stdio (isatty), and Ctrl-C, Ctrl-\\, Ctrl-Z, `fg`, Ctrl-D and a
window resize behave as with a native child."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time

import pytest

from _server_helpers import SP, TIMEOUT, clean_env, proc_state, server, sockdir, wait_until  # noqa: F401


class Terminal:
    """An interactive bash on the master side of a pty (a tiny pexpect)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:   # child: bash on the slave, its controlling terminal
            os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"], env)
        self.buffer = ""
        self.expect(r"PROMPT\$ ")

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def line(self, command: str) -> None:
        self.send(command + "\n")

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.buffer)
            if match:
                self.buffer = self.buffer[match.end():]
                return match
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError(f"no {pattern!r} on the terminal; it shows:\n{self.buffer}")
            try:
                self.buffer += os.read(self.fd, 4096).decode(errors="replace")
            except OSError:     # EIO: bash is gone
                raise AssertionError(f"terminal closed waiting for {pattern!r}:\n{self.buffer}") from None

    def prompt(self) -> None:
        self.expect(r"PROMPT\$ ")

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def term(server):
    env = clean_env(PS1="PROMPT$ ", TERM="dumb", HISTFILE="/dev/null",
                    R=" ".join(SP + ["run", "--socket", server.path, "--"]))
    terminal = Terminal(env)
    yield terminal
    terminal.close()


def program_of_foreground(server) -> dict:
    return wait_until(lambda: next(iter(server.ps()), None), what="the program")


def test_terminal_is_the_programs_stdio(term):
    term.line('$R /bin/sh -c \'[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo "TTY-$((40+2))"\'')
    term.expect("TTY-42")
    term.prompt()
    term.line('$R /bin/sh -c \'exit 3\'; echo "rc=$((1000+$?))"')
    term.expect("rc=1003")


def test_ctrl_c_kills_the_program_and_the_shell_sees_sigint(term, build):
    term.line(f"$R {build('sleeper.c')}")
    term.expect("ready")
    term.send("\x03")
    term.prompt()
    term.line('echo "rc=$((1000+$?))"')
    term.expect("rc=1130")


def test_terminal_signals_reach_a_program_that_handles_them(term, server, build):
    term.line(f"$R {build('srv_siglog.c')}")
    term.expect("ready")
    term.send("\x03")
    term.expect(f"got {int(signal.SIGINT)}")
    term.send("\x1c")                                  # Ctrl-\
    term.expect(f"got {int(signal.SIGQUIT)}")
    fcntl.ioctl(term.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    term.expect(f"got {int(signal.SIGWINCH)}")
    term.send("\x04")                                  # Ctrl-D: EOF on the tty
    term.expect("eof")
    term.prompt()
    term.line('echo "rc=$((1000+$?))"')
    term.expect("rc=1000")


def test_ctrl_z_stops_both_and_fg_resumes_both(term, server, build):
    term.line(f"$R {build('srv_siglog.c')}")
    term.expect("ready")
    program = program_of_foreground(server)
    term.send("\x1a")                                  # Ctrl-Z
    term.expect(r"Stopped")
    term.prompt()
    assert wait_until(lambda: proc_state(program["pid"]) == "T", what="the program to stop")
    assert proc_state(program["launcher_pid"]) == "T"
    term.line("jobs")
    term.expect(r"\[1\]\+\s+Stopped")
    term.prompt()
    term.line("fg")
    wait_until(lambda: proc_state(program["pid"]) in "SR", what="the program to resume")
    term.send("\x03")                                  # it is running and in the foreground again
    term.expect(f"got {int(signal.SIGINT)}")
    term.send("\x04")
    term.expect("eof")
    term.prompt()
    term.line('echo "rc=$((1000+$?))"')
    term.expect("rc=1000")


def test_background_job_and_kill_from_the_shell(term, server, build):
    term.line(f"$R {build('sleeper.c')} </dev/null >/dev/null &")
    term.prompt()
    term.line(f"$R {build('catch_term.c')} &")
    term.expect("ready")
    term.line("kill %2; wait %2; echo \"rc=$((1000+$?))\"")
    term.expect("got TERM")
    term.expect("rc=1003")
