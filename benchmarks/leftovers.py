"""What stays in the space after a program exits, per run (map count, virtual size).

usage: python benchmarks/leftovers.py
"""
import subprocess, sys, os
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import _build
from sameprocess import Space, _mm
import tempfile
b = _build.Builder(os.environ.get("SAMEPROCESS_TEST_CACHE") or os.path.join(tempfile.gettempdir(), "sameprocess-bench"))
progs = {"C hello (glibc)": [b("hello.c")], "static-pie hello": [b("hello_static.c")],
         "C, 4 threads": [b("pthreads.c")], "C++ iostream/map": [b("cxx.cpp")],
         "CPython -c pass": [sys.executable, "-c", "pass"], "Go hello": [b("hello.go")]}
def fp():
    m = _mm.read_maps(); return len(m), sum(x.end-x.start for x in m)
print("| program | mappings left per run | virtual memory left per run |")
print("|---|---|---|")
with Space() as sp:
    for name, argv in progs.items():
        for _ in range(5): sp.run(argv, stdout=subprocess.DEVNULL)
        n = 40 if "Python" in name or "Go" in name else 200
        c0, s0 = fp()
        for _ in range(n): sp.run(argv, stdout=subprocess.DEVNULL, check=True)
        c1, s1 = fp()
        print(f"| {name} | {(c1-c0)/n:.2f} | {(s1-s0)/n/1024:,.0f} KiB |")
