"""Two (or more) source trees' servers, driven side by side.

Each tree's `sameprocess serve` runs from that tree's src/ (PYTHONPATH), on
a socket of its own, driven by that tree's own native launcher (the
build/launcher/sameprocess beside its src/, which setup.py's build_ext
makes; trees may speak different protocol versions) in alternating
blocks, so that a slow moment of the machine lands on every tree alike.
A tree other than this one needs its native parts built in place first:

    git worktree add /tmp/before REV
    (cd /tmp/before && ../main/.venv/bin/python setup.py build_ext --inplace)
    .venv/bin/python benchmarks/compare_servers.py /tmp/before/src src

Prints, per tree: the server's CPU per sequential launch (from
/proc/PID/stat, summed over all blocks) with the median wall time of a
launch, then launches per second with 8 launchers in parallel, beside
native ./hello's in the same alternation.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_launcher import _build, cpu_seconds, spawn_wait, start_server  # noqa: E402


def sequential(servers, blocks: int, size: int) -> None:
    cpu = {tree: 0.0 for tree, _, _ in servers}
    walls = {tree: [] for tree, _, _ in servers}
    for _ in range(blocks):
        for tree, server, argv in servers:
            before = cpu_seconds(server.pid)
            walls[tree] += [spawn_wait(argv, os.environ)[0] for _ in range(size)]
            cpu[tree] += cpu_seconds(server.pid) - before
    print(f"sequential, {blocks} alternating blocks of {size}:")
    for tree, _, _ in servers:
        n = len(walls[tree])
        print(f"  {tree}: server CPU {1000 * cpu[tree] / n:.3f} ms per launch, "
              f"median wall {1000 * statistics.median(walls[tree]):.3f} ms")


def parallel(servers, native: list[str], blocks: int, size: int, workers: int) -> None:
    kinds = [(tree, argv) for tree, _, argv in servers] + [("native ./hello", native)]
    rates = {name: [] for name, _ in kinds}
    with ThreadPoolExecutor(workers) as pool:
        for _ in range(blocks):
            for name, argv in kinds:
                start = time.perf_counter()
                list(pool.map(spawn_wait, [argv] * size, [os.environ] * size))
                rates[name].append(size / (time.perf_counter() - start))
    print(f"{workers} launchers in parallel, {blocks} alternating blocks of {size}:")
    for name, _ in kinds:
        print(f"  {name}: median {statistics.median(rates[name]):.0f} launches/s")


def _launcher_of(tree: str) -> str:
    path = os.path.join(os.path.dirname(os.path.abspath(tree)), "build", "launcher", "sameprocess")
    if not os.path.exists(path):
        raise SystemExit(f"no native launcher built for {tree} ({path}): "
                         "run `python setup.py build_ext --inplace` in that tree")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="src/ directories to compare")
    parser.add_argument("--blocks", type=int, default=40, help="sequential blocks per tree")
    parser.add_argument("--block-size", type=int, default=50)
    parser.add_argument("--parallel-blocks", type=int, default=8)
    parser.add_argument("--parallel-size", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    hello = _build.Builder(os.environ.get("SAMEPROCESS_TEST_CACHE") or tempfile.mkdtemp())("hello.c")
    servers = []
    with tempfile.TemporaryDirectory() as directory:
        try:
            for i, tree in enumerate(args.trees):
                own = os.path.join(directory, str(i))
                os.mkdir(own, 0o700)
                env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
                server, sock = start_server(own, env, None)
                servers.append((tree, server, [_launcher_of(tree), "run", "--socket", sock, "--", hello]))
            for _, _, argv in servers:      # warm: the first spawn sets up the space
                for _ in range(20):
                    spawn_wait(argv, os.environ)
            sequential(servers, args.blocks, args.block_size)
            parallel(servers, [hello], args.parallel_blocks, args.parallel_size, args.workers)
        finally:
            for _, server, _ in servers:
                server.terminate()
                server.wait()


if __name__ == "__main__":
    main()
