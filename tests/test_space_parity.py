"""Where a program of a space could differ from subprocess's child, it does
not: each behaviour is checked against a native subprocess.Popen run."""
import gc
import os
import signal
import subprocess
import threading
import warnings

import pytest

from _kv import kv
from sameprocess import _mm


def wait_until_exited(pid: int) -> None:
    """Block until pid is a zombie, without reaping it."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def test_an_exited_program_stays_waitable_by_pid_until_its_popen_waits(space, build):
    program = [build("exit_code.c"), "7"]
    results = []
    for start in (subprocess.Popen, space.Popen):
        p = start(program)
        _, status = os.waitpid(p.pid, 0)  # user code takes the status first
        results.append((os.waitstatus_to_exitcode(status), p.returncode, p.wait()))
    assert results[0] == (7, None, 0)  # subprocess's own convention: status lost -> 0
    assert results[1] == results[0]


def test_memory_is_given_back_before_the_program_is_reaped(space, build):
    exe = build("origin_main.c")
    p = space.Popen([exe], stdout=subprocess.DEVNULL)
    wait_until_exited(p.pid)
    assert p._exit.gone.wait(timeout=60)  # the space noticed the exit
    assert process_state(p.pid) == "Z"  # a zombie, still to be reaped
    assert not [m for m in _mm.read_maps() if m.path == exe]
    assert p.pidfd == -1 and p.returncode is None
    assert p.wait() == 0
    assert not os.path.exists(f"/proc/{p.pid}")


def test_send_signal_after_exit_settles_the_returncode(space, build):
    program = [build("exit_code.c"), "3"]
    for start in (subprocess.Popen, space.Popen):
        p = start(program)
        wait_until_exited(p.pid)
        assert p.returncode is None
        p.send_signal(signal.SIGTERM)  # polls first, as subprocess does: no signal
        assert p.returncode == 3


def test_poll_after_an_exit_never_says_none(space, build):
    p = space.Popen([build("exit_code.c"), "4"])
    wait_until_exited(p.pid)
    assert p.poll() == 4


def test_a_dropped_running_popen_warns_and_is_reaped_by_subprocess_cleanup(space, build):
    p = space.Popen([build("sleeper.c")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    stdin, stdout, pid = p.stdin, p.stdout, p.pid
    assert stdout.readline() == b"ready\n"
    gc.collect()  # earlier tests' garbage warns on its own: not inside the block below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del p  # the space keeps no reference: subprocess's __del__ runs now
        gc.collect()
    assert [w.category for w in caught] == [ResourceWarning]
    parked = [inst for inst in subprocess._active if inst.pid == pid]
    assert len(parked) == 1
    stdin.close()  # the sleeper exits at EOF
    assert parked[0]._exit.gone.wait(timeout=60)  # the reaper thread saw it
    subprocess._cleanup()
    assert parked[0] not in subprocess._active and parked[0].returncode == 0
    assert not os.path.exists(f"/proc/{pid}")
    stdout.close()


def test_a_finalizer_never_takes_the_reapers_lock(space, build):
    """Collection may finalize a dropped Popen in any thread, even in one
    that holds the reaper's lock (its own thread, say): __del__ must not
    claim the program.  Here another thread drops it while the lock is held."""
    held = [space.Popen([build("sleeper.c")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)]
    stdin, stdout, pid = held[0].stdin, held[0].stdout, held[0].pid
    finalized = threading.Event()

    def drop():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            held.clear()
        finalized.set()

    with space._reaper._lock:
        dropper = threading.Thread(target=drop)
        dropper.start()
        done = finalized.wait(timeout=30)
    dropper.join()
    assert done
    parked = [inst for inst in subprocess._active if inst.pid == pid]
    stdin.close()
    assert parked[0].wait() == 0
    stdout.close()


def test_close_fds_false_keeps_what_an_exec_would(space, build):
    inheritable = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(inheritable, True)
    cloexec = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        seen = []
        for run in (subprocess.run, space.run):
            r = run([build("procstate.c")], capture_output=True, text=True, close_fds=False)
            seen.append(kv(r.stdout)["fds"].split(","))
        assert str(inheritable) in seen[0] and str(cloexec) not in seen[0]
        assert seen[1] == seen[0]
    finally:
        os.close(inheritable)
        os.close(cloexec)


def test_passed_descriptors_survive_the_programs_own_exec(space):
    r, w = os.pipe()  # both O_CLOEXEC in the host, as Python makes them
    try:
        listings = [run(["sh", "-c", "ls /proc/self/fd"], pass_fds=[r], capture_output=True).stdout
                    for run in (subprocess.run, space.run)]
    finally:
        os.close(r)
        os.close(w)
    assert str(r).encode() in listings[0].split()
    assert listings[1] == listings[0]


def test_stdio_given_as_its_own_descriptor_survives_the_programs_exec(space):
    """stdout=1 with the host's fd 1 close-on-exec: no dup3 happens, so the
    flag must be cleared as subprocess's child does."""
    saved = os.dup(1)
    r, w = os.pipe()
    try:
        os.dup2(w, 1, inheritable=False)
        for run in (subprocess.run, space.run):
            assert run(["sh", "-c", "/bin/echo out"], stdout=1).returncode == 0
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(w)
    with os.fdopen(r, "rb") as reader:
        assert reader.read() == b"out\nout\n"


def test_positional_arguments_follow_subprocess_popens_order(space, build):
    # args, bufsize, executable, stdin, stdout
    p = space.Popen([build("hello.c")], 0, None, None, subprocess.PIPE)
    assert p.stdout.read() == b"hello from sameprocess\n"
    p.stdout.close()
    assert p.wait() == 0
    with pytest.raises(TypeError):
        space.Popen(["true"], -1, stdin=None, bufsize=0)
    with pytest.raises(ValueError, match="preexec_fn"):
        space.Popen(["true"], -1, None, None, None, None, lambda: None)


def test_a_bad_cwd_is_named_before_a_missing_program(space, tmp_path):
    missing_dir = str(tmp_path / "no-such-dir")
    errors = []
    for start in (subprocess.Popen, space.Popen):
        with pytest.raises(OSError) as info:
            start(["no-such-program-here"], cwd=missing_dir)
        errors.append((type(info.value), info.value.filename))
    assert errors[0] == (FileNotFoundError, missing_dir)
    assert errors[1] == errors[0]


def test_with_sigchld_ignored_the_status_is_lost_as_for_subprocess(space, build):
    """The kernel then reaps every child itself: subprocess reports 0."""
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        codes = [start([build("exit_code.c"), "7"]).wait() for start in (subprocess.Popen, space.Popen)]
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert codes == [0, 0]


def test_repr_is_subprocess_popens_with_the_package_named(space, build):
    p = space.Popen([build("exit_code.c"), "a" * 100])
    p.wait()
    native = subprocess.Popen(["true", "a" * 100])
    native.wait()
    native.args = p.args
    native.returncode = p.returncode
    assert repr(p) == "<sameprocess." + repr(native)[1:]
    assert repr(p).endswith("...>")  # long args cut as subprocess cuts them
