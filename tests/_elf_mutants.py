"""Damaged ELF files, described as recipes: lists of edits (plain tuples
and numbers) applied to a seed executable.

hypothesis (tests/test_fuzz_elf.py) and the long-running driver
(scripts/fuzz.py) draw the same kinds of damage from here, and a failing
recipe can be printed, replayed with apply() and kept in the corpus
(tests/corpus/elf/).  Damage stays in what the host validates: the ELF
header, the program header table, the PT_INTERP string.  tiny_elf() makes a
512-byte program by hand for headers no compiler emits.
"""
from __future__ import annotations

import os
import socket
import struct

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
EHDR_FIELDS = ("ident", "type", "machine", "version", "entry", "phoff", "shoff", "flags",
               "ehsize", "phentsize", "phnum", "shentsize", "shnum", "shstrndx")
PHDR_FIELDS = ("type", "flags", "offset", "vaddr", "paddr", "filesz", "memsz", "align")
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_PHDR = 1, 2, 3, 6

# Fixed-address sentinel the worker maps before any spawn; mutants are aimed at it.
SENTINEL_ADDR = 0x30000000
SENTINEL_SIZE = 2 << 20
SENTINEL_BYTE = 0xA5
HEADER_AREA = 4096   # raw byte edits stay in the headers, not in code


# -- recipes --------------------------------------------------------------------
def interesting_values(original: int, file_size: int) -> list[int]:
    """Boundary values for one header field, relative to its current value."""
    top = 1 << 47
    return [0, 1, 7, 0xFFF, 0x1000, 0x1001, 0x200000, 1 << 30, 1 << 31, 1 << 32, 1 << 40,
            top - 0x1000, top, (1 << 63), (1 << 64) - 1, (1 << 64) - 0x1000,
            original + 1, max(original - 1, 0), original + 0x1000, max(original - 0x1000, 0),
            original * 2, original ^ (1 << 12), file_size, file_size + 1, max(file_size - 1, 0),
            SENTINEL_ADDR, SENTINEL_ADDR + 0x1000]


# Targets for PT_INTERP: a name the worker creates in its fixture directory
# (see make_interp_fixtures), or an absolute path as is.
INTERP_TARGETS = ("missing", "directory", "text", "empty", "fifo", "devzero",
                  "truncated_elf", "elf32", "static_pie", "dynamic_exe", "musl", "ldso",
                  "relative", "proc_self_exe", "symlink_loop", "socket")


def apply(seed: bytes, recipe: list, fixtures: dict[str, str]) -> bytes:
    """The mutant: `seed` with each edit of `recipe` applied in order."""
    buf = bytearray(seed)
    for edit in recipe:
        kind, args = edit[0], edit[1:]
        _EDITS[kind](buf, fixtures, *args)
    return bytes(buf)


def _ehdr(buf: bytearray) -> dict:
    if len(buf) < EHDR.size:
        return {}
    return dict(zip(EHDR_FIELDS, EHDR.unpack_from(buf)))


def _set_ehdr(buf: bytearray, field: str, value: int) -> None:
    if len(buf) < EHDR.size:
        return
    values = list(EHDR.unpack_from(buf))
    index = EHDR_FIELDS.index(field)
    width = {"type": 16, "machine": 16, "version": 32, "flags": 32}.get(field, 64)
    if field in ("ehsize", "phentsize", "phnum", "shentsize", "shnum", "shstrndx"):
        width = 16
    values[index] = value & ((1 << width) - 1)
    EHDR.pack_into(buf, 0, *values)


def _phdr_offsets(buf: bytearray) -> list[int]:
    """Offsets of the program headers that lie inside the file."""
    h = _ehdr(buf)
    if not h or h["phentsize"] != PHDR.size:
        return []
    return [h["phoff"] + i * PHDR.size for i in range(min(h["phnum"], 4096))
            if h["phoff"] + (i + 1) * PHDR.size <= len(buf)]


def _phdr_of_type(buf: bytearray, ptype: int, which: int = 0) -> int | None:
    found = [o for o in _phdr_offsets(buf) if struct.unpack_from("<I", buf, o)[0] == ptype]
    return found[which % len(found)] if found else None


def _edit_ehdr(buf, fixtures, field: str, choice: int) -> None:
    h = _ehdr(buf)
    if h:
        values = interesting_values(h[field] if field != "ident" else 0, len(buf))
        _set_ehdr(buf, field, values[choice % len(values)])


def _edit_phdr(buf, fixtures, index: int, field: str, choice: int) -> None:
    offsets = _phdr_offsets(buf)
    if not offsets:
        return
    at = offsets[index % len(offsets)]
    values = list(PHDR.unpack_from(buf, at))
    pos = PHDR_FIELDS.index(field)
    pool = interesting_values(values[pos], len(buf))
    if field == "type":
        pool = [0, PT_LOAD, PT_DYNAMIC, PT_INTERP, 4, 5, PT_PHDR, 7, 0x6474E550,
                0x6474E551, 0x6474E552, 0x6474E553, 0x70000000, 0xFFFFFFFF]
    elif field == "flags":
        pool = list(range(8)) + [0xFFFFFFFF]
    width = 32 if field in ("type", "flags") else 64
    values[pos] = pool[choice % len(pool)] & ((1 << width) - 1)
    PHDR.pack_into(buf, at, *values)


def _edit_load(buf, fixtures, which: int, field: str, choice: int) -> None:
    """Like _edit_phdr, but always on a PT_LOAD (where most checks are)."""
    at = _phdr_of_type(buf, PT_LOAD, which)
    if at is not None:
        loads = _phdr_offsets(buf)
        _edit_phdr(buf, fixtures, loads.index(at), field, choice)


def _overlap_loads(buf, fixtures, which: int) -> None:
    """Move a PT_LOAD onto its predecessor's address (same page offset)."""
    loads = [o for o in _phdr_offsets(buf) if struct.unpack_from("<I", buf, o)[0] == PT_LOAD]
    if len(loads) < 2:
        return
    i = 1 + which % (len(loads) - 1)
    prev, cur = PHDR.unpack_from(buf, loads[i - 1]), list(PHDR.unpack_from(buf, loads[i]))
    cur[3] = (prev[3] + ((cur[2] - prev[2]) % 0x1000)) & ((1 << 64) - 1)
    PHDR.pack_into(buf, loads[i], *cur)


def _huge_memsz(buf, fixtures, which: int, shift: int) -> None:
    at = _phdr_of_type(buf, PT_LOAD, which)
    if at is not None:
        values = list(PHDR.unpack_from(buf, at))
        values[6] = (values[5] + (1 << (20 + shift % 28))) & ((1 << 64) - 1)
        PHDR.pack_into(buf, at, *values)


def _entry_outside(buf, fixtures, choice: int) -> None:
    h = _ehdr(buf)
    if h:
        loads = [PHDR.unpack_from(buf, o) for o in _phdr_offsets(buf)
                 if struct.unpack_from("<I", buf, o)[0] == PT_LOAD]
        end = max((p[3] + p[6] for p in loads), default=0)
        start = min((p[3] for p in loads), default=0)
        _set_ehdr(buf, "entry", [end, end + 1, max(start - 1, 0), 1 << 47, end - 1][choice % 5])


def _many_phdrs(buf, fixtures, count: int, fill: int) -> None:
    """A new program header table at the end of the file: the old entries,
    then `count` copies of one of them (PT_NULL / PT_LOAD / PT_INTERP...)."""
    offsets = _phdr_offsets(buf)
    if not offsets:
        return
    old = [bytes(buf[o:o + PHDR.size]) for o in offsets]
    extra = old[fill % len(old)] if fill % 3 else bytes(PHDR.size)
    while len(buf) % 8:
        buf.append(0)
    phoff = len(buf)
    buf += b"".join(old) + extra * count
    _set_ehdr(buf, "phoff", phoff)
    _set_ehdr(buf, "phnum", len(old) + count)


def _interp(buf, fixtures, target: str, length_delta: int, nul: bool) -> None:
    """Point PT_INTERP at a new string appended to the file."""
    at = _phdr_of_type(buf, PT_INTERP)
    if at is None:
        return
    path = fixtures.get(target, target).encode()
    text = path + (b"\0" if nul else b"")
    values = list(PHDR.unpack_from(buf, at))
    values[2], values[5] = len(buf), max(len(text) + length_delta, 0)
    buf += text
    PHDR.pack_into(buf, at, *values)


def _set_field(buf, fixtures, ptype: int, which: int, field: str, value: int) -> None:
    """Set one field of the `which`-th program header of type `ptype`."""
    at = _phdr_of_type(buf, ptype, which)
    if at is not None:
        values = list(PHDR.unpack_from(buf, at))
        width = 32 if field in ("type", "flags") else 64
        values[PHDR_FIELDS.index(field)] = value & ((1 << width) - 1)
        PHDR.pack_into(buf, at, *values)


def _shift_field(buf, fixtures, ptype: int, which: int, field: str, delta: int) -> None:
    """Add `delta` (wrapping) to one field of a program header of type `ptype`."""
    at = _phdr_of_type(buf, ptype, which)
    if at is not None:
        _set_field(buf, fixtures, ptype, which, field, PHDR.unpack_from(buf, at)[PHDR_FIELDS.index(field)] + delta)


def _interp_junk(buf, fixtures, junk: bytes | str) -> None:
    junk = bytes.fromhex(junk) if isinstance(junk, str) else junk
    at = _phdr_of_type(buf, PT_INTERP)
    if at is not None:
        values = list(PHDR.unpack_from(buf, at))
        values[2], values[5] = len(buf), len(junk)
        buf += junk
        PHDR.pack_into(buf, at, *values)


def _raw_bytes(buf, fixtures, edits: list) -> None:
    """Byte edits in the ELF header and the program header table only: the
    parts the host validates (damage to code, relocations or the dynamic
    section is the program's own content, see test_fuzz_elf.py)."""
    h = _ehdr(buf)
    table_end = h["phoff"] + h["phnum"] * PHDR.size if h else 0
    area = min(len(buf), table_end if EHDR.size <= table_end <= HEADER_AREA else EHDR.size)
    for offset, value in edits:
        if area:
            buf[offset % area] = value & 0xFF


def _truncate(buf, fixtures, length: int) -> None:
    del buf[length:]


def _exec_at_sentinel(buf, fixtures, shift_pages: int) -> None:
    """Make it ET_EXEC and slide its segments so they cover the sentinel."""
    h = _ehdr(buf)
    placed = [o for o in _phdr_offsets(buf) if PHDR.unpack_from(buf, o)[6]]   # every header with a size
    loads = [o for o in placed if struct.unpack_from("<I", buf, o)[0] == PT_LOAD]
    if not h or not loads:
        return
    first = min(PHDR.unpack_from(buf, o)[3] for o in loads)
    delta = SENTINEL_ADDR + (shift_pages % 512) * 0x1000 - (first & ~0xFFF)
    for o in placed:
        values = list(PHDR.unpack_from(buf, o))
        values[3] = (values[3] + delta) & ((1 << 64) - 1)
        values[4] = values[3]
        PHDR.pack_into(buf, o, *values)
    _set_ehdr(buf, "type", 2)
    _set_ehdr(buf, "entry", h["entry"] + delta)


_EDITS = {
    "ehdr": _edit_ehdr, "phdr": _edit_phdr, "load": _edit_load, "overlap": _overlap_loads,
    "huge_memsz": _huge_memsz, "entry_outside": _entry_outside, "many_phdrs": _many_phdrs,
    "interp": _interp, "interp_junk": _interp_junk, "bytes": _raw_bytes, "truncate": _truncate,
    "exec_at_sentinel": _exec_at_sentinel, "set": _set_field, "shift": _shift_field,
}

# Program header types worth aiming at by type (GNU_STACK, GNU_RELRO, GNU_EH_FRAME...).
AIMED_TYPES = (PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_PHDR, 7, 0x6474E550, 0x6474E551, 0x6474E552, 4)


def tiny_elf(extra: list[tuple] = (), code: bytes = b"\xb8\x3c\x00\x00\x00\x31\xff\x0f\x05") -> bytes:
    """A hand-made position-independent static program of 512 bytes: one
    PT_LOAD (R+X) holding the headers and, at 0x100, `code` (default:
    exit(0)).  `extra` program headers (type, flags, offset, vaddr, filesz,
    memsz, align) follow the PT_LOAD."""
    phdrs = [(PT_LOAD, 5, 0, 0, 0x200, 0x200, 0x1000)] + list(extra)
    head = EHDR.pack(b"\x7fELF\x02\x01\x01" + bytes(9), 3, 62, 1, 0x100, 64, 0, 0, 64,
                     PHDR.size, len(phdrs), 0, 0, 0)
    table = b"".join(PHDR.pack(t, f, o, v, v, fs, ms, a) for t, f, o, v, fs, ms, a in phdrs)
    body = (head + table).ljust(0x100, b"\0") + code
    return body.ljust(0x200, b"\0")


# -- fixtures the mutants point at --------------------------------------------
def make_interp_fixtures(directory: str, seeds: dict[str, str]) -> dict[str, str]:
    """Files for PT_INTERP to name: name -> absolute path (or a relative one)."""
    d = os.path.join(directory, "interp-targets")
    os.makedirs(d, exist_ok=True)
    out = {"missing": os.path.join(d, "no-such-ld.so"), "directory": d,
           "devzero": "/dev/zero", "relative": "lib/ld.so", "proc_self_exe": "/proc/self/exe"}
    for name, data in (("text", b"#!/bin/sh\necho not an interpreter\n"), ("empty", b""),
                       ("truncated_elf", open(seeds["ldso"], "rb").read(200)),
                       ("elf32", b"\x7fELF\x01\x01\x01" + bytes(57))):
        out[name] = os.path.join(d, name)
        with open(out[name], "wb") as f:
            f.write(data)
    out["fifo"] = os.path.join(d, "fifo")
    if not os.path.exists(out["fifo"]):
        os.mkfifo(out["fifo"])
    out["symlink_loop"] = os.path.join(d, "loop")
    if not os.path.lexists(out["symlink_loop"]):
        os.symlink(out["symlink_loop"], out["symlink_loop"])
    out["socket"] = os.path.join(d, "sock")
    if not os.path.exists(out["socket"]):
        s = socket.socket(socket.AF_UNIX)
        s.bind(out["socket"])
        s.close()
    for name in ("static_pie", "dynamic_exe", "musl", "ldso"):
        if name in seeds:
            out[name] = seeds[name]
    out.setdefault("musl", "/lib/ld-musl-x86_64.so.1")
    return out


def random_recipe(rng, seed: bytes) -> list:
    """A recipe drawn with random.Random `rng` (the long-running driver)."""
    return [_random_edit(rng) for _ in range(rng.randint(1, 4))]


def _random_edit(rng) -> tuple:
    kind = rng.choice(list(_EDITS))
    n = rng.randrange(1 << 16)
    if kind == "ehdr":
        return (kind, rng.choice(EHDR_FIELDS[1:]), n)
    if kind == "phdr":
        return (kind, rng.randrange(16), rng.choice(PHDR_FIELDS), n)
    if kind == "load":
        return (kind, rng.randrange(8), rng.choice(PHDR_FIELDS[1:]), n)
    if kind in ("overlap", "entry_outside", "exec_at_sentinel"):
        return (kind, n)
    if kind in ("set", "shift"):
        field = rng.choice(PHDR_FIELDS[1:])
        value = rng.choice(interesting_values(0, 1 << 16)) if kind == "set" else rng.randint(-(1 << 24), 1 << 24)
        return (kind, rng.choice(AIMED_TYPES), rng.randrange(4), field, value)
    if kind == "huge_memsz":
        return (kind, rng.randrange(8), rng.randrange(28))
    if kind == "many_phdrs":
        return (kind, rng.choice([1, 2, 100, 1160, 1163, 5000, 65535]), rng.randrange(9))
    if kind == "interp":
        return (kind, rng.choice(INTERP_TARGETS), rng.choice([0, 0, -1, 1, -5, 4096]), rng.random() < 0.9)
    if kind == "interp_junk":
        return (kind, rng.randbytes(rng.choice([0, 1, 2, 64, 4097])))
    if kind == "bytes":
        return (kind, [(rng.randrange(HEADER_AREA), rng.randrange(256)) for _ in range(rng.randint(1, 12))])
    return ("truncate", rng.randrange(1 << 14))
