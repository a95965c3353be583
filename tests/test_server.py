"""The server on real sockets: its socket and directory, live/stale handling,
ps/kill/stop, many launchers at once, and a server killed while programs run."""
from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import subprocess
import threading

import pytest

from _server_helpers import (  # noqa: F401  (fixtures)
    SP, TIMEOUT, ServerProc, clean_env, private_dir, read_line, server, sockdir, wait_pid_gone,
    wait_until,
)


def test_socket_and_directory_modes(tmp_path):
    d = tmp_path / "made-by-serve"          # absent: serve creates it 0700
    srv = ServerProc(d) if d.exists() else None
    assert srv is None
    d.mkdir(mode=0o700)
    srv = ServerProc(d)
    try:
        st = os.stat(srv.path)
        assert stat.S_ISSOCK(st.st_mode) and (st.st_mode & 0o777) == 0o600
        assert (os.stat(d).st_mode & 0o777) == 0o700
        assert f"serving on {srv.path}" in srv.log()
    finally:
        srv.stop()
    assert not os.path.exists(srv.path), "stop removes the socket"


def test_serve_creates_a_missing_directory(tmp_path):
    path = tmp_path / "fresh" / "s.sock"
    r, w = os.pipe()
    proc = subprocess.Popen(SP + ["serve", "--socket", str(path), "--ready-fd", str(w)], pass_fds=(w,),
                            stderr=subprocess.PIPE, env=clean_env())
    os.close(w)
    try:
        assert os.read(r, 16) == b"ready\n"
        assert (os.stat(path.parent).st_mode & 0o777) == 0o700
    finally:
        os.close(r)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
        assert b"got SIGTERM: stopping" in proc.stderr.read()
        proc.stderr.close()
    assert not path.exists()


def test_open_directory_is_refused(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o755)
    result = subprocess.run(SP + ["serve", "--socket", str(d / "s.sock")], capture_output=True,
                            text=True, env=clean_env(), timeout=TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.startswith("sameprocess serve: directory ")
    assert "open to other users" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_live_server_is_never_stolen(server):
    result = subprocess.run(SP + ["serve", "--socket", server.path], capture_output=True, text=True,
                            env=clean_env(), timeout=TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.strip() == \
        f"sameprocess serve: a server is already running at {server.path} (pid {server.pid})"
    assert server.run("true").returncode == 0


def test_a_foreign_listener_is_never_stolen(sockdir):
    path = str(sockdir / "s.sock")
    other = socket.socket(socket.AF_UNIX)
    other.bind(path)
    other.listen()
    try:
        result = subprocess.run(SP + ["serve", "--socket", path], capture_output=True, text=True,
                                env=clean_env(), timeout=TIMEOUT)
        assert result.returncode == 1
        assert "something else is listening" in result.stderr
        assert os.path.exists(path)
    finally:
        other.close()


def test_a_stale_socket_is_replaced(sockdir):
    path = str(sockdir / "s.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()                           # what a SIGKILLed server leaves
    srv = ServerProc(sockdir)
    try:
        assert "removing the stale socket" in srv.log()
        assert srv.run("true").returncode == 0
    finally:
        srv.stop()


def test_server_killed_leaves_a_stale_socket_that_the_next_one_replaces(sockdir):
    first = ServerProc(sockdir)
    first.proc.kill()
    first.proc.wait()
    assert os.path.exists(first.path)
    result = subprocess.run(SP + ["run", "--socket", first.path, "true"], capture_output=True,
                            text=True, env=clean_env(), timeout=TIMEOUT)
    assert result.returncode == 125 and "stale socket" in result.stderr
    second = ServerProc(sockdir)
    try:
        assert second.run("true").returncode == 0
    finally:
        first.stop()
        second.stop()


# -- ps, kill, stop ------------------------------------------------------------------
def test_ps_lists_programs_with_their_launchers(server, build):
    sleeper = build("sleeper.c")
    launcher = server.launch(sleeper, "an arg")
    try:
        assert read_line(launcher.stdout) == b"ready\n"
        row = server.program_of(launcher.pid)
        assert row["args"] == [sleeper, "an arg"] and row["state"] in "SR"
        assert isinstance(row["start_time"], float)
        table = server.cli("ps")
        assert table.returncode == 0
        header, *lines = table.stdout.splitlines()
        assert header.split() == ["PID", "LAUNCHER", "S", "STARTED", "MAPPED", "RSS", "COMMAND"]
        assert any(line.split()[:2] == [str(row["pid"]), str(launcher.pid)] and "'an arg'" in line
                   for line in lines)
    finally:
        launcher.stdin.close()
        assert launcher.wait(TIMEOUT) == 0
    assert server.ps() == []


def test_kill_signals_programs_of_the_space_only(server, build):
    launcher = server.launch(build("srv_siglog.c"))
    try:
        assert read_line(launcher.stdout) == b"ready\n"
        pid = server.program_of(launcher.pid)["pid"]
        result = server.cli("kill", "-s", "USR1", str(pid))
        assert (result.returncode, result.stderr) == (0, "")
        assert read_line(launcher.stdout) == f"got {int(signal.SIGUSR1)}\n".encode()
        for spelling in ("SIGUSR2", "usr2", str(int(signal.SIGUSR2))):
            assert server.cli("kill", "-s", spelling, str(pid)).returncode == 0
            assert read_line(launcher.stdout) == f"got {int(signal.SIGUSR2)}\n".encode()
        # Our own pid is not a program of the space: left alone, reported.
        got = []
        old = signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
        try:
            result = server.cli("kill", "-s", "USR1", str(os.getpid()), str(pid))
        finally:
            signal.signal(signal.SIGUSR1, old)
        assert result.returncode == 1
        assert result.stderr == f"sameprocess kill: {os.getpid()}: no such program in this space\n"
        assert got == []
        assert read_line(launcher.stdout) == f"got {int(signal.SIGUSR1)}\n".encode()
        assert server.cli("kill", "-s", "0", str(pid)).returncode == 0
        assert server.cli("kill", str(pid)).returncode == 0            # TERM by default
        assert read_line(launcher.stdout) == f"got {int(signal.SIGTERM)}\n".encode()
        launcher.stdin.close()
        assert launcher.wait(TIMEOUT) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()


def test_stop_terminates_programs_and_launchers_report_it(sockdir, build):
    srv = ServerProc(sockdir)
    sleeper = build("sleeper.c")
    launchers = [srv.launch(sleeper) for _ in range(3)]
    for launcher in launchers:
        assert read_line(launcher.stdout) == b"ready\n"
    result = srv.cli("stop")
    assert result.returncode == 0
    assert result.stdout == f"stopped the server at {srv.path} (3 programs were running)\n"
    assert srv.proc.wait(TIMEOUT) == 0
    for launcher in launchers:
        assert launcher.wait(TIMEOUT) == -signal.SIGTERM
    assert not os.path.exists(srv.path)
    assert "stopping: 3 programs get SIGTERM" in srv.log()
    srv.stop()


def test_stop_kills_after_the_grace_period(sockdir):
    srv = ServerProc(sockdir)
    stubborn = srv.launch("/bin/sh", "-c", "trap '' TERM; echo ready; exec cat")
    assert read_line(stubborn.stdout) == b"ready\n"
    result = srv.cli("stop", "--grace", "0.2")
    assert result.returncode == 0
    assert stubborn.wait(TIMEOUT) == -signal.SIGKILL
    assert "SIGKILL to 1 programs" in srv.log()
    srv.stop()


def test_sigterm_to_the_server_stops_it_like_stop(sockdir, build):
    srv = ServerProc(sockdir)
    launcher = srv.launch(build("catch_term.c"))
    assert read_line(launcher.stdout) == b"ready\n"
    srv.proc.send_signal(signal.SIGTERM)
    assert launcher.wait(TIMEOUT) == 3
    assert launcher.stdout.read() == b"got TERM\n"
    assert srv.proc.wait(TIMEOUT) == 0
    assert not os.path.exists(srv.path)
    srv.stop()


def test_requests_while_stopping_are_refused(sockdir):
    srv = ServerProc(sockdir)
    stubborn = srv.launch("/bin/sh", "-c", "trap '' TERM; echo ready; exec cat")
    assert read_line(stubborn.stdout) == b"ready\n"
    early = socket.socket(socket.AF_UNIX)
    early.connect(srv.path)          # connected before the stop; its request comes after
    stopper = subprocess.Popen(SP + ["stop", "--socket", srv.path, "--grace", "30"],
                               stdout=subprocess.PIPE, env=clean_env())
    wait_until(lambda: "stopping:" in srv.log(), what="the stop")
    from sameprocess._server.framing import FrameReader, send_frame
    from sameprocess._server.protocol import REPLIES, Error, Spawn
    with open(os.devnull) as null:
        send_frame(early, Spawn([b"true"], [], b"/"), [null.fileno()] * 3)
    reader = FrameReader(REPLIES)
    while (got := reader.receive(early)) is None:
        pass
    assert isinstance(got[0], Error) and got[0].errno == errno.ESHUTDOWN
    early.close()
    stubborn.stdin.close()            # cat exits: the server can finish
    assert stubborn.wait(TIMEOUT) == 0
    assert stopper.wait(TIMEOUT) == 0
    stopper.stdout.close()
    srv.stop()


# -- many launchers at once ---------------------------------------------------------------
def test_many_concurrent_launchers(server, build):
    exit_code, hello = build("exit_code.c"), build("hello.c")
    results: dict[int, subprocess.CompletedProcess] = {}

    def one(i: int) -> None:
        args = (exit_code, str(i)) if i % 2 else (hello,)
        results[i] = server.run(*args, text=False)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, result in results.items():
        if i % 2:
            assert (result.returncode, result.stdout, result.stderr) == (i, b"", b"")
        else:
            assert (result.returncode, result.stdout) == (0, b"hello from sameprocess\n")
    assert len(results) == 32
    assert server.log().count("spawned pid") == 32
    assert server.ps() == []


def test_server_keeps_no_descriptors_after_launchers_finish(server, build):
    hello = build("hello.c")
    server.run(hello)
    before = server.baseline_fds()
    for _ in range(5):
        assert server.run(hello).returncode == 0
    launcher = server.launch(build("sleeper.c"))
    assert read_line(launcher.stdout) == b"ready\n"
    launcher.kill()
    launcher.wait()
    wait_until(lambda: server.ps() == [], what="the hung-up program to exit")
    server.settle_fds(before)


# -- losing a side -------------------------------------------------------------------------
def test_launcher_killed_hangs_up_its_program(server, build):
    launcher = server.launch(build("srv_siglog.c"), "hup-exits", stdout=subprocess.PIPE)
    assert read_line(launcher.stdout) == b"ready\n"
    pid = server.program_of(launcher.pid)["pid"]
    launcher.kill()                                   # SIGKILL: no chance to say anything
    assert launcher.wait(TIMEOUT) == -signal.SIGKILL
    assert read_line(launcher.stdout) == f"got {int(signal.SIGHUP)}\n".encode()
    assert wait_pid_gone(pid)
    wait_until(lambda: f"pid {pid} exited: exit 41" in server.log(), what="the exit in the log")
    assert f"of pid {pid} went away: SIGHUP" in server.log()


def test_launcher_killed_while_its_program_is_stopped(server, build):
    launcher = server.launch(build("sleeper.c"))
    assert read_line(launcher.stdout) == b"ready\n"
    pid = server.program_of(launcher.pid)["pid"]
    assert server.cli("kill", "-s", "STOP", str(pid)).returncode == 0
    wait_until(lambda: proc_state_is(pid, "T"), what="the program to stop")
    launcher.kill()
    launcher.wait()
    assert wait_pid_gone(pid), "SIGHUP then SIGCONT, as on a terminal hangup"


def proc_state_is(pid: int, state: str) -> bool:
    from _server_helpers import proc_state
    return proc_state(pid) == state


def test_server_killed_programs_run_on_and_launchers_exit_255(sockdir, build):
    srv = ServerProc(sockdir)
    sleeper = build("sleeper.c")
    launchers = [srv.launch(sleeper) for _ in range(3)]
    for launcher in launchers:
        assert read_line(launcher.stdout) == b"ready\n"
    pids = [srv.program_of(launcher.pid)["pid"] for launcher in launchers]
    srv.proc.kill()
    srv.proc.wait()
    for pid, launcher in zip(pids, launchers):
        assert launcher.poll() is None, "the launcher waits for its program"
        assert proc_state_is(pid, "S"), "the program keeps running"
        launcher.stdin.write(b"more input\n")
        launcher.stdin.close()                          # sleeper reads to EOF, exits 0
        assert launcher.wait(TIMEOUT) == 255
        assert launcher.stdout.read() == b"eof\n"
        err = launcher.stderr.read().decode()
        assert err == (f"sameprocess run: lost the server; {sleeper} (pid {pid}) has exited "
                       "but its exit status is unknown\n")
    srv.stop()


# -- refusing other users ---------------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_other_uids_are_refused_and_logged():
    import shutil
    import tempfile
    from pathlib import Path
    top = Path(tempfile.mkdtemp(prefix="sp-uid-", dir="/tmp"))   # reachable by uid 65534
    os.chmod(top, 0o711)
    server = ServerProc(private_dir(top))
    try:
        _refusal(server)
    finally:
        server.stop()
        shutil.rmtree(top)


def _refusal(server):
    os.chmod(server.dir, 0o711)
    os.chmod(server.path, 0o666)        # let uid 65534 reach the socket: SO_PEERCRED must stop it
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                        # child: become nobody, try to use the server
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX)
            s.connect(server.path)
            os.write(w, s.recv(4096))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        reply = f.read()
    os.waitpid(pid, 0)
    from sameprocess._server.protocol import Error, decode
    message = decode(reply)
    assert isinstance(message, Error) and message.errno == errno.EACCES
    assert "accepts connections from uid 0 only" in message.message
    assert f"refused a connection from pid {pid}, uid 65534" in server.log()
    assert server.run("true").returncode == 0


def test_quiet_without_verbose(sockdir):
    r, w = os.pipe()
    proc = subprocess.Popen(SP + ["serve", "--socket", str(sockdir / "q.sock"), "--ready-fd", str(w)],
                            pass_fds=(w,), stderr=subprocess.PIPE, text=True, env=clean_env())
    os.close(w)
    try:
        assert os.read(r, 16) == b"ready\n"
        run = subprocess.run(SP + ["run", "--socket", str(sockdir / "q.sock"), "true"], env=clean_env(),
                             timeout=TIMEOUT)
        assert run.returncode == 0
    finally:
        os.close(r)
        proc.send_signal(signal.SIGINT)
        proc.wait(TIMEOUT)
    log = proc.stderr.read()
    proc.stderr.close()
    assert "serving on" in log and "got SIGINT: stopping" in log
    assert "spawned" not in log and "exited" not in log
