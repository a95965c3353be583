"""Helpers and fixtures for the server, launcher and CLI tests.

Test modules import the fixtures they use by name (pytest picks them up from
the module namespace).  Servers run as real `python -m sameprocess serve`
processes on sockets in private temporary directories; `ready` is learned
through --ready-fd, exits through pidfds and pipes: waits have deadlines but
no test sleeps to "let things settle".
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SP = [sys.executable, "-m", "sameprocess"]
# `python -c FALLBACK run ...`: the Python launcher, as where no native one is installed.
FALLBACK = ("import sys; import sameprocess._cli.run as run; run.native_launcher = lambda: None; "
            "from sameprocess._cli import main; sys.exit(main(sys.argv[1:]))")
TIMEOUT = 30.0


def private_dir(base: Path, name: str = "sp") -> Path:
    d = base / name
    d.mkdir(mode=0o700)
    os.chmod(d, 0o700)
    return d


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SAMEPROCESS_SOCKET", "XDG_RUNTIME_DIR")}
    env.update(extra)
    return env


def wait_readable(fd: int, timeout: float = TIMEOUT) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def wait_pid_gone(pid: int, timeout: float = TIMEOUT) -> bool:
    """Wait for any process (not only a child) to exit, through a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return wait_readable(fd, timeout)
    finally:
        os.close(fd)


def read_line(stream, timeout: float = TIMEOUT):
    """One line from a pipe opened in text or binary mode, with a deadline."""
    if not wait_readable(stream.fileno(), timeout):
        raise AssertionError(f"no output within {timeout} s")
    return stream.readline()


def wait_until(predicate, timeout: float = TIMEOUT, what: str = "condition"):
    """For states the kernel changes asynchronously (a stop reaching a process)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return "gone"
    return chr(stat[stat.rindex(b")") + 2])


class ServerProc:
    """A `sameprocess serve` subprocess on a socket of its own."""

    def __init__(self, directory: Path, *extra: str, name: str = "s.sock", prefix: tuple = ()) -> None:
        """prefix: a command that execs the server (e.g. nice -n 5)."""
        self.dir = directory
        self.path = str(directory / name)
        self.log_path = str(directory / "server.log")
        r, w = os.pipe()
        self.proc = subprocess.Popen(
            [*prefix, *SP, "serve", "--socket", self.path, "--log-file", self.log_path, "--verbose",
             "--ready-fd", str(w), *extra],
            pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=clean_env())
        os.close(w)
        with os.fdopen(r, "rb") as ready:
            if not wait_readable(ready.fileno()) or not ready.read().startswith(b"ready"):
                self.proc.kill()
                out, err = self.proc.communicate()
                raise AssertionError(f"server did not start: {err.decode()} {self.log()}")
        self.pid = self.proc.pid

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text()
        except FileNotFoundError:
            return ""

    def fds(self) -> dict[str, str]:
        """The server's descriptors, each with what it refers to."""
        from _protocol_fuzz import descriptor_links
        return descriptor_links(self.pid)

    def baseline_fds(self) -> dict[str, str]:
        """The server's descriptors less its clients' connections.  The server
        closes a connection just after its last send, so a client may have its
        answer (and a test its turn) a moment before the close: a baseline
        taken then must not count it.  settle_fds() waits for those to close."""
        connections = {f"socket:[{inode}]" for inode in self._connection_inodes()}
        return {fd: link for fd, link in self.fds().items() if link not in connections}

    def _connection_inodes(self) -> set[int]:
        """Accepted sockets carry the listener's path (flags 0: not listening)."""
        inodes = set()
        with open("/proc/net/unix") as table:
            next(table)
            for line in table:
                fields = line.split()
                if len(fields) == 8 and fields[7] == self.path and fields[3] != "00010000":
                    inodes.add(int(fields[6]))
        return inodes

    def settle_fds(self, baseline: dict[str, str]) -> None:
        """Wait until the server holds exactly the baseline's descriptors; if it
        never does, name the ones that differ."""
        try:
            wait_until(lambda: self.fds() == baseline, what="the server's descriptors to settle")
        except AssertionError:
            now = self.fds()
            extra = {fd: link for fd, link in now.items() if baseline.get(fd) != link}
            missing = {fd: link for fd, link in baseline.items() if now.get(fd) != link}
            raise AssertionError(f"the server's descriptors did not settle: it holds {extra} "
                                 f"beyond its baseline and lacks {missing}") from None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def reclaims_memory(self) -> bool:
        """Whether this server's space keeps a ledger: its keeper task
        (comm "sp-keeper") is then one of its children."""
        from _reliability_helpers import has_keeper_task
        return has_keeper_task(self.pid)

    def cli(self, verb: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.setdefault("env", clean_env())
        return subprocess.run(SP + [verb, "--socket", self.path, *args], **kwargs)

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.cli("run", "--", *args, **kwargs)

    def launch(self, *args: str, **kwargs) -> subprocess.Popen:
        """A launcher in the background (stdin/stdout pipes unless told)."""
        kwargs.setdefault("stdin", subprocess.PIPE)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("env", clean_env())
        return subprocess.Popen(SP + ["run", "--socket", self.path, "--", *args], **kwargs)

    def ps(self) -> list[dict]:
        result = self.cli("ps", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def program_of(self, launcher_pid: int) -> dict:
        return wait_until(lambda: next((p for p in self.ps() if p["launcher_pid"] == launcher_pid), None),
                          what=f"the program of launcher {launcher_pid}")

    def stop(self, grace: float = 1.0) -> None:
        if self.alive():
            self.cli("stop", "--grace", str(grace))
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


@pytest.fixture
def sockdir(tmp_path) -> Path:
    return private_dir(tmp_path)


@pytest.fixture
def server(sockdir):
    srv = ServerProc(sockdir, "--request-timeout", "2")
    yield srv
    srv.stop()


PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper():
    """Make this process the subreaper of what it starts: programs orphaned by
    a killed server become our children, so the test reaps them (and sees
    their real exit status) instead of leaving zombies to init."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.fail(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def kill_tree_of(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
