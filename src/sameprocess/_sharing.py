"""Sharing between the programs of a space, from Python: registry, heap, channels.

The same functions work in the host (while a Space is open: the block it
attached) and in a CPython program run in a space (the runtime library finds
the block through the program's auxv by itself).  Everything is a thin layer
over the C runtime (sameprocess._runtime), loaded once per process.

Memory handed out here is raw shared memory: a memoryview from lookup() or
alloc() is valid until someone frees or unpublishes-and-frees that memory,
exactly like a pointer in C.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import math
import os
import time

from . import _runtime
from ._errors import SpaceError

__all__ = ["publish", "lookup", "wait_for", "unpublish", "alloc", "free", "Channel", "SharedBuffer",
           "in_space"]

NAME_MAX = 63  # bytes, without the NUL (SP_NAME_MAX - 1)
REGISTRY_CAPACITY = 1024


def _lib() -> ctypes.CDLL:
    lib = _runtime.library()
    if not lib.sp_in_space():
        raise SpaceError("not inside a sameprocess space: no Space is open in this process, and "
                         "it was not started by one (its auxv has no AT_SAMEPROCESS entry)")
    return lib


def in_space() -> bool:
    """True in the host of an open Space and in a program run in one."""
    return bool(_runtime.library().sp_in_space())


def _name(name: str | bytes) -> bytes:
    raw = name.encode() if isinstance(name, str) else bytes(name)
    if not raw or b"\0" in raw:
        raise ValueError(f"invalid name {name!r}: names are 1-{NAME_MAX} bytes without NUL")
    if len(raw) > NAME_MAX:
        raise OSError(errno.ENAMETOOLONG, f"name is {len(raw)} bytes, at most {NAME_MAX}", name)
    return raw


def _raise(rc: int, what: str, name=None):
    """Turn a -errno from the runtime into the matching exception."""
    err = -rc
    if err == errno.ENOTCONN:
        _lib()  # raises the descriptive SpaceError
    if err == errno.ENOENT:
        raise KeyError(name)
    if err == errno.ENOSPC:
        raise OSError(err, f"{what}: the registry is full ({REGISTRY_CAPACITY} names)", name)
    if err == errno.EEXIST:
        raise OSError(err, f"{what}: the name is already published", name)
    raise OSError(err, f"{what}: {os.strerror(err)}", name)


def _view(address: int, size: int) -> memoryview:
    if size == 0:
        return memoryview(bytearray())
    return memoryview((ctypes.c_char * size).from_address(address)).cast("B")


# -- addresses of Python buffers ------------------------------------------------

class _PyBuffer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]
_PyBUF_SIMPLE = 0  # contiguous bytes


def buffer_address(obj) -> tuple[int, int]:
    """(address, length in bytes) of a C-contiguous buffer: bytes,
    bytearray, memoryview, numpy array, SharedBuffer..."""
    view = _PyBuffer()
    try:
        _get_buffer(obj, ctypes.byref(view), _PyBUF_SIMPLE)
    except (BufferError, TypeError) as exc:
        raise TypeError(f"{type(obj).__name__} is neither a contiguous buffer nor an address: {exc}") from None
    try:
        return view.buf or 0, view.len
    finally:
        _release_buffer(ctypes.byref(view))


# -- registry ---------------------------------------------------------------------

def publish(name: str | bytes, buffer_or_address, size: int | None = None) -> None:
    """Publish memory under name for every program of the space.

    buffer_or_address: a buffer (its memory is published: keep the object
    alive, and prefer an alloc() buffer, which outlives this program), or an
    integer address with size.  Raises FileExistsError (name taken),
    OSError ENOSPC (registry full), OSError ENAMETOOLONG, SpaceError.
    """
    raw = _name(name)
    if isinstance(buffer_or_address, int):
        if size is None:
            raise TypeError("publishing an address needs its size")
        address = buffer_or_address
    else:
        address, length = buffer_address(buffer_or_address)
        if size is None:
            size = length
        elif not 0 <= size <= length:
            raise ValueError(f"size {size} is outside the buffer's {length} bytes")
    if size < 0:
        raise ValueError(f"negative size {size}")
    rc = _lib().sp_publish(raw, address, size)
    if rc != 0:
        _raise(rc, "publish", name)


def lookup(name: str | bytes) -> memoryview:
    """The memory published under name, as a writable memoryview (no copy).
    KeyError when nothing is published under that name."""
    raw = _name(name)
    lib = _lib()
    size = ctypes.c_size_t()
    address = lib.sp_lookup(raw, ctypes.byref(size))
    if address is None:
        _raise(-ctypes.get_errno(), "lookup", name)
    return _view(address, size.value)


def _interruptible(call, timeout: float | None):
    """Run call(timeout_ms) until it is not interrupted: the runtime returns
    on EINTR so that Python can run signal handlers (Ctrl-C) in between."""
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    while True:
        ms = -1 if deadline is None else max(0, math.ceil((deadline - time.monotonic()) * 1000))
        result = call(ms)
        if result is not InterruptedError:
            return result


def _waited(address, what: str, name, timed_out: str, refusals: dict[int, Exception] | None = None):
    """One blocking runtime call's address; InterruptedError to call again;
    else the failure raised: TimeoutError(timed_out), refusals[errno], or
    what _raise makes of the errno."""
    if address is not None:
        return address
    err = ctypes.get_errno()
    if err == errno.EINTR:
        return InterruptedError
    if err == errno.ETIMEDOUT:
        raise TimeoutError(timed_out)
    if refusals and err in refusals:
        raise refusals[err]
    _raise(-err, what, name)


def wait_for(name: str | bytes, timeout: float | None = None) -> memoryview:
    """lookup(), waiting (asleep, no polling) until name is published;
    TimeoutError after timeout seconds (None: wait forever)."""
    raw = _name(name)
    lib = _lib()
    size = ctypes.c_size_t()

    def once(ms: int):
        return _waited(lib.sp_wait(raw, ctypes.byref(size), ms), "wait_for", name,
                       f"nothing was published under {name!r} within {timeout} s")

    address = _interruptible(once, timeout)
    return _view(address, size.value)


def unpublish(name: str | bytes) -> None:
    """Remove name from the registry (its memory is left alone); KeyError
    when it is not published."""
    rc = _lib().sp_unpublish(_name(name))
    if rc != 0:
        _raise(rc, "unpublish", name)


# -- shared heap ----------------------------------------------------------------------

class _Byte(ctypes.Union):
    """One byte.  Arrays of it export plain "B" buffers (ctypes gives unions
    a bytes format; a c_ubyte array would export "<B", which memoryview can
    neither index nor assign to)."""

    _fields_ = [("value", ctypes.c_ubyte)]


class SharedBuffer:
    """What alloc() returns: a ctypes array of size bytes at an address in
    the shared heap.  memoryview(buf), numpy.frombuffer(buf), bytes(buf),
    buf[i], buf[a:b] (a memoryview) and buf[a:b] = data all work in place."""

    __slots__ = ()

    def __getitem__(self, key):
        return memoryview(self)[key]

    def __setitem__(self, key, value) -> None:
        memoryview(self)[key] = value

    @property
    def address(self) -> int:
        return ctypes.addressof(self)

    @property
    def size(self) -> int:
        return len(self)

    def __repr__(self) -> str:
        return f"<sameprocess.SharedBuffer {self.size} bytes at {self.address:#x}>"


@functools.lru_cache(maxsize=512)
def _buffer_type(size: int) -> type:
    return type("SharedBuffer", (SharedBuffer, _Byte * size), {"__slots__": ()})


def alloc(size: int) -> SharedBuffer:
    """size bytes of the shared heap, 16-byte aligned, not zeroed.  Any
    program may free it, also after this one exits.  MemoryError when the
    heap has no room."""
    size = int(size)
    if size < 0:
        raise ValueError(f"negative size {size}")
    lib = _lib()
    address = lib.sp_alloc(size)
    if address is None:
        err = ctypes.get_errno()
        if err == errno.ENOMEM:
            raise MemoryError(f"the shared heap has no room for {size} bytes")
        _raise(-err, "alloc")
    return _buffer_type(size).from_address(address)


def free(buffer) -> None:
    """Give a block of the shared heap back: a SharedBuffer, an address, or
    a buffer over the block's start.  ValueError when it is not a live
    block (double free, a pointer the heap did not hand out)."""
    if isinstance(buffer, SharedBuffer):
        address = buffer.address
    elif isinstance(buffer, int):
        address = buffer
    else:
        address, _ = buffer_address(buffer)
    lib = _lib()
    rc = lib.sp__free_checked(address)
    if rc != 0:
        raise ValueError(f"free({address:#x}): {lib.sp__free_error(rc).decode()}")


def stats() -> dict[str, int]:
    """The heap's and registry's counters (approximate while others run)."""
    out = _runtime.Stats()
    rc = _lib().sp__stats(ctypes.byref(out))
    if rc != 0:
        _raise(rc, "stats")
    return {name: getattr(out, name) for name, _ in out._fields_}


def heap_check() -> None:
    """Walk the whole shared heap and check every invariant; RuntimeError
    describing the first violation."""
    message = ctypes.create_string_buffer(256)
    rc = _lib().sp__heap_check(message, len(message))
    if rc != 0:
        raise RuntimeError(f"the shared heap is inconsistent: {message.value.decode()}")


# -- channels ---------------------------------------------------------------------------

class Channel:
    """A bounded multi-producer multi-consumer queue of pointer-sized
    messages (ints 0..2**64-1), shared with C and C++ programs (sp_channel_*).

        ch = Channel.create("jobs", capacity=1024)   # allocate + publish
        ch = Channel.open("jobs", timeout=5)         # anywhere in the space
        ch.send(address); value = ch.recv(timeout=1)
        ch.close()     # receivers drain, then EOFError; senders BrokenPipeError
        ch.destroy()   # unpublish and free: nobody may use it afterwards
    """

    def __init__(self, address: int, name: str) -> None:
        self.address = address
        self.name = name

    @classmethod
    def create(cls, name: str, capacity: int = 1024) -> "Channel":
        lib = _lib()
        address = lib.sp_channel_create(_name(name), int(capacity))
        if address is None:
            err = ctypes.get_errno()
            if err == errno.ENOMEM:
                raise MemoryError(f"the shared heap has no room for a channel of {capacity}")
            if err == errno.EINVAL:
                raise ValueError(f"capacity {capacity} is outside 1..{1 << 24}")
            _raise(-err, "Channel.create", name)
        return cls(address, name)

    @classmethod
    def open(cls, name: str, timeout: float | None = None) -> "Channel":
        """The channel published under name, waiting up to timeout seconds
        for it (0: do not wait; KeyError when absent)."""
        raw = _name(name)
        lib = _lib()

        def once(ms: int):
            return _waited(lib.sp_channel_open(raw, ms if timeout != 0 else 0), "Channel.open", name,
                           f"no channel was published under {name!r} within {timeout} s",
                           {errno.EPROTO: TypeError(f"{name!r} is published but is not a channel")})

        return cls(_interruptible(once, timeout), name)

    def _check(self, rc: int, what: str) -> None:
        if rc == -errno.ETIMEDOUT:
            raise TimeoutError(f"{what} on channel {self.name!r} timed out")
        if rc == -errno.EPIPE:
            if what == "recv":
                raise EOFError(f"channel {self.name!r} is closed and empty")
            raise BrokenPipeError(errno.EPIPE, f"channel {self.name!r} is closed")
        if rc == -errno.EINVAL:
            raise ValueError(f"{self.address:#x} is not a live channel (destroyed?)")
        if rc != 0:
            _raise(rc, what, self.name)

    def send(self, message: int, timeout: float | None = None) -> None:
        """Queue message; wait up to timeout seconds while the channel is full."""
        lib, message = _lib(), int(message)
        if not 0 <= message < (1 << 64):
            raise ValueError(f"message {message} is not a 64-bit unsigned value")
        rc = _interruptible(lambda ms: _eintr(lib.sp_channel_send(self.address, message, ms)), timeout)
        self._check(rc, "send")

    def recv(self, timeout: float | None = None) -> int:
        """The oldest message; waits up to timeout seconds while empty."""
        lib, out = _lib(), ctypes.c_void_p()
        rc = _interruptible(lambda ms: _eintr(lib.sp_channel_recv(self.address, ctypes.byref(out), ms)),
                            timeout)
        self._check(rc, "recv")
        return out.value or 0

    def close(self) -> None:
        self._check(_lib().sp_channel_close(self.address), "close")

    def destroy(self) -> None:
        self._check(_lib().sp_channel_destroy(self.address), "destroy")

    def __len__(self) -> int:
        return _lib().sp_channel_count(self.address)

    def __repr__(self) -> str:
        return f"<sameprocess.Channel {self.name!r} at {self.address:#x}>"


def _eintr(rc: int):
    return InterruptedError if rc == -errno.EINTR else rc
