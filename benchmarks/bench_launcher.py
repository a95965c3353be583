"""The launcher: `sameprocess run ./hello` against running `./hello` directly.

Prints, measured side by side in one run on one server (its own socket,
started here):
  * wall time per launch, median of interleaved runs, every way started by
    the same harness (posix_spawn + wait4) unless named otherwise: native
    ./hello, `sameprocess run ./hello` (the native launcher), the Python
    launcher (the fallback; every launch went through it before), and, in
    this process, `space.run(["./hello"])` and `subprocess.run(["./hello"])`;
  * CPU per launch: the launcher's (rusage) and the server's (/proc/PID/stat);
  * launches per second with 8 launchers in parallel, native and ours;
  * PSS of 20 idle programs: natively, and through `sameprocess run`
    (launchers, and the server that hosts the programs);
  * python3 -c pass, ls /, java -version: natively and through `sameprocess run`;
and draws the launch times (--chart PATH; needs matplotlib: pip install '.[bench]').

usage: python benchmarks/bench_launcher.py [--runs N] [--parallel-runs N] [--workers N]
                                           [--idle N] [--chart PATH] [--server-cpu N]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import _build  # noqa: E402  (the tests' program builder; no pytest needed)

from sameprocess._cli.run import native_launcher  # noqa: E402

PRIOR_ART_MS = 5.6      # the prior art's launcher, C hello, measured earlier on this machine kind
TICK = os.sysconf("SC_CLK_TCK")
FALLBACK = ("import sys; import sameprocess._cli.run as run; run.native_launcher = lambda: None; "
            "from sameprocess._cli import main; sys.exit(main(sys.argv[1:]))")


def spawn_wait(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process) for one run, stdout to /dev/null."""
    t = time.perf_counter()
    pid = os.posix_spawn(cmd[0], cmd, env, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                                                         (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status:#x}")
    return wall, usage.ru_utime + usage.ru_stime


def in_process(fn) -> tuple[float, float]:
    t, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - cpu


def stat_fields(path: str) -> list[bytes]:
    """A /proc/.../stat line's fields after the command name: [0] state,
    [1] ppid, [11] utime, [12] stime, [13] cutime, [14] cstime (proc(5)'s
    numbers less 3)."""
    with open(path, "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    fields = stat_fields(f"/proc/{pid}/stat")
    return (int(fields[11]) + int(fields[12])) / TICK        # utime, stime


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))


def start_server(directory: str, env: dict[str, str], cpu: int | None) -> tuple[subprocess.Popen, str]:
    path = os.path.join(directory, "bench.sock")
    r, w = os.pipe()
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    server = subprocess.Popen([sys.executable, "-m", "sameprocess", "serve", "--socket", path,
                               "--ready-fd", str(w)], pass_fds=(w,), env=env, stderr=subprocess.DEVNULL,
                              preexec_fn=pin)
    os.close(w)
    with os.fdopen(r, "rb") as ready:
        if not ready.read().startswith(b"ready"):
            raise SystemExit("the server did not start")
    return server, path


def sequential(kinds: dict, runs: int, server_pid: int) -> dict[str, list[tuple[float, float]]]:
    for measure in kinds.values():          # warm caches
        measure()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in kinds}
    server_cpu = 0.0
    for _ in range(runs):                   # interleaved, so drift hits all alike
        for name, measure in kinds.items():
            before = cpu_seconds(server_pid)
            samples[name].append(measure())
            if name == "sameprocess run ./hello":
                server_cpu += cpu_seconds(server_pid) - before
    width = max(map(len, kinds))
    native = statistics.median(w for w, _ in samples["native ./hello"])
    print(f"wall time per launch, median of {runs} interleaved runs ({os.cpu_count()} CPUs):")
    for name, values in samples.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"  {name:{width}s} {wall * 1e3:8.2f} ms  x{wall / native:5.2f} native   CPU {cpu * 1e3:6.2f} ms")
    print(f"  the server's CPU per `sameprocess run`: {server_cpu / runs * 1e3:.2f} ms "
          f"(clock ticks of {1e3 / TICK:.0f} ms, summed over {runs} runs)")
    return samples


def parallel(kinds: dict[str, list[str]], env, workers: int, runs: int, server_pid: int) -> None:
    print(f"\nlaunches per second, {workers} in parallel, {runs} runs each:")
    rates = {}
    for name, cmd in kinds.items():
        before, t = cpu_seconds(server_pid), time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda _: spawn_wait(cmd, env), range(runs)))
        rates[name] = runs / (time.perf_counter() - t)
        server = (cpu_seconds(server_pid) - before) / runs * 1e3
        print(f"  {name:26s} {rates[name]:8.1f} /s   (server CPU {server:.2f} ms per launch)")
    native, ours = rates.values()
    print(f"  ratio sameprocess/native: {ours / native:.3f}")


def idle_memory(hello_idle: str, launcher: list[str], env, count: int, server_pid: int) -> None:
    """PSS of `count` programs waiting on their stdin, native vs launched."""
    server_before = pss_kib(server_pid)
    results = {}
    for name, prefix in (("native", []), ("sameprocess run", launcher)):
        procs = [subprocess.Popen(prefix + [hello_idle], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
                 for _ in range(count)]
        try:
            for p in procs:
                if p.stdout.readline() != b"ready\n":
                    raise SystemExit(f"{name}: an idle program did not start")
            results[name] = sum(pss_kib(p.pid) for p in procs)
            if prefix:
                server_with = pss_kib(server_pid)
        finally:
            for p in procs:
                p.stdin.close()
                p.wait()
                p.stdout.close()
    native, launchers = results["native"], results["sameprocess run"]
    print(f"\nPSS of {count} idle programs (sleeper.c, waiting on stdin):")
    print(f"  native: {native / 1024:.1f} MiB ({native / count:.0f} KiB each)")
    print(f"  sameprocess run: {(launchers + server_with) / 1024:.1f} MiB = launchers {launchers / 1024:.1f} MiB "
          f"({launchers / count:.0f} KiB each, x{launchers / native:.2f} a native process) + the server "
          f"{server_with / 1024:.1f} MiB (idle {server_before / 1024:.1f} MiB, so "
          f"{(server_with - server_before) / count:.0f} KiB per program)")


def others(launcher: list[str], env, runs: int) -> None:
    # The system's python3, not a version manager's shim script in front of one.
    python3 = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else shutil.which("python3")
    java = shutil.which("java")
    cases = {"python3 -c pass": [python3, "-c", "pass"], "ls /": [shutil.which("ls"), "/"]}
    if java:
        cases["java -version"] = [java, "-version"]
    print(f"\nother programs, median of {runs} interleaved runs:")
    for name, cmd in cases.items():
        native, ours = [], []
        for _ in range(runs):
            native.append(spawn_wait(cmd, env)[0])
            ours.append(spawn_wait(launcher + cmd, env)[0])
        n, o = statistics.median(native), statistics.median(ours)
        print(f"  {name:16s} native {n * 1e3:8.2f} ms   sameprocess run {o * 1e3:8.2f} ms   x{o / n:5.2f}")
    if not java:
        print("  java -version: no java on PATH")


def chart(samples: dict[str, list[tuple[float, float]]], path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--chart needs matplotlib: pip install -e '.[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(samples) + ["prior art's launcher"]
    ms = [statistics.median(w for w, _ in v) * 1e3 for v in samples.values()] + [PRIOR_ART_MS]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    bars = ax.barh(names, ms, color=["#4c72b0"] * len(samples) + ["#bbbbbb"])
    bars[-1].set_hatch("//")
    for bar, value, name in zip(bars, ms, names):
        note = " (measured earlier)" if name == "prior art's launcher" else ""
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.2f} ms{note}", va="center")
    ax.set_xscale("log")
    ax.set_xlim(right=max(ms) * 8)
    ax.invert_yaxis()
    ax.set_xlabel("wall time per launch of a C hello, median (ms, log scale)")
    ax.set_title("Launching ./hello, measured side by side")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"\nchart: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="sequential runs of each kind")
    parser.add_argument("--parallel-runs", type=int, default=400, help="runs in the parallel test")
    parser.add_argument("--workers", type=int, default=8, help="launchers in parallel")
    parser.add_argument("--idle", type=int, default=20, help="idle programs for the memory figure")
    parser.add_argument("--other-runs", type=int, default=10, help="runs of python3, ls and java")
    parser.add_argument("--chart", metavar="PATH", help="draw the launch times into this PNG")
    parser.add_argument("--server-cpu", type=int, metavar="N",
                        help="confine the server to CPU N, as taskset would (its programs run on "
                             "their launchers' CPUs)")
    args = parser.parse_args()
    with bench_server(args.server_cpu) as bench:
        builder, env, server, path = bench.builder, bench.env, bench.server, bench.path
        hello, idle = builder("hello.c"), builder("sleeper.c")
        launcher = bench.launcher
        python_launcher = [sys.executable, "-c", FALLBACK, "run", "--socket", path, "--"]
        from sameprocess import Space

        with Space() as space:
            kinds = {
                "native ./hello": lambda: spawn_wait([hello], env),
                "sameprocess run ./hello": lambda: spawn_wait(launcher + [hello], env),
                "space.run(['./hello'])": lambda: in_process(
                    lambda: space.run([hello], stdout=subprocess.DEVNULL, check=True)),
                "subprocess.run(['./hello'])": lambda: in_process(
                    lambda: subprocess.run([hello], stdout=subprocess.DEVNULL, check=True)),
                "Python launcher (before)": lambda: spawn_wait(python_launcher + [hello], env),
            }
            samples = sequential(kinds, args.runs, server.pid)
        parallel({"native ./hello": [hello], "sameprocess run ./hello": launcher + [hello]}, env,
                 args.workers, args.parallel_runs, server.pid)
        idle_memory(idle, launcher, env, args.idle, server.pid)
        others(launcher, env, args.other_runs)
        if args.chart:
            chart(samples, args.chart)


@contextlib.contextmanager
def bench_server(cpu: int | None = None):
    """One benchmark's setting: a server on a socket of its own (confined to
    `cpu` if given), the test programs' builder (into SAMEPROCESS_TEST_CACHE,
    else a temporary cache), the environment to run with, and the native
    `sameprocess run` argv up to the program; all taken down after."""
    native = native_launcher()
    if native is None:
        raise SystemExit("no native sameprocess installed beside this Python: pip install -e .")
    cache = os.environ.get("SAMEPROCESS_TEST_CACHE") or tempfile.mkdtemp(prefix="bench-launcher-")
    sockdir = tempfile.mkdtemp(prefix="bench-sock-")   # mkdtemp: mode 0700
    # Bytecode caching on, as on a user's machine (some environments turn it off).
    env = {k: v for k, v in os.environ.items() if k not in ("SAMEPROCESS_SOCKET", "PYTHONDONTWRITEBYTECODE")}
    server = None
    try:
        builder = _build.Builder(cache)
        server, path = start_server(sockdir, env, cpu)
        yield types.SimpleNamespace(builder=builder, env=env, server=server, path=path,
                                    launcher=[native, "run", "--socket", path, "--"])
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        if cache != os.environ.get("SAMEPROCESS_TEST_CACHE"):
            shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(sockdir, ignore_errors=True)


if __name__ == "__main__":
    main()
