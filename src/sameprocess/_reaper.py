"""One thread that learns of every program's exit as soon as it happens.

Each program's pidfd sits in an epoll set; a readable pidfd means the
program's last thread has exited, and waitid(P_PIDFD, WNOWAIT) reads its
status without reaping it: its memory can be given back at once, while the
zombie stays for its Popen to reap (waitpid, as subprocess does), so that
user code may still wait for it by pid as for any child.  Nothing here
ever calls wait(-1), which would steal other children's statuses from the
rest of the host (subprocess, multiprocessing...).

A thread that waits for one program may take it over (claim): it then
polls that pidfd and handles the exit itself.  Its caches are warm and
nothing has to be handed between threads (a wakeup and the GIL) after the
exit, which is most of what reaping costs once the program is gone.
"""
from __future__ import annotations

import logging
import os
import select
import threading
from typing import Callable

log = logging.getLogger("sameprocess")


LOST = 255  # the status of a program reaped by someone else, as a returncode


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
        """Call on_exit(returncode) from the reaper thread once the program is reaped.

        Watched and in the epoll set change together, under the lock: a
        claim() between the two would take the program and leave its pidfd
        in the set, and the thread would then spin on it, never reaping."""
        with self._lock:
            self._watched[pidfd] = on_exit
            self._epoll.register(pidfd, select.EPOLLIN)

    def claim(self, pidfd: int) -> Callable[[int], None] | None:
        """Take a watched program away from the thread: the caller now waits
        for its exit with reap_claimed() or hands it back with watch().
        None if the thread (or another caller) has it already."""
        with self._lock:
            on_exit = self._watched.pop(pidfd, None)
            if on_exit is not None:
                self._epoll.unregister(pidfd)
        return on_exit

    @staticmethod
    def reap_claimed(pidfd: int, timeout: float | None) -> int | None:
        """Wait up to timeout for a claimed program; its returncode once it
        has exited (the zombie stays for its Popen), None if it still runs."""
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(None if timeout is None else max(timeout * 1000, 0)):
            return None
        try:
            return status_to_returncode(os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT))
        except ChildProcessError:  # reaped by someone else already (os.waitpid(pid))
            return LOST

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
        with self._lock:
            # Not watched: a waiting thread claimed it after epoll reported it.
            # Not exited: the number now belongs to a newer program (the one
            # reported was claimed, reaped and its pidfd closed meanwhile).
            if pidfd not in self._watched:
                return
            try:
                result = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # reaped already: os.waitpid(pid), or SIGCHLD ignored
                result = None
            else:
                if result is None:
                    return
            self._epoll.unregister(pidfd)
            on_exit = self._watched.pop(pidfd)
        try:
            on_exit(status_to_returncode(result) if result is not None else LOST)
        except Exception:  # a bug in cleanup must not stop reaping the others
            log.exception("sameprocess: error while cleaning up after a program")

    def close(self) -> None:
        self._closing = True
        os.eventfd_write(self._wake, 1)
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self._epoll.close()
        os.close(self._wake)
