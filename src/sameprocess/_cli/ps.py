"""`sameprocess ps`: list the programs of a space."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import time

from ._common import ExitCode


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "ps", parents=parents, help="list the programs running in the space",
        description="List the programs of a server's space: PID, the PID of the launcher that "
                    "started it ('-' once that launcher is gone), state (as in ps: R running, "
                    "S sleeping, T stopped, Z exited...), start time, the memory the space "
                    "records for it (MAPPED: its mappings; RSS: of those, what is in memory) "
                    "and command line.")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of objects (pid, launcher_pid, state, "
                             "start_time, mapped, rss, args, command)")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from .._client import request
    from .._server.protocol import ListPrograms, MsgType
    from .._sockpath import resolve

    reply = request(resolve(args.socket).path, ListPrograms(), MsgType.PROGRAMS)
    rows = [{
        "pid": p.pid,
        "launcher_pid": p.launcher_pid,
        "state": p.state,
        "start_time": p.start_time,
        "mapped": p.mapped,
        "rss": p.resident,
        "args": [os.fsdecode(a) for a in p.args],
        "command": " ".join(shlex.quote(os.fsdecode(a)) for a in p.args),
    } for p in reply.programs]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'PID':>8} {'LAUNCHER':>8} S {'STARTED':>8} {'MAPPED':>7} {'RSS':>7}  COMMAND")
        for row in rows:
            started = time.strftime("%H:%M:%S", time.localtime(row["start_time"]))
            launcher = row["launcher_pid"] if row["launcher_pid"] is not None else "-"
            print(f"{row['pid']:>8} {launcher:>8} {row['state']} {started:>8} "
                  f"{_size(row['mapped']):>7} {_size(row['rss']):>7}  {row['command']}")
        if reply.truncated:
            print("(more programs than one reply holds; list cut)")
    return ExitCode.OK


def _size(n: int) -> str:
    """Like ps: KiB below 10 MiB, then MiB, then GiB."""
    if n < 10 << 20:
        return f"{n >> 10}K"
    if n < 10 << 30:
        return f"{n >> 20}M"
    return f"{n >> 30}G"
