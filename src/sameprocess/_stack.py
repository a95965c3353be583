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

from ._auxv import AT

WORD = 8


@dataclass(frozen=True)
class InitialStack:
    """A ready image: write `data` at `sp` and enter with the stack pointer at `sp`."""

    sp: int
    data: bytes


def build(top: int, argv: list[bytes], envp: list[bytes], execfn: bytes,
          auxv: list[tuple[int, int]], strings: dict[int, bytes], random16: bytes) -> InitialStack:
    """Lay out the image so that it ends exactly below `top`.

    `auxv` holds the numeric entries; `strings` maps AT_* types whose value
    is a string (AT_PLATFORM, AT_EXECFN...) to its bytes; AT_RANDOM points at
    `random16`.  Pure: the result is returned, not written.
    """
    area = bytearray()  # string area, grows downward: offsets from its end

    def push(blob: bytes) -> int:
        area[:0] = blob
        return len(area)  # distance from the area's end to the blob's start

    push(b"\0" * WORD)
    execfn_off = push(execfn + b"\0")
    env_offs = [push(s + b"\0") for s in reversed(envp)][::-1]
    arg_offs = [push(s + b"\0") for s in reversed(argv)][::-1]
    str_offs = {key: push(value + b"\0") for key, value in strings.items()}
    random_off = push(random16)

    entries = list(auxv) + [(AT.RANDOM, None), (AT.EXECFN, None)] + [(k, None) for k in strings]
    words = 1 + len(argv) + 1 + len(envp) + 1 + 2 * (len(entries) + 1)
    strings_base = top - len(area)
    sp = (strings_base - words * WORD) & ~15
    pad = strings_base - sp - words * WORD

    def at(off: int) -> int:
        return top - off

    table = [len(argv)] + [at(o) for o in arg_offs] + [0] + [at(o) for o in env_offs] + [0]
    for key, value in entries:
        if key == AT.RANDOM:
            value = at(random_off)
        elif key == AT.EXECFN:
            value = at(execfn_off)
        elif value is None:
            value = at(str_offs[key])
        table += [int(key), value]
    table += [AT.NULL, 0]
    data = struct.pack(f"<{len(table)}Q", *table) + b"\0" * pad + bytes(area)
    return InitialStack(sp=sp, data=data)
