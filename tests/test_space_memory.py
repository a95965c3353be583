"""brk, zero-copy sharing and space.view."""
import ctypes
import os
import subprocess

import pytest

from _kv import kv


def test_no_allocator_variable_is_set(space, build):
    r = space.run(["env"], capture_output=True, text=True)
    assert "MALLOC_" not in r.stdout


def test_sbrk_fails_cleanly_and_malloc_still_works(space, build):
    r = space.run([build("sbrk.c")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    state = kv(r.stdout)
    assert state["sbrk_grow"] == "ENOMEM" and state["after_grow_delta"] == "0"
    assert state["brk_grow"] != "ok" and state["after_brk_delta"] == "0"
    # Below the start of the break the kernel leaves it alone, as natively
    # at the start of a heap: nothing moves, in the kernel or in glibc.
    assert state["after_below_delta"] == "0" and state["kernel_delta"] == "0"
    assert "heap ok" in r.stdout


def test_programs_allocating_at_once_do_not_corrupt_each_other(space, build):
    heavy = build("malloc_heavy.c")
    native = kv(subprocess.run([heavy], capture_output=True, text=True).stdout)
    programs = [space.Popen([heavy], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    host_blocks = [bytearray(b"%d" % i) * 1000 for i in range(2000)]  # the host allocates too
    for p in programs:
        out, _ = p.communicate()
        assert p.returncode == 0
        assert kv(out)["checksum"] == native["checksum"]
    assert all(block == bytearray(b"%d" % i) * 1000 for i, block in enumerate(host_blocks))


def test_host_heap_grows_after_the_guard(space):
    big = [bytearray(1 << 20) for _ in range(256)]  # 256 MiB from the host's malloc
    assert len(big) == 256 and big[-1][-1] == 0


def test_zero_copy_string_and_map_between_programs_and_host(space, build):
    producer = space.Popen([build("zc_producer.cpp")], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    where = {}
    while (line := producer.stdout.readline()) != "waiting\n":
        assert line, "producer exited early"
        key, _, value = line.strip().partition("=")
        where[key] = value
    # The host reads the producer's heap string in place.
    pattern = bytes(65 + i % 26 for i in range(1000))
    assert bytes(space.view(int(where["string_data"], 16), int(where["string_len"]))) == pattern
    # A second program reads both objects through the pointers and writes into the string.
    consumer = space.run([build("zc_consumer.cpp"), where["string_addr"], where["map_addr"], "--write"],
                         capture_output=True, text=True)
    assert consumer.returncode == 0, consumer.stderr
    out, _ = producer.communicate("\n")
    assert producer.returncode == 0 and "producer done" in out
    consumed, produced = kv(consumer.stdout), kv(out)
    assert consumed["map_size"] == "4" and consumed["map_lookup_beta"] == "2"
    for key in ("string_len", "map_size", "map_entries", "map_lookup_beta"):
        assert consumed[key] == produced[key], key
    assert produced["string_head"].startswith("WRITTEN-BY-CONSU")  # the producer sees the write


def test_view_is_writable_and_zero_copy(space):
    buf = ctypes.create_string_buffer(b"abcdef")
    view = space.view(ctypes.addressof(buf), 6)
    view[0:3] = b"XYZ"
    assert buf.value == b"XYZdef"


def test_view_rejects_unmapped_and_read_only_ranges(space):
    with pytest.raises(ValueError, match="not mapped"):
        space.view(0x1000, 16)
    with pytest.raises(ValueError):
        space.view(-5, 16)
    code = ctypes.cast(ctypes.CDLL(None).printf, ctypes.c_void_p).value
    with pytest.raises(ValueError, match="read-only"):
        space.view(code, 16)
    assert len(space.view(code, 16, writable=False)) == 16


def test_peek_reads_safely_and_never_faults():
    from sameprocess import _mm
    buf = ctypes.create_string_buffer(b"peekable")
    assert _mm.peek(ctypes.addressof(buf), 8) == b"peekable"
    assert _mm.peek(0x1000, 8) is None          # unmapped
    assert _mm.peek(-1, 8) is None and _mm.peek(1 << 62, 8) is None
