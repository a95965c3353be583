"""The initial stack image a program starts with, built as one bytes object.

Layout, from the top of the stack down, as the kernel's create_elf_tables
writes it: a NUL word, the execfn string, environment and argument strings,
platform strings and the 16 AT_RANDOM bytes; then, 16-byte aligned at the
bottom, argc, argv pointers, NULL, envp pointers, NULL, auxv pairs, AT_NULL.
The program's stack pointer points at argc.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from operator import add

from ._auxv import AT

WORD = 8


@dataclass(frozen=True)
class InitialStack:
    """A ready image: write `data` at `sp` and enter with the stack pointer at `sp`."""

    sp: int
    data: bytes


def build(top: int, argv: list[bytes], envp: list[bytes], execfn: bytes,
          auxv: list[tuple[int, int]], strings: dict[int, bytes], random16: bytes) -> InitialStack:
    """Lay out the image so that it ends exactly at `top`.

    `auxv` holds the numeric entries; `strings` maps AT_* types whose value
    is a string (AT_PLATFORM...) to its bytes; AT_RANDOM points at
    `random16` and AT_EXECFN at `execfn`.  Pure: the result is returned,
    not written.
    """
    tail, offsets = _string_area(argv, envp, execfn, strings)
    strings_base = top - len(random16) - len(tail)
    first = strings_base + len(random16)
    addresses = [first + offset for offset in offsets]
    n_str, n_arg = len(strings), len(argv)
    arg_addrs = addresses[n_str:n_str + n_arg]
    env_addrs = addresses[n_str + n_arg:-1]

    table = [n_arg, *arg_addrs, 0, *env_addrs, 0, *chain.from_iterable(auxv),
             AT.RANDOM, strings_base, AT.EXECFN, addresses[-1],
             *chain.from_iterable(zip(strings, addresses)), AT.NULL, 0]

    # argc must sit 16-byte aligned: pad between the table and the strings.
    sp = (strings_base - len(table) * WORD) & ~15
    pad = strings_base - sp - len(table) * WORD
    data = b"".join((struct.pack(f"<{len(table)}Q", *table), b"\0" * pad, random16, tail))
    return InitialStack(sp=sp, data=data)


_areas: dict[tuple, tuple[bytes, tuple[int, ...]]] = {}


def _string_area(argv: list[bytes], envp: list[bytes], execfn: bytes,
                 strings: dict[int, bytes]) -> tuple[bytes, tuple[int, ...]]:
    """The string area after AT_RANDOM's bytes, and where in it each
    string starts.

    In ascending address order: each string NUL-terminated, then the end
    marker.  Kept for the last few argument lists: a program started again
    with the same arguments and environment reuses it.
    """
    key = (tuple(argv), tuple(envp), execfn, tuple(strings.items()))
    area = _areas.get(key)
    if area is None:
        texts = [*strings.values(), *argv, *envp, execfn]
        tail = b"".join((b"\0".join(texts), b"\0", b"\0" * WORD))
        # Each string starts one past the previous one's NUL (len + 1
        # summed up, without a Python-level loop).
        offsets = tuple(accumulate(map(add, map(len, texts[:-1]), repeat(1)), initial=0))
        if len(_areas) >= 32:
            _areas.clear()
        area = _areas[key] = (tail, offsets)
    return area
