"""Space.Popen / Space.run behave like subprocess.Popen / subprocess.run."""
import os
import signal
import subprocess
import sys

import pytest

from sameprocess import Popen, Space, SpaceError, current_space


def test_run_returns_completed_process(space, build):
    hello = build("hello.c")
    result = space.run([hello], capture_output=True)
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 0
    assert result.stdout == b"hello from sameprocess\n"
    assert result.stderr == b""


def test_popen_is_a_subprocess_popen_with_its_own_pid(space, build):
    with space.Popen([build("hello.c")], stdout=subprocess.PIPE) as p:
        assert isinstance(p, subprocess.Popen) and isinstance(p, Popen)
        assert p.pid != os.getpid() and p.pid > 0
        out = p.stdout.read()
    assert p.returncode == 0 and out.startswith(b"hello")
    assert p.args == [build("hello.c")]


def test_exit_codes_and_death_by_signal(space, build):
    assert space.run([build("exit_code.c"), "42"]).returncode == 42
    assert space.run([build("abort.c")], stderr=subprocess.DEVNULL).returncode == -signal.SIGABRT


def test_check_raises_called_process_error(space):
    with pytest.raises(subprocess.CalledProcessError) as info:
        space.run(["bash", "-c", "echo out; exit 3"], check=True, capture_output=True)
    assert info.value.returncode == 3 and info.value.stdout == b"out\n"


def test_system_binaries(space):
    assert space.run(["ls", "-d", "/"], capture_output=True, text=True).stdout == "/\n"
    sorted_ = space.run(["sort"], input="pear\napple\nfig\n", capture_output=True, text=True)
    assert sorted_.stdout == "apple\nfig\npear\n"
    assert space.run(["bash", "-c", "echo $((6*7)); exit 3"], capture_output=True).returncode == 3


def test_shell_true_and_text_mode(space):
    r = space.run("echo $0 && echo two", shell=True, capture_output=True, text=True)
    assert r.stdout == "/bin/sh\ntwo\n"


def test_wait_timeout_poll_and_kill(space, build):
    p = space.Popen([build("sleeper.c")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    assert p.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.05)
    p.kill()
    assert p.wait() == -signal.SIGKILL
    assert p.poll() == -signal.SIGKILL
    p.send_signal(signal.SIGTERM)  # after exit: a no-op, like subprocess
    p.stdin.close()
    p.stdout.close()


def test_terminate_reaches_the_programs_handler(space, build):
    p = space.Popen([build("catch_term.c")], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    p.terminate()
    out, _ = p.communicate()
    assert "got TERM" in out and p.returncode == 3


def test_communicate_with_input_and_timeout(space, build):
    p = space.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, err = p.communicate(b"x" * 300_000, timeout=30)
    assert out == b"x" * 300_000 and err is None and p.returncode == 0
    r, w = os.pipe()  # held open: the sleeper blocks until it is killed
    try:
        with pytest.raises(subprocess.TimeoutExpired) as info:
            space.run([build("sleeper.c")], stdin=r, capture_output=True, timeout=0.2)
        assert info.value.stdout == b"ready\n"
    finally:
        os.close(r)
        os.close(w)
    assert space.programs() == []


def test_stdio_accepts_devnull_files_and_raw_fds(space, build, tmp_path):
    out_file = tmp_path / "out.txt"
    with open(out_file, "wb") as f:
        assert space.run([build("hello.c")], stdout=f).returncode == 0
    assert out_file.read_bytes() == b"hello from sameprocess\n"
    r, w = os.pipe()
    try:
        assert space.run(["bash", "-c", "echo raw >&2"], stderr=w, stdout=subprocess.DEVNULL).returncode == 0
        assert os.read(r, 100) == b"raw\n"
    finally:
        os.close(r)
        os.close(w)
    r = space.run(["bash", "-c", "echo both; echo err >&2"], stdout=subprocess.PIPE,
                  stderr=subprocess.STDOUT)
    assert r.stdout == b"both\nerr\n"


def test_path_lookup_uses_the_given_environment(space, build, tmp_path):
    hello = build("hello.c")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(hello, bindir / "greet")
    r = space.run(["greet"], env={"PATH": str(bindir)}, capture_output=True)
    assert r.stdout.startswith(b"hello")
    with pytest.raises(FileNotFoundError):
        space.run(["greet"], env={"PATH": "/nonexistent"})


def test_relative_program_resolves_against_cwd(space, build, tmp_path):
    hello = build("hello.c")
    os.symlink(hello, tmp_path / "h")
    assert space.run(["./h"], cwd=tmp_path, capture_output=True).stdout.startswith(b"hello")


def test_executable_argument_sets_the_file_not_argv0(space, build):
    r = space.run(["custom-name", "a b"], executable=build("auxv.c"), capture_output=True, text=True)
    assert "argv[0]=custom-name\nargv[1]=a b\n" in r.stdout


def test_programs_lists_live_programs(space, build):
    p = space.Popen([build("sleeper.c")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    assert p in space.programs()
    p.stdin.close()
    p.wait()
    p.stdout.close()
    assert p not in space.programs()


def test_exit_callback_runs_after_reaping(space, build):
    seen = []
    p = space.Popen([build("exit_code.c"), "5"])
    p.add_exit_callback(lambda prog: seen.append(prog.returncode))
    p.wait()
    p.add_exit_callback(lambda prog: seen.append(("late", prog.returncode)))
    assert seen == [5, ("late", 5)]


def test_unsupported_arguments_are_refused(space, build):
    for name, value in [("preexec_fn", lambda: None), ("user", 0), ("group", 0),
                        ("extra_groups", [0])]:
        with pytest.raises(ValueError, match=f"{name} is not supported"):
            space.Popen([build("hello.c")], **{name: value})
    with pytest.raises(ValueError, match="null byte"):
        space.Popen([build("hello.c"), "a\0b"])


def test_one_space_per_process():
    with Space() as first:
        assert current_space() is first
        with pytest.raises(SpaceError, match="already hosts"):
            Space().open()
    assert current_space() is None
    with Space() as again:  # a closed space can be followed by a new one
        assert again.run(["true"]).returncode == 0


def test_close_kills_and_reaps_running_programs(build):
    with Space() as space:
        p = space.Popen([build("sleeper.c")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert p.stdout.readline() == b"ready\n"
    assert p.returncode == -signal.SIGKILL
    assert not os.path.exists(f"/proc/{p.pid}")
    p.stdin.close()
    p.stdout.close()
    with pytest.raises(SpaceError, match="not open"):
        space.Popen(["true"])


def test_python_host_subprocess_still_works_beside_the_space(space):
    # The reaper never calls wait(-1): subprocess's own children keep their status.
    r = subprocess.run([sys.executable, "-c", "raise SystemExit(9)"])
    assert r.returncode == 9
