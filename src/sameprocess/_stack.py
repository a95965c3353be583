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
    """Lay out the image so that it ends exactly at `top`.

    `auxv` holds the numeric entries; `strings` maps AT_* types whose value
    is a string (AT_PLATFORM...) to its bytes; AT_RANDOM points at
    `random16` and AT_EXECFN at `execfn`.  Pure: the result is returned,
    not written.
    """
    # The string area, in ascending address order.
    blobs = ([random16] + [value + b"\0" for value in strings.values()]
             + [arg + b"\0" for arg in argv] + [var + b"\0" for var in envp]
             + [execfn + b"\0", b"\0" * WORD])
    area = b"".join(blobs)
    addresses, cursor = [], top - len(area)
    for blob in blobs:
        addresses.append(cursor)
        cursor += len(blob)
    n_str, n_arg = len(strings), len(argv)
    arg_addrs = addresses[1 + n_str:1 + n_str + n_arg]
    env_addrs = addresses[1 + n_str + n_arg:-2]

    table = [n_arg, *arg_addrs, 0, *env_addrs, 0]
    for key, value in auxv:
        table += (int(key), value)
    table += (AT.RANDOM, addresses[0], AT.EXECFN, addresses[-2])
    for key, addr in zip(strings, addresses[1:1 + n_str]):
        table += (int(key), addr)
    table += (AT.NULL, 0)

    # argc must sit 16-byte aligned: pad between the table and the strings.
    strings_base = top - len(area)
    sp = (strings_base - len(table) * WORD) & ~15
    pad = strings_base - sp - len(table) * WORD
    data = struct.pack(f"<{len(table)}Q", *table) + b"\0" * pad + area
    return InitialStack(sp=sp, data=data)
