"""Load on one server: many launchers at once, then a thousand programs alive
at once, and what the server keeps afterwards.

What may stay in the server after programs exit is documented in
docs/architecture.md ("What stays after a program exits"): a C program's
malloc heap segment and a TLS page cannot be attributed after its exit.
Run one after another, neighbouring leftovers merge (0.34 mappings per run
of a C hello); run at once, each lies between other programs' mappings and
merges less (2.5 mappings and 1.05 MiB per program measured for a thousand
sleepers at once), so the bound is MAPS_PER_RUN per program.  A dead
program's images are given back shortly after its exit is reported, so
the figures after a load are awaited (with a deadline) rather than read at
once.  Descriptors have no excuse: the count must come back exactly.
"""
from __future__ import annotations

import os
import resource
from concurrent.futures import ThreadPoolExecutor

import pytest

from _reliability_helpers import SpawnClient, children_of, footprint, checked_footprint, baseline_footprint
from _server_helpers import ServerProc, proc_state, server, sockdir, wait_until  # noqa: F401  (fixtures)

LAUNCHERS = 64
RUNS_EACH = 50
PROGRAMS_AT_ONCE = 1000
MAPS_PER_RUN = 3.0          # see the module docstring


def _one_launcher(srv: ServerProc, hello: str, exit_code: str, index: int) -> list[str]:
    """RUNS_EACH runs through `sameprocess run`; the wrong results, described."""
    wrong = []
    for run in range(RUNS_EACH):
        if run % 2:
            code = (index * RUNS_EACH + run) % 256
            got = srv.run(exit_code, str(code), text=False)
            expected = (code, b"", b"")
        else:
            got = srv.run(hello, text=False)
            expected = (0, b"hello from sameprocess\n", b"")
        if (got.returncode, got.stdout, got.stderr) != expected:
            wrong.append(f"launcher {index} run {run}: {(got.returncode, got.stdout, got.stderr)} "
                         f"instead of {expected}")
    return wrong


@pytest.mark.slow
def test_sixty_four_launchers_fifty_runs_each(server, build):
    hello, exit_code = build("hello.c"), build("exit_code.c")
    for _ in range(10):            # first runs grow caches and the first heaps: not leftovers
        assert server.run(hello).returncode == 0
        assert server.run(exit_code, "3").returncode == 3
    before = baseline_footprint(server)
    with ThreadPoolExecutor(LAUNCHERS) as pool:
        wrong = [w for ws in pool.map(lambda i: _one_launcher(server, hello, exit_code, i),
                                      range(LAUNCHERS)) for w in ws]
    assert wrong == []
    assert children_of(server.pid) == {}, "every program reaped, no zombie"
    runs = LAUNCHERS * RUNS_EACH
    after = checked_footprint(server, lambda after: (after.fds == before.fds)
                           and (after.maps - before.maps <= MAPS_PER_RUN * runs),
                           what=f"back to {before.fds} descriptors and at most {MAPS_PER_RUN:g} mappings per run")
    print(f"\n{runs} launcher runs: before {before}; after {after}")
    assert server.log().count("spawned pid") == runs + 20


@pytest.fixture
def descriptors_for_a_thousand():
    """The server holds a connection and a pidfd per program, and so do we
    (the connections): raise the soft limit (inherited by the server)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * PROGRAMS_AT_ONCE
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}: cannot hold {PROGRAMS_AT_ONCE} programs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_programs_alive_at_once(sockdir, build, descriptors_for_a_thousand):
    sleeper, hello = build("sleeper.c"), build("hello.c")
    srv = ServerProc(sockdir, "--request-timeout", "5")
    stdin_r, stdin_w = os.pipe()          # every sleeper blocks reading it
    null = os.open(os.devnull, os.O_RDWR)
    clients: list[SpawnClient] = []
    try:
        for _ in range(5):                # the same work in miniature: not counted
            assert srv.run(hello).returncode == 0
            warm_up = SpawnClient(srv.path, [sleeper], (stdin_r, null, null))
            pid = warm_up.started()
            assert pid is not None, "a sleeper blocks: it cannot exit before STARTED"
            assert srv.cli("kill", "-s", "KILL", str(pid)).returncode == 0
            assert warm_up.exited() == -9
        before = baseline_footprint(srv)
        for _ in range(PROGRAMS_AT_ONCE):
            client = SpawnClient(srv.path, [sleeper], (stdin_r, null, null))
            assert client.started() is not None, "a sleeper blocks: it cannot exit before STARTED"
            clients.append(client)
        pids = sorted(c.pid for c in clients)
        wait_until(lambda: all(proc_state(pid) == "S" for pid in pids), what="every program to block")
        assert sorted(p["pid"] for p in srv.ps()) == pids
        assert sorted(children_of(srv.pid)) == pids
        peak = footprint(srv.pid)
        killed = srv.cli("kill", "-s", "KILL", *map(str, pids))
        assert (killed.returncode, killed.stderr) == (0, "")
        assert [c.exited() for c in clients] == [-9] * PROGRAMS_AT_ONCE
        assert children_of(srv.pid) == {}, "every program reaped, no zombie"
        after = checked_footprint(srv, lambda after: (after.fds == before.fds)
                               and (after.maps - before.maps <= MAPS_PER_RUN * PROGRAMS_AT_ONCE),
                               what=f"back to {before.fds} descriptors and at most {MAPS_PER_RUN:g} "
                                    "mappings per program")
        print(f"\n{PROGRAMS_AT_ONCE} programs at once: before {before}; at the peak {peak}; after {after}")
        result = srv.run(hello)
        assert (result.returncode, result.stdout) == (0, "hello from sameprocess\n")
        assert srv.ps() == []
    finally:
        for client in clients:
            client.close()
        for fd in (stdin_r, stdin_w, null):
            os.close(fd)
        srv.stop()
