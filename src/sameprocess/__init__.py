"""sameprocess: run independent Linux executables in one shared address space.

Layout: the public API is re-exported here.  _space (Space) and _popen
(Popen) are the front; _spawn drives one exec through _resolve (which file),
_elf (validated headers), _loader (mapping), _stack (initial stack) and
_native (the clone3 child path in C and assembly); _reaper collects exits
and _linkmap finds what a dead program's ld.so loaded, so it can be unmapped.
"""
from ._errors import ExecError, SpaceError
from ._popen import Popen
from ._space import Space, current_space

__all__ = ["Space", "Popen", "ExecError", "SpaceError", "current_space"]
__version__ = "0.1.0"
