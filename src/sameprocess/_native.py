"""ctypes binding of the native core (_native/spawn.c + arch/<machine>.S).

The core is a plain shared library built with the package; ChildSpec
mirrors struct sp_child_spec in _native/spawn.h field for field.
"""
from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import os

from ._errors import SpaceError

NEW_SESSION, SET_PGID, NO_NEW_PRIVS = 0x1, 0x2, 0x4


class Step(enum.IntEnum):
    """What the child path was doing when it failed (enum sp_step)."""

    NONE = 0
    SIGNALS = 1
    SESSION = 2
    PGID = 3
    UMASK = 4
    CHDIR = 5
    STDIO = 6
    CLOSE_FDS = 7
    COMM = 8
    RLIMIT = 9
    NO_NEW_PRIVS = 10
    SECCOMP = 11
    SIGMASK = 12


class RLimit(ctypes.Structure):
    _fields_ = [("resource", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("soft", ctypes.c_uint64), ("hard", ctypes.c_uint64)]


class ChildSpec(ctypes.Structure):
    _fields_ = [
        ("entry", ctypes.c_uint64),
        ("initial_sp", ctypes.c_uint64),
        ("child_stack", ctypes.c_uint64),
        ("child_stack_size", ctypes.c_uint64),
        ("ignore_signals", ctypes.c_uint64),
        ("default_signals", ctypes.c_uint64),
        ("keep_fds", ctypes.POINTER(ctypes.c_int32)),
        ("cwd", ctypes.c_char_p),
        ("seccomp_prog", ctypes.c_void_p),
        ("rlimits", ctypes.POINTER(RLimit)),
        ("n_keep_fds", ctypes.c_uint32),
        ("n_rlimits", ctypes.c_uint32),
        ("stdio", ctypes.c_int32 * 3),
        ("errpipe", ctypes.c_int32),
        ("umask", ctypes.c_int32),
        ("pgid", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("comm", ctypes.c_char * 16),
    ]


class ChildError(ctypes.Structure):
    _fields_ = [("step", ctypes.c_int32), ("err", ctypes.c_int32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _library_path() -> str:
    here = os.path.dirname(__file__)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(here, "_native_core" + suffix)
        if os.path.exists(path):
            return path
    raise SpaceError(f"the native core (_native_core*.so) is not built in {here}: "
                     "install the package with pip, which compiles it")


_lib = ctypes.CDLL(_library_path())
_lib.sp_spawn.restype = ctypes.c_long
_lib.sp_spawn.argtypes = [ctypes.POINTER(ChildSpec), ctypes.POINTER(ctypes.c_int32)]


class SeccompProgram:
    """A classic-BPF program in memory, as seccomp(SECCOMP_SET_MODE_FILTER) takes it."""

    def __init__(self, code: bytes) -> None:
        self._code = ctypes.create_string_buffer(code, len(code))
        self._fprog = SockFprog(len(code) // 8, ctypes.addressof(self._code))
        self.address = ctypes.addressof(self._fprog)


def child_spec(*, entry: int, sp: int, child_stack: tuple[int, int], stdio: tuple[int, int, int], errpipe: int,
               keep_fds: list[int], cwd: bytes | None, umask: int, pgid: int, flags: int,
               ignore_signals: int, default_signals: int, rlimits, seccomp: SeccompProgram,
               comm: bytes) -> ChildSpec:
    """Fill a ChildSpec; the arrays it points to live as long as it does.

    child_stack is the [low, high) range the child path runs on before it
    jumps to `entry` with the stack pointer at `sp`.
    """
    spec = ChildSpec(entry=entry, initial_sp=sp, child_stack=child_stack[0],
                     child_stack_size=child_stack[1] - child_stack[0], ignore_signals=ignore_signals,
                     default_signals=default_signals, cwd=cwd, seccomp_prog=seccomp.address,
                     errpipe=errpipe, umask=umask, pgid=pgid, flags=flags, comm=comm[:15])
    spec.keep = (ctypes.c_int32 * len(keep_fds))(*keep_fds)
    spec.keep_fds, spec.n_keep_fds = ctypes.cast(spec.keep, ctypes.POINTER(ctypes.c_int32)), len(keep_fds)
    spec.limits = (RLimit * max(len(rlimits), 1))(*[(r, 0, soft, hard) for r, soft, hard in rlimits])
    spec.rlimits, spec.n_rlimits = ctypes.cast(spec.limits, ctypes.POINTER(RLimit)), len(rlimits)
    spec.stdio[:] = stdio
    return spec


def spawn(spec: ChildSpec) -> tuple[int, int]:
    """clone3 into this address space; returns (pid, pidfd) or raises OSError."""
    pidfd = ctypes.c_int32(-1)
    pid = _lib.sp_spawn(ctypes.byref(spec), ctypes.byref(pidfd))
    if pid < 0:
        raise OSError(-pid, f"clone3: {os.strerror(-pid)}")
    return pid, pidfd.value
