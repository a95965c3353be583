"""Frames on a Unix stream socket, with their descriptors (SCM_RIGHTS).

FrameReader assembles frames from any number of recvmsg calls (blocking or
non-blocking sockets) and owns the descriptors that arrive until a whole,
valid frame hands them over; FrameWriter queues frames for a non-blocking
socket; send_frame sends one on a blocking socket.
"""
from __future__ import annotations

import array
import os
import socket

from .protocol import HEADER, MAX_FDS, Decoder, Message, MsgType, ProtocolError, parse_header


class PeerClosed(Exception):
    """The peer closed the connection; `partial` if it was in the middle of a frame."""

    def __init__(self, partial: bool) -> None:
        super().__init__("connection closed mid-frame" if partial else "connection closed")
        self.partial = partial


def close_fds(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


_CMSG_SPACE = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)


class FrameReader:
    """Reads frames from a stream socket, blocking or not, one recvmsg at a time.

    It never reads past the frame it is assembling, so descriptors attached
    to the next frame stay in the socket until that frame is read.
    Descriptors that arrive are owned by the reader until a whole valid
    frame hands them over; every error path closes them.
    """

    def __init__(self, accept: frozenset[MsgType]) -> None:
        self.accept = accept
        self._buf = bytearray()
        self._fds: list[int] = []
        self._cls: type[Message] | None = None
        self._need = HEADER.size

    @property
    def in_frame(self) -> bool:
        return bool(self._buf) or bool(self._fds)

    def receive(self, sock: socket.socket) -> tuple[Message, list[int]] | None:
        """One recvmsg; a whole frame and its fds, or None when more is needed.

        Raises BlockingIOError (non-blocking socket with nothing to read),
        PeerClosed, ProtocolError.  After an exception the reader is done.
        """
        want = self._need - len(self._buf)
        try:
            data, ancdata, flags, _ = sock.recvmsg(want, _CMSG_SPACE, socket.MSG_CMSG_CLOEXEC)
        except BlockingIOError:
            raise
        except OSError:
            self.discard()
            raise
        self._fds.extend(_take_fds(ancdata))
        allowed = MAX_FDS if self._cls is None else self._cls.FDS
        if (flags & socket.MSG_CTRUNC) or len(self._fds) > allowed:
            self.discard()
            raise ProtocolError(f"more than {allowed} descriptors attached to a frame")
        if not data:
            partial = self.in_frame
            self.discard()
            raise PeerClosed(partial)
        self._buf += data
        if len(self._buf) < self._need:
            return None
        try:
            if self._cls is None:
                self._cls, length = parse_header(bytes(self._buf), self.accept)
                self._need = HEADER.size + length
                if length:
                    return None
            cls = self._cls
            if len(self._fds) != cls.FDS:
                raise ProtocolError(f"{cls.TYPE.name}: carries {len(self._fds)} descriptors, expected {cls.FDS}")
            message = cls.decode_payload(Decoder(bytes(self._buf[HEADER.size:]), cls.TYPE.name))
        except ProtocolError:
            self.discard()
            raise
        fds, self._fds = self._fds, []
        self._buf.clear()
        self._cls, self._need = None, HEADER.size
        return message, fds

    def discard(self) -> None:
        """Close descriptors of an unfinished frame and forget it."""
        close_fds(self._fds)
        self._fds = []
        self._buf.clear()
        self._cls, self._need = None, HEADER.size


def _take_fds(ancdata) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(data[:len(data) - (len(data) % arr.itemsize)])
            fds.extend(arr)
        # anything else (SCM_CREDENTIALS is never asked for) carries no fds
    return fds


def send_frame(sock: socket.socket, message: Message, fds=()) -> None:
    """Send one frame on a blocking socket; fds ride on its first byte."""
    data = message.encode()
    if len(fds) != message.FDS:
        raise ValueError(f"{message.TYPE.name} carries {message.FDS} descriptors, got {len(fds)}")
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sent = sock.sendmsg([data], anc, socket.MSG_NOSIGNAL)
    view = memoryview(data)
    while sent < len(data):
        sent += sock.send(view[sent:], socket.MSG_NOSIGNAL)


class FrameWriter:
    """Outgoing frames of a non-blocking socket: sent as the socket accepts them.

    Descriptors given with a frame are closed here once the kernel holds its
    own references (after the sendmsg carrying them), or when discarded.
    """

    def __init__(self) -> None:
        self._queue: list[tuple[memoryview, list[int]]] = []

    def __bool__(self) -> bool:
        return bool(self._queue)

    def add(self, message: Message, fds=()) -> None:
        if len(fds) != message.FDS:
            close_fds(fds)
            raise ValueError(f"{message.TYPE.name} carries {message.FDS} descriptors, got {len(fds)}")
        self._queue.append((memoryview(message.encode()), list(fds)))

    def flush(self, sock: socket.socket) -> bool:
        """Send what the socket takes now; True once everything is sent."""
        while self._queue:
            data, fds = self._queue[0]
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            try:
                sent = sock.sendmsg([data], anc, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                return False
            if fds:
                close_fds(fds)
                fds.clear()
            if sent < len(data):
                self._queue[0] = (data[sent:], fds)
                return False
            self._queue.pop(0)
        return True

    def discard(self) -> None:
        for _, fds in self._queue:
            close_fds(fds)
        self._queue.clear()
