"""Where the host's time goes in one `space.Popen([hello]).wait()`.

Stamps the entry of each phase of the spawn path (the functions are wrapped
only to take a timestamp, so caches stay as cold as in real use: the program
runs in between), then prints the median time from each phase's start to
the next one's, over N runs of a C hello, and the time from the last phase
until wait() returned (the child path, the program, its reaping and
reclamation).

usage: python benchmarks/spawn_phases.py [--runs N]
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import _build  # noqa: E402  (the tests' program builder; no pytest needed)

from sameprocess import Space, _elf, _loader, _mm, _native, _popen, _space, _spawn, _stack  # noqa: E402

# (module or class, function, label), in the order the spawn path reaches them
PHASES = [
    (_popen.Popen, "_execute_child", "Popen bookkeeping"),
    (_space.Space, "_start", "spawn spec"),
    (_spawn, "resolve", "resolve"),
    (_elf, "open_image", "open + identify"),
    (_spawn, "plan_and_map", "plan + map"),
    (_spawn, "check_arg_sizes", "argument sizes"),
    (_loader, "map_stack", "stack mmap"),
    (_stack, "build", "stack image"),
    (_mm, "write", "stack write"),
    (_spawn, "_clone", "clone prelude"),
    (_native, "child_spec", "child spec"),
    (_native, "spawn", "clone3 .. wait() returns"),
]

_marks: list[tuple[str, int]] = []


def stamp(owner, name: str, label: str) -> None:
    inner = getattr(owner, name)

    def stamped(*args, **kwargs):
        _marks.append((label, time.perf_counter_ns()))
        return inner(*args, **kwargs)

    setattr(owner, name, stamped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    hello = _build.Builder(os.environ.get("SAMEPROCESS_TEST_CACHE") or "/tmp/sp-cache")("hello.c")
    for owner, name, label in PHASES:
        stamp(owner, name, label)
    spans: dict[str, list[int]] = collections.defaultdict(list)
    with Space() as space:
        for _ in range(50):                      # warm the parse cache
            space.run([hello], stdout=subprocess.DEVNULL)
        for _ in range(args.runs):
            _marks.clear()
            space.Popen([hello], stdout=subprocess.DEVNULL).wait()
            _marks.append(("end", time.perf_counter_ns()))
            # keyed by position too: a phase may be reached twice (the
            # interpreter is opened and identified like the executable)
            for position, ((label, start), (_, end)) in enumerate(zip(_marks, _marks[1:])):
                spans[(position, label)].append(end - start)
    print(f"median of {args.runs} runs of a C hello, µs from a phase's start to the next one's:")
    total = 0.0
    for (_, label), values in sorted(spans.items()):
        median = statistics.median(values) / 1e3
        print(f"  {label:28s} {median:8.1f}")
        if label != PHASES[-1][2]:
            total += median
    print(f"  {'total before clone3':28s} {total:8.1f}")


if __name__ == "__main__":
    main()
