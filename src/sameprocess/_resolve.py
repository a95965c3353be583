"""Which file to run: PATH lookup and #! scripts, as execvpe and the kernel do."""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Callable

from ._elf import ElfImage, cached_image
from ._errors import ExecError

MAX_SHEBANG = 256
MAX_SCRIPT_DEPTH = 4  # the kernel's BINPRM_MAX_RECURSION


@dataclass(frozen=True)
class Target:
    path: str           # absolute path of the ELF file to load
    argv: list[bytes]   # after #! rewriting
    execfn: bytes       # the name exec was called with (AT_EXECFN, comm)
    stat: os.stat_result  # of path, when it was found
    image: ElfImage | None  # its parse, if a file of that identity was parsed before


def _absolute(path: bytes, cwd: bytes | None) -> bytes:
    if path.startswith(b"/"):
        return path
    return os.path.join(cwd if cwd is not None else os.getcwdb(), path)


def _check_executable(path: bytes, shown: bytes) -> os.stat_result:
    """Raise as execve would: ENOENT, EACCES for directories and non-executables."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise type(e)(e.errno, e.strerror, os.fsdecode(shown)) from None
    if not stat.S_ISREG(st.st_mode) or not os.access(path, os.X_OK, effective_ids=True):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(shown))
    return st


def find(name: bytes, cwd: bytes | None,
         env_path: Callable[[], list[bytes]]) -> tuple[bytes, bytes, os.stat_result]:
    """(absolute path, name as exec'd, its stat) for `name`, searching PATH without a '/'."""
    if cwd is None:
        cwd = os.getcwdb()
    if b"/" in name:
        path = _absolute(name, cwd)
        return path, name, _check_executable(path, name)
    denied = None
    for directory in env_path():
        candidate = os.path.join(directory, name)
        try:
            st = _check_executable(_absolute(candidate, cwd), candidate)
        except PermissionError as e:
            denied = denied or e
        except (FileNotFoundError, NotADirectoryError):
            continue
        else:
            return _absolute(candidate, cwd), candidate, st
    if denied is not None:
        raise denied
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fsdecode(name))


def _shebang(path: bytes) -> tuple[bytes, bytes | None] | None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = os.pread(fd, MAX_SHEBANG, 0)
    finally:
        os.close(fd)
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].strip(b" \t")
    if not line:
        raise ExecError(errno.ENOEXEC, "empty #! line", os.fsdecode(path))
    interp, _, arg = line.replace(b"\t", b" ").partition(b" ")
    arg = arg.strip(b" ")
    return interp, (arg or None)


def resolve(file: bytes, argv: list[bytes], cwd: bytes | None,
            env_path: Callable[[], list[bytes]]) -> Target:
    """Find `file` and unwrap #! scripts into the ELF interpreter that runs them."""
    path, execfn, st = find(file, cwd, env_path)
    for _ in range(MAX_SCRIPT_DEPTH + 1):
        # A file parsed as ELF before, and unchanged since, is no script.
        image = cached_image(os.fsdecode(path), st)
        script = None if image is not None else _shebang(path)
        if script is None:
            return Target(os.fsdecode(path), argv, execfn, st, image)
        interp, arg = script
        argv = [interp] + ([arg] if arg else []) + [path] + argv[1:]
        try:
            path, _, st = find(interp if b"/" in interp else b"./" + interp, cwd, list)
        except (FileNotFoundError, PermissionError) as e:
            raise ExecError(e.errno, f"bad #! interpreter {os.fsdecode(interp)}: {e.strerror}",
                            os.fsdecode(execfn)) from None
    raise ExecError(errno.ELOOP, "too many levels of #! interpreters", os.fsdecode(execfn))
