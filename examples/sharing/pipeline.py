"""The C++ pipeline: stage 1 builds a shared unordered_map and exits, stage 2
consumes it and frees it.  Nothing is copied or serialized between them.

usage: python examples/sharing/pipeline.py [TEXT_FILE]
"""
import sys
from pathlib import Path

from _compile import compile_example

import sameprocess


def main() -> None:
    text = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[2] / "README.md").read_bytes()
    build, report = compile_example("pipeline_build.cpp"), compile_example("pipeline_report.cpp")
    with sameprocess.Space() as space:
        first = space.run([build], input=text, capture_output=True, check=True)
        print(first.stdout.decode(), end="")
        second = space.run([report, "5"], capture_output=True, check=True)
        print(second.stdout.decode(), end="")


if __name__ == "__main__":
    main()
