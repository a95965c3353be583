"""Compiles the test programs in tests/programs/ into a content-addressed cache.

    builder = Builder(cache_dir)
    path = builder("hello.c")                          # default build
    path = builder("auxv.c", flags=["-static-pie"], name="auxv_static")
    path = builder.program("nonpie")                   # a named variant

Each build lives in its own directory, ``<cache>/<name>-<key>/<name>``, where
the key hashes everything that decides the output: the sources (and the local
headers for C/C++), the command line and the compiler's version.  A second
request with the same inputs returns the same path without compiling.  Builds
are written to a temporary directory and renamed into place, so a build that
failed or was interrupted never looks like a cached one.

Failures raise BuildError (the message has the command and the compiler's
stderr); a compiler that is not installed raises ToolMissing, whose message
names the Debian package to install.  Nothing here depends on pytest, so the
benchmarks can build the same programs.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"

# The fixed address nonpie.c is linked at (see its header comment).
NONPIE_ADDRESS = 0x10000000

C_FLAGS = ("-O2", "-g", "-Wall", "-Wextra")
CXX_FLAGS = C_FLAGS + ("-std=c++17",)
RUST_FLAGS = ("-O", "--edition=2021")
GO_FLAGS = ("-buildmode=pie",)

# Debian packages that provide each tool (scripts/bootstrap.sh installs them).
TOOL_PACKAGES = {
    "gcc": "gcc",
    "g++": "g++",
    "rustc": "rustc",
    "go": "golang-go",
}

COMPILE_TIMEOUT = 900  # seconds; a first Go build compiles its runtime


@dataclass(frozen=True)
class Defaults:
    """How a program is built when the caller passes no flags of its own."""

    flags: tuple[str, ...] = ()
    # Always added at the end of the link line, whatever the flags.
    libs: tuple[str, ...] = ()
    # Shared libraries built first: path relative to the executable -> source.
    shared_libs: dict[str, str] = field(default_factory=dict)


DEFAULTS = {
    "dbg_crash.c": Defaults(libs=("-pthread",)),
    "dbg_threads.c": Defaults(libs=("-pthread",)),
    "hello_static.c": Defaults(flags=("-static-pie",)),
    "nonpie.c": Defaults(flags=("-no-pie", f"-Wl,-Ttext-segment={NONPIE_ADDRESS:#x}")),
    "origin_main.c": Defaults(
        flags=("-Wl,-rpath,$ORIGIN/lib", "-Wl,--enable-new-dtags"),
        shared_libs={"lib/liborigin.so": "origin_lib.c"},
    ),
    "procstate.c": Defaults(libs=("-lm",)),
    "pthreads.c": Defaults(libs=("-pthread",)),
    "threads_malloc.c": Defaults(libs=("-pthread",)),
}

# Named variants for builder.program(): name -> (source, flags).
VARIANTS = {
    "auxv_static": ("auxv.c", ("-static-pie",)),
    "hello_static": ("hello_static.c", ("-static-pie",)),
    "nonpie": ("nonpie.c", DEFAULTS["nonpie.c"].flags),
    "origin_main": ("origin_main.c", DEFAULTS["origin_main.c"].flags),
}

# Programs that use the sharing runtime (sameprocess.h, libsameprocess.a):
# runtime_libs() is added to their link line, like Defaults.libs.
RUNTIME_PREFIX = "rt_"

# The library sources: built by their main program, never on their own.
LIBRARY_SOURCES = {"origin_lib.c", "dbg_plugin.c"}
HEADER_SUFFIXES = {".h", ".hpp"}


class BuildError(Exception):
    """A program failed to compile; the message carries the compiler output."""


class ToolMissing(BuildError):
    """The compiler for a source is not installed."""


def program_sources() -> list[str]:
    """Every buildable source in tests/programs/, sorted."""
    suffixes = {".c", ".cpp", ".rs", ".go"}
    return sorted(
        p.name
        for p in PROGRAMS_DIR.iterdir()
        if (p.suffix in suffixes) and (p.name not in LIBRARY_SOURCES)
    )


def default_name(source: Path) -> str:
    """The executable's name: the stem for C/C++, stem_rs / stem_go for Rust
    and Go (hello.c, hello.rs and hello.go are three programs)."""
    if source.suffix in {".rs", ".go"}:
        return f"{source.stem}_{source.suffix[1:]}"
    return source.stem


class Builder:
    """Builds programs into cache_dir; callable as builder(source, ...)."""

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.cache_dir = Path(cache_dir).resolve()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._versions: dict[str, str] = {}

    # -- public API ---------------------------------------------------------

    def __call__(
        self,
        source: str | os.PathLike[str],
        flags: list[str] | tuple[str, ...] | None = None,
        name: str | None = None,
        shared_libs: dict[str, str] | None = None,
    ) -> str:
        """Absolute path of the executable built from ``source``.

        source: a file name in tests/programs/, or a path to any source file.
        flags: extra compiler flags; None means the program's DEFAULTS entry
            (so build("nonpie.c") is the fixed-address build), a list replaces
            them (build("auxv.c", flags=["-static-pie"])).
        name: the executable's file name (default: default_name(source)).
        shared_libs: {relative path: library source} built first with
            -shared -fPIC and linked in; None means the DEFAULTS entry.
        """
        src = self._resolve(source)
        defaults = DEFAULTS.get(src.name, Defaults()) if src.parent == PROGRAMS_DIR else Defaults()
        if src.name.startswith(RUNTIME_PREFIX):
            defaults = Defaults(defaults.flags, defaults.libs + runtime_libs(), defaults.shared_libs)
        chosen_flags = tuple(defaults.flags if flags is None else flags)
        libs = dict(defaults.shared_libs if shared_libs is None else shared_libs)
        exe_name = name or default_name(src)
        if ("/" in exe_name) or (exe_name in {"", ".", ".."}):
            raise ValueError(f"invalid program name {exe_name!r}")

        kind = src.suffix
        if kind not in {".c", ".cpp", ".rs", ".go"}:
            raise ValueError(f"cannot build {src.name}: unknown source type {kind!r}")
        if libs and (kind not in {".c", ".cpp"}):
            raise ValueError("shared_libs is supported for C and C++ programs only")

        tool = {".c": "gcc", ".cpp": "g++", ".rs": "rustc", ".go": "go"}[kind]
        key = self._key(tool, src, chosen_flags, defaults.libs, libs, exe_name)
        final_dir = self.cache_dir / f"{exe_name}-{key}"
        exe = final_dir / exe_name
        if exe.is_file():
            return str(exe)

        work = Path(tempfile.mkdtemp(prefix=f".{exe_name}-", dir=self.cache_dir))
        try:
            lib_paths = [self._build_shared_lib(tool, work, rel, lib_src) for rel, lib_src in sorted(libs.items())]
            out = work / exe_name
            if tool in {"gcc", "g++"}:
                base = C_FLAGS if tool == "gcc" else CXX_FLAGS
                cmd = [tool, *base, *chosen_flags, "-o", str(out), str(src), *lib_paths, *defaults.libs]
                self._run(cmd, src.name, cwd=work)
            elif tool == "rustc":
                self._run([tool, *RUST_FLAGS, *chosen_flags, "-o", str(out), str(src)], src.name, cwd=work)
            else:
                cmd = [tool, "build", *GO_FLAGS, *chosen_flags, "-o", str(out), str(src)]
                self._run(cmd, src.name, cwd=work, env=self._go_env())
            if not out.is_file():
                raise BuildError(f"compiling {src.name} reported success but wrote no {out.name}")
            try:
                work.rename(final_dir)
            except OSError:
                if not exe.is_file():  # not a concurrent build of the same key
                    raise
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        return str(exe)

    def program(self, name: str) -> str:
        """A variant from VARIANTS, or a source's default build by its name
        (default_name: "hello", "hello_rs", "nonpie"...)."""
        if name in VARIANTS:
            source, flags = VARIANTS[name]
            return self(source, flags=list(flags), name=name)
        for source in program_sources():
            if default_name(Path(source)) == name:
                return self(source)
        raise KeyError(f"no test program or variant named {name!r}")

    def all(self) -> dict[str, str]:
        """Build every program (default builds) and every variant: name -> path."""
        built = {default_name(Path(source)): self(source) for source in program_sources()}
        for variant in VARIANTS:
            built[variant] = self.program(variant)
        return built

    # -- internals ----------------------------------------------------------

    @staticmethod
    def _resolve(source: str | os.PathLike[str]) -> Path:
        path = Path(source)
        if not path.is_absolute():
            path = PROGRAMS_DIR / path
        if not path.is_file():
            raise BuildError(f"no such source file: {path}")
        return path.resolve()

    def _tool_version(self, tool: str) -> str:
        if tool not in self._versions:
            if shutil.which(tool) is None:
                raise ToolMissing(
                    f"{tool} not found on PATH: install the Debian package "
                    f"{TOOL_PACKAGES[tool]} (scripts/bootstrap.sh installs it)"
                )
            args = {"go": ["go", "version"], "rustc": ["rustc", "-vV"]}.get(tool, [tool, "--version"])
            env = self._go_env() if tool == "go" else None
            proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
            if proc.returncode != 0:
                raise BuildError(f"`{' '.join(args)}` failed:\n{proc.stderr}")
            self._versions[tool] = f"{shutil.which(tool)}\n{proc.stdout}"
        return self._versions[tool]

    def _key(self, tool, src, flags, libs, shared_libs, exe_name) -> str:
        inputs = {
            "tool": self._tool_version(tool),
            "flags": list(flags),
            "libs": list(libs),
            "name": exe_name,
            "source": (src.name, _digest(src)),
            "shared_libs": {rel: _digest(self._resolve(lib)) for rel, lib in sorted(shared_libs.items())},
        }
        if tool in {"gcc", "g++"}:
            inputs["headers"] = {
                p.name: _digest(p) for p in sorted(src.parent.iterdir()) if p.suffix in HEADER_SUFFIXES
            }
        blob = json.dumps(inputs, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def _build_shared_lib(self, tool: str, work: Path, rel: str, lib_source: str) -> str:
        out = (work / rel).resolve()
        if work.resolve() not in out.parents:
            raise ValueError(f"shared library path {rel!r} escapes the build directory")
        out.parent.mkdir(parents=True, exist_ok=True)
        src = self._resolve(lib_source)
        base = C_FLAGS if tool == "gcc" else CXX_FLAGS
        # The soname makes DT_NEEDED the bare file name, not this build path.
        cmd = [tool, *base, "-shared", "-fPIC", f"-Wl,-soname,{out.name}", "-o", str(out), str(src)]
        self._run(cmd, src.name, cwd=work)
        return str(out)

    def _go_env(self) -> dict[str, str]:
        """Keep Go's caches inside the cache dir and Go off the network."""
        go_root = self.cache_dir / "go"
        env = dict(os.environ)
        env.update(
            GOCACHE=str(go_root / "cache"),
            GOPATH=str(go_root / "path"),
            GOENV="off",
            GOFLAGS="",
            GOPROXY="off",
            GOTOOLCHAIN="local",
            GO111MODULE="off",
        )
        return env

    @staticmethod
    def _run(cmd: list[str], what: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ if env is None else env)
        env["LC_ALL"] = "C"
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
        except FileNotFoundError as exc:
            raise ToolMissing(f"{cmd[0]} not found: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise BuildError(f"compiling {what} took more than {COMPILE_TIMEOUT} s:\n$ {_quote(cmd)}") from exc
        if proc.returncode != 0:
            raise BuildError(
                f"compiling {what} failed (exit {proc.returncode}):\n$ {_quote(cmd)}\n{proc.stderr}{proc.stdout}"
            )


def runtime_libs() -> tuple[str, ...]:
    """Header path, archive and a digest of both (so the cache never serves a
    program built against an older runtime), found without importing
    sameprocess: the installed package's _runtime/, and include/ there or in
    the checkout (editable install)."""
    import importlib.util

    spec = importlib.util.find_spec("sameprocess")
    if spec is None or spec.origin is None:
        raise BuildError("sameprocess is not installed: the rt_ programs link its runtime")
    runtime = Path(spec.origin).resolve().parent / "_runtime"
    include = next((d for d in (runtime / "include", runtime.parents[2] / "include")
                    if (d / "sameprocess.h").is_file()), None)
    archive = runtime / "libsameprocess.a"
    if include is None or not archive.is_file():
        raise BuildError(f"the sharing runtime is not built in {runtime}: pip install -e .")
    digest = hashlib.sha256()
    for path in (archive, include / "sameprocess.h", include / "sameprocess.hpp"):
        digest.update(path.read_bytes())
    return (f"-I{include}", str(archive), "-pthread", f"-DSP_RUNTIME_DIGEST={digest.hexdigest()[:16]}")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _quote(cmd: list[str]) -> str:
    return " ".join(shlex.quote(part) for part in cmd)
