"""The space from Python: two C++ programs share a std::string and an
std::unordered_map by pointer, and the host reads the string in place.

usage: python examples/space_demo.py
Compiles tests/programs/zc_producer.cpp and zc_consumer.cpp (g++, cached in
~/.cache/sameprocess/examples), runs the producer in a space and hands its
pointers to the consumer: nothing is copied or serialized.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import _build  # noqa: E402  (the tests' program builder)

from sameprocess import Space  # noqa: E402


def main() -> None:
    builder = _build.Builder(os.path.expanduser("~/.cache/sameprocess/examples"))
    producer_exe, consumer_exe = builder("zc_producer.cpp"), builder("zc_consumer.cpp")
    with Space() as space:
        producer = space.Popen([producer_exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        where = {}
        while (line := producer.stdout.readline()) != "waiting\n":
            key, _, value = line.strip().partition("=")
            where[key] = value
        print(f"producer (pid {producer.pid}) holds a std::string at {where['string_addr']} "
              f"and an unordered_map at {where['map_addr']}")

        consumer = space.run([consumer_exe, where["string_addr"], where["map_addr"]],
                             capture_output=True, text=True, check=True)
        print("consumer (a separate program) read them by pointer:")
        print("  " + consumer.stdout.strip().replace("\n", "\n  "))

        data = space.view(int(where["string_data"], 16), int(where["string_len"]))
        print(f"the host reads the string in place: {bytes(data[:26]).decode()}... ({len(data)} bytes, no copy)")
        del data  # the producer owns that memory; drop the view before it exits
        out, _ = producer.communicate("\n")
        print(f"producer exited with {producer.returncode}")


if __name__ == "__main__":
    main()
