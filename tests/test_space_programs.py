"""Every kind of unmodified executable the issue names runs in the space."""
import os
import subprocess
import sys

import pytest

from sameprocess import ExecError

from _kv import kv


def run_kv(space, argv, **kwargs):
    r = space.run(argv, capture_output=True, text=True, timeout=120, **kwargs)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return kv(r.stdout), r.stdout


def test_c_with_pthreads(space, build):
    state, _ = run_kv(space, [build("pthreads.c")])
    native = kv(subprocess.run([build("pthreads.c")], capture_output=True, text=True).stdout)
    assert state == native == {"threads": "4", "total": "1000000"}


def test_cxx_iostream_unordered_map_exceptions(space, build):
    _, out = run_kv(space, [build("cxx.cpp")])
    native = subprocess.run([build("cxx.cpp")], capture_output=True, text=True).stdout
    assert out == native
    assert "cxx iostream ok" in out and "caught=" in out and "static_dtor=1" in out


def test_rust(space, build):
    state, out = run_kv(space, [build("hello.rs"), "x y"], env={"SAMEPROCESS_TEST_VAR": "rs"})
    assert "hello from rust" in out
    assert state["argv[1]"] == "x y" and state["SAMEPROCESS_TEST_VAR"] == "rs"


def test_go_pie(space, build):
    state, out = run_kv(space, [build("hello.go"), "arg"], env={"SAMEPROCESS_TEST_VAR": "go"})
    assert "hello from go" in out
    assert state["goroutine_result"] == "5050" and state["SAMEPROCESS_TEST_VAR"] == "go"


def test_static_pie_is_entered_directly(space, build):
    state, out = run_kv(space, [build("hello_static.c"), "s"])
    assert "hello from static-pie" in out
    assert state["argv[1]"] == "s" and int(state["at_base"], 16) == 0


def test_pie_cpython_running_a_script(space, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import json, ssl, sqlite3, threading, subprocess, sys\n"
        "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
        "print(json.dumps({'argv': sys.argv[1:], 'sub': subprocess.run(['echo', 'nested'],"
        " capture_output=True, text=True).stdout}))\n")
    r = space.run([sys.executable, str(script), "a"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == '{"argv": ["a"], "sub": "nested\\n"}\n'


def test_fork_and_system_from_a_program(space, build):
    state, out = run_kv(space, [build("system.c")])
    assert "from-child" in out
    assert state["system_exited"] == "1" and state["system_status"] == "7"
    assert state["fork_exec_exited"] == "1" and state["fork_exec_status"] == "0"


def test_origin_runpath_finds_its_library(space, build):
    state, _ = run_kv(space, [build("origin_main.c")])
    assert state["origin_value"] == "4242"


def test_origin_comes_from_the_resolved_executable(space, build, tmp_path):
    """Reached through a chain of symbolic links in other directories (as
    /usr/bin/java -> /etc/alternatives/java -> the JDK's bin/java), the
    program still finds $ORIGIN/lib: natively ld.so gets the resolved file
    from the kernel.  argv[0] stays the name that was run; AT_EXECFN is the
    resolved file (ld.so points it at the program path it was given)."""
    (tmp_path / "alternatives").mkdir()
    (tmp_path / "bin").mkdir()
    os.symlink(build("origin_main.c"), tmp_path / "alternatives" / "origin")
    link = tmp_path / "bin" / "origin"
    os.symlink(tmp_path / "alternatives" / "origin", link)
    native = subprocess.run([str(link)], capture_output=True, text=True)
    assert (native.returncode, native.stdout) == (0, "origin_value=4242\n"), native.stderr
    state, _ = run_kv(space, [str(link)])
    assert state["origin_value"] == "4242"
    os.symlink(build("auxv.c"), tmp_path / "bin" / "auxv")
    aux, _ = run_kv(space, [str(tmp_path / "bin" / "auxv")])
    assert (aux["argv[0]"], aux["AT_EXECFN"]) == (str(tmp_path / "bin" / "auxv"), build("auxv.c"))


def test_shebang_script(space, tmp_path):
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh -e\necho \"script $0 $1\"\n")
    script.chmod(0o755)
    r = space.run([str(script), "arg"], capture_output=True, text=True)
    assert r.stdout == f"script {script} arg\n"


def test_non_pie_runs_when_its_range_is_free_and_fails_cleanly_when_taken(space, build):
    nonpie = build("nonpie.c")
    first = space.Popen([nonpie], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert first.stdout.readline() == b"main=0x%x\n" % int(
        kv(subprocess.run([nonpie], input=b"\n", capture_output=True).stdout)["main"], 16)
    with pytest.raises(ExecError) as info:
        space.Popen([nonpie])
    assert "not free in the space" in str(info.value) and nonpie in str(info.value)
    first.communicate(b"\n")
    assert first.returncode == 0
    # Its range was given back at exit: it runs again at once.
    again = space.run([nonpie], input=b"\n", capture_output=True)
    assert again.returncode == 0 and again.stdout.endswith(b"bye\n")


def test_musl_program_is_loaded_kernel_style(space, tmp_path):
    """A non-glibc interpreter: executable and ld-musl are mapped by the host."""
    exe = tmp_path / "hello_musl"
    src = os.path.join(os.path.dirname(__file__), "programs", "hello_static.c")
    subprocess.run(["musl-gcc", "-O2", "-o", str(exe), src], check=True)
    assert b"ld-musl" in open(exe, "rb").read(4096)
    r = space.run([str(exe), "m"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    state = kv(r.stdout)
    assert state["argv[1]"] == "m" and int(state["at_base"], 16) != 0


def test_kernel_style_loading_of_a_glibc_program(space, build, monkeypatch):
    """The path used for other interpreters, run with glibc's own ld.so."""
    from sameprocess import _spawn
    monkeypatch.setattr(_spawn, "_is_glibc_ldso", lambda interp: False)
    r = space.run([build("auxv.c"), "k"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    state = kv(r.stdout)
    for check in ("phdr_matches", "entry_matches", "stack_aligned", "random_readable"):
        assert state[check] == "1", check
    assert state["argv[1]"] == "k" and int(state["AT_BASE"], 16) != 0
    state, _ = run_kv(space, [build("cxx.cpp")])
    assert state["caught"] == "boom 42"
