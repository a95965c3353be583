"""Programs in the space vs natively, and space.run vs subprocess.run.

Prints figures and ratios measured side by side in one run:
  * malloc_heavy (C) and umap_bench (C++ unordered_map): the time each
    program reports for its own work loop, inside the space vs natively
    (target: ratio <= 1.05), interleaved runs, medians; plus a control, the
    same program natively with brk refused (benchmarks/nobrk.c), which
    shows what glibc's mmap-backed heap costs by itself;
  * spawn: space.run(["./hello"]) vs subprocess.run(["./hello"]), wall time
    per run (target: the space no slower), interleaved blocks, medians.

usage: python benchmarks/bench_space.py [--rounds N] [--spawns N]
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


def _cpu() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def compare_spawn(space: Space, hello: str, spawns: int, block: int = 50) -> dict:
    """Wall time per run (medians) and CPU per run: the host's and the program's."""
    wall = {"space": [], "subprocess": []}
    cpu = {"space": [0.0, 0.0], "subprocess": [0.0, 0.0]}
    runs = {"space": lambda: space.run([hello], stdout=subprocess.DEVNULL),
            "subprocess": lambda: subprocess.run([hello], stdout=subprocess.DEVNULL)}
    for _ in range(max(spawns // block, 1)):
        for side, run in runs.items():
            before = _cpu()
            for _ in range(block):
                t = time.perf_counter()
                run()
                wall[side].append(time.perf_counter() - t)
            after = _cpu()
            cpu[side][0] += after[0] - before[0]
            cpu[side][1] += after[1] - before[1]
    n = len(wall["space"])
    return {side: (statistics.median(wall[side]), cpu[side][0] / n, cpu[side][1] / n) for side in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="runs of each heavy program per side")
    parser.add_argument("--spawns", type=int, default=2000, help="hello runs per side")
    args = parser.parse_args()
    builder = _build.Builder(os.environ.get("SAMEPROCESS_TEST_CACHE") or os.path.join(tempfile.gettempdir(), "sameprocess-bench"))
    programs = {"malloc_heavy (C)": builder("malloc_heavy.c"), "unordered_map (C++)": builder("umap_bench.cpp")}
    hello = builder("hello.c")
    nobrk = builder(os.path.join(os.path.dirname(os.path.abspath(__file__)), "nobrk.c"))
    print(f"machine: {os.uname().machine}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with Space() as space:
        space.run([hello], stdout=subprocess.DEVNULL)  # warm the caches on both sides
        subprocess.run([hello], stdout=subprocess.DEVNULL)
        print(f"\n{'program':22} {'space s':>9} {'native s':>9} {'ratio':>7} {'no-brk s':>9} {'ratio':>7}"
              f"   (work loop, median of {args.rounds})")
        for name, exe in programs.items():
            ours, native, control = compare_program(space, exe, nobrk, args.rounds)
            print(f"{name:22} {ours:9.3f} {native:9.3f} {ours / native:7.3f} {control:9.3f} {ours / control:7.3f}")
        spawn = compare_spawn(space, hello, args.spawns)
        (ours, ours_host, ours_prog), (native, native_host, native_prog) = spawn["space"], spawn["subprocess"]
        print(f"\n{'spawn + wait, hello':22} {'space us':>9} {'subproc':>9} {'ratio':>7}   (median of {args.spawns})")
        print(f"{'run([./hello])':22} {ours * 1e6:9.0f} {native * 1e6:9.0f} {ours / native:7.3f}")
        print(f"{'  host CPU per run':22} {ours_host * 1e6:9.0f} {native_host * 1e6:9.0f}")
        print(f"{'  program CPU per run':22} {ours_prog * 1e6:9.0f} {native_prog * 1e6:9.0f}")


if __name__ == "__main__":
    main()
