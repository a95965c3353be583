"""The `sameprocess` command: one module per verb (serve, run, ps, kill, stop, gdb,
demo, config), each with register(subparsers, parents) and its own handler;
shared options and error handling in _common.

A launcher starts for every program, so only the verb being run is
imported (all of them for the top-level help), and verb modules import what
they need inside their handlers.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import _common

VERBS = ("serve", "run", "ps", "kill", "stop", "gdb", "demo", "config")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or one with just the verb `only` (same usage and errors)."""
    parser = argparse.ArgumentParser(
        prog="sameprocess",
        description="Run unmodified Linux programs as separate processes that share one address "
                    "space. A server hosts the space on a Unix socket; `run` starts a program in "
                    "it that behaves like the launcher's own child (stdio, signals, exit status).",
        epilog="Socket: --socket, else $SAMEPROCESS_SOCKET, else "
               "$XDG_RUNTIME_DIR/sameprocess/default.sock, else /tmp/sameprocess-$UID/default.sock. "
               "Run `sameprocess VERB --help` for a verb's options.")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    common = _common.parent_parser()
    for verb in (only,) if only in VERBS else VERBS:
        importlib.import_module(f".{verb}", __name__).register(subparsers, [common])
    return parser


def parse_run_quickly(argv: list[str]) -> argparse.Namespace | None:
    """`run [--socket PATH] [--] PROGRAM [ARGS...]` parsed without argparse.

    Building the parser costs a launcher more than everything else it does
    itself, so the plain forms are recognised here, with exactly the result
    argparse gives; anything else (-h, unknown options, no program) returns
    None and goes through the parser, with its usage and errors.
    """
    if argv[:1] != ["run"]:
        return None
    rest, socket = argv[1:], None
    if rest[:1] == ["--socket"] and len(rest) >= 2:
        socket, rest = rest[1], rest[2:]
    elif rest and rest[0].startswith("--socket="):
        socket, rest = rest[0].partition("=")[2], rest[1:]
    program = rest[1:] if rest[:1] == ["--"] else rest
    if not program or (program is rest and program[0].startswith("-")):
        return None
    from . import run
    return argparse.Namespace(verb="run", socket=socket, command=rest, handler=run.main)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sameprocess` script: parse, run the verb, map errors to codes."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_run_quickly(argv) or build_parser(argv[0] if argv else None).parse_args(argv)
    return _common.call(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
