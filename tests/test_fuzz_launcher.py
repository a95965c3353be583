"""The launcher (the native one, and the Python fallback) against a hostile server.

A fake server on a socket takes the launcher's SPAWN and answers with
replies that hypothesis draws: valid ones, then one mutated (bytes flipped,
truncated, extended, an oversized length, another type), optionally after a
valid STARTED that carries a pidfd of a real (already finished) process.
Whatever comes, the launcher must end within a timeout with the code the
protocol's own decoder (sameprocess._server.protocol) predicts, and say
why in one line on stderr (after one line per valid WARNING): 125 when
the program never started, 255 once it did and the server can no longer
tell its status, the code or signal of a valid EXITED, 125/126/127 for a
valid ERROR.  Never a crash, never a hang.

CI: derandomized, no example database.
"""
from __future__ import annotations

import array
import errno
import os
import signal
import socket
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from _server_helpers import clean_env, private_dir
from sameprocess._cli.run import native_launcher
from sameprocess._server import protocol as P
from sameprocess._server.codec import Decoder, ProtocolError
from sameprocess._server.framing import FrameReader, close_fds

LAUNCHER_TIMEOUT = 10.0
PROGRAM = "prog"
BEFORE = frozenset({P.MsgType.STARTED, P.MsgType.EXITED, P.MsgType.ERROR, P.MsgType.WARNING})
AFTER = frozenset({P.MsgType.EXITED})
# Signals whose default action stops or does nothing: the launcher cannot die
# by them, and exits 128+N instead.
NO_DEATH = {signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD, signal.SIGCONT,
            signal.SIGURG, signal.SIGWINCH}

CI_SETTINGS = settings(deadline=None, derandomize=True, database=None, max_examples=150,
                       phases=[Phase.explicit, Phase.generate],
                       suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# -- what the protocol says should happen ---------------------------------------------------
def expected(data: bytes, started: bool) -> tuple[int, int]:
    """(return code as subprocess reports it, lines on stderr) for a launcher
    that reads `data` and then EOF; `started`: a valid STARTED came first."""
    accept, pos, warnings = (AFTER if started else BEFORE), 0, 0
    while len(data) - pos >= P.HEADER.size:
        try:
            cls, length = P.parse_header(data[pos:pos + P.HEADER.size], accept)
        except ProtocolError:
            break
        if len(data) - pos - P.HEADER.size < length:
            break                               # EOF mid-frame
        payload = data[pos + P.HEADER.size:pos + P.HEADER.size + length]
        pos += P.HEADER.size + length
        if cls.FDS:                             # no descriptor rides on drawn frames
            break
        try:
            message = cls.decode_payload(Decoder(payload, cls.TYPE.name))
        except ProtocolError:
            break
        if isinstance(message, P.LauncherWarning):
            warnings += 1
        elif isinstance(message, P.Exited):
            return exit_of(message.returncode), warnings
        else:
            return error_code(message), warnings + 1
    return (255 if started else 125), warnings + 1


def exit_of(returncode: int) -> int:
    if returncode >= 0:
        return returncode
    return 128 - returncode if -returncode in NO_DEATH else returncode


def error_code(error: P.Error) -> int:
    if not error.filename:
        return 125
    return 127 if error.errno == errno.ENOENT else 126


# -- drawing replies --------------------------------------------------------------------------------
TEXT = st.text(st.characters(codec="utf-8"), max_size=60)
VALID_FRAMES = st.one_of(
    st.integers(-64, 255).map(lambda rc: P.Exited(rc).encode()),
    st.builds(lambda e, m, f: P.Error(e, m, f).encode(), st.sampled_from([errno.ENOENT, errno.EACCES, 0, 9999]),
              TEXT, st.binary(max_size=40)),
    TEXT.filter(lambda t: t and not any(map(P._is_control, t))).map(lambda t: P.LauncherWarning(t).encode()),
    st.integers(0, (1 << 32) - 1).map(lambda pid: P.Started(pid).encode()),
)


@st.composite
def mutated(draw) -> bytes:
    frame = bytearray(draw(VALID_FRAMES))
    how = draw(st.sampled_from(["flip", "truncate", "extend", "oversize", "retype", "length"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 4))):
            frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    elif how == "truncate":
        del frame[draw(st.integers(0, len(frame) - 1)):]
    elif how == "extend":
        frame += draw(st.binary(min_size=1, max_size=64))
    elif how == "oversize":            # a length over the limit, and that much data behind it
        length = draw(st.integers(P.Message.MAX_PAYLOAD + 1, 4 * P.Message.MAX_PAYLOAD))
        frame[8:12] = length.to_bytes(4, "big")
        frame += bytes(draw(st.integers(0, length)) % (256 << 10))
    elif how == "retype":
        frame[5] = draw(st.integers(0, 255))
    else:                              # a length that disagrees with the payload
        frame[8:12] = draw(st.integers(0, len(frame) + 16)).to_bytes(4, "big")
    return bytes(frame)


SCRIPTS = st.tuples(st.lists(VALID_FRAMES.filter(lambda f: f[5] == P.MsgType.WARNING), max_size=2), mutated())


# -- the fake server ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_server(tmp_path_factory):
    path = str(private_dir(tmp_path_factory.mktemp("fuzz_launcher")) / "fake.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    listener.settimeout(LAUNCHER_TIMEOUT)
    yield path, listener
    listener.close()


@pytest.fixture(scope="module")
def finished_pid():
    """A pid and pidfd of a process that has exited: the launcher's "program"."""
    child = subprocess.Popen(["/bin/true"])
    pidfd = os.pidfd_open(child.pid)
    child.wait()
    yield child.pid, pidfd
    os.close(pidfd)


@pytest.fixture(scope="module", params=["native", "python"])
def launcher(request) -> list[str]:
    """The command that starts a launcher: the native one, or the Python fallback."""
    if request.param == "native":
        return [native_launcher()]
    return [sys.executable, "-c", "import sys; import sameprocess._cli.run as run; run.native_launcher = "
            "lambda: None; from sameprocess._cli import main; sys.exit(main(sys.argv[1:]))"]


def converse(fake_server, launcher, chunks: list[tuple[bytes, list[int]]]) -> subprocess.CompletedProcess:
    """Start a launcher, take its SPAWN, send `chunks`, close; its result."""
    path, listener = fake_server
    launcher = subprocess.Popen(launcher + ["run", "--socket", path, PROGRAM], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
    try:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(LAUNCHER_TIMEOUT)
            reader = FrameReader(frozenset({P.MsgType.SPAWN}))
            while (got := reader.receive(conn)) is None:
                pass
            close_fds(got[1])
            try:
                for data, fds in chunks:
                    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
                    conn.sendmsg([data], rights, socket.MSG_NOSIGNAL)
            except (BrokenPipeError, ConnectionResetError):
                pass                    # the launcher saw enough and left
        _, err = launcher.communicate(timeout=LAUNCHER_TIMEOUT)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    return subprocess.CompletedProcess(launcher.args, launcher.returncode, "", err.decode("utf-8", "replace"))


def check(result: subprocess.CompletedProcess, want: tuple[int, int]) -> None:
    code, lines = want
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == lines and (not lines or result.stderr.endswith("\n")), result.stderr
    assert all(line.startswith("sameprocess") for line in result.stderr.splitlines()), result.stderr
    assert "Traceback" not in result.stderr


@CI_SETTINGS
@given(script=SCRIPTS)
def test_replies_before_the_program_started(fake_server, launcher, script):
    warnings, frame = script
    data = b"".join(warnings) + frame
    check(converse(fake_server, launcher, [(data, [])]), expected(data, started=False))


@CI_SETTINGS
@given(frame=st.one_of(mutated(), VALID_FRAMES))
def test_replies_after_the_program_started(fake_server, launcher, finished_pid, frame):
    pid, pidfd = finished_pid
    started = P.Started(pid).encode()
    check(converse(fake_server, launcher, [(started, [pidfd]), (frame, [])]), expected(frame, started=True))


@pytest.mark.parametrize("fds", [0, 2, 3])
def test_started_with_the_wrong_descriptors(fake_server, launcher, finished_pid, fds):
    """STARTED carries exactly one pidfd: none, two or three are a bad reply."""
    _, pidfd = finished_pid
    result = converse(fake_server, launcher, [(P.Started(1234).encode(), [pidfd] * fds)])
    check(result, (125, 1))
    assert "bad message from the server before starting prog" in result.stderr


def test_a_server_that_says_nothing_at_all(fake_server, launcher):
    result = converse(fake_server, launcher, [])
    check(result, (125, 1))
    assert result.stderr == "sameprocess run: the server closed the connection before starting prog\n"


@pytest.mark.parametrize("returncode, code", [(0, 0), (255, 255), (-signal.SIGKILL, -signal.SIGKILL),
                                              (-signal.SIGINT, -signal.SIGINT), (-33, -33),
                                              (-signal.SIGSTOP, 128 + signal.SIGSTOP),
                                              (-signal.SIGCHLD, 128 + signal.SIGCHLD)])
def test_exited_after_a_warning(fake_server, launcher, returncode, code):
    warning = P.LauncherWarning("prog is set-user-ID; it runs with your rights")
    frames = warning.encode() + P.Exited(returncode).encode()
    result = converse(fake_server, launcher, [(frames, [])])
    assert (result.returncode, result.stderr) == (
        code, "sameprocess: warning: prog is set-user-ID; it runs with your rights\n")


@pytest.mark.parametrize("error, code, stderr", [
    (P.Error(errno.ENOENT, "No such file or directory", b"prog"), 127, "sameprocess: prog: command not found\n"),
    (P.Error(errno.EACCES, "Permission denied", b"/x/prog"), 126, "sameprocess: /x/prog: Permission denied\n"),
    (P.Error(errno.EPROTO, "bad\nrequest", b""), 125, "sameprocess run: bad\\x0arequest\n"),
])
def test_errors_are_one_line(fake_server, launcher, error, code, stderr):
    result = converse(fake_server, launcher, [(error.encode(), [])])
    assert (result.returncode, result.stderr) == (code, stderr)
