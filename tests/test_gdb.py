"""gdb on programs of a space: Popen.gdb_command, `sameprocess gdb`.

Every gdb runs in batch mode with -nx and a timeout.  Programs print
"ready PID" once they wait for input; lines written to them later prove
that they survived the detach.  Breakpoint tests write the line that hits
only after gdb has resumed the program ("Continuing." on gdb's output).
"""
from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import signal
import subprocess

import pytest

from _build import NONPIE_ADDRESS
from _server_helpers import read_line, server, sockdir, wait_readable, wait_until  # noqa: F401

pytestmark = pytest.mark.skipif(shutil.which("gdb") is None,
                                reason="gdb is not installed (scripts/bootstrap.sh installs it)")

GDB_TIMEOUT = 120
# A row of `info threads`: "* 1    LWP 123 ..." or, with libthread_db,
# "  2    Thread 0x7f... (LWP 124) ..."
THREAD_ROW = r"^\*?\s+\d+\s+(?:Thread 0x[0-9a-f]+ \()?LWP (\d+)"

VARIANTS = {
    "pie": None,
    "static-pie": ["-static-pie"],
    "non-pie": ["-no-pie", f"-Wl,-Ttext-segment={NONPIE_ADDRESS + 0x1000000:#x}"],
}


def start(space, exe, *args):
    """A program that waits for lines, in its own session as the server
    starts programs."""
    p = space.Popen([exe, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                    start_new_session=True)
    assert read_line(p.stdout) == f"ready {p.pid}\n"
    return p


def gdb(argv, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=GDB_TIMEOUT, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def still_runs(p, line="abc", expect=None):
    """The program answers a line: it survived the debugger."""
    p.stdin.write(line + "\n")
    p.stdin.flush()
    answer = read_line(p.stdout)
    assert expect is None or answer == expect, answer
    assert p.poll() is None
    return answer


def read_raw_lines(stream, count):
    """count lines, read with os.read past the (empty) buffer of `stream`:
    one select-then-readline per line would wait for a line that a single
    read already put in the buffer."""
    data = b""
    while data.count(b"\n") < count:
        assert wait_readable(stream.fileno(), GDB_TIMEOUT), f"only {data!r} within {GDB_TIMEOUT} s"
        chunk = os.read(stream.fileno(), 4096)
        assert chunk, f"end of output after {data!r}"
        data += chunk
    return data.decode()


def tasks(pid):
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_backtrace_globals_threads_then_detach(space, build, variant):
    flags = VARIANTS[variant]
    exe = build("dbg_threads.c", flags=flags, name=f"dbg_threads_{variant.replace('-', '_')}")
    if variant != "non-pie":   # a second copy of the same file: gdb must pick p's
        start(space, exe)
    p = start(space, exe)
    out = gdb(p.gdb_command("-nx", "-batch", "-ex", "bt", "-ex", "print dbg_global",
                            "-ex", "info threads", "-ex", "thread apply all bt")).stdout
    assert re.search(r"in wait_for_lines \(\) at .*dbg_threads\.c:\d+", out), out
    assert re.search(r"in main \(\) at .*dbg_threads\.c:\d+", out), out
    assert re.search(r"in worker_loop \(arg=.*\) at .*dbg_threads\.c:\d+", out), out
    assert "$1 = 4242" in out
    listed = sorted(int(lwp) for lwp in re.findall(THREAD_ROW, out, re.M))
    assert listed == tasks(p.pid) and len(listed) == 2, out
    assert "Py" not in out and "python" not in out, out   # nothing of the host
    still_runs(p, "abc", "line 4246\n")


def test_cxx_frames_by_name(space, build):
    p = start(space, build("dbg_cxx.cpp"))
    out = gdb(p.gdb_command("-nx", "-batch", "-ex", "bt", "-ex", "print dbg_cxx_total")).stdout
    assert re.search(r"demo::Waiter::wait_for_lines \(this=[^)]*0x[0-9a-f]+\) at .*dbg_cxx\.cpp:\d+", out), out
    assert re.search(r"in main \(\) at .*dbg_cxx\.cpp:\d+", out), out
    assert "$1 = 31337" in out
    still_runs(p, "ab", "total 31339\n")


def run_until_resumed(argv, pid):
    """gdb in the background; returns once it has attached, loaded the
    symbols and resumed the program (no task of it in tracing stop).

    Its output is read with os.read (a buffered reader could hold the line
    awaited while select says there is nothing to read); gdb does not flush
    "Continuing." to a pipe, so the program's state tells when it runs.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = b""
    while b"sameprocess: symbols of" not in seen:
        if not wait_readable(proc.stdout.fileno(), GDB_TIMEOUT):
            proc.kill()
            raise AssertionError("gdb did not load the program's symbols:\n" + seen.decode())
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, "gdb ended early:\n" + seen.decode()
        seen += chunk
    wait_until(lambda: all(_state(pid, t) != "t" for t in tasks(pid)), GDB_TIMEOUT, "gdb to resume the program")
    return proc, seen


def _state(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
        stat = f.read()
    return chr(stat[stat.rindex(b")") + 2])


def finish(proc, seen):
    try:
        rest, _ = proc.communicate(timeout=GDB_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, _ = proc.communicate()
    out = (seen + rest).decode()
    assert proc.returncode == 0, out
    return out


def test_breakpoints_in_program_and_libc_hit(space, build):
    p = start(space, build("dbg_threads.c"))
    proc, seen = run_until_resumed(p.gdb_command(
        "-nx", "-batch", "-ex", "break on_line", "-ex", "continue", "-ex", "print line",
        "-ex", "break fflush", "-ex", "continue", "-ex", "bt", "-ex", "delete", "-ex", "detach"), p.pid)
    p.stdin.write("hello\n")
    p.stdin.flush()
    out = finish(proc, seen)
    assert re.search(r"Breakpoint 1, on_line \(line=.*\) at .*dbg_threads\.c:\d+", out), out
    assert '"hello\\n"' in out, out
    assert re.search(r"Breakpoint 2, .*fflush", out), out
    assert re.search(r"#\d+ .* in on_line \(line=.*\) at .*dbg_threads\.c", out), out
    assert read_line(p.stdout) == "line 4248\n"   # the hit line, once gdb let go
    still_runs(p, "x", "line 4250\n")


def test_no_breakpoint_can_land_in_the_shared_vdso(space, build):
    """The vDSO is one mapping for the whole mm: `break clock_gettime` must
    resolve to the program's libc only (plain gdb also puts a location in
    the vDSO, where the host would hit it)."""
    p = start(space, build("dbg_threads.c"))
    out = gdb(p.gdb_command("-nx", "-batch", "-ex", "break clock_gettime", "-ex", "info breakpoints")).stdout
    listed = out.split("Num     Type")[1]
    addresses = [int(a, 16) for a in re.findall(r"\s(0x[0-9a-f]{8,})\s", listed)]
    vdso = next(m for m in open("/proc/self/maps") if m.rstrip().endswith("[vdso]"))
    lo, hi = (int(x, 16) for x in vdso.split()[0].split("-"))
    assert addresses and not any(lo <= a < hi for a in addresses), out
    assert "__GI___clock_gettime" in listed or "clock_gettime" in listed
    still_runs(p, "ab", "line 4245\n")


def test_interrupt_continue_detach(space, build):
    """While gdb runs the program, the host dlopens a library: plain `gdb -p`
    has its dlopen breakpoint in the host's ld.so then, and the host dies of
    SIGTRAP.  Ctrl-C at gdb's terminal is SIGINT to gdb: it stops the
    program, not the host, and the program runs on after detach."""
    plugin = build("dbg_plugin.c", flags=["-shared", "-fPIC"], name="libdbgplugin.so")
    p = start(space, build("dbg_threads.c"))
    proc, seen = run_until_resumed(p.gdb_command(
        "-nx", "-batch", "-ex", "continue", "-ex", "info threads", "-ex", "detach"), p.pid)
    assert ctypes.CDLL(plugin).plugin_work(1) == 202   # the host's own ld.so: no breakpoint there
    proc.send_signal(signal.SIGINT)
    out = finish(proc, seen)
    assert "received signal SIGINT" in out, out
    assert f"[Inferior 1 (process {p.pid}) detached]" in out
    still_runs(p, "ab", "line 4245\n")


def test_library_dlopened_after_attach_is_found(space, build):
    plugin = build("dbg_plugin.c", flags=["-shared", "-fPIC"], name="libdbgplugin.so")
    p = start(space, build("dbg_dlopen.c"), plugin)
    proc, seen = run_until_resumed(p.gdb_command(
        "-nx", "-batch", "-iex", "set breakpoint pending on", "-ex", "break plugin_work",
        "-ex", "continue", "-ex", "bt", "-ex", "print plugin_counter", "-ex", "continue",
        "-ex", "print plugin_counter", "-ex", "detach"), p.pid)
    p.stdin.write("go\nagain\n")   # dlopen, dlclose, dlopen again
    p.stdin.flush()
    out = finish(proc, seen)
    hits = re.findall(r"Breakpoint 1, plugin_work \(n=7\) at .*dbg_plugin\.c:\d+", out)
    assert len(hits) == 2, out
    assert re.search(r"in main \(argc=.*\) at .*dbg_dlopen\.c:\d+", out), out
    assert "$1 = 100" in out and "$2 = 100" in out   # a fresh copy of the library's data
    assert read_raw_lines(p.stdout, 2) == "work 214\nwork 214\n"


def test_gdb_command_without_gdb_names_the_package(space, build, monkeypatch):
    p = start(space, build("dbg_threads.c"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"gdb is not installed \(Debian: apt-get install gdb\)"):
        p.gdb_command()


def test_a_program_that_exec_d_has_left_the_space(space, build):
    from sameprocess._debug import LeftTheSpace

    p = space.Popen(["/bin/sh", "-c", 'exec "$0"', build("dbg_threads.c")],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert read_line(p.stdout) == f"ready {p.pid}\n"   # printed after the exec
    with pytest.raises(LeftTheSpace, match=rf"has exec'd and left the space: .*gdb -p {p.pid}"):
        p.gdb_command()


def test_gdb_command_after_exit_is_an_error(space, build):
    p = space.Popen([build("hello.c")], stdout=subprocess.DEVNULL)
    p.wait()
    with pytest.raises(ProcessLookupError):
        p.gdb_command()


@pytest.mark.parametrize("scope, cap, refused", [
    (None, False, False), (0, False, False), (1, True, False), (1, False, True),
    (2, True, False), (2, False, True), (3, True, True),
])
def test_ptrace_problem_follows_yama(monkeypatch, scope, cap, refused):
    """This machine may have no yama: each setting is given to the check."""
    from sameprocess import _debug

    monkeypatch.setattr(_debug, "_ptrace_scope", lambda: scope)
    monkeypatch.setattr(_debug, "has_capability", lambda number: cap)
    problem = _debug.ptrace_problem()
    assert (problem is not None) == refused
    if refused:
        assert f"kernel.yama.ptrace_scope is {scope}" in problem


# -- through the server ------------------------------------------------------------
def test_sameprocess_gdb_on_a_program_of_a_server(server, build):  # noqa: F811
    launcher = server.launch(build("dbg_threads.c"), text=True)
    try:
        pid = int(read_line(launcher.stdout).split()[1])
        result = server.cli("gdb", str(pid), "-nx", "-batch", "-ex", "bt", "-ex", "print dbg_global",
                            timeout=GDB_TIMEOUT)
        assert result.returncode == 0, result.stderr
        assert re.search(r"in wait_for_lines \(\) at .*dbg_threads\.c:\d+", result.stdout), result.stdout
        assert "$1 = 4242" in result.stdout
        launcher.stdin.write("ab\n")
        launcher.stdin.flush()
        assert read_line(launcher.stdout) == "line 4245\n"
    finally:
        launcher.stdin.close()
        assert launcher.wait(GDB_TIMEOUT) == 0


def test_print_command_is_what_gdb_runs(server, build):  # noqa: F811
    """--print-command gives a shell line (for sudo where ptrace is restricted)."""
    launcher = server.launch(build("dbg_threads.c"), text=True)
    try:
        pid = int(read_line(launcher.stdout).split()[1])
        printed = server.cli("gdb", "--print-command", str(pid), "-nx", "-batch", "-ex", "print dbg_global")
        assert printed.returncode == 0, printed.stderr
        argv = shlex.split(printed.stdout)
        assert argv[0] == shutil.which("gdb") and f"sameprocess-attach {pid} " in printed.stdout
        assert "$1 = 4242" in subprocess.run(argv, capture_output=True, text=True, timeout=GDB_TIMEOUT).stdout
    finally:
        launcher.stdin.close()
        assert launcher.wait(GDB_TIMEOUT) == 0


def test_sameprocess_gdb_refuses_what_is_not_a_program(server):  # noqa: F811
    result = server.cli("gdb", str(os.getpid()), "-batch")
    assert result.returncode == 1
    assert result.stderr == f"sameprocess gdb: {os.getpid()}: no such program in this space\n"
    result = server.cli("gdb", "nope")
    assert result.returncode == 2
    assert result.stderr.startswith("sameprocess gdb: invalid pid 'nope'")
