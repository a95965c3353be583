"""Soak: spawn/exit cycles against one server for SAMEPROCESS_SOAK_SECONDS
(default 150: a few minutes in CI), sampling the server's RSS, descriptors and mappings.

A cycle runs a C hello and checks its output and exit status; nine cycles
in ten go through the protocol from this process (SpawnClient: cheap, so
the server does most of the work), one in ten through a real `sameprocess
run` launcher.  Every SAMPLE_EVERY cycles, once that cycle's program has
been reclaimed, the server's figures are sampled.

Flat means, comparing the second half of the run with the first:
  * descriptors: every sample equal to the first one, exactly;
  * mappings and RSS: every second-half sample at most the first half's
    maximum plus the per-run leftover allowance times the cycles since the
    middle.  The space's ledger gives back everything a program mapped, so
    a run leaves nothing of its own (docs/architecture.md); MAPS_PER_RUN and
    RSS_KIB_PER_RUN only allow for the server's own allocator drifting.  A
    leak of anything per cycle (a descriptor, a program's memory, a server
    structure per connection) breaks one of the bounds.
"""
from __future__ import annotations

import os
import time

import pytest

from _reliability_helpers import SpawnClient, children_of, checked_footprint, baseline_footprint
from _server_helpers import ServerProc, read_line, sockdir  # noqa: F401  (fixtures)

SOAK_SECONDS = float(os.environ.get("SAMEPROCESS_SOAK_SECONDS", "150"))
SAMPLE_EVERY = 100
LAUNCHER_EVERY = 10
MAPS_PER_RUN = 0.02             # a run leaves none (before the ledger: 0.34)
RSS_KIB_PER_RUN = 4             # a run leaves none (before the ledger: 20 KiB)


def _cycle(srv: ServerProc, hello: str, n: int, null: int) -> None:
    """One run of hello; its output and status must be right."""
    if n % LAUNCHER_EVERY == 0:
        result = srv.run(hello, text=False)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"hello from sameprocess\n", b""), n
        return
    out_r, out_w = os.pipe()
    try:
        client = SpawnClient(srv.path, [hello], (null, out_w, null))
        os.close(out_w)
        out_w = -1
        client.started()
        with os.fdopen(out_r, "rb", closefd=False) as out:
            assert read_line(out) == b"hello from sameprocess\n", n
        assert client.exited() == 0, n
    finally:
        os.close(out_r)
        if out_w >= 0:
            os.close(out_w)


def _flat(samples: list[tuple[int, object]]) -> list[str]:
    """What is not flat in the samples [(cycle, Footprint)], described."""
    middle = len(samples) // 2
    first, second = samples[:middle], samples[middle:]
    first_end = first[-1][0]
    max_maps = max(f.maps for _, f in first)
    max_rss = max(f.rss_kib for _, f in first)
    problems = [f"cycle {cycle}: {f.fds} descriptors, {samples[0][1].fds} at the start"
                for cycle, f in samples if f.fds != samples[0][1].fds]
    for cycle, f in second:
        runs = cycle - first_end
        if f.maps > max_maps + MAPS_PER_RUN * runs:
            problems.append(f"cycle {cycle}: {f.maps} mappings > {max_maps} + {MAPS_PER_RUN:g} x {runs}")
        if f.rss_kib > max_rss + RSS_KIB_PER_RUN * runs:
            problems.append(f"cycle {cycle}: RSS {f.rss_kib} KiB > {max_rss} + {RSS_KIB_PER_RUN} x {runs}")
    return problems


@pytest.mark.slow
def test_soak_spawn_exit_cycles_stay_flat(sockdir, build):
    hello = build("hello.c")
    srv = ServerProc(sockdir, "--request-timeout", "5")
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for n in range(2 * LAUNCHER_EVERY):              # warm-up: first heaps, caches, the mem fd
            _cycle(srv, hello, n, null)
        samples = [(0, baseline_footprint(srv))]
        deadline = time.monotonic() + SOAK_SECONDS
        cycles = 0
        while time.monotonic() < deadline or len(samples) < 4:
            cycles += 1
            _cycle(srv, hello, cycles, null)
            if cycles % SAMPLE_EVERY == 0:
                # Sampled once this cycle's program has been reclaimed: its
                # images gone, at most its leftover pages more than before.
                base = samples[-1][1]
                samples.append((cycles, checked_footprint(
                    srv, lambda f: f.maps <= base.maps + MAPS_PER_RUN * SAMPLE_EVERY + 16,
                    what=f"cycle {cycles}: the mappings of reaped programs given back")))
        assert children_of(srv.pid) == {}
        start, end = samples[0][1], samples[-1][1]
        print(f"\nsoak: {cycles} cycles in {SOAK_SECONDS:g} s; start {start}; end {end}; "
              f"per cycle: {(end.maps - start.maps) / cycles:.3f} maps, "
              f"{(end.rss_kib - start.rss_kib) / cycles:.2f} KiB RSS, "
              f"{(end.vm_kib - start.vm_kib) / cycles:.1f} KiB virtual")
        assert _flat(samples) == []
    finally:
        os.close(null)
        srv.stop()
