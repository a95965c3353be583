"""Where the time goes in one `space.run([hello])`, phase by phase.

Stamps each phase of the spawn, the program's run, its reaping and the
reclamation after it (the functions are wrapped only to take a timestamp,
so caches stay as cold as in real use), then prints the median time from
each phase's start to the next one's over N runs of a C hello.  For scale
it also times subprocess.run's own `_fork_exec` (vfork plus the kernel's
exec) and subprocess.run as a whole, and the pieces that decided where the
one native call starts: an empty sp_exec call, reserving ld.so's span and
its stack in Python, and reserving plus mapping it natively (each
followed by the munmap).

usage: python benchmarks/spawn_phases.py [--runs N] [--no-reclaim]
"""
from __future__ import annotations

import argparse
import collections
import timeit
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import _build  # noqa: E402  (the tests' program builder; no pytest needed)

from sameprocess import Space, _elf, _ledger, _loader, _native, _popen, _reaper, _space, _spawn  # noqa: E402

# (module or class, function, label, stamped after it returns?), in the
# order the spawn path reaches them; each label names the phase that starts
# at its stamp.
PHASES = [
    (_space.Space, "run", "run() and subprocess's Popen.__init__", False),
    (_popen.Popen, "_execute_child", "Popen bookkeeping", False),
    (_space.Space, "_start", "spawn spec", False),
    (_spawn, "resolve", "resolve", False),
    (_elf, "open_image", "open + identify", False),
    (_spawn, "plan_and_reserve", "plan", False),
    (_loader, "reserve", "reserve (one mmap, alignment slack trimmed)", False),
    (_spawn, "check_arg_sizes", "argument sizes", False),
    (_loader, "reserve_stack", "stack reservation", False),
    (_spawn, "_stack_image", "stack image (template, auxv, random bytes)", False),
    (_ledger.Keeper, "enrol", "enrol (the ledger)", False),
    (_spawn, "_execute", "child spec and exec plan", False),
    (_native.ExecPlan, "execute", "sp_exec: map, stack, clone3, child path, report", False),
    (_native.ExecPlan, "execute", "Popen and run() until wait()", True),
    (_reaper.Reaper, "reap_claimed", "the program runs, until its exit is seen", False),
    (_reaper.Reaper, "reap_claimed", "reclamation (registry, link_map, unmaps)", True),
    (_popen.ProgramExit, "exited", "exit reported and reaped, until run() returns", False),
]
LAST_BEFORE_CLONE = "child spec and exec plan"  # the native call maps, then clones

_marks: list[tuple[str, int]] = []


def stamp(owner, name: str, label: str, after: bool) -> None:
    inner = getattr(owner, name)

    def stamped(*args, **kwargs):
        if not after:
            _marks.append((label, time.perf_counter_ns()))
        result = inner(*args, **kwargs)
        if after:
            _marks.append((label, time.perf_counter_ns()))
        return result

    if isinstance(vars(owner).get(name), staticmethod):
        stamped = staticmethod(stamped)
    setattr(owner, name, stamped)


def fork_exec_median(hello: str, runs: int) -> tuple[float, float]:
    """subprocess.run's own exec: its _fork_exec (vfork, then the kernel's
    exec in the child) and the whole run, medians in µs."""
    inner, spans = subprocess._fork_exec, []

    def timed(*args, **kwargs):
        t = time.perf_counter_ns()
        try:
            return inner(*args, **kwargs)
        finally:
            spans.append(time.perf_counter_ns() - t)

    subprocess._fork_exec = timed
    try:
        whole = []
        for _ in range(runs):
            t = time.perf_counter_ns()
            subprocess.run([hello], stdout=subprocess.DEVNULL)
            whole.append(time.perf_counter_ns() - t)
    finally:
        subprocess._fork_exec = inner
    return statistics.median(spans) / 1e3, statistics.median(whole) / 1e3


def call_costs() -> dict[str, float]:
    """µs per call, best of 5 repeats of 200, for the reservation choice."""
    fd, ldso = _elf.open_image(_elf.load(os.path.realpath("/proc/self/exe")).interp)
    below = _loader.stack_reservation(_spawn.stack_size())

    def reserve() -> None:
        regions = _loader.Regions()
        _loader.reserve(ldso, regions, below)
        regions.unmap()

    def reserve_and_map() -> None:
        regions = _loader.Regions()
        _loader.load_image(ldso, fd, regions, below)
        regions.unmap()

    cases = {"empty sp_exec call": lambda: _native.ExecPlan([]).execute(),
             "reserve ld.so + stack in Python, munmap": reserve,
             "reserve, map ld.so natively, munmap": reserve_and_map}
    try:
        return {name: min(timeit.repeat(case, number=200, repeat=5)) / 200 * 1e6
                for name, case in cases.items()}
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--no-reclaim", action="store_true", help="programs without the ledger")
    args = parser.parse_args()
    hello = _build.Builder(os.environ.get("SAMEPROCESS_TEST_CACHE") or "/tmp/sp-cache")("hello.c")
    for owner, name, label, after in PHASES:
        stamp(owner, name, label, after)
    runs: list[list[tuple[str, int]]] = []
    with Space(reclaim=not args.no_reclaim) as space:
        for _ in range(50):                      # warm the parse cache
            space.run([hello], stdout=subprocess.DEVNULL)
        for _ in range(args.runs):
            _marks.clear()
            space.run([hello], stdout=subprocess.DEVNULL)
            _marks.append(("end", time.perf_counter_ns()))
            runs.append(list(_marks))
    # Keep the runs that went the usual way (a rare one is reaped by the
    # reaper thread instead): the same phases in the same order.
    usual = collections.Counter(tuple(label for label, _ in marks) for marks in runs).most_common(1)[0][0]
    kept = [marks for marks in runs if tuple(label for label, _ in marks) == usual]
    print(f"median of {len(kept)} of {args.runs} runs of a C hello (space.run), "
          "µs from a phase's start to the next one's:")
    before_clone = total = 0.0
    for position, label in enumerate(usual[:-1]):
        median = statistics.median(marks[position + 1][1] - marks[position][1] for marks in kept) / 1e3
        print(f"  {label:44s} {median:8.1f}")
        total += median
        if position <= usual.index(LAST_BEFORE_CLONE):
            before_clone += median
    print(f"  {'total before the native call':44s} {before_clone:8.1f}")
    print(f"  {'sum of the medians':44s} {total:8.1f}")
    fork_exec, whole = fork_exec_median(hello, args.runs)
    print(f"subprocess.run: _fork_exec (vfork + exec) {fork_exec:.1f}, whole run {whole:.1f} (medians)")
    for name, cost in call_costs().items():
        print(f"  {name:44s} {cost:8.1f}")


if __name__ == "__main__":
    main()
