"""Where a `sameprocess run ./hello` spends its time and CPU, and how much
of it any server could save.

Measured side by side in one run, against one server started here:

Sequential (interleaved, medians):
  * native ./hello, and a static program that does nothing (exit_code.c
    built -static, the cheapest kind of executable to start): what any
    launcher costs just by being a process;
  * `sameprocess run ./hello`: its wall time, the launcher's CPU (rusage),
    and the CPU of each part of the space per launch: the server's threads
    (/proc/PID/task), the keeper task, the programs (the server's cutime);
  * a program in a space (`Space.Popen` in this process), from the moment
    its report is seen until its exit is reaped and its memory is back: the
    program's own run plus reclamation; and the same with reclaim=False (no
    ledger: its calls are not sent to the keeper, its memory stays), which
    shows what the ledger costs.
  The floor is the do-nothing process plus the program in a space: what a
  launch would cost with a request, a server and replies that took no time.
  The difference to 2x native is what all of them may take together.

In parallel (8 launchers; CPU from /proc/stat): launches per second and busy
CPU per launch, natively and through the server, split as above.  The
bound: the launches per second the same CPUs would allow if the server's
own threads took no CPU at all.

usage: python benchmarks/launch_budget.py [--runs N] [--parallel-runs N] [--workers N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_launcher import TICK, bench_server, spawn_wait, stat_fields  # noqa: E402


SUBPROCESS = "subprocess.run(['./hello']), whole"


def _ticks(stat_path: str, first: int) -> int:
    """Two CPU fields of a stat line summed: utime + stime at 11, cutime + cstime at 13."""
    fields = stat_fields(stat_path)
    return int(fields[first]) + int(fields[first + 1])


class SpaceCpu:
    """CPU ticks of a server's parts: its threads by name, the keeper task,
    and its reaped children (the programs)."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.keeper = next(pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                           if _comm(pid) == "sp-keeper" and _ppid(pid) == server_pid)

    def snapshot(self) -> dict[str, int]:
        parts = {"server, main thread": 0, "server, other threads": 0}
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            main = int(tid) == self.pid
            parts["server, main thread" if main else "server, other threads"] += _ticks(
                f"/proc/{self.pid}/task/{tid}/stat", 11)
        parts["keeper task"] = _ticks(f"/proc/{self.keeper}/stat", 11)
        parts["programs"] = _ticks(f"/proc/{self.pid}/stat", 13)
        return parts


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        return int(stat_fields(f"/proc/{pid}/stat")[1])
    except OSError:     # gone since the listing
        return 0


def _busy_ticks() -> int:
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return user + nice + system + irq + softirq + steal


def in_space(space, hello: str, reclaim: bool = True) -> float:
    """Seconds from a program's report (Popen returned) to its reaped exit."""
    program = space.Popen([hello], stdout=subprocess.DEVNULL, reclaim=reclaim)
    t = time.perf_counter()
    if program.wait() != 0:
        raise SystemExit("hello failed in the space")
    return time.perf_counter() - t


def whole_run(hello: str) -> float:
    t = time.perf_counter()
    subprocess.run([hello], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def sequential(runs: int, hello: str, empty: list[str], launcher: list[str], env, cpu: SpaceCpu) -> float:
    from sameprocess import Space

    walls: dict[str, list[float]] = {}
    launcher_cpu = 0.0
    with Space() as space:
        kinds = {
            "native ./hello": lambda: spawn_wait([hello], env)[0],
            "a static program doing nothing": lambda: spawn_wait(empty, env)[0],
            "program in a space, report to reaped": lambda: in_space(space, hello),
            "the same without the ledger (reclaim=False)": lambda: in_space(space, hello, False),
            SUBPROCESS: lambda: whole_run(hello),
        }
        for measure in kinds.values():
            measure()
        spawn_wait(launcher + [hello], env)
        before = cpu.snapshot()     # only the launches below use the server
        for _ in range(runs):
            for name, measure in kinds.items():
                walls.setdefault(name, []).append(measure())
            wall, used = spawn_wait(launcher + [hello], env)
            walls.setdefault("sameprocess run ./hello", []).append(wall)
            launcher_cpu += used
        after = cpu.snapshot()
        parts = {part: after[part] - before[part] for part in after}
    median = {name: statistics.median(values) for name, values in walls.items()}
    native = median["native ./hello"]
    print(f"sequential, median of {runs} interleaved runs ({os.cpu_count()} CPUs):")
    for name, value in median.items():
        print(f"  {name:44s} {value * 1e3:7.3f} ms  x{value / native:5.2f} native")
    print(f"  CPU per `sameprocess run` (ticks of {1e3 / TICK:.0f} ms summed over the runs):")
    print(f"    {'the launcher':42s} {launcher_cpu / runs * 1e3:7.3f} ms")
    for part, ticks in parts.items():
        print(f"    {part:42s} {ticks / TICK / runs * 1e3:7.3f} ms")
    ours = median["sameprocess run ./hello"]
    for program in ("program in a space, report to reaped", "the same without the ledger (reclaim=False)"):
        floor = median["a static program doing nothing"] + median[program]
        print(f"  floor: a do-nothing process + the {program.split(',')[0].replace('the same', 'program')}: "
              f"{floor * 1e3:.3f} ms = x{floor / native:.2f} native; left at 2.0x native for "
              f"request, server and replies: {(2 * native - floor) * 1e3:.3f} ms "
              f"(today {(ours - floor) * 1e3:.3f} ms)")
    in_space_alone = median["program in a space, report to reaped"]
    print(f"  space.run's floor, the program in a space alone: x{in_space_alone / median[SUBPROCESS]:.2f} "
          f"subprocess.run's whole run (target for space.run: 1.0)")
    return native


def parallel(runs: int, workers: int, hello: str, launcher: list[str], env, cpu: SpaceCpu) -> None:
    print(f"\n{workers} in parallel, {runs} runs each:")
    rates, busy = {}, {}
    for name, cmd in (("native ./hello", [hello]), ("sameprocess run ./hello", launcher + [hello])):
        before, ticks, t = cpu.snapshot(), _busy_ticks(), time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda _: spawn_wait(cmd, env), range(runs)))
        rates[name] = runs / (time.perf_counter() - t)
        busy[name] = (_busy_ticks() - ticks) / TICK / runs
        after = cpu.snapshot()
        print(f"  {name:26s} {rates[name]:7.1f} launches/s, busy CPU {busy[name] * 1e3:.3f} ms per launch")
    server = sum(after[p] - before[p] for p in ("server, main thread", "server, other threads")) / TICK / runs
    for part in after:
        print(f"    {part:42s} {(after[part] - before[part]) / TICK / runs * 1e3:7.3f} ms per launch")
    ncpu = os.cpu_count()
    native, ours = rates["native ./hello"], rates["sameprocess run ./hello"]
    bound = ncpu / (busy["sameprocess run ./hello"] - server)
    print(f"  ratio today: {ours / native:.3f}; with the server's threads at no CPU, at most "
          f"{bound:.0f} launches/s = {bound / native:.3f} of native (target 0.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="sequential runs of each kind")
    parser.add_argument("--parallel-runs", type=int, default=800, help="runs in parallel, per side")
    parser.add_argument("--workers", type=int, default=8, help="launchers in parallel")
    args = parser.parse_args()
    with bench_server() as bench:
        hello = bench.builder("hello.c")
        empty = [bench.builder("exit_code.c", flags=["-static"], name="exit_code_static"), "0"]
        cpu = SpaceCpu(bench.server.pid)
        sequential(args.runs, hello, empty, bench.launcher, bench.env, cpu)
        parallel(args.parallel_runs, args.workers, hello, bench.launcher, bench.env, cpu)


if __name__ == "__main__":
    main()
