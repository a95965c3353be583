"""`sameprocess run` without --socket starts the default server when none is
live: exactly one, even when many launchers race, logging beside its socket."""
from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import threading

from _server_helpers import SP, TIMEOUT, clean_env, wait_pid_gone


def run_default(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(SP + ["run", *args], capture_output=True, text=True, env=env, timeout=TIMEOUT)


def server_pid(directory) -> int:
    with open(directory / "default.lock") as f:
        return int(f.read().split()[0])


def stop_default(env, directory) -> None:
    pid = server_pid(directory)
    result = subprocess.run(SP + ["stop"], capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert wait_pid_gone(pid)


def kill_leftover_server(directory) -> None:
    """SIGKILL the server that still holds default.lock, if any (a pid
    alone could have been reused once its server stopped)."""
    try:
        fd = os.open(directory / "default.lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return                  # nobody holds it: no server left
    except BlockingIOError:
        pid = server_pid(directory)
    finally:
        os.close(fd)
    os.kill(pid, signal.SIGKILL)
    wait_pid_gone(pid)


def test_racing_launchers_start_exactly_one_server(tmp_path, build):
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = clean_env(XDG_RUNTIME_DIR=str(runtime))
    hello = build("hello.c")
    results = []
    threads = [threading.Thread(target=lambda: results.append(run_default(env, hello))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    directory = runtime / "sameprocess"
    try:
        assert [(r.returncode, r.stdout, r.stderr) for r in results] == \
            [(0, "hello from sameprocess\n", "")] * 8
        assert (directory.stat().st_mode & 0o777) == 0o700
        sock = directory / "default.sock"
        assert stat.S_ISSOCK(sock.stat().st_mode) and (sock.stat().st_mode & 0o777) == 0o600
        log = (directory / "default.log").read_text()
        assert log.count("serving on") == 1, log
        assert "already running" not in log
        # The server outlives the launcher that started it, detached from it.
        pid = server_pid(directory)
        assert os.getsid(pid) == pid
        assert run_default(env, "/bin/echo", "again").stdout == "again\n"
        assert (directory / "default.log").read_text().count("serving on") == 1
    finally:
        stop_default(env, directory)
    assert not (directory / "default.sock").exists()


def test_a_dead_default_server_is_replaced(tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = clean_env(XDG_RUNTIME_DIR=str(runtime))
    directory = runtime / "sameprocess"
    try:
        assert run_default(env, "true").returncode == 0
        first = server_pid(directory)
        os.kill(first, signal.SIGKILL)
        assert wait_pid_gone(first)
        assert (directory / "default.sock").exists()        # stale
        assert run_default(env, "true").returncode == 0
        assert server_pid(directory) != first
        assert "removing the stale socket" in (directory / "default.log").read_text()
        stop_default(env, directory)
    finally:   # after a failed assertion too: no server outlives the test
        kill_leftover_server(directory)


def test_a_server_that_cannot_start_is_reported(tmp_path):
    runtime = tmp_path / "runtime"
    (runtime / "sameprocess").mkdir(parents=True, mode=0o700)
    os.chmod(runtime, 0o700)
    # Something that is not a socket sits where the socket goes: the server refuses it.
    (runtime / "sameprocess" / "default.sock").write_text("not a socket")
    env = clean_env(XDG_RUNTIME_DIR=str(runtime))
    result = run_default(env, "true")
    sock = runtime / "sameprocess" / "default.sock"
    assert result.returncode == 125
    assert result.stderr == (f"sameprocess run: could not start a server at {sock}: sameprocess serve: "
                             f"{sock} exists and is not a socket; refusing to touch it "
                             f"(log: {runtime}/sameprocess/default.log)\n")


def test_run_right_after_serve_finds_one_server(tmp_path, build):
    """`serve &` then `run` at once.  Whichever wins, the run succeeds and one
    server serves: a serve that is starting holds NAME.start until it listens,
    so the run waits for it instead of racing a second server into "already
    running"; a run that got there first auto-started the server, and the
    late serve says so and leaves it alone."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = clean_env(XDG_RUNTIME_DIR=str(runtime))
    directory = runtime / "sameprocess"
    hello = build("hello.c")
    serve = subprocess.Popen(SP + ["serve"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=env)
    try:
        result = run_default(env, hello)
        assert (result.returncode, result.stdout, result.stderr) == (0, "hello from sameprocess\n", "")
        serving = server_pid(directory)
    finally:
        subprocess.run(SP + ["stop"], capture_output=True, env=env, timeout=TIMEOUT)
        _, err = serve.communicate(timeout=TIMEOUT)
    if serving == serve.pid:
        assert serve.returncode == 0 and err.count("serving on") == 1, err
        assert not (directory / "default.log").exists(), "no second server was auto-started"
    else:
        assert serve.returncode != 0 and "a server is already running" in err, err
        assert (directory / "default.log").read_text().count("serving on") == 1
