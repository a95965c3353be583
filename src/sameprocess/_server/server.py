"""The server: one Space, one listening socket, one thread of selectors.

Everything happens in the thread that calls Server.serve(): accepting,
reading requests, spawning, replying.  The space's reaper thread only
queues exits (an exit callback) and wakes the loop with an eventfd; signals
that stop the server arrive through a wakeup descriptor.  Timers (request
timeout, stop grace period) are deadlines the selector waits for: nothing
here sleeps or polls.

A connection carries one request.  A SPAWN connection stays open while its
program runs: the server writes STARTED (with a pidfd for the launcher) and
later EXITED; if the launcher closes its end first, the launcher is gone and
the program gets SIGHUP (then SIGCONT), like on a terminal hangup.
"""
from __future__ import annotations

import errno
import heapq
import itertools
import logging
import os
import queue
import resource
import select
import selectors
import signal
import socket
import struct
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

from .._caps import CAP_SYS_NICE, has_capability
from .._errors import SetuidIgnoredWarning
from .framing import FrameReader, FrameWriter, PeerClosed, close_fds
from .._mm import resident
from .._popen import EnvironmentStrings
from .protocol import (
    MAX_PS_ARGS, RLIM_INFINITY, REQUESTS, Debug, DebugInfo, Error, Exited, Kill, Killed, LauncherWarning,
    ListPrograms, Message, ProgramInfo, Programs, ProtocolError, Spawn, Started, Stop, Stopped,
    check_exec_sizes, printable,
)

log = logging.getLogger("sameprocess.server")

_PEERCRED = struct.Struct("3i")
FLUSH_AT_EXIT = 2.0       # seconds given to last replies once the server has stopped


class _Timer:
    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline, self.callback, self.cancelled = deadline, callback, False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(eq=False)
class _Program:
    popen: object                      # sameprocess.Popen
    launcher_pid: int | None
    conn: "_Conn | None"


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    pid: int
    uid: int
    reader: FrameReader = field(default_factory=lambda: FrameReader(REQUESTS))
    writer: FrameWriter = field(default_factory=FrameWriter)
    state: str = "request"             # request -> running | reply -> closed
    program: _Program | None = None
    timer: _Timer | None = None
    close_when_flushed: bool = False
    writing: bool = False

    def describe(self) -> str:
        return f"pid {self.pid}"


class Server:
    def __init__(self, space, listener: socket.socket, socket_path: str, *,
                 request_timeout: float = 10.0, grace: float = 5.0,
                 signal_fd: int | None = None) -> None:
        self.space = space
        self.listener = listener
        self.socket_path = socket_path
        self.request_timeout = request_timeout
        self.grace = grace
        self._listener_id = _identity(socket_path)
        self._uid = os.geteuid()
        self._sel = selectors.DefaultSelector()
        self._conns: set[_Conn] = set()
        self._programs: dict[int, _Program] = {}
        self._exits: "queue.SimpleQueue[_Program]" = queue.SimpleQueue()
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._wake_lock = threading.Lock()     # the reaper thread writes _wake
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._stopping = False
        self._stoppers: list[_Conn] = []
        self._finished = False
        self._listening = True
        self._hard_limits = {r: resource.getrlimit(r)[1] for r in _all_rlimits()}
        self._cap_sys_nice = has_capability(CAP_SYS_NICE)
        listener.setblocking(False)
        self._sel.register(listener, selectors.EVENT_READ, self._on_accept)
        self._sel.register(self._wake, selectors.EVENT_READ, self._on_wake)
        self._signal_fd = signal_fd
        if signal_fd is not None:
            self._sel.register(signal_fd, selectors.EVENT_READ, self._on_signal)

    # -- the loop -----------------------------------------------------------
    def serve(self) -> None:
        """Serve until stopped (STOP request, stop signal or request_stop())."""
        try:
            while not (self._finished and not any(c.writer for c in self._conns)):
                for key, mask in self._sel.select(self._timeout()):
                    key.data(mask)
                self._run_timers()
        finally:
            for conn in list(self._conns):
                self._close(conn)
            self._close_listener()
            self._sel.close()
            with self._wake_lock:
                os.close(self._wake)
                self._wake = -1

    def request_stop(self, grace: float | None = None) -> None:
        self._begin_stop(self.grace if grace is None else grace)

    def _timeout(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - time.monotonic())

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()

    def _after(self, seconds: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(time.monotonic() + seconds, callback)
        heapq.heappush(self._timers, (timer.deadline, next(self._seq), timer))
        return timer

    # -- accepting ----------------------------------------------------------
    def _on_accept(self, mask: int) -> None:
        while self._listening:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cannot accept more connections (%s); waiting for one to close",
                                e.strerror)
                    self._sel.unregister(self.listener)
                    self._listening = False
                    return
                if e.errno in (errno.ECONNABORTED, errno.EINTR):
                    continue
                raise
            sock.setblocking(False)
            pid, uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                           _PEERCRED.size))
            conn = _Conn(sock, pid, uid)
            self._conns.add(conn)
            self._sel.register(sock, selectors.EVENT_READ, lambda m, c=conn: self._on_conn(c, m))
            if uid != self._uid:
                log.warning("refused a connection from pid %d, uid %d: this server serves uid %d only",
                            pid, uid, self._uid)
                self._reply(conn, Error(errno.EACCES, f"permission denied: this server accepts "
                                                      f"connections from uid {self._uid} only"))
                continue
            conn.timer = self._after(self.request_timeout, lambda c=conn: self._request_timed_out(c))
            self._read_request(conn)    # a launcher sends its request with the connect: often here

    def _request_timed_out(self, conn: _Conn) -> None:
        """Read what has arrived before judging: under load the loop can be
        busy past a deadline while a request that came in time waits in the
        socket.  Only what is already buffered is read (at most one frame),
        so a peer that trickles bytes gains nothing."""
        readable = select.poll()
        readable.register(conn.sock, select.POLLIN)
        while conn in self._conns and conn.state == "request":
            if not readable.poll(0):
                self._drop(conn, f"no complete request within {self.request_timeout:g} s")
                return
            self._read_request(conn)

    def _resume_accepting(self) -> None:
        if not self._listening and not self._stopping:
            self._listening = True
            self._sel.register(self.listener, selectors.EVENT_READ, self._on_accept)

    # -- connections ----------------------------------------------------------
    def _on_conn(self, conn: _Conn, mask: int) -> None:
        if conn not in self._conns:     # closed earlier in this batch of events
            return
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
        if mask & selectors.EVENT_READ and conn in self._conns:
            if conn.state == "request":
                self._read_request(conn)
            else:
                self._read_after_request(conn)

    def _read_request(self, conn: _Conn) -> None:
        """Read what has arrived (at most one frame: the reader stops there),
        without a round through select per header and payload."""
        try:
            got = None
            while got is None:
                got = conn.reader.receive(conn.sock)
        except BlockingIOError:
            return
        except PeerClosed as e:
            if e.partial:
                self._drop(conn, "connection closed in the middle of a request")
            else:
                log.debug("%s closed its connection without a request", conn.describe())
                self._close(conn)
            return
        except ProtocolError as e:
            self._drop(conn, str(e), tell=True)
            return
        except OSError as e:
            self._drop(conn, f"receive failed: {e.strerror}")
            return
        if got is None:
            return
        message, fds = got
        if conn.timer is not None:
            conn.timer.cancel()
        if isinstance(message, Spawn):
            self._spawn(conn, message, fds)
        elif isinstance(message, ListPrograms):
            self._reply(conn, Programs(*self._program_list()))
        elif isinstance(message, Kill):
            self._reply(conn, Killed([(pid, self._kill(pid, message.signal)) for pid in message.pids]))
        elif isinstance(message, Debug):
            self._reply(conn, self._debug_info(message.pid))
        elif isinstance(message, Stop):
            log.info("stop requested by pid %d", conn.pid)
            conn.state = "reply"
            self._stoppers.append(conn)
            self._begin_stop(message.grace_ms / 1000)

    def _read_after_request(self, conn: _Conn) -> None:
        """After its request a client sends nothing; EOF means it is gone."""
        try:
            data = conn.sock.recv(1)   # descriptors sent now are discarded by the kernel
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if conn.state == "running":
            if data:
                log.warning("dropped connection from %s: data after SPAWN", conn.describe())
            self._launcher_gone(conn)
        elif data:
            log.warning("dropped connection from %s: data after its request", conn.describe())
        self._close(conn)

    def _drop(self, conn: _Conn, reason: str, tell: bool = False) -> None:
        log.warning("dropped connection from %s: %s", conn.describe(), reason)
        if conn.state == "running":
            self._launcher_gone(conn)
        if tell:   # best effort, never waits
            try:
                conn.sock.send(Error(errno.EPROTO, f"protocol error: {reason}").encode(),
                               socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
            except OSError:
                pass
        self._close(conn)

    def _reply(self, conn: _Conn, message: Message, fds=(), close: bool = True) -> None:
        conn.writer.add(message, fds)
        if close:
            conn.state = "reply"
            conn.close_when_flushed = True
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            done = conn.writer.flush(conn.sock)
        except OSError as e:
            if conn.state == "running":
                self._launcher_gone(conn)
            log.debug("%s: send failed (%s)", conn.describe(), e.strerror)
            self._close(conn)
            return
        if done and conn.close_when_flushed:
            self._close(conn)
            return
        if done != (not conn.writing):
            conn.writing = not done
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.writing else 0)
            self._sel.modify(conn.sock, events, self._sel.get_key(conn.sock).data)

    def _close(self, conn: _Conn) -> None:
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        if conn.timer is not None:
            conn.timer.cancel()
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.reader.discard()
        conn.writer.discard()
        conn.sock.close()
        conn.state = "closed"
        self._resume_accepting()

    # -- requests -----------------------------------------------------------------
    def _spawn(self, conn: _Conn, req: Spawn, fds: list[int]) -> None:
        if self._stopping:
            close_fds(fds)
            self._reply(conn, Error(errno.ESHUTDOWN, "the server is stopping"))
            return
        try:
            rlimits = self._rlimits(req.rlimits)
            stack = rlimits.get(resource.RLIMIT_STACK, resource.getrlimit(resource.RLIMIT_STACK))[0]
            check_exec_sizes(req.argv, req.env, RLIM_INFINITY if stack < 0 else stack)
            nice, nice_warning = self._nice(req.nice, rlimits)
            with warnings.catch_warnings(record=True) as caught:   # the launcher is told instead
                warnings.simplefilter("always", SetuidIgnoredWarning)
                popen = self.space.Popen(
                    req.argv, stdin=fds[0], stdout=fds[1], stderr=fds[2], cwd=req.cwd,
                    env=EnvironmentStrings(req.env), start_new_session=True, umask=req.umask,
                    ignored_signals=req.ignored, rlimits=rlimits, nice=nice,
                    cpu_affinity=req.cpus or None)
        except OSError as e:
            filename = e.filename if e.filename is not None else req.argv[0]
            log.debug("spawn of %s for %s failed: %s", _shown([req.argv[0]]), conn.describe(),
                      printable(str(e)))
            self._reply(conn, Error(e.errno or errno.EIO, e.strerror or str(e), os.fsencode(filename)))
            return
        except (ValueError, TypeError) as e:
            self._reply(conn, Error(errno.EINVAL, str(e), req.argv[0]))
            return
        except Exception as e:  # a bug must not take the server down
            log.exception("spawn of %r failed", req.argv[0])
            self._reply(conn, Error(errno.EIO, f"internal error: {e}", req.argv[0]))
            return
        finally:
            close_fds(fds)
        program = _Program(popen, conn.pid, conn)
        self._programs[popen.pid] = program
        conn.program, conn.state = program, "running"
        if log.isEnabledFor(logging.DEBUG):   # escaping a command line costs more than a spawn's decoding
            log.debug("spawned pid %d for launcher %d: %s", popen.pid, conn.pid, _shown(req.argv))
        if nice_warning:
            log.warning("pid %d for launcher %d: %s", popen.pid, conn.pid, nice_warning)
            self._reply(conn, LauncherWarning(nice_warning), close=False)
        for caught_warning in caught:
            self._pass_on_warning(conn, popen.pid, caught_warning)
        pidfd = _pidfd_of(popen)
        if pidfd is not None:
            self._reply(conn, Started(popen.pid), [pidfd], close=False)
        popen.add_exit_callback(lambda _p, prog=program: self._queue_exit(prog))

    def _pass_on_warning(self, conn: _Conn, pid: int, caught: warnings.WarningMessage) -> None:
        """Log a warning of the spawn; one about the program goes to its launcher too."""
        text = printable(str(caught.message))
        log.warning("pid %d for launcher %d: %s", pid, conn.pid, text)
        if issubclass(caught.category, SetuidIgnoredWarning):
            self._reply(conn, LauncherWarning(text), close=False)

    def _rlimits(self, wanted: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
        """The launcher's limits, in resource's convention, hard ones capped at ours."""
        result = {}
        for res, (soft, hard) in wanted.items():
            soft, hard = (-1 if soft == RLIM_INFINITY else soft), (-1 if hard == RLIM_INFINITY else hard)
            ours = self._hard_limits.get(res)
            if ours is None:
                continue    # a resource this kernel/Python does not know
            if ours != -1 and (hard == -1 or hard > ours) and os.geteuid() != 0:
                hard = ours
                soft = hard if soft == -1 else min(soft, hard)
            result[res] = (soft, hard)
        return result

    def _nice(self, wanted: int, rlimits: dict[int, tuple[int, int]]) -> tuple[int, str | None]:
        """The launcher's nice value if the program may have it, else the
        server's and why.  Lowering it takes CAP_SYS_NICE or an RLIMIT_NICE
        (the program's, set before it) of at least 20 - nice: setpriority's
        own rule."""
        own = os.getpriority(os.PRIO_PROCESS, 0)
        if wanted >= own or self._cap_sys_nice:
            return wanted, None
        soft = rlimits.get(resource.RLIMIT_NICE, resource.getrlimit(resource.RLIMIT_NICE))[0]
        if soft == -1 or 20 - wanted <= soft:
            return wanted, None
        return own, (f"runs at nice {own}, the server's, not the launcher's {wanted}: the server "
                     "may not lower it (that takes CAP_SYS_NICE or RLIMIT_NICE)")

    def _queue_exit(self, program: _Program) -> None:
        """Reaper thread: hand the exit to the loop."""
        self._exits.put(program)
        with self._wake_lock:
            if self._wake >= 0:       # after serve() the exit is nobody's business
                os.eventfd_write(self._wake, 1)

    def _on_wake(self, mask: int) -> None:
        try:
            os.eventfd_read(self._wake)
        except BlockingIOError:
            pass
        while True:
            try:
                program = self._exits.get_nowait()
            except queue.Empty:
                break
            popen, conn = program.popen, program.conn
            self._programs.pop(popen.pid, None)
            log.debug("pid %d exited: %s", popen.pid, _describe_status(popen.returncode))
            if conn is not None and conn.state == "running":
                program.conn = None
                self._reply(conn, Exited(popen.returncode))
        self._check_stopped()

    def _launcher_gone(self, conn: _Conn) -> None:
        program, conn.program = conn.program, None
        conn.state = "reply"
        if program is None or program.conn is not conn:
            return
        program.conn, program.launcher_pid = None, None
        if program.popen.poll() is None:
            log.debug("launcher %d of pid %d went away: SIGHUP", conn.pid, program.popen.pid)
            program.popen.send_signal(signal.SIGHUP)
            program.popen.send_signal(signal.SIGCONT)

    def _program_list(self) -> tuple[list[ProgramInfo], bool]:
        infos, size = [], 0
        for pid, program in sorted(self._programs.items()):
            args = _cut_args(program.popen.args)
            size += 45 + sum(4 + len(a) for a in args)
            if size > Programs.MAX_PAYLOAD - 64 or len(infos) == (1 << 16):
                return infos, True
            ranges = program.popen.mappings()
            infos.append(ProgramInfo(pid, program.launcher_pid, _proc_state(pid),
                                     program.popen.start_time, args,
                                     sum(end - start for start, end in ranges), resident(ranges)))
        return infos, False

    def _debug_info(self, pid: int) -> Message:
        program = self._programs.get(pid)
        try:
            if program is None:
                raise ProcessLookupError
            target = program.popen.debug_target()
        except ProcessLookupError:
            return Error(errno.ESRCH, f"{pid}: no such program in this space", b"")
        except LookupError as e:   # exec'd: no longer in the space
            return Error(errno.EINVAL, str(e), b"")
        return DebugInfo(pid, os.fsencode(target.executable), target.r_debug, target.bias)

    def _kill(self, pid: int, sig: int) -> int:
        program = self._programs.get(pid)
        if program is None or program.popen.poll() is not None:
            return errno.ESRCH
        if sig:
            log.debug("signal %d to pid %d (kill request)", sig, pid)
            program.popen.send_signal(sig)
        return 0

    # -- stopping -------------------------------------------------------------------
    def _on_signal(self, mask: int) -> None:
        try:
            data = os.read(self._signal_fd, 64)
        except BlockingIOError:
            return
        for signum in data:
            log.info("got %s: stopping", signal.Signals(signum).name)
            self._begin_stop(self.grace)

    def _begin_stop(self, grace: float) -> None:
        if self._stopping:
            self._check_stopped()
            return
        self._stopping = True
        self._stop_count = len(self._programs)
        log.info("stopping: %d programs get SIGTERM, SIGKILL after %g s", self._stop_count, grace)
        self._close_listener()
        for program in list(self._programs.values()):
            program.popen.send_signal(signal.SIGTERM)
            program.popen.send_signal(signal.SIGCONT)
        if self._programs:
            self._after(grace, self._kill_all)
        self._check_stopped()

    def _kill_all(self) -> None:
        if self._programs:
            log.info("grace period over: SIGKILL to %d programs", len(self._programs))
        for program in list(self._programs.values()):
            program.popen.send_signal(signal.SIGKILL)

    def _check_stopped(self) -> None:
        if not self._stopping or self._programs or self._finished:
            return
        self._finished = True
        log.info("stopped")
        for conn in self._stoppers:
            if conn in self._conns:
                self._reply(conn, Stopped(self._stop_count))
        for conn in list(self._conns):
            if conn not in self._stoppers and not conn.writer:
                self._close(conn)
        self._after(FLUSH_AT_EXIT, self._give_up_flushing)

    def _give_up_flushing(self) -> None:
        for conn in list(self._conns):
            self._close(conn)

    def _close_listener(self) -> None:
        if self.listener.fileno() < 0:
            return
        if self._listening:
            self._sel.unregister(self.listener)
            self._listening = False
        self.listener.close()
        if self._listener_id is not None and _identity(self.socket_path) == self._listener_id:
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass


# -- helpers -------------------------------------------------------------------------
def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _all_rlimits() -> list[int]:
    return [getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")]


def _pidfd_of(popen) -> int | None:
    """A pidfd of our own for the program, or None if it is already reaped.

    pidfd_open by pid is safe here: if the program is still unreaped after
    the open, the pid named it (and not a reused pid) when it was opened.
    """
    try:
        fd = os.pidfd_open(popen.pid)
    except OSError:
        return None
    if popen.poll() is not None:
        os.close(fd)
        return None
    return fd


def _shown(argv: list[bytes]) -> str:
    """A command line for the log: a client's bytes must not forge log lines."""
    return printable(" ".join(os.fsdecode(a) for a in argv))


def _cut_args(args) -> list[bytes]:
    """The command line for ps, within PROGRAMS' bounds (MAX_PS_ARGS)."""
    result, size = [], 0
    for arg in ([args] if isinstance(args, (str, bytes)) else args):
        if len(result) == MAX_PS_ARGS // 4:
            break
        arg = os.fsencode(arg)
        room = MAX_PS_ARGS - size
        if len(arg) > room:
            result.append(arg[:room])
            break
        result.append(arg)
        size += len(arg)
    return result


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return chr(stat[stat.rindex(b")") + 2])
    except (OSError, ValueError, IndexError):
        return "?"


def _describe_status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"
