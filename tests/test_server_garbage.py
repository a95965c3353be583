"""Hostile and broken clients on a live server: each bad connection is dropped
with a log line, nothing leaks (descriptors, half-made programs), and every
other client keeps being served."""
from __future__ import annotations

import os
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _server_helpers import ServerProc, private_dir, wait_readable, wait_until
from sameprocess._server import protocol as P
from sameprocess._server.framing import send_frame


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = ServerProc(private_dir(tmp_path_factory.mktemp("garbage")), "--request-timeout", "0.5")
    assert server.run("true").returncode == 0     # the space has made its one-time setup
    server.baseline = server.baseline_fds()
    yield server
    server.stop()


def connect(srv) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(srv.path)
    return s


def read_to_eof(s: socket.socket) -> bytes:
    """Everything the server says before it closes (it must close)."""
    data = b""
    while True:
        assert wait_readable(s.fileno()), "the server did not drop the connection"
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:       # it closed with our bytes unread
            chunk = b""
        if not chunk:
            return data
        data += chunk


def assert_healthy(srv, dropped_before: int) -> None:
    wait_until(lambda: srv.log().count("dropped connection") > dropped_before, what="the log line")
    result = srv.run("/bin/echo", "still serving")
    assert (result.returncode, result.stdout) == (0, "still serving\n")
    assert srv.ps() == []
    srv.settle_fds(srv.baseline)


def with_fds(n: int):
    r, w = os.pipe()
    fds = ([r, w] * 2)[:n]
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{n}i", *fds))], (r, w)


def spawn_frame(argv=(b"/bin/true",)) -> bytes:
    return P.Spawn(list(argv), [b"PATH=/bin"], b"/").encode()


CASES = {
    "random bytes": (b"\x13\x37 this is not a frame at all, not even close" * 3, 0, "bad magic"),
    "http": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, "bad magic"),
    "future version": (P.HEADER.pack(P.MAGIC, 9, 2, 0, 0), 0, "unsupported protocol version 9"),
    "oversized": (P.HEADER.pack(P.MAGIC, P.VERSION, 1, 0, 0xFFFFFFFF), 0, "exceeds the limit"),
    "out of order": (P.Started(5).encode(), 0, "unexpected STARTED"),
    "reply type": (P.Exited(0).encode(), 0, "unexpected EXITED"),
    "flags": (P.HEADER.pack(P.MAGIC, P.VERSION, 2, 0x8000, 0), 0, "reserved flags"),
    "list with fds": (P.ListPrograms().encode(), 2, "descriptors"),
    "spawn short of fds": (spawn_frame(), 1, "carries 1 descriptors, expected 3"),
    "spawn without fds": (spawn_frame(), 0, "carries 0 descriptors"),
    "NUL in argv": (spawn_frame([b"/bin/tr\0ue"]), 3, "NUL"),
    "trailing bytes": (P.Kill(15, [1]).encode()[:8] + struct.pack("!I", 10) + P.Kill(15, [1]).encode()[12:]
                       + b"\0", 0, "unexpected bytes"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_requests_are_dropped(srv, name):
    data, nfds, reason = CASES[name]
    dropped = srv.log().count("dropped connection")
    s = connect(srv)
    anc, pipe = with_fds(nfds) if nfds else ([], ())
    s.sendmsg([data], anc)
    for fd in pipe:
        os.close(fd)
    said = read_to_eof(s)
    s.close()
    reply = P.decode(said)                 # a protocol error, said once, then EOF
    assert isinstance(reply, P.Error) and reply.message.startswith("protocol error: ")
    assert reason in reply.message
    assert_healthy(srv, dropped)
    dropped_lines = [line for line in srv.log().splitlines() if "dropped connection" in line]
    assert reason in dropped_lines[-1]


def test_silent_peer_is_dropped_after_the_timeout(srv):
    dropped = srv.log().count("dropped connection")
    s = connect(srv)
    assert read_to_eof(s) == b""
    s.close()
    assert "no complete request within 0.5 s" in srv.log()
    assert_healthy(srv, dropped)


def test_half_a_header_then_silence(srv):
    dropped = srv.log().count("dropped connection")
    s = connect(srv)
    s.send(P.MAGIC)
    assert read_to_eof(s) == b""
    s.close()
    assert_healthy(srv, dropped)


@pytest.mark.parametrize("cut", [3, 12, 40])
def test_peer_vanishing_mid_request_leaks_nothing(srv, cut):
    dropped = srv.log().count("dropped connection")
    s = connect(srv)
    anc, pipe = with_fds(3)
    s.sendmsg([spawn_frame()[:cut]], anc)
    for fd in pipe:
        os.close(fd)
    s.close()
    wait_until(lambda: srv.log().count("dropped connection") > dropped, what="the drop")
    assert "connection closed in the middle of a request" in srv.log()
    assert_healthy(srv, dropped)


def test_data_after_spawn_hangs_up_the_program(srv, build):
    dropped = srv.log().count("dropped connection")
    s = connect(srv)
    r, w = os.pipe()
    send_frame(s, P.Spawn([build("sleeper.c").encode()], [], b"/"), [r, w, w])
    os.close(r)
    s.setblocking(True)
    header = s.recv(P.HEADER.size, socket.MSG_WAITALL)
    assert P.parse_header(header, P.REPLIES)[0] is P.Started
    s.send(b"chatter")                     # launchers say nothing after SPAWN
    s.close()
    os.close(w)
    wait_until(lambda: "data after SPAWN" in srv.log(), what="the log line")
    wait_until(lambda: srv.ps() == [], what="the hung-up program to go")
    assert_healthy(srv, dropped)


def test_a_good_client_is_served_while_a_bad_one_dawdles(srv):
    dawdler = connect(srv)
    dawdler.send(P.MAGIC + b"\x01")        # an incomplete header, held open
    result = srv.run("/bin/echo", "served")
    assert result.stdout == "served\n"
    dawdler.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(min_size=1, max_size=300),
    st.builds(lambda t, body: P.HEADER.pack(P.MAGIC, P.VERSION, t, 0, len(body)) + body,
              st.sampled_from([int(t) for t in P.MsgType if t != P.MsgType.STOP]),  # STOP would work
              st.binary(max_size=200)),
))
def test_fuzzed_frames_against_a_live_server(srv, data):
    s = connect(srv)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        read_to_eof(s)                     # whatever it answers, it must close
    finally:
        s.close()
    result = srv.cli("ps", "--json")
    assert result.returncode == 0


def test_after_the_fuzzing_nothing_leaked(srv):
    srv.settle_fds(srv.baseline)
    assert srv.alive()
