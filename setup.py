"""Builds the native core: one C file plus the host architecture's assembly.

The result is a plain shared library loaded with ctypes (it has no Python
API); it is built as an Extension only so that pip compiles and installs it
with the package.
"""
import platform

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


class BuildNative(build_ext):
    def build_extensions(self):
        self.compiler.src_extensions.append(".S")
        super().build_extensions()

    def get_export_symbols(self, ext):
        return []  # not a Python module: no PyInit_ symbol to export


machine = platform.machine().lower()
if machine not in ARCHES:
    raise SystemExit(f"sameprocess supports x86_64 and aarch64, not {machine}")

native = Extension(
    "sameprocess._native_core",
    sources=[
        "src/sameprocess/_native/spawn.c",
        f"src/sameprocess/_native/arch/{ARCHES[machine]}.S",
    ],
    # The child path must not touch the host thread's TLS canary or errno.
    extra_compile_args=["-O2", "-fno-stack-protector", "-Wall", "-Wextra"],
)

setup(ext_modules=[native], cmdclass={"build_ext": BuildNative})
