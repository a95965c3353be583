"""The wire protocol: round trips, strict validation, E2BIG bounds, framing with
real descriptors over socketpairs, and hypothesis fuzzing of both."""
from __future__ import annotations

import errno
import os
import signal
import socket
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sameprocess._server import protocol as P
from sameprocess._server.framing import FrameReader, FrameWriter, PeerClosed, send_frame


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def frame(mtype: int, payload: bytes = b"", *, magic=P.MAGIC, version=P.VERSION, flags=0,
          length: int | None = None) -> bytes:
    return P.HEADER.pack(magic, version, mtype, flags, len(payload) if length is None else length) + payload


SAMPLES = [
    P.Spawn([b"ls", b"-l"], [b"PATH=/bin", b"A="], b"/tmp", 0o027, frozenset({1, 2, 64}),
            {7: (1024, 4096), 3: (P.RLIM_INFINITY, P.RLIM_INFINITY)}, -5, frozenset({0, 2, 70})),
    P.Spawn([b"true"], [], b"/"),   # no CPU mask: the server keeps its own
    P.ListPrograms(),
    P.Kill(15, [1234, 5678]),
    P.Stop(2500),
    P.Started(4321),
    P.Exited(-9),
    P.Exited(255),
    P.Error(errno.ENOENT, "No such file or directory", b"nonexistent"),
    P.Programs([P.ProgramInfo(10, 20, "S", 1700000000.5, [b"a", b"b c"]),
                P.ProgramInfo(11, None, "T", 0.0, [b"x"])], truncated=True),
    P.Killed([(10, 0), (99, errno.ESRCH)]),
    P.Stopped(3),
    P.LauncherWarning("/usr/bin/x is set-user-ID; it runs with your rights"),
    P.Debug(4321),
    P.DebugInfo(4321, b"/usr/bin/prog", 0x7F0012345118, 0),
    P.DebugInfo(4322, b"/opt/static", 0, 0x7F0000000000),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.TYPE.name)
def test_round_trip(message):
    assert P.decode(message.encode()) == message


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.TYPE.name)
def test_every_truncation_is_a_protocol_error(message):
    data = message.encode()
    for cut in range(len(data)):
        with pytest.raises(P.ProtocolError):
            P.decode(data[:cut])


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.TYPE.name)
def test_trailing_bytes_are_a_protocol_error(message):
    data = message.encode()
    head = P.HEADER.unpack(data[:P.HEADER.size])
    longer = P.HEADER.pack(*head[:4], head[4] + 1) + data[P.HEADER.size:] + b"\0"
    with pytest.raises(P.ProtocolError):
        P.decode(longer)


@pytest.mark.parametrize("data, words", [
    (frame(1, magic=b"HTTP"), "bad magic"),
    (frame(2, version=P.VERSION + 1), f"unsupported protocol version {P.VERSION + 1}"),
    (frame(0x7f), "unknown message type"),
    (frame(2, flags=1), "reserved flags"),
    (frame(1, length=1 << 30), "exceeds the limit"),
    (frame(2, length=(64 << 10) + 1), "exceeds the limit"),
])
def test_bad_headers(data, words):
    with pytest.raises(P.ProtocolError, match=words):
        P.parse_header(data[:P.HEADER.size], frozenset(P.MsgType))


def test_direction_is_enforced():
    with pytest.raises(P.ProtocolError, match="unexpected STARTED"):
        P.decode(P.Started(5).encode(), P.REQUESTS)
    with pytest.raises(P.ProtocolError, match="unexpected SPAWN"):
        P.decode(SAMPLES[0].encode(), P.REPLIES)


def spawn_payload(argv=(b"ls",), env=(b"A=1",), cwd=b"/", umask=0o22, mask=0, rlimits=(), nice=0,
                  cpus=b"\1" + bytes(7)) -> bytes:
    enc = P.Encoder()
    enc.blobs(list(argv))
    enc.blobs(list(env))
    enc.blob(cwd)
    enc.u16(umask)
    enc.u64(mask)
    enc.u32(len(rlimits))
    for res, soft, hard in rlimits:
        enc.u8(res)
        enc.u64(soft)
        enc.u64(hard)
    enc.i32(nice)
    enc.blob(cpus)
    return enc.getvalue()


@pytest.mark.parametrize("kwargs, words", [
    (dict(argv=()), "argv is empty"),
    (dict(argv=(b"",)), "program name is empty"),
    (dict(argv=(b"l\0s",)), "NUL"),
    (dict(env=(b"NOEQUALS",)), "not NAME=VALUE"),
    (dict(env=(b"=value",)), "not NAME=VALUE"),
    (dict(env=(b"A=\0",)), "NUL"),
    (dict(cwd=b"relative/dir"), "not an absolute path"),
    (dict(cwd=b"/a\0b"), "NUL"),
    (dict(cwd=b"/" * 4096), "cwd is 4096 bytes long"),
    (dict(umask=0o1000), "umask"),
    (dict(mask=1 << (signal.SIGKILL - 1)), "cannot be ignored"),
    (dict(rlimits=((99, 1, 1),)), "unknown resource limit"),
    (dict(rlimits=((7, 2, 1),)), "soft 2 above hard 1"),
    (dict(rlimits=((7, 1, 1), (7, 1, 1))), "given twice"),
    (dict(rlimits=tuple((r, 1, 1) for r in range(17))), "17 items"),
    (dict(nice=-21), "nice -21 out of range"),
    (dict(nice=20), "nice 20 out of range"),
    (dict(cpus=b"\1" * 7), "CPU mask of 7 bytes"),
    (dict(cpus=bytes(8)), "with a CPU set"),
    (dict(cpus=bytes(1032)), "cpus is 1032 bytes long"),
])
def test_spawn_validation(kwargs, words):
    with pytest.raises(P.ProtocolError, match=words):
        P.decode(frame(P.MsgType.SPAWN, spawn_payload(**kwargs)))


def test_counts_are_checked_before_allocating():
    enc = P.Encoder()
    enc.u32(1 << 30)   # argv "count" far beyond what the payload holds
    with pytest.raises(P.ProtocolError, match="items"):
        P.decode(frame(P.MsgType.SPAWN, enc.getvalue()))
    with pytest.raises(P.ProtocolError, match="too short"):
        P.decode(frame(P.MsgType.SPAWN, struct.pack("!I", 1000) + b"\0" * 100))


@pytest.mark.parametrize("payload, words", [
    (struct.pack("!BI", 65, 1) + struct.pack("!I", 5), "invalid signal"),
    (struct.pack("!BI", 15, 0), "no pids"),
    (struct.pack("!BI", 15, 1) + struct.pack("!I", 0), "pid 0"),
    (struct.pack("!BI", 15, 5000), "5000 items"),
])
def test_kill_validation(payload, words):
    with pytest.raises(P.ProtocolError, match=words):
        P.decode(frame(P.MsgType.KILL, payload))


def test_exited_range():
    for rc in (-65, 256, 1 << 30):
        with pytest.raises(P.ProtocolError, match="impossible status"):
            P.decode(frame(P.MsgType.EXITED, struct.pack("!i", rc)))


# -- E2BIG, as execve --------------------------------------------------------------
def test_e2big_matches_execve():
    """The bounds agree with the kernel's own execve on this machine."""
    limit = P.MAX_ARG_STRLEN - 1
    subprocess.run(["/bin/true", "x" * limit], check=True)
    with pytest.raises(OSError) as kernel:
        subprocess.run(["/bin/true", "x" * (limit + 1)])
    assert kernel.value.errno == errno.E2BIG
    P.check_exec_sizes([b"true", b"x" * limit], [], 8 << 20)
    with pytest.raises(OSError) as ours:
        P.check_exec_sizes([b"true", b"x" * (limit + 1)], [], 8 << 20)
    assert ours.value.errno == errno.E2BIG


def test_e2big_total_follows_the_stack_limit():
    many = [b"y" * 1000] * 600       # ~600 KB: fine with 8 MiB of stack, not with 1 MiB
    P.check_exec_sizes([b"true"] + many, [], 8 << 20)
    with pytest.raises(OSError) as e:
        P.check_exec_sizes([b"true"] + many, [], 1 << 20)
    assert e.value.errno == errno.E2BIG
    with pytest.raises(OSError):
        P.check_exec_sizes([b"true"] + many * 20, [], P.RLIM_INFINITY)   # 6 MiB cap


def test_largest_valid_spawn_fits_the_frame_limit():
    limit = P.arg_limit(P.RLIM_INFINITY)
    env = [b"E=" + b"v" * (P.MAX_ARG_STRLEN - 4)] * (limit // (P.MAX_ARG_STRLEN + 8))
    P.check_exec_sizes([b"x"], env, P.RLIM_INFINITY)
    message = P.Spawn([b"x"], env, b"/" + b"d" * 4000)
    assert P.decode(message.encode()) == message


# -- hypothesis --------------------------------------------------------------------
arg = st.binary(max_size=64).filter(lambda b: b"\0" not in b)
env_entry = st.tuples(st.binary(min_size=1, max_size=16), st.binary(max_size=32)).map(
    lambda kv: kv[0].replace(b"=", b"_").replace(b"\0", b"_") + b"=" + kv[1].replace(b"\0", b"_"))
spawns = st.builds(
    P.Spawn,
    argv=st.lists(arg.filter(bool), min_size=1, max_size=8),
    env=st.lists(env_entry, max_size=8),
    cwd=st.binary(max_size=64).map(lambda b: b"/" + b.replace(b"\0", b"_")),
    umask=st.integers(0, 0o777),
    ignored=st.frozensets(st.integers(1, 64).filter(lambda s: s not in (9, 19))),
    rlimits=st.dictionaries(st.integers(0, 15), st.tuples(st.integers(0, P.RLIM_INFINITY),
                                                          st.integers(0, P.RLIM_INFINITY))
                            .map(lambda t: (min(t), max(t))), max_size=16),
)


@given(spawns)
def test_spawn_round_trip_fuzz(message):
    assert P.decode(message.encode()) == message


def decode_or_protocol_error(data: bytes) -> None:
    try:
        P.decode(data)
    except P.ProtocolError:
        pass


@given(st.binary(max_size=512))
def test_random_bytes_never_crash_the_decoder(data):
    decode_or_protocol_error(data)
    decode_or_protocol_error(P.MAGIC + bytes([P.VERSION]) + data)


@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_frames_never_crash_the_decoder(message, data):
    raw = bytearray(message.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    decode_or_protocol_error(bytes(raw))
    cut = data.draw(st.integers(0, len(raw)))
    decode_or_protocol_error(bytes(raw[:cut]) + data.draw(st.binary(max_size=16)))


# -- framing over real sockets -------------------------------------------------------
@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield a, b
    a.close()
    b.close()


def receive_all(reader: FrameReader, sock: socket.socket):
    while True:
        got = reader.receive(sock)
        if got is not None:
            return got


def test_descriptors_travel_with_spawn(pair, tmp_path):
    a, b = pair
    before = open_fds()
    files = [open(tmp_path / f"f{i}", "w+b") for i in range(3)]
    send_frame(a, SAMPLES[0], [f.fileno() for f in files])
    message, fds = receive_all(FrameReader(P.REQUESTS), b)
    assert message == SAMPLES[0] and len(fds) == 3
    for f, fd in zip(files, fds):
        assert os.path.samestat(os.fstat(f.fileno()), os.fstat(fd))
        assert not os.get_inheritable(fd)            # MSG_CMSG_CLOEXEC
        os.close(fd)
        f.close()
    assert open_fds() == before


def test_byte_at_a_time_and_back_to_back(pair):
    a, b = pair
    data = P.Started(7).encode() + P.Exited(3).encode()
    r, w = os.pipe()
    try:
        a.sendmsg([data[:1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", r))])
        for i in range(1, len(data)):
            a.send(data[i:i + 1])
        reader = FrameReader(P.REPLIES)
        started, fds = receive_all(reader, b)
        assert started == P.Started(7) and len(fds) == 1
        os.close(fds[0])
        assert receive_all(reader, b) == (P.Exited(3), [])
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("count", [0, 2])
def test_wrong_descriptor_count_closes_them(pair, count):
    a, b = pair
    before = open_fds()
    r, w = os.pipe()
    fds = [r, w][:count]
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{count}i", *fds))] if count else []
    a.sendmsg([SAMPLES[0].encode()], anc)
    os.close(r)
    os.close(w)
    with pytest.raises(P.ProtocolError, match="descriptors"):
        receive_all(FrameReader(P.REQUESTS), b)
    assert open_fds() == before


def test_too_many_descriptors_are_refused_and_closed(pair):
    a, b = pair
    before = open_fds()
    pipes = [os.pipe() for _ in range(4)]
    fds = [fd for p in pipes for fd in p]
    a.sendmsg([P.ListPrograms().encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                             struct.pack(f"{len(fds)}i", *fds))])
    for fd in fds:
        os.close(fd)
    with pytest.raises(P.ProtocolError, match="descriptors"):
        receive_all(FrameReader(P.REQUESTS), b)
    assert open_fds() == before


def test_peer_closing_mid_frame():
    before = open_fds()
    a, b = socket.socketpair()
    r, w = os.pipe()
    a.sendmsg([SAMPLES[0].encode()[:20]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                             struct.pack("3i", r, w, r))])
    os.close(r)
    os.close(w)
    a.close()
    with pytest.raises(PeerClosed) as e:
        receive_all(FrameReader(P.REQUESTS), b)
    b.close()
    assert e.value.partial
    assert open_fds() == before


def test_clean_close_between_frames(pair):
    a, b = pair
    a.close()
    with pytest.raises(PeerClosed) as e:
        FrameReader(P.REQUESTS).receive(b)
    assert not e.value.partial


def test_writer_survives_a_full_socket(pair):
    a, b = pair
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = P.Programs([P.ProgramInfo(i, i, "S", 0.0, [b"x" * 2000]) for i in range(1, 200)])
    writer = FrameWriter()
    r, w = os.pipe()
    os.close(w)
    writer.add(P.Started(1), [r])
    writer.add(big)
    assert writer.flush(a) is False          # the peer has not read yet
    with pytest.raises(OSError):
        os.fstat(r)                          # handed to the kernel, our copy closed
    reader = FrameReader(P.REPLIES)
    b.setblocking(False)
    got = []
    while len(got) < 2:
        writer.flush(a)
        try:
            item = reader.receive(b)
        except BlockingIOError:
            continue
        if item is not None:
            got.append(item)
    assert got[1][0] == big
    os.close(got[0][1][0])
    assert writer.flush(a)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.binary(min_size=1, max_size=64), max_size=8),
       with_fds=st.lists(st.booleans(), max_size=8))
def test_garbage_over_a_socket_never_leaks(chunks, with_fds):
    before = open_fds()
    a, b = socket.socketpair()
    try:
        r, w = os.pipe()
        for chunk, fds in zip(chunks, with_fds + [False] * len(chunks)):
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("2i", r, w))] if fds else []
            a.sendmsg([chunk], anc)
        os.close(r)
        os.close(w)
        a.close()
        reader = FrameReader(P.REQUESTS)
        try:
            while True:
                got = reader.receive(b)
                if got is not None:
                    for fd in got[1]:
                        os.close(fd)
        except (P.ProtocolError, PeerClosed):
            pass
    finally:
        b.close()
        a.close()
    assert open_fds() == before


@pytest.mark.parametrize("payload, reason", [
    (b"\0\0\0\1" + struct.pack("!I", 4) + b"prog" + b"\0" * 16, "absolute path"),
    (b"\0\0\0\1" + struct.pack("!I", 3) + b"/a\0" + b"\0" * 16, "NUL"),
])
def test_debug_info_rejects_a_bad_executable(payload, reason):
    with pytest.raises(P.ProtocolError, match=reason):
        P.decode(frame(P.MsgType.DEBUG_INFO, payload))


def test_debug_of_pid_0_is_a_protocol_error():
    with pytest.raises(P.ProtocolError, match="pid 0"):
        P.decode(frame(P.MsgType.DEBUG, struct.pack("!I", 0)))
