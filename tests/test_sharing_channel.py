"""Channels: bounded MPMC queues of pointer-sized messages, from C and Python."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import sameprocess
from sameprocess import _sharing
from _sharing_util import EEXIST, EINVAL, EPIPE, EPROTO, ETIMEDOUT, TIMEOUT, merged, run


@pytest.fixture(scope="module")
def chan(build):
    return build("rt_channel.c")


def test_one_sender_one_receiver(space, chan):
    assert merged(run(space, chan, "create", "c1", "64").stdout)["created"] == "0"
    receiver = space.Popen([chan, "recv", "c1", "200000"], stdout=subprocess.PIPE, text=True)
    assert merged(run(space, chan, "send", "c1", "0", "200000").stdout)["sent"] == "200000"
    got = merged(receiver.communicate(timeout=TIMEOUT)[0])
    assert got == {"received": "200000", "sum": str(sum(range(200000)))}


def test_many_senders_many_receivers(space, chan):
    run(space, chan, "create", "mpmc", "16")
    receivers = [space.Popen([chan, "recv", "mpmc", "50000"], stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
    senders = [space.Popen([chan, "send", "mpmc", str(k * 50000), str((k + 1) * 50000)], stdout=subprocess.PIPE,
                           text=True) for k in range(2)]
    for sender in senders:
        assert merged(sender.communicate(timeout=TIMEOUT)[0])["sent"] == "50000"
    total = sum(int(merged(r.communicate(timeout=TIMEOUT)[0])["sum"]) for r in receivers)
    assert total == sum(range(100000))
    assert len(sameprocess.Channel.open("mpmc")) == 0


def test_python_host_and_c_ping_pong(space, chan):
    ping = sameprocess.Channel.create("ping", capacity=4)
    pong = sameprocess.Channel.create("pong", capacity=4)
    program = space.Popen([chan, "pong", "ping", "pong", "1000"], stdout=subprocess.PIPE, text=True)
    for i in range(1000):
        ping.send(i * 3)
        assert pong.recv(timeout=TIMEOUT) == i * 3 + 1
    assert merged(program.communicate(timeout=TIMEOUT)[0])["ponged"] == "1000"
    ping.send(2**64 - 1)
    assert ping.recv() == 2**64 - 1
    with pytest.raises(ValueError):
        ping.send(2**64)


def test_python_program_in_the_space_uses_a_channel(space, chan, tmp_path):
    jobs = sameprocess.Channel.create("jobs", capacity=8)
    script = tmp_path / "squares.py"
    script.write_text(textwrap.dedent("""
        import sameprocess
        jobs = sameprocess.Channel.open("jobs", timeout=60)
        results = sameprocess.Channel.create("results", capacity=8)
        while True:
            try:
                value = jobs.recv(timeout=60)
            except EOFError:
                break
            results.send(value * value)
        results.close()
    """))
    squares = space.Popen([sys.executable, str(script)])
    drain = space.Popen([chan, "drain", "results"], stdout=subprocess.PIPE, text=True)
    for i in range(1, 11):
        jobs.send(i, timeout=TIMEOUT)
    jobs.close()
    assert squares.wait(TIMEOUT) == 0
    got = merged(drain.communicate(timeout=TIMEOUT)[0])
    assert got == {"drained": "10", "sum": str(sum(i * i for i in range(1, 11))), "rc": str(-EPIPE)}


def test_timeouts(space, chan):
    run(space, chan, "create", "slow", "4")
    assert merged(run(space, chan, "timeout", "slow", "30").stdout)["rc"] == str(-ETIMEDOUT)
    assert merged(run(space, chan, "full", "slow", "30").stdout) == {"filled": "4", "rc": str(-ETIMEDOUT)}
    slow = sameprocess.Channel.open("slow")
    with pytest.raises(TimeoutError):
        slow.send(1, timeout=0.02)
    assert [slow.recv(timeout=0) for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(TimeoutError):
        slow.recv(timeout=0)


def test_close_drains_then_reports_eof(space, chan):
    ch = sameprocess.Channel.create("closing", capacity=8)
    ch.send(5)
    ch.send(6)
    ch.close()
    with pytest.raises(BrokenPipeError):
        ch.send(7)
    assert merged(run(space, chan, "drain", "closing").stdout) == {"drained": "2", "sum": "11", "rc": str(-EPIPE)}
    with pytest.raises(EOFError):
        ch.recv()


def test_close_wakes_a_blocked_receiver(space, chan):
    ch = sameprocess.Channel.create("wake", capacity=2)
    receiver = space.Popen([chan, "drain", "wake"], stdout=subprocess.PIPE, text=True)
    ch.send(1)
    ch.close()
    assert merged(receiver.communicate(timeout=TIMEOUT)[0]) == {"drained": "1", "sum": "1", "rc": str(-EPIPE)}


def test_misuse(space, chan):
    got = merged(run(space, chan, "bogus").stdout)
    assert got == {"send": str(-EINVAL), "recv": str(-EINVAL), "open_errno": str(EPROTO)}
    with pytest.raises(TypeError, match="not a channel"):
        sameprocess.Channel.open("not-a-channel")
    with pytest.raises(KeyError):
        sameprocess.Channel.open("absent", timeout=0)
    with pytest.raises(TimeoutError):
        sameprocess.Channel.open("absent", timeout=0.02)
    sameprocess.Channel.create("dup")
    with pytest.raises(FileExistsError):
        sameprocess.Channel.create("dup")
    assert merged(run(space, chan, "create", "dup", "4").stdout)["created"] == str(-EEXIST)
    with pytest.raises(ValueError):
        sameprocess.Channel.create("zero", capacity=0)


def test_destroy_gives_the_memory_back(space, chan):
    before = _sharing.stats()["used_blocks"]
    ch = sameprocess.Channel.create("temporary", capacity=1 << 16)
    assert _sharing.stats()["used_blocks"] == before + 1
    ch.send(1)
    ch.destroy()
    assert _sharing.stats()["used_blocks"] == before
    with pytest.raises(KeyError):
        sameprocess.Channel.open("temporary", timeout=0)
    with pytest.raises(ValueError, match="not a live channel"):
        ch.send(2)
    _sharing.heap_check()


@pytest.mark.parametrize("call", ["wait_for", "recv"])
def test_blocking_python_calls_let_signal_handlers_run(space, call):
    """Ctrl-C works: the runtime returns on EINTR and Python runs its handler."""
    import signal
    import threading

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    channel = sameprocess.Channel.create("quiet", capacity=1)
    blocking = {"wait_for": lambda: sameprocess.wait_for("never-published"), "recv": channel.recv}[call]
    done = threading.Event()
    main = threading.main_thread().ident

    def interrupt():
        while not done.wait(0.05):  # until the main thread has seen it
            signal.pthread_kill(main, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, handler)
    sender = threading.Thread(target=interrupt)
    sender.start()
    try:
        with pytest.raises(Interrupted):
            blocking()
    finally:
        done.set()
        sender.join()
        signal.signal(signal.SIGUSR1, previous)
