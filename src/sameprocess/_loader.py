"""Plan and reserve: the host-side half of mapping an exec.

Mapping an image follows binfmt_elf: reserve the whole span (aligned to the
largest p_align) so segments cannot land on anything else, overlay each
PT_LOAD from the file with MAP_FIXED, zero the tail of the last file page and
map the rest of the bss anonymous.  Here the plan is made (layout, once per
parsed image) and the reservations taken; the overlays, the stack mapping
and the rest run natively in one call (_native/exec.c, driven by _spawn).
Every reservation is recorded in a Regions list, which is both the unwind
path of a failed spawn and what is unmapped when the program is reaped:
everything mapped natively lies inside one of them.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from . import _mm, _native
from ._elf import PAGE, ElfImage, EType, page_down, page_up
from ._errors import ExecError

# Below each stack, PROT_NONE.  Natively nothing is mapped within 128 MiB
# below a stack (the kernel's minimum gap under mmap_base), so a frame that
# jumps past the stack limit without probing (a huge local array) faults.
# Here the next mapping down may be another program's stack or heap: the
# guard keeps that distance.  Untouched reserved space costs no memory.
STACK_GUARD = 128 * 2**20
# Above each position-independent image the loader maps, PROT_NONE too.
# Natively nothing follows a static program's bss; here the next mapping up
# may be the host's, and a program that writes just past its end (a broken
# binary whose bss is shorter than it thinks) must fault, not scribble on it.
IMAGE_GUARD = 2**20


@dataclass
class Regions:
    """Address ranges owned by one program's loader work, unmapped together."""

    ranges: list[tuple[int, int]] = field(default_factory=list)

    def add(self, start: int, end: int) -> None:
        self.ranges.append((start, end))

    def contains(self, start: int, end: int) -> bool:
        return any(lo <= start and end <= hi for lo, hi in self.ranges)

    def unmap(self) -> None:
        while self.ranges:
            lo, hi = self.ranges.pop()
            _mm.munmap(lo, hi - lo)


@dataclass(frozen=True)
class LoadedImage:
    image: ElfImage
    bias: int  # add to a p_vaddr to get the address

    @property
    def entry(self) -> int:
        return self.bias + self.image.entry

    @property
    def phdr(self) -> int:
        return self.bias + self.image.phdr_vaddr


@dataclass(frozen=True)
class Layout:
    """What mapping an image takes, relative to its load bias: computed once
    per parsed image, since it depends on nothing else."""

    span_start: int
    size: int
    align: int
    # Per PT_LOAD, in order: (start, file_len, prot, file_offset, file_end,
    # zero_len, anon_start, anon_len).  file_len 0: no file data; zero_len:
    # bytes after the file data to clear in its last page; anon_len: bss
    # pages mapped anonymous.
    steps: tuple[tuple[int, int, int, int, int, int, int, int], ...]
    native: object = None  # the steps packed for sp_exec (struct sp_load_step[])


_layouts: dict[int, tuple[ElfImage, Layout]] = {}


def layout(image: ElfImage) -> Layout:
    cached = _layouts.get(id(image))
    if cached is not None and cached[0] is image:
        return cached[1]
    steps = []
    for seg in image.loads:
        start, file_end = page_down(seg.vaddr), seg.vaddr + seg.filesz
        anon_start = page_up(file_end) if seg.filesz else start
        has_bss = seg.memsz > seg.filesz
        zero_len = anon_start - file_end if (has_bss and seg.filesz) else 0
        anon_len = max(page_up(seg.vaddr + seg.memsz) - anon_start, 0) if has_bss else 0
        steps.append((start, (file_end - start) if seg.filesz else 0, seg.prot, page_down(seg.offset),
                      file_end, zero_len, anon_start, anon_len))
    result = Layout(image.span_start, image.span_end - image.span_start, image.max_align, tuple(steps),
                    _native.load_steps(steps))
    if len(_layouts) > 256:
        _layouts.clear()
    _layouts[id(image)] = (image, result)  # the image is kept, so its id is not reused
    return result


def reserve(image: ElfImage, regions: Regions, below: int = 0) -> int:
    """Reserve the image's span (PROT_NONE), plus `below` bytes under it for
    the stack, as one region (one munmap later); returns the load bias.

    ET_EXEC must land at its link addresses: MAP_FIXED_NOREPLACE makes a
    taken range a clear error instead of clobbering what is there.
    """
    shape = layout(image)
    size = shape.size
    flags = _mm.MAP_PRIVATE | _mm.MAP_ANONYMOUS | _mm.MAP_NORESERVE
    if image.etype == EType.EXEC:
        try:
            addr = _mm.mmap(image.span_start, size, _mm.PROT_NONE, flags | _mm.MAP_FIXED_NOREPLACE)
        except OSError as e:
            raise ExecError(e.errno, f"non-PIE executable needs {image.span_start:#x}-"
                            f"{image.span_end:#x}, which is not free in the space", image.path) from None
        if addr != image.span_start:  # kernels before 4.17 ignore the flag
            _mm.munmap(addr, size)
            raise ExecError(errno.EEXIST, "MAP_FIXED_NOREPLACE is not supported", image.path)
        regions.add(addr, addr + size)
        return 0
    align = shape.align
    slack = align if align > PAGE else 0
    guarded = size + IMAGE_GUARD
    raw = _mm.mmap(0, below + guarded + slack, _mm.PROT_NONE, flags)
    start = (raw + below + align - 1) & ~(align - 1)
    # Give back the alignment slack on both sides: only stack + span + guard stay.
    if start - below > raw:
        _mm.munmap(raw, start - below - raw)
    if raw + below + guarded + slack > start + guarded:
        _mm.munmap(start + guarded, raw + below + guarded + slack - (start + guarded))
    regions.add(start - below, start + guarded)
    return start - shape.span_start


def load_image(image: ElfImage, fd: int, regions: Regions, below: int = 0) -> LoadedImage:
    """Reserve and map one image on its own (the spawn maps its images in
    the same native call as the stack and the clone: see native_image)."""
    loaded = LoadedImage(image, reserve(image, regions, below))
    plan = _native.ExecPlan([native_image(loaded, fd)])
    if not plan.execute():
        raise mapping_error(plan.result())
    return loaded


def native_image(loaded: LoadedImage, fd: int) -> tuple:
    """What sp_exec needs to overlay `loaded` onto its reservation."""
    shape = layout(loaded.image)
    return (loaded.bias, shape.native, len(shape.steps), fd)


def mapping_error(result) -> OSError:
    """The OSError a failed native mmap/mprotect stands for (as _mm raises it)."""
    step, err, addr, length = result[:4]
    call = "mprotect" if step == _native.ExecStep.PROTECT else "mmap"
    return OSError(err, f"{call}({addr:#x}, {length:#x}): {os.strerror(err)}")


@dataclass(frozen=True)
class StackArea:
    low: int    # lowest usable address (above the guard)
    top: int    # one past the highest address

    @property
    def size(self) -> int:
        return self.top - self.low


def stack_reservation(size: int) -> int:
    """Bytes to reserve for a stack of `size` and its guard."""
    return size + STACK_GUARD


def reserve_stack(size: int, regions: Regions, base: int | None = None) -> StackArea:
    """The main thread's stack: [low, top) over an inaccessible guard.

    `base` is the start of a reservation made by reserve(below=...); without
    it the stack gets a reservation of its own.  The usable part is mapped
    natively (fixed size, not MAP_GROWSDOWN: runaway recursion faults on
    the guard instead of growing into a neighbour's memory).
    """
    total = stack_reservation(size)
    if base is None:
        base = _mm.mmap(0, total, _mm.PROT_NONE,
                        _mm.MAP_PRIVATE | _mm.MAP_ANONYMOUS | _mm.MAP_NORESERVE)
        regions.add(base, base + total)
    return StackArea(base + STACK_GUARD, base + total)


def stack_prot(executable: bool) -> int:
    return _mm.PROT_READ | _mm.PROT_WRITE | (_mm.PROT_EXEC if executable else 0)
