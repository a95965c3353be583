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


def _object_span(bias: int) -> tuple[int, int] | None:
    """[start, end) of the object whose ELF header is mapped at `bias`."""
    # Usually the program headers follow the ELF header: read both at once.
    head = _mm.peek(bias, EHDR.size + 16 * PHDR.size) or _mm.peek(bias, EHDR.size)
    if head is None or head[:4] != b"\x7fELF":
        return None
    (_, _, _, _, _, phoff, _, _, _, phentsize, phnum, _, _, _) = EHDR.unpack_from(head)
    if phentsize != PHDR.size or not 0 < phnum <= 512:
        return None
    table = head[phoff:phoff + phnum * PHDR.size]
    if len(table) != phnum * PHDR.size:
        table = _mm.peek(bias + phoff, phnum * PHDR.size)
    if table is None:
        return None
    loads = [PHDR.unpack_from(table, i * PHDR.size) for i in range(phnum)]
    loads = [(p[3], p[6]) for p in loads if p[0] == PType.LOAD]
    if not loads:
        return None
    start = page_down(bias + min(v for v, _ in loads))
    end = page_up(bias + max(v + m for v, m in loads))
    if not 0 < start < end <= USER_TOP:
        return None
    return start, end


def loaded_objects(r_debug_addr: int) -> list[tuple[int, tuple[int, int] | None]]:
    """(bias, span) of each object on every namespace's chain.

    The first entry is the main program (glibc always lists it first); its
    span is None here because its ELF header need not sit at its bias.
    """
    out: list[tuple[int, tuple[int, int] | None]] = []
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
            out.append((bias, _object_span(bias) if out else None))
        rd = rnext if version >= 2 else 0
        hops += 1
    return out
