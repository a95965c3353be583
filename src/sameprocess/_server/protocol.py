"""The wire protocol between launchers (and the other verbs) and a server.

One Unix stream socket carries one request and its replies.  Every message
is one frame, all integers big-endian:

    offset  size  field
    0       4     magic b"SPRC"
    4       1     version (VERSION)
    5       1     type (MsgType)
    6       2     flags: 0 (anything else is an error)
    8       4     payload length in bytes, at most the type's limit
    12      n     payload: the type's fields in order

Field encodings: u8/u16/u32/u64, i32, f64; `bytes` is a u32 length then the
bytes; a list is a u32 count then the items.  Descriptors travel as
SCM_RIGHTS attached to the frame's first byte, and each type says exactly how
many it carries (SPAWN: stdin, stdout, stderr; STARTED: the program's pidfd).

Conversations (anything else is out of order, a protocol error):
    SPAWN -> STARTED, EXITED   or   SPAWN -> ERROR   (or SPAWN -> EXITED)
    with any number of WARNING frames between SPAWN and STARTED (or EXITED)
    LIST  -> PROGRAMS      KILL -> KILLED      STOP -> STOPPED
    DEBUG -> DEBUG_INFO
and any request -> ERROR.  After SPAWN the launcher sends nothing more;
closing its end means "the launcher is gone" and the program gets SIGHUP.

Decoding is strict: every count and length is checked against its bound
before anything is allocated, the payload must be consumed exactly, strings
must be what execve would accept.  Every violation raises ProtocolError.
Field encoding is in codec.py; sending and receiving frames (with descriptors)
is in framing.py.
"""
from __future__ import annotations

import enum
import errno
import os
import struct

from .codec import Decoder, Encoder, ProtocolError, Record

MAGIC = b"SPRC"
VERSION = 3                         # 2: WARNING frames; 3: SPAWN's nice and CPU mask
HEADER = struct.Struct("!4sBBHI")

# execve's bounds (include/uapi/linux/binfmts.h, fs/exec.c)
MAX_ARG_STRLEN = 32 * 4096          # one string, with its NUL
ARG_MAX_FLOOR = 32 * 4096           # the limit never goes below this
STK_LIM = 8 << 20                   # the kernel caps the limit at 3/4 of this
PATH_MAX = 4096
NSIG = 65                           # signals 1..64
RLIM_NLIMITS = 16
RLIM_INFINITY = (1 << 64) - 1

MAX_FDS = 3                         # no message carries more
MAX_MESSAGE = 4096                  # error messages, file names in errors
MAX_KILL_PIDS = 4096
MAX_PS_ENTRIES = 1 << 16
MAX_PS_ARGS = 4096                  # bytes of command line per entry in PROGRAMS


class MsgType(enum.IntEnum):
    # requests (client -> server)
    SPAWN = 0x01
    LIST = 0x02
    KILL = 0x03
    STOP = 0x04
    DEBUG = 0x05
    # replies (server -> client)
    STARTED = 0x81
    EXITED = 0x82
    ERROR = 0x83
    PROGRAMS = 0x84
    KILLED = 0x85
    STOPPED = 0x86
    WARNING = 0x87
    DEBUG_INFO = 0x88

    @property
    def is_request(self) -> bool:
        return self < 0x80


def _is_control(c: str) -> bool:
    """C0, DEL and C1: what a terminal may take as a command rather than text."""
    return (ord(c) < 0x20) or (0x7f <= ord(c) < 0xa0)


def printable(text: str) -> str:
    """`text` with control characters escaped, fit for one line of a log or a terminal."""
    return "".join(f"\\x{ord(c):02x}" if _is_control(c) else c for c in text)


def _strict_string(value: bytes, what: str, name: str) -> None:
    if b"\0" in value:
        raise ProtocolError(f"{what}: {name} contains a NUL byte")


# -- messages --------------------------------------------------------------------
class Message(Record):
    """Base of the message classes: a type, a payload limit, a descriptor count."""

    TYPE = None                 # MsgType, set by each message class
    MAX_PAYLOAD = 64 << 10
    FDS = 0

    def encode_payload(self, enc: Encoder) -> None:  # pragma: no cover - overridden
        pass

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "Message":  # pragma: no cover - overridden
        return cls()

    def encode(self) -> bytes:
        """The whole frame (header + payload); fds are sent beside it."""
        enc = Encoder()
        self.encode_payload(enc)
        payload = enc.getvalue()
        if len(payload) > self.MAX_PAYLOAD:
            raise ProtocolError(f"{self.TYPE.name}: payload of {len(payload)} bytes "
                                f"exceeds the limit of {self.MAX_PAYLOAD}")
        return HEADER.pack(MAGIC, VERSION, self.TYPE, 0, len(payload)) + payload


def arg_limit(stack_soft: int) -> int:
    """Bytes execve allows for argv + envp (strings, NULs and pointers)."""
    limit = STK_LIM // 4 * 3
    if stack_soft != RLIM_INFINITY and stack_soft >= 0:
        limit = min(limit, stack_soft // 4)
    return max(limit, ARG_MAX_FLOOR)


def check_exec_sizes(argv: list[bytes], env: list[bytes], stack_soft: int) -> None:
    """Raise OSError(E2BIG) for what the kernel's execve would refuse as too big."""
    lengths = [*map(len, argv), *map(len, env)]   # every request's check: no loop in Python
    if max(lengths, default=0) + 1 > MAX_ARG_STRLEN:
        first = next(n for n in lengths if n + 1 > MAX_ARG_STRLEN)
        raise OSError(errno.E2BIG, f"{os.strerror(errno.E2BIG)} "
                      f"(one argument or environment string is {first} bytes)")
    total = sum(lengths) + (1 + 8) * len(lengths)
    if total > arg_limit(stack_soft):
        raise OSError(errno.E2BIG, f"{os.strerror(errno.E2BIG)} "
                      f"({total} bytes of arguments and environment)")


# The largest SPAWN a valid launcher can send: the biggest arg_limit plus
# small fields.  4 bytes of length per string cost less than execve's 8 of
# pointer, so every request execve would accept fits.
_SPAWN_LIMIT = STK_LIM // 4 * 3 + PATH_MAX + 1024


MAX_CPU_MASK = 1024    # bytes: 8192 CPUs, the kernel's largest NR_CPUS
_RLIMIT = struct.Struct("!BQQ")   # one of SPAWN's rlimits: resource, soft, hard
_RLIMITS = [struct.Struct("!" + "BQQ" * n) for n in range(RLIM_NLIMITS + 1)]   # n of them


class Spawn(Message):
    """Run argv in the space with the launcher's context; fds: stdin, stdout, stderr."""

    TYPE = MsgType.SPAWN
    MAX_PAYLOAD = _SPAWN_LIMIT
    FDS = 3

    argv: list[bytes]
    env: list[bytes]
    cwd: bytes
    umask: int = 0o022
    ignored: frozenset[int] = frozenset()          # signals the program starts ignoring
    rlimits: dict[int, tuple[int, int]] = {}       # copied per instance
    nice: int = 0
    cpus: frozenset[int] = frozenset()   # the launcher's CPU affinity; empty: the server's

    def encode_payload(self, enc: Encoder) -> None:
        enc.blobs(self.argv)
        enc.blobs(self.env)
        enc.blob(self.cwd)
        enc.u16(self.umask)
        enc.u64(sum(1 << (s - 1) for s in self.ignored))
        enc.u32(len(self.rlimits))
        for res, (soft, hard) in sorted(self.rlimits.items()):
            enc.u8(res)
            enc.u64(soft)
            enc.u64(hard)
        enc.i32(self.nice)
        # As sched_getaffinity(2) gives it: 64-bit little-endian words, bit N for CPU N.
        cpus = sum(1 << cpu for cpu in self.cpus)
        enc.blob(cpus.to_bytes((cpus.bit_length() + 63) // 64 * 8, "little"))

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "Spawn":
        w = "SPAWN"
        # A string execve would refuse is well-formed here: the server answers E2BIG, as execve.
        argv = dec.blobs(_SPAWN_LIMIT // 4, _SPAWN_LIMIT, "argv")
        env = dec.blobs(_SPAWN_LIMIT // 4, _SPAWN_LIMIT, "env")
        cwd = dec.blob(PATH_MAX - 1, "cwd")
        umask = dec.u16()
        mask = dec.u64()
        rlimits: dict[int, tuple[int, int]] = {}
        count = dec.count(RLIM_NLIMITS, "rlimits", _RLIMIT.size)
        fields = dec.fields(_RLIMITS[count])    # all of them in one unpack
        for i in range(0, 3 * count, 3):
            res, soft, hard = fields[i:i + 3]
            if res >= RLIM_NLIMITS:
                raise ProtocolError(f"{w}: unknown resource limit {res}")
            if res in rlimits:
                raise ProtocolError(f"{w}: resource limit {res} given twice")
            if soft > hard:
                raise ProtocolError(f"{w}: resource limit {res}: soft {soft} above hard {hard}")
            rlimits[res] = (soft, hard)
        nice = dec.i32()
        cpu_mask = dec.blob(MAX_CPU_MASK, "cpus")
        dec.end()
        if not -20 <= nice <= 19:
            raise ProtocolError(f"{w}: nice {nice} out of range")
        if len(cpu_mask) % 8 or (cpu_mask and not any(cpu_mask)):
            raise ProtocolError(f"{w}: a CPU mask of {len(cpu_mask)} bytes, not whole 64-bit words "
                                "with a CPU set")
        bits = int.from_bytes(cpu_mask, "little")
        cpus = frozenset(cpu for cpu in range(bits.bit_length()) if bits >> cpu & 1)
        if not argv:
            raise ProtocolError(f"{w}: argv is empty")
        if not argv[0]:
            raise ProtocolError(f"{w}: the program name is empty")
        # One scan of all the strings for a NUL (a request carries a whole
        # environment); the loops that name the culprit run only on a hit.
        if b"\0" in b"".join(argv):
            for a in argv:
                _strict_string(a, w, "an argument")
        if b"\0" in b"".join(env):
            for e in env:
                _strict_string(e, w, "an environment string")
        for e in env:
            if e.find(b"=") < 1:
                raise ProtocolError(f"{w}: environment string {e[:40]!r} is not NAME=VALUE")
        _strict_string(cwd, w, "cwd")
        if not cwd.startswith(b"/"):
            raise ProtocolError(f"{w}: cwd {cwd[:80]!r} is not an absolute path")
        if umask > 0o777:
            raise ProtocolError(f"{w}: umask {umask:#o} out of range")
        ignored = frozenset(s for s in range(1, NSIG) if (mask >> (s - 1)) & 1)
        if ignored & {9, 19}:
            raise ProtocolError(f"{w}: SIGKILL and SIGSTOP cannot be ignored")
        return cls(argv, env, cwd, umask, ignored, rlimits, nice, cpus)


class ListPrograms(Message):
    """Ask for the programs of the space."""

    TYPE = MsgType.LIST

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "ListPrograms":
        dec.end()
        return cls()


class Kill(Message):
    """Send `signal` (0 only checks) to programs of the space."""

    TYPE = MsgType.KILL

    signal: int
    pids: list[int]

    def encode_payload(self, enc: Encoder) -> None:
        enc.u8(self.signal)
        enc.u32(len(self.pids))
        for pid in self.pids:
            enc.u32(pid)

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "Kill":
        sig = dec.u8()
        pids = [dec.u32() for _ in range(dec.count(MAX_KILL_PIDS, "pids", 4))]
        dec.end()
        if sig >= NSIG:
            raise ProtocolError(f"KILL: invalid signal {sig}")
        if not pids or 0 in pids:
            raise ProtocolError("KILL: no pids, or pid 0")
        return cls(sig, pids)


class Stop(Message):
    """Stop the server: SIGTERM to programs, SIGKILL after grace_ms."""

    TYPE = MsgType.STOP

    grace_ms: int = 5000

    def encode_payload(self, enc: Encoder) -> None:
        enc.u32(self.grace_ms)

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "Stop":
        grace = dec.u32()
        dec.end()
        return cls(grace)


class _OnePid(Message):
    """The payload of STARTED and DEBUG: one program's pid, never 0.
    Subclasses declare `pid: int` themselves (Record's fields are a class's own)."""

    def encode_payload(self, enc: Encoder) -> None:
        enc.u32(self.pid)

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "_OnePid":
        pid = dec.u32()
        dec.end()
        if pid == 0:
            raise ProtocolError(f"{cls.TYPE.name}: pid 0")
        return cls(pid)


class Started(_OnePid):
    """The program runs; fd: a pidfd for it (the launcher's to keep)."""

    TYPE = MsgType.STARTED
    FDS = 1

    pid: int


class Exited(Message):
    """The program was reaped: exit code, or -N for a death by signal N."""

    TYPE = MsgType.EXITED

    returncode: int

    def encode_payload(self, enc: Encoder) -> None:
        enc.i32(self.returncode)

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "Exited":
        rc = dec.i32()
        dec.end()
        if not (-NSIG < rc <= 255):
            raise ProtocolError(f"EXITED: impossible status {rc}")
        return cls(rc)


class Error(Message):
    """A request failed: errno, message, and the file it concerns (maybe empty)."""

    TYPE = MsgType.ERROR

    errno: int
    message: str
    filename: bytes = b""

    def encode_payload(self, enc: Encoder) -> None:
        enc.u32(self.errno)
        enc.blob(self.message.encode("utf-8", "replace")[:MAX_MESSAGE])
        enc.blob(self.filename[:PATH_MAX])

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "Error":
        err = dec.u32()
        message = dec.blob(MAX_MESSAGE, "message").decode("utf-8", "replace")
        filename = dec.blob(PATH_MAX, "filename")
        dec.end()
        return cls(err, message, filename)


class LauncherWarning(Message):
    """A line for the launcher's stderr about its program (e.g. an ignored set-user-ID bit)."""

    TYPE = MsgType.WARNING

    message: str

    def encode_payload(self, enc: Encoder) -> None:
        enc.blob(self.message.encode("utf-8", "replace")[:MAX_MESSAGE])

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "LauncherWarning":
        message = dec.blob(MAX_MESSAGE, "message").decode("utf-8", "replace")
        dec.end()
        if not message or any(map(_is_control, message)):
            raise ProtocolError("WARNING: the message must be one non-empty line of printable text")
        return cls(message)


class ProgramInfo(Record):
    """One program, as PROGRAMS lists it."""

    pid: int
    launcher_pid: int | None      # None: the launcher has gone
    state: str                    # one letter, as in /proc/PID/stat
    start_time: float             # time.time()
    args: list[bytes]
    mapped: int = 0               # bytes the space records for it (0: not recorded)
    resident: int = 0             # of those, bytes in memory


class Programs(Message):
    """The programs of the space (command lines cut to MAX_PS_ARGS bytes)."""

    TYPE = MsgType.PROGRAMS
    MAX_PAYLOAD = 32 << 20

    programs: list[ProgramInfo]
    truncated: bool = False      # more programs than fit in one reply

    def encode_payload(self, enc: Encoder) -> None:
        enc.u8(int(self.truncated))
        enc.u32(len(self.programs))
        for p in self.programs:
            enc.u32(p.pid)
            enc.u32(p.launcher_pid or 0)
            enc.u8(ord(p.state[:1] or "?"))
            enc.f64(p.start_time)
            enc.blobs(p.args)
            enc.u64(p.mapped)
            enc.u64(p.resident)

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "Programs":
        truncated = dec.u8()
        programs = []
        for _ in range(dec.count(MAX_PS_ENTRIES, "programs", 37)):
            pid, launcher, state, start = dec.u32(), dec.u32(), dec.u8(), dec.f64()
            args = dec.blobs(MAX_PS_ARGS // 4, MAX_PS_ARGS, "args")
            mapped, resident = dec.u64(), dec.u64()
            if not 0x21 <= state < 0x7f:
                raise ProtocolError(f"PROGRAMS: invalid state byte {state:#x}")
            programs.append(ProgramInfo(pid, launcher or None, chr(state), start, args, mapped, resident))
        dec.end()
        if truncated > 1:
            raise ProtocolError(f"PROGRAMS: invalid flag {truncated}")
        return cls(programs, bool(truncated))


class Debug(_OnePid):
    """Ask what a debugger needs to find program `pid`'s code (sameprocess gdb)."""

    TYPE = MsgType.DEBUG

    pid: int


class DebugInfo(Message):
    """A program's executable, its ld.so's r_debug address (0: static) and,
    for a static program, the load bias of its image."""

    TYPE = MsgType.DEBUG_INFO

    pid: int
    executable: bytes
    r_debug: int
    bias: int

    def encode_payload(self, enc: Encoder) -> None:
        enc.u32(self.pid)
        enc.blob(self.executable)
        enc.u64(self.r_debug)
        enc.u64(self.bias)

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "DebugInfo":
        pid, executable = dec.u32(), dec.blob(PATH_MAX, "executable")
        r_debug, bias = dec.u64(), dec.u64()
        dec.end()
        _strict_string(executable, "DEBUG_INFO", "executable")
        if not executable.startswith(b"/"):
            raise ProtocolError("DEBUG_INFO: the executable must be an absolute path")
        return cls(pid, executable, r_debug, bias)


class Killed(Message):
    """Per pid of a KILL: 0, or the errno (ESRCH: not a program of this space)."""

    TYPE = MsgType.KILLED

    results: list[tuple[int, int]]

    def encode_payload(self, enc: Encoder) -> None:
        enc.u32(len(self.results))
        for pid, err in self.results:
            enc.u32(pid)
            enc.u32(err)

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "Killed":
        results = [(dec.u32(), dec.u32()) for _ in range(dec.count(MAX_KILL_PIDS, "results", 8))]
        dec.end()
        return cls(results)


class Stopped(Message):
    """The server has stopped: `programs` were still running when asked."""

    TYPE = MsgType.STOPPED

    programs: int = 0

    def encode_payload(self, enc: Encoder) -> None:
        enc.u32(self.programs)

    @classmethod
    def decode_payload(cls, dec: Decoder) -> "Stopped":
        n = dec.u32()
        dec.end()
        return cls(n)


MESSAGES: dict[MsgType, type[Message]] = {
    cls.TYPE: cls for cls in (Spawn, ListPrograms, Kill, Stop, Started, Exited, Error, Programs, Killed, Stopped,
                              LauncherWarning, Debug, DebugInfo)
}
REQUESTS = frozenset(t for t in MsgType if t.is_request)
REPLIES = frozenset(t for t in MsgType if not t.is_request)


def parse_header(header: bytes, accept: frozenset[MsgType]) -> tuple[type[Message], int]:
    """Validate a 12-byte header; return the message class and payload length."""
    magic, version, mtype, flags, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r} (not a sameprocess peer)")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version} (this side speaks {VERSION})")
    try:
        kind = MsgType(mtype)
    except ValueError:
        raise ProtocolError(f"unknown message type {mtype:#04x}") from None
    if kind not in accept:
        raise ProtocolError(f"unexpected {kind.name} message here")
    if flags:
        raise ProtocolError(f"{kind.name}: reserved flags {flags:#06x} set")
    cls = MESSAGES[kind]
    if length > cls.MAX_PAYLOAD:
        raise ProtocolError(f"{kind.name}: payload of {length} bytes exceeds the limit of {cls.MAX_PAYLOAD}")
    return cls, length


def decode(data: bytes, accept: frozenset[MsgType] = frozenset(MsgType)) -> Message:
    """Decode exactly one whole frame (header + payload), without descriptors."""
    if len(data) < HEADER.size:
        raise ProtocolError(f"frame truncated: {len(data)} bytes, the header alone is {HEADER.size}")
    cls, length = parse_header(data[:HEADER.size], accept)
    if len(data) - HEADER.size != length:
        raise ProtocolError(f"{cls.TYPE.name}: payload is {len(data) - HEADER.size} bytes, "
                            f"the header says {length}")
    return cls.decode_payload(Decoder(data[HEADER.size:], cls.TYPE.name))
