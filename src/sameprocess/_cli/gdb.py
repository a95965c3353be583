"""`sameprocess gdb`: gdb on a program of a space, or on its core file."""
from __future__ import annotations

import argparse
import os
import shlex
import sys

from ._common import ClientError, ExitCode, error


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "gdb", parents=parents, help="debug a program of the space with gdb",
        description="Run gdb attached to program PID of the server's space, with the symbols of "
                    "its own executable and shared objects (plain `gdb -p PID` sees the host's). "
                    "With --core, debug the core file CORE that a program of a space dumped; "
                    "TARGET is then the program's executable. GDB ARGS (e.g. -batch -ex bt) are "
                    "passed to gdb and run after the symbols are loaded. Quitting or `detach` "
                    "leaves the program running. See docs/debugging.md.")
    parser.add_argument("--core", metavar="CORE", help="debug this core file instead of a live program")
    parser.add_argument("--print-command", action="store_true",
                        help="print the gdb command line instead of running it")
    parser.add_argument("target", metavar="PID|PROGRAM",
                        help="a program's pid; with --core, the executable that dumped CORE")
    parser.add_argument("gdb_args", nargs=argparse.REMAINDER, metavar="GDB ARGS",
                        help="options passed on to gdb")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from .._debug import find_gdb

    try:
        gdb = find_gdb()
    except FileNotFoundError as e:
        raise ClientError(str(e), ExitCode.NOT_FOUND) from None
    argv = _core_argv(args, gdb) if args.core else _live_argv(args, gdb)
    if args.print_command:
        print(shlex.join(argv))
        return ExitCode.OK
    sys.stdout.flush()
    try:
        os.execv(gdb, argv)   # gdb takes over the terminal (Ctrl-C goes to it)
    except OSError as e:
        raise ClientError(f"cannot run {gdb}: {e.strerror}") from None


def _live_argv(args: argparse.Namespace, gdb: str) -> list[str]:
    from .._client import request
    from .._debug import DebugTarget, gdb_command, ptrace_problem
    from .._server.protocol import Debug, MsgType
    from .._sockpath import resolve
    from .kill import parse_pid

    try:
        pid = parse_pid(args.target)
    except argparse.ArgumentTypeError as e:
        raise ClientError(f"{e} (without --core, TARGET is a program's pid)", ExitCode.USAGE) from None
    path = resolve(args.socket).path
    try:
        reply = request(path, Debug(pid), MsgType.DEBUG_INFO)
    except ClientError as e:
        if "unknown message type" in str(e):
            raise ClientError(f"the server at {path} is older than this command (it has no DEBUG "
                              "request): restart it with `sameprocess stop`") from None
        raise
    problem = ptrace_problem()
    if problem:
        error("gdb", f"warning: {problem}")
    target = DebugTarget(reply.pid, os.fsdecode(reply.executable), reply.r_debug, reply.bias)
    return gdb_command(target, args.gdb_args, gdb)


def _core_argv(args: argparse.Namespace, gdb: str) -> list[str]:
    from .._core import Core, CoreError, find_program
    from .._debug import core_command

    try:
        target = find_program(Core(args.core), args.target)
    except OSError as e:
        raise ClientError(f"{e.filename or args.core}: {e.strerror}") from None
    except CoreError as e:
        raise ClientError(str(e)) from None
    return core_command(target, args.core, args.gdb_args, gdb)

