"""ctypes binding of the native core (_native/*.c + arch/<machine>.S).

The core is a plain shared library built with the package; CHILD_SPEC
mirrors struct sp_child_spec in _native/spawn.h, EXEC_PLAN and the structs
it points to those of _native/exec.h, field for field (the C files assert
their sizes and offsets).
"""
from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import os
import struct

from ._errors import SpaceError

NEW_SESSION, SET_PGID, NO_NEW_PRIVS, SET_NICE = 0x1, 0x2, 0x4, 0x8


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
    AFFINITY = 13
    LEDGER = 14
    NICE = 15


# struct sp_child_spec: entry, initial_sp, child_stack, child_stack_size,
# ignore_signals, default_signals (u64); keep_fds, cwd, seccomp_prog,
# rlimits, failure (pointers); n_keep_fds, n_rlimits (u32); stdio[3],
# report_fd, umask, pgid (i32); flags (u32); comm[16]; host_cpu (i32,
# written by sp_spawn); keeper_fd, keeper_pid (i32); ledger_prog (pointer);
# ledger_id (u64); cpus (pointer); cpus_size (u32), nice (i32).
CHILD_SPEC = struct.Struct("<6Q5Q2I3i3iI16siiiQQQIi")
FAILURE_AT = CHILD_SPEC.size  # the struct sp_child_error, right after the spec
RLIMIT = struct.Struct("<I4xQQ")  # struct sp_rlimit: resource, pad, soft, hard
_U64 = (1 << 64) - 1


class ExecStep(enum.IntEnum):
    """What sp_exec was doing when it failed (enum sp_exec_step)."""

    OK = 0
    MAP_FILE = 1
    PROTECT = 2
    MAP_ANON = 3
    MAP_STACK = 4
    CLONE = 5
    WAIT_REPORT = 6


# struct sp_exec_plan: images (pointer); n_images, flags (u32); stack_low,
# stack_size (u64); stack_prot (i32), n_stack_relocs (u32); stack_image
# (pointer), stack_image_len, stack_image_at (u64); stack_relocs (pointer),
# stack_top (u64); child (pointer); then the result,
# struct sp_exec_result: step, err (i32); addr, len (u64); pid, pidfd,
# reported, pad (i32).  struct sp_image: bias, steps (pointer); n_steps
# (u32), fd (i32).  struct sp_load_step: 7 u64, prot, pad (i32).
EXEC_PLAN = struct.Struct("<QIIQQiIQQQQQQ")
EXEC_RESULT = struct.Struct("<iiQQiiii")
IMAGE = struct.Struct("<QQIi")
LOAD_STEP = struct.Struct("<7Qii")
EXEC_WAIT = 0x1


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
_sp_exec = _lib.sp_exec
_sp_exec.restype = ctypes.c_int
_sp_exec.argtypes = [ctypes.c_void_p]
_sp_keeper_start = _lib.sp_keeper_start
_sp_keeper_start.restype = ctypes.c_long
_sp_keeper_start.argtypes = [ctypes.c_void_p, ctypes.c_void_p]


class SeccompProgram:
    """A classic-BPF program in memory, as seccomp(SECCOMP_SET_MODE_FILTER) takes it."""

    def __init__(self, code: bytes) -> None:
        self._code = ctypes.create_string_buffer(code, len(code))
        self._fprog = SockFprog(len(code) // 8, ctypes.addressof(self._code))
        self.address = ctypes.addressof(self._fprog)


def child_spec(*, entry: int, sp: int, child_stack: tuple[int, int], stdio: tuple[int, int, int], report_fd: int,
               keep_fds: list[int], cwd: bytes | None, umask: int, pgid: int, flags: int,
               ignore_signals: int, default_signals: int, rlimits, seccomp: SeccompProgram | None,
               comm: bytes, ledger: SeccompProgram | None = None, ledger_id: int = 0,
               keeper_fd: int = -1, keeper_pid: int = 0, cpus: bytes | None = None,
               nice: int = 0) -> ctypes.Array:
    """One buffer: the spec, the failure record, then the arrays and the
    string the spec points to (read the record with child_failure).

    child_stack is the [low, high) range the child path runs on before it
    jumps to `entry` with the stack pointer at `sp`.  The buffer must stay
    alive until the child path is done with it (report_fd written, or the
    child exited).
    """
    n_keep, n_limits = len(keep_fds), len(rlimits)
    fds_at = FAILURE_AT + ctypes.sizeof(ChildError)
    limits_at = fds_at + ((4 * n_keep + 7) & ~7)
    cpus_at = limits_at + RLIMIT.size * n_limits
    cwd_at = cpus_at + (len(cpus) if cpus is not None else 0)
    buf = ctypes.create_string_buffer(cwd_at + (len(cwd) + 1 if cwd is not None else 0))
    base = ctypes.addressof(buf)
    CHILD_SPEC.pack_into(
        buf, 0, entry, sp, child_stack[0], child_stack[1] - child_stack[0], ignore_signals,
        default_signals, base + fds_at if n_keep else 0, base + cwd_at if cwd is not None else 0,
        seccomp.address if seccomp is not None else 0, base + limits_at if n_limits else 0, base + FAILURE_AT, n_keep, n_limits,
        *stdio, report_fd, umask, pgid, flags, comm[:15], -1, keeper_fd, keeper_pid,
        ledger.address if ledger is not None else 0, ledger_id,
        base + cpus_at if cpus is not None else 0, len(cpus) if cpus is not None else 0, nice)
    if cpus is not None:
        buf[cpus_at:cpus_at + len(cpus)] = cpus
    struct.pack_into(f"<{n_keep}i", buf, fds_at, *keep_fds)
    for i, (resource, soft, hard) in enumerate(rlimits):
        # resource's RLIM_INFINITY is -1; the kernel's is all ones (u64)
        RLIMIT.pack_into(buf, limits_at + RLIMIT.size * i, resource, soft & _U64, hard & _U64)
    if cwd is not None:
        buf[cwd_at:cwd_at + len(cwd)] = cwd  # the buffer is zeroed: NUL-terminated
    return buf


def child_failure(spec: ctypes.Array) -> ChildError:
    """What the child path stored on failure (step 0: it did not fail)."""
    return ChildError.from_buffer_copy(spec, FAILURE_AT)


def load_steps(steps) -> ctypes.Array:
    """An image's PT_LOAD steps (_loader.Layout.steps) as struct
    sp_load_step[], packed once per parsed image."""
    buf = ctypes.create_string_buffer(LOAD_STEP.size * max(len(steps), 1))
    for i, (start, file_len, prot, offset, file_end, zero_len, anon_start, anon_len) in enumerate(steps):
        LOAD_STEP.pack_into(buf, LOAD_STEP.size * i, start, file_len, offset, file_end, zero_len,
                            anon_start, anon_len, prot, 0)
    return buf


class ExecPlan:
    """One struct sp_exec_plan and the image table it points to.

    images: (bias, packed load steps, their count, fd) per image to map;
    stack: (low, size, prot) of the usable stack, or None; stack_image and
    its address; relocs: (uint32_t[] of the image's pointer words, their
    count, the top to add to them); child: a child_spec buffer, or None to
    map only.  The buffers passed in must outlive execute().
    """

    def __init__(self, images, stack=None, stack_image: bytes = b"", stack_image_at: int = 0,
                 relocs=None, child: ctypes.Array | None = None, wait: bool = True) -> None:
        self._keep = (images, stack_image, relocs, child)
        at = EXEC_PLAN.size + EXEC_RESULT.size
        self._buf = buf = ctypes.create_string_buffer(at + IMAGE.size * len(images))
        base = ctypes.addressof(buf)
        for i, (bias, steps, n_steps, fd) in enumerate(images):
            IMAGE.pack_into(buf, at + IMAGE.size * i, bias, ctypes.addressof(steps), n_steps, fd)
        low, size, prot = stack or (0, 0, 0)
        words, n_words, top = relocs or (None, 0, 0)
        EXEC_PLAN.pack_into(buf, 0, base + at if images else 0, len(images), EXEC_WAIT if wait else 0,
                            low, size, prot, n_words, _address_of(stack_image), len(stack_image),
                            stack_image_at, ctypes.addressof(words) if n_words else 0, top,
                            ctypes.addressof(child) if child is not None else 0)

    def execute(self) -> bool:
        """Run the plan without the GIL: True, or False with result() saying what failed."""
        return _sp_exec(ctypes.addressof(self._buf)) == 0

    def result(self) -> tuple[int, int, int, int, int, int, int]:
        """(step, errno, addr, len, pid, pidfd, reported): pidfd >= 0 once
        cloned; reported 1 (entry reached), 0 (exited first), -1 (not
        waited for: a signal for the host ended the wait)."""
        return EXEC_RESULT.unpack_from(self._buf, EXEC_PLAN.size)[:7]


def _address_of(data: bytes) -> int:
    """The address of a bytes object's contents (kept alive by the caller)."""
    if not data:
        return 0
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value


def start_keeper(keeper: int) -> tuple[int, int]:
    """Start the keeper task on the struct sp_keeper at `keeper`; (pid, pidfd)."""
    pidfd = ctypes.c_int32(-1)
    pid = _sp_keeper_start(keeper, ctypes.addressof(pidfd))
    if pid < 0:
        raise OSError(-pid, f"clone3 (keeper): {os.strerror(-pid)}")
    return pid, pidfd.value
