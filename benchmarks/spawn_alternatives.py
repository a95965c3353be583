"""The spawn path as built against the alternatives tried, in one run.

Each alternative is swapped in by replacing one internal function, so all of
them run in the same process and space, interleaved in blocks of 40 runs of
a C hello, with subprocess.run as the yardstick.  Medians per run:

  as built         the package as it is
  reaper reaps     the waiting thread does not claim the program: the reaper
                   thread reaps it and wakes the waiter
  unmaps deferred  the dead program's objects and regions are unmapped while
                   the next program runs (before its waiter sleeps)
  spare mapped     an ld.so image and a stack are mapped while the previous
                   program runs, and the next spawn takes them
  seccomp filter   each program attaches the seccomp brk filter, as where
                   the kernel refuses PR_SET_MM_MAP (and as before it was used)
  text populated   ld.so's read-only segments mapped with MAP_POPULATE
  stack populated  the top 64 KiB of each stack prefaulted
                   (MADV_POPULATE_WRITE)

usage: python benchmarks/spawn_alternatives.py [--blocks N]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import _build  # noqa: E402  (the tests' program builder; no pytest needed)

from sameprocess import Space, _elf, _loader, _mm, _native, _space, _spawn  # noqa: E402
from sameprocess._brk import seccomp_program  # noqa: E402

BLOCK = 40
AS_BUILT = {"on_exit": _space.Space._on_exit, "reap_here": _space.Space._reap_here,
            "load_image": _loader.load_image, "map_stack": _loader.map_stack, "mmap": _mm.mmap}
_real_munmap = _mm.munmap
MAP_POPULATE, MADV_POPULATE_WRITE = 0x8000, 23
_libc = ctypes.CDLL(None, use_errno=True)


def reaper_reaps() -> dict:
    return {"reap_here": lambda self, program, timeout: None}


def unmaps_deferred() -> dict:
    pending: list[tuple[int, int]] = []

    def on_exit(self, program, launch, returncode):
        _mm.munmap = lambda addr, length: pending.append((addr, length))
        try:
            AS_BUILT["on_exit"](self, program, launch, returncode)
        finally:
            _mm.munmap = _real_munmap

    def drain() -> None:
        while pending:
            _real_munmap(*pending.pop())

    def reap_here(self, program, timeout):
        drain()
        return AS_BUILT["reap_here"](self, program, timeout)
    return {"on_exit": on_exit, "reap_here": reap_here, "after_block": drain}


def spare_mapped(interp: str) -> dict:
    spare: dict = {}
    premapped: set[int] = set()

    def prepare() -> None:
        if spare:
            return
        fd, image = _elf.open_image(interp)
        try:
            regions, size = _loader.Regions(), _spawn.stack_size()
            below = _loader.stack_reservation(size)
            loaded = AS_BUILT["load_image"](image, fd, regions, below)
            base = loaded.bias + image.span_start - below
            AS_BUILT["map_stack"](size, False, regions, base)
            spare.update(image=image, regions=regions, loaded=loaded, base=base)
        finally:
            os.close(fd)

    def load_image(image, fd, regions, below=0):
        if spare and below and spare["image"] is image:
            regions.ranges.extend(spare["regions"].ranges)
            premapped.add(spare["base"])
            loaded = spare["loaded"]
            spare.clear()
            return loaded
        return AS_BUILT["load_image"](image, fd, regions, below)

    def map_stack(size, executable, regions, base=None):
        if base in premapped:
            premapped.discard(base)
            return _loader.StackArea(base + _loader.STACK_GUARD, base + _loader.stack_reservation(size))
        return AS_BUILT["map_stack"](size, executable, regions, base)

    def reap_here(self, program, timeout):
        prepare()
        return AS_BUILT["reap_here"](self, program, timeout)

    def give_back() -> None:
        if spare:
            spare["regions"].unmap()
            spare.clear()
    return {"load_image": load_image, "map_stack": map_stack, "reap_here": reap_here,
            "after_block": give_back}


def seccomp_attached() -> dict:
    saved: dict = {}

    def before_block(space) -> None:
        host = saved["host"] = space._host
        saved["state"] = (host.seccomp, host.need_nnp)
        host.seccomp = _native.SeccompProgram(seccomp_program(host.guard))
        host.need_nnp = not _spawn._has_cap_sys_admin()

    def after_block() -> None:
        saved["host"].seccomp, saved["host"].need_nnp = saved["state"]
    return {"before_block": before_block, "after_block": after_block}


def text_populated() -> dict:
    def mmap(addr, length, prot, flags, fd=-1, offset=0):
        if fd >= 0 and not prot & _mm.PROT_WRITE:
            flags |= MAP_POPULATE
        return AS_BUILT["mmap"](addr, length, prot, flags, fd, offset)
    return {"mmap": mmap}


def stack_populated() -> dict:
    def map_stack(size, executable, regions, base=None):
        stack = AS_BUILT["map_stack"](size, executable, regions, base)
        top = 64 << 10
        if _libc.madvise(ctypes.c_void_p(stack.top - top), ctypes.c_size_t(top), MADV_POPULATE_WRITE):
            raise OSError(ctypes.get_errno(), "madvise(MADV_POPULATE_WRITE)")
        return stack
    return {"map_stack": map_stack}


def use(variant: dict) -> None:
    chosen = {**AS_BUILT, **variant}
    _space.Space._on_exit, _space.Space._reap_here = chosen["on_exit"], chosen["reap_here"]
    _loader.load_image, _loader.map_stack = chosen["load_image"], chosen["map_stack"]
    _mm.mmap = chosen["mmap"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=25)
    args = parser.parse_args()
    hello = _build.Builder(os.environ.get("SAMEPROCESS_TEST_CACHE") or "/tmp/sp-cache")("hello.c")
    interp = _elf.load(hello).interp
    variants = {"as built": {}, "reaper reaps": reaper_reaps(), "unmaps deferred": unmaps_deferred(),
                "spare mapped": spare_mapped(interp), "seccomp filter": seccomp_attached(),
                "text populated": text_populated(),
                "stack populated": stack_populated()}
    times: dict[str, list[float]] = {name: [] for name in [*variants, "subprocess.run"]}
    with Space() as space:
        for _ in range(100):
            space.run([hello], stdout=subprocess.DEVNULL)
        for _ in range(args.blocks):
            for name, variant in variants.items():
                use(variant)
                variant.get("before_block", lambda _space: None)(space)
                for _ in range(BLOCK):
                    t = time.perf_counter()
                    space.run([hello], stdout=subprocess.DEVNULL)
                    times[name].append(time.perf_counter() - t)
                use({})
                variant.get("after_block", lambda: None)()
            for _ in range(BLOCK):
                t = time.perf_counter()
                subprocess.run([hello], stdout=subprocess.DEVNULL)
                times["subprocess.run"].append(time.perf_counter() - t)
    built = statistics.median(times["as built"])
    print(f"median of {args.blocks * BLOCK} runs of a C hello, interleaved blocks of {BLOCK}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:16s} {median * 1e6:7.0f} us   {median / built:5.3f} x as built")


if __name__ == "__main__":
    main()
