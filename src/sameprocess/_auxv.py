"""Auxiliary vector: the kernel's AT_* types and the host's own vector.

A program's auxv is the host's (read once from /proc/self/auxv, so every
entry the running kernel provides is passed on: hwcaps, vDSO, rseq sizes,
signal stack size...) with the per-exec entries replaced.
"""
from __future__ import annotations

import enum
import struct


class AT(enum.IntEnum):
    NULL = 0
    PHDR = 3
    PHENT = 4
    PHNUM = 5
    PAGESZ = 6
    BASE = 7
    FLAGS = 8
    ENTRY = 9
    UID = 11
    EUID = 12
    GID = 13
    EGID = 14
    PLATFORM = 15
    HWCAP = 16
    CLKTCK = 17
    SECURE = 23
    BASE_PLATFORM = 24
    RANDOM = 25
    HWCAP2 = 26
    EXECFN = 31
    SYSINFO_EHDR = 33
    MINSIGSTKSZ = 51


# Entries that describe one exec, not the machine: rebuilt per program.
PER_EXEC = {AT.PHDR, AT.PHENT, AT.PHNUM, AT.BASE, AT.FLAGS, AT.ENTRY, AT.UID, AT.EUID,
            AT.GID, AT.EGID, AT.SECURE, AT.RANDOM, AT.EXECFN, AT.PLATFORM, AT.BASE_PLATFORM, AT.NULL}
# Entries whose value points at a string on the host's stack.
STRING_TYPES = {AT.PLATFORM, AT.BASE_PLATFORM}

_PAIR = struct.Struct("<QQ")


def read_host_auxv() -> list[tuple[int, int]]:
    with open("/proc/self/auxv", "rb") as f:
        raw = f.read()
    out = []
    for off in range(0, len(raw) - _PAIR.size + 1, _PAIR.size):
        key, value = _PAIR.unpack_from(raw, off)
        if key == AT.NULL:
            break
        out.append((key, value))
    return out


def host_platform_strings() -> dict[int, bytes]:
    """AT_PLATFORM / AT_BASE_PLATFORM strings, read from the host's stack."""
    import ctypes
    out = {}
    for key, value in read_host_auxv():
        if key in STRING_TYPES and value:
            out[key] = ctypes.string_at(value)
    return out
