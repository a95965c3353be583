"""The long fuzz run: hostile ELF files through the spawn path, hostile clients
against a live server.  CI runs a short derandomized pass of the same inputs
(tests/test_fuzz_elf.py, tests/test_fuzz_protocol.py); this draws fresh ones.

    .venv/bin/python scripts/fuzz.py --elf --minutes 5
    .venv/bin/python scripts/fuzz.py --protocol --minutes 5 --seed 7

Prints the inputs tried, the outcomes by kind and every failure (its seed
program and recipe, or its conversation), then exits 1 if anything failed.
A failing ELF recipe replays with tests/_elf_mutants.apply(); cut it down and
add it to tests/corpus/elf/corpus.json.
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent / "src"))

import _build  # noqa: E402
import _elf_fuzz as F  # noqa: E402
import _elf_mutants as M  # noqa: E402
import _protocol_fuzz as Q  # noqa: E402

MAX_SHOWN = 20


class Tally:
    def __init__(self, what: str) -> None:
        self.what, self.tried, self.outcomes, self.failures = what, 0, collections.Counter(), []
        self.started = time.monotonic()

    def add(self, outcome: str, failure: str | None = None) -> None:
        self.tried += 1
        self.outcomes[outcome] += 1
        if failure:
            self.failures.append(failure)
            if len(self.failures) <= MAX_SHOWN:
                print(f"FAILURE {len(self.failures)}: {failure}", flush=True)

    def report(self) -> None:
        elapsed = time.monotonic() - self.started
        print(f"{self.what}: {self.tried} inputs in {elapsed:.0f} s; outcomes: "
              + ", ".join(f"{k} {v}" for k, v in self.outcomes.most_common())
              + f"; failures: {len(self.failures)}", flush=True)


def fuzz_elf(deadline: float, rng: random.Random, work: Path) -> Tally:
    seeds = F.build_seeds(_build.Builder(work / "programs"), str(work))
    fixtures = M.make_interp_fixtures(str(work), seeds)
    data = {name: open(path, "rb").read() for name, path in seeds.items()}
    tally, worker = Tally("elf"), F.Worker(seeds["dynamic_exe"])
    try:
        while time.monotonic() < deadline:
            name = rng.choice(sorted(data))
            recipe = M.random_recipe(rng, data[name])
            path = work / f"mutant-{tally.tried}"
            path.write_bytes(M.apply(data[name], recipe, fixtures))
            path.chmod(0o755)
            try:
                result = worker.try_file(str(path))
            except F.WorkerDied as e:
                tally.add("host died", f"{name} {recipe!r}: {e}")
                worker.close()
                worker = F.Worker(seeds["dynamic_exe"])
                continue
            finally:
                path.unlink()
            bad = None if F.outcome_ok(result) else f"{name} {recipe!r}: {result}"
            tally.add(result["outcome"], bad)
            if tally.tried % 500 == 0:
                tally.report()
    finally:
        worker.close()
    return tally


def fuzz_protocol(deadline: float, rng: random.Random, work: Path) -> Tally:
    from _server_helpers import ServerProc, private_dir
    from sameprocess._server import protocol as P
    probe = Q.build_probe(work)
    server = ServerProc(private_dir(work), "--request-timeout", "0.5")
    spawn = P.Spawn([probe.encode()], [b"PATH=/bin"], b"/").encode()
    samples = [m.encode() for m in Q.sample_messages(probe)]
    tally = Tally("protocol")
    listening = Q.sockets(server.pid)
    try:
        for _ in range(20):
            Q.converse(server.path, [(spawn, ["devnull"] * 3)], Q.FdFactory(str(work)), "launcher")
        baseline = _settled(server.pid, None, probe, listening)
        while time.monotonic() < deadline:
            chunks, ending = _conversation(rng, samples, spawn)
            try:
                replies = Q.converse(server.path, chunks, Q.FdFactory(str(work)), ending)
            except AssertionError as e:     # the server did not answer or close
                tally.add("hang", f"{chunks!r} {ending}: {e}\n{_state(server)}")
                continue
            if server.proc.poll() is not None:
                tally.add("server died", f"{chunks!r} {ending}: {server.log()[-2000:]}")
                break
            problems = _settled(server.pid, baseline, probe)
            tally.add(" ".join(type(m).__name__ for m in replies) or "no reply",
                      f"{chunks!r} {ending}: {problems}\n{_state(server)}" if problems else None)
            if tally.tried % 500 == 0:
                tally.report()
        check = Q.converse(server.path, [(spawn, ["devnull"] * 3)], Q.FdFactory(str(work)), "launcher")
        if not check or not isinstance(check[-1], P.Exited) or check[-1].returncode != 0:
            tally.add("final run failed", f"a normal spawn got {check}")
    finally:
        server.stop()
    return tally


def _state(server) -> str:
    """The server's descriptors and the end of its log, for a failure report."""
    fds = []
    for fd in sorted(os.listdir(f"/proc/{server.pid}/fd"), key=int):
        try:
            fds.append(f"{fd}->{os.readlink(f'/proc/{server.pid}/fd/{fd}')}")
        except OSError:
            pass
    return f"  server fds: {' '.join(fds)}\n  server log: {server.log()[-1200:]}"


def _settled(pid: int, baseline, probe: str, listening=None, timeout: float = 10.0):
    """The baseline (when None is given: once the warm-up's programs are
    reclaimed and its connections closed) or the differences from it."""
    deadline = time.monotonic() + timeout
    while True:
        now = Q.Accounting(pid)
        if baseline is None:
            with open(f"/proc/{pid}/maps") as f:
                if probe not in f.read() and Q.quiet(pid, listening):
                    return now
        else:
            problems = now.differences(baseline)
            if not problems:
                return []
        if time.monotonic() > deadline:
            return problems if baseline is not None else now
        time.sleep(0.005)   # the reaper reclaims a few ms after an exit; nothing to wait on


def _conversation(rng: random.Random, samples: list[bytes], spawn: bytes):
    frames = []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.15:
            frames.append(rng.randbytes(rng.randint(1, 300)))
        else:
            frame = rng.choice(samples + [spawn] * 3)
            frames.append(Q.mutate(frame, rng.choice(Q.MUTATIONS), rng.randrange(1 << 16), rng.randrange(1 << 32)))
    stream = b"".join(frames)
    if stream[:5] == Q.P.MAGIC + bytes([Q.P.VERSION]) and stream[5:6] == bytes([Q.P.MsgType.STOP]):
        stream = stream[:5] + b"\x7f" + stream[6:]    # a STOP would stop the server
    cuts = sorted(set(rng.randrange(1, len(stream)) for _ in range(rng.randint(0, 3)) if len(stream) > 1))
    pieces = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
    chunks = [(p, [rng.choice(Q.FD_KINDS) for _ in range(rng.choice([0, 0, 1, 3, 3, 4, 6]))]) for p in pieces]
    return chunks, rng.choice(["half_close", "half_close", "close"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elf", action="store_true", help="fuzz ELF files through the spawn path")
    parser.add_argument("--protocol", action="store_true", help="fuzz the server's socket protocol")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long (split between the two)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from time)")
    args = parser.parse_args()
    if not (args.elf or args.protocol):
        parser.error("say --elf, --protocol or both")
    seed = args.seed if args.seed is not None else int(time.time())
    print(f"seed {seed}", flush=True)
    rng = random.Random(seed)
    kinds = [k for k, on in (("elf", args.elf), ("protocol", args.protocol)) if on]
    share = args.minutes * 60 / len(kinds)
    tallies = []
    with tempfile.TemporaryDirectory(prefix="sameprocess-fuzz-") as tmp:
        for kind in kinds:
            work = Path(tmp) / kind
            work.mkdir(mode=0o700)
            run = fuzz_elf if kind == "elf" else fuzz_protocol
            tallies.append(run(time.monotonic() + share, rng, work))
    for tally in tallies:
        tally.report()
    return 1 if any(t.failures for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
