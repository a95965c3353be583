"""One thread that reaps every program of the space as soon as it exits.

Each program's pidfd sits in an epoll set; a readable pidfd means the
program has exited, and waitid(P_PIDFD) collects exactly that program.
Nothing here ever calls wait(-1), which would steal other children's
statuses from the rest of the host (subprocess, multiprocessing...).
"""
from __future__ import annotations

import logging
import os
import select
import threading
from typing import Callable

log = logging.getLogger("sameprocess")


def status_to_returncode(result: os.waitid_result) -> int:
    if result.si_code == os.CLD_EXITED:
        return result.si_status
    return -result.si_status  # CLD_KILLED or CLD_DUMPED


class Reaper:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._watched: dict[int, Callable[[int], None]] = {}
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="sameprocess-reaper", daemon=True)
        self._thread.start()

    def watch(self, pidfd: int, on_exit: Callable[[int], None]) -> None:
        """Call on_exit(returncode) from the reaper thread once the program is reaped."""
        with self._lock:
            self._watched[pidfd] = on_exit
        self._epoll.register(pidfd, select.EPOLLIN)

    def reap_now(self, pidfd: int) -> int:
        """Reap a program that never started (its child path failed)."""
        return status_to_returncode(os.waitid(os.P_PIDFD, pidfd, os.WEXITED))

    def _run(self) -> None:
        while True:
            for fd, _ in self._epoll.poll():
                if fd == self._wake:
                    if self._closing:
                        return
                    os.eventfd_read(self._wake)
                    continue
                self._collect(fd)

    def _collect(self, pidfd: int) -> None:
        try:
            result = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            result = None  # someone else reaped it (SIGCHLD ignored?): status unknown
        if result is None and pidfd in self._watched:
            # Readable but not yet waitable cannot happen for an exited child;
            # a None here means the status was taken elsewhere.
            log.error("sameprocess: exit status of a program was lost (is SIGCHLD ignored?)")
        self._epoll.unregister(pidfd)
        with self._lock:
            on_exit = self._watched.pop(pidfd)
        try:
            on_exit(status_to_returncode(result) if result is not None else 255)
        except Exception:  # a bug in cleanup must not stop reaping the others
            log.exception("sameprocess: error while cleaning up after a program")

    def close(self) -> None:
        self._closing = True
        os.eventfd_write(self._wake, 1)
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self._epoll.close()
        os.close(self._wake)
