"""Popen: a program of the space, with exactly subprocess.Popen's interface.

It *is* a subprocess.Popen: pipes, text mode, communicate() and the
context manager are subprocess's own code.  Only the points where a
program differs from a forked child are replaced: how it starts
(_execute_child), how its exit is learned (its pidfd, polled by the waiting
thread or by the space's reaper thread, which give its memory back at
once), and how it is signalled (its pidfd, so a reused PID can never be
hit).  Reaping is subprocess's own: waitpid once the exit is known, so an
exited program stays waitable by pid until its Popen waits, as a child does.
"""
from __future__ import annotations

import errno
import fcntl
import inspect
import os
import select
import signal
import stat
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Callable

from ._spawn import PYTHON_IGNORED, SpawnSpec

_UNSUPPORTED = ("preexec_fn", "user", "group", "extra_groups")


class Popen(subprocess.Popen):
    """subprocess.Popen for a program in a space; create it with Space.Popen."""

    def __init__(self, space, args, *popen_args, ignored_signals=None, rlimits=None, nice=None,
                 cpu_affinity=None, reclaim=None, **kwargs):
        if popen_args:  # subprocess.Popen(args, bufsize, executable, ...): name them
            kwargs = _name_positional(args, popen_args, kwargs)
        for name in _UNSUPPORTED:
            if kwargs.get(name) is not None:
                raise ValueError(f"{name} is not supported for programs in a space")
        self._space = space
        self._ignored_signals = ignored_signals
        self._rlimits = dict(rlimits or {})
        self._nice = _check_nice(nice)
        self._cpus = _cpu_mask(cpu_affinity)
        self._reclaim = space.reclaim if reclaim is None else bool(reclaim)
        self._exit = ProgramExit(self)
        self.start_time = time.time()
        super().__init__(args, **kwargs)

    # -- starting ----------------------------------------------------------
    def _execute_child(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env,
                       startupinfo, creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite,
                       errread, errwrite, restore_signals, gid, gids, uid, umask,
                       start_new_session, process_group):
        if not close_fds:  # subprocess has forced it to True if pass_fds were given
            pass_fds = _inheritable_fds()
        args = self._normalize_args(args, shell, executable)
        executable = args[0] if executable is None else executable
        spec = SpawnSpec(
            file=_no_nul(executable), argv=[_no_nul(a) for a in args],
            envp=_environment_block(env), env_path=lambda: [os.fsencode(d) for d in os.get_exec_path(env)],
            cwd=os.fsencode(cwd) if cwd is not None else None,
            stdio=(p2cread, c2pwrite, errwrite), pass_fds=_check_pass_fds(pass_fds),
            new_session=bool(start_new_session),
            process_group=-1 if process_group is None else process_group,
            umask=umask, **self._signal_dispositions(restore_signals),
            rlimits=tuple((int(r), int(s), int(h)) for r, (s, h) in self._rlimits.items()),
            cpus=self._cpus, nice=self._nice,
            reclaim=self._reclaim)
        try:
            self._space._start(self, spec)
        except OSError:
            # Natively the child's chdir fails before its exec could.
            error = None if cwd is None else _chdir_error(cwd)
            if error is not None:
                raise error from None
            raise
        self._child_created = True
        self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)

    @staticmethod
    def _normalize_args(args, shell, executable) -> list:
        if isinstance(args, (str, bytes, os.PathLike)):
            if shell and isinstance(args, os.PathLike):
                raise TypeError("path-like args is not allowed when shell is true")
            args = [args]
        else:
            args = list(args)
        if shell:
            args = ["/bin/sh", "-c"] + args
            if executable:
                args[0] = executable
        if not args:
            raise ValueError("args must name a program")
        return args

    def _signal_dispositions(self, restore_signals: bool) -> dict:
        """Like exec: ignored signals stay ignored, handled ones become default.

        restore_signals undoes Python's own SIG_IGN of SIGPIPE and SIGXFSZ, as
        subprocess does; an explicit ignored_signals set (a launcher's) is
        applied exactly.
        """
        if self._ignored_signals is not None:
            ignore = frozenset(int(s) for s in self._ignored_signals)
            return {"ignore_signals": ignore, "default_signals": frozenset(range(1, 65)) - ignore}
        return {"default_signals": PYTHON_IGNORED if restore_signals else frozenset()}

    def mappings(self) -> list[tuple[int, int]]:
        """The [start, end) ranges the space records for this program while
        it runs: what the loader mapped for it and, when the space reclaims
        memory, everything it mapped since (merged where adjacent); [] once
        its memory is given back."""
        return self._space._mappings(self)

    # -- debugging (docs/debugging.md) --------------------------------------
    def debug_target(self):
        """What a debugger needs to find this program's code in the shared
        mm: a _debug.DebugTarget; ProcessLookupError once it has exited."""
        from ._debug import target_of
        return target_of(self._space, self)

    def gdb_command(self, *gdb_args: str) -> list[str]:
        """argv of a gdb attached to this program with its own symbols (not
        the host's); gdb_args such as "-batch", "-ex", "bt" are passed on."""
        from ._debug import find_gdb, gdb_command
        return gdb_command(self.debug_target(), gdb_args, find_gdb())

    # -- exit: learned from the pidfd, reaped by waitpid as subprocess does --
    @property
    def pidfd(self) -> int:
        """The program's pidfd until its last thread is gone, then -1."""
        return self._exit.pidfd

    def add_exit_callback(self, callback: Callable[["Popen"], None]) -> None:
        """Call callback(self) once the program has been reaped (maybe now).

        A program with exit callbacks is reaped as soon as it exits, in
        the thread that learns of the exit, so that the callbacks see its
        returncode."""
        if self._exit.add_callback(callback):
            self.wait()
            callback(self)

    def _exit_known(self, timeout: float | None) -> bool:
        """Whether the program's threads are gone (and its memory given
        back), waiting up to timeout for it."""
        if self._exit.gone.is_set():
            return True
        claimed = self._space._reap_here(self, timeout)
        if claimed is not None:
            return claimed
        # Another thread has it, and it wakes as soon as the program exits:
        # after an exit, wait for that thread, so that poll() never says None.
        return self._exit.gone.wait(timeout) or (self._exit.has_exited() and self._exit.gone.wait())

    def _internal_poll(self, _deadstate=None, **kwargs):
        if self.returncode is not None:
            return self.returncode
        # From __del__ and subprocess's cleanup (_deadstate given) only what
        # is known already: a finalizer may run in any thread, even in one
        # that holds the reaper's lock, so it must not claim the program.
        known = self._exit.gone.is_set() if _deadstate is not None else self._exit_known(0)
        return super()._internal_poll(_deadstate=_deadstate) if known else None

    def _wait(self, timeout):
        if self.returncode is None and not self._exit_known(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return super()._wait(None)  # exited: subprocess's own waitpid reaps it now

    def send_signal(self, sig):
        self.poll()  # as subprocess: never signal a program known to have exited
        if self.returncode is None:
            self._exit.send_signal(sig)

    def __repr__(self):
        return "<sameprocess." + super().__repr__()[1:]  # subprocess's, args cut alike


_POPEN_PARAMETERS = inspect.signature(subprocess.Popen.__init__)


def _name_positional(args, popen_args: tuple, kwargs: dict) -> dict:
    """subprocess.Popen's positional arguments after args, as keywords
    (a TypeError for too many or one given twice, as subprocess.Popen's)."""
    bound = _POPEN_PARAMETERS.bind(None, args, *popen_args, **kwargs).arguments
    del bound["self"], bound["args"]
    return bound


class ProgramExit:
    """What the space keeps of a program's Popen: its pidfd, whether its
    last thread is gone, and the exit callbacks.

    The space holds this and only a weak reference to the Popen, so a Popen
    dropped while its program runs reaches subprocess's __del__ (a
    ResourceWarning, then subprocess._active until it is reaped).  The
    program is reaped by its Popen (waitpid, as subprocess does), not at
    exit: until then it stays waitable by pid, as a forked child does.
    """

    def __init__(self, program: Popen) -> None:
        self.program = weakref.ref(program)
        self.pidfd = -1
        self.gone = threading.Event()
        self._lock = threading.Lock()  # the pidfd is never signalled once closed
        self._callbacks: list[Callable[[Popen], None]] = []

    def add_callback(self, callback: Callable[[Popen], None]) -> bool:
        """Keep callback for the exit; False if the program is gone already."""
        with self._lock:
            if not self.gone.is_set():
                self._callbacks.append(callback)
                return False
        return True

    def send_signal(self, sig: int) -> None:
        with self._lock:
            if self.pidfd < 0:
                return
            try:
                signal.pidfd_send_signal(self.pidfd, sig)
            except ProcessLookupError:
                pass  # exited, not yet noticed

    def has_exited(self) -> bool:
        """Whether the program's last thread is gone (maybe not yet noticed)."""
        with self._lock:
            if self.pidfd < 0:
                return True
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            return bool(poller.poll(0))

    def exited(self) -> None:
        """Space: the program's threads are gone and its memory is given back."""
        with self._lock:
            os.close(self.pidfd)
            self.pidfd = -1
            self.gone.set()
            callbacks, self._callbacks = self._callbacks, []
        program = self.program()
        if program is None or not callbacks:
            return
        program.wait()  # reaps it: callbacks are promised its returncode
        for callback in callbacks:
            callback(program)


class EnvironmentStrings(Mapping):
    """An environment received as its NAME=VALUE strings (a launcher's),
    already checked (a name before the first "=", no NUL).  The program
    gets exactly these strings, duplicates included, as execve passes them;
    a lookup (PATH, for the program's path search) takes the first one, as
    getenv does.  Passing the strings on as they came spares a split into a
    dict and a join back per spawn."""

    def __init__(self, strings: list[bytes]) -> None:
        self.strings = strings
        self._names: dict[bytes, bytes] | None = None

    def _lookup(self) -> dict[bytes, bytes]:
        if self._names is None:
            self._names = {}
            for entry in self.strings:
                name, _, value = entry.partition(b"=")
                self._names.setdefault(name, value)
        return self._names

    def __getitem__(self, name):
        return self._lookup()[name]

    def __iter__(self):
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self._lookup())


def _environment_block(env) -> list[bytes]:
    if env is None:  # os.environ's own bytes, already valid (os.environ._data)
        return list(map(b"=".join, os.environ._data.items()))
    if type(env) is EnvironmentStrings:
        return list(env.strings)
    block = []
    for key, value in ((os.fsencode(k), os.fsencode(v)) for k, v in env.items()):
        if b"=" in key or not key:
            raise ValueError(f"illegal environment variable name {key!r}")
        if b"\0" in key or b"\0" in value:
            raise ValueError("embedded null byte in the environment")
        block.append(key + b"=" + value)
    return block


def _check_nice(nice) -> int | None:
    """None for the host's own nice value (the thread that spawns), else the value."""
    if nice is None:
        return None
    nice = int(nice)
    if not -20 <= nice <= 19:
        raise ValueError(f"nice {nice} is out of range (-20 to 19)")
    return None if nice == os.getpriority(os.PRIO_PROCESS, 0) else nice


def _cpu_mask(cpus) -> bytes | None:
    """sched_setaffinity's mask for a set of CPU numbers; None for the host's own."""
    if cpus is None:
        return None
    cpus = {int(cpu) for cpu in cpus}
    if not cpus or min(cpus) < 0 or max(cpus) >= _MAX_CPUS:
        raise ValueError(f"cpu_affinity must name CPUs 0 to {_MAX_CPUS - 1}, at least one")
    if cpus == os.sched_getaffinity(0):
        return None
    return sum(1 << cpu for cpu in cpus).to_bytes((max(cpus) // 64 + 1) * 8, "little")


_MAX_CPUS = 8192    # the kernel's largest NR_CPUS


def _no_nul(arg) -> bytes:
    raw = os.fsencode(arg)
    if b"\0" in raw:
        raise ValueError("embedded null byte in an argument")
    return raw


def _inheritable_fds() -> tuple[int, ...]:
    """close_fds=False: the host's descriptors (3 and up) that an exec would
    leave open, those without FD_CLOEXEC.  The space's own (pidfds, the
    reaper's, the spawn's) all have the flag."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                fds.append(fd)
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return tuple(sorted(fds))


def _chdir_error(cwd) -> OSError | None:
    """What chdir(cwd) would raise (named after cwd, as subprocess's), if anything."""
    try:
        if not stat.S_ISDIR(os.stat(cwd).st_mode):
            return NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fsdecode(cwd))
    except OSError as error:
        return error
    if not os.access(cwd, os.X_OK):
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(cwd))
    return None


def _check_pass_fds(pass_fds) -> tuple[int, ...]:
    fds = tuple(sorted({int(fd) for fd in pass_fds}))
    for fd in fds:
        if fd < 3:
            raise ValueError(f"pass_fds entry {fd}: use stdin/stdout/stderr for descriptors 0-2")
        os.fstat(fd)  # a closed descriptor is an error now, not in the child
    return fds
