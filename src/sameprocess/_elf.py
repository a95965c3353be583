"""Identify and validate ELF executables and interpreters (pure, no mapping).

Reads top to bottom as the kernel's binfmt_elf does its checks: identify from
e_ident, check the header, check every program header, derive the load span.
Each failure is an ExecError quoting the bad value.  Parsed images are cached
by the file's identity (device, inode, size, mtime, ctime, mode) so repeated
spawns of one program parse once.
"""
from __future__ import annotations

import enum
import errno
import os
import platform
import stat
import struct
from dataclasses import dataclass
from functools import cached_property

from ._errors import ExecError, noexec

PAGE = os.sysconf("SC_PAGE_SIZE")
# User space ends below 2**47 on both supported architectures (4-level paging).
USER_TOP = 1 << 47
MAX_PHNUM = 65536 // 56
MAX_INTERP_LEN = 4096
MAX_SPAN = 1 << 40


class EType(enum.IntEnum):
    EXEC = 2
    DYN = 3


class PType(enum.IntEnum):
    LOAD = 1
    DYNAMIC = 2
    INTERP = 3
    PHDR = 6
    TLS = 7
    GNU_STACK = 0x6474E551
    GNU_RELRO = 0x6474E552


# Headers that ld.so and libc use as addresses in the image: they read the
# dynamic section, the headers and the TLS image there, and mprotect the
# RELRO range.  In a shared space an address outside the image is the host's
# or another program's memory, so each must lie inside the load span.  Only
# the TLS image's file part is ever read (Go links a bss-only PT_TLS at 0).
IN_IMAGE = (PType.DYNAMIC, PType.PHDR, PType.TLS, PType.GNU_RELRO)


class PFlag(enum.IntFlag):
    X = 1
    W = 2
    R = 4


# PF_X=1, PF_W=2, PF_R=4  ->  PROT_READ=1, PROT_WRITE=2, PROT_EXEC=4
_PROT = [((f & 4) >> 2) | (f & 2) | ((f & 1) << 2) for f in range(8)]

MACHINES = {"x86_64": 62, "aarch64": 183}
HOST_MACHINE = MACHINES.get(platform.machine())

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
SYM = struct.Struct("<IBBHQQ")
SHT_DYNSYM = 11


def page_down(x: int) -> int:
    return x & ~(PAGE - 1)


def page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


@dataclass(frozen=True)
class Segment:
    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: PFlag
    align: int

    @property
    def prot(self) -> int:
        """mmap protection: PF_R/W/X are PROT_READ/WRITE/EXEC with R and X swapped."""
        return _PROT[self.flags]


@dataclass(frozen=True)
class ElfImage:
    """A validated executable or interpreter, as the loader needs it."""

    path: str
    etype: EType = EType.DYN
    entry: int = 0
    phoff: int = 0
    phnum: int = 0
    loads: tuple[Segment, ...] = ()
    interp: str | None = None
    stack_exec: bool = False
    phdr_vaddr: int = 0
    file_size: int = 0

    @property
    def span_start(self) -> int:
        return page_down(self.loads[0].vaddr)

    @property
    def span_end(self) -> int:
        return page_up(max(s.vaddr + s.memsz for s in self.loads))

    @property
    def max_align(self) -> int:
        return max([PAGE] + [s.align for s in self.loads])

    @cached_property
    def dynamic_symbols(self) -> dict[str, int]:
        """Defined symbols of .dynsym (used for ld.so's _r_debug)."""
        return _read_dynsym(self.path)


def _fail_if(cond: bool, path: str, reason: str) -> None:
    if cond:
        raise noexec(path, reason)


def identify(path: str, head: bytes) -> None:
    """Check e_ident: magic, class, data encoding, version."""
    _fail_if(len(head) < 16 or head[:4] != b"\x7fELF", path, "not an ELF file (bad magic)")
    _fail_if(head[4] == 1, path, "32-bit ELF (ELFCLASS32) is not supported")
    _fail_if(head[4] != 2, path, f"invalid EI_CLASS {head[4]}")
    _fail_if(head[5] != 1, path, f"unsupported EI_DATA {head[5]} (need little-endian)")
    _fail_if(head[6] != 1, path, f"invalid EI_VERSION {head[6]}")


def parse(path: str, fd: int, file_size: int) -> ElfImage:
    head = os.pread(fd, 64, 0)
    identify(path, head)
    _fail_if(len(head) < EHDR.size, path, f"truncated ELF header ({len(head)} bytes)")
    (_, etype, machine, _, entry, phoff, _, _, _, phentsize, phnum, _, _, _) = EHDR.unpack(head)
    _fail_if(etype not in (EType.EXEC, EType.DYN), path, f"ELF type {etype} is not an executable")
    _fail_if(machine != HOST_MACHINE, path,
             f"wrong architecture: e_machine {machine}, this host runs {HOST_MACHINE}")
    _fail_if(phentsize != PHDR.size, path, f"invalid e_phentsize {phentsize}")
    _fail_if(not 0 < phnum <= MAX_PHNUM, path, f"invalid e_phnum {phnum}")
    _fail_if(phoff > file_size or phnum * phentsize > file_size - phoff, path,
             f"program headers (offset {phoff}, {phnum} entries) extend past the end of the file")
    table = os.pread(fd, phnum * phentsize, phoff)
    _fail_if(len(table) != phnum * phentsize, path, "truncated program header table")
    image = _program_headers(path, fd, file_size, EType(etype), entry, phoff, phnum, table)
    return image


def _program_headers(path, fd, file_size, etype, entry, phoff, phnum, table) -> ElfImage:
    loads: list[Segment] = []
    interp = None
    stack_exec = False
    phdr_vaddr = None
    placed = []
    for i in range(phnum):
        ptype, flags, offset, vaddr, _, filesz, memsz, align = PHDR.unpack_from(table, i * PHDR.size)
        if ptype == PType.LOAD:
            loads.append(_check_load(path, i, file_size, flags, offset, vaddr, filesz, memsz, align))
        elif ptype == PType.INTERP:
            _fail_if(interp is not None, path, "more than one PT_INTERP")
            interp = _read_interp(path, fd, file_size, offset, filesz)
        elif ptype == PType.GNU_STACK:
            stack_exec = bool(flags & PFlag.X)
        elif ptype == PType.PHDR:
            phdr_vaddr = vaddr
        if ptype in IN_IMAGE:
            size = filesz if ptype == PType.TLS else memsz
            if ptype != PType.TLS or size:
                placed.append((PType(ptype), vaddr, size))
    _fail_if(not loads, path, "no PT_LOAD segment")
    for prev, seg in zip(loads, loads[1:]):
        _fail_if(seg.vaddr < prev.vaddr + prev.memsz, path,
                 f"PT_LOAD at {seg.vaddr:#x} overlaps or precedes the one at {prev.vaddr:#x}")
    start, end = page_down(loads[0].vaddr), page_up(loads[-1].vaddr + loads[-1].memsz)
    _fail_if(end - start > MAX_SPAN, path, f"load span {end - start:#x} is too large")
    _fail_if(etype == EType.EXEC and start < PAGE, path, "ET_EXEC segments start at address 0")
    _fail_if(not start <= entry < end, path, f"entry point {entry:#x} outside the loaded segments")
    for ptype, vaddr, size in placed:
        _fail_if(not (start <= vaddr and size <= end - vaddr), path,
                 f"PT_{ptype.name} at {vaddr:#x}+{size:#x} is outside the loaded segments")
    if phdr_vaddr is None:
        phdr_vaddr = _phdr_from_loads(path, loads, phoff, phnum)
    # The program's loader reads all e_phnum headers at AT_PHDR: a table
    # running past the image would have it read (and act on) the host's
    # memory as program headers.
    _fail_if(not (start <= phdr_vaddr and phnum * PHDR.size <= end - phdr_vaddr), path,
             f"program header table at {phdr_vaddr:#x} ({phnum} entries) is outside the loaded segments")
    return ElfImage(path=path, etype=etype, entry=entry, phoff=phoff, phnum=phnum,
                    loads=tuple(loads), interp=interp, stack_exec=stack_exec,
                    phdr_vaddr=phdr_vaddr, file_size=file_size)


def _check_load(path, index, file_size, flags, offset, vaddr, filesz, memsz, align) -> Segment:
    where = f"PT_LOAD #{index}"
    _fail_if(filesz > memsz, path, f"{where}: p_filesz {filesz:#x} > p_memsz {memsz:#x}")
    _fail_if(offset > file_size or filesz > file_size - offset, path,
             f"{where}: file range {offset:#x}+{filesz:#x} past the end of the file ({file_size:#x})")
    _fail_if(vaddr >= USER_TOP or memsz > USER_TOP - vaddr, path,
             f"{where}: address range {vaddr:#x}+{memsz:#x} outside user space")
    _fail_if(align > 1 and (align & (align - 1)) != 0, path, f"{where}: p_align {align:#x} is not a power of two")
    _fail_if((vaddr - offset) % PAGE != 0, path,
             f"{where}: p_vaddr {vaddr:#x} and p_offset {offset:#x} differ modulo the page size")
    _fail_if(align > (1 << 30), path, f"{where}: p_align {align:#x} is too large")
    return Segment(vaddr, memsz, offset, filesz, PFlag(flags & 7), max(align, 1))


def _read_interp(path, fd, file_size, offset, filesz) -> str:
    _fail_if(not 1 < filesz <= MAX_INTERP_LEN, path, f"PT_INTERP size {filesz} is invalid")
    _fail_if(offset > file_size or filesz > file_size - offset, path, "PT_INTERP past the end of the file")
    raw = os.pread(fd, filesz, offset)
    _fail_if(len(raw) != filesz or raw[-1] != 0 or b"\0" in raw[:-1], path,
             "PT_INTERP is not a NUL-terminated path")
    try:
        return raw[:-1].decode()
    except UnicodeDecodeError:
        raise noexec(path, f"PT_INTERP is not valid text: {raw[:-1]!r}") from None


def _phdr_from_loads(path, loads, phoff, phnum) -> int:
    """Without PT_PHDR, the headers are where the segment holding them maps them."""
    for seg in loads:
        if seg.offset <= phoff and phoff + phnum * PHDR.size <= seg.offset + seg.filesz:
            return seg.vaddr + (phoff - seg.offset)
    raise noexec(path, "program headers are not inside any PT_LOAD segment")


def _read_dynsym(path: str) -> dict[str, int]:
    """Symbol name -> st_value of the defined .dynsym entries."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        (_, _, _, _, _, _, shoff, _, _, _, _, shentsize, shnum, _) = EHDR.unpack_from(data)
        if shentsize != SHDR.size or shoff == 0:
            return {}
        sections = [SHDR.unpack_from(data, shoff + i * SHDR.size) for i in range(shnum)]
        out: dict[str, int] = {}
        for sh in sections:
            if sh[1] != SHT_DYNSYM or sh[8] == 0 or sh[6] >= len(sections):
                continue
            str_off = sections[sh[6]][4]
            for i in range(sh[5] // SYM.size):
                name, _, _, shndx, value, _ = SYM.unpack_from(data, sh[4] + i * SYM.size)
                if shndx and value:
                    end = data.index(b"\0", str_off + name)
                    out[data[str_off + name:end].decode()] = value
        return out
    except (struct.error, ValueError, UnicodeDecodeError):
        return {}


_cache: dict[tuple, ElfImage] = {}


def open_image(path: str) -> tuple[int, ElfImage]:
    """Open and validate `path`; returns (fd, image), the caller closes fd.

    The parse is cached by the identity of the open file, so a changed file
    is parsed again and the image always describes the bytes behind fd.
    """
    try:
        # O_NONBLOCK: a FIFO (say, named by a PT_INTERP) would block the open
        # until a writer came; this way it opens and is refused below as not
        # a regular file.  O_NOCTTY: a terminal named so never becomes ours.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise ExecError(e.errno or errno.ENOEXEC, f"cannot open: {e.strerror}", path) from None
    try:
        st = os.fstat(fd)
        key = _identity(st, path)
        image = _cache.get(key)
        if image is None:
            _fail_if(not stat.S_ISREG(st.st_mode), path, "not a regular file")
            image = parse(path, fd, st.st_size)
            if len(_cache) > 256:
                _cache.clear()
            _cache[key] = image
        return fd, image
    except BaseException:
        os.close(fd)
        raise


def _identity(st: os.stat_result, path: str) -> tuple:
    # ctime moves with every change to the inode (a chmod, a rewrite), so a
    # file whose rights or bytes changed is never taken for its old parse.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, path)


def cached_image(path: str, st: os.stat_result) -> ElfImage | None:
    """The parse of the file that `st` (a stat of path) describes, if it
    was opened with open_image before; None otherwise."""
    return _cache.get(_identity(st, path))


def load(path: str) -> ElfImage:
    """Parse and validate `path` (cached); no descriptor is kept."""
    fd, image = open_image(path)
    os.close(fd)
    return image
