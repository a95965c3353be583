"""What a program's ld.so loaded, read from its r_debug after the program exits.

ld.so keeps every object it mapped on the link_map chain behind `_r_debug`.
Each entry gives a load bias; the object's own program headers, in memory
at the bias, give its span.  The program is dead and its memory may
be corrupt, so every read goes through _mm.peek and every span is checked
before anyone unmaps it.
"""
from __future__ import annotations

import struct

from . import _mm
from ._elf import EHDR, PHDR, USER_TOP, PType, page_down, page_up

R_DEBUG = struct.Struct("<i4xQQi4xQQ")  # r_version, r_map, r_brk, r_state, r_ldbase, r_next
LINK_MAP = struct.Struct("<QQQQQ")      # l_addr, l_name, l_ld, l_next, l_prev
MAX_OBJECTS = 4096
PT_LOAD = int(PType.LOAD)


def object_span(bias: int, header_at: int | None = None) -> tuple[int, int] | None:
    """[start, end) of the object loaded at `bias`, from its own headers in
    memory; they sit at the bias unless `header_at` says where (a non-PIE
    executable's first segment maps them at its link address)."""
    if header_at is None:
        header_at = bias
    # Usually the program headers follow the ELF header: read both at once.
    head = _mm.peek(header_at, HEAD_SIZE) or _mm.peek(header_at, EHDR.size)
    if head is None or head[:4] != b"\x7fELF":
        return None
    # The same library comes back with every program: the same headers
    # give the same p_vaddr range, parsed once.
    loads = _load_ranges.get(head) or _load_range(header_at, head)
    if loads is None:
        return None
    start, end = page_down(bias + loads[0]), page_up(bias + loads[1])
    if not 0 < start < end <= USER_TOP:
        return None
    return start, end


HEAD_SIZE = EHDR.size + 16 * PHDR.size
_load_ranges: dict[bytes, tuple[int, int]] = {}


def _load_range(header_at: int, head: bytes) -> tuple[int, int] | None:
    """(lowest p_vaddr, highest p_vaddr + p_memsz) of the PT_LOAD headers."""
    (_, _, _, _, _, phoff, _, _, _, phentsize, phnum, _, _, _) = EHDR.unpack_from(head)
    if phentsize != PHDR.size or not 0 < phnum <= 512:
        return None
    table = head[phoff:phoff + phnum * PHDR.size]
    in_head = len(table) == phnum * PHDR.size
    if not in_head:
        table = _mm.peek(header_at + phoff, phnum * PHDR.size)
    if table is None:
        return None
    loads = [(p[3], p[3] + p[6]) for p in PHDR.iter_unpack(table) if p[0] == PT_LOAD]
    if not loads:
        return None
    found = (min(loads)[0], max(end for _, end in loads))
    if in_head:  # keyed by the bytes that decided it, nothing else
        if len(_load_ranges) >= 64:
            _load_ranges.clear()
        _load_ranges[head] = found
    return found


def link_map_biases(r_debug_addr: int) -> list[int]:
    """The load bias of each object on every namespace's chain, in order.

    The first one is the main program's (glibc always lists it first); its
    span cannot come from object_span, since its ELF header need not sit at
    its bias.
    """
    out: list[int] = []
    seen: set[int] = set()
    rd, hops = r_debug_addr, 0
    while rd and hops < 16:
        raw = _mm.peek(rd, R_DEBUG.size)
        if raw is None:
            break
        version, lm, _, _, _, rnext = R_DEBUG.unpack(raw)
        while lm and lm not in seen and len(seen) < MAX_OBJECTS:
            seen.add(lm)
            entry = _mm.peek(lm, LINK_MAP.size)
            if entry is None:
                break
            bias, _, _, lm, _ = LINK_MAP.unpack(entry)
            out.append(bias)
        rd = rnext if version >= 2 else 0
        hops += 1
    return out
