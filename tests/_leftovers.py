"""What a program leaves in its host after it exits: the leftovers table.

    rows = [leftover_row(builder, name) for name in ROW_NAMES]
    growth = measure(space, row)               # warm-up, footprint, runs, footprint
    growth = measure(space, row, reclaim=False) # extra keyword arguments go to space.run

footprint() is the host's resident memory (Rss in /proc/self/smaps_rollup)
and its number of mappings (lines of /proc/self/maps).  A row whose tool is
not installed has argv None and says why in `skip`.  Shared by
tests/test_space_reclaim.py and benchmarks/bench_reclaim.py; nothing here
depends on pytest.
"""
from __future__ import annotations

import gc
import os
import shutil
import subprocess
from dataclasses import dataclass

import _build

MIB = 1 << 20
RUN_TIMEOUT = 120  # seconds, per run

# Node: 200,000 small objects, kept alive until the end.
NODE_OBJECTS = ("const a = []; for (let i = 0; i < 200000; i++) a.push({i, s: 'k' + i});"
                " if (a.length !== 200000) process.exit(1);")


@dataclass(frozen=True)
class Footprint:
    rss: int   # bytes
    maps: int  # lines of /proc/self/maps

    def __sub__(self, other: "Footprint") -> "Footprint":
        return Footprint(self.rss - other.rss, self.maps - other.maps)


@dataclass(frozen=True)
class Row:
    name: str
    argv: list[str] | None  # None: skipped, see `skip`
    runs: int
    skip: str = ""


def footprint() -> Footprint:
    gc.collect()  # the host's own garbage is not a program's leftover
    rss = None
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
    if rss is None:
        raise RuntimeError("no Rss line in /proc/self/smaps_rollup")
    with open("/proc/self/maps", "rb") as f:
        maps = sum(1 for _ in f)
    return Footprint(rss, maps)


def _tool(name: str) -> str | None:
    """The real file of a tool on PATH.  Java's launcher finds its libraries
    from the path it was started as, so /usr/bin/java (a chain of symlinks)
    must be called by its real path."""
    found = shutil.which(name)
    return os.path.realpath(found) if found else None


def _java(builder) -> tuple[list[str] | None, str]:
    java = _tool("java")
    return ([java, "-Xmx64m", "-version"], "") if java else (None, "java is not installed")


def _node(builder) -> tuple[list[str] | None, str]:
    node = _tool("node")
    return ([node, "-e", NODE_OBJECTS], "") if node else (None, "node is not installed")


def _built(source: str, *args: str):
    def make(builder) -> tuple[list[str] | None, str]:
        try:
            return [builder(source), *args], ""
        except _build.ToolMissing as exc:
            return None, str(exc)
    return make


# name -> (runs, how to get the command line)
ROWS = {
    "C leak_touch 10 MiB": (30, _built("leak_touch.c", "10")),
    "C 4 threads malloc": (200, _built("threads_malloc.c")),
    "java -Xmx64m -version": (8, _java),
    "node 200k objects": (8, _node),
    "Go hello": (20, _built("hello.go")),
    "C++ umap_free 1M strings": (1, _built("umap_free.cpp")),
}
ROW_NAMES = tuple(ROWS)


def leftover_row(builder, name: str, runs: int | None = None) -> Row:
    default_runs, make = ROWS[name]
    argv, skip = make(builder)
    return Row(name, argv, default_runs if runs is None else runs, skip)


def run_once(space, argv: list[str], **kwargs) -> None:
    """One run that must exit 0; its output is discarded (stderr is kept for the error)."""
    result = space.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=RUN_TIMEOUT, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {result.returncode}: {result.stderr.decode(errors='replace')[-2000:]}")


def measure(space, row: Row, **kwargs) -> Footprint:
    """The host's growth over row.runs runs, after one warm-up run (which
    loads what the host itself keeps: caches, the reaper's first buffers)."""
    if row.argv is None:
        raise ValueError(f"{row.name} is skipped: {row.skip}")
    run_once(space, row.argv, **kwargs)
    before = footprint()
    for _ in range(row.runs):
        run_once(space, row.argv, **kwargs)
    return footprint() - before
