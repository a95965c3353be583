"""Ping-pong between two C programs over sameprocess channels.

usage: python examples/sharing/pingpong.py [ROUNDS]
"""
import subprocess
import sys

from _compile import compile_example

import sameprocess


def main() -> None:
    rounds = sys.argv[1] if len(sys.argv) > 1 else "100000"
    exe = compile_example("pingpong.c")
    with sameprocess.Space() as space:
        pong = space.Popen([exe, "pong"], stdout=subprocess.PIPE, text=True)
        print(space.run([exe, "ping", rounds], capture_output=True, text=True, check=True).stdout, end="")
        print(pong.communicate(timeout=60)[0], end="")


if __name__ == "__main__":
    main()
