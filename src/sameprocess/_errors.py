"""Exceptions of the public API."""
import errno as _errno


class ExecError(OSError):
    """A program could not be started: its file is not something we can run.

    Carries an errno like the kernel's execve would (usually ENOEXEC) and a
    message naming the file and the reason.
    """

    def __init__(self, err: int, reason: str, filename: str | None = None):
        super().__init__(err, reason, filename)


class SpaceError(RuntimeError):
    """The space is not in a state that allows the operation."""


def noexec(path: str, reason: str) -> ExecError:
    return ExecError(_errno.ENOEXEC, reason, path)
