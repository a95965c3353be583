"""`sameprocess run`: run a program in the space as if it were our own child."""
from __future__ import annotations

import argparse
import os
import signal

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


def native_launcher() -> str | None:
    """The native `sameprocess` command installed beside this package, if any.

    Only an ELF file counts: a `sameprocess` script left by an older install
    would run this Python launcher again.
    """
    import sysconfig

    path = os.path.join(sysconfig.get_path("scripts"), "sameprocess")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        return None
    return path if magic == b"\x7fELF" and os.access(path, os.X_OK) else None


def main(args: argparse.Namespace) -> int:
    """Exec the native launcher; the Python one is the fallback when there is
    none, or when exec refuses (a command line too long to start it: the
    Python launcher then says so as the native one would)."""
    from .._client import Launcher
    from .._sockpath import resolve

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ClientError("no program given (usage: sameprocess run [--socket PATH] [--] PROGRAM [ARGS...])",
                          ExitCode.USAGE)
    if not command[0]:
        raise ClientError(": command not found", ExitCode.NOT_FOUND)
    native = native_launcher()
    if native is not None:
        socket = ["--socket", args.socket] if args.socket else []
        # Python ignores these itself at startup; what it inherited is lost,
        # and the program gets them at default (as from the Python launcher).
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        try:
            os.execv(native, [native, "run", *socket, "--", *command])
        except OSError:
            pass
    return Launcher([os.fsencode(a) for a in command], resolve(args.socket)).run()
