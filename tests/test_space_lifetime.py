"""Programs are reaped at once and what was mapped for them is given back."""
import os
import subprocess
import threading

import pytest

from sameprocess import _mm


def maps():
    return _mm.read_maps()


def test_reaped_without_zombie(space, build):
    p = space.Popen([build("hello.c")], stdout=subprocess.DEVNULL)
    p.wait()
    assert not os.path.exists(f"/proc/{p.pid}")
    assert p.pidfd == -1


def test_unreaped_exit_is_collected_without_wait(space, build):
    seen, called = [], threading.Event()

    def on_exit(prog):
        seen.append((os.path.exists(f"/proc/{prog.pid}"), prog.returncode))
        called.set()

    p = space.Popen([build("exit_code.c"), "4"])
    p.add_exit_callback(on_exit)
    assert called.wait(timeout=60)  # the reaper did it; nobody called wait()
    assert seen == [(False, 4)]


def test_program_images_and_libraries_are_unmapped(space, build):
    exe = build("origin_main.c")
    lib = os.path.join(os.path.dirname(exe), "lib", "liborigin.so")
    space.run([exe], stdout=subprocess.DEVNULL)  # warm up
    libc_before = sum(1 for m in maps() if "libc.so" in m.path)
    ldso_before = sum(1 for m in maps() if "ld-linux" in m.path)
    p = space.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = p.communicate()
    assert b"origin_value=4242" in out
    after = maps()
    assert not [m for m in after if m.path in (exe, lib)]
    assert sum(1 for m in after if "libc.so" in m.path) == libc_before
    assert sum(1 for m in after if "ld-linux" in m.path) == ldso_before


def _footprint():
    current = maps()
    return len(current), sum(m.end - m.start for m in current)


@pytest.mark.parametrize("program", ["hello.c", "hello_static.c", "threads_malloc.c"])
def test_what_stays_after_a_run_is_bounded(space, build, program):
    exe = build(program)
    for _ in range(20):
        space.run([exe], stdout=subprocess.DEVNULL)
    count0, size0 = _footprint()
    runs = 300
    for _ in range(runs):
        assert space.run([exe], stdout=subprocess.DEVNULL).returncode == 0
    count1, size1 = _footprint()
    if space.reclaims_memory:
        # Everything a program mapped goes with it (docs/architecture.md).
        assert count1 - count0 <= 2 and size1 - size0 <= 64 * 2**10
    else:
        # Without a ledger a glibc program leaves its 1 MiB malloc heap
        # segment and a page or two of TLS (adjacent ones merge).
        assert (count1 - count0) / runs < 1.0
        assert (size1 - size0) / runs < 1.2 * 2**20


@pytest.mark.slow
@pytest.mark.parametrize("program", ["hello.c", "threads_malloc.c"])
def test_twenty_thousand_sequential_runs(space, build, program):
    exe = build(program)
    for i in range(20_000):
        r = space.run([exe], stdout=subprocess.DEVNULL)
        assert r.returncode == 0, f"run {i} failed with {r.returncode}"
