"""The launcher: `sameprocess run ./hello` against running `./hello` directly.

Prints, measured in one run on one server (its own socket, started here):
  * wall time per run, median of interleaved runs: native ./hello,
    `sameprocess run ./hello`, and what Python costs before the launcher
    does anything (the interpreter, and importing the launcher's modules);
  * launches per second with 8 launchers in parallel, for both.

usage: python benchmarks/bench_launcher.py [--runs N] [--parallel-runs N] [--workers N]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import _build  # noqa: E402  (the tests' program builder; no pytest needed)


def launcher_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "sameprocess")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "sameprocess"]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - t


def start_server(directory: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    path = os.path.join(directory, "bench.sock")
    r, w = os.pipe()
    server = subprocess.Popen([sys.executable, "-m", "sameprocess", "serve", "--socket", path,
                               "--ready-fd", str(w)], pass_fds=(w,), env=env,
                              stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r, "rb") as ready:
        if not ready.read().startswith(b"ready"):
            raise SystemExit("the server did not start")
    return server, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="sequential runs of each kind")
    parser.add_argument("--parallel-runs", type=int, default=400, help="runs in the parallel test")
    parser.add_argument("--workers", type=int, default=8, help="launchers in parallel")
    args = parser.parse_args()

    cache = tempfile.mkdtemp(prefix="bench-launcher-")
    sockdir = tempfile.mkdtemp(prefix="bench-sock-")   # mkdtemp: mode 0700
    # Bytecode caching on, as on a user's machine (some environments turn it off).
    env = {k: v for k, v in os.environ.items() if k not in ("SAMEPROCESS_SOCKET", "PYTHONDONTWRITEBYTECODE")}
    server = None
    try:
        hello = _build.Builder(cache)("hello.c")
        server, path = start_server(sockdir, env)
        launcher = launcher_command() + ["run", "--socket", path, "--", hello]
        kinds = {
            "native ./hello": [hello],
            "sameprocess run ./hello": launcher,
            "python -c 'import sameprocess._client'": [sys.executable, "-c", "import sameprocess._client"],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        for cmd in kinds.values():          # warm caches
            timed(cmd, env)
        samples: dict[str, list[float]] = {name: [] for name in kinds}
        for _ in range(args.runs):           # interleaved, so drift hits all alike
            for name, cmd in kinds.items():
                samples[name].append(timed(cmd, env))
        print(f"wall time per run, median of {args.runs} interleaved runs "
              f"({os.cpu_count()} CPUs, {sys.version.split()[0]}):")
        native = statistics.median(samples["native ./hello"])
        for name, values in samples.items():
            med = statistics.median(values)
            print(f"  {name:38s} {med * 1e3:8.2f} ms   x{med / native:6.1f} native")

        print(f"\nlaunches per second, {args.workers} in parallel, {args.parallel_runs} runs each:")
        rates = {}
        for name in ("native ./hello", "sameprocess run ./hello"):
            cmd = kinds[name]
            t = time.perf_counter()
            with ThreadPoolExecutor(args.workers) as pool:
                list(pool.map(lambda _: timed(cmd, env), range(args.parallel_runs)))
            rates[name] = args.parallel_runs / (time.perf_counter() - t)
            print(f"  {name:38s} {rates[name]:8.1f} /s")
        print(f"  ratio sameprocess/native: {rates['sameprocess run ./hello'] / rates['native ./hello']:.3f}")
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(sockdir, ignore_errors=True)


if __name__ == "__main__":
    main()
