"""Who owns which memory of the space: the keeper task and its ledger.

A program's memory must die with it, but the kernel does not record which
task of an mm created which mapping.  So the space records it while the
program runs (docs/architecture.md, "Reclaiming a program's memory"):

* each program starts with a seccomp filter (built here) that turns mmap,
  munmap and mremap into user notifications on a listener of its own, when
  the call comes from the space's code window or from an image the host
  mapped for it;
* the keeper (_native/keeper.c), one CLONE_VM task started once per host
  process, makes each such call itself (same mm), places mappings that name
  no address in the window, and records the range under the program;
* when the program is reaped, reclaim() unmaps everything it owns.

Descendants that exec run their code outside the window (a fresh mm puts
nothing there), so their calls never notify; a fork without exec notifies
and is let through after a kcmp check.  Python decides (window, filter,
ids, when to reclaim); the keeper executes.
"""
from __future__ import annotations

import ctypes
import errno
import itertools
import logging
import os
import platform
import socket
import struct
import threading

from . import _mm, _native
from ._errors import SpaceError

log = logging.getLogger("sameprocess")

MACHINE = platform.machine()
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[MACHINE]
SYS_MMAP, SYS_MUNMAP, SYS_MREMAP = {"x86_64": (9, 11, 25), "aarch64": (222, 215, 216)}[MACHINE]
SYS_SECCOMP, SYS_KCMP, SYS_PIDFD_GETFD = {"x86_64": (317, 312, 438), "aarch64": (277, 272, 438)}[MACHINE]

REGISTER, LISTENER, RECLAIM, QUERY = 1, 2, 3, 4
MAX_REGIONS = 4
# struct sp_keeper_msg: kind, n_regions (u32); id (u64); pid (i64); buf,
# buf_len (u64); regions[8] (u64); flags (u64).  struct sp_keeper_reply:
# id, result, bytes, pad.
KEEPER_MSG = struct.Struct("<IIQqQQ8QQ")
ADDRESS_LIMIT = 0x1
KEEPER_REPLY = struct.Struct("<QqQQ")
# struct sp_keeper, the part the host fills: window_lo, window_hi, stack,
# stack_size, slots, entries (u64); n_slot_cap, pad (u32); entry_cap (u64);
# control_fd, host_pid (i32).  The counters start at COUNTERS_AT.
KEEPER_HEAD = struct.Struct("<6QIIQii")
COUNTERS_AT = 104
COUNTERS = ("notifications", "continued", "untracked", "reclaimed", "ledger_full", "slots_used")
SLOT_SIZE, ENTRY_SIZE = 32, 24
SLOTS = 16384                # programs (and their forked descendants) at once
SLOTS_SPARE = 64             # enrolments of other threads that may be in flight
ENTRIES = 4 << 20            # recorded ranges at once, all programs together
KEEPER_STACK = 256 << 10

# seccomp
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_RET_USER_NOTIF, SECCOMP_RET_ALLOW = 0x7FC00000, 0x7FFF0000
KCMP_VM = 1
MIN_KERNEL = (5, 19)  # SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV


# -- can this kernel do it? -----------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(*args: int) -> int:
    r = _libc.syscall(*(ctypes.c_long(a) for a in args))
    return -ctypes.get_errno() if r == -1 else r


def unsupported_reason() -> str | None:
    """None if the kernel has all the ledger needs, else what it lacks."""
    release = platform.release().split("-")[0].split(".")
    try:
        version = (int(release[0]), int(release[1]))
    except (ValueError, IndexError):
        return f"cannot read the kernel version from {platform.release()!r}"
    if version < MIN_KERNEL:
        return f"kernel {platform.release()} is older than 5.19 (seccomp WAIT_KILLABLE_RECV)"
    action = ctypes.c_uint32(SECCOMP_RET_USER_NOTIF)
    if _syscall(SYS_SECCOMP, SECCOMP_GET_ACTION_AVAIL, 0, ctypes.addressof(action)) != 0:
        return "seccomp user notification is not available"
    if _syscall(SYS_KCMP, os.getpid(), os.getpid(), KCMP_VM, 0, 0) != 0:
        return "kcmp(KCMP_VM) is not available (CONFIG_KCMP)"
    if _syscall(SYS_PIDFD_GETFD, -1, 0, 0) == -errno.ENOSYS:
        return "pidfd_getfd is not available"
    return None


# -- the filter -------------------------------------------------------------------

_INSN = struct.Struct("<HBBI")
_LD_W_ABS, _JEQ_K, _JGT_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x25, 0x35, 0x45, 0x06
_NR, _ARCH, _IP_LO, _IP_HI, _ARG3_LO = 0, 4, 8, 12, 40
MAP_FIXED = 0x10


class _Bpf:
    """A classic-BPF program with forward jumps to named labels."""

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def load(self, offset: int) -> None:
        self.code.append((_LD_W_ABS, 0, 0, offset))

    def jump(self, op: int, k: int, jt: object = 0, jf: object = 0) -> None:
        self.code.append((op, jt, jf, k))

    def ret(self, value: int) -> None:
        self.code.append((_RET_K, 0, 0, value))

    def assemble(self) -> bytes:
        out = []
        for i, (op, jt, jf, k) in enumerate(self.code):
            offsets = [self.labels[t] - i - 1 if isinstance(t, str) else t for t in (jt, jf)]
            assert all(0 <= o < 256 for o in offsets), (i, offsets)
            out.append(_INSN.pack(op, offsets[0], offsets[1], k & 0xFFFFFFFF))
        return b"".join(out)


def _jump_if_at_least(bpf: _Bpf, value: int, at_least: str, below: str) -> None:
    """Jump to `at_least` if ip >= value, else to `below` (a 64-bit compare
    in 32-bit halves: 5 instructions, the high half's k at +1 and +2, the
    low half's at +4)."""
    bpf.load(_IP_HI)
    bpf.jump(_JGT_K, value >> 32, at_least, 0)
    bpf.jump(_JEQ_K, value >> 32, 0, below)
    bpf.load(_IP_LO)
    bpf.jump(_JGE_K, value & 0xFFFFFFFF, at_least, below)


def _jump_if_inside(bpf: _Bpf, lo: int, hi: int, inside: str, name: str) -> list[tuple[int, str]]:
    """Jump to `inside` if lo <= ip < hi.
    Returns where each half of lo and hi went: (instruction, "lo_hi"...)."""
    above, outside = f"{name}.above", f"{name}.out"
    start = len(bpf.code)
    _jump_if_at_least(bpf, lo, above, outside)
    bpf.label(above)
    _jump_if_at_least(bpf, hi, outside, inside)
    bpf.label(outside)
    return [(start + i, half) for i, half in ((1, "lo_hi"), (2, "lo_hi"), (4, "lo_lo"),
                                             (6, "hi_hi"), (7, "hi_hi"), (9, "hi_lo"))]


class FilterTemplate:
    """The ledger's filter for programs with n image ranges besides the
    window, assembled once; each spawn only writes its ranges' bounds in."""

    def __init__(self, window: tuple[int, int], n_images: int, fixed_too: bool) -> None:
        bpf = _Bpf()
        bpf.load(_ARCH)
        bpf.jump(_JEQ_K, AUDIT_ARCH, 0, "allow")
        bpf.load(_NR)
        if fixed_too:
            bpf.jump(_JEQ_K, SYS_MMAP, "where", "other")
        else:
            bpf.jump(_JEQ_K, SYS_MMAP, 0, "other")
            bpf.load(_ARG3_LO)
            bpf.jump(_JSET_K, MAP_FIXED, "allow", "where")
        bpf.label("other")
        bpf.jump(_JEQ_K, SYS_MUNMAP, "where", 0)
        bpf.jump(_JEQ_K, SYS_MREMAP, "where", "allow")
        bpf.label("where")
        _jump_if_inside(bpf, window[0], window[1], "notify", "window")
        self.slots = [_jump_if_inside(bpf, 0, 0, "notify", f"image{n}") for n in range(n_images)]
        bpf.label("allow")
        bpf.ret(SECCOMP_RET_ALLOW)
        bpf.label("notify")
        bpf.ret(SECCOMP_RET_USER_NOTIF)
        self.code = bpf.assemble()

    def program(self, images: list[tuple[int, int]]) -> bytes:
        code = bytearray(self.code)
        for slots, (lo, hi) in zip(self.slots, images):
            halves = {"lo_hi": lo >> 32, "lo_lo": lo & 0xFFFFFFFF, "hi_hi": hi >> 32, "hi_lo": hi & 0xFFFFFFFF}
            for index, half in slots:
                _K.pack_into(code, 8 * index + 4, halves[half])
        return bytes(code)


_K = struct.Struct("<I")
_templates: dict[tuple[tuple[int, int], int, bool], FilterTemplate] = {}


def filter_program(window: tuple[int, int], images: list[tuple[int, int]],
                   fixed_too: bool = False) -> bytes:
    """mmap, munmap and mremap made from the window or one of `images`
    notify the keeper; every other call is allowed.

    An mmap with MAP_FIXED is allowed too, unless fixed_too: it lands where
    the caller says, which is memory the program already has (a loader's
    segments inside its reservation, a runtime committing its reserved
    heap), so the range keeps its owner in the ledger.  That halves the
    notifications of a start.  A program with a finite RLIMIT_AS needs
    fixed_too: the kernel would check its limit against the whole space,
    the keeper checks it against the program's own memory."""
    key = (window, len(images), fixed_too)
    template = _templates.get(key)
    if template is None:
        template = _templates[key] = FilterTemplate(window, len(images), fixed_too)
    return template.program(images)


def code_window() -> tuple[int, int]:
    """Where programs' mappings go: the second quarter of the user address
    space, far below where a fresh mm puts its executable, libraries and
    stack (top half) and above the low addresses non-PIE programs use."""
    stack = next(m for m in _mm.read_maps() if m.path == "[stack]")
    top = 1 << stack.end.bit_length()
    return top // 4, top // 2


# -- the keeper ---------------------------------------------------------------------

class Enrolment:
    """One program's place in the ledger, from just before its clone until
    its memory is given back."""

    def __init__(self, keeper: "Keeper", ledger_id: int, images: list[tuple[int, int]],
                 fixed_too: bool) -> None:
        self.keeper, self.id = keeper, ledger_id
        self.filter = _native.SeccompProgram(filter_program(keeper.window, images, fixed_too))
        self.released = False

    def release(self) -> tuple[int, int]:
        """Unmap everything the program owns; (ranges, bytes)."""
        if self.released:
            return 0, 0
        self.released = True
        freed = self.keeper.reclaim(self.id)
        self.keeper.warn_once_unrecorded()
        return freed

    def mappings(self) -> list[tuple[int, int]]:
        return [] if self.released else self.keeper.query(self.id)


class Keeper:
    """The host's handle on the keeper task (started once per process)."""

    def __init__(self) -> None:
        self.window = code_window()
        self._ids = itertools.count(1)
        self._warned = False
        self._lock = threading.Lock()
        size = 4096 + SLOTS * SLOT_SIZE + ENTRIES * ENTRY_SIZE + KEEPER_STACK
        self._base = _mm.mmap(0, size, _mm.PROT_READ | _mm.PROT_WRITE,
                              _mm.MAP_PRIVATE | _mm.MAP_ANONYMOUS | _mm.MAP_NORESERVE)
        slots = self._base + 4096
        entries = slots + SLOTS * SLOT_SIZE
        stack = entries + ENTRIES * ENTRY_SIZE
        host_end, keeper_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = host_end
        try:
            _mm.write(self._base, KEEPER_HEAD.pack(
                *self.window, stack, KEEPER_STACK, slots, entries, SLOTS, 0, ENTRIES,
                keeper_end.fileno(), 0))
            self.pid, self.pidfd = _native.start_keeper(self._base)
        finally:
            keeper_end.close()  # the keeper has its own copy
        self.fd = host_end.fileno()

    def enrol(self, regions: list[tuple[int, int]], address_limit: bool = False) -> Enrolment:
        """Register a program about to be cloned: the keeper now owns
        `regions` (the loader's), and the filter lets `regions` call it.
        address_limit: the program starts with a finite RLIMIT_AS."""
        if len(regions) > MAX_REGIONS:
            raise SpaceError(f"a program with {len(regions)} loader regions (at most {MAX_REGIONS})")
        if self._counter("slots_used") >= SLOTS - SLOTS_SPARE:
            raise SpaceError(f"the space's ledger holds {SLOTS - SLOTS_SPARE} programs (with their "
                             "forked descendants) already: wait for some to exit")
        enrolment = Enrolment(self, next(self._ids), regions, address_limit)
        flat = [a for r in regions for a in r] + [0] * (2 * MAX_REGIONS - 2 * len(regions))
        self._send(KEEPER_MSG.pack(REGISTER, len(regions), enrolment.id, 0, 0, 0, *flat,
                                   ADDRESS_LIMIT if address_limit else 0))
        return enrolment

    def reclaim(self, ledger_id: int) -> tuple[int, int]:
        result, size = self._ask(RECLAIM, ledger_id)
        if result < 0:
            raise SpaceError(f"the keeper has no program {ledger_id} to reclaim ({os.strerror(-result)})")
        return result, size

    def query(self, ledger_id: int) -> list[tuple[int, int]]:
        room = 64
        while True:
            buf = (ctypes.c_uint64 * (2 * room))()
            count, _ = self._ask(QUERY, ledger_id, ctypes.addressof(buf), room)
            if count < 0:
                return []
            if count <= room:
                return [(buf[2 * i], buf[2 * i + 1]) for i in range(count)]
            room = count + 64  # it grew meanwhile: ask again with room to spare

    def counters(self) -> dict[str, int]:
        """The keeper's counters (keeper.h), read in place."""
        return {name: self._counter(name) for name in COUNTERS}

    def _counter(self, name: str) -> int:
        # The keeper's memory is the host's own (one mm): read it directly.
        return ctypes.c_uint64.from_address(self._base + COUNTERS_AT + 8 * COUNTERS.index(name)).value

    def warn_once_unrecorded(self) -> None:
        """Log (once) if calls went unrecorded: their memory stays after exit."""
        lost = self._counter("untracked") + self._counter("ledger_full")
        if lost and not self._warned:
            self._warned = True
            log.warning("sameprocess: %d memory calls of programs could not be recorded (a "
                        "descriptor the keeper may not take, or a full ledger): what they mapped "
                        "stays after the programs exit", lost)

    def _send(self, message: bytes) -> None:
        try:
            self._sock.send(message)
        except OSError as e:
            raise SpaceError(f"the space's keeper task (pid {self.pid}) is gone: {e.strerror}") from None

    def _ask(self, kind: int, ledger_id: int, buf: int = 0, buf_len: int = 0) -> tuple[int, int]:
        """One request and its reply; requests of all threads take turns."""
        with self._lock:
            self._send(KEEPER_MSG.pack(kind, 0, ledger_id, 0, buf, buf_len, *[0] * 8, 0))
            while True:
                raw = self._sock.recv(KEEPER_REPLY.size)
                if not raw:
                    raise SpaceError(f"the space's keeper task (pid {self.pid}) is gone")
                reply_id, result, size, _ = KEEPER_REPLY.unpack(raw)
                if reply_id == ledger_id:
                    return result, size
