"""Hostile ELF files through the whole spawn path (Space.Popen), not only the parser.

Mutants of real executables (a glibc program, a static-pie one, a non-PIE
one, glibc's ld.so run as a program, a musl program) are started in a fuzz
host: a separate Python process with its own Space (tests/_elf_fuzz.py), so
that a mutant that breaks the host shows as that process dying, with the
input that did it.  After every input the host checks its descriptors, its
mappings (nothing it had was unmapped, replaced or re-protected; nothing new
is left but a program's documented leftovers; the loader's regions are all
given back), a sentinel region at a fixed address that mutants are aimed
at, and that a normal hello still runs.  The accepted outcomes and why are
in _elf_fuzz's docstring.

Damage is confined to what the host validates: the ELF header, the program
header table and the PT_INTERP string.  Code, relocations and the dynamic
section are the program's own content: once it runs, that code runs in the
shared address space, as a corrupt library would in any process, and a wild
write there is not something the loader can refuse.  What the loader can
refuse, it must: PT_GNU_RELRO, PT_DYNAMIC, PT_PHDR and PT_TLS outside the
image are rejected, and so is a program header table (e_phnum entries at
AT_PHDR) running past it, because ld.so would mprotect or read the host's
memory there (the corpus holds the mutants that harmed the host that way).

CI: the hypothesis runs are derandomized and use no example database, and
the fuzz host runs without address randomization (setarch -R), so every run
tries the same inputs in the same layout; scripts/fuzz.py runs for longer
with fresh random inputs and randomization on.  tests/corpus/elf/ is
replayed on every run.

Within the image, a header can still point ld.so at the wrong bytes (a
PT_DYNAMIC moved onto other data within the span reads as a corrupt
dynamic section): that is damaged program content again, and what ld.so
then does runs in the space.  The long runs have not seen it harm the host.
"""
from __future__ import annotations

import itertools
import json
import os
import signal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

import _elf_fuzz as F
import _elf_mutants as M

CORPUS = Path(__file__).parent / "corpus" / "elf"
CI_SETTINGS = settings(max_examples=700, deadline=None, derandomize=True, database=None,
                       suppress_health_check=[HealthCheck.function_scoped_fixture,
                                              HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz(build, tmp_path_factory):
    """Seeds, the files PT_INTERP is pointed at, and a running fuzz host."""
    work = tmp_path_factory.mktemp("elf-fuzz")
    seeds = F.build_seeds(build, str(work))
    fixtures = M.make_interp_fixtures(str(work), seeds)
    worker = F.Worker(seeds["dynamic_exe"], aslr=False)
    state = _Fuzz(work, seeds, fixtures, worker)
    yield state
    worker.close()


class _Fuzz:
    def __init__(self, work: Path, seeds, fixtures, worker: F.Worker) -> None:
        self.work, self.seeds, self.fixtures, self.worker = work, seeds, fixtures, worker
        self.data = {name: open(path, "rb").read() for name, path in seeds.items()}
        self._names = itertools.count()

    def try_bytes(self, data: bytes) -> dict:
        """One input through the fuzz host; a fresh file each time (no parse cache hit)."""
        path = self.work / f"mutant-{next(self._names)}"
        path.write_bytes(data)
        path.chmod(0o755)
        try:
            return self.worker.try_file(str(path))
        finally:
            path.unlink()

    def try_recipe(self, seed: str, recipe: list) -> dict:
        return self.try_bytes(M.apply(self.data[seed], recipe, self.fixtures))


def assert_clean(result: dict, what, generated: bool = True) -> None:
    if generated:
        event(result["outcome"])   # --hypothesis-show-statistics shows the mix
    assert F.outcome_ok(result), f"{what}: {result}"


# -- the corpus ---------------------------------------------------------------------
def corpus_entries() -> list[dict]:
    return json.loads((CORPUS / "corpus.json").read_text())


@pytest.mark.parametrize("entry", corpus_entries(), ids=lambda e: e["name"])
def test_corpus(fuzz, entry):
    """Each kept mutant ends as it should (outcome and reason), host unharmed."""
    if "file" in entry:
        data = (CORPUS / entry["file"]).read_bytes()
    elif "tiny" in entry:
        data = M.tiny_elf([tuple(h) for h in entry["tiny"]])
    else:
        if entry["seed"] not in fuzz.data:
            pytest.skip(f"no {entry['seed']} seed on this machine")
        data = M.apply(fuzz.data[entry["seed"]], entry["recipe"], fuzz.fixtures)
    result = fuzz.try_bytes(data)
    assert_clean(result, entry["name"], generated=False)
    assert result["outcome"] == entry["expect"], result
    for fragment in entry["match"]:
        assert fragment in result["detail"], result


# -- generated mutants --------------------------------------------------------------
_values = st.integers(0, 1 << 16)
_edit = st.one_of(
    st.tuples(st.just("ehdr"), st.sampled_from(M.EHDR_FIELDS[1:]), _values),
    st.tuples(st.just("phdr"), st.integers(0, 15), st.sampled_from(M.PHDR_FIELDS), _values),
    st.tuples(st.just("load"), st.integers(0, 7), st.sampled_from(M.PHDR_FIELDS[1:]), _values),
    st.tuples(st.sampled_from(["set"]), st.sampled_from(M.AIMED_TYPES), st.integers(0, 3),
              st.sampled_from(M.PHDR_FIELDS[1:]), st.sampled_from(M.interesting_values(0, 1 << 16))),
    st.tuples(st.just("shift"), st.sampled_from(M.AIMED_TYPES), st.integers(0, 3),
              st.sampled_from(M.PHDR_FIELDS[2:]), st.integers(-(1 << 24), 1 << 24)),
    st.tuples(st.sampled_from(["overlap", "entry_outside", "exec_at_sentinel"]), _values),
    st.tuples(st.just("huge_memsz"), st.integers(0, 7), st.integers(0, 27)),
    st.tuples(st.just("many_phdrs"), st.sampled_from([1, 100, 1160, 1163, 5000]), st.integers(0, 8)),
    st.tuples(st.just("bytes"), st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)),
                                         min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 14)),
)
_interp_edit = st.one_of(
    st.tuples(st.just("interp"), st.sampled_from(M.INTERP_TARGETS),
              st.sampled_from([0, 0, 0, -1, 1, -5, 4096]), st.booleans()),
    st.tuples(st.just("interp_junk"), st.binary(max_size=300)),
)


@CI_SETTINGS
@given(seed=st.sampled_from(["dynamic_exe", "static_pie", "nonpie", "ldso", "musl"]),
       recipe=st.lists(_edit, min_size=1, max_size=4))
def test_mutated_headers_through_spawn(fuzz, seed, recipe):
    if seed not in fuzz.data:
        seed = "static_pie"
    assert_clean(fuzz.try_recipe(seed, recipe), (seed, recipe))


@settings(CI_SETTINGS, max_examples=350)
@given(seed=st.sampled_from(["dynamic_exe", "nonpie", "musl"]),
       recipe=st.lists(st.one_of(_interp_edit, _edit), min_size=1, max_size=3)
       .filter(lambda r: r[0][0].startswith("interp")))
def test_hostile_interpreters(fuzz, seed, recipe):
    """PT_INTERP naming junk, a directory, a FIFO, a device, itself, a 32-bit
    file, a truncated ELF, a static program, another executable..."""
    if seed not in fuzz.data:
        seed = "dynamic_exe"
    assert_clean(fuzz.try_recipe(seed, recipe), (seed, recipe))


@settings(CI_SETTINGS, max_examples=300)
@given(extra=st.lists(st.tuples(st.sampled_from(M.AIMED_TYPES), st.integers(0, 7),
                                st.sampled_from([0, 0x40, 0x100, 0x1ff, 0x200, 0x1000, 1 << 40]),
                                st.sampled_from([0, 0x40, 0x100, 0x200, 0x1000, 0x2000, (1 << 64) - 0x1000]),
                                st.sampled_from([0, 8, 0x100, 0x200, 0x1000, 1 << 32]),
                                st.sampled_from([0, 8, 0x100, 0x200, 0x1000, 1 << 32]),
                                st.sampled_from([0, 1, 8, 0x1000, 3])), max_size=3))
def test_hand_made_programs_with_extra_headers(fuzz, extra):
    """A 512-byte program plus arbitrary extra headers; filesz <= memsz is not
    enforced here on purpose."""
    assert_clean(fuzz.try_bytes(M.tiny_elf(extra)), extra)


# -- the checks themselves -------------------------------------------------------------
def test_the_host_checks_see_damage():
    """check_host reports each kind of harm it exists for (so a clean fuzz
    run means something)."""
    lib = (0x7000, 0x8000, "r-xp", "0:1", "/usr/lib/libc.so.6")
    heap = (0x1000, 0x3000, "rw-p", "0:0", "")
    sentinel = bytes([M.SENTINEL_BYTE]) * M.SENTINEL_SIZE
    before = [heap, lib]

    def problems(after, ran=False, fds=frozenset({"0"}), regions=(), sentinel=sentinel):
        return F.check_host(before, {"0"}, after, set(fds), ran, sentinel, "/x", regions)

    assert problems(before) == []
    assert "removed" in problems([heap])[0]                                    # a library unmapped
    assert "removed" in problems([(0x1000, 0x3000, "r--p", "0:0", ""), lib])[0]  # heap made read-only
    assert "removed" in problems([heap, (0x7000, 0x8000, "rw-p", "0:0", "")])[0]  # replaced by MAP_FIXED
    reservation = (0x9000, 0xa000, "---p", "0:0", "")
    assert "left behind" in problems(before + [reservation])[0]                # a failed spawn's leftover
    assert problems(before + [reservation], ran=True) == []                    # a program's own guard page
    assert "loader regions" in problems(before + [reservation], ran=True, regions=[(0x9000, 0xa000)])[0]
    assert "descriptors" in problems(before, fds={"0", "7"})[0]
    assert "sentinel" in problems(before, sentinel=b"\0" + sentinel[1:])[0]


def test_a_dying_host_is_reported(fuzz):
    worker = F.Worker(fuzz.seeds["dynamic_exe"])
    try:
        assert worker.try_file(fuzz.seeds["dynamic_exe"])["outcome"] == "exited"
        os.kill(worker.proc.pid, signal.SIGSEGV)
        with pytest.raises(F.WorkerDied, match="SIGSEGV"):
            worker.try_file(fuzz.seeds["dynamic_exe"])
    finally:
        worker.close()
