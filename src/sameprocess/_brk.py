"""Make the one shared program break immovable for everyone.

All programs share the host's mm, hence one brk.  A one-page PROT_NONE guard
at the (page-aligned) current break makes the kernel refuse every attempt to
grow it, so each libc falls back to mmap-backed heaps at full speed.  Two
holes are closed as well: the host's malloc must never trim its heap (that
would reopen room below the guard), and a program must never shrink the
break into the host's heap (a seccomp filter in the child path refuses
brk(addr) for 0 < addr < guard, returning 0, which glibc's __brk reads as a
failed call and recovers from with brk(0)).
"""
from __future__ import annotations

import ctypes
import platform
import struct

from . import _mm
from ._elf import PAGE, page_up

_libc = ctypes.CDLL(None, use_errno=True)
M_TRIM_THRESHOLD = -1
SYS_BRK = {"x86_64": 12, "aarch64": 214}[platform.machine()]
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[platform.machine()]

_guard: int | None = None


def install_guard() -> int:
    """Place the guard once per process; returns its address."""
    global _guard
    if _guard is not None:
        return _guard
    # Never trim: a trimmed heap would leave a gap below the guard that a
    # program's libc could grow into and corrupt the host's heap.
    if _libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(0x7FFFFFFF)) != 1:
        raise OSError("mallopt(M_TRIM_THRESHOLD) failed")
    _libc.syscall.restype = ctypes.c_long
    current = _libc.syscall(SYS_BRK, ctypes.c_long(0))
    addr = page_up(current)
    _mm.mmap(addr, PAGE, _mm.PROT_NONE,
             _mm.MAP_PRIVATE | _mm.MAP_ANONYMOUS | _mm.MAP_FIXED_NOREPLACE)
    _guard = addr
    return addr


# struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }
_INSN = struct.Struct("<HBBI")
_LD_W_ABS, _JEQ_K, _JGT_K, _JGE_K, _RET_K = 0x20, 0x15, 0x25, 0x35, 0x06
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_NR, _ARCH, _ARG0_LO, _ARG0_HI = 0, 4, 16, 20


def seccomp_program(guard: int) -> bytes:
    """BPF: refuse brk(a) for 0 < a < guard (returns 0), allow everything else."""
    hi, lo = guard >> 32, guard & 0xFFFFFFFF
    allow, deny = 13, 12  # instruction indexes, see the comments
    code = [
        (_LD_W_ABS, 0, 0, _ARCH),                  # 0
        (_JEQ_K, 0, allow - 2, AUDIT_ARCH),        # 1: other ABI: allow
        (_LD_W_ABS, 0, 0, _NR),                    # 2
        (_JEQ_K, 0, allow - 4, SYS_BRK),           # 3: not brk: allow
        (_LD_W_ABS, 0, 0, _ARG0_HI),               # 4
        (_JGT_K, allow - 6, 0, hi),                # 5: a above the guard: allow
        (_JEQ_K, 0, 2, hi),                        # 6: high word below: check a != 0
        (_LD_W_ABS, 0, 0, _ARG0_LO),               # 7
        (_JGE_K, allow - 9, deny - 9, lo),         # 8: a >= guard: allow, else deny
        (_JEQ_K, 0, deny - 10, 0),                 # 9: high word nonzero: deny
        (_LD_W_ABS, 0, 0, _ARG0_LO),               # 10
        (_JEQ_K, allow - 12, deny - 12, 0),        # 11: brk(0) queries: allow
        (_RET_K, 0, 0, _RET_ERRNO | 0),            # 12: deny: the call returns 0
        (_RET_K, 0, 0, _RET_ALLOW),                # 13: allow
    ]
    return b"".join(_INSN.pack(*insn) for insn in code)
