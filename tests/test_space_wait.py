"""Waiting and starting, interrupted or concurrent: a waiting thread reaps
its program itself, a wait that gives up leaves it to the reaper thread, and
a spawn interrupted after its clone leaves no process behind."""
import os
import select
import signal
import subprocess
import threading

import pytest

from _reliability_helpers import children_of


def test_the_waiting_thread_reaps_its_program_itself(space, build, monkeypatch):
    """The order is forced: the program is told to exit only once a waiting
    thread has claimed it from the reaper thread, so no race decides who
    reaps."""
    p = space.Popen([build("sleeper.c")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    reaper = space._reaper
    claimed = threading.Event()

    def claim_then_tell(pidfd, _claim=reaper.claim):
        on_exit = _claim(pidfd)
        claimed.set()
        return on_exit

    monkeypatch.setattr(reaper, "claim", claim_then_tell)
    reaped_in, codes = [], []
    p.add_exit_callback(lambda _p: reaped_in.append(threading.current_thread()))
    waiter = threading.Thread(target=lambda: codes.append(p.wait(timeout=60)))
    waiter.start()
    assert claimed.wait(timeout=60)
    p.stdin.close()  # the sleeper exits at EOF, after the claim
    waiter.join(timeout=60)
    assert codes == [0] and reaped_in == [waiter] and p.pidfd == -1
    p.stdout.close()


def test_two_threads_waiting_for_one_program(space, build):
    p = space.Popen([build("sleeper.c")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    codes, started = [], threading.Barrier(3, timeout=30)

    def waiter():
        started.wait()
        codes.append(p.wait(timeout=60))

    threads = [threading.Thread(target=waiter) for _ in range(2)]
    for t in threads:
        t.start()
    started.wait()
    p.kill()
    for t in threads:
        t.join(timeout=60)
    assert codes == [-signal.SIGKILL] * 2
    p.stdin.close()
    p.stdout.close()


def test_a_timed_out_wait_leaves_the_program_to_the_reaper(space, build):
    p = space.Popen([build("sleeper.c")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.01)
    exited = threading.Event()
    p.add_exit_callback(lambda _p: exited.set())
    p.stdin.close()  # the sleeper exits at EOF; nobody waits: the reaper reaps it
    assert exited.wait(timeout=60)
    assert p.returncode == 0 and p.pidfd == -1
    p.stdout.close()


def test_an_interrupted_wait_leaves_the_program_to_the_reaper(space, build):
    """An exception in the waiting thread (here from a signal handler) must
    not leave its program unwatched: the reaper thread still reaps it."""
    p = space.Popen([build("sleeper.c")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"

    class Interrupted(Exception):
        pass

    def interrupt(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGUSR1, interrupt)
    # The sleeper cannot exit before its stdin closes, so the signal lands
    # while the main thread waits (or before: then the wait never starts).
    timer = threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR1))
    try:
        with pytest.raises(Interrupted):
            timer.start()
            p.wait()
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, old)
    exited = threading.Event()
    p.add_exit_callback(lambda _p: exited.set())
    p.stdin.close()
    assert exited.wait(timeout=60)
    assert p.returncode == 0
    p.stdout.close()


def test_an_exception_while_the_child_starts_leaves_no_process(space, build, monkeypatch):
    """Interrupted between clone and the child's report (a KeyboardInterrupt,
    say), the spawn kills and reaps the child before unmapping its stack.

    A signal for the host ends the native wait; Python's handler runs and,
    if it raises, the wait in Python is where that lands: the native call
    returns right after clone3 here, as it does then."""
    from sameprocess import _spawn
    hello = build("hello.c")
    space.run([hello], stdout=subprocess.DEVNULL)  # warm up
    before = set(children_of(os.getpid()))

    class Interrupted(BaseException):
        pass

    def interrupted(report, pidfd):
        raise Interrupted

    monkeypatch.setattr(_spawn, "WAIT_IN_NATIVE", False)
    monkeypatch.setattr(_spawn, "_wait_for_report", interrupted)
    with pytest.raises(Interrupted):
        space.Popen([hello], stdout=subprocess.DEVNULL)
    assert set(children_of(os.getpid())) == before and space.programs() == []
    monkeypatch.undo()
    assert space.run([hello], stdout=subprocess.DEVNULL).returncode == 0


def test_a_claim_while_a_program_is_handed_back_leaves_the_reaper_consistent(space, build, monkeypatch):
    """A program handed back to the reaper (a poll() that found it running)
    while another thread claims it: afterwards its pidfd is in the reaper's
    epoll set exactly when the reaper watches it.  The claim is started in
    the middle of the hand-back, and whether it runs then or waits for the
    hand-back to finish, the two must agree."""
    p = space.Popen([build("sleeper.c")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    reaper, pidfd = space._reaper, p.pidfd
    on_exit = reaper.claim(pidfd)
    assert on_exit is not None
    claimer = threading.Thread(target=reaper.claim, args=(pidfd,))

    class Epoll:
        def __init__(self, real):
            self.real = real

        def register(self, fd, events):
            claimer.start()
            claimer.join(timeout=0.5)  # it ran meanwhile, or it waits for the hand-back
            self.real.register(fd, events)

        def __getattr__(self, name):
            return getattr(self.real, name)

    monkeypatch.setattr(reaper, "_epoll", Epoll(reaper._epoll))
    reaper.watch(pidfd, on_exit)
    claimer.join(timeout=60)
    monkeypatch.undo()
    watched = pidfd in reaper._watched
    try:
        reaper._epoll.modify(pidfd, select.EPOLLIN)
        registered = True
    except FileNotFoundError:
        registered = False
    # Put things right before asserting, so that a failure cannot hang the
    # space's teardown on a pidfd the reaper would spin on.
    if registered and not watched:
        reaper._epoll.unregister(pidfd)
    if not watched:  # the claimer took it: hand it back so that the space can reap it
        reaper.watch(pidfd, on_exit)
    p.stdin.close()
    assert p.wait(timeout=60) == 0
    p.stdout.close()
    assert watched == registered
