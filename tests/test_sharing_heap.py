"""The shared heap: cross-program frees, misuse, exhaustion, and lock holders killed."""
from __future__ import annotations

import ctypes
import signal
import subprocess
import threading

import pytest

import sameprocess
from sameprocess import _sharing
from _sharing_util import ENOMEM, ENOTCONN, TIMEOUT, merged, records, run


@pytest.fixture(scope="module")
def tool(build):
    return build("rt_tool.c")


@pytest.fixture(scope="module")
def stress(build):
    return build("rt_stress.c")


@pytest.fixture
def small_space(monkeypatch):
    """A space whose heap is 8 MiB."""
    monkeypatch.setenv("SAMEPROCESS_HEAP_SIZE", "8M")
    with sameprocess.Space() as opened:
        yield opened


def used_blocks() -> int:
    return _sharing.stats()["used_blocks"]


# -- who may free what ----------------------------------------------------------------

def test_a_block_outlives_its_allocator_and_another_program_frees_it(space, tool):
    before = used_blocks()
    address = merged(run(space, tool, "alloc_text", "survivor").stdout)["alloc"]
    assert used_blocks() == before + 1  # the allocator has exited
    got = records(run(space, tool, "read", address, "free", address).stdout)
    assert got == [{"read": "survivor"}, {"free": "done"}]
    assert used_blocks() == before
    _sharing.heap_check()


def test_python_allocates_c_frees_and_back(space, tool):
    np = pytest.importorskip("numpy")
    buf = sameprocess.alloc(4096)
    assert buf.address % 16 == 0 and buf.size == 4096
    array = np.frombuffer(buf, dtype=np.float64)
    assert array.ctypes.data == buf.address  # no copy
    array[:] = 2.5
    assert memoryview(buf).nbytes == 4096
    assert merged(run(space, tool, "free", hex(buf.address)).stdout)["free"] == "done"
    address = int(merged(run(space, tool, "alloc_text", "from-c").stdout)["alloc"], 16)
    assert ctypes.string_at(address) == b"from-c"
    sameprocess.free(address)
    _sharing.heap_check()


def test_outside_a_space_alloc_fails(tool):
    r = subprocess.run([tool, "alloc", "16"], capture_output=True, text=True, timeout=TIMEOUT)
    assert merged(r.stdout) == {"alloc": "NULL", "errno": str(ENOTCONN)}


# -- misuse ---------------------------------------------------------------------------

def test_c_double_free_is_reported(space, tool):
    address = merged(run(space, tool, "alloc", "100", "alloc", "100").stdout)["alloc"]
    r = run(space, tool, "free", address, "free", address, check=False)
    assert r.returncode == -signal.SIGABRT
    assert r.stdout.count("free=done") == 1
    assert f"sp_free({address}): double free" in r.stderr
    _sharing.heap_check()


def test_c_foreign_and_interior_pointers_are_reported(space, tool):
    r = run(space, tool, "free_own", check=False)
    assert r.returncode == -signal.SIGABRT
    assert "not a pointer into the shared heap" in r.stderr
    address = int(merged(run(space, tool, "alloc", "100").stdout)["alloc"], 16)
    r = run(space, tool, "free", hex(address + 32), check=False)
    assert r.returncode == -signal.SIGABRT and "invalid pointer" in r.stderr
    r = run(space, tool, "free", hex(address + 8), check=False)
    assert r.returncode == -signal.SIGABRT and "invalid pointer" in r.stderr
    run(space, tool, "free", hex(address))  # still a good block
    assert _sharing.stats()["bad_frees"] >= 3
    _sharing.heap_check()


def test_python_misuse_raises(space):
    buf = sameprocess.alloc(64)
    keep = sameprocess.alloc(64)  # so the first is not merged away
    with pytest.raises(ValueError, match="invalid pointer"):
        sameprocess.free(buf.address + 16)
    with pytest.raises(ValueError, match="not a pointer into the shared heap"):
        sameprocess.free(bytearray(64))
    sameprocess.free(buf)
    with pytest.raises(ValueError, match="double free"):
        sameprocess.free(buf)
    with pytest.raises(ValueError, match="double free"):
        sameprocess.free(buf.address)
    sameprocess.free(keep)
    with pytest.raises(ValueError):
        sameprocess.alloc(-1)
    _sharing.heap_check()


# -- exhaustion -------------------------------------------------------------------------

def test_exhaustion_returns_null_then_recovers(small_space, tool):
    assert _sharing.stats()["heap_size"] == 8 << 20
    got = merged(run(small_space, tool, "exhaust", "65536").stdout)
    assert got["errno"] == str(ENOMEM) and 100 <= int(got["blocks"]) < 128
    # small blocks, all freed: the quick lists give their memory back when needed
    got = merged(run(small_space, tool, "exhaust", "100", "alloc", str(7 << 20)).stdout)
    assert int(got["blocks"]) > 50_000 and got["alloc"] != "NULL"
    assert merged(run(small_space, tool, "alloc", str(9 << 20)).stdout) == {"alloc": "NULL",
                                                                            "errno": str(ENOMEM)}
    _sharing.heap_check()


def test_exhaustion_raises_memory_error_in_python(small_space):
    with pytest.raises(MemoryError):
        sameprocess.alloc(16 << 20)
    blocks = []
    with pytest.raises(MemoryError):
        while True:
            blocks.append(sameprocess.alloc(200_000))
    assert 30 < len(blocks) < 42
    for block in blocks:
        sameprocess.free(block)
    sameprocess.free(sameprocess.alloc(7 << 20))
    assert _sharing.stats()["failed_allocs"] >= 2
    _sharing.heap_check()


# -- concurrency ----------------------------------------------------------------------------

def test_four_programs_cross_free_a_million_operations_each(space, stress):
    before = used_blocks()
    programs = [space.Popen([stress, "ring", str(i), "4", "1000000", str(i + 1)], stdout=subprocess.PIPE,
                            text=True) for i in range(4)]
    results = [merged(p.communicate(timeout=600)[0]) for p in programs]
    assert [p.returncode for p in programs] == [0, 0, 0, 0]
    for result in results:
        assert result["errors"] == "0" and int(result["ops"]) >= 1_000_000
    _sharing.heap_check()
    assert used_blocks() == before + 4  # only the four channels are left
    for i in range(4):
        sameprocess.Channel.open(f"ring-{i}", timeout=0).destroy()
    assert used_blocks() == before


def test_host_threads_and_a_program_share_the_heap(space, stress):
    errors = []

    def churn():
        try:
            for i in range(2000):
                block = sameprocess.alloc(16 + (i % 300))
                memoryview(block)[:] = bytes([i % 251]) * block.size
                assert bytes(block) == bytes([i % 251]) * block.size
                sameprocess.free(block)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    program = space.Popen([stress, "bench", "sp", "300000", "5"], stdout=subprocess.PIPE, text=True)
    threads = [threading.Thread(target=churn) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert "ns_per_op" in program.communicate(timeout=TIMEOUT)[0]
    assert errors == []
    _sharing.heap_check()


# -- a lock holder killed ----------------------------------------------------------------------

@pytest.mark.parametrize("lock, then", [("heap", ["alloc_text", "after"]),
                                        ("registry", ["publish", "after-kill", "x"])])
def test_a_killed_lock_holder_does_not_hang_the_others(space, tool, lock, then):
    holder = space.Popen([tool, "hold", lock], stdout=subprocess.PIPE, text=True)
    assert merged(holder.stdout.readline())["held"] == str(holder.pid)
    # The waiter says it is about to call, then blocks on the held lock.
    waiter = space.Popen([tool, "in_space", *then, "stats", "check"], stdout=subprocess.PIPE, text=True)
    assert merged(waiter.stdout.readline())["in_space"] == "1"
    holder.kill()
    assert holder.wait(TIMEOUT) == -signal.SIGKILL
    out, _ = waiter.communicate(timeout=TIMEOUT)
    got = merged(out)
    assert waiter.returncode == 0
    assert got.get("alloc", got.get("publish")) not in (None, "NULL")
    assert got[f"{lock}_recoveries"] == "1"
    assert got["check"] == "0"


def test_the_host_blocked_on_a_killed_holder_recovers(space, tool):
    holder = space.Popen([tool, "hold", "heap"], stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    got = []
    thread = threading.Thread(target=lambda: got.append(sameprocess.alloc(32)))
    thread.start()
    holder.kill()
    thread.join(TIMEOUT)
    assert not thread.is_alive() and got[0].size == 32
    assert _sharing.stats()["heap_recoveries"] == 1
    sameprocess.free(got[0])
    _sharing.heap_check()


def test_programs_killed_at_random_points_leave_a_consistent_heap(space, stress, tool):
    for round_ in range(15):
        programs = [space.Popen([stress, "churn", str(2 * round_ + k + 1)], stdout=subprocess.PIPE, text=True)
                    for k in range(2)]
        for program in programs:
            assert merged(program.stdout.readline())["churning"] == "1"
        for program in programs:
            program.kill()
        for program in programs:
            program.wait(TIMEOUT)
        _sharing.heap_check()
    # and the heap still works, from C and from Python
    assert "ns_per_op" in run(space, stress, "bench", "sp", "100000", "9").stdout
    sameprocess.free(sameprocess.alloc(1000))
    _sharing.heap_check()
