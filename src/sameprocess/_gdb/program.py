"""Runs inside gdb (sourced by `sameprocess gdb`): point gdb at one program
of a space instead of the host that owns the shared mm.

gdb finds shared objects through the process's auxv, and a program's auxv
in /proc is the host's: left alone, gdb loads the host's executable and
libraries and plants its dlopen breakpoint in the *host's* ld.so (the host,
not traced, then dies of SIGTRAP at its next dlopen).  `sameprocess gdb`
therefore starts gdb with an empty sysroot (so gdb's own shared-library
search opens nothing) and no executable; this script attaches, then does
the search itself, from the program's own r_debug:

    sameprocess-attach PID EXECUTABLE R_DEBUG BIAS     (a live program)
    sameprocess-program EXECUTABLE R_DEBUG BIAS        (a core file)

R_DEBUG is the address of the program's `_r_debug` (0: none, a static
program), BIAS the load bias of a static program's image (ignored when
R_DEBUG is known: the link_map has it).  The executable gets `symbol-file
-o BIAS`, each other object on the link_map chain `add-symbol-file -o
L_ADDR`; a breakpoint on the program's `r_brk` (its ld.so's
`_dl_debug_state`) follows dlopen and dlclose.

This file is plain gdb Python: it must not import sameprocess (gdb's Python
is not the package's).
"""
import struct

import gdb

R_DEBUG = struct.Struct("<i4xQQi4xQQ")   # r_version, r_map, r_brk, r_state, r_ldbase, r_next
LINK_MAP = struct.Struct("<QQQQQ")       # l_addr, l_name, l_ld, l_next, l_prev
RT_CONSISTENT = 0
MAX_OBJECTS = 4096
MAX_NAME = 4096


def read(address, size):
    """Bytes of the inferior, or None where they cannot be read."""
    try:
        return bytes(gdb.selected_inferior().read_memory(address, size))
    except gdb.MemoryError:
        return None


def read_c_string(address):
    out = b""
    while len(out) < MAX_NAME:
        chunk = read(address + len(out), 256) or read(address + len(out), 1)
        if chunk is None:
            return None
        end = chunk.find(b"\0")
        if end >= 0:
            return (out + chunk[:end]).decode("utf-8", "surrogateescape")
        out += chunk
    return None


def link_map(r_debug):
    """[(l_addr, name)] of every namespace's chain, in order; the first one
    is the main program (glibc lists it first)."""
    objects, seen, hops = [], set(), 0
    while r_debug and hops < 16:
        raw = read(r_debug, R_DEBUG.size)
        if raw is None:
            break
        version, entry, _, _, _, next_r_debug = R_DEBUG.unpack(raw)
        while entry and entry not in seen and len(seen) < MAX_OBJECTS:
            seen.add(entry)
            raw = read(entry, LINK_MAP.size)
            if raw is None:
                break
            bias, name_at, _, entry, _ = LINK_MAP.unpack(raw)
            objects.append((bias, read_c_string(name_at) if name_at else ""))
        r_debug = next_r_debug if version >= 2 else 0
        hops += 1
    return objects


class Program:
    """The objects of one program that gdb has symbols for."""

    def __init__(self, executable, r_debug, bias):
        self.executable, self.r_debug, self.bias = executable, r_debug, bias
        self.loaded = set()    # (name, l_addr) given to add-symbol-file
        self.watch = None

    def load_all(self, main_loaded=False):
        """Symbols of every object; the executable's unless main_loaded
        (a static program, relocated before the attach)."""
        objects = link_map(self.r_debug) if self.r_debug else []
        main_bias = objects[0][0] if objects else self.bias
        if not main_loaded:
            gdb.execute(f"symbol-file -o {main_bias:#x} {quote(self.executable)}", to_string=True)
        added = [self.add(bias, name) for bias, name in objects[1:]]
        return 1 + sum(added)

    def add(self, bias, name):
        """add-symbol-file for one link_map entry; False for what has no
        file (the vDSO, an unnamed entry) or was added before."""
        if not name.startswith("/") or (name, bias) in self.loaded:
            return False
        self.loaded.add((name, bias))
        try:
            gdb.execute(f"add-symbol-file {quote(name)} -o {bias:#x}", to_string=True)
        except gdb.error as e:
            print(f"sameprocess: no symbols for {name}: {e}")
            return False
        return True

    def follow_dlopen(self):
        """Stop (silently) at the program's r_brk: ld.so calls it around
        every change of the link_map."""
        raw = read(self.r_debug, R_DEBUG.size) if self.r_debug else None
        if raw is None:
            return
        r_brk = R_DEBUG.unpack(raw)[2]
        if r_brk:
            self.watch = LinkMapWatch(self, r_brk)

    def rescan(self):
        """Follow the chain after a dlopen or dlclose: new objects get their
        symbols, those gone lose them (another may be loaded there next)."""
        current = {(name, bias) for bias, name in link_map(self.r_debug)[1:]}
        for name, bias in self.loaded - current:
            self.loaded.discard((name, bias))
            try:
                gdb.execute(f"remove-symbol-file {quote(name)}", to_string=True)
            except gdb.error:
                pass   # loaded twice (dlmopen): the symbols stay until gdb exits
        return sum(self.add(bias, name) for name, bias in sorted(current))


class LinkMapWatch(gdb.Breakpoint):
    """At r_brk with r_state RT_CONSISTENT, objects dlopen added are on the
    chain: load their symbols and go on (pending breakpoints resolve)."""

    def __init__(self, program, r_brk):
        super().__init__(f"*{r_brk:#x}", internal=True)
        self.silent = True
        self.program = program

    def stop(self):
        raw = read(self.program.r_debug, R_DEBUG.size)
        if raw is not None and R_DEBUG.unpack(raw)[3] == RT_CONSISTENT:
            self.program.rescan()
        return False


def quote(path):
    """A path as one argument of a gdb command."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


# What gdb says at an attach without an executable, about what it does not
# do on purpose: its own dlopen breakpoint (Program.follow_dlopen does that
# job) and the vDSO's symbols (see AttachCommand).
EXPECTED_WARNINGS = (
    "warning: Unable to find dynamic linker breakpoint function.\n"
    "GDB will be unable to debug shared library initializers\n"
    "and track explicitly loaded dynamic code.\n",
    "warning: Could not load vsyscall page because no executable was specified\n",
)


def load(executable, r_debug, bias, live, main_loaded=False):
    """Load the program's symbols; follow its dlopens when it is live."""
    program = Program(executable, r_debug, bias)
    count = program.load_all(main_loaded)
    if live:
        program.follow_dlopen()
    print(f"sameprocess: symbols of {count} objects of {executable}"
          + (", following dlopen" if program.watch else ""))


def parse(argument, count, usage):
    args = gdb.string_to_argv(argument)
    if len(args) != count:
        raise gdb.GdbError("usage: " + usage)
    return args


class ProgramCommand(gdb.Command):
    """sameprocess-program EXECUTABLE R_DEBUG BIAS: load the symbols of a
    program of a space into a gdb reading its core (see the top of this
    file)."""

    USAGE = "sameprocess-program EXECUTABLE R_DEBUG BIAS"

    def __init__(self):
        super().__init__("sameprocess-program", gdb.COMMAND_FILES)

    def invoke(self, argument, from_tty):
        executable, r_debug, bias = parse(argument, 3, self.USAGE)
        load(executable, int(r_debug, 0), int(bias, 0), live=False)


class AttachCommand(gdb.Command):
    """sameprocess-attach PID EXECUTABLE R_DEBUG BIAS: attach to a program of
    a space and load its symbols.

    gdb is started with no executable, and is given it only after the
    attach: with an executable at the attach, gdb loads the vDSO's symbols
    from the (host's) auxv, and the vDSO is one mapping for the whole mm: a
    breakpoint there (`break clock_gettime` finds a location in it besides
    libc's) would be hit by the host and every program, which are not
    traced and die of SIGTRAP.  `exec-file` afterwards also drops the list
    of the host's libraries that gdb's own search made.
    """

    USAGE = "sameprocess-attach PID EXECUTABLE R_DEBUG BIAS"

    def __init__(self):
        super().__init__("sameprocess-attach", gdb.COMMAND_RUNNING)

    def invoke(self, argument, from_tty):
        pid, executable, r_debug, bias = parse(argument, 4, self.USAGE)
        r_debug, bias = int(r_debug, 0), int(bias, 0)
        if not r_debug:
            # A static program: relocated before the attach, so that gdb's
            # own dlopen breakpoint goes to its _dl_debug_state, where it is.
            gdb.execute(f"symbol-file -o {bias:#x} {quote(executable)}", to_string=True)
        said = gdb.execute(f"attach {int(pid)}", to_string=True)
        for expected in EXPECTED_WARNINGS:
            said = said.replace(expected, "")
        print(said, end="")
        load(executable, r_debug, bias, live=True, main_loaded=not r_debug)
        gdb.execute(f"exec-file {quote(executable)}", to_string=True)
        gdb.execute("frame")   # where it stopped, now with the program's symbols


ProgramCommand()
AttachCommand()
