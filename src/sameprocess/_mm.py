"""The host's memory primitives: mmap family via libc, safe peeks, /proc maps.

This is the only Python module that calls mmap/munmap/mprotect (the native
exec core, _native/exec.c, maps inside the reservations made through it).
Every call checks its result and raises OSError; nothing here can crash the
host on a bad address except writing through an address the caller vouched
for.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

_libc = ctypes.CDLL(None, use_errno=True)

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_NORESERVE, MAP_STACK, MAP_FIXED_NOREPLACE = 0x4000, 0x20000, 0x100000
MAP_FAILED = ctypes.c_void_p(-1).value

_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_mprotect = _libc.mprotect
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_mincore = _libc.mincore
_mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")




def _raise(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def mmap(addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    got = _mmap(addr or None, length, prot, flags, fd, offset)
    if got is None or got == MAP_FAILED:
        _raise(f"mmap({addr:#x}, {length:#x})")
    return got


def munmap(addr: int, length: int) -> None:
    if _munmap(addr, length) != 0:
        _raise(f"munmap({addr:#x}, {length:#x})")


def mprotect(addr: int, length: int, prot: int) -> None:
    if _mprotect(addr, length, prot) != 0:
        _raise(f"mprotect({addr:#x}, {length:#x})")


def write(addr: int, data: bytes) -> None:
    """Copy into memory the caller has just mapped writable."""
    ctypes.memmove(addr, data, len(data))


def zero(addr: int, length: int) -> None:
    ctypes.memset(addr, 0, length)


_mem = -1  # /proc/self/mem, opened on first use


def _forget_mem_after_fork() -> None:
    """The descriptor reads the mm that opened it: a forked child reopens its own."""
    global _mem
    if _mem >= 0:
        os.close(_mem)
    _mem = -1


os.register_at_fork(after_in_child=_forget_mem_after_fork)


def _mem_fd() -> int:
    global _mem
    if _mem < 0:
        _mem = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
    return _mem


def peek(addr: int, length: int) -> bytes | None:
    """Read memory without trusting the address: None where it is unmapped.

    A read of /proc/self/mem reports EIO instead of faulting, so structures
    written by programs (which may be corrupt) are read safely.
    """
    if length == 0:
        return b""
    if not 0 < addr < (1 << 63) or length < 0:
        return None
    try:
        data = os.pread(_mem_fd(), length, addr)
    except OSError:
        return None
    return data if len(data) == length else None


def resident(ranges: list[tuple[int, int]]) -> int:
    """Bytes of `ranges` in memory (mincore: a program's own pages, and the
    page cache behind its file mappings); a range no longer mapped counts 0."""
    total = 0
    for start, end in ranges:
        pages = (end - start + PAGE_SIZE - 1) // PAGE_SIZE
        vector = ctypes.create_string_buffer(pages)
        if _mincore(start, end - start, vector) == 0:
            total += (pages - vector.raw.count(0)) * PAGE_SIZE
    return total


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    path: str


def read_maps(pid: int | str = "self") -> list[Mapping]:
    out = []
    with open(f"/proc/{pid}/maps", "rb") as f:
        for line in f:
            fields = line.split(None, 5)
            lo, hi = fields[0].split(b"-")
            path = fields[5].strip().decode(errors="replace") if len(fields) > 5 else ""
            out.append(Mapping(int(lo, 16), int(hi, 16), fields[1].decode(), path))
    return out


def covering(start: int, length: int, maps: list[Mapping]) -> list[Mapping] | None:
    """The mappings that cover [start, start+length) without a hole, or None."""
    end = start + length
    cursor, used = start, []
    for m in maps:
        if m.end <= cursor:
            continue
        if m.start > cursor:
            return None
        used.append(m)
        cursor = m.end
        if cursor >= end:
            return used
    return None


def from_address(addr: int, length: int, readonly: bool) -> memoryview:
    """A memoryview onto raw memory, no copy (the caller checked the range)."""
    buf = (ctypes.c_char * length).from_address(addr)
    view = memoryview(buf).cast("B")
    return view.toreadonly() if readonly else view
