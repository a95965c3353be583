"""Space: this process hosts an address space that programs are started into."""
from __future__ import annotations

import logging
import signal
import subprocess
import threading

from . import _mm, _runtime
from ._errors import SpaceError
from ._linkmap import link_map_biases, object_span
from ._popen import Popen, ProgramExit
from ._reaper import Reaper
from ._spawn import HostFacts, Launch, SpawnSpec, spawn

log = logging.getLogger("sameprocess")

_lock = threading.Lock()
_current: "Space | None" = None
_host: HostFacts | None = None  # the brk guard is per process and stays


def current_space() -> "Space | None":
    """The Space open in this process, if any."""
    return _current


class Space:
    """Host a shared address space in this process and run programs in it.

    A process has one address space, so at most one Space is open at a
    time: opening a second one raises SpaceError (close the first, or share
    it).  Closing a space kills (SIGKILL) and reaps the programs still
    running in it, so nothing outlives the `with` block.
    """

    def __init__(self, *, reclaim: bool = True) -> None:
        """reclaim: the default of Popen(reclaim=...) for this space's programs."""
        self.reclaim = bool(reclaim)
        self._reaper: Reaper | None = None
        self._live: dict[int, tuple[ProgramExit, Launch]] = {}
        self._live_lock = threading.Lock()
        self.extra_auxv: list[tuple[int, int]] = []
        self._runtime: _runtime.Block | None = None

    # -- lifetime -----------------------------------------------------------
    def open(self) -> "Space":
        global _current, _host
        with _lock:
            if _current is not None:
                raise SpaceError("this process already hosts an open Space; "
                                 "use that one (sameprocess.current_space()) or close it first")
            if _host is None:
                _host = HostFacts()
            self._host = _host
            self._vdso = _kernel_ranges()
            self._runtime = _runtime.open_block()
            self.extra_auxv.append((_runtime.AT_SAMEPROCESS, self._runtime.address))
            self._reaper = Reaper()
            _current = self
        return self

    def close(self) -> None:
        """Kill the programs still running, reap them, stop the reaper."""
        global _current
        if self._reaper is None:
            return
        with self._live_lock:
            exits = [program_exit for program_exit, _ in self._live.values()]
        for program_exit in exits:
            program_exit.send_signal(signal.SIGKILL)
        for program_exit in exits:
            program = program_exit.program()
            if program is not None:
                program.wait()
            else:  # dropped by a cycle collection: nobody will reap it
                program_exit.gone.wait()
        self._reaper.close()
        self._reaper = None
        self.extra_auxv.remove((_runtime.AT_SAMEPROCESS, self._runtime.address))
        self._runtime.close()
        with _lock:
            if _current is self:
                _current = None

    def __enter__(self) -> "Space":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._reaper is None

    @property
    def reclaims_memory(self) -> bool:
        """True when everything a program maps is recorded and unmapped when
        it exits; False where the kernel lacks what that needs (logged once:
        then only its loaded images are unmapped)."""
        host = getattr(self, "_host", _host)
        return host is not None and host.keeper is not None

    # -- programs -----------------------------------------------------------
    def Popen(self, args, *popen_args, **kwargs) -> Popen:  # noqa: N802 (mirrors subprocess)
        """Start a program; takes subprocess.Popen's arguments (see docs)."""
        if self._reaper is None:
            raise SpaceError("the space is not open (use `with Space() as space:`)")
        return Popen(self, args, *popen_args, **kwargs)

    def run(self, args, *, input=None, capture_output=False, timeout=None, check=False,
            **kwargs) -> subprocess.CompletedProcess:
        """subprocess.run, for a program in this space."""
        if input is not None:
            if kwargs.get("stdin") is not None:
                raise ValueError("stdin and input arguments may not both be used.")
            kwargs["stdin"] = subprocess.PIPE
        if capture_output:
            if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
                raise ValueError("stdout and stderr arguments may not be used with capture_output.")
            kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
        with self.Popen(args, **kwargs) as process:
            try:
                stdout, stderr = process.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                process.kill()
                exc.stdout, exc.stderr = process.communicate()
                raise
            except BaseException:
                process.kill()
                raise
            retcode = process.poll()
            if check and retcode:
                raise subprocess.CalledProcessError(retcode, process.args, output=stdout, stderr=stderr)
        return subprocess.CompletedProcess(process.args, retcode, stdout, stderr)

    def programs(self) -> list[Popen]:
        """The programs of this space that have not been reaped yet."""
        with self._live_lock:
            programs = [program_exit.program() for program_exit, _ in self._live.values()]
        return [program for program in programs if program is not None]

    def _launch_of(self, program: Popen) -> Launch | None:
        """The launch record of a live program (what _debug needs), or None."""
        with self._live_lock:
            entry = self._live.get(program.pid)
        return entry[1] if entry is not None and entry[0] is program._exit else None

    def _mappings(self, program: Popen) -> list[tuple[int, int]]:
        launch = self._launch_of(program)
        if launch is None:
            return []
        if launch.ledger is not None:
            return launch.ledger.mappings()
        return list(launch.regions.ranges)

    def _start(self, program: Popen, spec: SpawnSpec) -> None:
        launch = spawn(self._host, spec, self.extra_auxv)
        program_exit = program._exit  # only this: the space must not keep the Popen alive
        program.pid, program_exit.pidfd = launch.pid, launch.pidfd
        with self._live_lock:
            self._live[launch.pid] = (program_exit, launch)
        self._reaper.watch(launch.pidfd, lambda _status: self._on_exit(program_exit, launch))

    def _reap_here(self, program: Popen, timeout: float | None) -> bool | None:
        """Wait for program's exit in the calling thread and clean up after
        it here: True once done, False if it outlived timeout (it is the
        reaper thread's again), None if another thread (the reaper's, or a
        waiting one) has it already.
        Its Popen reaps it next (waitpid)."""
        reaper = self._reaper
        pidfd = program.pidfd
        if reaper is None or pidfd < 0:
            return None
        on_exit = reaper.claim(pidfd)
        if on_exit is None:
            return None
        if program._exit.gone.is_set():  # the number was closed and reused meanwhile
            reaper.watch(pidfd, on_exit)
            return None
        returncode = None
        try:
            returncode = reaper.reap_claimed(pidfd, timeout)
        finally:
            if returncode is None:  # timed out or interrupted: back to the thread
                reaper.watch(pidfd, on_exit)
        if returncode is None:
            return False
        on_exit(returncode)
        return True

    def _on_exit(self, program_exit: ProgramExit, launch: Launch) -> None:
        """Reaper thread (or a waiting one): give back the program's memory
        (the keeper reclaims everything the ledger holds for it; without a
        ledger entry, what the loader and its ld.so mapped), then report the
        exit.

        Done before the exit is reported, while the mm is quiet and the page
        tables just used are in cache.  Deferring it (to the next spawn, or
        an idle reaper) was measured a little faster on an idle machine and
        up to 1.5x slower under load, where the host's munmaps contend with
        the next program's ld.so for the mm.
        """
        try:
            self._runtime.program_exited(launch.pid)
            if launch.ledger is None:
                self._unmap_loaded_objects(launch)
        finally:
            try:
                if launch.ledger is not None:
                    launch.ledger.release()
                launch.regions.unmap()
            finally:  # whatever went wrong above, the exit is reported
                with self._live_lock:
                    self._live.pop(launch.pid, None)
                program_exit.exited()

    def _unmap_loaded_objects(self, launch: Launch) -> None:
        if launch.r_debug is None:
            return
        ours = launch.regions.ranges + self._vdso
        for index, bias in enumerate(link_map_biases(launch.r_debug)):
            if index == 0:
                span = _main_span(launch, bias)
            elif any(lo <= bias < hi for lo, hi in ours):
                continue  # ld.so (mapped by us) or the vDSO: no need to read its headers
            else:
                span = object_span(bias)
            if span is None or launch.regions.contains(*span):
                continue
            if any(lo < span[1] and span[0] < hi for lo, hi in self._vdso):
                continue
            _mm.munmap(span[0], span[1] - span[0])

    # -- memory -------------------------------------------------------------
    def view(self, address: int, length: int, *, writable: bool = True) -> memoryview:
        """A memoryview onto [address, address+length) of the space, no copy.

        The range must be mapped (readable, and writable unless
        writable=False); otherwise ValueError.  Like a raw pointer, the view
        is only valid while whoever owns that memory keeps it mapped.
        """
        address, length = int(address), int(length)
        if address <= 0 or length <= 0:
            raise ValueError(f"invalid range: address {address:#x}, length {length}")
        parts = _mm.covering(address, length, _mm.read_maps())
        if parts is None:
            raise ValueError(f"{address:#x}-{address + length:#x} is not mapped in the space")
        if any("r" not in m.perms for m in parts):
            raise ValueError(f"{address:#x}-{address + length:#x} is not readable")
        if writable and any("w" not in m.perms for m in parts):
            raise ValueError(f"{address:#x}-{address + length:#x} is read-only; "
                             "pass writable=False for a read-only view")
        return _mm.from_address(address, length, readonly=not writable)


def _main_span(launch: Launch, bias: int) -> tuple[int, int] | None:
    """The executable ld.so mapped (direct mode), from the headers in its
    first page: what ld.so mapped, even if the file changed after the spawn
    looked at it."""
    first = launch.main.loads[0]
    if first.offset != 0:
        return None
    return object_span(bias, header_at=bias + first.vaddr)


def _kernel_ranges() -> list[tuple[int, int]]:
    """The vDSO and friends: listed on link_map chains, never to be unmapped."""
    return [(m.start, m.end) for m in _mm.read_maps() if m.path.startswith("[v")]
