"""Programs are reaped at once and what was mapped for them is given back."""
import os
import subprocess
import threading

import pytest

from sameprocess import _ledger, _mm


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
    """((mappings, bytes) that may be programs', (mappings, bytes) of the
    host's heap): anonymous read-write mappings outside the window where the
    keeper puts programs' memory are the host's own heap, which grows in
    mmap'd steps of 1 MiB or more now and then (its break is pinned at the
    space's guard), whatever the programs do.  A program's memory is in
    the window or is its loader region (ld.so's file mappings, the stack and
    its PROT_NONE guard); the keeper counts any call of a program it could
    not record, whose memory would land outside (the test checks that
    count too)."""
    low, high = _ledger.code_window()
    programs, heap = [], []
    for m in maps():
        (heap if not m.path and m.perms == "rw-p" and not low <= m.start < high else programs).append(m)
    return [(len(part), sum(m.end - m.start for m in part)) for part in (programs, heap)]


def _unrecorded(space) -> int:
    counters = space._host.keeper.counters()
    return counters["untracked"] + counters["ledger_full"]


@pytest.mark.parametrize("program", ["hello.c", "hello_static.c", "threads_malloc.c"])
def test_what_stays_after_a_run_is_bounded(space, build, program):
    exe = build(program)
    for _ in range(20):
        space.run([exe], stdout=subprocess.DEVNULL)
    before, unrecorded = _footprint(), space.reclaims_memory and _unrecorded(space)
    runs = 300
    for _ in range(runs):
        assert space.run([exe], stdout=subprocess.DEVNULL).returncode == 0
    after = _footprint()
    if space.reclaims_memory:
        # Everything a program mapped goes with it (docs/architecture.md).
        (count0, size0), (heaps0, heap0) = before
        (count1, size1), (heaps1, heap1) = after
        assert count1 - count0 <= 2 and size1 - size0 <= 64 * 2**10
        assert _unrecorded(space) == unrecorded, "calls the keeper could not record"
        # The host's heap may take a step, not a step per run.
        assert heaps1 - heaps0 <= 2 and heap1 - heap0 <= 8 * 2**20
    else:
        # Without a ledger a glibc program leaves its 1 MiB malloc heap
        # segment and a page or two of TLS (adjacent ones merge).
        count0, size0 = (sum(x) for x in zip(*before))
        count1, size1 = (sum(x) for x in zip(*after))
        assert (count1 - count0) / runs < 1.0
        assert (size1 - size0) / runs < 1.2 * 2**20


@pytest.mark.slow
@pytest.mark.parametrize("program", ["hello.c", "threads_malloc.c"])
def test_twenty_thousand_sequential_runs(space, build, program):
    exe = build(program)
    for i in range(20_000):
        r = space.run([exe], stdout=subprocess.DEVNULL)
        assert r.returncode == 0, f"run {i} failed with {r.returncode}"
