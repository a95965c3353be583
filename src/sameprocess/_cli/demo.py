"""`sameprocess demo`: two separate programs hand over C++ objects by pointer.

Builds examples/producer.cpp and examples/consumer.cpp with the system C++
compiler (cached by source and compiler version), then, on the default
server (or --socket):
  1. `sameprocess run producer`  builds a std::string and an unordered_map,
     prints their addresses and waits;
  2. `sameprocess run consumer ADDR ADDR`  (a second launch, a second
     process) reads both in place and reports what it read and how long that
     took;
and compares with pushing the same objects through a pipe (serialise, copy,
parse, rebuild) between two ordinary processes.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ._common import ClientError, ExitCode

SOURCES = ("producer.cpp", "consumer.cpp", "demo_common.h")
CXX_FLAGS = ("-O2", "-std=c++17", "-Wall")


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "demo", parents=parents, help="show two programs sharing C++ objects by pointer",
        description=__doc__.split("\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=16 << 20, metavar="BYTES",
                        help="length of the shared std::string (default: 16 MiB)")
    parser.add_argument("--entries", type=int, default=100_000, metavar="N",
                        help="entries of the shared unordered_map (default: 100000)")
    parser.add_argument("--cache", metavar="DIR",
                        help="where built programs are kept (default: $XDG_CACHE_HOME/sameprocess/demo)")
    parser.set_defaults(handler=main)


def examples_dir() -> Path:
    """examples/ of the source tree (an editable install), or beside the package."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "examples", here.parents[1] / "examples"):
        if all((candidate / name).is_file() for name in SOURCES):
            return candidate
    raise ClientError("cannot find the demo sources (examples/producer.cpp, consumer.cpp)")


def build(cache: Path) -> tuple[Path, Path]:
    """Compile producer and consumer once per (sources, compiler version)."""
    import hashlib
    import shutil
    import tempfile

    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise ClientError("the demo needs a C++ compiler: install g++ (apt-get install g++)")
    source = examples_dir()
    key = hashlib.sha256()
    for name in SOURCES:
        key.update(name.encode() + b"\0" + (source / name).read_bytes())
    version = subprocess.run([cxx, "--version"], capture_output=True).stdout
    key.update(cxx.encode() + version + " ".join(CXX_FLAGS).encode())
    out = cache / key.hexdigest()[:16]
    if not out.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".build-"))
        try:
            for name in ("producer", "consumer"):
                cmd = [cxx, *CXX_FLAGS, "-o", str(tmp / name), str(source / f"{name}.cpp")]
                result = subprocess.run(cmd, capture_output=True, text=True)
                if result.returncode:
                    raise ClientError(f"building {name} failed: {' '.join(cmd)}\n{result.stderr.strip()}")
            try:
                tmp.rename(out)
            except OSError:   # built concurrently by another demo: use theirs
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out / "producer", out / "consumer"


def _fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)


def main(args: argparse.Namespace) -> int:
    if args.length < 16 or args.entries < 43:
        raise ClientError("--length must be at least 16 and --entries at least 43")
    cache = Path(args.cache) if args.cache else Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sameprocess" / "demo"
    producer, consumer = build(cache)
    run = [sys.executable, "-m", "sameprocess", "run"] + (["--socket", args.socket] if args.socket else [])
    sizes = [str(args.length), str(args.entries)]

    print(f"1. producer, launched with `sameprocess run {producer.name} {' '.join(sizes)}`:")
    prod = subprocess.Popen(run + ["--", str(producer), *sizes], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        objects = prod.stdout.readline()
        mine = prod.stdout.readline()
        if not objects.startswith("objects "):
            raise ClientError(f"the producer did not start (exit {prod.wait()})", ExitCode.FAILURE)
        where = _fields(objects)
        print(f"   std::string at {where['string']}, std::unordered_map at {where['map']}")
        print(f"   {mine.strip()}")
        print("2. consumer, a second launch: "
              f"`sameprocess run {consumer.name} {where['string']} {where['map']}`:")
        cons = subprocess.run(run + ["--", str(consumer), where["string"], where["map"]],
                              capture_output=True, text=True)
    finally:
        if prod.stdin:
            prod.stdin.close()       # the producer may exit now
        prod.wait()
    if cons.returncode:
        raise ClientError(f"the consumer failed (exit {cons.returncode}): {cons.stderr.strip()}")
    read, took = cons.stdout.splitlines()[0], int(_fields("x " + cons.stdout.splitlines()[1])["handoff_ns"])
    print(f"   {read}")
    same = _fields(read) == _fields(mine)
    print(f"   {'identical to' if same else 'DIFFERENT FROM'} what the producer computed on its own objects")

    print("3. the same objects through a pipe, producer | consumer as two ordinary processes:")
    piped = _through_pipe(producer, consumer, sizes)
    print(f"   {piped[0]}")
    print()
    print(f"handoff by pointer:      {took / 1e6:9.2f} ms  (nothing copied or parsed)")
    print(f"handoff through a pipe:  {piped[1] / 1e6:9.2f} ms  (serialise, copy, parse, rebuild)")
    print("(both include reading every byte and entry once; the server keeps running: "
          "`sameprocess stop` stops it)")
    return ExitCode.OK if same else ExitCode.FAILURE


def _through_pipe(producer: Path, consumer: Path, sizes: list[str]) -> tuple[str, int]:
    prod = subprocess.Popen([str(producer), "--pipe", *sizes], stdout=subprocess.PIPE)
    try:
        cons = subprocess.run([str(consumer), "--pipe"], stdin=prod.stdout, capture_output=True, text=True)
    finally:
        prod.stdout.close()
        prod.wait()
    if cons.returncode or prod.returncode:
        raise ClientError(f"the pipe run failed: {cons.stderr.strip()}")
    lines = cons.stdout.splitlines()
    return lines[0], int(lines[1].split("=", 1)[1])
