"""Bad input: clear errors, and nothing left behind (mappings, fds, processes)."""
import contextlib
import errno
import os
import shutil
import struct
import subprocess

import pytest

from _reliability_helpers import children_of
from sameprocess import ExecError, _mm
from sameprocess._elf import EHDR, PHDR
from sameprocess._loader import STACK_GUARD


def fds():
    return sorted(os.listdir("/proc/self/fd"))


def loader_mappings():
    """Mappings a failed spawn could leave: its reservation, which always
    holds a stack guard of STACK_GUARD bytes (---p), and ELF files.

    Python's heap (anonymous read-write), a malloc arena that a host thread
    reserves the first time it allocates (---p, at most 64 MiB) and the
    host's imports come and go on their own, so they are not counted.
    """
    return {m for m in _mm.read_maps()
            if (m.perms.startswith("---") and m.end - m.start >= STACK_GUARD)
            or (m.path.startswith("/") and "python3" not in m.path)}


def children() -> set[int]:
    return set(children_of(os.getpid()))


@contextlib.contextmanager
def nothing_left_behind():
    """Asserts that the spawns inside left no fd, mapping or process."""
    fds0, maps0, children0 = fds(), loader_mappings(), children()
    yield
    assert fds() == fds0
    assert loader_mappings() - maps0 == set()
    assert children() == children0


@pytest.fixture
def clean(space, build):
    space.run([build("hello.c")])  # warm caches so later counts are stable
    with nothing_left_behind():
        yield


def patched(tmp_path, source, name, edit):
    data = bytearray(open(source, "rb").read())
    edit(data)
    path = tmp_path / name
    path.write_bytes(bytes(data))
    path.chmod(0o755)
    return str(path)


def first_phdr(data, ptype):
    phoff, phnum = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<H", data, 56)[0]
    for i in range(phnum):
        if struct.unpack_from("<I", data, phoff + i * PHDR.size)[0] == ptype:
            return phoff + i * PHDR.size
    raise AssertionError("no such program header")


def expect_exec_error(space, path, fragment, err=errno.ENOEXEC):
    with pytest.raises(ExecError) as info:
        space.Popen([path])
    assert isinstance(info.value, OSError) and info.value.errno == err
    assert fragment in str(info.value) and path in str(info.value)


def test_missing_program(space, clean):
    with pytest.raises(FileNotFoundError) as info:
        space.run(["/nonexistent/program"])
    assert info.value.filename == "/nonexistent/program"
    with pytest.raises(FileNotFoundError):
        space.run(["no-such-program-on-path-xyz"])


def test_not_executable(space, tmp_path, build):
    path = tmp_path / "noexec"
    shutil.copy(build("hello.c"), path)
    path.chmod(0o644)
    with nothing_left_behind(), pytest.raises(PermissionError):
        space.run([str(path)])
    with nothing_left_behind(), pytest.raises(PermissionError):
        space.run([str(tmp_path)])  # a directory


def test_not_elf(space, clean, tmp_path):
    path = tmp_path / "text"
    path.write_text("just text\n")
    path.chmod(0o755)
    expect_exec_error(space, str(path), "not an ELF file")


def test_32_bit_wrong_arch_and_bad_type(space, clean, tmp_path, build):
    hello = build("hello.c")
    expect_exec_error(space, patched(tmp_path, hello, "c32", lambda d: d.__setitem__(4, 1)), "32-bit")
    expect_exec_error(space, patched(tmp_path, hello, "arch", lambda d: struct.pack_into("<H", d, 18, 183 if os.uname().machine == "x86_64" else 62)), "wrong architecture")
    expect_exec_error(space, patched(tmp_path, hello, "rel", lambda d: struct.pack_into("<H", d, 16, 1)), "not an executable")
    expect_exec_error(space, patched(tmp_path, hello, "be", lambda d: d.__setitem__(5, 2)), "EI_DATA")


def test_truncated_and_corrupt_headers(space, clean, tmp_path, build):
    hello = build("hello.c")
    expect_exec_error(space, patched(tmp_path, hello, "t40", lambda d: d.__delitem__(slice(40, None))), "truncated")
    expect_exec_error(space, patched(tmp_path, hello, "tph", lambda d: d.__delitem__(slice(100, None))), "past the end")
    expect_exec_error(space, patched(tmp_path, hello, "phent", lambda d: struct.pack_into("<H", d, 54, 40)), "e_phentsize")
    expect_exec_error(space, patched(tmp_path, hello, "phnum", lambda d: struct.pack_into("<H", d, 56, 0)), "e_phnum")

    def big_filesz(d):
        off = first_phdr(d, 1)
        struct.pack_into("<Q", d, off + 32, 1 << 40)  # p_filesz
    expect_exec_error(space, patched(tmp_path, hello, "fsz", big_filesz), "p_filesz")

    def huge_memsz(d):
        off = first_phdr(d, 1)
        struct.pack_into("<QQ", d, off + 32, 16, 1 << 62)
    expect_exec_error(space, patched(tmp_path, hello, "msz", huge_memsz), "outside user space")

    def misaligned(d):
        off = first_phdr(d, 1)
        struct.pack_into("<Q", d, off + 8, 123)  # p_offset not congruent to p_vaddr
    expect_exec_error(space, patched(tmp_path, hello, "align", misaligned), "modulo the page size")


def test_missing_interpreter(space, clean, tmp_path, build):
    hello = build("hello.c")

    def bad_interp(d):
        off = first_phdr(d, 3)
        offset, filesz = struct.unpack_from("<Q", d, off + 8)[0], struct.unpack_from("<Q", d, off + 32)[0]
        d[offset:offset + filesz] = b"/nonexistent/ld.so".ljust(filesz - 1, b"x") + b"\0"
    path = patched(tmp_path, hello, "interp", bad_interp)
    expect_exec_error(space, path, "interpreter /nonexistent/ld.so", errno.ENOENT)


def test_bad_cwd_is_file_not_found_naming_the_directory(space, clean, build):
    with pytest.raises(FileNotFoundError) as info:
        space.run([build("hello.c")], cwd="/nonexistent-dir")
    assert info.value.filename == "/nonexistent-dir"


def test_argument_list_too_long(space, build):
    hello = build("hello.c")
    one_long, many = [hello, "x" * 200_000], [hello] + ["y" * 100_000] * 80
    space.run([hello])
    with nothing_left_behind():
        for argv in (one_long, many):
            with pytest.raises(OSError) as info:
                space.run(argv)
            assert info.value.errno == errno.E2BIG


def test_closed_pass_fd(space, clean, build):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        space.run([build("hello.c")], pass_fds=(r,))
