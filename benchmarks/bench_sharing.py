"""The sharing runtime's figures (issue 4), each next to its baseline, in one run.

  * shared heap: single-thread alloc/free (the same pattern: 4,096 live
    blocks, 16..1,024 bytes, 1 in 64 up to 16 KiB), sp_alloc/sp_free vs
    glibc malloc/free, both inside the space, interleaved rounds, medians
    (target: within 2x);
  * 4 programs allocating and cross-freeing 1,000,000 operations each
    (every block checked before it is freed; the heap walked after);
  * channel between two programs: one-way latency (median, p99) with the
    receiver waiting, and messages per second, next to a Unix socketpair
    and a pipe between two processes (targets: median < 1 us, >= 10x the
    socketpair's rate);
  * handoff of a 1 GiB structure: publish + lookup (sp_publish / sp_wait)
    vs sending it through a pipe vs multiprocessing.shared_memory (copy in,
    then attach).

usage: python benchmarks/bench_sharing.py [--rounds N] [--handoff-mib N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import _build  # noqa: E402  (the tests' program builder; no pytest needed)
from _sharing_util import merged as fields  # noqa: E402  (the rt_ programs' key=value fields)

from sameprocess import Space, _sharing  # noqa: E402


def run(space: Space, *args) -> dict[str, str]:
    r = space.run([str(a) for a in args], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{args} exited {r.returncode}: {r.stderr}")
    return fields(r.stdout)


def pair(space: Space, first: list, second: list) -> tuple[dict[str, str], dict[str, str]]:
    """Start second, then first; both programs of the space; their outputs."""
    b = space.Popen([str(a) for a in second], stdout=subprocess.PIPE, text=True)
    a = space.Popen([str(a) for a in first], stdout=subprocess.PIPE, text=True)
    out_a, out_b = a.communicate(timeout=600)[0], b.communicate(timeout=600)[0]
    if a.returncode or b.returncode:
        raise RuntimeError(f"{first} / {second} failed: {a.returncode} {b.returncode}")
    return fields(out_a), fields(out_b)


def heap(space: Space, stress: str, rounds: int) -> None:
    sp, glibc = [], []
    for i in range(rounds):
        glibc.append(float(run(space, stress, "bench", "malloc", 5_000_000, i + 1)["ns_per_op"]))
        sp.append(float(run(space, stress, "bench", "sp", 5_000_000, i + 1)["ns_per_op"]))
    m_sp, m_glibc = statistics.median(sp), statistics.median(glibc)
    print("## Shared heap, single thread (5M ops per round, median of %d interleaved rounds)" % rounds)
    print("| | ns per op (alloc or free + alloc) |\n|---|---|")
    print(f"| sp_alloc / sp_free | {m_sp:.1f} |\n| glibc malloc / free (in the space) | {m_glibc:.1f} |")
    print(f"ratio sp/glibc: **{m_sp / m_glibc:.2f}** (target <= 2)\n")


def cross_free(space: Space, stress: str) -> None:
    before = _sharing.stats()["used_blocks"]
    start = time.perf_counter()
    programs = [space.Popen([stress, "ring", str(i), "4", "1000000", str(i + 1)], stdout=subprocess.PIPE,
                            text=True) for i in range(4)]
    results = [fields(p.communicate(timeout=900)[0]) for p in programs]
    wall = time.perf_counter() - start
    _sharing.heap_check()
    errors = sum(int(r["errors"]) for r in results)
    ops = sum(int(r["ops"]) for r in results)
    for i in range(4):
        _sharing.Channel.open(f"ring-{i}", timeout=0).destroy()
    left = _sharing.stats()["used_blocks"] - before
    print("## 4 programs allocating and cross-freeing")
    print(f"{ops:,} operations in {wall:.2f} s ({ops / wall / 1e6:.2f} M ops/s), corrupted blocks: "
          f"**{errors}**, heap walk: consistent, blocks left: {left}\n")


def channel(space: Space, bench: str, rounds: int) -> None:
    lat, tput = {}, {}
    lat_samples = 200_000
    count = 2_000_000
    for _ in range(rounds):
        a, _b = pair(space, [bench, "lat-chan", "a", lat_samples], [bench, "lat-chan", "b", lat_samples])
        lat.setdefault("sameprocess channel", []).append(a)
        for name in ("lat-ab", "lat-ba"):
            _sharing.Channel.open(name, timeout=0).destroy()
        _s, r = pair(space, [bench, "tput-chan", "send", count], [bench, "tput-chan", "recv", count])
        assert r["ok"] == "1"
        tput.setdefault("sameprocess channel", []).append(float(r["msgs_per_s"]))
        _sharing.Channel.open("tput", timeout=0).destroy()
        for kind in ("socketpair", "pipe"):
            lat.setdefault(kind, []).append(fields(subprocess.run(
                [bench, "lat-fd", kind, str(lat_samples // 4)], capture_output=True, text=True, check=True).stdout))
            r = fields(subprocess.run([bench, "tput-fd", kind, str(count // 4)], capture_output=True, text=True,
                                      check=True).stdout)
            tput.setdefault(kind, []).append(float(r["msgs_per_s"]))
    print(f"## Channel between two programs (median of {rounds} rounds; latency with the receiver waiting)")
    print("| transport | one-way median | one-way p99 | messages/s |\n|---|---|---|---|")
    rates = {}
    for kind in ("sameprocess channel", "socketpair", "pipe"):
        median = statistics.median(int(x["median_ns"]) for x in lat[kind]) / 1000
        p99 = statistics.median(int(x["p99_ns"]) for x in lat[kind]) / 1000
        rates[kind] = statistics.median(tput[kind])
        print(f"| {kind} | {median:.2f} us | {p99:.2f} us | {rates[kind] / 1e6:.2f} M |")
    print(f"channel rate / socketpair rate: **{rates['sameprocess channel'] / rates['socketpair']:.1f}x** "
          "(target >= 10x)\n")


def handoff(space: Space, bench: str, size: int) -> None:
    consumer = space.Popen([bench, "handoff-consume"], stdout=subprocess.PIPE, text=True)
    t0 = int(run(space, bench, "handoff-produce", size)["t0_ns"])
    got = fields(consumer.communicate(timeout=600)[0])
    assert got["ok"] == "1" and int(got["size"]) == size
    ours = (int(got["t1_ns"]) - t0) / 1e9
    via_pipe = float(fields(subprocess.run([bench, "handoff-pipe", str(size)], capture_output=True, text=True,
                                           check=True).stdout)["seconds"])
    via_shm = shared_memory_handoff(size)
    print(f"## Handoff of a {size >> 20} MiB structure built by a producer, until a consumer can use it")
    print("| method | seconds |\n|---|---|")
    print(f"| sp_publish + sp_wait (nothing copied) | {ours:.6f} |")
    print(f"| pipe (write, read into the consumer's buffer) | {via_pipe:.4f} |")
    print(f"| multiprocessing.shared_memory (copy in, attach) | {via_shm:.4f} |")
    print(f"pipe / publish: {via_pipe / ours:,.0f}x, shared_memory / publish: {via_shm / ours:,.0f}x\n")


_ATTACH = """
import sys, time
from multiprocessing import resource_tracker, shared_memory
name = sys.stdin.readline().strip()
shm = shared_memory.SharedMemory(name=name)
resource_tracker.unregister(shm._name, "shared_memory")  # the producer owns it
ok = shm.buf[0] == 7 and shm.buf[len(shm.buf) - 1] == 7
print(time.monotonic_ns(), int(ok), flush=True)
shm.close()
"""


def shared_memory_handoff(size: int) -> float:
    from multiprocessing import shared_memory

    structure = bytearray(b"\x07") * size  # the producer's structure, built
    child = subprocess.Popen([sys.executable, "-c", _ATTACH], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    t0 = time.monotonic_ns()
    shm = shared_memory.SharedMemory(create=True, size=size)
    try:
        shm.buf[:size] = structure  # copy in
        child.stdin.write(shm.name + "\n")
        child.stdin.flush()
        t1, ok = child.stdout.readline().split()
        child.wait(60)
        assert ok == "1"
        return (int(t1) - t0) / 1e9
    finally:
        shm.close()
        shm.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--handoff-mib", type=int, default=1024)
    args = parser.parse_args()
    cache = os.environ.get("SAMEPROCESS_TEST_CACHE") or os.path.expanduser("~/.cache/sameprocess/bench")
    builder = _build.Builder(cache)
    stress, bench = builder("rt_stress.c"), builder("rt_bench.c")
    with Space() as space:
        heap(space, stress, args.rounds)
        cross_free(space, stress)
        channel(space, bench, args.rounds)
        handoff(space, bench, args.handoff_mib << 20)


if __name__ == "__main__":
    main()
