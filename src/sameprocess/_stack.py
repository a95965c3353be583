"""The initial stack image a program starts with, built as one bytes object.

Layout, from the top of the stack down, as the kernel's create_elf_tables
writes it: a NUL word, the execfn string, environment and argument strings,
platform strings and the 16 AT_RANDOM bytes; then, 16-byte aligned at the
bottom, argc, argv pointers, NULL, envp pointers, NULL, auxv pairs, AT_NULL.
The program's stack pointer points at argc.

The image depends on where the stack is only through its pointers, so it
is built once per argument list as a template for a stack whose top is 0
(each pointer then holds its offset below the top) with the list of words
that hold pointers; a spawn patches in its per-exec auxv values and random
bytes, and the native call adds the real top to those words as it writes
the image (sp_exec).
"""
from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass, field
from itertools import accumulate, chain, repeat
from operator import add

from ._auxv import AT

WORD = 8


@dataclass(frozen=True)
class InitialStack:
    """A ready image: write `data` at `sp` and enter with the stack pointer at `sp`."""

    sp: int
    data: bytes


@dataclass(frozen=True)
class Template:
    """The image for a stack whose top is 0."""

    sp: int                    # argc's offset from the top (negative, 16-byte aligned)
    data: bytes
    relocs: tuple[int, ...]    # indices of the 8-byte words that hold pointers
    auxv_at: int               # byte offset of auxv[0] (its type word)
    random_at: int             # byte offset of AT_RANDOM's 16 bytes
    native_relocs: ctypes.Array = field(repr=False, compare=False)  # relocs as uint32_t[]

    def at(self, top: int, random16: bytes) -> InitialStack:
        """The image for a stack ending at `top`, built here (the spawn has
        sp_exec add the top instead)."""
        data = bytearray(self.data)
        data[self.random_at:self.random_at + 16] = random16
        for word in self.relocs:
            _WORD.pack_into(data, 8 * word, (_WORD.unpack_from(data, 8 * word)[0] + top) & _U64)
        return InitialStack(sp=top + self.sp, data=bytes(data))


_WORD = struct.Struct("<Q")
_U64 = (1 << 64) - 1


def build(top: int, argv: list[bytes], envp: list[bytes], execfn: bytes,
          auxv: list[tuple[int, int]], strings: dict[int, bytes], random16: bytes) -> InitialStack:
    """Lay out the image so that it ends exactly at `top`.

    `auxv` holds the numeric entries; `strings` maps AT_* types whose value
    is a string (AT_PLATFORM...) to its bytes; AT_RANDOM points at
    `random16` and AT_EXECFN at `execfn`.  Pure: the result is returned,
    not written.
    """
    return template(argv, envp, execfn, auxv, strings).at(top, random16)


_templates: dict[tuple, Template] = {}


def template(argv: list[bytes], envp: list[bytes], execfn: bytes,
             auxv: list[tuple[int, int]], strings: dict[int, bytes]) -> Template:
    """The image for top 0 (build()'s arguments but the random bytes, left
    zero); kept for the last few argument lists and auxv contents."""
    key = (tuple(argv), tuple(envp), execfn, tuple(auxv), tuple(strings.items()))
    made = _templates.get(key)
    if made is None:
        made = _make_template(argv, envp, execfn, auxv, strings)
        if len(_templates) >= 32:
            _templates.clear()
        _templates[key] = made
    return made


def _make_template(argv, envp, execfn, auxv, strings) -> Template:
    tail, offsets = _string_area(argv, envp, execfn, strings)
    strings_base = -RANDOM_LEN - len(tail)
    addresses = [strings_base + RANDOM_LEN + offset for offset in offsets]
    n_str, n_arg, n_env = len(strings), len(argv), len(envp)
    arg_addrs = addresses[n_str:n_str + n_arg]
    env_addrs = addresses[n_str + n_arg:-1]

    table = [n_arg, *arg_addrs, 0, *env_addrs, 0, *chain.from_iterable(auxv),
             AT.RANDOM, strings_base, AT.EXECFN, addresses[-1],
             *chain.from_iterable(zip(strings, addresses)), AT.NULL, 0]
    auxv_word = n_arg + n_env + 3
    tail_word = auxv_word + 2 * len(auxv)   # AT_RANDOM's pair; then EXECFN and the strings
    relocs = (*range(1, 1 + n_arg), *range(2 + n_arg, 2 + n_arg + n_env),
              *range(tail_word + 1, tail_word + 2 * (2 + n_str), 2))

    # argc must sit 16-byte aligned: pad between the table and the strings.
    sp = (strings_base - len(table) * WORD) & ~15
    pad = strings_base - sp - len(table) * WORD
    data = b"".join((struct.pack(f"<{len(table)}Q", *(v & _U64 for v in table)),
                     b"\0" * (pad + RANDOM_LEN), tail))
    native = (ctypes.c_uint32 * max(len(relocs), 1))(*relocs)
    return Template(sp, data, relocs, auxv_word * WORD, len(data) + strings_base, native)


RANDOM_LEN = 16


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
