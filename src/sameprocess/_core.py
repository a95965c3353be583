"""Which program of a space a core file is about, and where its code was.

When a program of a space dumps core, the kernel writes the whole shared mm
(the host and every other program included), the auxv of the mm (the
host's), NT_FILE with every file mapping, and the registers of the dumping
program's threads only (docs/debugging.md).  This module finds, from the
core alone, the dumped program's r_debug: each mapping of its executable
is a candidate; the executable's DT_DEBUG (filled by its ld.so) gives the
r_debug; the candidate whose link_map holds the object that the crashing
thread's pc lies in is the one.  A static program has no ld.so: its
candidate is the mapping of the executable that holds the pc.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

from ._debug import DebugTarget
from ._elf import EHDR, PHDR, PType, page_down

R_DEBUG_MAP = struct.Struct("<i4xQ")       # r_version, r_map
LINK_MAP = struct.Struct("<QQQQQ")         # l_addr, l_name, l_ld, l_next, l_prev
DYN = struct.Struct("<qQ")
DT_NULL, DT_DEBUG = 0, 21
PT_NOTE = 4
NT_PRSTATUS, NT_FILE = 1, 0x46494C45
PRSTATUS_PID = 32                          # offset of pr_pid in elf_prstatus (x86_64)
PRSTATUS_RIP = 112 + 16 * 8                # pr_reg starts at 112; rip is register 16
ET_CORE, EM_X86_64 = 4, 62
MAX_OBJECTS = 4096


class CoreError(Exception):
    """The file is not a core this module can read, or names no such program."""


@dataclass(frozen=True)
class FileMapping:
    start: int
    end: int
    offset: int
    path: str


class Core:
    """The parts of an x86_64 ELF core file that locate a program."""

    def __init__(self, path: str) -> None:
        self.path = path
        # A core of a space holds the whole shared mm (the shared heap's
        # arena, every program): gigabytes, mostly holes.  Mapped, not read.
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise CoreError(f"{path}: an empty file, not a core")
            self.data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.loads: list[tuple[int, int, int]] = []   # (vaddr, filesz, file offset)
        self.files: list[FileMapping] = []
        self.threads: list[tuple[int, int]] = []      # (tid, pc), the dumping thread first
        self._parse()

    def _parse(self) -> None:
        head = self.data[:EHDR.size]
        if len(head) < EHDR.size or head[:4] != b"\x7fELF":
            raise CoreError(f"{self.path}: not an ELF file")
        ident, etype, machine, _, _, phoff, _, _, _, phentsize, phnum, _, _, _ = EHDR.unpack(head)
        if ident[4] != 2 or ident[5] != 1 or etype != ET_CORE or machine != EM_X86_64:
            raise CoreError(f"{self.path}: not an x86_64 core file (type {etype}, machine {machine})")
        if phentsize != PHDR.size or phoff + phnum * PHDR.size > len(self.data):
            raise CoreError(f"{self.path}: truncated program header table")
        for p in PHDR.iter_unpack(self.data[phoff:phoff + phnum * PHDR.size]):
            ptype, _, offset, vaddr, _, filesz = p[:6]
            if ptype == PType.LOAD and filesz:
                self.loads.append((vaddr, min(filesz, max(0, len(self.data) - offset)), offset))
            elif ptype == PT_NOTE:
                self._notes(self.data[offset:offset + filesz])
        if not self.threads:
            raise CoreError(f"{self.path}: no thread registers (NT_PRSTATUS) in the core")

    def _notes(self, blob: bytes) -> None:
        pos = 0
        while pos + 12 <= len(blob):
            namesz, descsz, ntype = struct.unpack_from("<III", blob, pos)
            desc_at = pos + 12 + ((namesz + 3) & ~3)
            desc = blob[desc_at:desc_at + descsz]
            if ntype == NT_PRSTATUS and len(desc) >= PRSTATUS_RIP + 8:
                tid = struct.unpack_from("<i", desc, PRSTATUS_PID)[0]
                self.threads.append((tid, struct.unpack_from("<Q", desc, PRSTATUS_RIP)[0]))
            elif ntype == NT_FILE:
                self.files = _file_note(desc)
            pos = desc_at + ((descsz + 3) & ~3)

    def read(self, address: int, size: int) -> bytes | None:
        """Memory as dumped, or None where the core holds none."""
        for vaddr, filesz, offset in self.loads:
            if vaddr <= address and address + size <= vaddr + filesz:
                return self.data[offset + address - vaddr:offset + address - vaddr + size]
        return None

    def string(self, address: int, limit: int = 4096) -> str | None:
        for vaddr, filesz, offset in self.loads:
            if vaddr <= address < vaddr + filesz:
                start = offset + address - vaddr
                end = self.data.find(b"\0", start, min(start + limit, offset + filesz))
                return None if end < 0 else os.fsdecode(self.data[start:end])
        return None


def _file_note(desc: bytes) -> list[FileMapping]:
    """NT_FILE: count, page size, count × (start, end, page offset), then the paths."""
    if len(desc) < 16:
        return []
    count, page = struct.unpack_from("<QQ", desc)
    table_end = 16 + count * 24
    if table_end > len(desc):
        return []
    names = desc[table_end:].split(b"\0")
    return [FileMapping(start, end, pgoff * page, os.fsdecode(name))
            for (start, end, pgoff), name in zip(struct.iter_unpack("<QQQ", desc[16:table_end]), names)]


def find_program(core: Core, executable: str) -> DebugTarget:
    """The DebugTarget (pid, r_debug, bias) of the dumped program, which ran
    `executable`."""
    exe = os.path.realpath(executable)
    tid, pc = core.threads[0]
    firsts = [m for m in core.files if _same_file(m.path, exe) and m.offset == 0]
    if not firsts:
        raise CoreError(f"{executable} is not mapped in {core.path}: the core is of another program")
    found = []
    for mapping in firsts:
        bias, r_debug = _main_load(core, mapping.start)
        if bias is None:
            continue
        found.append(DebugTarget(tid, exe, r_debug, bias))
        if _program_holds(core, mapping.start, bias, r_debug, pc):
            return found[-1]
    if len(found) == 1:   # the pc is elsewhere (code the program mapped itself)
        return found[0]
    raise CoreError(f"{len(firsts)} copies of {executable} are mapped in {core.path}, and none "
                    f"holds the crashing thread's pc {pc:#x}")


def _same_file(path: str, exe: str) -> bool:
    return path == exe or os.path.realpath(path) == exe


def _phdrs(core: Core, header_at: int) -> list[tuple] | None:
    head = core.read(header_at, EHDR.size)
    if head is None or head[:4] != b"\x7fELF":
        return None
    fields = EHDR.unpack(head)
    phoff, phentsize, phnum = fields[5], fields[9], fields[10]
    table = core.read(header_at + phoff, phnum * PHDR.size) if phentsize == PHDR.size else None
    return None if table is None else list(PHDR.iter_unpack(table))


def _main_load(core: Core, header_at: int) -> tuple[int | None, int]:
    """(load bias, DT_DEBUG value) of the executable whose first page is at
    header_at; (None, 0) when its headers are not in the core."""
    phdrs = _phdrs(core, header_at)
    loads = [p for p in phdrs or () if p[0] == PType.LOAD]
    if not loads:
        return None, 0
    bias = header_at - page_down(loads[0][3])
    dynamic = next((p for p in phdrs if p[0] == PType.DYNAMIC), None)
    table = core.read(bias + dynamic[3], dynamic[5]) if dynamic else None
    for tag, value in DYN.iter_unpack(table[:len(table) // DYN.size * DYN.size] if table else b""):
        if tag == DT_DEBUG:
            return bias, value
        if tag == DT_NULL:
            break
    return bias, 0


def _in_object(core: Core, header_at: int, bias: int, pc: int) -> bool:
    loads = [p for p in _phdrs(core, header_at) or () if p[0] == PType.LOAD]
    return any(bias + p[3] <= pc < bias + p[3] + p[6] for p in loads)


def _program_holds(core: Core, header_at: int, bias: int, r_debug: int, pc: int) -> bool:
    """Whether pc lies in the executable or in an object on its link_map
    (a shared object's headers sit at its bias: its first segment is at 0)."""
    if _in_object(core, header_at, bias, pc):
        return True
    return any(_in_object(core, lib, lib, pc) for lib in _link_map_biases(core, r_debug)[1:] if lib)


def _link_map_biases(core: Core, r_debug: int) -> list[int]:
    raw = core.read(r_debug, R_DEBUG_MAP.size) if r_debug else None
    entry, out = (R_DEBUG_MAP.unpack(raw)[1] if raw else 0), []
    while entry and len(out) < MAX_OBJECTS:
        raw = core.read(entry, LINK_MAP.size)
        if raw is None:
            break
        bias, _, _, entry, _ = LINK_MAP.unpack(raw)
        out.append(bias)
    return out
