"""A program's memory dies with it: exact reclamation through the ledger.

Everything a program maps is recorded under it while it runs
(`p.mappings()`) and unmapped before `wait()` returns; only the shared heap,
the registry and channels survive it.  These tests check that nothing stays
(the leftovers table), that nothing else goes (sentinels of the host and of
a running program, while many programs churn through their mappings at
once), the per-program opt-out (`reclaim=False`), the fallback where the
kernel cannot record mappings, and programs, and their daemons, that
allocate after the server that started them was killed.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path
import threading

import pytest

from _kv import kv
from _leftovers import MIB, ROW_NAMES, Row, footprint, leftover_row, measure
from _server_helpers import (  # noqa: F401  (fixtures)
    TIMEOUT, ServerProc, read_line, server, sockdir, subreaper, wait_pid_gone,
)
from sameprocess import _mm

PAGE = os.sysconf("SC_PAGE_SIZE")

# What may stay in the host after a row of runs: the host's own allocations.
RSS_SLACK = 4 * MIB
MAPS_SLACK = 20


class Lines:
    """Lines from a pipe or FIFO, read from its descriptor with a deadline
    per line (never through a buffered file object, whose buffer select()
    cannot see)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    @classmethod
    def fifo(cls, path) -> "Lines":
        return cls(os.open(path, os.O_RDONLY | os.O_NONBLOCK))

    def line(self, timeout: float = TIMEOUT) -> str:
        while b"\n" not in self.buffer:
            if not select.select([self.fd], [], [], timeout)[0]:
                raise AssertionError(f"no line within {timeout} s (have {self.buffer!r})")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError(f"end of file before a whole line (have {self.buffer!r})")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def facts(self, until: str) -> dict[str, str]:
        """key=value lines up to the line `until`, or the one whose key is `until`."""
        facts = {}
        while True:
            line = self.line()
            key, sep, value = line.partition("=")
            if sep:
                facts[key] = value
            if (line == until) or (sep and (key == until)):
                return facts


def covers(ranges, start: int, end: int) -> bool:
    """True when the (start, end) ranges cover [start, end) without a hole."""
    cursor = start
    for lo, hi in sorted(ranges):
        if hi <= cursor:
            continue
        if lo > cursor:
            return False
        cursor = hi
        if cursor >= end:
            return True
    return cursor >= end


def wait_exit(pid: int) -> int | None:
    """Wait for a process to exit: its exit code when it is our child (an
    orphan that came to the subreaper), else None once it is gone."""
    try:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except ChildProcessError:
        assert wait_pid_gone(pid), f"process {pid} did not exit"
        return None


def reap(pid: int) -> None:
    """SIGKILL a process that may still run, and wait for it."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_exit(pid)


# -- nothing stays ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ROW_NAMES)
def test_an_exited_program_leaves_nothing_in_the_host(space, build, name):
    assert space.reclaims_memory is True, "the ledger is not active: this is the fallback"
    row = leftover_row(build, name)
    if row.argv is None:
        pytest.skip(row.skip)
    growth = measure(space, row)
    assert growth.rss <= RSS_SLACK, f"{name}: {growth.rss / MIB:.1f} MiB stay after {row.runs} runs"
    assert growth.maps <= MAPS_SLACK, f"{name}: {growth.maps} mappings stay after {row.runs} runs"


def test_churning_programs_leave_nothing_in_the_host(space, build):
    churn = build("mmap_churn.c")
    assert space.run([churn, "1", "500"], stdout=subprocess.DEVNULL).returncode == 0  # warm-up
    before = footprint()
    for seed in range(2, 12):
        r = space.run([churn, str(seed), "1500"], capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr
        assert int(kv(r.stdout)["live"]) > 0, "it exits with ranges still mapped"
    growth = footprint() - before
    assert growth.rss <= RSS_SLACK and growth.maps <= MAPS_SLACK, growth


def test_a_program_that_execs_leaves_nothing_either(space):
    """bash builds a 5 MB string, then execs `true`: the process leaves the
    space with its memory still mapped there, and that memory goes when the
    process exits."""
    bash = shutil.which("bash")
    row = Row("bash, then exec", [bash, "-c", 'x=$(head -c 5000000 /dev/zero | tr "\\0" a); exec true'], 5)
    growth = measure(space, row)
    assert growth.rss <= RSS_SLACK and growth.maps <= MAPS_SLACK, growth


def test_mappings_of_a_running_program_cover_what_it_touched(space, build):
    p = space.Popen([build("leak_touch.c"), "10", "wait"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, text=True)
    facts = Lines(p.stdout.fileno()).facts("bytes")
    addr, size = int(facts["addr"], 16), int(facts["bytes"])
    assert size == 10 * MIB
    ranges = p.mappings()
    assert ranges and all(isinstance(lo, int) and isinstance(hi, int) and (lo < hi) for lo, hi in ranges)
    assert any(hi - lo >= 10 * MIB for lo, hi in ranges), ranges
    assert covers(ranges, addr, addr + size), "the 10 MiB it touched are recorded under it"
    host_maps = _mm.read_maps()
    for lo, hi in ranges:
        assert _mm.covering(lo, hi - lo, host_maps), f"{lo:#x}-{hi:#x} is recorded but not mapped"
    p.stdin.close()
    assert p.wait(TIMEOUT) == 0
    assert p.mappings() == []
    assert _mm.covering(addr, size, _mm.read_maps()) is None, "its block was unmapped when it was reaped"
    p.stdout.close()


# -- nothing else goes -----------------------------------------------------------------------------


class HostSentinels:
    """Regions the host maps: filled with a pattern of its own (some then
    made read-only) or left as PROT_NONE reservations.  check() lists those
    no longer mapped as they were, or no longer holding their pattern."""

    SIZES = (1, 2, 5, 16, 64, 257, 512)  # pages

    def __init__(self) -> None:
        self.regions: list[tuple[int, bytes, str]] = []  # address, pattern (or zeros), permissions

    def add(self, pages: int, perms: str = "rw-p") -> None:
        length = pages * PAGE
        prot = _mm.PROT_NONE if perms == "---p" else (_mm.PROT_READ | _mm.PROT_WRITE)
        addr = _mm.mmap(0, length, prot, _mm.MAP_PRIVATE | _mm.MAP_ANONYMOUS)
        # 251 bytes repeated: a page is not a multiple of 251, so neighbouring
        # pages differ, and the region's index makes regions differ.
        block = bytes(((len(self.regions) * 37) + (i * 11) + 1) & 0xFF for i in range(251))
        pattern = (block * ((length // 251) + 1))[:length]
        if perms != "---p":
            _mm.write(addr, pattern)
        if perms == "r--p":
            _mm.mprotect(addr, length, _mm.PROT_READ)
        self.regions.append((addr, pattern, perms))

    def add_some(self) -> None:
        for pages in self.SIZES:
            self.add(pages)
        self.add(3, "r--p")
        self.add(1024, "---p")

    def check(self, space) -> list[str]:
        maps, damaged = _mm.read_maps(), []
        for addr, pattern, perms in self.regions:
            where = f"{addr:#x} ({len(pattern)} bytes, {perms})"
            covering = _mm.covering(addr, len(pattern), maps)
            if not covering:
                damaged.append(f"{where} is no longer mapped")
            elif any(m.perms != perms for m in covering):
                damaged.append(f"{where} is now {[m.perms for m in covering]}")
            elif (perms != "---p") and (bytes(space.view(addr, len(pattern), writable=False)) != pattern):
                damaged.append(f"{where} lost its pattern")
        return damaged

    def unmap(self) -> None:
        for addr, pattern, _ in self.regions:
            _mm.munmap(addr, len(pattern))
        self.regions.clear()


def ask_sentinel(sentinel, answers: Lines) -> str:
    sentinel.stdin.write("check\n")
    sentinel.stdin.flush()
    return answers.line()


def test_the_sentinel_checks_see_damage(space, build):
    """The checks the next test relies on report a changed byte and an unmapped region."""
    host = HostSentinels()
    host.add(2)
    host.add(1)
    (first, _, _), (second, pattern, _) = host.regions
    space.view(first + PAGE + 7, 1)[0] ^= 0xFF
    _mm.munmap(second, len(pattern))
    assert host.check(space) == [f"{first:#x} ({2 * PAGE} bytes, rw-p) lost its pattern",
                                 f"{second:#x} ({PAGE} bytes, rw-p) is no longer mapped"]
    del host.regions[1]
    host.unmap()

    sentinel = space.Popen([build("sentinel.c"), "3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    answers = Lines(sentinel.stdout.fileno())
    regions = [(int(v.split()[0], 16), int(v.split()[1])) for k, v in
               (answers.line().split("=") for _ in range(3))]
    assert answers.line() == "ready"
    assert ask_sentinel(sentinel, answers) == "ok"
    (a, _), (b, b_len), _ = regions
    space.view(a + 100, 1)[0] ^= 0x5A   # the host writes into the program's memory
    _mm.munmap(b, b_len)                # and unmaps one of its regions
    try:
        assert ask_sentinel(sentinel, answers).startswith(f"bad {a:#x} byte 0x64 is ")
        assert answers.line() == f"bad {b:#x} unmapped"
    finally:
        # Give the range back to the program before anything else can be
        # mapped there: its owner unmaps it when it is reaped.
        _mm.mmap(b, b_len, _mm.PROT_READ | _mm.PROT_WRITE,
                 _mm.MAP_PRIVATE | _mm.MAP_ANONYMOUS | _mm.MAP_FIXED_NOREPLACE)
    sentinel.stdin.close()
    assert sentinel.wait(TIMEOUT) == 0
    sentinel.stdout.close()


CHURN_THREADS = 4
CHURN_RUNS = 5        # per thread
CHURN_OPS = "1500"
KILLED = 4


def test_concurrent_churn_unmaps_nothing_of_anyone_else(space, build):
    churn, sentinel_exe = build("mmap_churn.c"), build("sentinel.c")
    host = HostSentinels()
    host.add_some()  # before any program
    sentinel = space.Popen([sentinel_exe, "16"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    answers = Lines(sentinel.stdout.fileno())
    answers.facts("ready")
    host.add_some()  # between launches

    results: dict[int, tuple[int, str]] = {}
    lock = threading.Lock()

    def churn_runs(thread: int) -> None:
        for n in range(CHURN_RUNS):
            seed = 1000 * (thread + 1) + n
            try:
                r = space.run([churn, str(seed), CHURN_OPS], capture_output=True, text=True, timeout=TIMEOUT)
                outcome = (r.returncode, r.stderr + r.stdout[-200:])
            except Exception as exc:  # reported below, with the seed
                outcome = (None, repr(exc))
            with lock:
                results[seed] = outcome

    threads = [threading.Thread(target=churn_runs, args=(t,)) for t in range(CHURN_THREADS)]
    for t in threads:
        t.start()
    try:
        killed = []
        for k in range(KILLED):
            # Runs until killed; killed once it is inside its churn (a progress
            # line), with ranges mapped, others being mapped and unmapped.
            victim = space.Popen([churn, str(90_000 + k), "1000000000"], stdout=subprocess.PIPE, text=True)
            assert read_line(victim.stdout).startswith("progress="), "the churn runs"
            host.add(3 + k)  # the host maps while programs churn
            victim.kill()
            killed.append(victim)
            assert ask_sentinel(sentinel, answers) == "ok"
        for victim in killed:
            assert victim.wait(TIMEOUT) == -signal.SIGKILL
            victim.stdout.close()
    finally:
        for t in threads:
            t.join()

    failed = {seed: outcome for seed, outcome in results.items() if outcome[0] != 0}
    assert len(results) == CHURN_THREADS * CHURN_RUNS
    assert not failed, f"churn programs that failed (seed: exit, output): {failed}"
    assert host.check(space) == []
    assert ask_sentinel(sentinel, answers) == "ok"
    sentinel.stdin.close()
    assert sentinel.wait(TIMEOUT) == 0
    sentinel.stdout.close()
    host.unmap()


# -- the opt-out and the fallback ------------------------------------------------------------------


def test_reclaim_false_keeps_what_the_program_left(space, build):
    leak = build("leak_touch.c")
    space.run([leak, "10"], stdout=subprocess.DEVNULL, reclaim=False)  # warm-up
    before = footprint()
    for _ in range(3):
        assert space.run([leak, "10"], stdout=subprocess.DEVNULL, reclaim=False).returncode == 0
    growth = footprint() - before
    # Today's behaviour: each run leaves its 10 MiB block, written, in the host.
    assert growth.rss >= 25 * MIB, f"{growth.rss / MIB:.1f} MiB stayed after 3 runs of 10 MiB"


FALLBACK_REASON = "forced by the fallback test"

FALLBACK_SCRIPT = """
import json, logging, subprocess, sys

warnings = []

class Keep(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())

logging.getLogger("sameprocess").addHandler(Keep(logging.WARNING))

from sameprocess import _ledger
_ledger.unsupported_reason = lambda: REASON

from sameprocess import Space
with Space() as space:
    reclaims = space.reclaims_memory
    runs = [space.run([sys.argv[1]], capture_output=True, text=True) for _ in range(2)]
print(json.dumps({"reclaims_memory": reclaims, "warnings": warnings,
                  "runs": [[r.returncode, r.stdout, r.stderr] for r in runs]}))
"""


def test_without_kernel_support_the_space_falls_back_and_says_why(build):
    script = FALLBACK_SCRIPT.replace("REASON", repr(FALLBACK_REASON))
    proc = subprocess.run([sys.executable, "-c", script, build("hello.c")], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["reclaims_memory"] is False
    assert len(report["warnings"]) == 1, report["warnings"]
    assert FALLBACK_REASON in report["warnings"][0]
    assert report["runs"] == [[0, "hello from sameprocess\n", ""]] * 2


# -- after the server is gone ----------------------------------------------------------------------


def test_a_program_allocates_after_its_server_was_killed(sockdir, build, subreaper):
    srv = ServerProc(sockdir)
    pid = None
    launcher = srv.launch(build("late_alloc.c"), "64")
    try:
        assert read_line(launcher.stdout) == b"waiting\n"
        pid = srv.program_of(launcher.pid)["pid"]
        srv.proc.kill()
        srv.proc.wait()
        out, err = launcher.communicate(b"go\n", timeout=TIMEOUT)
        assert out == b"allocated=64\n", err
        assert b"lost the server" in err
        status = os.waitid(os.P_PID, pid, os.WEXITED)
        assert (status.si_code, status.si_status) == (os.CLD_EXITED, 0)
        pid = None
    finally:
        if pid is not None:
            reap(pid)
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
        srv.stop()


def test_a_daemon_allocates_after_its_program_and_the_server_are_gone(sockdir, tmp_path, build, subreaper):
    commands, replies_path = tmp_path / "commands", tmp_path / "replies"
    os.mkfifo(commands)
    os.mkfifo(replies_path)
    replies = Lines.fifo(replies_path)
    srv = ServerProc(sockdir)
    daemon = None
    try:
        started = srv.run(build("daemonize.c"), build("daemon_worker.c"), str(commands), str(replies_path))
        assert started.returncode == 0, started.stderr
        daemon = int(kv(started.stdout)["daemon"])
        assert replies.line() == f"ready pid={daemon}"
        srv.proc.kill()
        srv.proc.wait()

        to_daemon = os.open(commands, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(to_daemon, b"alloc 64\n")
            assert replies.line() == "allocated=64"
            os.write(to_daemon, b"fork 32\n")
            assert replies.line() == "child_exit=0"
            os.write(to_daemon, b"exit\n")
            assert replies.line() == "bye"
        finally:
            os.close(to_daemon)
        assert wait_exit(daemon) in (0, None)
        daemon = None
    finally:
        if daemon is not None:
            reap(daemon)
        os.close(replies.fd)
        srv.stop()


def test_ps_json_shows_a_programs_mapped_and_resident_bytes(server, build):
    launcher = server.launch(build("leak_touch.c"), "10", "wait")
    try:
        Lines(launcher.stdout.fileno()).facts("bytes")
        entry = server.program_of(launcher.pid)
        assert entry["mapped"] >= 10 * MIB, entry
        assert 10 * MIB <= entry["rss"] <= entry["mapped"], entry
    finally:
        launcher.stdin.close()
        assert launcher.wait(TIMEOUT) == 0
        launcher.stdout.close()
        launcher.stderr.close()


def test_a_space_may_make_no_reclaim_its_default(build):
    """Space(reclaim=False): its programs run without the ledger's filter
    (as a server started with --no-reclaim); one may still opt in."""
    from sameprocess import Space
    procstate = build("procstate.c")
    with Space(reclaim=False) as space:
        plain = space.run([procstate], capture_output=True, text=True)
        recorded = space.run([procstate], capture_output=True, text=True, reclaim=True)
    assert "Seccomp=0" in plain.stdout.splitlines()
    assert "Seccomp=2" in recorded.stdout.splitlines()


def _unprivileged_host(write_fd: int) -> None:
    """In a forked child: become uid/gid 65534 (no capabilities), open a
    space of its own and report what the ledger did, as JSON on write_fd."""
    import ctypes
    import json
    from sameprocess import Space, _space
    _space._host = _space._current = None  # the parent's keeper serves the parent: start our own
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    # A set-uid transition leaves the mm non-dumpable; an ordinary user's
    # processes are dumpable, which is what the keeper's pidfd_getfd needs.
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    report = {}
    with Space() as space:
        report["reclaims"] = space.reclaims_memory
        space.run(["/bin/ls", "/"], stdout=subprocess.DEVNULL)
        before = sum(1 for _ in open("/proc/self/maps"))
        for _ in range(20):
            assert space.run(["/bin/ls", "/"], stdout=subprocess.DEVNULL).returncode == 0
        report["maps_growth"] = sum(1 for _ in open("/proc/self/maps")) - before
        status = space.run(["/bin/cat", "/proc/self/status"], capture_output=True, text=True).stdout
        report["nnp"] = next(line.split()[1] for line in status.splitlines() if line.startswith("NoNewPrivs"))
        report.update(space._host.keeper.counters())
    os.write(write_fd, json.dumps(report).encode())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_an_unprivileged_host_reclaims_with_no_new_privs():
    """No CAP_SYS_ADMIN, no CAP_SYS_PTRACE: the filter needs no_new_privs,
    file mappings go through pidfd_getfd, and nothing is left unrecorded."""
    import json
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _unprivileged_host(write_fd)
        except BaseException:
            import traceback
            os.write(write_fd, json.dumps({"error": traceback.format_exc()}).encode())
            code = 1
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        report = json.loads(f.read() or b"{}")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report["reclaims"] and report["nnp"] == "1"
    assert report["maps_growth"] <= 2, report
    assert report["notifications"] > 0 and report["untracked"] == 0, report


@pytest.mark.parametrize("kind", ["static-pie", "musl", "CPython"])
def test_other_kinds_of_program_leave_nothing(space, build, tmp_path, kind):
    """The rest of the kinds the space runs: a static-pie program (mapped by
    the host, no ld.so), a musl program (its own loader, kernel style) and
    CPython (hundreds of mappings of its own)."""
    if kind == "static-pie":
        argv = [build.program("hello_static")]
    elif kind == "musl":
        if shutil.which("musl-gcc") is None:
            pytest.skip("musl-gcc is not installed (Debian: musl-tools)")
        exe = tmp_path / "hello_musl"
        source = Path(__file__).parent / "programs" / "hello_static.c"
        subprocess.run(["musl-gcc", "-O2", "-o", str(exe), str(source)], check=True, timeout=120)
        argv = [str(exe)]
    else:
        argv = [sys.executable, "-c", "import json, threading; threading.Thread(target=print).start()"]
    growth = measure(space, Row(kind, argv, 10))
    assert growth.rss <= 4 * MIB and growth.maps <= 20, growth


def test_unrecorded_calls_are_reported_once(space, build, monkeypatch, caplog):
    """Calls the keeper had to let through unrecorded (a descriptor it may
    not take, a full ledger) leave memory behind: the space says so, once."""
    keeper = space._host.keeper
    monkeypatch.setattr(keeper, "_warned", False)
    real = keeper._counter
    monkeypatch.setattr(keeper, "_counter", lambda name: 3 if name == "untracked" else real(name))
    hello = build("hello.c")
    with caplog.at_level("WARNING", logger="sameprocess"):
        for _ in range(2):
            assert space.run([hello], stdout=subprocess.DEVNULL).returncode == 0
    said = [r.getMessage() for r in caplog.records if "could not be recorded" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("sameprocess: 3 memory calls"), said
