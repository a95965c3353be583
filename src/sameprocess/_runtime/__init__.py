"""The sharing runtime, host side: its library, the space's block, build flags.

The runtime is C (block.c, registry.c, heap*.c, cache.c, channel.c; the
layouts are in internal.h and heap.h).  It is built twice: _sameprocess_rt*.so,
loaded with ctypes by the host and by CPython programs in a space
(sameprocess._sharing), and libsameprocess.a, which C and C++ programs link
(compile_flags()).

open_block() gives a Space its block: one private anonymous mapping owned by
the host (header, registry, heap metadata, then the heap arena), announced
to every program as the auxv entry AT_SAMEPROCESS.  The mapping is made once
per process and reused by later spaces: closing a space marks the block dead
and gives the arena's pages back, so a view the host still holds reads zeros
instead of faulting.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import logging
import os
import re
import threading
from pathlib import Path

from .. import _mm
from .._errors import SpaceError

log = logging.getLogger("sameprocess")

AT_SAMEPROCESS = 0x53504143  # "SPAC": the block's address, in each program's auxv
HEAP_SIZE_ENV = "SAMEPROCESS_HEAP_SIZE"
DEFAULT_HEAP_SIZE = 32 << 30  # virtual: pages are only used once touched
MIN_HEAP_SIZE = 1 << 20
PAGE = 4096

_HERE = Path(__file__).resolve().parent


class Stats(ctypes.Structure):
    """struct sp_stats."""

    _fields_ = [(name, ctypes.c_uint64) for name in (
        "heap_size", "used_bytes", "used_blocks", "allocs", "frees", "failed_allocs",
        "bad_frees", "heap_recoveries", "registry_live", "registry_recoveries")]


def _library_path() -> Path:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = _HERE / f"_sameprocess_rt{suffix}"
        if path.exists():
            return path
    raise SpaceError(f"the sharing runtime (_sameprocess_rt*.so) is not built in {_HERE}: "
                     "install the package with pip, which compiles it")


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    c = ctypes
    signatures = {
        "sp_in_space": (c.c_int, []),
        "sp_publish": (c.c_int, [c.c_char_p, c.c_void_p, c.c_size_t]),
        "sp_lookup": (c.c_void_p, [c.c_char_p, c.POINTER(c.c_size_t)]),
        "sp_wait": (c.c_void_p, [c.c_char_p, c.POINTER(c.c_size_t), c.c_long]),
        "sp_unpublish": (c.c_int, [c.c_char_p]),
        "sp_alloc": (c.c_void_p, [c.c_size_t]),
        "sp_channel_create": (c.c_void_p, [c.c_char_p, c.c_size_t]),
        "sp_channel_open": (c.c_void_p, [c.c_char_p, c.c_long]),
        "sp_channel_send": (c.c_int, [c.c_void_p, c.c_void_p, c.c_long]),
        "sp_channel_recv": (c.c_int, [c.c_void_p, c.POINTER(c.c_void_p), c.c_long]),
        "sp_channel_close": (c.c_int, [c.c_void_p]),
        "sp_channel_destroy": (c.c_int, [c.c_void_p]),
        "sp_channel_count": (c.c_size_t, [c.c_void_p]),
        "sp__attach": (c.c_int, [c.c_void_p]),
        "sp__header_size": (c.c_size_t, []),
        "sp__set_interruptible": (None, [c.c_int]),
        "sp__set_cache": (None, [c.c_int]),
        "sp__block_init": (c.c_int, [c.c_void_p, c.c_uint64, c.c_uint64, c.c_uint64]),
        "sp__block_close": (c.c_int, [c.c_void_p]),
        "sp__drop_publisher": (c.c_int, [c.c_int]),
        "sp__free_checked": (c.c_int, [c.c_void_p]),
        "sp__free_error": (c.c_char_p, [c.c_int]),
        "sp__stats": (c.c_int, [c.POINTER(Stats)]),
        "sp__heap_check": (c.c_int, [c.c_char_p, c.c_size_t]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    lib.sp__set_interruptible(1)  # Python's waits come back for signals
    lib.sp__set_cache(0)  # no per-thread cache: frees show in the counters at once
    return lib


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def library() -> ctypes.CDLL:
    """The runtime's shared library (this process's copy), bound."""
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _bind(ctypes.CDLL(str(_library_path()), use_errno=True))
        return _lib


# -- the block ---------------------------------------------------------------

class Block:
    """A space's runtime block, attached to this process's library."""

    def __init__(self, address: int, total_size: int, heap_size: int) -> None:
        self.address = address
        self.total_size = total_size
        self.heap_size = heap_size

    def program_exited(self, pid: int) -> None:
        """The host reaped program pid: drop the registry entries that name
        its own memory (not the shared heap), before that memory is unmapped."""
        dropped = library().sp__drop_publisher(pid)
        if dropped < 0:
            log.warning("sameprocess: could not drop the registry entries of pid %d: %s",
                        pid, os.strerror(-dropped))

    def close(self) -> None:
        """Every program is gone: mark the block dead, give the arena back."""
        lib = library()
        rc = lib.sp__block_close(self.address)
        lib.sp__attach(None)
        if rc != 0:
            log.warning("sameprocess: giving the shared heap's pages back failed: %s", os.strerror(-rc))


class _Mapping:
    def __init__(self, address: int, size: int) -> None:
        self.address, self.size = address, size


_mapping: _Mapping | None = None


def heap_size_from_env() -> int | None:
    """SAMEPROCESS_HEAP_SIZE: bytes, or with a K/M/G/T suffix (binary)."""
    raw = os.environ.get(HEAP_SIZE_ENV, "").strip()
    if not raw:
        return None
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)i?B?", raw, re.IGNORECASE)
    if match is None:
        raise SpaceError(f"{HEAP_SIZE_ENV}={raw!r}: expected a size such as 268435456, 256M or 4G")
    shift = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[match.group(2).upper()]
    return int(match.group(1)) << shift


def open_block(heap_size: int | None = None) -> Block:
    """Map (or reuse) and initialise the block for a space that is opening.

    heap_size: the arena's size in bytes; default $SAMEPROCESS_HEAP_SIZE,
    else 32 GiB of address space (halved until the kernel accepts it).
    """
    lib = library()
    explicit = heap_size if heap_size is not None else heap_size_from_env()
    size = DEFAULT_HEAP_SIZE if explicit is None else explicit
    if size < MIN_HEAP_SIZE:
        raise SpaceError(f"a shared heap of {size} bytes is too small (at least {MIN_HEAP_SIZE})")
    header = _round_up(lib.sp__header_size(), PAGE)
    while True:
        total = header + _round_up(size, PAGE)
        try:
            _reserve(total)
            break
        except OSError:
            if explicit is not None or size // 2 < MIN_HEAP_SIZE:
                raise
            size //= 2
    rc = lib.sp__block_init(_mapping.address, total, header, int.from_bytes(os.urandom(8), "little"))
    if rc == 0:
        rc = lib.sp__attach(_mapping.address)
    if rc != 0:
        raise OSError(-rc, f"initialising the sharing runtime's block: {os.strerror(-rc)}")
    return Block(_mapping.address, total, total - header)


def _reserve(total: int) -> None:
    global _mapping
    if _mapping is not None and _mapping.size == total:
        return
    if _mapping is not None:
        _mm.munmap(_mapping.address, _mapping.size)
        _mapping = None
    address = _mm.mmap(0, total, _mm.PROT_READ | _mm.PROT_WRITE,
                       _mm.MAP_PRIVATE | _mm.MAP_ANONYMOUS | _mm.MAP_NORESERVE)
    _mapping = _Mapping(address, total)


def _round_up(value: int, to: int) -> int:
    return (value + to - 1) // to * to


# -- building programs against the runtime -------------------------------------

def include_dir() -> Path:
    """Where sameprocess.h and sameprocess.hpp are: the installed copy, or
    include/ of the checkout for an editable install."""
    for candidate in (_HERE / "include", _HERE.parents[2] / "include"):
        if (candidate / "sameprocess.h").is_file():
            return candidate
    raise SpaceError(f"sameprocess.h is neither in {_HERE / 'include'} nor in the checkout")


def compile_flags(cflags: bool = True, libs: bool = True) -> list[str]:
    """Compiler and linker flags for a C or C++ program using the runtime:
    `cc prog.c $(sameprocess config --cflags --libs)`."""
    flags: list[str] = []
    if cflags:
        flags.append(f"-I{include_dir()}")
    if libs:
        if not (_HERE / "libsameprocess.a").is_file():
            raise SpaceError(f"libsameprocess.a is not built in {_HERE}: "
                             "install the package with pip, which builds it")
        flags += [f"-L{_HERE}", "-lsameprocess", "-pthread"]
    return flags
