"""`sameprocess config`: build flags for programs that use the sharing runtime.

    cc prog.c $(sameprocess config --cflags --libs)
    c++ -std=c++17 prog.cpp $(sameprocess config --cflags --libs)

Prints the flags on one line, shell-quoted, like pkg-config; with neither
option, both.  The flags come from sameprocess._runtime.compile_flags().
"""
from __future__ import annotations

import argparse
import shlex

from ._common import ExitCode, error


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "config", parents=parents, help="print build flags for the sharing runtime",
        description="Print the flags that build a C or C++ program against the sharing runtime "
                    "(sameprocess.h, sameprocess.hpp, libsameprocess.a), on one line: "
                    "`cc prog.c $(sameprocess config --cflags --libs)`. With neither option, "
                    "prints both.")
    parser.add_argument("--cflags", action="store_true", help="print the compiler flags (-I...)")
    parser.add_argument("--libs", action="store_true",
                        help="print the linker flags (the static library, -pthread)")
    parser.add_argument("--include-dir", action="store_true",
                        help="print only the directory that holds sameprocess.h")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from .._errors import SpaceError
    from .._runtime import compile_flags, include_dir

    try:
        if args.include_dir:
            print(include_dir())
            return ExitCode.OK
        both = not (args.cflags or args.libs)
        print(shlex.join(compile_flags(cflags=args.cflags or both, libs=args.libs or both)))
    except SpaceError as exc:  # not built / not installed
        error("config", str(exc))
        return ExitCode.FAILURE
    return ExitCode.OK
