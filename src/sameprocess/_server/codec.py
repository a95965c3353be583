"""Field encoding for protocol.py: Encoder, a bounds-checking Decoder, and
Record (the light value class messages are made of).

Every Decoder read is checked against the bytes that are left, every count
against its bound and against what the remaining bytes could hold, before
anything is allocated; overruns and leftovers raise ProtocolError.
"""
from __future__ import annotations

import struct


class ProtocolError(Exception):
    """A frame that breaks the protocol: the connection must be dropped."""


_U8, _U16, _U32, _U64 = (struct.Struct(f) for f in ("!B", "!H", "!I", "!Q"))
_I32, _F64 = struct.Struct("!i"), struct.Struct("!d")


class Encoder:
    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, v: int) -> None:
        self._parts.append(_U8.pack(v))

    def u16(self, v: int) -> None:
        self._parts.append(_U16.pack(v))

    def u32(self, v: int) -> None:
        self._parts.append(_U32.pack(v))

    def u64(self, v: int) -> None:
        self._parts.append(_U64.pack(v))

    def i32(self, v: int) -> None:
        self._parts.append(_I32.pack(v))

    def f64(self, v: float) -> None:
        self._parts.append(_F64.pack(v))

    def blob(self, v: bytes) -> None:
        self._parts.append(_U32.pack(len(v)))
        self._parts.append(bytes(v))

    def blobs(self, vs: list[bytes]) -> None:
        self.u32(len(vs))
        for v in vs:
            self.blob(v)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Decoder:
    """Reads fields from one payload; overruns and leftovers are ProtocolErrors."""

    def __init__(self, payload: bytes, what: str) -> None:
        self._buf = memoryview(payload)
        self._pos = 0
        self._what = what

    def _take(self, n: int) -> memoryview:
        if n > len(self._buf) - self._pos:
            raise ProtocolError(f"{self._what}: payload truncated "
                                f"(needs {n} more bytes at offset {self._pos} of {len(self._buf)})")
        view = self._buf[self._pos:self._pos + n]
        self._pos += n
        return view

    def u8(self) -> int:
        return _U8.unpack(self._take(1))[0]

    def u16(self) -> int:
        return _U16.unpack(self._take(2))[0]

    def u32(self) -> int:
        return _U32.unpack(self._take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self._take(8))[0]

    def i32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def f64(self) -> float:
        return _F64.unpack(self._take(8))[0]

    def fields(self, layout: struct.Struct) -> tuple:
        """Several fixed-size fields at once (layout in network order)."""
        return layout.unpack(self._take(layout.size))

    def count(self, limit: int, name: str, item_min: int) -> int:
        """A list length, bounded by `limit` and by the bytes that are left."""
        n = self.u32()
        if n > limit:
            raise ProtocolError(f"{self._what}: {name} has {n} items (limit {limit})")
        if n * item_min > len(self._buf) - self._pos:
            raise ProtocolError(f"{self._what}: {name} claims {n} items but the payload is too short")
        return n

    def blob(self, limit: int, name: str) -> bytes:
        n = self.u32()
        if n > limit:
            raise ProtocolError(f"{self._what}: {name} is {n} bytes long (limit {limit})")
        return bytes(self._take(n))

    def blobs(self, limit_count: int, limit_each: int, name: str) -> list[bytes]:
        """A list of blobs.  The loop is blob() inlined (an environment has
        many strings, and every request of a launcher carries one); the
        first string that is not well-formed goes through blob() itself,
        for its exact error."""
        n = self.count(limit_count, name, 4)
        buf, pos, end, unpack = self._buf, self._pos, len(self._buf), _U32.unpack_from
        out = []
        for _ in range(n):
            if end - pos >= 4:
                length = unpack(buf, pos)[0]
                if length <= limit_each and end - pos - 4 >= length:
                    out.append(bytes(buf[pos + 4:pos + 4 + length]))
                    pos += 4 + length
                    continue
            self._pos = pos
            self.blob(limit_each, name)     # raises
        self._pos = pos
        return out

    def end(self) -> None:
        left = len(self._buf) - self._pos
        if left:
            raise ProtocolError(f"{self._what}: {left} unexpected bytes after the last field")


class Record:
    """A value class: its annotated names are its fields, in order; a class
    attribute of the same name is that field's default (lists, dicts and
    sets are copied).  Cheaper to import than dataclasses, which matters to a
    launcher that starts for every program."""

    FIELDS: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.FIELDS = tuple(cls.__dict__.get("__annotations__", {}))

    def __init__(self, *args, **kwargs) -> None:
        if len(args) > len(self.FIELDS):
            raise TypeError(f"{type(self).__name__} takes at most {len(self.FIELDS)} arguments")
        values = dict(zip(self.FIELDS, args))
        for name, value in kwargs.items():
            if name not in self.FIELDS or name in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated argument {name!r}")
            values[name] = value
        for name in self.FIELDS:
            if name not in values:
                if not hasattr(type(self), name):
                    raise TypeError(f"{type(self).__name__}: missing argument {name!r}")
                default = getattr(type(self), name)
                values[name] = default.copy() if isinstance(default, (list, dict, set)) else default
            setattr(self, name, values[name])

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and all(getattr(self, f) == getattr(other, f) for f in self.FIELDS)

    __hash__ = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self.FIELDS)})"
