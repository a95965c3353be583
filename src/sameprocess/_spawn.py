"""Start one program in this address space: the whole exec, host side.

The phases, in order (docs/architecture.md draws them):
  1. resolve   the file to run (PATH, #! scripts)                  _resolve
  2. identify  and validate the executable and its interpreter     _elf
  3. plan      how it starts: glibc's ld.so in "run a program" mode
               (ld.so maps the executable itself, so $ORIGIN and the
               link_map name are right) or, for static programs and other
               interpreters, mapped here like the kernel would; reserve
               each image's span and the stack's                    _loader
  4. stack     argv, envp and auxv built as one image               _stack
     enrol     the reservations become the program's in the ledger  _ledger
  5. execute   one native call, without the GIL: overlay the images'
               segments, map the stack, write its image, clone into the
               child path (fds, signals, cwd, session, then the jump to
               the entry), wait for the child's report             _native
  6. confirm   the report seen means the child reached the entry; its
               pidfd readable with a failure record means a step failed:
               reap it, unmap, raise.
Any failure unmaps exactly what was reserved (Regions) and leaves no process.
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import os
import resource
import select
import signal
import stat
import struct
import sys
import warnings
from dataclasses import dataclass
from typing import Callable

from . import _elf, _ledger, _loader, _native, _stack
from ._auxv import AT, PER_EXEC, host_platform_strings, read_host_auxv
from ._brk import install_guard, pin_break, seccomp_program
from ._caps import CAP_SYS_ADMIN, has_capability
from ._elf import ElfImage, EType
from ._errors import ExecError, SetuidIgnoredWarning
from ._resolve import Target, resolve

MAX_ARG_STRLEN = 32 * 4096
ARG_MAX = 32 * 4096
STK_LIM = 8 << 20
CHILD_PATH_GAP = 256   # bytes left between the stack image and the child path's stack
log = logging.getLogger("sameprocess")
# Python ignores these itself; subprocess's restore_signals=True undoes that.
PYTHON_IGNORED = frozenset({13, 25})  # SIGPIPE, SIGXFSZ


@dataclass(slots=True)
class SpawnSpec:
    """Everything Popen decided, in the form the loader needs."""

    file: bytes                    # name to look up (args[0] or executable)
    argv: list[bytes]
    envp: list[bytes]
    env_path: Callable[[], list[bytes]]   # PATH directories, computed only when needed
    cwd: bytes | None = None
    stdio: tuple[int, int, int] = (-1, -1, -1)
    pass_fds: tuple[int, ...] = ()
    new_session: bool = False
    process_group: int = -1
    umask: int = -1
    ignore_signals: frozenset[int] = frozenset()    # start with SIG_IGN
    default_signals: frozenset[int] = frozenset()   # start with SIG_DFL
    rlimits: tuple[tuple[int, int, int], ...] = ()
    cpus: bytes | None = None   # CPU affinity mask (sched_setaffinity's bytes); None: the host's
    nice: int | None = None     # None: the host's
    reclaim: bool = True    # record its memory in the ledger (when the space has one)


@dataclass
class Launch:
    """A started program and what the loader must undo after it exits."""

    pid: int
    pidfd: int
    regions: _loader.Regions
    r_debug: int | None       # its ld.so's _r_debug, None for static programs
    main: ElfImage
    target: Target
    ledger: _ledger.Enrolment | None = None   # None: not recorded (regions are ours)
    loader_ranges: tuple[tuple[int, int], ...] = ()  # what the loader mapped, whoever unmaps it


class HostFacts:
    """What every spawn needs from the host, computed once per space."""

    def __init__(self) -> None:
        self.guard = install_guard()
        self.auxv = [(k, v) for k, v in read_host_auxv() if k not in PER_EXEC]
        self.strings = host_platform_strings()
        # The break pinned by the kernel needs nothing per program; else
        # each program gets the seccomp brk filter (_brk explains both).
        self.seccomp = (None if pin_break(self.guard)
                        else _native.SeccompProgram(seccomp_program(self.guard)))
        self.keeper = _start_keeper()
        # Without CAP_SYS_ADMIN the kernel accepts a filter only after
        # PR_SET_NO_NEW_PRIVS (so setuid binaries exec'd by such programs run
        # without privilege gain; see docs).
        self.cap_sys_admin = has_capability(CAP_SYS_ADMIN)


def _start_keeper() -> _ledger.Keeper | None:
    """The keeper task, or None (logged once) where the kernel lacks what it needs."""
    reason = _ledger.unsupported_reason()
    if reason is not None:
        log.warning("sameprocess: %s: the memory programs map is not reclaimed when they exit "
                    "(only their loaded images are)", reason)
        return None
    return _ledger.Keeper()


def check_arg_sizes(argv: list[bytes], envp: list[bytes], soft: int | None = None) -> None:
    """Refuse with E2BIG what the kernel's execve would refuse (soft: RLIMIT_STACK's)."""
    if soft is None:
        soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    limit = STK_LIM // 4 * 3
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft // 4)
    limit = max(limit, ARG_MAX) - (max(len(argv), 1) + len(envp)) * 8
    lengths = [*map(len, argv), *map(len, envp)]
    longest = max(lengths) if lengths else 0
    if longest + 1 > MAX_ARG_STRLEN:
        raise OSError(errno.E2BIG, f"argument or environment string of {longest} bytes is too long")
    total = sum(lengths) + len(lengths)
    if limit <= 0 or total > limit:
        raise OSError(errno.E2BIG, os.strerror(errno.E2BIG) + f" ({total} bytes of arguments and environment)")


def ignored_setid(st: os.stat_result, path: str) -> str:
    """The set-ID bits of the file (st: its stat) that execve would have
    honoured ('' if none).

    As the kernel (fs/exec.c): S_ISUID always, S_ISGID only with group
    execute, neither on a nosuid mount.  A bit naming the caller's own uid
    or gid changes nothing.  Programs of a space always keep the host's
    credentials, so the caller is warned about what it did not get.
    """
    bits = []
    if (st.st_mode & stat.S_ISUID) and st.st_uid != os.geteuid():
        bits.append("set-user-ID")
    setgid = stat.S_ISGID | stat.S_IXGRP
    if (st.st_mode & setgid) == setgid and st.st_gid != os.getegid():
        bits.append("set-group-ID")
    if not bits or (os.statvfs(path).f_flag & os.ST_NOSUID):
        return ""
    return " and ".join(bits)


def _warn_setid(path: str, bits: str) -> None:
    """Warn before anything is mapped, so that a warning filter of "error" stops the spawn."""
    if bits:
        warnings.warn(SetuidIgnoredWarning(f"{path} is {bits}; it runs with your rights", path),
                      stacklevel=_caller_level())


def _caller_level() -> int:
    """The stacklevel of the first frame outside this package and subprocess."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in (
            "sameprocess", "subprocess"):
        frame, level = frame.f_back, level + 1
    return level


def stack_size(soft: int | None = None) -> int:
    if soft is None:
        soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    if soft == resource.RLIM_INFINITY or soft > (1 << 30):
        return 8 << 20
    return max(_elf.page_up(soft), 128 << 10)


@dataclass
class Plan:
    entry: int
    auxv: list[tuple[int, int]]
    argv: list[bytes]
    r_debug: int | None
    stack_base: int | None   # where the stack's reservation starts, None: map its own
    images: list[tuple] = ()  # what sp_exec overlays (_loader.native_image), in order

# Where sp_exec waits for the child's report.  False: it returns once the
# child is cloned and Python waits, as after a signal for the host ends the
# native wait (tests take that path on purpose).
WAIT_IN_NATIVE = True


def _stack_below(loaded: _loader.LoadedImage, below: int) -> int | None:
    """The reservation made room for the stack under this position-independent image."""
    if loaded.image.etype == EType.EXEC:
        return None
    return loaded.bias + loaded.image.span_start - below


def _is_glibc_ldso(interp: ElfImage) -> bool:
    syms = interp.dynamic_symbols
    return "_dl_argv" in syms and "_r_debug" in syms


def _open_interp(exe: ElfImage) -> tuple[int, ElfImage]:
    try:
        fd, interp = _elf.open_image(exe.interp)
    except ExecError as e:
        raise ExecError(e.errno, f"interpreter {exe.interp}: {e.strerror}", exe.path) from None
    if interp.interp is not None or interp.etype != EType.DYN:
        os.close(fd)
        raise _elf.noexec(exe.path, f"interpreter {exe.interp} is not a position-independent "
                          "program without an interpreter of its own")
    return fd, interp


class ExeFile:
    """The executable's descriptor, opened only by a mode that maps the
    executable here (glibc's ld.so opens it itself)."""

    def __init__(self, target: Target, image: ElfImage | None) -> None:
        self.target, self.fd, self.image = target, -1, image

    def open(self) -> tuple[int, ElfImage]:
        """The descriptor and the parse of the bytes behind it (the file may
        have changed since it was found: the image is then a new one)."""
        if self.fd < 0:
            self.fd, self.image = _elf.open_image(self.target.path)
        return self.fd, self.image

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def plan_and_reserve(exe: ElfImage, exe_file: ExeFile, target: Target, regions: _loader.Regions,
                     below: int, fds: list[int]) -> Plan:
    """Phase 3: decide how the program starts and reserve what that maps.

    The stack's reservation (`below` bytes) is made together with the image
    mapped here, so that both are one region to unmap.  The descriptors of
    the images to map are appended to `fds` (the caller closes them once
    they are mapped).
    """
    if exe.interp is None:
        exe_fd, opened = exe_file.open()
        if opened is not exe:  # changed since it was found: plan for what was opened
            return plan_and_reserve(opened, exe_file, target, regions, below, fds)
        image = _reserve(exe, regions, 0 if exe.etype == EType.EXEC else below)
        return Plan(image.entry, _image_auxv(image, 0, image.entry), target.argv, None,
                    _stack_below(image, below), [_loader.native_image(image, exe_fd)])
    interp_fd, interp = _open_interp(exe)
    fds.append(interp_fd)
    if _is_glibc_ldso(interp):
        if exe.etype == EType.EXEC:
            _loader.reserve(exe, regions)  # ld.so maps over it with MAP_FIXED
        ldso = _reserve(interp, regions, below)
        # "ld.so [--argv0 NAME] PROGRAM ARGS": ld.so maps the program and
        # rewrites AT_PHDR/PHNUM/ENTRY/EXECFN to describe it.  It takes
        # $ORIGIN from PROGRAM, so PROGRAM is the resolved file, as the
        # kernel's /proc/self/exe gives it to ld.so natively.
        program = os.path.realpath(target.path).encode()
        argv = [interp.path.encode(), b"--argv0", target.argv[0], program] + target.argv[1:]
        return Plan(ldso.entry, _image_auxv(ldso, ldso.bias, ldso.entry), argv,
                    ldso.bias + interp.dynamic_symbols["_r_debug"], _stack_below(ldso, below),
                    [_loader.native_image(ldso, interp_fd)])
    exe_fd, opened = exe_file.open()
    if opened is not exe:
        return plan_and_reserve(opened, exe_file, target, regions, below, fds)
    main = _reserve(exe, regions)
    ldso = _reserve(interp, regions, below)
    r_debug = interp.dynamic_symbols.get("_r_debug")
    return Plan(ldso.entry, _image_auxv(main, ldso.bias, main.entry), target.argv,
                ldso.bias + r_debug if r_debug else None, _stack_below(ldso, below),
                [_loader.native_image(main, exe_fd), _loader.native_image(ldso, interp_fd)])


def _reserve(image: ElfImage, regions: _loader.Regions, below: int = 0) -> _loader.LoadedImage:
    return _loader.LoadedImage(image, _loader.reserve(image, regions, below))


_AT_PHDR, _AT_PHENT, _AT_PHNUM, _AT_BASE, _AT_FLAGS, _AT_ENTRY = (
    int(AT.PHDR), int(AT.PHENT), int(AT.PHNUM), int(AT.BASE), int(AT.FLAGS), int(AT.ENTRY))
_AT_UID, _AT_EUID, _AT_GID, _AT_EGID, _AT_SECURE = (
    int(AT.UID), int(AT.EUID), int(AT.GID), int(AT.EGID), int(AT.SECURE))


def _image_auxv(image: _loader.LoadedImage, base: int, entry: int) -> list[tuple[int, int]]:
    return [(_AT_PHDR, image.phdr), (_AT_PHENT, _elf.PHDR.size), (_AT_PHNUM, image.image.phnum),
            (_AT_BASE, base), (_AT_FLAGS, 0), (_AT_ENTRY, entry)]


@dataclass
class StackImage:
    sp: int          # where argc goes
    data: bytes      # the image for a top of 0, this exec's auxv and random bytes in
    relocs: tuple    # (uint32_t[] of its pointer words, their count, the top to add)


_PLAN_AUXV = [(_AT_PHDR, 0), (_AT_PHENT, 0), (_AT_PHNUM, 0), (_AT_BASE, 0), (_AT_FLAGS, 0), (_AT_ENTRY, 0)]
_AUXV_PAIRS = struct.Struct(f"<{2 * len(_PLAN_AUXV)}Q")


def _stack_image(host: HostFacts, plan: Plan, envp: list[bytes], execfn: bytes,
                 extra_auxv, top: int) -> StackImage:
    """Phase 4: the template for this argument list, with the entries that
    change per exec (the images' addresses, AT_RANDOM's bytes) written in;
    sp_exec moves its pointers to `top`."""
    auxv = host.auxv + _PLAN_AUXV + _creds_auxv() + list(extra_auxv)
    made = _stack.template(plan.argv, envp, execfn, auxv, host.strings)
    data = bytearray(made.data)
    _AUXV_PAIRS.pack_into(data, made.auxv_at + 16 * len(host.auxv), *itertools.chain(*plan.auxv))
    data[made.random_at:made.random_at + 16] = os.urandom(16)
    return StackImage(top + made.sp, bytes(data), (made.native_relocs, len(made.relocs), top))


def _creds_auxv() -> list[tuple[int, int]]:
    return [(_AT_UID, os.getuid()), (_AT_EUID, os.geteuid()), (_AT_GID, os.getgid()),
            (_AT_EGID, os.getegid()), (_AT_SECURE, 0)]


def _move_above_stdio(fd: int, target: int, moved: list[int]) -> int:
    """A source fd below 3 that is not its own target would be clobbered by dup3."""
    if fd < 0 or fd == target or fd > 2:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    moved.append(new)
    return new


def spawn(host: HostFacts, spec: SpawnSpec, extra_auxv: list[tuple[int, int]] = ()) -> Launch:
    target = resolve(spec.file, spec.argv, spec.cwd, spec.env_path)
    exe_file = ExeFile(target, target.image)
    if exe_file.image is None:
        exe_file.open()  # first sight of this file: parse and validate it now
    exe = exe_file.image
    regions = _loader.Regions()
    ledger = None
    fds: list[int] = []
    try:
        stack_limit = resource.getrlimit(resource.RLIMIT_STACK)[0]
        size = stack_size(stack_limit)
        _warn_setid(target.path, ignored_setid(target.stat, target.path))
        plan = plan_and_reserve(exe, exe_file, target, regions, _loader.stack_reservation(size), fds)
        exe = exe_file.image  # the parse the plan was made for
        check_arg_sizes(plan.argv, spec.envp, stack_limit)
        stack = _loader.reserve_stack(size, regions, plan.stack_base)
        image = _stack_image(host, plan, spec.envp, target.execfn, extra_auxv, stack.top)
        if len(image.data) + CHILD_PATH_GAP + 16384 > stack.size:
            raise OSError(errno.E2BIG, "arguments and environment do not fit the stack")
        loader_ranges = tuple(regions.ranges)
        if host.keeper is not None and spec.reclaim:
            ledger = host.keeper.enrol(regions.ranges, _address_limit(spec))
            regions.ranges = []  # the keeper's now: ledger.release() unmaps them
        pid, pidfd = _execute(host, spec, target, plan, (stack, exe.stack_exec, image), ledger)
    except BaseException:
        if ledger is not None:
            ledger.release()
        regions.unmap()
        raise
    finally:
        exe_file.close()
        for fd in fds:
            os.close(fd)
    return Launch(pid, pidfd, regions, plan.r_debug, exe, target, ledger, loader_ranges)


def _execute(host: HostFacts, spec: SpawnSpec, target: Target, plan: Plan, stack: tuple,
             ledger: _ledger.Enrolment | None) -> tuple[int, int]:
    """Phases 5 and 6: the one native call (map, stack, clone, wait), then
    what its result means."""
    area, executable, image = stack
    moved: list[int] = []
    report = os.eventfd(0, os.EFD_CLOEXEC)
    run = None
    try:
        if report < 3:  # the host closed its stdio: keep the eventfd clear of 0-2
            low, report = report, fcntl.fcntl(report, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(low)
        child = _native.child_spec(
            entry=plan.entry, sp=image.sp, child_stack=(area.low, (image.sp - CHILD_PATH_GAP) & ~15),
            stdio=tuple(_move_above_stdio(fd, i, moved) for i, fd in enumerate(spec.stdio)),
            report_fd=report, keep_fds=_keep_fds(spec, report, ledger, host), cwd=spec.cwd,
            umask=spec.umask, pgid=max(spec.process_group, 0), flags=_flags(host, spec, ledger),
            ignore_signals=_signal_mask(spec.ignore_signals),
            default_signals=_signal_mask(spec.default_signals),
            rlimits=spec.rlimits, seccomp=host.seccomp, comm=os.path.basename(target.execfn),
            cpus=spec.cpus, nice=spec.nice or 0, **_ledger_fields(host, ledger))
        run = _native.ExecPlan(plan.images, (area.low, area.size, _loader.stack_prot(executable)),
                               image.data, image.sp, image.relocs, child, WAIT_IN_NATIVE)
        pid, pidfd, reported = _run(run, report)
    except BaseException:  # KeyboardInterrupt: the caller unmaps the child's stack next
        if run is not None and run.result()[5] >= 0:
            _kill_and_reap(run.result()[5])
        raise
    finally:
        for fd in moved + [report]:
            os.close(fd)
    if not reported:
        failure = _native.child_failure(child)
        if failure.step:
            _raise_child_failure(failure, pidfd, spec, target)
        # else killed before it could report: reaped like any exited program
    return pid, pidfd


def _run(run: _native.ExecPlan, report: int) -> tuple[int, int, bool]:
    """Execute the plan; (pid, pidfd, reached the entry?) or the error it
    stands for (a failure before the clone leaves no process)."""
    ok = run.execute()
    step, err, _, _, pid, pidfd, reported = run.result()
    if not ok and step == _native.ExecStep.CLONE:
        raise OSError(err, f"clone3: {os.strerror(err)}")
    if not ok and pidfd < 0:
        raise _loader.mapping_error(run.result())
    if not ok:  # poll failed: the caller kills the child
        raise OSError(err, f"waiting for the program to start: {os.strerror(err)}")
    if reported < 0:  # a signal for the host ended the native wait
        reported = _wait_for_report(report, pidfd)
    return pid, pidfd, bool(reported)


def _kill_and_reap(pidfd: int) -> None:
    """A child that must not outlive this spawn: gone before its memory is."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass  # exited already; still to be reaped
    os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    os.close(pidfd)


def _wait_for_report(report: int, pidfd: int) -> bool:
    """True once the child path reported success, False if it exited first."""
    poller = select.poll()
    poller.register(report, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    ready = {fd for fd, _ in poller.poll()}
    return report in ready


def _address_limit(spec: SpawnSpec) -> bool:
    """Whether the program starts with a finite RLIMIT_AS (its own or the host's)."""
    for resource_id, soft, _hard in spec.rlimits:
        if resource_id == resource.RLIMIT_AS:
            return soft != resource.RLIM_INFINITY
    return resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY


def _keep_fds(spec: SpawnSpec, report: int, ledger, host: HostFacts) -> list[int]:
    """What survives the child path's close_range: pass_fds, the report
    eventfd, and the keeper's socket (the child closes those two itself)."""
    keep = {*spec.pass_fds, report}
    if ledger is not None:
        keep.add(host.keeper.fd)
    return sorted(keep)


def _ledger_fields(host: HostFacts, ledger: _ledger.Enrolment | None) -> dict:
    if ledger is None:
        return {}
    return {"ledger": ledger.filter, "ledger_id": ledger.id, "keeper_fd": host.keeper.fd,
            "keeper_pid": host.keeper.pid}


def _flags(host: HostFacts, spec: SpawnSpec, ledger: _ledger.Enrolment | None) -> int:
    filtered = host.seccomp is not None or ledger is not None
    return ((_native.NEW_SESSION if spec.new_session else 0)
            | (_native.SET_PGID if spec.process_group >= 0 else 0)
            | (_native.SET_NICE if spec.nice is not None else 0)
            | (_native.NO_NEW_PRIVS if filtered and not host.cap_sys_admin else 0))


def _signal_mask(signals: frozenset[int]) -> int:
    mask = _masks.get(signals)
    if mask is None:
        mask = sum(1 << (s - 1) for s in signals if 0 < s <= 64)
        if len(_masks) < 64:  # the same few sets come back: restore_signals, launchers'
            _masks[signals] = mask
    return mask


_masks: dict[frozenset[int], int] = {}


def _raise_child_failure(failure: _native.ChildError, pidfd: int, spec: SpawnSpec,
                         target: Target) -> None:
    os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    os.close(pidfd)
    step = _native.Step(failure.step) if failure.step in _native.Step._value2member_map_ else failure.step
    err = failure.err or errno.EIO
    if step == _native.Step.CHDIR:
        raise OSError(err, os.strerror(err), os.fsdecode(spec.cwd))
    name = step.name.lower() if isinstance(step, _native.Step) else f"step {step}"
    raise OSError(err, f"{os.strerror(err)} (while setting up the program: {name})", target.path)
