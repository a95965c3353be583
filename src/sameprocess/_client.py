"""The client side: connecting to a server (auto-starting the default one),
one-shot requests (ps, kill, stop), and the Python launcher: the fallback
behind `sameprocess run` where the native one (_launcher/) is not installed
or cannot be exec'd.  Both behave alike (docs/server.md).

The launcher makes a program of the space look like its own child:
  * the SPAWN request carries its argv, environment, cwd, umask, resource
    limits and ignored signals, and its stdin/stdout/stderr descriptors;
  * every catchable signal it receives is forwarded to the program through
    the pidfd the server sent, also one it inherited as ignored (the
    program starts ignoring it too, and decides); SIGTSTP/SIGTTIN/SIGTTOU stop the program
    (SIGSTOP) and then the launcher itself with the same signal; SIGCONT is
    forwarded, so the shell's `fg` resumes both;
  * it exits with the program's code, or dies by the program's signal;
  * if the server goes away it keeps waiting on the pidfd, then exits 255
    saying the status was lost.
One selector waits on the socket, the pidfd and the signal wakeup pipe;
nothing sleeps or polls.  The launcher has no threads, so a signal it sends
itself is delivered before kill() returns.
"""
from __future__ import annotations

import enum
import errno
import fcntl
import os
import resource
import selectors
import signal
import socket
import struct
import sys

from . import _sockpath
from ._server.framing import FrameReader, PeerClosed, close_fds, send_frame
from ._server.protocol import (
    RLIM_INFINITY, Error, Exited, LauncherWarning, Message, MsgType, ProtocolError, Spawn, Started,
    check_exec_sizes, printable,
)
from ._sockpath import SocketPath, SocketPathError

_PEERCRED = struct.Struct("3i")


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1            # ps/kill/stop: the request failed
    USAGE = 2              # argparse's own
    LAUNCH_FAILED = 125    # run: no server, or it refused (the program never ran)
    CANNOT_EXECUTE = 126   # as a shell: not executable, not a valid program, E2BIG
    NOT_FOUND = 127        # as a shell: command not found
    STATUS_LOST = 255      # run: the server went away; the program's status is unknown


class ClientError(Exception):
    """A user-facing failure: one line on stderr, then exit with `code`."""

    def __init__(self, message: str, code: int = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.code = code


class NoServer(ClientError):
    pass


# -- connecting ---------------------------------------------------------------------
def connect(path: str) -> socket.socket:
    """Connect to the server at `path`; refuse a server run by another user."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        sock.close()
        stale = " (stale socket)" if isinstance(e, ConnectionRefusedError) else ""
        raise NoServer(f"no server is running at {path}{stale}") from None
    except OSError as e:
        sock.close()
        raise ClientError(f"cannot connect to {path}: {e.strerror}") from None
    _, uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    if uid != os.geteuid():
        sock.close()
        raise ClientError(f"the server at {path} runs as uid {uid}, not as you (uid {os.geteuid()}); "
                          "refusing to use it")
    return sock


def connect_or_start(where: SocketPath) -> socket.socket:
    """Connect; for the default socket, start a server first if none is live.

    Launchers that find no server serialise on an flock beside the socket:
    the first starts a server and waits until it listens, the others then
    find it live.  Only a server holding NAME.lock ever binds the socket.
    """
    try:
        return connect(where.path)
    except NoServer:
        if not where.default:
            raise
    try:
        _sockpath.check_length(where.path)
        _sockpath.private_directory(where.directory, create=True)
        lock = _sockpath.open_lock(where.start_lock_path)
    except SocketPathError as e:
        raise ClientError(str(e), ExitCode.LAUNCH_FAILED) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return connect(where.path)
        except NoServer:
            pass
        start_server(where)
        return connect(where.path)
    finally:
        os.close(lock)


def start_server(where: SocketPath) -> None:
    """Start `sameprocess serve` in the background; return once it listens."""
    import subprocess

    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    try:
        log = os.open(where.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                      0o600)
    except OSError as e:
        close_fds((ready_r, ready_w))
        raise ClientError(f"cannot open the server log {where.log_path}: {e.strerror}",
                          ExitCode.LAUNCH_FAILED) from None
    try:
        server = subprocess.Popen(
            [sys.executable, "-m", "sameprocess", "serve", "--socket", where.path,
             "--log-file", where.log_path, "--ready-fd", str(ready_w)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(ready_w,),
            cwd="/", start_new_session=True)
    except OSError as e:
        close_fds((ready_r, ready_w, log))
        raise ClientError(f"cannot start a server: {e}", ExitCode.LAUNCH_FAILED) from None
    close_fds((ready_w, log))
    with os.fdopen(ready_r, "rb") as ready:
        answer = ready.read()       # "ready\n", or EOF if it failed
    if answer.startswith(b"ready"):
        server.returncode = 0       # it runs on; don't let subprocess warn about it
        return
    server.wait()
    raise ClientError(f"could not start a server at {where.path}: {_last_line(where.log_path)} "
                      f"(log: {where.log_path})", ExitCode.LAUNCH_FAILED)


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "it exited without a word"
    except OSError:
        return "it exited without a word"


# -- one-shot requests ----------------------------------------------------------------
def request(path: str, message: Message, expect: MsgType) -> Message:
    """Send a request, return the reply of type `expect` (an ERROR is a ClientError)."""
    with connect(path) as sock:
        send_request(sock, message, (), ExitCode.FAILURE)
        reader = FrameReader(frozenset({expect, MsgType.ERROR}))
        try:
            while True:
                got = reader.receive(sock)
                if got is not None:
                    break
        except PeerClosed:
            raise ClientError(f"the server at {path} closed the connection without replying") from None
        except ProtocolError as e:
            raise ClientError(f"bad reply from the server at {path}: {e}") from None
    reply, fds = got
    close_fds(fds)
    if isinstance(reply, Error):
        raise ClientError(reply.message)
    return reply


def send_request(sock: socket.socket, message: Message, fds, code: int) -> None:
    """Send a request; a server that refused us before reading it has said why: raise that."""
    try:
        send_frame(sock, message, fds)
    except OSError as e:
        answer = _answer_before_close(sock)
        raise ClientError(answer or f"cannot send the request to the server: {e.strerror}", code) from None


def _answer_before_close(sock: socket.socket) -> str | None:
    """The ERROR a server wrote before closing the connection, if it is there to read."""
    reader = FrameReader(frozenset({MsgType.ERROR}))
    sock.setblocking(False)
    try:
        while (got := reader.receive(sock)) is None:
            pass
    except (OSError, PeerClosed, ProtocolError):
        return None
    close_fds(got[1])
    return got[0].message


# -- the launcher ---------------------------------------------------------------------
_STOP_SIGNALS = frozenset({signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
# Not forwarded: uncatchable ones, SIGCHLD (about the launcher's own children)
# and the synchronous faults (a real one in the launcher must kill it).
_NOT_FORWARDED = frozenset({signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGSEGV,
                            signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGSYS})
# Python ignores these itself at startup; what the launcher inherited is lost.
_PYTHON_IGNORES = frozenset({signal.SIGPIPE, signal.SIGXFSZ})


def _noop(signum, frame) -> None:
    """The work is done by the main loop, woken through the wakeup pipe."""


def inherited_ignored_signals() -> frozenset[int]:
    """Signals this process ignores, as its parent left them (see _PYTHON_IGNORES)."""
    return frozenset(int(s) for s in signal.valid_signals()
                     if s not in _PYTHON_IGNORES and signal.getsignal(s) == signal.SIG_IGN)


def current_rlimits() -> dict[int, tuple[int, int]]:
    """Every resource limit, as the protocol encodes them (RLIM_INFINITY unsigned)."""
    limits = {}
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            res = getattr(resource, name)
            soft, hard = resource.getrlimit(res)
            limits[res] = (soft & RLIM_INFINITY, hard & RLIM_INFINITY)
    return limits


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fill_closed_stdio() -> None:
    """Open /dev/null on descriptors 0-2 that are closed (it lands on the lowest).

    Called before the launcher opens anything, so that no socket or pipe of
    its own takes the place of a closed stdin and is passed to the program.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:      # something else holds a lower descriptor: move it
                os.dup2(null, fd)
                os.close(null)


class Launcher:
    """Run one program in the space; run() returns the exit code or dies by its signal."""

    def __init__(self, argv: list[bytes], where: SocketPath) -> None:
        self.argv = argv
        self.where = where
        self.name = os.fsdecode(argv[0])
        self.pid: int | None = None
        self.pidfd: int | None = None
        self._pending: list[int] = []
        self._ignored: frozenset[int] = frozenset()
        self._lost_reason = ""

    # -- setup ---------------------------------------------------------------------
    def run(self) -> int:
        fill_closed_stdio()
        ignored = self._ignored = inherited_ignored_signals()
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for sig in signal.valid_signals():
            if sig not in _NOT_FORWARDED:
                signal.signal(sig, _noop)
        env = [k + b"=" + v for k, v in os.environb.items()]
        try:
            cwd = os.getcwdb()
        except OSError as e:
            raise ClientError(f"cannot determine the current directory: {e.strerror}",
                              ExitCode.LAUNCH_FAILED) from None
        try:
            check_exec_sizes(self.argv, env, resource.getrlimit(resource.RLIMIT_STACK)[0] & RLIM_INFINITY)
        except OSError as e:
            raise ClientError(f"{self.name}: {e.strerror}", ExitCode.CANNOT_EXECUTE) from None
        spawn = Spawn(self.argv, env, cwd, current_umask(), ignored, current_rlimits(),
                      os.getpriority(os.PRIO_PROCESS, 0), frozenset(os.sched_getaffinity(0)))
        try:
            sock = connect_or_start(self.where)
        except ClientError as e:    # no server, or one we must not use: the program never ran
            raise ClientError(str(e), ExitCode.LAUNCH_FAILED) from None
        send_request(sock, spawn, [0, 1, 2], ExitCode.LAUNCH_FAILED)
        return self._wait(sock, wake_r)

    # -- the wait loop ----------------------------------------------------------------
    def _wait(self, sock: socket.socket, wake_r: int) -> int:
        sock.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ, "server")
        sel.register(wake_r, selectors.EVENT_READ, "signals")
        reader = FrameReader(frozenset({MsgType.STARTED, MsgType.EXITED, MsgType.ERROR, MsgType.WARNING}))
        program_exited = False
        while True:
            for key, _ in sel.select():
                if key.data == "signals":
                    for sig in os.read(wake_r, 512):
                        self._on_signal(sig)
                elif key.data == "program":
                    sel.unregister(self.pidfd)
                    program_exited = True
                    if sock is None:
                        return self._status_lost("has exited")
                elif key.data == "server":
                    try:
                        got = reader.receive(sock)
                    except BlockingIOError:
                        continue
                    except (PeerClosed, ProtocolError, OSError) as e:
                        got = None
                        sel.unregister(sock)
                        sock.close()
                        sock = None
                        bad = isinstance(e, ProtocolError)
                        if self.pidfd is None and bad:
                            raise ClientError(f"bad message from the server before starting {self.name}: {e}",
                                              ExitCode.LAUNCH_FAILED) from None
                        if self.pidfd is None:
                            raise ClientError("the server closed the connection before starting "
                                              f"{self.name}", ExitCode.LAUNCH_FAILED) from None
                        if bad:     # said with the status, in the one last line
                            self._lost_reason = str(e)
                        if program_exited:
                            return self._status_lost("has exited")
                    if got is None:
                        continue
                    message, fds = got
                    if isinstance(message, LauncherWarning):
                        _warn(message.message, prefix="sameprocess: warning")
                    elif isinstance(message, Started):
                        self.pid, self.pidfd = message.pid, fds[0]
                        reader.accept = frozenset({MsgType.EXITED})
                        sel.register(self.pidfd, selectors.EVENT_READ, "program")
                        pending, self._pending = self._pending, []
                        for sig in pending:
                            self._on_signal(sig)
                    elif isinstance(message, Exited):
                        sock.close()
                        return self._finish(message.returncode)
                    elif isinstance(message, Error):
                        sock.close()
                        return self._spawn_failed(message)

    def _on_signal(self, sig: int) -> None:
        # A stop signal inherited as ignored, the program ignores too: sent as it is.
        stops = sig in _STOP_SIGNALS and sig not in self._ignored
        if self.pidfd is None:
            if stops:
                _stop_self(sig)
            else:
                self._pending.append(sig)
            return
        if stops:
            self._send(signal.SIGSTOP)
            _stop_self(sig)
            self._send(signal.SIGCONT)
        else:
            self._send(sig)

    def _send(self, sig: int) -> None:
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
        except ProcessLookupError:
            pass    # exited; EXITED is on its way

    # -- endings ---------------------------------------------------------------------
    def _finish(self, returncode: int) -> int:
        if returncode >= 0:
            return returncode
        die_by_signal(-returncode)
        return 128 - returncode     # not reached

    def _spawn_failed(self, error: Error) -> int:
        message = printable(error.message)      # the server's text stays one line
        if not error.filename:      # a refusal, not about the program
            raise ClientError(message, ExitCode.LAUNCH_FAILED)
        name = printable(os.fsdecode(error.filename))
        if error.errno == errno.ENOENT:
            if b"/" not in self.argv[0]:
                _warn(f"{self.name}: command not found", prefix="sameprocess")
            else:
                _warn(f"{name}: {message}", prefix="sameprocess")
            return ExitCode.NOT_FOUND
        _warn(f"{name}: {message}", prefix="sameprocess")
        return ExitCode.CANNOT_EXECUTE

    def _status_lost(self, what: str) -> int:
        lost = f"bad message from the server ({self._lost_reason})" if self._lost_reason else "lost the server"
        _warn(f"{lost}; {self.name} (pid {self.pid}) {what} but its exit status is unknown")
        return ExitCode.STATUS_LOST


def _stop_self(sig: int) -> None:
    """Stop with `sig` itself (so the shell says why); returns once continued."""
    signal.signal(sig, signal.SIG_DFL)
    try:
        os.kill(os.getpid(), sig)
    finally:
        signal.signal(sig, _noop)


def die_by_signal(sig: int) -> None:
    """Die by `sig` like the program did, without leaving a core of the launcher."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (OSError, ValueError):
        pass
    if sig in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
        os._exit(128 + sig)     # stopping is no death: a bogus status, not raised
    if sig != signal.SIGKILL:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    if sig in signal.valid_signals():   # not 32, 33: libc keeps those to itself
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)   # a signal whose default is not to terminate


def _warn(message: str, prefix: str = "sameprocess run") -> None:
    try:
        print(f"{prefix}: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
