"""Each program is a process of its own: PID, fds, signals, cwd, env, FPU."""
import ctypes
import os
import signal
import subprocess
import sys
import threading

import pytest

from _kv import kv


def procstate(space, build, **kwargs):
    r = space.run([build("procstate.c")], capture_output=True, text=True, **kwargs)
    assert r.returncode == 0, r.stderr
    return kv(r.stdout)


def test_identity_comm_cwd_umask(space, build, tmp_path):
    state = procstate(space, build, cwd=tmp_path)
    assert int(state["pid"]) != os.getpid()
    assert int(state["ppid"]) == os.getpid()  # the host is the parent
    assert state["comm"] == "procstate"
    assert state["cwd"] == str(tmp_path)
    assert os.getcwd() != str(tmp_path)  # the host's cwd is untouched


def test_umask_argument(space, build):
    assert procstate(space, build, umask=0o027)["umask"] == "0027"


def test_only_stdio_and_pass_fds_are_open(space, build):
    leaked = [os.open("/dev/null", os.O_RDONLY), os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)]
    r, w = os.pipe()
    os.set_inheritable(r, True)
    try:
        assert procstate(space, build)["fds"] == "0,1,2"
        state = procstate(space, build, pass_fds=(r,))
        assert state["fds"] == f"0,1,2,{r}"
        assert state[f"fd[{r}]"].startswith("pipe:")
    finally:
        for fd in leaked + [r, w]:
            os.close(fd)


def test_environment_is_exactly_what_was_given(space, build):
    r = space.run([build("auxv.c")], env={"ONLY": "this"}, capture_output=True, text=True)
    envs = [line for line in r.stdout.splitlines() if line.startswith("env[")]
    assert envs == ["env[0]=ONLY=this"]


def test_signal_state_is_reset_like_subprocess(space, build):
    # Python ignores SIGPIPE and SIGXFSZ; the program must not inherit that.
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        state = procstate(space, build)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    assert state["sigpipe"] == "SIG_DFL" and state["sigxfsz"] == "SIG_DFL"
    assert int(state["SigBlk"], 16) == 0
    assert int(state["SigIgn"], 16) == 0
    assert int(state["SigCgt"], 16) == 0
    assert state["altstack"] == "disabled"


def test_restore_signals_false_keeps_ignored_signals(space, build):
    state = procstate(space, build, restore_signals=False)
    assert state["sigpipe"] == "SIG_IGN"


def test_explicit_ignored_signal_set(space, build):
    state = procstate(space, build, ignored_signals={signal.SIGHUP})
    assert int(state["SigIgn"], 16) == 1 << (signal.SIGHUP - 1)


def test_writing_to_a_closed_pipe_kills_with_sigpipe(space, build):
    p = space.Popen([build("sigpipe.c")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(1)
    p.stdout.close()
    p.wait()
    err = p.stderr.read()
    p.stderr.close()
    assert p.returncode == -signal.SIGPIPE, err


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x87/MXCSR are x86_64 state")
def test_fpu_control_state_is_reset(space, build):
    libm = ctypes.CDLL("libm.so.6")
    FE_DOWNWARD, FE_TONEAREST = 0x400, 0
    assert libm.fesetround(FE_DOWNWARD) == 0
    try:
        state = procstate(space, build)
    finally:
        libm.fesetround(FE_TONEAREST)
    assert state["fegetround"] == "FE_TONEAREST"
    assert state["mxcsr"] == "0x1f80" and state["x87_cw"] == "0x037f"


def test_sessions_and_process_groups(space, build):
    state = procstate(space, build)
    assert int(state["sid"]) == os.getsid(0)
    state = procstate(space, build, start_new_session=True)
    assert state["sid"] == state["pid"] == state["pgrp"]
    state = procstate(space, build, process_group=0)
    assert state["pgrp"] == state["pid"] and int(state["sid"]) == os.getsid(0)


def _cpu_list(cpus) -> str:
    """/proc's Cpus_allowed_list form of a set of CPUs: 0-1,3."""
    runs, out = [], []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    for lo, hi in runs:
        out.append(str(lo) if lo == hi else f"{lo}-{hi}")
    return ",".join(out)


def procstate_from_a_thread_on(cpus, space, build) -> dict:
    """procstate started from a host thread whose affinity is `cpus`."""
    result = {}

    def start():
        os.sched_setaffinity(0, cpus)  # this thread only
        result.update(procstate(space, build))

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    return result


def test_a_program_keeps_exactly_the_affinity_of_the_thread_that_started_it(space, build):
    # The child path may step off the host's CPU for a moment (as exec
    # rebalances); what the program starts with is the caller's mask.
    allowed = os.sched_getaffinity(0)
    assert procstate(space, build)["Cpus_allowed_list"] == _cpu_list(allowed)
    for cpu in sorted(allowed):
        state = procstate_from_a_thread_on({cpu}, space, build)
        assert state["Cpus_allowed_list"] == str(cpu)
    if len(allowed) > 1:
        pair = set(sorted(allowed)[:2])
        assert procstate_from_a_thread_on(pair, space, build)["Cpus_allowed_list"] == _cpu_list(pair)


def test_nice_and_cpu_affinity_arguments(space):
    """nice= and cpu_affinity= as a launcher passes its own; by default the
    program has the host's, as a child would."""
    script = "grep Cpus_allowed_list /proc/self/status; cut -d' ' -f19 /proc/self/stat"
    cpu = max(os.sched_getaffinity(0))
    nice = min(os.getpriority(os.PRIO_PROCESS, 0) + 3, 19)
    given = space.run(["/bin/sh", "-c", script], nice=nice, cpu_affinity={cpu}, capture_output=True, text=True)
    assert given.stdout.split() == ["Cpus_allowed_list:", str(cpu), str(nice)]
    natively = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True)
    assert space.run(["/bin/sh", "-c", script], capture_output=True, text=True).stdout == natively.stdout
    for bad in (dict(nice=20), dict(nice=-21), dict(cpu_affinity=()), dict(cpu_affinity={-1}),
                dict(cpu_affinity={8192})):
        with pytest.raises(ValueError):
            space.run(["/bin/true"], **bad)
    assert space.programs() == []   # refused before anything started


def _mm_start_brk() -> int:
    with open("/proc/self/stat", "rb") as f:
        raw = f.read()
    return int(raw[raw.rindex(b")") + 2:].split()[47 - 3])  # proc(5): field 47, start_brk


def test_the_kernel_pins_the_break_so_programs_need_no_brk_filter(space, build):
    # This machine's kernel takes PR_SET_MM_MAP: the break is pinned at the
    # guard.  A program that opts out of reclamation then gets no seccomp
    # filter and no no_new_privs, exactly like a child started by subprocess.
    assert space._host.seccomp is None
    assert _mm_start_brk() == space._host.guard
    state = procstate(space, build, reclaim=False)
    assert state["Seccomp"] == "0" and state["NoNewPrivs"] == "0"


def test_a_reclaimed_program_has_only_the_ledger_filter(space, build):
    """The ledger's filter; no_new_privs only where the host lacks
    CAP_SYS_ADMIN (the kernel's condition for an unprivileged filter)."""
    assert space.reclaims_memory
    state = procstate(space, build)
    assert state["Seccomp"] == "2" and state["Seccomp_filters"] == "1"
    assert state["NoNewPrivs"] == ("0" if space._host.cap_sys_admin else "1")


FALLBACK_HOST = """
import sys
from sameprocess import Space, _spawn
_spawn.pin_break = lambda guard: False  # a kernel that refuses PR_SET_MM_MAP
with Space() as space:
    for program in sys.argv[1:]:
        r = space.run([program], capture_output=True, text=True)
        print(r.stdout, end="")
        print(f"{program.rsplit('/', 1)[-1]}.returncode={r.returncode}")
"""


def test_without_pr_set_mm_map_each_program_gets_the_seccomp_brk_filter(build):
    r = subprocess.run([sys.executable, "-c", FALLBACK_HOST, build("procstate.c"), build("sbrk.c")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    state = kv(r.stdout)
    assert state["procstate.returncode"] == state["sbrk.returncode"] == "0"
    assert state["Seccomp"] == "2"
    # The filter refuses the shrink outright (glibc sees a failed brk).
    assert state["sbrk_grow"] == "ENOMEM" and state["sbrk_below"] != "ok"
    assert state["kernel_delta"] == "0" and "heap ok" in r.stdout
