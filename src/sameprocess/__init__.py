"""sameprocess: run independent Linux executables in one shared address space.

Layout: the public API is re-exported here.  _space (Space) and _popen
(Popen) are the front; _spawn drives one exec through _resolve (which file),
_elf (validated headers), _loader (mapping), _stack (initial stack) and
_native (the clone3 child path in C and assembly); _reaper collects exits
and _linkmap finds what a dead program's ld.so loaded, so it can be unmapped.
_sharing is the Python face of the sharing runtime (_runtime: registry,
shared heap, channels, in C).  _server, _client and _cli are the server,
the launcher and the `sameprocess` command.

The names are imported on first use (PEP 562): a launcher (`sameprocess
run`) imports only _client, and must not pay for the loader and the runtime
on every start.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the private module that defines it
_EXPORTS = {
    "Space": "_space", "current_space": "_space",
    "Popen": "_popen",
    "ExecError": "_errors", "SpaceError": "_errors", "SetuidIgnoredWarning": "_errors",
    "publish": "_sharing", "lookup": "_sharing", "wait_for": "_sharing", "unpublish": "_sharing",
    "alloc": "_sharing", "free": "_sharing", "Channel": "_sharing", "SharedBuffer": "_sharing",
    "in_space": "_sharing",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sameprocess' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
