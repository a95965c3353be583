"""Hostile clients against a live server, with the server's own accounting.

Builds on tests/test_server_garbage.py (one malformed frame per case, the
request timeout) and tests/test_protocol.py (the decoder, framing on
socketpairs): here whole conversations are fuzzed (frames of both
directions, mutated, truncated, oversized, several on one connection, split
across sends, with any number and kind of descriptors on any chunk), and
SPAWN gets descriptors of every kind for stdin/stdout/stderr, compared with
what the same program does natively with the same descriptors.

After each test (and, for the fuzzed conversations, after every example) the
server must still serve a normal spawn, its descriptor count must come back
to exactly the baseline, and so must its mappings, with one bound found by
diffing /proc/PID/maps over 600 conversations: the number of anonymous
read-write mappings may drift by ANON_RW_DRIFT (2), because the server is a
Python process whose allocators map and unmap 1 MiB arenas and heap
segments as its objects come and go.  Every other mapping (program images,
stacks and their guards, reservations, files) must be exactly as it was.
Two more things are waited out, not allowed: a program's images are
unmapped lazily, a few milliseconds after its exit (the reaper's idle
work), so the comparison is retried until a deadline; and the first spawns
grow the server's malloc, so the baseline is taken after a warm-up.  The
programs run are a probe that maps nothing at run time
(tests/_protocol_fuzz.py): a libc program's heap segment stays by design
(docs/architecture.md).

CI: derandomized, no example database.  scripts/fuzz.py --protocol runs the
same conversations for longer.
"""
from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings, strategies as st

import _protocol_fuzz as Q
from _server_helpers import ServerProc, private_dir, wait_until
from sameprocess._server import protocol as P

# No shrinking: a failing example waits out settle()'s deadline each time it is tried.
CI_SETTINGS = settings(deadline=None, derandomize=True, database=None,
                       phases=[Phase.explicit, Phase.generate],
                       suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def exit_status(replies: list[P.Message]) -> int:
    """The return code of a SPAWN's replies: STARTED then EXITED, or EXITED
    alone (the program was reaped before the server could open a pidfd)."""
    kinds = [type(m) for m in replies]
    assert kinds in ([P.Started, P.Exited], [P.Exited]), replies
    return replies[-1].returncode


class Served:
    def __init__(self, server: ServerProc, probe: str, work: str) -> None:
        self.server, self.probe, self.work = server, probe, work
        self.spawn = P.Spawn([probe.encode()], [b"PATH=/bin"], b"/").encode()
        self.samples = [m.encode() for m in Q.sample_messages(probe)]
        self.baseline: Q.Accounting | None = None

    def accounting(self) -> Q.Accounting:
        return Q.Accounting(self.server.pid)

    def settle(self, what: str = "") -> None:
        """Wait (with a deadline) until the server is back at its baseline."""
        last: list[str] = []

        def back() -> bool:
            last[:] = self.accounting().differences(self.baseline)
            return not last
        try:
            wait_until(back, timeout=10)
        except AssertionError:
            raise AssertionError(f"the server did not return to its baseline {what}: {last}") from None

    def probe_run(self, kinds=("devnull",) * 3) -> list[P.Message]:
        return Q.converse(self.server.path, [(self.spawn, list(kinds))], Q.FdFactory(self.work), "launcher")

    def assert_unchanged(self) -> None:
        """Still serving; descriptors and mappings as at the baseline (module docstring)."""
        assert self.server.alive(), self.server.log()[-2000:]
        assert exit_status(self.probe_run()) == 0
        self.settle("after a normal spawn")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("proto-fuzz")
    probe = Q.build_probe(work)
    server = ServerProc(private_dir(work), "--request-timeout", "0.5")
    listening = Q.sockets(server.pid)         # before any connection
    state = Served(server, probe, str(work))
    for _ in range(20):                       # the server's malloc reaches its steady state
        state.probe_run()
    Q.converse(server.path, [(b"garbage" * 10, [])], Q.FdFactory(str(work)))
    wait_until(lambda: probe not in open(f"/proc/{server.pid}/maps").read(), what="the warm-up's reclaim")
    wait_until(lambda: Q.quiet(server.pid, listening), what="the warm-up's connections and pidfds to close")
    state.baseline = state.accounting()
    yield state
    server.stop()


# -- descriptors of every kind as stdio ---------------------------------------------------
def native_status(probe: str, kinds, work: str) -> int:
    """What the probe does natively with the same kinds of descriptors."""
    factory = Q.FdFactory(work)
    try:
        fds = [factory.make(k, None) for k in kinds]
        return subprocess.run([probe], stdin=fds[0], stdout=fds[1], stderr=fds[2], timeout=30).returncode
    finally:
        factory.close()


SPAWNABLE_KINDS = [k for k in Q.FD_KINDS if k != "the_connection"]


@pytest.mark.parametrize("kind", SPAWNABLE_KINDS)
def test_stdio_of_every_kind(served, kind):
    """stdin, stdout and stderr all of one kind: the program runs and ends
    as it does natively (EBADF, EISDIR, EINVAL, SIGPIPE...)."""
    status = exit_status(served.probe_run((kind,) * 3))
    assert status == native_status(served.probe, (kind,) * 3, served.work)
    served.assert_unchanged()


@settings(CI_SETTINGS, max_examples=300)
@given(kinds=st.tuples(*[st.sampled_from(SPAWNABLE_KINDS)] * 3))
def test_mixed_stdio(served, kinds):
    assert exit_status(served.probe_run(kinds)) == native_status(served.probe, kinds, served.work), kinds
    served.settle(str(kinds))


def test_the_connection_as_its_own_stdio(served):
    """The connection sent through itself: the program writes into it, so the
    server hears 'data after SPAWN' and hangs up (with our replies maybe
    still unread: then we see a reset, and no reply)."""
    replies = Q.converse(served.server.path, [(served.spawn, ["the_connection"] * 3)],
                         Q.FdFactory(served.work), "launcher")
    assert [type(m) for m in replies] in ([], [P.Started], [P.Started, P.Exited], [P.Exited]), replies
    served.assert_unchanged()


def test_a_program_name_that_is_not_utf8_is_logged(served):
    """Found by fuzzing: the log line of a failed SPAWN named a file that is
    not UTF-8, logging failed and wrote its traceback to the server's stderr
    instead, once per request; with stderr a pipe nobody reads (as here) the
    server blocked in write() after some 60 of them and served no one."""
    name = b"/nonexistent/\xff\xfeprogram"
    spawn = P.Spawn([name], [], b"/").encode()
    for _ in range(3):
        replies = Q.converse(served.server.path, [(spawn, ["devnull"] * 3)], Q.FdFactory(served.work), "launcher")
        assert [type(m) for m in replies] == [P.Error] and replies[0].filename == name, replies
    assert "/nonexistent/\\udcff\\udcfeprogram" in served.server.log()   # escaped, not lost
    assert_nothing_on_stderr(served)
    served.assert_unchanged()


def assert_nothing_on_stderr(served) -> None:
    """With --log-file, the server writes nothing to stderr (a logging error would)."""
    stderr = served.server.proc.stderr.fileno()
    os.set_blocking(stderr, False)
    try:
        said = os.read(stderr, 4096)
    except BlockingIOError:
        return
    raise AssertionError(f"the server wrote to its stderr: {said!r}")


# -- descriptor counts ---------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 1, 2, 4, 5, 8])
@pytest.mark.parametrize("where", ["first byte", "last byte"])
def test_wrong_descriptor_counts_on_spawn(served, count, where):
    """More than 3 is cut by the kernel (MSG_CTRUNC); fewer is refused once
    the frame is whole; descriptors on the frame's last byte count too."""
    data = served.spawn
    cut = 1 if where == "first byte" else len(data) - 1
    chunks = [(data[:cut], ["devnull"] * count if where == "first byte" else []),
              (data[cut:], ["devnull"] * count if where == "last byte" else [])]
    replies = Q.converse(served.server.path, chunks, Q.FdFactory(served.work))
    assert len(replies) == 1 and isinstance(replies[0], P.Error), replies
    assert "descriptors" in replies[0].message
    served.assert_unchanged()


@pytest.mark.parametrize("message", ["list", "kill", "started", "exited"])
def test_descriptors_on_frames_that_carry_none(served, message):
    data = {"list": P.ListPrograms(), "kill": P.Kill(0, [1]), "started": P.Started(1),
            "exited": P.Exited(0)}[message].encode()
    replies = Q.converse(served.server.path, [(data, ["eventfd", "directory"])], Q.FdFactory(served.work))
    assert len(replies) == 1 and isinstance(replies[0], P.Error), replies
    served.assert_unchanged()


# -- fuzzed conversations ---------------------------------------------------------------------
def _defuse_stop(stream: bytes) -> bytes:
    """A frame that reads as STOP would stop the server (that is its job)."""
    if len(stream) > 5 and stream[:5] == P.MAGIC + bytes([P.VERSION]) and stream[5] == P.MsgType.STOP:
        return stream[:5] + b"\x7f" + stream[6:]
    return stream


@st.composite
def conversations(draw, samples):
    frames = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 5)) == 0:
            frames.append(draw(st.binary(min_size=1, max_size=200)))
            continue
        frame = draw(st.sampled_from(samples))
        how = draw(st.sampled_from(Q.MUTATIONS))
        frames.append(Q.mutate(frame, how, draw(st.integers(0, 1 << 16)), draw(st.integers(0, 1 << 32))))
    stream = _defuse_stop(b"".join(frames))
    cuts = sorted(draw(st.lists(st.integers(1, max(len(stream) - 1, 1)), max_size=3, unique=True)))
    pieces = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)]) if stream[a:b]]
    kinds = st.lists(st.sampled_from(Q.FD_KINDS), max_size=5)
    return [(piece, draw(kinds)) for piece in pieces], draw(st.sampled_from(["half_close", "close"]))


@settings(CI_SETTINGS, max_examples=1500)
@given(data=st.data())
def test_fuzzed_conversations(served, data):
    chunks, ending = data.draw(conversations(served.samples))
    replies = Q.converse(served.server.path, chunks, Q.FdFactory(served.work), ending)
    event(" ".join(type(m).__name__ for m in replies) or "no reply")
    assert served.server.alive(), served.server.log()[-2000:]
    served.settle(f"after {chunks!r}")


def test_after_everything_a_normal_run_succeeds(served):
    """Last: a real launcher (the CLI) is served, then the count is exact again."""
    served.assert_unchanged()
    result = served.server.run(served.probe)
    assert (result.returncode, result.stdout, result.stderr) == (0, "probe\n", "probe\n")
    served.settle("after a run from the CLI")
    assert_nothing_on_stderr(served)
