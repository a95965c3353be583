"""Every test program, built by the `build` fixture and run natively.

This checks the programs and the fixture without the space: what each program
prints here is the reference the space tests compare against.  No sleeps:
programs that wait are driven through their stdin and their output lines.
"""
from __future__ import annotations

import os
import platform
import select
import signal
import struct
import subprocess
from pathlib import Path

import pytest

import _build
from _kv import kv

TIMEOUT = 60


def run(path: str, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


facts = kv  # the "key=value" lines of a program's output (other lines ignored)


def elf_summary(path: str) -> tuple[int, bool, int]:
    """(e_type, has PT_INTERP, lowest PT_LOAD vaddr) of a 64-bit LE ELF."""
    data = Path(path).read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, path
    e_type = struct.unpack_from("<H", data, 16)[0]
    e_phoff = struct.unpack_from("<Q", data, 32)[0]
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    has_interp, lowest = False, None
    for i in range(e_phnum):
        p_type, _flags, _offset, p_vaddr = struct.unpack_from("<IIQQ", data, e_phoff + (i * e_phentsize))
        if p_type == 3:  # PT_INTERP
            has_interp = True
        elif (p_type == 1) and ((lowest is None) or (p_vaddr < lowest)):  # PT_LOAD
            lowest = p_vaddr
    return e_type, has_interp, lowest


ET_EXEC, ET_DYN = 2, 3


# -- the fixture itself --------------------------------------------------------


def test_every_program_builds(build):
    built = build.all()
    expected = {_build.default_name(Path(s)) for s in _build.program_sources()} | set(_build.VARIANTS)
    assert set(built) == expected
    for name, path in built.items():
        assert os.path.isabs(path) and os.access(path, os.X_OK), name
        assert Path(path).name == name


def test_cache_returns_the_same_build(build):
    first = build("hello.c")
    mtime = os.stat(first).st_mtime_ns
    assert build("hello.c") == first
    assert build.program("hello") == first
    assert os.stat(first).st_mtime_ns == mtime
    assert build("hello.c", flags=["-O0"]) != first


def test_compile_error_fails_with_compiler_stderr(build, tmp_path):
    broken = tmp_path / "broken.c"
    broken.write_text("int main(void) { return undeclared_name; }\n")
    with pytest.raises(pytest.fail.Exception, match="undeclared_name"):
        build(broken)


def test_missing_tool_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(_build.ToolMissing, match="golang-go"):
        _build.Builder(tmp_path / "cache")("hello.go")


def test_default_builds_are_pie_and_variants_are_not(build):
    for name in ("hello", "cxx", "hello_rs", "hello_go"):
        e_type, has_interp, _ = elf_summary(build.program(name))
        assert (e_type, has_interp) == (ET_DYN, True), name
    assert elf_summary(build.program("hello_static"))[:2] == (ET_DYN, False)
    assert elf_summary(build.program("nonpie")) == (ET_EXEC, True, _build.NONPIE_ADDRESS)


# -- simple programs -----------------------------------------------------------


def test_hello(build):
    proc = run(build("hello.c"))
    assert (proc.returncode, proc.stdout) == (0, "hello from sameprocess\n")


@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_exit_code(build, code):
    assert run(build("exit_code.c"), str(code)).returncode == code


def test_abort(build):
    proc = run(build("abort.c"))
    assert proc.returncode == -signal.SIGABRT
    assert proc.stdout == "about to abort\n"


def test_hello_static(build):
    path = build("hello_static.c")
    proc = run(path, "one")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == "hello from static-pie"
    f = facts(proc.stdout)
    assert (f["argc"], f["argv[0]"], f["argv[1]"], f["at_base"]) == ("2", path, "one", "0x0")


def test_alloc_free(build):
    proc = run(build("alloc_free.c"))
    assert (proc.returncode, proc.stdout) == (0, "freed 5 buffers\n")


def test_pthreads(build):
    proc = run(build("pthreads.c"))
    assert proc.returncode == 0
    assert facts(proc.stdout) == {"threads": "4", "total": "1000000"}


def test_cxx(build):
    proc = run(build("cxx.cpp"))
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [
        "cxx iostream ok",
        "map_size=3",
        "map_sum=60",
        "caught=boom 42",
        "static_ctor=1",
        "static_dtor=1",
    ]


@pytest.mark.parametrize("program", ["hello_rs", "hello_go"])
def test_rust_and_go(build, program):
    path = build.program(program)
    env = dict(os.environ, SAMEPROCESS_TEST_VAR="from the test")
    proc = run(path, "a", "b c", env=env)
    assert proc.returncode == 0, proc.stderr
    language = program.split("_")[1]
    assert proc.stdout.splitlines()[0] == {"rs": "hello from rust", "go": "hello from go"}[language]
    f = facts(proc.stdout)
    assert (f["argc"], f["argv[0]"], f["argv[1]"], f["argv[2]"]) == ("3", path, "a", "b c")
    assert f["SAMEPROCESS_TEST_VAR"] == "from the test"
    if language == "rs":
        assert f["thread_result"] == "55"
    else:
        assert f["goroutine_result"] == "5050"
    unset = run(path, env={k: v for k, v in os.environ.items() if k != "SAMEPROCESS_TEST_VAR"})
    assert facts(unset.stdout)["SAMEPROCESS_TEST_VAR"] == "<unset>"


def test_system_and_fork(build):
    proc = run(build("system.c"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "from-child",
        "system_exited=1",
        "system_status=7",
        "fork_exec_exited=1",
        "fork_exec_status=0",
    ]


def test_origin_runpath(build, tmp_path):
    path = build("origin_main.c")
    assert (Path(path).parent / "lib" / "liborigin.so").is_file()
    proc = run(path, cwd=tmp_path)  # $ORIGIN must not depend on the cwd
    assert (proc.returncode, proc.stdout) == (0, "origin_value=4242\n"), proc.stderr


# -- benchmarks ----------------------------------------------------------------


def test_malloc_heavy(build):
    path = build("malloc_heavy.c")
    small = facts(run(path, "100000").stdout)
    assert small["checksum"] == "25748775"
    full = facts(run(path).stdout)
    assert full["checksum"] == "1290023144"
    assert float(full["seconds"]) > 0


def test_umap_bench(build):
    path = build("umap_bench.cpp")
    for args, entries in (((), 600_000), (("10000",), 10_000)):
        f = facts(run(path, *args).stdout)
        erased = (entries + 7) // 8
        assert f["checksum"] == str(3 * entries * (entries - 1) // 2)
        assert f["erased"] == str(erased)
        assert float(f["seconds"]) >= 0


# -- programs that report process state ------------------------------------------


def test_auxv(build):
    for name in ("auxv", "auxv_static"):
        path = build.program(name)
        proc = run(path, "x", "y z", env={"A": "1", "B": "two"})
        assert proc.returncode == 0, proc.stderr
        f = facts(proc.stdout)
        assert (f["argc"], f["argv[0]"], f["argv[1]"], f["argv[2]"]) == ("3", path, "x", "y z")
        assert (f["env[0]"], f["env[1]"]) == ("A=1", "B=two") and "env[2]" not in f
        assert f["AT_PAGESZ"] == hex(os.sysconf("SC_PAGE_SIZE"))
        assert f["AT_PHENT"] == hex(56)
        assert f["AT_EXECFN"] == path
        assert f["AT_PLATFORM"] == platform.machine()
        assert (f["AT_UID"], f["AT_EUID"]) == (hex(os.getuid()), hex(os.geteuid()))
        assert (f["AT_GID"], f["AT_EGID"]) == (hex(os.getgid()), hex(os.getegid()))
        assert f["AT_SECURE"] == "0x0"
        assert f["AT_CLKTCK"] == hex(os.sysconf("SC_CLK_TCK"))
        assert f["AT_SYSINFO_EHDR"] != "absent"
        assert (f["AT_BASE"] == "0x0") == (name == "auxv_static")
        for check in ("auxv_follows_env", "envp_follows_argv", "argv_null", "phdr_matches",
                      "entry_matches", "random_readable", "stack_aligned", "argv_aligned"):
            assert f[check] == "1", (name, check)
        types = [int(t) for t in f["auxv_types"].split(",")]
        assert {3, 4, 5, 6, 9, 25, 31}.issubset(types)  # PHDR PHENT PHNUM PAGESZ ENTRY RANDOM EXECFN
        raw = [f[f"raw[{i}]"] for i in range(len(types))]
        assert [int(r.split(":")[0]) for r in raw] == types


def test_procstate(build, tmp_path):
    path = build("procstate.c")
    proc = subprocess.Popen(
        [path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=tmp_path, umask=0o027, start_new_session=True,
    )
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    f = facts(out)
    assert (f["pid"], f["ppid"]) == (str(proc.pid), str(os.getpid()))
    assert (f["sid"], f["pgrp"]) == (str(proc.pid), str(proc.pid))
    assert f["comm"] == "procstate"
    assert f["cwd"] == str(tmp_path)
    assert f["umask"] == "0027"
    assert f["fds"] == "0,1,2"
    assert f["fd[0]"] == "/dev/null" and f["fd[1]"].startswith("pipe:")
    assert f["SigBlk"] == "0" * 16
    assert f["SigIgn"] == "0" * 16  # subprocess restores SIGPIPE/SIGXFSZ
    assert (f["sigpipe"], f["sigxfsz"]) == ("SIG_DFL", "SIG_DFL")
    assert f["altstack"] == "disabled"
    assert f["fegetround"] == "FE_TONEAREST"
    if platform.machine() == "x86_64":
        assert (f["x87_cw"], f["mxcsr"]) == ("0x037f", "0x1f80")
    # Without restore_signals the host's ignored signals show through.
    inherited = facts(run(path, restore_signals=False).stdout)
    assert (inherited["sigpipe"], inherited["sigxfsz"]) == ("SIG_IGN", "SIG_IGN")


def test_sigpipe_dies_by_signal(build):
    proc = subprocess.Popen([build("sigpipe.c")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    assert proc.wait(timeout=TIMEOUT) == -signal.SIGPIPE
    assert proc.stderr.read() == b""
    proc.stderr.close()


def test_sigpipe_reports_epipe_when_ignored(build):
    proc = subprocess.Popen([build("sigpipe.c")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            restore_signals=False)  # keeps Python's SIG_IGN for SIGPIPE
    proc.stdout.close()
    assert proc.wait(timeout=TIMEOUT) == 2
    assert proc.stderr.read() == b"EPIPE\n"
    proc.stderr.close()


def test_sbrk(build):
    proc = run(build("sbrk.c"))
    assert proc.returncode == 0, proc.stdout
    f = facts(proc.stdout)
    assert {k: v for k, v in f.items() if k not in {"start", "pieces"}} == {
        "sbrk_grow": "ok",
        "after_grow_delta": "4096",
        "brk_grow": "ok",
        "after_brk_delta": "12288",
        "brk_restore": "ok",
        "after_restore_delta": "0",
        "sbrk_below": "ok",
        "after_below_delta": "0",
        "kernel_delta": "0",
    }
    assert proc.stdout.endswith("heap ok\n")


# -- programs driven through stdin ------------------------------------------------


def test_sleeper_waits_for_eof(build):
    proc = subprocess.Popen([build("sleeper.c")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    assert proc.poll() is None
    proc.stdin.write("some input\n")
    proc.stdin.close()
    assert proc.wait(timeout=TIMEOUT) == 0
    assert proc.stdout.read() == "eof\n"
    proc.stdout.close()


def test_catch_term(build):
    proc = subprocess.Popen([build("catch_term.c")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=TIMEOUT) == 3
    assert proc.stdout.read() == "got TERM\n"
    proc.stdout.close()


def test_nonpie_holds_until_a_line(build):
    proc = subprocess.Popen([build.program("nonpie")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    main = int(facts(proc.stdout.readline())["main"], 16)
    assert _build.NONPIE_ADDRESS <= main < (_build.NONPIE_ADDRESS + 0x100000)
    assert proc.poll() is None
    proc.stdin.write("go\n")
    proc.stdin.close()
    assert proc.wait(timeout=TIMEOUT) == 0
    assert proc.stdout.read() == "bye\n"
    proc.stdout.close()


def test_zero_copy_producer(build):
    proc = subprocess.Popen([build("zc_producer.cpp")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    header = {}
    for line in iter(proc.stdout.readline, "waiting\n"):
        assert line, "producer exited before printing 'waiting'"
        header.update(facts(line))
    assert header["string_len"] == "1000"
    assert len({header["string_addr"], header["string_data"], header["map_addr"]}) == 3
    assert proc.poll() is None
    proc.stdin.write("\n")
    proc.stdin.close()
    assert proc.wait(timeout=TIMEOUT) == 0
    f = facts(proc.stdout.read())
    proc.stdout.close()
    assert f == ZC_DESCRIPTION


ZC_DESCRIPTION = {
    "string_len": "1000",
    "string_sum": "77416",
    "string_head": "ABCDEFGHIJKLMNOP",
    "map_size": "4",
    "map_entries": "a key longer than the small string buffer:4;alpha:1;beta:2;gamma:3",
    "map_lookup_beta": "2",
}


def test_zero_copy_consumer_selftest(build):
    path = build("zc_consumer.cpp")
    proc = run(path, "--selftest")
    assert proc.returncode == 0, proc.stderr
    assert facts(proc.stdout) == {**ZC_DESCRIPTION, "after_head": "ABCDEFGHIJKLMNOP"}
    written = facts(run(path, "--selftest", "--write").stdout)
    assert (written["wrote"], written["after_head"]) == ("1", "WRITTEN-BY-CONSU")
    assert run(path, "not-hex", "0x1").returncode == 2


# -- programs for memory reclamation ------------------------------------------------


def test_leak_touch(build):
    path = build("leak_touch.c")
    f = facts(run(path).stdout)
    assert (f["bytes"], int(f["addr"], 16) > 0) == (str(10 << 20), True)
    assert facts(run(path, "3").stdout)["bytes"] == str(3 << 20)
    waiting = subprocess.Popen([path, "1", "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert waiting.stdout.readline().startswith("addr=")
    assert waiting.stdout.readline() == f"bytes={1 << 20}\n"
    waiting.stdin.write("a line is not EOF\n")
    waiting.stdin.flush()
    out, _ = waiting.communicate(timeout=TIMEOUT)
    assert (waiting.returncode, out) == (0, "")


def test_threads_malloc(build):
    proc = run(build("threads_malloc.c"))
    assert proc.returncode == 0, proc.stderr
    assert facts(proc.stdout) == {"threads": "4", "bytes_per_thread": "204800"}


def test_umap_free(build):
    proc = run(build("umap_free.cpp"), "20000")
    assert proc.returncode == 0
    assert facts(proc.stdout) == {"entries": "20000", "after_clear": "0"}


def test_mmap_churn_checks_its_own_patterns(build, tmp_path):
    path = build("mmap_churn.c")
    seen = set()
    for seed in range(1, 6):
        proc = run(path, str(seed), "2500", env={**os.environ, "TMPDIR": str(tmp_path)})
        assert proc.returncode == 0, f"seed {seed}: {proc.stderr}"
        f = facts(proc.stdout)
        assert proc.stdout.endswith("ok\n") and f["ops"] == "2500"
        assert f["progress"] == "2000" and int(f["live"]) > 0 and int(f["checked_bytes"]) > 0
        seen.add(f["checked_bytes"])
    assert len(seen) > 1, "the seed decides the operations"
    assert os.listdir(tmp_path) == [], "its temporary file is unlinked"
    assert run(path).returncode == 2


def test_sentinel_answers_each_check(build):
    proc = subprocess.Popen([build("sentinel.c"), "9"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    regions = []
    while (line := proc.stdout.readline()) != "ready\n":
        assert line.startswith("sentinel=0x"), line
        addr, length = line.split("=")[1].split()
        regions.append((int(addr, 16), int(length)))
    assert len(regions) == 9 and len({addr for addr, _ in regions}) == 9
    assert all((length % 4096) == 0 for _, length in regions)
    out, _ = proc.communicate("check\nwhat\ncheck\n", timeout=TIMEOUT)
    assert (proc.returncode, out) == (0, "ok\nunknown command\nok\n")
    assert run(build("sentinel.c"), "0").returncode == 2


def test_late_alloc_allocates_after_a_line(build):
    path = build("late_alloc.c")
    proc = run(path, "16", input="go\n", stdin=None)
    assert (proc.returncode, proc.stdout) == (0, "waiting\nallocated=16\n")
    proc = run(path, "16")  # EOF instead of a line
    assert (proc.returncode, proc.stdout) == (1, "waiting\nfailed: no line on stdin\n")


def test_daemonize_starts_a_daemon_worker(build, tmp_path):
    commands, replies = tmp_path / "commands", tmp_path / "replies"
    os.mkfifo(commands)
    os.mkfifo(replies)
    from_daemon = os.open(replies, os.O_RDONLY | os.O_NONBLOCK)
    daemon = None
    try:
        started = run(build("daemonize.c"), build("daemon_worker.c"), str(commands), str(replies))
        assert started.returncode == 0
        daemon = int(facts(started.stdout)["daemon"])
        with open(f"/proc/{daemon}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        assert int(fields[3]) == daemon, "it leads a session of its own"
        lines = []

        def reply() -> str:
            buffer = b""
            while not buffer.endswith(b"\n"):
                assert select.select([from_daemon], [], [], TIMEOUT)[0], f"no reply after {lines}"
                buffer += os.read(from_daemon, 1)
            lines.append(buffer.decode().rstrip("\n"))
            return lines[-1]

        assert reply() == f"ready pid={daemon}"
        to_daemon = os.open(commands, os.O_WRONLY | os.O_NONBLOCK)
        try:
            for command, answer in ((b"alloc 16\n", "allocated=16"), (b"fork 8\n", "child_exit=0"),
                                    (b"alloc 4\n", "failed: between 8 and 2048 MiB"),
                                    (b"exit\n", "bye")):
                os.write(to_daemon, command)
                assert reply() == answer
        finally:
            os.close(to_daemon)
        pidfd = os.pidfd_open(daemon)
        assert select.select([pidfd], [], [], TIMEOUT)[0], "it exits after bye"
        os.close(pidfd)
        daemon = None
    finally:
        if daemon is not None:
            os.kill(daemon, signal.SIGKILL)
        os.close(from_daemon)


def test_mmap_pairs(build):
    f = facts(run(build("mmap_pairs.c"), "2000").stdout)
    assert f["pairs"] == "2000" and float(f["ns_per_pair"]) > 0
