"""`sameprocess stop`: stop a server and the programs in its space."""
from __future__ import annotations

import argparse

from ._common import ExitCode


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 86400 seconds")
    return value


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "stop", parents=parents, help="stop the server and its programs",
        description="Stop the server: it stops accepting requests and removes its socket, running "
                    "programs get SIGTERM and, after the grace period, SIGKILL; their launchers "
                    "report that as the program's fate.  Returns once the server is done.")
    parser.add_argument("--grace", type=seconds, default=5.0, metavar="SECONDS",
                        help="seconds between SIGTERM and SIGKILL (default: 5)")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from .._client import request
    from .._server.protocol import MsgType, Stop
    from .._sockpath import resolve

    where = resolve(args.socket)
    reply = request(where.path, Stop(round(args.grace * 1000)), MsgType.STOPPED)
    print(f"stopped the server at {where.path} ({reply.programs} programs were running)")
    return ExitCode.OK
