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


class SetuidIgnoredWarning(UserWarning):
    """A set-user-ID or set-group-ID file was started with the caller's rights.

    Programs of a space share the host's memory, so they cannot take on
    another identity; the bit is ignored (see docs/threat-model.md).
    `filename` is the file exec'd.
    """

    def __init__(self, message: str, filename: str):
        super().__init__(message)
        self.filename = filename


def noexec(path: str, reason: str) -> ExecError:
    return ExecError(_errno.ENOEXEC, reason, path)
