"""Exact reclamation: what it gives back and what it costs, side by side in one run.

  (a) the leftovers table (tests/_leftovers.py): per row, the host's Rss and
      mappings growth over its runs, after a warm-up run, in a host where
      programs reclaim (the default) and, in another host process, with every
      program started with reclaim=False (the behaviour without the ledger);
      each side runs in a fresh host process of its own;
  (b) spawn: space.run of a C hello, reclaim=True vs reclaim=False,
      interleaved blocks, median wall time per run;
  (c) runtimes starting up (java -version, node -e 0, python3 -c pass): in
      the space (reclaim on) vs natively with subprocess.run, interleaved,
      median wall time;
  (d) mmap_pairs (64 KiB mmap + one touched page + munmap): ns per pair the
      program reports, in the space vs natively, medians;
  (e) malloc_heavy (C) and umap_bench (C++ unordered_map): the seconds each
      reports for its work loop, in the space vs natively, medians.

Ratios are space / other side: below 1 is faster.  A row whose tool is not
installed is printed as skipped.

usage: python benchmarks/bench_reclaim.py [--rounds N] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import _build  # noqa: E402  (the tests' program builder; no pytest needed)
import _leftovers  # noqa: E402

from sameprocess import Space  # noqa: E402

MIB = 1 << 20
median = statistics.median


def builder() -> _build.Builder:
    cache = os.environ.get("SAMEPROCESS_TEST_CACHE") or os.path.join(tempfile.gettempdir(), "sameprocess-bench")
    return _build.Builder(cache)


def reported(stdout: bytes, key: str) -> float:
    for line in stdout.decode().splitlines():
        if line.startswith(key + "="):
            return float(line.split("=", 1)[1])
    raise RuntimeError(f"no {key}= line in {stdout!r}")


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:7.2f}" if theirs else "      -"


# -- (a) the leftovers table, one host process per side ------------------------------------------


def leftovers_here(reclaim: bool, quick: bool) -> dict:
    """Run in a fresh host: every row in one Space; JSON-ready results."""
    b, results = builder(), {}
    with Space() as space:
        active = space.reclaims_memory
        for name in _leftovers.ROW_NAMES:
            runs = _leftovers.ROWS[name][0]
            row = _leftovers.leftover_row(b, name, runs=max(1, runs // 4) if quick else runs)
            if row.argv is None:
                results[name] = {"skipped": row.skip}
                continue
            try:
                growth = _leftovers.measure(space, row, reclaim=reclaim)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                results[name] = {"failed": str(exc).splitlines()[0][:120]}
                continue
            results[name] = {"runs": row.runs, "rss": growth.rss, "maps": growth.maps}
    return {"reclaims_memory": active, "rows": results}


def leftovers_in_child(reclaim: bool, quick: bool) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--leftovers-side", "on" if reclaim else "off"]
    proc = subprocess.run(argv + (["--quick"] if quick else []), capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise RuntimeError(f"the leftovers host (reclaim={reclaim}) failed:\n{proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1])


def print_leftovers(on: dict, off: dict) -> None:
    print(f"\n(a) leftovers: host growth after the runs (one warm-up first); reclaim on: "
          f"reclaims_memory={on['reclaims_memory']}")
    print(f"{'program':26} {'runs':>5} {'on: Rss MiB':>12} {'maps':>6} {'off: Rss MiB':>13} {'maps':>6}")
    for name in _leftovers.ROW_NAMES:
        cells = []
        for side, width in ((on["rows"][name], 12), (off["rows"][name], 13)):
            if "runs" in side:
                cells.append(f"{side['rss'] / MIB:{width}.1f} {side['maps']:6d}")
            else:
                cells.append(f"{'skipped' if 'skipped' in side else 'failed':>{width}} {'':6}")
        runs = next((side["runs"] for side in (on["rows"][name], off["rows"][name]) if "runs" in side), 0)
        print(f"{name:26} {runs:5d} {cells[0]} {cells[1]}")
        for label, side in (("on", on["rows"][name]), ("off", off["rows"][name])):
            for why in ("skipped", "failed"):
                if why in side:
                    print(f"{'':26} {label}: {why}: {side[why]}")


# -- (b) to (e), in this host --------------------------------------------------------------------


def timed(run) -> float:
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def spawn_cost(space: Space, hello: str, spawns: int, block: int = 20) -> tuple[float, float]:
    sides = {True: [], False: []}
    for _ in range(max(spawns // block, 1)):
        for reclaim, times in sides.items():
            for _ in range(block):
                times.append(timed(lambda: space.run([hello], stdout=subprocess.DEVNULL, reclaim=reclaim,
                                                      check=True)))
    return median(sides[True]), median(sides[False])


def startup_cost(space: Space, argv: list[str], rounds: int) -> tuple[float, float]:
    ours, native = [], []
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
             "check": True}
    space.run(argv, **quiet)  # warm the page cache on both sides
    subprocess.run(argv, **quiet)
    for _ in range(rounds):
        ours.append(timed(lambda: space.run(argv, **quiet)))
        native.append(timed(lambda: subprocess.run(argv, **quiet)))
    return median(ours), median(native)


def reported_cost(space: Space, argv: list[str], key: str, rounds: int) -> tuple[float, float]:
    ours, native = [], []
    for _ in range(rounds):
        ours.append(reported(space.run(argv, capture_output=True, check=True).stdout, key))
        native.append(reported(subprocess.run(argv, capture_output=True, check=True).stdout, key))
    return median(ours), median(native)


def tool(name: str) -> str | None:
    found = shutil.which(name)
    return os.path.realpath(found) if found else None  # java finds its home from its real path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="runs per side of each timed program")
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller programs (a smoke test)")
    parser.add_argument("--leftovers-side", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.leftovers_side:
        print(json.dumps(leftovers_here(args.leftovers_side == "on", args.quick)))
        return

    rounds = max(1, 3 if args.quick else args.rounds)
    b = builder()
    hello, pairs = b("hello.c"), b("mmap_pairs.c")
    heavy = {"malloc_heavy (C)": [b("malloc_heavy.c")], "umap_bench (C++)": [b("umap_bench.cpp")]}
    pair_count = "20000" if args.quick else "100000"
    if args.quick:
        heavy = {"malloc_heavy (C)": heavy["malloc_heavy (C)"] + ["1000000"],
                 "umap_bench (C++)": heavy["umap_bench (C++)"] + ["150000"]}
    print(f"machine: {os.uname().machine}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"rounds={rounds}{', quick' if args.quick else ''}")

    print_leftovers(leftovers_in_child(True, args.quick), leftovers_in_child(False, args.quick))

    with Space() as space:
        print(f"\nthis host: reclaims_memory={space.reclaims_memory}")
        spawns = 100 if args.quick else 60 * rounds
        space.run([hello], stdout=subprocess.DEVNULL)
        on, off = spawn_cost(space, hello, spawns)
        print(f"\n(b) spawn + wait, C hello (median of {spawns} per side, interleaved)")
        print(f"{'':26} {'reclaim on us':>14} {'off us':>9} {'ratio':>7}")
        print(f"{'space.run([hello])':26} {on * 1e6:14.0f} {off * 1e6:9.0f} {ratio(on, off)}")

        print(f"\n(c) start-up, wall time (median of {rounds}, interleaved)")
        print(f"{'':26} {'space ms':>14} {'native ms':>9} {'ratio':>7}")
        runtimes = {"java -version": ("java", ["-version"]), "node -e 0": ("node", ["-e", "0"])}
        for label, (name, rest) in runtimes.items():
            exe = tool(name)
            if exe is None:
                print(f"{label:26} skipped: {name} is not installed")
                continue
            ours, native = startup_cost(space, [exe, *rest], rounds)
            print(f"{label:26} {ours * 1e3:14.1f} {native * 1e3:9.1f} {ratio(ours, native)}")
        ours, native = startup_cost(space, [sys.executable, "-c", "pass"], rounds)
        print(f"{'python3 -c pass':26} {ours * 1e3:14.1f} {native * 1e3:9.1f} {ratio(ours, native)}")

        print(f"\n(d) mmap_pairs, {pair_count} pairs (median of {rounds})")
        print(f"{'':26} {'space ns':>14} {'native ns':>9} {'ratio':>7}")
        ours, native = reported_cost(space, [pairs, pair_count], "ns_per_pair", rounds)
        print(f"{'64 KiB mmap+touch+munmap':26} {ours:14.0f} {native:9.0f} {ratio(ours, native)}")

        print(f"\n(e) work loop (median of {rounds})")
        print(f"{'':26} {'space s':>14} {'native s':>9} {'ratio':>7}")
        for label, argv in heavy.items():
            ours, native = reported_cost(space, argv, "seconds", rounds)
            print(f"{label:26} {ours:14.3f} {native:9.3f} {ratio(ours, native)}")


if __name__ == "__main__":
    main()
