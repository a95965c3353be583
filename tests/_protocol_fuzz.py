"""Hostile clients of a live server: conversations, descriptors of every kind,
and the server's own accounting (descriptors, mappings) before and after.

A conversation is a list of chunks, each some bytes and the descriptors
attached to it, sent on one connection; then the client half-closes, or
closes at once.  tests/test_fuzz_protocol.py draws conversations with
hypothesis; scripts/fuzz.py --protocol draws them with random.Random.
Either way the client then reads what the server says until it closes the
connection (it must, within REPLY_TIMEOUT) and closes every descriptor it
received (a STARTED carries a pidfd).
"""
from __future__ import annotations

import array
import errno
import os
import socket
import struct
import subprocess
from pathlib import Path

from sameprocess._server import protocol as P
from sameprocess._server.framing import FrameReader, PeerClosed

REPLY_TIMEOUT = 30.0

# A program that maps nothing at run time (no libc, no heap): each run leaves
# the server exactly as it was.  Writes "probe\n" to fds 1 and 2 and exits
# with bit 0 set if the first write failed, bit 1 if the second did.
PROBE_C = r"""
static long sys3(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile ("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
void _start(void)
{
    static const char msg[] = "probe\n";
    long status = (sys3(1, 1, (long)msg, 6) < 0) | ((sys3(1, 2, (long)msg, 6) < 0) << 1);
    sys3(60, status, 0, 0);
    for (;;) {}
}
"""


def build_probe(directory: Path) -> str:
    src, exe = directory / "probe.c", directory / "probe"
    src.write_text(PROBE_C)
    subprocess.run(["gcc", "-O2", "-nostdlib", "-static-pie", "-fPIE", "-fno-stack-protector",
                    "-o", str(exe), str(src)], check=True, capture_output=True)
    return str(exe)


# -- descriptors of every kind ---------------------------------------------------
FD_KINDS = ("devnull", "pipe_write", "pipe_read", "closed_pipe_write", "closed_pipe_read",
            "directory", "socket", "closed_socket", "listening_socket", "eventfd", "pidfd",
            "o_path", "memfd", "epoll", "the_connection")


class FdFactory:
    """Makes descriptors of one kind; every descriptor it made is closed by close()."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.mine: list[int] = []      # ours to close after sending
        self.keep: list[int] = []      # peers kept open while the program runs

    def make(self, kind: str, conn: socket.socket) -> int:
        fd = getattr(self, "_" + kind)(conn)
        if kind != "the_connection":
            self.mine.append(fd)
        return fd

    def _devnull(self, conn) -> int:
        return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)

    def _pipe_write(self, conn) -> int:
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.keep.append(r)          # a reader, so writes succeed
        return w

    def _pipe_read(self, conn) -> int:
        r, w = os.pipe2(os.O_CLOEXEC)
        self.keep.append(w)
        return r

    def _closed_pipe_write(self, conn) -> int:
        r, w = os.pipe2(os.O_CLOEXEC)
        os.close(r)                  # writing gets SIGPIPE / EPIPE
        return w

    def _closed_pipe_read(self, conn) -> int:
        r, w = os.pipe2(os.O_CLOEXEC)
        os.close(w)                  # reading gets EOF at once
        return r

    def _directory(self, conn) -> int:
        return os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def _socket(self, conn) -> int:
        a, b = socket.socketpair()
        self.keep.append(b.detach())
        return a.detach()

    def _closed_socket(self, conn) -> int:
        a, b = socket.socketpair()
        b.close()
        return a.detach()

    def _listening_socket(self, conn) -> int:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind("")                   # an autobound abstract name
        s.listen()
        return s.detach()

    def _eventfd(self, conn) -> int:
        return os.eventfd(0, os.EFD_CLOEXEC)

    def _pidfd(self, conn) -> int:
        return os.pidfd_open(os.getpid())

    def _o_path(self, conn) -> int:
        return os.open(self.directory, os.O_PATH | os.O_CLOEXEC)

    def _memfd(self, conn) -> int:
        return os.memfd_create("fuzz", os.MFD_CLOEXEC)

    def _epoll(self, conn) -> int:
        import select
        ep = select.epoll()
        fd = os.dup(ep.fileno())
        ep.close()
        return fd

    def _the_connection(self, conn) -> int:
        return conn.fileno()         # the connection sent through itself

    def close_sent(self) -> None:
        for fd in self.mine:
            os.close(fd)
        self.mine = []

    def close(self) -> None:
        self.close_sent()
        for fd in self.keep:
            os.close(fd)
        self.keep = []


# -- frames ---------------------------------------------------------------------------
def sample_messages(probe: str) -> list[P.Message]:
    """One valid message of every type, both directions."""
    out = [P.Spawn([probe.encode()], [b"PATH=/bin"], b"/"),
           P.Spawn([probe.encode(), b"arg"], [b"A=1"], b"/tmp", 0o077, frozenset({1, 15}), {7: (64, 128)}),
           P.Spawn([b"/nonexistent/program"], [], b"/"),
           P.ListPrograms(), P.Kill(15, [1, os.getpid()]), P.Kill(0, [2 ** 31 - 1]),
           P.Started(os.getpid()), P.Exited(-9), P.Exited(0),
           P.Error(errno.ENOENT, "no", b"file"), P.Killed([(1, 0)]), P.Stopped(2),
           P.Programs([P.ProgramInfo(1, 2, "S", 0.0, [b"x"])], truncated=False)]
    if hasattr(P, "LauncherWarning"):
        out.append(P.LauncherWarning("a warning"))
    if hasattr(P, "Debug"):
        out += [P.Debug(os.getpid()), P.DebugInfo(1, b"/bin/x", 0x1000, 0)]
    return out


def mutate(data: bytes, how: str, at: int, value: int) -> bytes:
    """One kind of damage to an encoded frame."""
    if not data:
        return data
    at %= len(data)
    if how == "truncate":
        return data[:at]
    if how == "flip":
        return data[:at] + bytes([data[at] ^ (1 << (value % 8))]) + data[at + 1:]
    if how == "byte":
        return data[:at] + bytes([value & 0xFF]) + data[at + 1:]
    if how == "length":
        return data[:8] + struct.pack("!I", value & 0xFFFFFFFF) + data[12:]
    if how == "type":
        return data[:5] + bytes([value & 0xFF]) + data[6:]
    if how == "junk_after":
        return data + bytes([value & 0xFF]) * (1 + at % 64)
    if how == "oversized":
        limit = P.Spawn.MAX_PAYLOAD if data[5] == P.MsgType.SPAWN else 64 << 10
        return data[:8] + struct.pack("!I", limit + 1 + value % 1000) + data[12:]
    return data


MUTATIONS = ("none", "truncate", "flip", "byte", "length", "type", "junk_after", "oversized")


# -- one conversation -------------------------------------------------------------------
def converse(path: str, chunks: list[tuple[bytes, list[str]]], factory: FdFactory,
             ending: str = "half_close") -> list[P.Message]:
    """Send `chunks` (bytes, fd kinds) on one connection, then end it:
      half_close   shut our side down, read replies until the server closes;
      launcher     read like a launcher (until EXITED or ERROR or EOF), close;
      close        close at once (replies: []).
    A launcher-like ending is the only one that sees a program's EXITED: the
    other two tell the server the launcher is gone."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(REPLY_TIMEOUT)
    try:
        conn.connect(path)
        for data, kinds in chunks:
            fds = [factory.make(k, conn) for k in kinds]
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            try:
                conn.sendmsg([data or b"\0"] if anc else [data], anc)
            except (BrokenPipeError, ConnectionResetError):
                break                        # the server already dropped us
            finally:
                factory.close_sent()
        if ending == "close":
            return []
        if ending == "half_close":
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return read_replies(conn, until_exit=ending == "launcher")
    finally:
        conn.close()
        factory.close()


def read_replies(conn: socket.socket, until_exit: bool = False) -> list[P.Message]:
    """Replies until the server closes (or, `until_exit`, sends EXITED or
    ERROR); a silent server past the deadline is a hang."""
    reader, out = FrameReader(P.REPLIES), []
    while True:
        try:
            got = reader.receive(conn)
        except (PeerClosed, ConnectionResetError):
            return out
        except socket.timeout:
            raise AssertionError(f"the server did not close the connection within {REPLY_TIMEOUT} s "
                                 f"(replies so far: {out})") from None
        except P.ProtocolError as e:
            raise AssertionError(f"the server sent a broken frame: {e}") from None
        if got is not None:
            message, fds = got
            for fd in fds:
                os.close(fd)
            out.append(message)
            if until_exit and isinstance(message, (P.Exited, P.Error)):
                return out


# The server is a Python process: pymalloc's 1 MiB arenas are mmap'd and
# freed as objects come and go, and its malloc grows by 1 MiB heap segments
# that are never trimmed (the space turns trimming off; see
# docs/architecture.md, "The program break").  Both are anonymous
# read-write mappings, so their number may drift by this much; every other
# mapping must be exactly as it was.
ANON_RW_DRIFT = 2


def descriptor_links(pid: int) -> dict[str, str]:
    """A process's descriptors, each with what it refers to (readlink)."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            pass
    return out


def sockets(pid: int) -> set[str]:
    """The server's descriptors that are sockets or pidfds, before any
    connection: its listener, and its space's keeper (socket and pidfd)."""
    return {fd for fd, target in descriptor_links(pid).items()
            if target.startswith("socket:") or target == "anon_inode:[pidfd]"}


def quiet(pid: int, listening: set[str]) -> bool:
    """No connection open and no program's pidfd held: the server is idle."""
    return sockets(pid) == listening


class Accounting:
    """A server's descriptors and mappings at one moment."""

    def __init__(self, pid: int) -> None:
        self.fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/maps") as f:
            lines = [line.split(None, 5) for line in f]
        self.anon_rw = sum(1 for m in lines if m[1] == "rw-p" and len(m) == 5)
        # " (deleted)": a library rebuilt on disk while the server runs is the same mapping.
        self.fixed = sorted(" ".join(m).removesuffix(" (deleted)\n") for m in lines
                            if not (m[1] == "rw-p" and len(m) == 5))
        self.lines = len(lines)

    def differences(self, baseline: "Accounting") -> list[str]:
        """What differs from `baseline` beyond the allowed drift."""
        out = []
        if self.fds != baseline.fds:
            out.append(f"{self.fds} descriptors, {baseline.fds} at the baseline")
        if self.fixed != baseline.fixed:
            new = sorted(set(self.fixed) - set(baseline.fixed))
            gone = sorted(set(baseline.fixed) - set(self.fixed))
            out.append(f"mappings new: {new[:6]}, gone: {gone[:6]}")
        if abs(self.anon_rw - baseline.anon_rw) > ANON_RW_DRIFT:
            out.append(f"{self.anon_rw} anonymous read-write mappings, {baseline.anon_rw} at the baseline")
        return out

    def __repr__(self) -> str:
        return f"Accounting(fds={self.fds}, maps={self.lines}, anon_rw={self.anon_rw})"
