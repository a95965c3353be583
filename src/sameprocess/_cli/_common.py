"""What every verb shares: the --socket option, and turning errors into one line."""
from __future__ import annotations

import argparse
import sys

from .._client import ClientError, ExitCode
from .._sockpath import SocketPathError

__all__ = ["ClientError", "ExitCode", "parent_parser", "call", "error"]


def parent_parser() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--socket", metavar="PATH",
                        help="use the server at PATH (default: $SAMEPROCESS_SOCKET, else the "
                             "per-user default socket)")
    return parent


def error(verb: str, message: str) -> None:
    try:
        print(f"sameprocess {verb}: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def call(args: argparse.Namespace) -> int:
    """Run the verb's handler; user errors become one line on stderr and an exit code."""
    try:
        return int(args.handler(args))
    except ClientError as e:
        error(args.verb, str(e))
        return int(e.code)
    except SocketPathError as e:
        error(args.verb, str(e))
        return int(ExitCode.LAUNCH_FAILED if args.verb == "run" else ExitCode.FAILURE)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:       # e.g. `sameprocess ps | head -1`
        sys.stderr.close()
        return int(ExitCode.FAILURE)
