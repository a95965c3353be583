"""Make the one shared program break immovable for everyone.

All programs share the host's mm, hence one brk.  A one-page PROT_NONE guard
at the (page-aligned) current break makes the kernel refuse every attempt to
grow it, so each libc falls back to mmap-backed heaps at full speed.  The
break must not move down either: a program's sbrk(-n) would hand the host's
heap back to the kernel, and a trim by the host's malloc would reopen room
below the guard.

The kernel itself refuses a break below mm->start_brk, so pin_break() moves
start_brk and brk up to the guard with prctl(PR_SET_MM_MAP), which needs no
privilege (CONFIG_CHECKPOINT_RESTORE, on in distribution kernels).  Then
nothing per program is needed.  Where the kernel refuses that, the child
path installs a seccomp filter instead (seccomp_program): brk(addr) for
0 < addr < guard returns 0, which glibc's __brk reads as a failed call; it
costs every spawn a filter compile and needs PR_SET_NO_NEW_PRIVS.
"""
from __future__ import annotations

import ctypes
import logging
import os
import platform
import struct

from . import _mm
from ._elf import PAGE, page_up

_libc = ctypes.CDLL(None, use_errno=True)
M_TRIM_THRESHOLD = -1
SYS_BRK = {"x86_64": 12, "aarch64": 214}[platform.machine()]
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[platform.machine()]

log = logging.getLogger("sameprocess")
_guard: int | None = None
PR_SET_MM, PR_SET_MM_MAP = 35, 14
# struct prctl_mm_map: start_code, end_code, start_data, end_data,
# start_brk, brk, start_stack, arg_start, arg_end, env_start, env_end,
# auxv (pointer); auxv_size, exe_fd (u32).
PRCTL_MM_MAP = struct.Struct("<12QIi")


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


def _mm_fields() -> dict[str, int]:
    """The mm's layout fields, as /proc/self/stat shows them (proc(5))."""
    with open("/proc/self/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2:].split()
    number = lambda n: int(fields[n - 3])  # noqa: E731  (proc(5) numbers fields from 1)
    names = ("start_data", "end_data", "start_brk", "arg_start", "arg_end", "env_start", "env_end")
    return {"start_code": number(26), "end_code": number(27), "start_stack": number(28),
            **{name: number(45 + i) for i, name in enumerate(names)}}


def pin_break(guard: int) -> bool:
    """Set start_brk = brk = guard, so that the kernel refuses any lower
    break; False (with the reason logged) where the kernel does not allow it.

    Every other field is written back as it is; auxv_size 0 and exe_fd -1
    leave the saved auxv and /proc/self/exe alone.
    """
    m = _mm_fields()
    raw = ctypes.create_string_buffer(PRCTL_MM_MAP.pack(
        m["start_code"], m["end_code"], m["start_data"], m["end_data"], guard, guard,
        m["start_stack"], m["arg_start"], m["arg_end"], m["env_start"], m["env_end"], 0, 0, -1),
        PRCTL_MM_MAP.size)
    if _libc.prctl(PR_SET_MM, PR_SET_MM_MAP, raw, PRCTL_MM_MAP.size, 0) != 0:
        err = ctypes.get_errno()
        log.info("sameprocess: PR_SET_MM_MAP refused (%s): each program gets a seccomp brk filter",
                 os.strerror(err))
        return False
    return True


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
