"""Where a server's socket lives, who may use it, and whether one is listening.

Resolution, first match wins: an explicit --socket, $SAMEPROCESS_SOCKET,
$XDG_RUNTIME_DIR/sameprocess/default.sock, /tmp/sameprocess-$UID/default.sock.
Only the last two are "default" sockets, which `run` may start a server for.

Beside the socket (same directory, same base name):
    NAME.lock    held (flock) by the server for as long as it serves: a live
                 server is never stolen, a socket file without a lock holder
                 is stale and is replaced;
    NAME.start   serialises auto-starts: one launcher starts the server, the
                 others wait on the lock and then find it live;
    NAME.log     the log of an auto-started server.
The directory must be a real directory owned by the user and closed to
everyone else (mode 0700), and the socket is created 0600.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat

SOCKET_ENV = "SAMEPROCESS_SOCKET"
DEFAULT_NAME = "default.sock"
SUN_PATH_MAX = 107          # sizeof(sun_path) - 1 for the NUL


class SocketPathError(Exception):
    """A user-facing problem with the socket, its directory or its lock."""


class SocketPath:
    """A socket path; `default` if chosen by the fallback rules, not by the user."""

    __slots__ = ("path", "default")

    def __init__(self, path: str, default: bool) -> None:
        self.path, self.default = path, default

    def __eq__(self, other) -> bool:
        return isinstance(other, SocketPath) and (self.path, self.default) == (other.path, other.default)

    def __repr__(self) -> str:
        return f"SocketPath({self.path!r}, default={self.default})"

    def _beside(self, suffix: str) -> str:
        base = self.path[:-5] if self.path.endswith(".sock") else self.path
        return base + suffix

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path)

    @property
    def lock_path(self) -> str:
        return self._beside(".lock")

    @property
    def start_lock_path(self) -> str:
        return self._beside(".start")

    @property
    def log_path(self) -> str:
        return self._beside(".log")


def resolve(explicit: str | None = None, environ=None) -> SocketPath:
    """The socket to use, by the rules in the module docstring."""
    environ = os.environ if environ is None else environ
    if explicit:
        return SocketPath(os.path.abspath(explicit), default=False)
    if environ.get(SOCKET_ENV):
        return SocketPath(os.path.abspath(environ[SOCKET_ENV]), default=False)
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        return SocketPath(os.path.join(runtime, "sameprocess", DEFAULT_NAME), default=True)
    return SocketPath(f"/tmp/sameprocess-{os.geteuid()}/{DEFAULT_NAME}", default=True)


def check_length(path: str) -> None:
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise SocketPathError(f"socket path {path} is too long for a Unix socket "
                              f"({len(os.fsencode(path))} bytes, at most {SUN_PATH_MAX})")


def private_directory(directory: str, create: bool) -> None:
    """Make sure `directory` is ours alone (creating it 0700 if asked and absent)."""
    if create:
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        except FileNotFoundError:
            raise SocketPathError(f"cannot create {directory}: its parent does not exist") from None
        except OSError as e:
            raise SocketPathError(f"cannot create {directory}: {e.strerror}") from None
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        raise SocketPathError(f"directory {directory} does not exist") from None
    except OSError as e:
        raise SocketPathError(f"cannot use directory {directory}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SocketPathError(f"{directory} is not a directory (a symbolic link or a file)")
    if st.st_uid != os.geteuid():
        raise SocketPathError(f"directory {directory} belongs to uid {st.st_uid}, not to you "
                              f"(uid {os.geteuid()}); refusing to use it")
    if st.st_mode & 0o077:
        raise SocketPathError(f"directory {directory} is open to other users (mode "
                              f"{stat.S_IMODE(st.st_mode):04o}); use one only you can enter "
                              f"(chmod 700 {directory})")


def open_lock(path: str) -> int:
    """Open (creating 0600) a lock file; never through a symbolic link."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise SocketPathError(f"cannot open lock file {path}: {e.strerror}") from None


def try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder_pid(lock_path: str) -> int | None:
    """The pid a server wrote into its lock file (informational only)."""
    try:
        with open(lock_path, "rb") as f:
            return int(f.read(32).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def probe(path: str) -> str:
    """'live' (something accepts connections), 'stale' (a dead socket) or 'absent'."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketPathError(f"{path} exists and is not a socket; refusing to touch it")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except ConnectionRefusedError:
        return "stale"
    except FileNotFoundError:
        return "absent"
    except OSError as e:
        if e.errno == errno.EAGAIN:     # listening, backlog full: alive
            return "live"
        raise SocketPathError(f"cannot connect to {path}: {e.strerror}") from None
    finally:
        sock.close()
    return "live"
