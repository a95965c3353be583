"""Popen: a program of the space, with exactly subprocess.Popen's interface.

It *is* a subprocess.Popen: pipes, text mode, communicate() and the
context manager are subprocess's own code.  Only the four points where a
program differs from a forked child are replaced: how it starts
(_execute_child), how its exit is learned (its pidfd, polled by the waiting
thread or by the space's reaper thread: no waitpid, no polling loop), and
how it is signalled (its pidfd, so a
reused PID can never be hit).
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Callable

from ._spawn import PYTHON_IGNORED, SpawnSpec

_UNSUPPORTED = ("preexec_fn", "user", "group", "extra_groups")


class Popen(subprocess.Popen):
    """subprocess.Popen for a program in a space; create it with Space.Popen."""

    def __init__(self, space, args, *, ignored_signals=None, rlimits=None, **kwargs):
        for name in _UNSUPPORTED:
            if kwargs.get(name) is not None:
                raise ValueError(f"{name} is not supported for programs in a space")
        self._space = space
        self._ignored_signals = ignored_signals
        self._rlimits = dict(rlimits or {})
        self._exited = threading.Event()
        self._pidfd_lock = threading.Lock()
        self._exit_callbacks: list[Callable[[Popen], None]] = []
        self.pidfd = -1
        self.start_time = time.time()
        super().__init__(args, **kwargs)

    # -- starting ----------------------------------------------------------
    def _execute_child(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env,
                       startupinfo, creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite,
                       errread, errwrite, restore_signals, gid, gids, uid, umask,
                       start_new_session, process_group):
        if not close_fds:
            raise ValueError("close_fds=False is not supported: a program in a space starts "
                             "with only its stdio and pass_fds")
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
            rlimits=tuple((int(r), int(s), int(h)) for r, (s, h) in self._rlimits.items()))
        self._space._start(self, spec)
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

    # -- exit, as reported by the space's reaper ---------------------------
    def add_exit_callback(self, callback: Callable[["Popen"], None]) -> None:
        """Call callback(self) once the program has been reaped (maybe now)."""
        with self._pidfd_lock:
            if not self._exited.is_set():
                self._exit_callbacks.append(callback)
                return
        callback(self)

    def _reaped(self, returncode: int) -> None:
        with self._pidfd_lock:
            self.returncode = returncode
            os.close(self.pidfd)
            self.pidfd = -1
            self._exited.set()
            callbacks, self._exit_callbacks = self._exit_callbacks, []
        for callback in callbacks:
            callback(self)

    def _internal_poll(self, *args, **kwargs):
        return self.returncode if self._exited.is_set() else None

    def _wait(self, timeout):
        reaped = None if self._exited.is_set() else self._space._reap_here(self, timeout)
        if reaped is False or (reaped is None and not self._exited.wait(timeout)):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig):
        with self._pidfd_lock:
            if self._exited.is_set():
                return
            try:
                signal.pidfd_send_signal(self.pidfd, sig)
            except ProcessLookupError:
                pass  # exited, not yet reaped

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

    def __repr__(self):
        return f"<sameprocess.Popen: returncode: {self.returncode} args: {self.args!r}>"


def _environment_block(env) -> list[bytes]:
    if env is None:  # os.environ's own bytes, already valid (os.environ._data)
        return list(map(b"=".join, os.environ._data.items()))
    block = []
    for key, value in ((os.fsencode(k), os.fsencode(v)) for k, v in env.items()):
        if b"=" in key or not key:
            raise ValueError(f"illegal environment variable name {key!r}")
        if b"\0" in key or b"\0" in value:
            raise ValueError("embedded null byte in the environment")
        block.append(key + b"=" + value)
    return block


def _no_nul(arg) -> bytes:
    raw = os.fsencode(arg)
    if b"\0" in raw:
        raise ValueError("embedded null byte in an argument")
    return raw


def _check_pass_fds(pass_fds) -> tuple[int, ...]:
    fds = tuple(sorted({int(fd) for fd in pass_fds}))
    for fd in fds:
        if fd < 3:
            raise ValueError(f"pass_fds entry {fd}: use stdin/stdout/stderr for descriptors 0-2")
        os.fstat(fd)  # a closed descriptor is an error now, not in the child
    return fds
