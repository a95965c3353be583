"""Security of the server and the space (docs/threat-model.md): peers of
another uid on either side of the socket, the socket's directory and files,
E2BIG on every path, set-user-ID files run with the caller's rights (and a
warning), and what a client's request can make the server do.

Tests that need a second uid run as root: a forked child takes an unused
uid (real, effective and saved) *before* it connects or listens, since
SO_PEERCRED reports the credentials of connect() and listen().
"""
from __future__ import annotations

import errno
import grp
import os
import pwd
import select
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import pytest

from _server_helpers import (  # noqa: F401  (fixtures)
    SP, TIMEOUT, ServerProc, clean_env, private_dir, server, sockdir, wait_readable,
)
from sameprocess import SetuidIgnoredWarning
from sameprocess._cli import main as cli_main
from sameprocess._client import ClientError, send_request
from sameprocess._server import framing, protocol as P
from sameprocess._cli import run as _run_verb  # noqa: F401  (imported before a child drops its rights)
_run_verb.native_launcher()   # its imports (sysconfig and its data) too: a child that dropped them could not

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as or create another uid")


# -- helpers -------------------------------------------------------------------------------
def unused_id() -> int:
    """A uid (and gid of the same number) that no user or group has here."""
    for n in range(60999, 60000, -1):
        try:
            pwd.getpwuid(n)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(n)
        except KeyError:
            return n
    raise AssertionError("no unused id between 60000 and 61000")


def _drop_to(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def as_uid(uid: int, fn) -> tuple[int, bytes]:
    """Run fn() in a forked child with every id `uid`; (its exit code, its stdout+stderr)."""
    return finish_child(*start_as_uid(uid, fn))


def start_as_uid(uid: int, fn) -> tuple[int, int]:
    """Fork a child that takes `uid` and runs fn(); (its pid, the read end of its output).

    The interpreter may live where another uid cannot read, so no exec: what
    fn needs is imported before the fork.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            _drop_to(uid)
            code = fn()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(w)
    return pid, r


def finish_child(pid: int, r: int) -> tuple[int, bytes]:
    try:
        out = read_to_eof(r)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def read_to_eof(fd: int, timeout: float = TIMEOUT) -> bytes:
    data = b""
    while True:
        assert wait_readable(fd, timeout), f"no EOF within {timeout} s (got {data!r})"
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


@pytest.fixture
def open_server():
    """A server whose socket another uid can reach: only SO_PEERCRED stands in the way."""
    top = Path(tempfile.mkdtemp(prefix="sp-sec-", dir="/tmp"))
    os.chmod(top, 0o711)
    srv = ServerProc(private_dir(top), "--request-timeout", "5")
    os.chmod(srv.dir, 0o711)            # checked at start only; opened for this test
    os.chmod(srv.path, 0o666)
    yield srv
    srv.stop()
    shutil.rmtree(top)


def spawn_frame_reply(path: str, message: P.Message, fds) -> P.Message:
    """Send one request on a fresh connection; the server's one reply."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        framing.send_frame(s, message, fds)
        reader = framing.FrameReader(P.REPLIES)
        s.settimeout(TIMEOUT)
        while (got := reader.receive(s)) is None:
            pass
    framing.close_fds(got[1])
    return got[0]


# -- 1. peers of another uid ----------------------------------------------------------------
@needs_root
def test_refused_peer_leaves_nothing_in_the_server(open_server):
    """A peer of another uid that sends a whole SPAWN with descriptors gets EACCES,
    and the server holds none of them: the pipe end it sent reaches EOF once
    the peer is gone, which it could not while the server kept a copy."""
    srv, uid = open_server, unused_id()
    before = srv.baseline_fds()
    pipe_r, pipe_w = os.pipe()
    request = P.Spawn([b"/bin/true"], [], b"/")

    def peer() -> int:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(srv.path)
            try:
                framing.send_frame(s, request, [pipe_w] * 3)
            except OSError:
                pass                      # already refused and closed: nothing was taken
            os.close(pipe_w)
            s.settimeout(TIMEOUT)
            reply = b""
            try:
                while chunk := s.recv(4096):
                    reply += chunk
            except ConnectionResetError:    # closed with our request unread: after the reply
                pass
        os.write(1, reply)
        return 0

    code, reply = as_uid(uid, peer)
    os.close(pipe_w)
    try:
        assert code == 0
        assert read_to_eof(pipe_r) == b"", "the server kept a descriptor of a refused peer"
    finally:
        os.close(pipe_r)
    message = P.decode(reply)
    assert isinstance(message, P.Error) and message.errno == errno.EACCES
    assert message.message == "permission denied: this server accepts connections from uid 0 only"
    assert f", uid {uid}: this server serves uid 0 only" in srv.log()
    assert "spawned" not in srv.log()
    srv.settle_fds(before)
    assert srv.run("true").returncode == 0


@needs_root
def test_launcher_and_ps_of_another_uid_do_not_use_the_server(open_server):
    """Both ends check: our own client refuses the server first (the raw peer
    above shows what the server does to one that goes on)."""
    srv, uid = open_server, unused_id()
    refusal = f"the server at {srv.path} runs as uid 0, not as you (uid {uid}); refusing to use it\n"
    assert as_uid(uid, lambda: cli_main(["run", "--socket", srv.path, "/bin/true"])) == \
        (125, f"sameprocess run: {refusal}".encode())
    assert as_uid(uid, lambda: cli_main(["ps", "--socket", srv.path])) == \
        (1, f"sameprocess ps: {refusal}".encode())
    assert srv.alive() and srv.run("true").returncode == 0


def test_a_refusal_that_closed_before_the_request_is_still_reported():
    """The server may answer and close before the client has sent its request:
    the send then fails (EPIPE), and the answer waiting in the socket is what
    the user must see, not "Broken pipe"."""
    ours, theirs = socket.socketpair()
    with ours:
        theirs.sendall(P.Error(errno.EACCES, "permission denied: go away").encode())
        theirs.close()
        with pytest.raises(ClientError) as refused:
            send_request(ours, P.Spawn([b"true"], [], b"/"), [0, 1, 2], 125)
    assert (str(refused.value), refused.value.code) == ("permission denied: go away", 125)
    ours, theirs = socket.socketpair()
    with ours:
        theirs.close()                    # no answer at all: the send error is reported
        with pytest.raises(ClientError, match="cannot send the request to the server: Broken pipe"):
            send_request(ours, P.ListPrograms(), (), 1)


@needs_root
def test_a_server_of_another_uid_is_refused_before_anything_is_sent(tmp_path):
    """The reverse: a listener of another uid gets neither a request nor a descriptor."""
    uid = unused_id()
    top = Path(tempfile.mkdtemp(prefix="sp-sec-", dir="/tmp"))
    try:
        os.chmod(top, 0o711)
        theirs = top / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, uid, uid)
        path = str(theirs / "s.sock")
        ready_r, ready_w = os.pipe()

        def listener() -> int:
            os.close(ready_r)
            with socket.socket(socket.AF_UNIX) as lsock:
                lsock.bind(path)
                lsock.listen()
                os.write(ready_w, b"ready")
                os.close(ready_w)
                for _ in range(2):                # `run`, then `ps`
                    if not select.select([lsock], [], [], TIMEOUT)[0]:
                        return 3
                    conn, _ = lsock.accept()
                    got, fds = _drain(conn)
                    print(f"bytes={got} fds={fds}")
            return 0

        child = start_as_uid(uid, listener)
        os.close(ready_w)
        try:
            assert read_to_eof(ready_r) == b"ready"
        finally:
            os.close(ready_r)
        run = subprocess.run(SP + ["run", "--socket", path, "/bin/true"], capture_output=True, text=True,
                             env=clean_env(), timeout=TIMEOUT)
        ps = subprocess.run(SP + ["ps", "--socket", path], capture_output=True, text=True,
                            env=clean_env(), timeout=TIMEOUT)
        assert finish_child(*child) == (0, b"bytes=0 fds=0\nbytes=0 fds=0\n")
        refusal = f"the server at {path} runs as uid {uid}, not as you (uid 0); refusing to use it\n"
        assert (run.returncode, run.stderr) == (125, f"sameprocess run: {refusal}")
        assert (ps.returncode, ps.stderr) == (1, f"sameprocess ps: {refusal}")
    finally:
        shutil.rmtree(top)


def _drain(conn: socket.socket) -> tuple[int, int]:
    """Bytes and descriptors a connection carries until EOF (the listener above)."""
    got = fds = 0
    conn.settimeout(TIMEOUT)
    with conn:
        while True:
            data, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(64))
            for level, kind, payload in anc:
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
                    for fd in struct.unpack(f"{len(payload) // 4}i", payload[:len(payload) // 4 * 4]):
                        fds += 1
                        os.close(fd)
            if not data:
                return got, fds
            got += len(data)


# -- 2. the socket's directory and files -------------------------------------------------------
def _serve_refused(socket_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(SP + ["serve", "--socket", str(socket_path)], capture_output=True, text=True,
                          env=clean_env(), timeout=TIMEOUT)


def test_serve_refuses_a_symbolic_link_to_a_private_directory(tmp_path):
    real = private_dir(tmp_path, "real")
    (tmp_path / "link").symlink_to(real)
    result = _serve_refused(tmp_path / "link" / "s.sock")
    assert (result.returncode, result.stderr) == (
        1, f"sameprocess serve: {tmp_path / 'link'} is not a directory (a symbolic link or a file)\n")
    assert list(real.iterdir()) == [], "nothing is created through the link"


@needs_root
def test_serve_refuses_a_directory_of_another_user(tmp_path):
    uid = unused_id()
    theirs = private_dir(tmp_path, "theirs")
    os.chown(theirs, uid, uid)
    result = _serve_refused(theirs / "s.sock")
    assert (result.returncode, result.stderr) == (
        1, f"sameprocess serve: directory {theirs} belongs to uid {uid}, not to you (uid 0); "
           "refusing to use it\n")
    assert list(theirs.iterdir()) == []


def _bad_default_directory(kind: str, runtime: Path) -> tuple[Path, str]:
    directory = runtime / "sameprocess"
    if kind == "open":
        directory.mkdir()
        os.chmod(directory, 0o733)
        return directory, (f"directory {directory} is open to other users (mode 0733); use one only "
                           f"you can enter (chmod 700 {directory})")
    if kind == "symlink":
        target = private_dir(runtime, "elsewhere")
        directory.symlink_to(target)
        return target, f"{directory} is not a directory (a symbolic link or a file)"
    uid = unused_id()
    directory.mkdir(mode=0o700)
    os.chown(directory, uid, uid)
    return directory, f"directory {directory} belongs to uid {uid}, not to you (uid 0); refusing to use it"


@pytest.mark.parametrize("kind", ["open", "symlink", pytest.param("theirs", marks=needs_root)])
def test_run_starts_no_server_in_a_bad_default_directory(tmp_path, kind):
    runtime = private_dir(tmp_path, "runtime")
    watched, reason = _bad_default_directory(kind, runtime)
    result = subprocess.run(SP + ["run", "/bin/true"], capture_output=True, text=True,
                            env=clean_env(XDG_RUNTIME_DIR=str(runtime)), timeout=TIMEOUT)
    assert (result.returncode, result.stderr) == (125, f"sameprocess run: {reason}\n")
    assert list(watched.iterdir()) == [], "no lock, log or socket was created"


def test_files_are_private_whatever_the_umask(tmp_path):
    """A server started with umask 0 (and the default server a launcher starts
    with umask 0) still makes its directory 0700 and every file in it 0600."""
    runtime = private_dir(tmp_path, "runtime")
    env = clean_env(XDG_RUNTIME_DIR=str(runtime))
    run = subprocess.run(SP + ["run", "/bin/true"], capture_output=True, text=True, env=env,
                         timeout=TIMEOUT, umask=0)
    directory = runtime / "sameprocess"
    try:
        assert (run.returncode, run.stderr) == (0, "")
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in directory.iterdir()}
        assert modes == {"default.sock": 0o600, "default.lock": 0o600, "default.start": 0o600,
                         "default.log": 0o600}
    finally:
        stop = subprocess.run(SP + ["stop"], capture_output=True, text=True, env=env, timeout=TIMEOUT)
        assert stop.returncode == 0, stop.stderr


# -- 3. E2BIG on every path -----------------------------------------------------------------------
def _launch_in_process(socket_path: str, setup: str, argv: str) -> subprocess.CompletedProcess:
    """`sameprocess run` called inside Python (`argv` is an expression): a command
    line or environment that large could not even exec the launcher."""
    code = (f"import os, resource, sys; {setup}; from sameprocess._cli import main; "
            f"sys.exit(main(['run', '--socket', {socket_path!r}] + {argv}))")
    return subprocess.run([SP[0], "-c", code], capture_output=True, text=True, env=clean_env(),
                          timeout=TIMEOUT)


def test_launcher_with_a_huge_environment_string(server):
    result = _launch_in_process(server.path, "os.environ['BIG'] = 'v' * (128 << 10)", "['/bin/true']")
    assert (result.returncode, result.stderr) == (
        126, "sameprocess run: /bin/true: Argument list too long (one argument or environment "
             f"string is {4 + (128 << 10)} bytes)\n")


def test_launcher_over_the_total_for_its_stack_limit(server):
    """Under a 1 MiB stack limit execve takes 256 KiB of strings and pointers."""
    setup = "resource.setrlimit(resource.RLIMIT_STACK, (1 << 20, resource.RLIM_INFINITY))"
    args = ["x" * 1000] * 300
    result = _launch_in_process(server.path, setup, "['/bin/true'] + ['x' * 1000] * 300")
    total = sum(len(a) + 9 for a in ["/bin/true", *args]) + sum(
        len(k) + len(v) + 2 + 8 for k, v in clean_env().items())
    assert (result.returncode, result.stderr) == (
        126, f"sameprocess run: /bin/true: Argument list too long ({total} bytes of arguments and "
             "environment)\n")
    assert "spawned" not in server.log(), "the launcher refused it before asking"


def test_raw_spawn_with_a_string_execve_refuses_gets_e2big(server):
    """Bypassing the launcher's check: one string of MAX_ARG_STRLEN bytes is a
    well-formed request that execve would refuse; the server says E2BIG."""
    with open(os.devnull) as null:
        for argv, env in (([b"/bin/true", b"x" * P.MAX_ARG_STRLEN], []),
                          ([b"/bin/true"], [b"BIG=" + b"v" * P.MAX_ARG_STRLEN])):
            reply = spawn_frame_reply(server.path, P.Spawn(argv, env, b"/"), [null.fileno()] * 3)
            assert isinstance(reply, P.Error) and reply.errno == errno.E2BIG
            assert reply.message.startswith("Argument list too long (one argument or environment string")
            assert reply.filename == b"/bin/true"
    assert server.run("true").returncode == 0


def test_space_popen_refuses_what_execve_refuses(space, build):
    """For the same argv and environment, Space.Popen and subprocess (the
    kernel's execve) agree: E2BIG beyond the limit, fine just below it."""
    hello = build("hello.c")
    just_fits = {"PATH": "/usr/bin:/bin", "BIG": "v" * (P.MAX_ARG_STRLEN - 5)}
    too_big = {"PATH": "/usr/bin:/bin", "BIG": "v" * (P.MAX_ARG_STRLEN - 4)}
    assert subprocess.run([hello], env=just_fits, capture_output=True).returncode == 0
    assert space.run([hello], env=just_fits, capture_output=True).returncode == 0
    with pytest.raises(OSError) as kernel:
        subprocess.run([hello], env=too_big)
    with pytest.raises(OSError) as ours:
        space.run([hello], env=too_big)
    assert kernel.value.errno == ours.value.errno == errno.E2BIG
    assert space.programs() == []


# -- 4. set-user-ID and set-group-ID files -----------------------------------------------------------
def _setid_copy(directory: Path, mode: int, owner: int, name: str = "id", group: int | None = None) -> str:
    path = directory / name
    shutil.copy("/usr/bin/id", path)
    os.chown(path, owner, owner if group is None else group)
    os.chmod(path, mode)               # after chown, which clears the bits
    return str(path)


def _setid_warnings(space, *argvs) -> list:
    """SetuidIgnoredWarnings of running each argv (each must succeed)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for argv in argvs:
            assert space.run(argv, capture_output=True).returncode == 0
    return [w for w in caught if issubclass(w.category, SetuidIgnoredWarning)]


SETID_CASES = [(0o4755, "set-user-ID", "-u"), (0o2755, "set-group-ID", "-g"),
               (0o6755, "set-user-ID and set-group-ID", "-u")]


@needs_root
@pytest.mark.parametrize("mode, bits, flag", SETID_CASES, ids=["setuid", "setgid", "both"])
def test_setid_file_runs_with_the_callers_rights_and_warns(space, tmp_path, mode, bits, flag):
    uid = unused_id()
    path = _setid_copy(tmp_path, mode, uid)
    native = subprocess.run([path, flag], capture_output=True, text=True, check=True)
    if native.stdout.strip() != str(uid):
        pytest.skip(f"{tmp_path} does not honour set-ID bits (nosuid?)")
    with pytest.warns(SetuidIgnoredWarning) as caught:
        result = space.run([path, flag], capture_output=True, text=True)
    ours = os.geteuid() if flag == "-u" else os.getegid()
    assert (result.returncode, result.stdout) == (0, f"{ours}\n")
    [warning] = [w for w in caught.list if issubclass(w.category, SetuidIgnoredWarning)]
    assert str(warning.message) == f"{path} is {bits}; it runs with your rights"
    assert warning.message.filename == path
    assert warning.filename == __file__, "the warning points at the caller's line"


@needs_root
def test_setuid_warning_made_an_error_stops_the_spawn(space, tmp_path):
    path = _setid_copy(tmp_path, 0o4755, unused_id())
    before = sorted(os.listdir("/proc/self/fd"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SetuidIgnoredWarning)
        with pytest.raises(SetuidIgnoredWarning):
            space.Popen([path])
    assert space.programs() == []
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_setid_bits_naming_the_caller_are_not_warned_about(space, tmp_path):
    own = _setid_copy(tmp_path, 0o6755, os.geteuid(), group=os.getegid())
    assert _setid_warnings(space, [own, "-u"]) == []


@needs_root
def test_setid_bits_the_kernel_ignores_are_not_warned_about(space, tmp_path):
    """Set-group-ID without group execute, and set-user-ID on a script."""
    other = unused_id()
    no_group_exec = _setid_copy(tmp_path, 0o2745, os.geteuid(), group=other)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\nexit 0\n")
    os.chown(script, other, other)
    os.chmod(script, 0o6755)
    assert _setid_warnings(space, [no_group_exec], [str(script)]) == []


_ON_A_NOSUID_MOUNT = """
import os, shutil, subprocess, sys, warnings
from sameprocess import SetuidIgnoredWarning, Space
directory, uid = sys.argv[1], int(sys.argv[2])
subprocess.run(["mount", "-t", "tmpfs", "-o", "nosuid", "tmpfs", directory], check=True)
path = os.path.join(directory, "id")
shutil.copy("/usr/bin/id", path)
os.chown(path, uid, uid)
os.chmod(path, 0o6755)
warnings.simplefilter("error", SetuidIgnoredWarning)
native = subprocess.run([path, "-u"], capture_output=True, text=True).stdout.strip()
with Space() as space:
    ours = space.run([path, "-u"], capture_output=True, text=True).stdout.strip()
print(f"native={native} space={ours}")
"""


@needs_root
def test_setid_bits_on_a_nosuid_mount_are_not_warned_about(tmp_path):
    """There execve ignores the bits too (a tmpfs in a mount namespace of its own)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a nosuid tmpfs privately")
    (tmp_path / "mnt").mkdir()
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c",
                             _ON_A_NOSUID_MOUNT, str(tmp_path / "mnt"), str(unused_id())],
                            capture_output=True, text=True, timeout=TIMEOUT)
    if "unshare failed" in result.stderr or "mount: " in result.stderr:
        pytest.skip(f"cannot mount a private tmpfs here: {result.stderr.strip()}")
    assert (result.returncode, result.stdout, result.stderr) == (0, "native=0 space=0\n", "")


@needs_root
def test_launcher_prints_the_warning_and_the_server_logs_it(server, tmp_path):
    path = _setid_copy(tmp_path, 0o4755, unused_id(), "id\nforged")
    shown = path.replace("\n", "\\x0a")
    result = server.run(path, "-u")
    assert (result.returncode, result.stdout) == (0, f"{os.geteuid()}\n")
    assert result.stderr == f"sameprocess: warning: {shown} is set-user-ID; it runs with your rights\n"
    log = server.log()
    assert f"WARNING pid" in log and f": {shown} is set-user-ID; it runs with your rights\n" in log
    assert "\nforged" not in log, "a file name cannot forge a log line"


def test_warning_frames_are_one_printable_line():
    for bad in ("", "two\nlines", "escape \x1b[2J", "c1 \x9b"):
        with pytest.raises(P.ProtocolError, match="one non-empty line"):
            P.decode(P.LauncherWarning(bad).encode())
    assert P.printable("a\nb\x1b\x7f\x9bé") == "a\\x0ab\\x1b\\x7f\\x9bé"


# -- 5. what a request can make the server do ---------------------------------------------------------
def test_argv0_is_never_taken_as_an_ld_so_option(server, build, tmp_path):
    """glibc programs start as `ld.so --argv0 ARGV0 /abs/path ARGS`: a program
    whose name looks like an option of ld.so is still just its name."""
    bindir = private_dir(tmp_path, "bin")
    shutil.copy(build("auxv.c"), bindir / "--list")
    env = clean_env(PATH=f"{bindir}:{os.environ['PATH']}")
    result = server.run("--list", "--verify", env=env)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[:3] == ["argc=2", "argv[0]=--list", "argv[1]=--verify"]


def _with_interp(source: str, interp: str, path: Path) -> None:
    """A copy of the program at `source` whose PT_INTERP names `interp`."""
    data = bytearray(Path(source).read_bytes())
    phoff, phnum = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<H", data, 56)[0]
    for i in range(phnum):
        entry = phoff + i * 56
        if struct.unpack_from("<I", data, entry)[0] == 3:          # PT_INTERP
            offset, filesz = struct.unpack_from("<Q", data, entry + 8)[0], struct.unpack_from("<Q", data, entry + 32)[0]
            assert len(interp) < filesz, "pick a shorter path"
            padded = "/" * (filesz - 1 - len(interp)) + interp     # "///tmp/x" is "/tmp/x"
            data[offset:offset + filesz] = padded.encode() + b"\0"
            path.write_bytes(bytes(data))
            path.chmod(0o755)
            return
    raise AssertionError(f"{source} has no PT_INTERP")


def test_special_files_named_by_a_request_never_block_the_server(server, build):
    """Only chdir (in the child) touches cwd, and only a regular file is opened
    as a program or an interpreter: FIFOs named as any of them are refused at
    once, where opening one would hang the server (one thread) for everyone."""
    short = Path(tempfile.mkdtemp(dir="/tmp"))     # a PT_INTERP has room for 27 bytes
    try:
        fifo = short / "fifo"
        os.mkfifo(fifo, 0o755)
        _with_interp(build("hello.c"), str(fifo), short / "prog")
        cases = [(P.Spawn([b"/bin/true"], [], os.fsencode(fifo)), errno.ENOTDIR, fifo),
                 (P.Spawn([os.fsencode(fifo)], [], b"/"), errno.EACCES, fifo),
                 (P.Spawn([os.fsencode(short / "prog")], [], b"/"), errno.ENOEXEC, short / "prog")]
        with open(os.devnull) as null:
            for request, err, filename in cases:
                reply = spawn_frame_reply(server.path, request, [null.fileno()] * 3)
                assert isinstance(reply, P.Error), reply
                assert (reply.errno, reply.filename) == (err, os.fsencode(filename)), reply
    finally:
        shutil.rmtree(short)
    assert server.run("true").returncode == 0


@needs_root
def test_a_same_uid_launcher_gets_the_servers_gid(server, build):
    """Documented, not defended: the uid is the boundary.  A launcher with the
    server's uid but another gid starts a program with the server's gid (and
    groups, capabilities, namespaces), since the server does the exec."""
    gid = unused_id()
    result = server.run("/usr/bin/id", "-g", group=gid, extra_groups=[])
    assert (result.returncode, result.stdout) == (0, f"{os.getegid()}\n")


def test_a_request_cannot_forge_log_lines(server):
    fake = "\n2026-01-01 00:00:00,000 sameprocess[1] INFO stopped"
    result = server.run("/bin/true", fake)
    assert result.returncode == 0
    log = server.log()
    assert ": /bin/true \\x0a2026-01-01 00:00:00,000 sameprocess[1] INFO stopped\n" in log
    assert "\n2026-01-01" not in log
