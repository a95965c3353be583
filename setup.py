"""Builds the native core and the sharing runtime.

_native_core: the C files of _native/ plus the host architecture's assembly.
_runtime/_sameprocess_rt: the sharing runtime (registry, shared heap,
channels), loaded by the host and by CPython programs in a space; the same
sources are also archived as _runtime/libsameprocess.a for C and C++
programs to link (`sameprocess config --cflags --libs`).

Both are plain shared libraries loaded with ctypes (no Python API); they are
built as Extensions only so that pip compiles and installs them with the
package.

_launcher/: the `sameprocess` command itself, a small C executable (so that
`sameprocess run` starts no Python), compiled by the same build_ext step into
build/launcher/ and installed into the environment's bin/ as a script (copied
as it is: an executable has no #! line to adjust), for `pip install .` and
`pip install -e .` alike.  It runs the other verbs with
the interpreter that built it (SP_PYTHON: under pip's build isolation, still
the target environment's python).
"""
import json
import os
import platform
import shutil
import sys

from distutils.command.build_scripts import build_scripts
from distutils.errors import LinkError

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}

RUNTIME = "sameprocess._runtime._sameprocess_rt"
RUNTIME_SOURCES = [f"src/sameprocess/_runtime/{name}.c"
                   for name in ("block", "registry", "heap", "heap_repair", "cache", "channel")]
RUNTIME_FLAGS = ["-O2", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra"]

LAUNCHER_SOURCES = [f"src/sameprocess/_launcher/{name}.c" for name in ("launcher", "wire", "connect")]
LAUNCHER_FLAGS = ["-O2", "-Wall", "-Wextra"]
LAUNCHER_DIR = os.path.join("build", "launcher")


class BuildNative(build_ext):
    def build_extensions(self):
        self.compiler.src_extensions.append(".S")
        super().build_extensions()
        self.build_static_runtime()
        self.build_launcher()

    def build_launcher(self):
        """The `sameprocess` executable, into LAUNCHER_DIR (a script to install)."""
        python = json.dumps(sys.executable)   # a C string literal for any printable path
        objects = self.compiler.compile(LAUNCHER_SOURCES, output_dir=os.path.join(self.build_temp, "launcher"),
                                        macros=[("SP_PYTHON", python)], extra_postargs=LAUNCHER_FLAGS)
        try:    # static: it starts ~0.2 ms sooner and 20 idle launchers share more of it
            self.compiler.link_executable(objects, "sameprocess", output_dir=LAUNCHER_DIR,
                                          extra_postargs=["-static-pie"])
        except LinkError:   # no libc.a here (Debian: libc6-dev): dynamic works the same
            self.compiler.link_executable(objects, "sameprocess", output_dir=LAUNCHER_DIR)

    def build_static_runtime(self):
        """libsameprocess.a and a copy of include/ next to the runtime's
        shared library in the build tree (what a wheel installs)."""
        out_dir = os.path.dirname(self.get_ext_fullpath(RUNTIME))
        objects = self.compiler.compile(RUNTIME_SOURCES, output_dir=os.path.join(self.build_temp, "static"),
                                        include_dirs=["include"], extra_postargs=RUNTIME_FLAGS)
        self.compiler.create_static_lib(objects, "sameprocess", output_dir=out_dir)
        os.makedirs(os.path.join(out_dir, "include"), exist_ok=True)
        for header in ("sameprocess.h", "sameprocess.hpp"):
            shutil.copy(os.path.join("include", header), os.path.join(out_dir, "include", header))

    def copy_extensions_to_source(self):
        """Editable installs: the archive goes next to the sources too (the
        headers are found in include/ of the checkout)."""
        super().copy_extensions_to_source()
        built = os.path.dirname(os.path.join(self.build_lib, self.get_ext_filename(RUNTIME)))
        package_dir = self.get_finalized_command("build_py").get_package_dir("sameprocess._runtime")
        self.copy_file(os.path.join(built, "libsameprocess.a"), os.path.join(package_dir, "libsameprocess.a"))

    def get_export_symbols(self, ext):
        return []  # not a Python module: no PyInit_ symbol to export


class CopyExecutable(build_scripts):
    """Scripts are copied byte for byte: the only one is the launcher, an ELF
    file that distutils would try to read as text for its #! line."""

    def copy_scripts(self):
        self.mkpath(self.build_dir)
        outfiles = []
        for script in self.scripts:
            outfile = os.path.join(self.build_dir, os.path.basename(script))
            self.copy_file(script, outfile)
            os.chmod(outfile, 0o755)
            outfiles.append(outfile)
        return outfiles, outfiles


machine = platform.machine().lower()
if machine not in ARCHES:
    raise SystemExit(f"sameprocess supports x86_64 and aarch64, not {machine}")

native = Extension(
    "sameprocess._native_core",
    sources=[
        "src/sameprocess/_native/spawn.c",
        "src/sameprocess/_native/keeper.c",
        "src/sameprocess/_native/ledger.c",
        "src/sameprocess/_native/exec.c",
        f"src/sameprocess/_native/arch/{ARCHES[machine]}.S",
    ],
    # The child path must not touch the host thread's TLS canary or errno.
    extra_compile_args=["-O2", "-fno-stack-protector", "-Wall", "-Wextra"],
)

runtime = Extension(
    RUNTIME,
    sources=RUNTIME_SOURCES,
    include_dirs=["include"],
    extra_compile_args=RUNTIME_FLAGS,
)

setup(ext_modules=[native, runtime], cmdclass={"build_ext": BuildNative, "build_scripts": CopyExecutable},
      scripts=[os.path.join(LAUNCHER_DIR, "sameprocess")])
