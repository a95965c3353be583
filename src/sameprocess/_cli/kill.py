"""`sameprocess kill`: signal programs of a space (and nothing else)."""
from __future__ import annotations

import argparse
import errno
import os
import signal

from ._common import ClientError, ExitCode, error


def parse_signal(text: str) -> int:
    """TERM, SIGTERM, sigterm or 15 (0 only checks that the programs exist)."""
    if text.isdigit():
        number = int(text)
        if number < 65:
            return number
        raise argparse.ArgumentTypeError(f"invalid signal number {text}")
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise argparse.ArgumentTypeError(f"unknown signal {text!r}") from None


def parse_pid(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 1 << 31:
        raise argparse.ArgumentTypeError(f"invalid pid {text!r}")
    return int(text)


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "kill", parents=parents, help="send a signal to programs of the space",
        description="Send SIGNAL (default TERM) to each PID, which must be a program of this "
                    "server's space: any other process is left alone and reported.")
    parser.add_argument("-s", "--signal", type=parse_signal, default=int(signal.SIGTERM),
                        metavar="SIGNAL", help="signal name or number (default: TERM)")
    parser.add_argument("pids", nargs="+", type=parse_pid, metavar="PID", help="a program's pid")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from .._client import request
    from .._server.protocol import MAX_KILL_PIDS, Kill, MsgType
    from .._sockpath import resolve

    if len(args.pids) > MAX_KILL_PIDS:
        raise ClientError(f"at most {MAX_KILL_PIDS} pids at once")
    pids = list(dict.fromkeys(args.pids))
    reply = request(resolve(args.socket).path, Kill(args.signal, pids), MsgType.KILLED)
    status = ExitCode.OK
    for pid, err in reply.results:
        if err:
            reason = "no such program in this space" if err == errno.ESRCH else os.strerror(err)
            error("kill", f"{pid}: {reason}")
            status = ExitCode.FAILURE
    return status
