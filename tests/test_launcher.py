"""`sameprocess run`: the program looks like the launcher's own child (exit
status, death by signal, forwarded signals, stop/continue, the context it
inherits, its stdio descriptors), and shell-like failures."""
from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys

import pytest

from _server_helpers import (  # noqa: F401  (fixtures)
    FALLBACK, SP, TIMEOUT, ServerProc, clean_env, proc_state, read_line, server, sockdir, wait_until,
)


def kv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# -- exit status ------------------------------------------------------------------------
@pytest.mark.parametrize("code", [0, 1, 7, 126, 255])
def test_exit_code_is_the_programs(server, build, code):
    assert server.run(build("exit_code.c"), str(code)).returncode == code


def test_death_by_signal_is_the_launchers(server, build):
    result = server.run(build("abort.c"))
    assert result.returncode == -signal.SIGABRT
    assert result.stdout == "about to abort\n"
    assert result.stderr == ""


def test_shell_sees_128_plus_n(server, build):
    script = (f"{' '.join(SP)} run --socket {server.path} {build('abort.c')} >/dev/null; echo \"rc=$?\"; "
              f"{' '.join(SP)} run --socket {server.path} /bin/sh -c 'kill -USR1 $$'; echo \"rc=$?\"")
    result = subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True,
                            env=clean_env(), timeout=TIMEOUT)
    assert result.stdout.splitlines() == ["rc=134", f"rc={128 + signal.SIGUSR1}"]


def test_death_by_signal_leaves_no_core_of_the_launcher(server, build, tmp_path):
    result = server.run(build("abort.c"), cwd=tmp_path)
    assert result.returncode == -signal.SIGABRT
    assert not [p for p in os.listdir(tmp_path) if p.startswith("core")]


# -- not found, not executable ---------------------------------------------------------------
def test_command_not_found(server):
    result = server.run("no-such-command-xyz")
    assert (result.returncode, result.stderr) == (127, "sameprocess: no-such-command-xyz: command not found\n")


def test_missing_path(server, tmp_path):
    result = server.run(str(tmp_path / "nothing"))
    assert result.returncode == 127
    assert result.stderr == f"sameprocess: {tmp_path / 'nothing'}: No such file or directory\n"


def test_not_executable(server, tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("data")
    result = server.run(str(plain))
    assert (result.returncode, result.stderr) == (126, f"sameprocess: {plain}: Permission denied\n")
    result = server.run(str(tmp_path))
    assert result.returncode == 126 and result.stderr.endswith("Permission denied\n")


def test_not_a_program(server, tmp_path):
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"\x7fELF" + b"\0" * 60)
    bogus.chmod(0o755)
    result = server.run(str(bogus))
    assert result.returncode == 126
    assert result.stderr.startswith(f"sameprocess: {bogus}: ")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_arguments_too_long(server):
    """Built inside the launcher: a command line that long could not even start it."""
    code = ("import sys; from sameprocess._cli import main; "
            f"sys.exit(main(['run', '--socket', {server.path!r}, '/bin/true', 'x' * (128 << 10)]))")
    result = subprocess.run([SP[0], "-c", code], capture_output=True, text=True, env=clean_env(),
                            timeout=TIMEOUT)
    assert (result.returncode, result.stderr) == (
        126, "sameprocess run: /bin/true: Argument list too long (one argument or environment "
             "string is 131072 bytes)\n")


def test_server_rejects_oversized_spawn_with_e2big(server):
    """A launcher that skips its own check gets E2BIG from the server."""
    from sameprocess._server.framing import FrameReader, send_frame
    from sameprocess._server.protocol import REPLIES, Error, Spawn
    import errno
    with socket.socket(socket.AF_UNIX) as s, open(os.devnull) as null:
        s.connect(server.path)
        send_frame(s, Spawn([b"/bin/true"] + [b"y" * 100_000] * 30, [], b"/",
                            rlimits={resource.RLIMIT_STACK: (1 << 20, 1 << 20)}), [null.fileno()] * 3)
        reader = FrameReader(REPLIES)
        while (got := reader.receive(s)) is None:
            pass
    assert isinstance(got[0], Error) and got[0].errno == errno.E2BIG


# -- context -----------------------------------------------------------------------------------
def test_context_is_the_launchers(server, build, tmp_path):
    def limits():
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 300))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.umask(0o037)
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # e.g. a background job of a script
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)

    result = server.run(build("procstate.c"), cwd=tmp_path, preexec_fn=limits,
                        env=clean_env(PATH=os.environ["PATH"], ONLY_HERE="yes"))
    state = kv(result.stdout)
    assert state["cwd"] == str(tmp_path)
    assert state["umask"] == "0037"
    assert state["fds"] == "0,1,2"
    ignored = int(state["SigIgn"], 16)
    assert ignored == (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGUSR2 - 1))
    assert state["sigpipe"] == "SIG_DFL" and state["sigxfsz"] == "SIG_DFL"
    assert int(state["SigBlk"], 16) == 0
    assert state["sid"] == state["pid"], "programs run in their own session"
    shell = server.run("/bin/sh", "-c", 'ulimit -Sn; ulimit -Hn; ulimit -c; echo "$ONLY_HERE"',
                       preexec_fn=limits, env=clean_env(PATH=os.environ["PATH"], ONLY_HERE="yes"))
    assert shell.stdout.split() == ["200", "300", "0", "yes"]


def test_cpu_affinity_and_nice_are_the_launchers(server):
    """As its child would, the program runs on the launcher's CPUs at its
    nice value, not on the server's: both launchers send them."""
    cpu = max(os.sched_getaffinity(0))
    nice = min(os.getpriority(os.PRIO_PROCESS, 0) + 4, 19)

    def pinned_and_niced():
        os.sched_setaffinity(0, {cpu})
        os.setpriority(os.PRIO_PROCESS, 0, nice)

    script = "grep Cpus_allowed_list /proc/self/status; cut -d' ' -f19 /proc/self/stat"
    fallback = [sys.executable, "-c", FALLBACK, "run", "--socket", server.path, "--"]
    for launcher in (SP + ["run", "--socket", server.path, "--"], fallback):
        result = subprocess.run(launcher + ["/bin/sh", "-c", script], preexec_fn=pinned_and_niced,
                                capture_output=True, text=True, env=clean_env(), timeout=TIMEOUT)
        assert (result.returncode, result.stderr) == (0, "")
        assert result.stdout.split() == ["Cpus_allowed_list:", str(cpu), str(nice)]
    natively = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=TIMEOUT)
    assert server.run("/bin/sh", "-c", script).stdout == natively.stdout   # nothing stays changed


def test_a_nice_the_server_may_not_lower_is_said(sockdir):
    """A server started at a higher nice (e.g. auto-started by a launcher run
    with `nice`) may not give a later launcher's program a lower one: the
    program gets the server's, and its launcher a warning that says so."""
    own = os.getpriority(os.PRIO_PROCESS, 0)
    higher = min(own + 5, 19)
    prefix = ["nice", "-n", str(higher - own)]
    if os.geteuid() == 0:   # root may lower it: drop CAP_SYS_NICE from the server
        prefix = ["setpriv", "--bounding-set=-sys_nice", "--inh-caps=-sys_nice"] + prefix
    niced = ServerProc(sockdir, prefix=tuple(prefix))
    try:
        result = niced.run("/bin/sh", "-c", "cut -d' ' -f19 /proc/self/stat")
        assert (result.returncode, result.stdout) == (0, f"{higher}\n")
        assert result.stderr == (f"sameprocess: warning: runs at nice {higher}, the server's, not the "
                                 f"launcher's {own}: the server may not lower it (that takes "
                                 "CAP_SYS_NICE or RLIMIT_NICE)\n")
    finally:
        niced.stop()


def test_program_is_found_on_the_launchers_path(server, build, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(build("hello.c"), bindir / "my-hello")
    env = clean_env(PATH=f"{bindir}:/usr/bin:/bin")
    result = server.run("my-hello", env=env)
    assert (result.returncode, result.stdout) == (0, "hello from sameprocess\n")
    relative = server.run("./bin/my-hello", cwd=tmp_path)
    assert relative.stdout == "hello from sameprocess\n"


def test_stdio_descriptors_of_every_kind(server, tmp_path):
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        result = server.run("/bin/sh", "-c", "cat; echo to-stderr >&2", input="from a pipe\n",
                            stdout=f, capture_output=False, stderr=subprocess.PIPE)
    assert out.read_text() == "from a pipe\n" and result.stderr == "to-stderr\n"
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"over a socket\n")
        b.shutdown(socket.SHUT_WR)
        server.run("/bin/cat", stdin=a, stdout=a, capture_output=False)
        a.shutdown(socket.SHUT_WR)
        assert b.recv(100) == b"over a socket\n"
    closed = subprocess.run(SP + ["run", "--socket", server.path, "/bin/sh", "-c", "cat; echo ok"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            env=clean_env(), timeout=TIMEOUT, pass_fds=())
    assert closed.stdout == "ok\n"


def test_closed_stdin_becomes_dev_null(server):
    result = subprocess.run(
        ["/bin/sh", "-c", f"exec {' '.join(SP)} run --socket {server.path} /bin/sh -c "
                          "'readlink /proc/self/fd/0' <&-"],
        capture_output=True, text=True, env=clean_env(), timeout=TIMEOUT)
    assert result.stdout == "/dev/null\n"


# -- signals ---------------------------------------------------------------------------------------
FORWARDED = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGALRM, signal.SIGPIPE, signal.SIGURG]


def test_signals_are_forwarded(server, build):
    launcher = server.launch(build("srv_siglog.c"))
    try:
        assert read_line(launcher.stdout) == b"ready\n"
        for sig in FORWARDED:
            launcher.send_signal(sig)
            assert read_line(launcher.stdout) == f"got {int(sig)}\n".encode(), sig.name
        launcher.stdin.close()
        assert read_line(launcher.stdout) == b"eof\n"
        assert launcher.wait(TIMEOUT) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()


def test_sigint_kills_both_like_a_child(server, build):
    launcher = server.launch(build("sleeper.c"))
    assert read_line(launcher.stdout) == b"ready\n"
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(TIMEOUT) == -signal.SIGINT


def test_signal_arriving_before_the_program_starts_is_delivered(server, build):
    """The launcher's handlers are in place before it connects."""
    launcher = server.launch(build("sleeper.c"), stdout=subprocess.PIPE)
    launcher.send_signal(signal.SIGTERM)       # probably before the program exists
    assert launcher.wait(TIMEOUT) == -signal.SIGTERM


@pytest.mark.parametrize("stop", [signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU])
def test_stop_and_continue_together(server, build, stop):
    # A process group of its own whose parent (pytest) is in another group of
    # the session: not orphaned, so the kernel does not discard stop signals.
    launcher = server.launch(build("srv_siglog.c"), process_group=0)
    try:
        assert read_line(launcher.stdout) == b"ready\n"
        pid = server.program_of(launcher.pid)["pid"]
        launcher.send_signal(stop)
        wait_until(lambda: proc_state(launcher.pid) == "T", what="the launcher to stop")
        stopped = os.waitid(os.P_PID, launcher.pid, os.WSTOPPED | os.WNOWAIT)
        assert (stopped.si_code, stopped.si_status) == (os.CLD_STOPPED, stop), \
            "the launcher stops by the same signal, so a shell says why"
        wait_until(lambda: proc_state(pid) == "T", what="the program to stop")
        os.waitid(os.P_PID, launcher.pid, os.WSTOPPED)          # consume the report
        launcher.send_signal(signal.SIGCONT)
        os.waitid(os.P_PID, launcher.pid, os.WCONTINUED)
        wait_until(lambda: proc_state(pid) in "SR", what="the program to continue")
        launcher.send_signal(signal.SIGUSR1)                    # it runs and handles signals again
        assert read_line(launcher.stdout) == f"got {int(signal.SIGUSR1)}\n".encode()
        launcher.stdin.close()
        assert launcher.wait(TIMEOUT) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_ignored_sighup_like_nohup(server, build):
    """nohup: the launcher and the program both ignore SIGHUP."""
    launcher = server.launch(build("sleeper.c"),
                             preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    assert read_line(launcher.stdout) == b"ready\n"
    pid = server.program_of(launcher.pid)["pid"]
    launcher.send_signal(signal.SIGHUP)
    with open(f"/proc/{pid}/status") as f:
        sigign = int(next(line for line in f if line.startswith("SigIgn:")).split()[1], 16)
    assert sigign & (1 << (signal.SIGHUP - 1))
    launcher.stdin.close()
    assert launcher.wait(TIMEOUT) == 0
