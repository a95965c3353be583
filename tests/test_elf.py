"""ELF identification and validation, against readelf and under mutation."""
import os
import re
import shutil
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sameprocess import ExecError, _elf, _loader, _mm


def readelf_loads(path):
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=True).stdout
    rows = re.findall(r"^\s+LOAD\s+(0x\w+)\s+(0x\w+)\s+0x\w+\s+(0x\w+)\s+(0x\w+)", out, re.M)
    return [tuple(int(x, 16) for x in row) for row in rows]


@pytest.mark.parametrize("path", ["/bin/ls", "/lib64/ld-linux-x86-64.so.2" if os.uname().machine == "x86_64"
                                  else "/lib/ld-linux-aarch64.so.1"])
def test_segments_agree_with_readelf(path):
    image = _elf.load(path)
    assert [(s.offset, s.vaddr, s.filesz, s.memsz) for s in image.loads] == readelf_loads(path)


def test_interpreter_and_symbols(build):
    image = _elf.load(build("hello.c"))
    assert image.interp.startswith("/lib") and "ld-linux" in image.interp
    ldso = _elf.load(image.interp)
    assert ldso.interp is None and "_r_debug" in ldso.dynamic_symbols
    assert _elf.load(build("hello_static.c")).interp is None


def test_parse_is_cached_by_file_identity(build, tmp_path):
    path = tmp_path / "h"
    shutil.copy(build("hello.c"), path)
    first = _elf.load(str(path))
    assert _elf.load(str(path)) is first
    path.write_bytes(b"not elf any more")
    with pytest.raises(ExecError, match="bad magic"):
        _elf.load(str(path))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    import _build
    builder = _build.Builder(tmp_path_factory.mktemp("elf-seeds"))
    paths = [builder("hello.c"), builder("hello_static.c"), builder("nonpie.c")]
    return [open(p, "rb").read() for p in paths] + [open(_elf.load("/bin/true").interp, "rb").read()]


def _mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for offset, value in edits:
        buf[offset % min(len(buf), 4096)] = value
    return bytes(buf)


def _file_mappings(path):
    return {(m.start, m.end) for m in _mm.read_maps() if m.path == path}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 3), edits=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)),
                                                min_size=1, max_size=12),
       cut=st.one_of(st.none(), st.integers(0, 8192)))
def test_mutated_headers_parse_and_map_cleanly(seeds, tmp_path, which, edits, cut):
    """Any header damage is an ExecError, or a valid image whose every file
    mapping lands inside its own reservation and which unmaps completely."""
    data = _mutate(seeds[which], edits)
    if cut is not None:
        data = data[:cut]
    path = tmp_path / "fuzzed"
    path.write_bytes(data)
    try:
        fd, image = _elf.open_image(str(path))
    except ExecError:
        return
    regions = _loader.Regions()
    mapped = set()
    try:
        _loader.load_image(image, fd, regions)
    except (ExecError, OSError):
        pass
    finally:
        reserved = list(regions.ranges)
        mapped = _file_mappings(str(path))  # what the native overlays put where
        regions.unmap()
        os.close(fd)
    for lo, hi in mapped:
        assert any(r_lo <= lo and hi <= r_hi for r_lo, r_hi in reserved), (hex(lo), hex(hi))
    assert _file_mappings(str(path)) == set()


def test_a_header_table_past_the_image_is_refused(seeds, tmp_path):
    """PT_PHDR inside the image but more e_phnum entries than fit: the
    program's loader would read the rest from whatever follows the image."""
    data = bytearray(seeds[0])
    phoff, phnum = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<H", data, 56)[0]
    table = bytes(data[phoff:phoff + 56 * phnum])
    path = tmp_path / "ok"
    path.write_bytes(bytes(data))
    longer = _elf.load(str(path)).span_end // 56 + 1
    # The file's table moves to the end with PT_NULL entries added; PT_PHDR
    # still names the original place in memory.
    struct.pack_into("<Q", data, 32, len(data))
    struct.pack_into("<H", data, 56, longer)
    path = tmp_path / "long-table"
    path.write_bytes(bytes(data) + table + b"\0" * (56 * (longer - phnum)))
    with pytest.raises(ExecError, match="program header table at .* is outside the loaded segments"):
        _elf.load(str(path))
