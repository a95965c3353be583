"""`sameprocess serve`: host a space on a Unix socket, in the foreground."""
from __future__ import annotations

import argparse

from ._common import ClientError, ExitCode
from .stop import seconds


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "serve", parents=parents, help="host a space on a Unix socket (foreground)",
        description="Host a space in this process and serve launchers on a Unix socket until "
                    "`sameprocess stop`, SIGTERM, SIGINT or SIGHUP.  The socket is created mode "
                    "0600 in a directory only you can enter (created 0700 if missing); a stale "
                    "socket left by a dead server is replaced, a live server is never displaced. "
                    "Only your own uid may connect.  Logs go to stderr (or --log-file).")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log every spawn, exit, hangup and kill")
    parser.add_argument("--log-file", metavar="FILE",
                        help="append the log to FILE instead of stderr")
    parser.add_argument("--grace", type=seconds, default=5.0, metavar="SECONDS",
                        help="when stopped by a signal: seconds between SIGTERM and SIGKILL "
                             "for running programs (default: 5)")
    parser.add_argument("--request-timeout", type=seconds, default=10.0, metavar="SECONDS",
                        help="drop a client that has not sent a whole request after SECONDS "
                             "(default: 10)")
    parser.add_argument("--no-reclaim", action="store_true",
                        help="do not record programs' memory: run them without the ledger's "
                             "filter, as before it (they may then exec set-ID binaries "
                             "without CAP_SYS_ADMIN; what they map stays after they exit)")
    parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    import logging
    import os
    import resource
    import signal
    import socket
    import sys

    from .. import _sockpath
    from .._server.server import Server

    where = _sockpath.resolve(args.socket)
    _setup_logging(args.verbose, args.log_file)
    log = logging.getLogger("sameprocess.server")
    _sockpath.check_length(where.path)
    _sockpath.private_directory(where.directory, create=True)
    starting = _hold_start_lock(where, started_by_launcher=args.ready_fd is not None)
    lock = _sockpath.open_lock(where.lock_path)
    if not _sockpath.try_lock(lock):
        holder = _sockpath.holder_pid(where.lock_path)
        raise ClientError(f"a server is already running at {where.path}"
                          + (f" (pid {holder})" if holder else ""))
    os.ftruncate(lock, 0)
    os.pwrite(lock, f"{os.getpid()}\n".encode(), 0)
    state = _sockpath.probe(where.path)
    if state == "live":
        raise ClientError(f"something else is listening at {where.path}; not taking it over")
    if state == "stale":
        log.info("removing the stale socket %s", where.path)
        os.unlink(where.path)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:   # one descriptor per launcher: take all we may
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    from .. import Space

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    # An ignored SIGCHLD (inherited from whoever started us) would make the
    # kernel reap programs before the space can collect their status.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    with Space(reclaim=not args.no_reclaim) as space:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            listener.bind(where.path)
        finally:
            os.umask(old)
        os.chmod(where.path, 0o600)
        listener.listen(socket.SOMAXCONN)
        server = Server(space, listener, where.path, request_timeout=args.request_timeout,
                        grace=args.grace, signal_fd=wake_r)
        log.info("serving on %s (pid %d)", where.path, os.getpid())
        if starting is not None:
            os.close(starting)      # launchers waiting on it now find us listening
        if args.ready_fd is not None:
            try:
                os.write(args.ready_fd, b"ready\n")
                os.close(args.ready_fd)
            except OSError:
                pass
        server.serve()
    signal.set_wakeup_fd(-1)
    os.close(lock)
    sys.stdout.flush()
    return ExitCode.OK


def _hold_start_lock(where, started_by_launcher: bool) -> int | None:
    """Take NAME.start until the socket listens, as an auto-starting launcher does.

    A `run` that finds no server takes this lock before starting one; holding
    it while we start makes such a `run` wait for us instead of racing a
    second server into "already running".  A server started by a launcher
    is covered by the lock its launcher holds (taking it here would wait on
    our own starter forever).
    """
    import fcntl

    from .. import _sockpath

    if started_by_launcher:
        return None
    fd = _sockpath.open_lock(where.start_lock_path)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _setup_logging(verbose: bool, log_file: str | None) -> None:
    import logging
    import os

    if log_file:
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        # backslashreplace: a file name that is not UTF-8 (argv[0] of a SPAWN)
        # must not make logging fail and write its traceback to stderr.
        handler = logging.StreamHandler(os.fdopen(fd, "a", buffering=1, encoding="utf-8",
                                                  errors="backslashreplace"))
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s sameprocess[%(process)d] %(levelname)s %(message)s"))
    root = logging.getLogger("sameprocess")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
