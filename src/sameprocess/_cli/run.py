"""`sameprocess run`: run a program in the space as if it were our own child."""
from __future__ import annotations

import argparse
import os

from ._common import ClientError, ExitCode

DESCRIPTION = """\
Run PROGRAM with ARGS in the space of a server, looked up on this shell's
PATH, with this shell's stdin/stdout/stderr (the descriptors themselves:
terminals, pipes, files and sockets all work), current directory,
environment, umask, resource limits and ignored signals.  Signals sent to
`run` go to the program; Ctrl-Z stops both and `fg` resumes both.  The exit
status is the program's; if it died by a signal, `run` dies by the same
signal.  With no --socket and no $SAMEPROCESS_SOCKET, a default server is
started in the background when none is running (its log is beside its socket).

Exit status of `run` itself: 127 command not found, 126 not executable (or
not a program, or arguments too long), 125 no server could be reached or
started, 255 the server went away and the program's status was lost."""


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "run", parents=parents, help="run a program in the space, like a child of this shell",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [-h] [--socket PATH] [--] PROGRAM [ARGS...]")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="PROGRAM [ARGS...]",
                        help="the program and its arguments (after an optional --)")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from .._client import Launcher
    from .._sockpath import resolve

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ClientError("no program given (usage: sameprocess run [--socket PATH] [--] PROGRAM [ARGS...])",
                          ExitCode.USAGE)
    if not command[0]:
        raise ClientError(": command not found", ExitCode.NOT_FOUND)
    return Launcher([os.fsencode(a) for a in command], resolve(args.socket)).run()
