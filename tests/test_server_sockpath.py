"""Socket resolution, the private directory rules and stale/live detection."""
from __future__ import annotations

import os
import socket

import pytest

from sameprocess import _sockpath as S


def test_resolution_order(tmp_path):
    uid = os.geteuid()
    assert S.resolve("rel.sock", {}).path == os.path.abspath("rel.sock")
    assert not S.resolve("/x/y.sock", {"SAMEPROCESS_SOCKET": "/e.sock"}).default
    assert S.resolve(None, {"SAMEPROCESS_SOCKET": "/e.sock", "XDG_RUNTIME_DIR": "/run/user/1"}) \
        == S.SocketPath("/e.sock", default=False)
    assert S.resolve(None, {"XDG_RUNTIME_DIR": "/run/user/1"}) \
        == S.SocketPath("/run/user/1/sameprocess/default.sock", default=True)
    assert S.resolve(None, {"XDG_RUNTIME_DIR": "relative"}).path == f"/tmp/sameprocess-{uid}/default.sock"
    assert S.resolve(None, {"SAMEPROCESS_SOCKET": ""}) \
        == S.SocketPath(f"/tmp/sameprocess-{uid}/default.sock", default=True)


def test_files_beside_the_socket():
    where = S.SocketPath("/d/default.sock", True)
    assert (where.lock_path, where.start_lock_path, where.log_path) == \
        ("/d/default.lock", "/d/default.start", "/d/default.log")
    assert S.SocketPath("/d/odd", False).log_path == "/d/odd.log"


def test_directory_is_created_private(tmp_path):
    d = tmp_path / "new"
    S.private_directory(str(d), create=True)
    assert (d.stat().st_mode & 0o777) == 0o700
    S.private_directory(str(d), create=True)     # again: fine


@pytest.mark.parametrize("mode", [0o755, 0o710, 0o701, 0o770])
def test_directory_open_to_others_is_refused(tmp_path, mode):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, mode)
    with pytest.raises(S.SocketPathError, match=f"open to other users .mode {mode:04o}.*chmod 700"):
        S.private_directory(str(d), create=True)


def test_symlink_and_file_are_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(S.SocketPathError, match="not a directory"):
        S.private_directory(str(tmp_path / "link"), create=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(S.SocketPathError, match="not a directory"):
        S.private_directory(str(tmp_path / "file"), create=False)
    with pytest.raises(S.SocketPathError, match="parent does not exist"):
        S.private_directory(str(tmp_path / "no" / "such"), create=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_directory_of_another_user_is_refused(tmp_path):
    d = tmp_path / "theirs"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(S.SocketPathError, match="belongs to uid 65534"):
        S.private_directory(str(d), create=False)


def test_socket_path_length(tmp_path):
    S.check_length("/" + "a" * 106)
    with pytest.raises(S.SocketPathError, match="too long.*108 bytes, at most 107"):
        S.check_length("/" + "a" * 107)


def test_probe(tmp_path):
    path = str(tmp_path / "s.sock")
    assert S.probe(path) == "absent"
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen()
    assert S.probe(path) == "live"
    live.close()                       # the file stays: a dead server's socket
    assert S.probe(path) == "stale"
    os.unlink(path)
    with open(path, "w"):
        pass
    with pytest.raises(S.SocketPathError, match="not a socket"):
        S.probe(path)


def test_lock_is_exclusive_and_records_nothing_by_itself(tmp_path):
    path = str(tmp_path / "x.lock")
    a, b = S.open_lock(path), S.open_lock(path)
    try:
        assert S.try_lock(a)
        assert not S.try_lock(b)
        assert S.holder_pid(path) is None
        os.write(a, b"1234\n")
        assert S.holder_pid(path) == 1234
    finally:
        os.close(a)
        os.close(b)
    assert (os.stat(path).st_mode & 0o777) == 0o600
