"""The fuzz host: hostile ELF files (tests/_elf_mutants.py) through the whole
spawn path, in a process of their own.

Every mutant is spawned by a separate host process (`python _elf_fuzz.py
worker`), which owns a Space.  A mutant that passes validation runs as a
program in that host's address space; if anything goes wrong the host that
crashes is the worker, and the fuzzer sees it die instead of dying itself.
After each input the worker checks itself (see check_host) and answers one
JSON line.

Accepted outcomes, and why:
  rejected    ExecError / OSError from Popen: the file was refused cleanly.
  exited      the program ran and exited (any status: a broken program may
              report its own failure, e.g. ld.so refusing the file).
  signaled    the program died of a signal.  A mutant is broken code; a
              fault confined to it is what a native exec would show too.
  timeout     still running after RUN_TIMEOUT (a corrupt entry point can
              spin); killed and reaped.
Each is accepted only if the host is unaffected: it did not crash, no
descriptor was left open, no mapping that existed before was removed or
changed or re-protected, the sentinel region kept its bytes, a failed spawn
left no new mapping at all, a program that ran left only what run_leftover
allows and none of its loader regions, and the space still runs a normal
hello afterwards.  Anything else, an exception of
another type included, is a failure.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile

from _elf_mutants import SENTINEL_ADDR, SENTINEL_BYTE, SENTINEL_SIZE

RUN_TIMEOUT = 3.0
REPLY_TIMEOUT = 30.0


# -- the fuzz host -----------------------------------------------------------------
def _maps() -> list[tuple[int, int, str, str, str]]:
    """(start, end, perms, offset+inode, path) of every mapping."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(None, 5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            out.append((lo, hi, fields[1], fields[2] + ":" + fields[4],
                        fields[5].strip() if len(fields) > 5 else ""))
    return out


def _churn(m) -> bool:
    """Anonymous read-write memory: Python's allocator maps and unmaps it on its own."""
    return m[2] == "rw-p" and m[4] == ""


def run_leftover(m, path: str) -> bool:
    """What a program that ran may leave (docs/architecture.md, "What stays"),
    and what ld.so leaves when it dies early (seen with unmodified programs):
      * anonymous memory: its heap segments, TLS, malloc guard pages, and the
        zero-fill pages ld.so maps for the executable's bss;
      * /etc/ld.so.cache: ld.so maps it while loading libraries and exits on
        an error (a missing library, a bad version record) without unmapping;
      * the program's own file, when ld.so died before it published its
        link_map (an empty r_debug chain): the host cannot find that mapping.
    The loader's own regions are checked separately (all must be gone).
    """
    return m[4] in ("", "/etc/ld.so.cache", path)


def _overlaps(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def changed_mappings(before, after) -> list:
    """Mappings that existed before and are now gone or different: something
    mapped, unmapped or mprotected memory it did not own.  Python's anonymous
    read-write memory may vanish (its allocator frees it), but not change."""
    after_set = set(after)
    out = []
    for m in before:
        if m in after_set:
            continue
        over = [n for n in after if _overlaps(m, n)]
        if any(n[2] != m[2] or n[4] != m[4] for n in over) or (not over and not _churn(m)):
            out.append(m)
        elif over and not _churn(m) and (over[0][0] > m[0] or over[-1][1] < m[1]):
            out.append(m)   # partly unmapped
    return out


def check_host(before_maps, before_fds, after_maps, after_fds, ran: bool, sentinel,
               path: str, regions) -> list[str]:
    """What the input did to the host, as a list of problems (empty: none)."""
    problems = []
    if after_fds != before_fds:
        problems.append(f"descriptors changed: {sorted(before_fds)} -> {sorted(after_fds)}")
    changed = changed_mappings(before_maps, after_maps)
    if changed:
        problems.append(f"mappings removed or changed: {_show(changed)}")
    allowed = (lambda m: run_leftover(m, path)) if ran else _churn
    new = [m for m in set(after_maps) - set(before_maps) if not allowed(m)]
    if new:
        problems.append(f"mappings left behind: {_show(new)}")
    fresh = [m for m in set(after_maps) - set(before_maps) if not _churn(m)]
    kept = [f"{lo:#x}-{hi:#x}" for lo, hi in regions if any(_overlaps((lo, hi), m) for m in fresh)]
    if kept:
        problems.append(f"loader regions still mapped after the program was reclaimed: {kept}")
    if bytes(sentinel).count(SENTINEL_BYTE) != SENTINEL_SIZE:
        problems.append("the sentinel region's bytes changed")
    return problems


def _show(maps) -> str:
    return ", ".join(f"{lo:#x}-{hi:#x} {perms} {path or '[anon]'}" for lo, hi, perms, _, path
                     in sorted(maps)[:6])


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


class FuzzHost:
    """The worker's state: its Space, the sentinel, the hello to run after each input."""

    def __init__(self, hello: str) -> None:
        from sameprocess import Space, _mm
        self.space = Space().open()
        self.hello = hello
        self.regions: list[tuple[int, int]] = []
        self._record_regions()
        addr = _mm.mmap(SENTINEL_ADDR, SENTINEL_SIZE, _mm.PROT_READ | _mm.PROT_WRITE,
                        _mm.MAP_PRIVATE | _mm.MAP_ANONYMOUS | _mm.MAP_FIXED_NOREPLACE)
        assert addr == SENTINEL_ADDR
        _mm.write(addr, bytes([SENTINEL_BYTE]) * SENTINEL_SIZE)
        self.sentinel = _mm.from_address(addr, SENTINEL_SIZE, readonly=True)
        self.run_hello()   # one-time setup (guard, runtime) out of the way

    def _record_regions(self) -> None:
        """Keep a copy of each spawn's loader regions, to check they are given back."""
        from sameprocess import _space
        real_spawn = _space.spawn

        def recording_spawn(*args, **kwargs):
            launch = real_spawn(*args, **kwargs)
            self.regions = list(launch.regions.ranges)
            return launch
        _space.spawn = recording_spawn

    def run_hello(self) -> str | None:
        r = self.space.run([self.hello], capture_output=True, timeout=REPLY_TIMEOUT / 2)
        if (r.returncode, r.stdout) != (0, b"hello from sameprocess\n"):
            return f"hello afterwards: status {r.returncode}, output {r.stdout[:200]!r}"
        return None

    def one(self, path: str) -> dict:
        from sameprocess import ExecError
        maps0, fds0 = _maps(), _fds()
        ran, outcome, detail = False, "rejected", ""
        self.regions = []
        try:
            p = self.space.Popen([path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        except ExecError as e:
            detail = f"ExecError {e.errno}: {e.strerror}"
        except OSError as e:
            detail = f"{type(e).__name__} {e.errno}: {e.strerror}"
        except Exception as e:  # noqa: BLE001 - any other type is the finding
            return {"outcome": "bug", "detail": f"{type(e).__name__}: {e}", "problems": []}
        else:
            ran = True
            # nothing to wait for: the space unmaps a program's images
            # before wait() returns
            outcome, detail = self._finish(p)
        problems = check_host(maps0, fds0, _maps(), _fds(), ran, self.sentinel, path, self.regions)
        hello = self.run_hello()
        if hello:
            problems.append(hello)
        return {"outcome": outcome, "detail": detail, "problems": problems}

    @staticmethod
    def _finish(p) -> tuple[str, str]:
        with p:
            try:
                out, err = p.communicate(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                return "timeout", ""
        if p.returncode < 0:
            return "signaled", signal.Signals(-p.returncode).name
        return "exited", f"status {p.returncode}: {err[:120]!r}"


def worker_main(hello: str) -> None:
    host = FuzzHost(hello)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        print(json.dumps(host.one(json.loads(line)["path"])), flush=True)


class Worker:
    """The fuzzer's side: start a fuzz host, send it files, read its verdicts."""

    def __init__(self, hello: str, aslr: bool = True) -> None:
        """aslr=False runs the host with a fixed layout (setarch -R): a
        mutant whose fate depends on where things are mapped then has the
        same fate on every run, which a CI pass wants."""
        self.stderr = tempfile.TemporaryFile()
        fixed = [] if aslr else ["setarch", os.uname().machine, "-R"]
        if fixed and not shutil.which("setarch"):
            raise RuntimeError("setarch (util-linux) is needed to run the fuzz host without ASLR")
        self.proc = subprocess.Popen(fixed + [sys.executable, os.path.abspath(__file__), "worker", hello],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=_worker_env())
        self._read()

    def _read(self) -> dict:
        if not select.select([self.proc.stdout], [], [], REPLY_TIMEOUT)[0]:
            raise WorkerDied(f"no answer within {REPLY_TIMEOUT} s (the host hangs)", self)
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerDied(f"the host died: {self._status()}", self)
        return json.loads(line)

    def _status(self) -> str:
        rc = self.proc.wait(REPLY_TIMEOUT)
        self.stderr.seek(0)
        tail = self.stderr.read()[-2000:].decode(errors="replace")
        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
        return f"{how}; stderr: {tail}"

    def try_file(self, path: str) -> dict:
        try:
            self.proc.stdin.write((json.dumps({"path": path}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerDied(f"the host died: {self._status()}", self) from None
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(REPLY_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()


class WorkerDied(Exception):
    def __init__(self, message: str, worker: Worker) -> None:
        super().__init__(message)
        worker.proc.kill() if worker.proc.poll() is None else None


def _worker_env() -> dict[str, str]:
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = dict(os.environ)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


# -- seeds ---------------------------------------------------------------------------
def build_seeds(builder, directory: str) -> dict[str, str]:
    """name -> path of each real executable the mutants start from."""
    from sameprocess import _elf
    seeds = {"dynamic_exe": builder("hello.c"), "static_pie": builder("hello_static.c"),
             "nonpie": builder("nonpie.c")}
    seeds["ldso"] = _elf.load(seeds["dynamic_exe"]).interp
    if shutil.which("musl-gcc"):
        musl = os.path.join(directory, "hello_musl")
        if not os.path.exists(musl):
            src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "programs", "hello_static.c")
            subprocess.run(["musl-gcc", "-O2", "-o", musl, src], check=True)
        seeds["musl"] = musl
    return seeds


def outcome_ok(result: dict) -> bool:
    return result["outcome"] in ("rejected", "exited", "signaled", "timeout") and not result["problems"]


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker_main(sys.argv[2])
