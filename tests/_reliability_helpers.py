"""What the reliability tests measure in a server, and a client that spawns
programs through the protocol without a launcher process per program.

The figures come from /proc: descriptors (/proc/PID/fd), mappings
(/proc/PID/maps lines), RSS and virtual size (/proc/PID/status), and the
server's children (every /proc/N/stat whose parent is the server).
"""
from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import dataclass
from typing import Callable

from _server_helpers import TIMEOUT

MIB = 2**20


@dataclass(frozen=True)
class Footprint:
    fds: int
    maps: int
    rss_kib: int
    vm_kib: int


def status_field(pid: int, name: str) -> int:
    """A "Name:   N kB" field of /proc/PID/status, as an int."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(f"/proc/{pid}/status has no {name}")


def map_count(pid: int) -> int:
    with open(f"/proc/{pid}/maps", "rb") as f:
        return f.read().count(b"\n")


def footprint(pid: int) -> Footprint:
    return Footprint(len(os.listdir(f"/proc/{pid}/fd")), map_count(pid),
                     status_field(pid, "VmRSS"), status_field(pid, "VmSize"))


def _answered(socket_path: str) -> None:
    """A LIST on a new connection, read until the server closes it."""
    from sameprocess._server.framing import send_frame
    from sameprocess._server.protocol import ListPrograms

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(socket_path)
        send_frame(sock, ListPrograms(), [])
        while sock.recv(65536):
            pass


def answered_footprint(srv) -> Footprint:
    """The footprint of the server `srv` (a ServerProc) once it has dealt
    with everything that happened before this call.

    The server is one selector thread.  It closes a connection right after
    the reply that ends it (EXITED, PROGRAMS...), and when the peer hangs up;
    a launcher that has exited hung up before this call connects.  A LIST on
    a new connection is read only after the selector has handled all of
    that, and the server closing this connection (EOF here) means its own
    descriptor is gone too.  The space gives a program's images back before
    EXITED is sent.  So one sample after the round trip is final: nothing to
    poll for.
    """
    _answered(srv.path)
    return footprint(srv.pid)


def checked_footprint(srv, ok: Callable[[Footprint], bool], what: str) -> Footprint:
    """answered_footprint(srv), which must satisfy ok()."""
    current = answered_footprint(srv)
    if not ok(current):
        raise AssertionError(f"{what}: the server is at {current}")
    return current


def holds_mem_fd(pid: int) -> bool:
    """Whether `pid` has opened its /proc/self/mem (the space opens it at the
    first reclaim, for safe reads of dead programs' link maps, and keeps it)."""
    fd_dir = f"/proc/{pid}/fd"
    return any(os.readlink(f"{fd_dir}/{fd}") == f"/proc/{pid}/mem" for fd in os.listdir(fd_dir))


def baseline_footprint(srv) -> Footprint:
    """The baseline of an idle server after its warm-up runs.  A server
    whose space keeps a ledger opens nothing lazily; one without (the
    fallback) opens /proc/self/mem at its first reclaim (holds_mem_fd)."""
    current = answered_footprint(srv)
    assert holds_mem_fd(srv.pid) or has_keeper_task(srv.pid), \
        "the warm-up runs did not reclaim a program"
    return current


def has_keeper_task(pid: int) -> bool:
    """Whether `pid` hosts a space with a ledger: its keeper task is a child."""
    return any(comm == KEEPER_COMM for _, comm, _ in _children(pid))


KEEPER_COMM = b"sp-keeper"


def _children(pid: int):
    """(pid, comm, state) of every process whose parent is `pid`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue          # exited while we looked
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(fields[1]) == pid:
            yield int(entry), stat[stat.index(b"(") + 1:stat.rindex(b")")], fields[0].decode()


def children_of(pid: int) -> dict[int, str]:
    """Every process whose parent is `pid`: {pid: state} (Z for a zombie).

    The space's keeper task (comm "sp-keeper"), a child of every host with
    a ledger, is not a program and is left out."""
    return {child: state for child, comm, state in _children(pid) if comm != KEEPER_COMM}


def signal_mask(pid: int, name: str) -> set[int]:
    """The signals in a mask line of /proc/PID/status (SigBlk, ShdPnd, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                bits = int(line.split()[1], 16)
                return {n for n in range(1, 65) if bits & (1 << (n - 1))}
    raise KeyError(f"/proc/{pid}/status has no {name}")


class SpawnClient:
    """One SPAWN connection, as a launcher makes it, held by the test itself.

    A launcher process costs ~80 ms of CPU to start; this makes holding a
    thousand programs (or a long run of spawns) cheap while the server sees
    exactly the requests and the hang-ups a launcher would make.
    """

    def __init__(self, socket_path: str, argv: list[str], fds: tuple[int, int, int],
                 env: dict[str, str] | None = None) -> None:
        from sameprocess._server.framing import send_frame
        from sameprocess._server.protocol import Spawn

        self.argv = argv
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(socket_path)
        env = os.environ if env is None else env
        request = Spawn([os.fsencode(a) for a in argv],
                        [os.fsencode(f"{k}={v}") for k, v in env.items()], b"/")
        send_frame(self.sock, request, list(fds))
        self.pid: int | None = None
        self._early_exit = None

    def started(self) -> int | None:
        """Wait for STARTED; return the program's pid (its pidfd is closed).

        None when EXITED came first (SPAWN -> EXITED: the program was reaped
        before the server could open a pidfd); exited() then returns it.
        """
        from sameprocess._server.protocol import Exited, Started

        message = self._receive()
        if isinstance(message, Exited):
            self._early_exit = message
            return None
        if not isinstance(message, Started):
            raise AssertionError(f"{self.argv[0]}: expected STARTED, got {message!r}")
        self.pid = message.pid
        return message.pid

    def exited(self) -> int:
        """Wait for EXITED; return its code (-N: signal N) and close."""
        from sameprocess._server.protocol import Exited

        message = self._early_exit or self._receive()
        self.close()
        if not isinstance(message, Exited):
            raise AssertionError(f"{self.argv[0]}: expected EXITED, got {message!r}")
        return message.returncode

    def close(self) -> None:
        self.sock.close()

    def _receive(self):
        from sameprocess._server.framing import FrameReader, close_fds
        from sameprocess._server.protocol import REPLIES

        reader = FrameReader(REPLIES)
        deadline = time.monotonic() + TIMEOUT
        while True:
            if not select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise AssertionError(f"{self.argv[0]}: no reply within {TIMEOUT} s")
            got = reader.receive(self.sock)
            if got is not None:
                message, fds = got
                close_fds(fds)
                return message
