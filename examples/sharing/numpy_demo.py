"""A C producer and a Python/numpy consumer, both programs of one space.

usage: python examples/sharing/numpy_demo.py [COUNT]
"""
import sys
from pathlib import Path

from _compile import compile_example

import sameprocess


def main() -> None:
    count = sys.argv[1] if len(sys.argv) > 1 else "1000000"
    producer = compile_example("producer.c")
    consumer = str(Path(__file__).with_name("consumer.py"))
    with sameprocess.Space() as space:
        print(space.run([producer, count], capture_output=True, text=True, check=True).stdout, end="")
        print(space.run([sys.executable, consumer], capture_output=True, text=True, check=True).stdout, end="")


if __name__ == "__main__":
    main()
