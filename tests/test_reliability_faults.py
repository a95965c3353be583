"""Faults in programs and in the server, through a real server and real
`sameprocess run` launchers.

A faulting program must end alone, with its own status (the launcher's
exit code, 128+N in a shell for a death by signal N).  One neighbour
program (fault_echo) runs in the same space for the whole module; after
every fault it must still answer, the server must still answer `ps`, and
the server must have no other child left (no zombie).

"Exhausts its heap" in a shared address space: with no bound at all,
malloc-until-NULL would take the one address space and the one
vm.max_map_count that every program shares, so the others would fail too.
The bound used is RLIMIT_AS, given to that program only.  The kernel
compares a process's RLIMIT_AS with the size of its mm, which here is the
whole space; so the program gets "the space's size when it starts + 512 MiB"
and its own mmaps fail beyond that, while the host and the other programs
(without the limit) keep allocating.
"""
from __future__ import annotations

import os
import re
import resource
import shlex
import signal
import subprocess

import pytest

from _reliability_helpers import (
    MIB, children_of, checked_footprint, baseline_footprint, signal_mask, status_field,
)
from _server_helpers import (  # noqa: F401  (fixtures)
    SP, TIMEOUT, ServerProc, clean_env, private_dir, proc_state, read_line, server, sockdir, subreaper,
    wait_until,
)

HEAP_HEADROOM = 512 * MIB      # RLIMIT_AS of the heap exhauster: space size + this
OWN_MAPPINGS = 256 * MIB       # ...or, with a ledger, this (its stack reservation, libraries) + that
THREADS = 1000


class Neighbourhood:
    """The module's server and the neighbour that runs through every fault."""

    def __init__(self, srv: ServerProc, echo: str) -> None:
        self.srv = srv
        self.launcher = srv.launch(echo)
        ready = read_line(self.launcher.stdout)
        assert ready.startswith(b"ready stack="), ready
        self.stack = int(ready.split(b"=")[1], 16)     # an address on its stack
        self.pid = srv.program_of(self.launcher.pid)["pid"]
        self.pings = 0

    def answers(self) -> None:
        """The neighbour echoes a fresh line; ps shows it alone; no zombie."""
        self.pings += 1
        line = f"ping {self.pings}\n".encode()
        self.launcher.stdin.write(line)
        self.launcher.stdin.flush()
        assert read_line(self.launcher.stdout) == b"echo: " + line
        assert self.launcher.poll() is None
        assert [p["pid"] for p in self.srv.ps()] == [self.pid]
        assert children_of(self.srv.pid) == {self.pid: "S"}

    def finish(self) -> None:
        self.launcher.stdin.close()
        assert self.launcher.wait(TIMEOUT) == 0
        assert self.launcher.stdout.read() == b"eof\n"
        self.launcher.stdout.close()
        self.launcher.stderr.close()


@pytest.fixture(scope="module")
def town(tmp_path_factory, build):
    srv = ServerProc(private_dir(tmp_path_factory.mktemp("faults")), "--request-timeout", "5")
    try:
        assert srv.run(build("hello.c")).returncode == 0   # one reclaim done: baseline_footprint works
        neighbourhood = Neighbourhood(srv, build("fault_echo.c"))
        yield neighbourhood
        neighbourhood.finish()
    finally:
        srv.stop()


def in_shell(args: list[str], stdin: str = "") -> tuple[int, list[str], str]:
    """ARGS run from /bin/sh: the status the shell sees ($?), the stdout
    lines and stderr (where the shell reports a death by signal)."""
    script = f'{shlex.join(args)}; echo "status=$?"'
    no_core = lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # noqa: E731
    result = subprocess.run(["/bin/sh", "-c", script], input=stdin, capture_output=True, text=True,
                            env=clean_env(), timeout=TIMEOUT, preexec_fn=no_core)
    *lines, last = result.stdout.splitlines()
    assert last.startswith("status="), result.stdout
    return int(last.removeprefix("status=")), lines, result.stderr


def launched(srv: ServerProc, *args: str) -> list[str]:
    return SP + ["run", "--socket", srv.path, "--", *args]


# -- deaths by signal -----------------------------------------------------------------------
@pytest.mark.parametrize("source, args, expected_lines, sig", [
    ("fault_segv.c", [], ["about to fault"], signal.SIGSEGV),
    ("abort.c", [], ["about to abort"], signal.SIGABRT),
    ("fault_stack.c", ["array", "16"], ["ready", "overflowing"], signal.SIGSEGV),
    ("fault_stack.c", ["array", "100"], ["ready", "overflowing"], signal.SIGSEGV),
    ("fault_stack.c", ["recurse"], ["ready", "overflowing"], signal.SIGSEGV),
], ids=["segfault", "abort", "stack-array-16MiB", "stack-array-100MiB", "infinite-recursion"])
def test_a_program_dying_by_a_signal_dies_alone(town, build, source, args, expected_lines, sig):
    program = [build(source), *args]
    status, lines, stderr = in_shell(launched(town.srv, *program), stdin="go\n")
    assert status == 128 + sig
    assert [line.split(" stack=")[0] for line in lines] == expected_lines
    # The shell reports the death as it does for a native child.
    assert stderr == in_shell(program, stdin="go\n")[2] != ""
    town.answers()


def test_a_stack_array_does_not_reach_the_program_mapped_below(server, build):
    """The program started next is mapped just below the overflowing one's
    stack reservation; a 16 MiB array (8 MiB past the stack) must fault in
    the guard, not land in that program's memory."""
    overflowing = server.launch(build("fault_stack.c"), "array", "16")
    top = int(read_line(overflowing.stdout).split(b"stack=")[1], 16)
    below = Neighbourhood(server, build("fault_echo.c"))
    assert 0 < top - below.stack < 1024 * MIB, \
        f"layout precondition: {below.stack:#x} should be the next program below {top:#x}"
    overflowing.stdin.write(b"go\n")
    overflowing.stdin.close()
    assert overflowing.wait(TIMEOUT) == -signal.SIGSEGV
    assert overflowing.stdout.read() == b"overflowing\n"
    overflowing.stdout.close()
    overflowing.stderr.close()
    below.answers()
    below.finish()


# -- programs that close their stdio ----------------------------------------------------------
def test_a_program_that_closes_its_stdio_and_exits(town, build):
    status, lines, stderr = in_shell(launched(town.srv, build("fault_closestdio.c"), "exit", "7"))
    assert (status, lines, stderr) == (7, ["closing"], "")
    town.answers()


def test_a_program_that_closes_its_stdio_and_runs_on(town, build):
    launcher = town.srv.launch(build("fault_closestdio.c"), "wait", "9")
    assert read_line(launcher.stdout) == b"closing\n"
    pid = town.srv.program_of(launcher.pid)["pid"]
    wait_until(lambda: not {"0", "1", "2"} & set(os.listdir(f"/proc/{pid}/fd")),
               what="the program to close its stdio")
    assert proc_state(pid) == "S" and launcher.poll() is None
    assert town.srv.cli("kill", "-s", "USR1", str(pid)).returncode == 0
    assert launcher.wait(TIMEOUT) == 9
    assert launcher.stdout.read() == b"" and launcher.stderr.read() == b""
    launcher.stdout.close()
    launcher.stderr.close()
    town.answers()


# -- a program that blocks every signal ---------------------------------------------------------
def test_a_program_blocking_all_signals_holds_them_until_sigkill(town, build):
    launcher = town.srv.launch(build("fault_sigblock.c"))
    assert read_line(launcher.stdout) == b"blocked\n"
    pid = town.srv.program_of(launcher.pid)["pid"]
    assert {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1} <= signal_mask(pid, "SigBlk")
    assert town.srv.cli("kill", "-s", "TERM", str(pid)).returncode == 0
    assert signal.SIGTERM in signal_mask(pid, "ShdPnd"), "kill() returned: SIGTERM is pending"
    launcher.send_signal(signal.SIGINT)              # forwarded by the launcher
    wait_until(lambda: signal.SIGINT in signal_mask(pid, "ShdPnd"), what="the forwarded SIGINT")
    assert proc_state(pid) == "S" and launcher.poll() is None, "held, not delivered"
    result = town.srv.cli("kill", "-s", "KILL", str(pid))
    assert (result.returncode, result.stderr) == (0, "")
    assert launcher.wait(TIMEOUT) == -signal.SIGKILL
    launcher.stdout.close()
    launcher.stderr.close()
    town.answers()


# -- heap exhaustion ---------------------------------------------------------------------------
def test_a_program_exhausting_its_heap_fails_alone(town, build):
    before = baseline_footprint(town.srv)
    # With a ledger the limit is the program's own (what it mapped, its
    # stack reservation included); without one, the kernel checks it
    # against the whole space.
    own = town.srv.reclaims_memory()
    bound = (OWN_MAPPINGS if own else before.vm_kib * 1024) + HEAP_HEADROOM
    launcher = town.srv.launch(build("fault_heap.c"), str(16 * 1024),
                               preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (bound, bound)))
    line = read_line(launcher.stdout).decode()
    match = re.fullmatch(r"exhausted after (\d+) MiB \(Cannot allocate memory\)\n", line)
    assert match, line
    got = int(match.group(1)) * MIB
    # Its own stack reservation and libraries count against the bound too.
    assert HEAP_HEADROOM // 4 < got < bound - (OWN_MAPPINGS // 2 if own else 0)
    # While it holds all it could get: everyone else still allocates and runs.
    town.launcher.stdin.write(b"x" * 3000 + b"\n")
    town.launcher.stdin.flush()
    assert read_line(town.launcher.stdout) == b"echo: " + b"x" * 3000 + b"\n"
    hello = town.srv.run(build("hello.c"))
    assert (hello.returncode, hello.stdout) == (0, "hello from sameprocess\n")
    big = town.srv.run(build("fault_heap.c"), "8")   # no limit: reaches its own safety bound
    assert (big.returncode, big.stdout) == (3, "bound reached\n")
    launcher.stdin.close()
    assert launcher.wait(TIMEOUT) == 0
    assert launcher.stdout.read() == b"freed\n"
    launcher.stdout.close()
    launcher.stderr.close()
    town.answers()
    # Everything the exhauster and `big` mapped went with them (the ledger),
    # or, in a space without one, all but the per-run leftovers of
    # docs/architecture.md and the 8 MiB `big` exited without freeing.
    allowance = 4 * 1024 if town.srv.reclaims_memory() else (8 + 16) * 1024
    checked_footprint(town.srv, lambda after: (after.fds == before.fds)
                   and (after.vm_kib - before.vm_kib < allowance),
                   what="the exhauster's memory given back")


# -- a thousand threads --------------------------------------------------------------------------
def test_a_program_with_a_thousand_threads(town, build):
    before = baseline_footprint(town.srv)
    launcher = town.srv.launch(build("fault_threads.c"), str(THREADS), "5")
    assert read_line(launcher.stdout) == f"{THREADS} threads running\n".encode()
    pid = town.srv.program_of(launcher.pid)["pid"]
    assert status_field(pid, "Threads") == THREADS + 1
    town.launcher.stdin.write(b"among the threads\n")
    town.launcher.stdin.flush()
    assert read_line(town.launcher.stdout) == b"echo: among the threads\n"
    launcher.stdin.close()                           # main calls exit(5) with every thread blocked
    assert launcher.wait(TIMEOUT) == 5
    launcher.stdout.close()
    launcher.stderr.close()
    town.answers()
    # With the ledger the thread stacks go too; without one they stay
    # (docs/architecture.md): a stack and its guard page per thread.
    allowance = 20 if town.srv.reclaims_memory() else 2 * THREADS + 64
    checked_footprint(town.srv, lambda after: (after.fds == before.fds)
                   and (after.maps - before.maps <= allowance),
                   what="the threaded program's memory given back")


# -- the server killed while programs run --------------------------------------------------------
LINES = 200


def test_server_killed_while_twenty_programs_run(sockdir, build, subreaper):
    echo = build("fault_echo.c")
    first = ServerProc(sockdir)
    launchers = [first.launch(echo) for _ in range(20)]
    for launcher in launchers:
        assert read_line(launcher.stdout).startswith(b"ready stack=")
    pids = [first.program_of(launcher.pid)["pid"] for launcher in launchers]
    first.proc.kill()
    first.proc.wait()
    # At once, while the orphaned programs still run: a new server on the same path.
    second = ServerProc(sockdir)
    try:
        assert second.path == first.path
        assert "removing the stale socket" in second.log()
        hello = second.run(build("hello.c"))
        assert (hello.returncode, hello.stdout) == (0, "hello from sameprocess\n")
        assert second.ps() == []
        for pid in pids:
            assert proc_state(pid) == "S", "the program runs on without its server"
            assert children_of(os.getpid()).get(pid) == "S", "orphans come to the subreaper"
        for i, (pid, launcher) in enumerate(zip(pids, launchers)):
            text = "".join(f"program {i} line {n}\n" for n in range(LINES))
            out, err = launcher.communicate(text.encode(), timeout=TIMEOUT)
            assert launcher.returncode == 255
            assert out.decode() == "".join(f"echo: {line}\n" for line in text.splitlines()) + "eof\n"
            assert err.decode() == (f"sameprocess run: lost the server; {echo} (pid {pid}) has exited "
                                    "but its exit status is unknown\n")
            assert os.waitid(os.P_PID, pid, os.WEXITED).si_status == 0, "it ran to completion"
    finally:
        for launcher in launchers:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()
        second.stop()
        first.stop()
