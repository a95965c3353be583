"""Programs in the space vs natively, and space.run vs subprocess.run.

Prints figures and ratios measured side by side in one run:
  * malloc_heavy (C) and umap_bench (C++ unordered_map): the time each
    program reports for its own work loop, inside the space vs natively
    (target: ratio <= 1.05), interleaved runs, medians; plus a control, the
    same program natively with brk refused (benchmarks/nobrk.c), which
    shows what glibc's mmap-backed heap costs by itself;
  * spawn: space.run(["./hello"]) (with the ledger, reclaim=True, and
    without, reclaim=False) vs subprocess.run(["./hello"]), wall time per
    run (target: the space no slower), interleaved blocks, medians; CPU
    per run: the host's (this process), the keeper's (the ledger's task,
    never reaped, so read from /proc) and the programs' (child path
    included).

usage: python benchmarks/bench_space.py [--rounds N] [--spawns N] [--spawn-only]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import _build  # noqa: E402  (the tests' program builder; no pytest needed)

from sameprocess import Space  # noqa: E402


def reported_seconds(stdout: bytes) -> float:
    for line in stdout.decode().splitlines():
        if line.startswith("seconds="):
            return float(line.split("=", 1)[1])
    raise RuntimeError(f"no seconds= line in {stdout!r}")


def compare_program(space: Space, exe: str, nobrk: str, rounds: int) -> tuple[float, float, float]:
    ours, native, control = [], [], []
    for _ in range(rounds):
        ours.append(reported_seconds(space.run([exe], capture_output=True, check=True).stdout))
        native.append(reported_seconds(subprocess.run([exe], capture_output=True, check=True).stdout))
        control.append(reported_seconds(subprocess.run([nobrk, exe], capture_output=True, check=True).stdout))
    med = statistics.median
    return med(ours), med(native), med(control)


_TICK = os.sysconf("SC_CLK_TCK")


def _task_cpu(pid: int | None) -> float:
    """utime + stime of a task that is not reaped (the keeper)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _cpu(keeper: int | None) -> tuple[float, float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, _task_cpu(keeper), children.ru_utime + children.ru_stime


def compare_spawn(space: Space, hello: str, spawns: int, block: int = 50) -> dict:
    """Wall time per run (medians) and CPU per run: the host's, the keeper's, the program's."""
    keeper = space._host.keeper.pid if space.reclaims_memory else None
    runs = {"space": lambda: space.run([hello], stdout=subprocess.DEVNULL),
            "space, reclaim=False": lambda: space.run([hello], stdout=subprocess.DEVNULL, reclaim=False),
            "subprocess": lambda: subprocess.run([hello], stdout=subprocess.DEVNULL)}
    wall = {side: [] for side in runs}
    cpu = {side: [0.0, 0.0, 0.0] for side in runs}
    for _ in range(max(spawns // block, 1)):
        for side, run in runs.items():
            before = _cpu(keeper)
            for _ in range(block):
                t = time.perf_counter()
                run()
                wall[side].append(time.perf_counter() - t)
            after = _cpu(keeper)
            for i in range(3):
                cpu[side][i] += after[i] - before[i]
    n = len(wall["space"])
    return {side: (statistics.median(wall[side]), *(total / n for total in cpu[side])) for side in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="runs of each heavy program per side")
    parser.add_argument("--spawns", type=int, default=2000, help="hello runs per side")
    parser.add_argument("--spawn-only", action="store_true", help="measure only the spawn of a hello")
    args = parser.parse_args()
    builder = _build.Builder(os.environ.get("SAMEPROCESS_TEST_CACHE") or os.path.join(tempfile.gettempdir(), "sameprocess-bench"))
    programs = {} if args.spawn_only else {"malloc_heavy (C)": builder("malloc_heavy.c"),
                                           "unordered_map (C++)": builder("umap_bench.cpp")}
    hello = builder("hello.c")
    nobrk = builder(os.path.join(os.path.dirname(os.path.abspath(__file__)), "nobrk.c"))
    print(f"machine: {os.uname().machine}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with Space() as space:
        space.run([hello], stdout=subprocess.DEVNULL)  # warm the caches on both sides
        subprocess.run([hello], stdout=subprocess.DEVNULL)
        if programs:
            print(f"\n{'program':22} {'space s':>9} {'native s':>9} {'ratio':>7} {'no-brk s':>9} {'ratio':>7}"
                  f"   (work loop, median of {args.rounds})")
        for name, exe in programs.items():
            ours, native, control = compare_program(space, exe, nobrk, args.rounds)
            print(f"{name:22} {ours:9.3f} {native:9.3f} {ours / native:7.3f} {control:9.3f} {ours / control:7.3f}")
        spawn = compare_spawn(space, hello, args.spawns)
    native = spawn["subprocess"][0]
    print(f"\n{'run([./hello]), per run':22} {'wall us':>9} {'ratio':>7} {'host CPU':>9} {'keeper':>9} "
          f"{'program':>9}   (wall: median of {args.spawns}; CPU us: mean)")
    for side, (wall, host_cpu, keeper_cpu, program_cpu) in spawn.items():
        print(f"{side:22} {wall * 1e6:9.0f} {wall / native:7.3f} {host_cpu * 1e6:9.0f} "
              f"{keeper_cpu * 1e6:9.0f} {program_cpu * 1e6:9.0f}")


if __name__ == "__main__":
    main()
