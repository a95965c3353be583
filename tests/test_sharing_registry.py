"""The registry and discovery, from C, the Python host and CPython programs."""
from __future__ import annotations

import ctypes
import subprocess

import pytest

import sameprocess
from sameprocess import SpaceError, _runtime
from _sharing_util import (EEXIST, EINVAL, ENAMETOOLONG, ENOENT, ENOSPC, ENOTCONN, ETIMEDOUT, TIMEOUT,
                           merged, python_in_space, records, run)


@pytest.fixture(scope="module")
def tool(build):
    return build("rt_tool.c")


# -- discovery -------------------------------------------------------------------

def test_outside_a_space_every_call_fails_cleanly(tool):
    r = subprocess.run([tool, "in_space", "lookup", "x", "publish", "x", "y", "alloc", "16", "wait", "x", "0"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    got = records(r.stdout)
    assert got[0] == {"in_space": "0"}
    assert got[1] == {"lookup": "NULL", "errno": str(ENOTCONN)}
    assert got[2]["publish"] == str(-ENOTCONN)
    assert got[3] == {"alloc": "NULL", "errno": str(ENOTCONN)}
    assert got[4] == {"wait": "NULL", "errno": str(ENOTCONN)}


def test_a_program_finds_its_space_without_setup(space, tool):
    assert merged(run(space, tool, "in_space").stdout)["in_space"] == "1"


def test_the_host_is_in_the_space_only_while_it_is_open():
    assert not sameprocess.in_space()
    with sameprocess.Space():
        assert sameprocess.in_space()
    assert not sameprocess.in_space()
    with pytest.raises(SpaceError, match="not inside a sameprocess space"):
        sameprocess.lookup("anything")


def test_exec_d_and_forked_children_are_not_in_the_space(space, tool):
    # exec: the kernel's fresh auxv has no AT_SAMEPROCESS entry.
    assert merged(run(space, "/bin/sh", "-c", f"exec {tool} in_space").stdout)["in_space"] == "0"
    assert merged(run(space, "/bin/sh", "-c", f"{tool} in_space").stdout)["in_space"] == "0"
    # fork: another address space, where the block's header reads as zeros
    # (MADV_WIPEONFORK); the heap's data is copied like any other memory.
    address = merged(run(space, tool, "publish", "visible", "heap-text").stdout)["addr"]
    got = merged(run(space, tool, "lookup", "visible", "fork_in_space", "visible", address).stdout)
    assert got["child_in_space"] == "0" and got["child_lookup_errno"] == str(ENOTCONN)
    assert got["child_read"] == "heap-text"


def test_a_bogus_auxv_value_is_rejected_not_dereferenced(space, tool):
    entry = (_runtime.AT_SAMEPROCESS, space._runtime.address)
    garbage = sameprocess.alloc(8192)  # mapped, but no block header
    ctypes.memset(garbage.address, 0x5A, 8192)
    try:
        for bogus in (0x10000, 0x7FFF_FFFF_0000, (garbage.address + 4095) & ~4095):
            space.extra_auxv[space.extra_auxv.index(entry)] = (_runtime.AT_SAMEPROCESS, bogus)
            entry = (_runtime.AT_SAMEPROCESS, bogus)
            got = merged(run(space, tool, "in_space", "lookup", "x").stdout)
            assert got["in_space"] == "0" and got["errno"] == str(ENOTCONN), hex(bogus)
    finally:
        space.extra_auxv[space.extra_auxv.index(entry)] = (_runtime.AT_SAMEPROCESS, space._runtime.address)
    sameprocess.free(garbage)


# -- publish / lookup ------------------------------------------------------------

def test_published_by_one_program_found_by_another_and_the_host(space, tool):
    published = merged(run(space, tool, "publish", "greeting", "hello-space").stdout)
    assert published["publish"] == "0"
    found = merged(run(space, tool, "lookup", "greeting").stdout)
    assert found["lookup"] == "hello-space" and found["size"] == "11"
    assert found["addr"] == published["addr"]
    view = sameprocess.lookup("greeting")
    assert bytes(view) == b"hello-space"
    assert ctypes.addressof(ctypes.c_char.from_buffer(view)) == int(published["addr"], 16)


def test_published_by_the_host_found_by_a_program(space, tool):
    buf = sameprocess.alloc(6)
    buf[:] = b"hi-C!\0"
    sameprocess.publish("from-host", buf, 5)
    assert merged(run(space, tool, "lookup", "from-host").stdout)["lookup"] == "hi-C!"
    sameprocess.publish("by-address", buf.address, 2)
    assert bytes(sameprocess.lookup("by-address")) == b"hi"
    with pytest.raises(TypeError, match="size"):
        sameprocess.publish("no-size", buf.address)


def test_wait_returns_once_published(space, tool):
    waiter = space.Popen([tool, "wait", "late", "-1"], stdout=subprocess.PIPE, text=True)
    run(space, tool, "publish", "late", "finally")
    out, _ = waiter.communicate(timeout=TIMEOUT)
    assert merged(out)["wait"] == "finally"
    assert bytes(sameprocess.wait_for("late", timeout=0)) == b"finally"


def test_host_wait_for_a_program_to_publish(space, tool):
    program = space.Popen([tool, "readline", "publish", "handoff", "done"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
    program.stdin.write("go\n")
    program.stdin.flush()
    assert bytes(sameprocess.wait_for("handoff", timeout=TIMEOUT)) == b"done"
    program.communicate(timeout=TIMEOUT)


def test_wait_times_out(space, tool):
    assert merged(run(space, tool, "wait", "never", "30").stdout) == {"wait": "NULL", "errno": str(ETIMEDOUT)}
    with pytest.raises(TimeoutError, match="never"):
        sameprocess.wait_for("never", timeout=0.03)


def test_unknown_names(space, tool):
    got = records(run(space, tool, "lookup", "nobody", "unpublish", "nobody").stdout)
    assert got == [{"lookup": "NULL", "errno": str(ENOENT)}, {"unpublish": str(-ENOENT)}]
    with pytest.raises(KeyError):
        sameprocess.lookup("nobody")
    with pytest.raises(KeyError):
        sameprocess.unpublish("nobody")


def test_duplicate_names(space, tool):
    got = records(run(space, tool, "publish", "twice", "a", "publish", "twice", "b", "lookup", "twice").stdout)
    assert got[0]["publish"] == "0" and got[1]["publish"] == str(-EEXIST)
    assert got[2]["lookup"] == "a"
    with pytest.raises(FileExistsError):
        sameprocess.publish("twice", sameprocess.alloc(1))


def test_name_lengths(space, tool):
    longest, too_long = "n" * 63, "n" * 64
    got = records(run(space, tool, "publish", longest, "ok", "publish", too_long, "no", "lookup", too_long,
                      "publish_raw", "", "0x1000", "1").stdout)
    assert [r.get("publish") for r in got] == ["0", str(-ENAMETOOLONG), None, str(-EINVAL)]
    assert got[2] == {"lookup": "NULL", "errno": str(ENAMETOOLONG)}
    assert bytes(sameprocess.lookup(longest)) == b"ok"
    with pytest.raises(OSError) as info:
        sameprocess.publish(too_long, sameprocess.alloc(1))
    assert info.value.errno == ENAMETOOLONG
    with pytest.raises(ValueError):
        sameprocess.publish("", sameprocess.alloc(1))


def test_full_registry(space, tool):
    block = sameprocess.alloc(1024)
    for i in range(1024):
        sameprocess.publish(f"slot{i}", block.address + i, 1)
    with pytest.raises(OSError) as info:
        sameprocess.publish("one-more", block)
    assert info.value.errno == ENOSPC
    assert merged(run(space, tool, "publish", "from-c", "x").stdout)["publish"] == str(-ENOSPC)
    sameprocess.unpublish("slot7")
    assert merged(run(space, tool, "publish", "from-c", "x").stdout)["publish"] == "0"
    assert merged(run(space, tool, "lookup", "slot1023").stdout)["size"] == "1"


def test_registry_fills_from_c(space, tool):
    assert merged(run(space, tool, "fill_registry", "c").stdout) == {"published": "1024", "rc": str(-ENOSPC)}
    # Those entries named the program's own memory: gone with it.
    sameprocess.publish("room-again", sameprocess.alloc(1))


def test_entries_when_the_publisher_exits(space, tool):
    # Shared-heap memory outlives its publisher, and so does its entry.
    run(space, tool, "publish", "heap-entry", "kept")
    assert merged(run(space, tool, "lookup", "heap-entry").stdout)["lookup"] == "kept"
    # The publisher's own memory does not: its entry goes when it is reaped.
    alive = space.Popen([tool, "publish_own", "own-entry", "mine", "readline"], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, text=True)
    assert merged(alive.stdout.readline())["publish"] == "0"
    assert merged(run(space, tool, "lookup", "own-entry").stdout)["lookup"] == "mine"
    alive.communicate("bye\n", timeout=TIMEOUT)
    assert merged(run(space, tool, "lookup", "own-entry").stdout) == {"lookup": "NULL", "errno": str(ENOENT)}
    with pytest.raises(KeyError):
        sameprocess.lookup("own-entry")
    # Killed publishers too.
    killed = space.Popen([tool, "publish_own", "killed-entry", "x", "readline"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    killed.stdout.readline()
    killed.kill()
    killed.wait(TIMEOUT)
    with pytest.raises(KeyError):
        sameprocess.lookup("killed-entry")
    assert bytes(sameprocess.lookup("heap-entry")) == b"kept"


def test_unpublish_leaves_the_memory_alone(space, tool):
    address = merged(run(space, tool, "publish", "temp", "still-here").stdout)["addr"]
    sameprocess.unpublish("temp")
    got = records(run(space, tool, "lookup", "temp", "read", address, "free", address).stdout)
    assert got[0]["lookup"] == "NULL" and got[1]["read"] == "still-here" and got[2]["free"] == "done"


def test_a_new_space_starts_empty(tool):
    with sameprocess.Space() as space:
        run(space, tool, "publish", "old", "x")
        view = sameprocess.lookup("old")
    with pytest.raises(SpaceError):
        sameprocess.lookup("old")
    assert bytes(view) == b"\0"  # the host's stale view reads zeros, it does not fault
    with sameprocess.Space() as space:
        with pytest.raises(KeyError):
            sameprocess.lookup("old")
        assert merged(run(space, tool, "lookup", "old").stdout)["errno"] == str(ENOENT)


# -- CPython programs in the space ------------------------------------------------

def test_python_program_reads_c_data_with_numpy_no_copy(space, tool, tmp_path):
    pytest.importorskip("numpy")
    address = merged(run(space, tool, "publish", "text", "abcdef").stdout)["addr"]
    out = python_in_space(space, tmp_path, """
        import ctypes, numpy, sameprocess
        view = sameprocess.lookup("text")
        array = numpy.frombuffer(view, dtype=numpy.uint8)
        print("addr=%#x" % array.ctypes.data)
        print("sum=%d" % int(array.sum()))
        array[0] = ord("X")          # in place: the C program's memory
        buf = sameprocess.alloc(4)
        buf[:] = b"py!\\0"
        sameprocess.publish("from-python", buf, 3)
    """).stdout
    got = merged(out)
    assert int(got["addr"], 16) == int(address, 16)
    assert int(got["sum"]) == sum(b"abcdef")
    assert merged(run(space, tool, "lookup", "text", "lookup", "from-python").stdout)["lookup"] == "py!"
    assert bytes(sameprocess.lookup("text")) == b"Xbcdef"


def test_python_program_outside_a_space_gets_a_clear_error(tmp_path):
    import sys
    script = tmp_path / "outside.py"
    script.write_text("import sameprocess\nsameprocess.lookup('x')\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode != 0
    assert "SpaceError: not inside a sameprocess space" in r.stderr
