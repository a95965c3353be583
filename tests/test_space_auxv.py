"""The initial stack and auxv match what the kernel's exec gives natively."""
import ctypes
import os
import subprocess

import pytest

from _kv import kv

SAME_AS_NATIVE = ["AT_PHENT", "AT_PAGESZ", "AT_FLAGS", "AT_UID", "AT_EUID", "AT_GID", "AT_EGID",
                  "AT_PLATFORM", "AT_HWCAP", "AT_HWCAP2", "AT_CLKTCK", "AT_SECURE",
                  "AT_MINSIGSTKSZ", "AT_PHNUM"]
CHECKS = ["phdr_matches", "entry_matches", "random_readable", "stack_aligned", "argv_aligned",
          "envp_follows_argv", "argv_null", "auxv_follows_env"]


@pytest.mark.parametrize("variant", ["auxv.c", "auxv_static"])
def test_auxv_like_native_exec(space, build, variant):
    exe = build(variant) if variant.endswith(".c") else build("auxv.c", flags=["-static-pie"], name=variant)
    argv = [exe, "one", "two words", ""]
    env = {"A": "1", "B": "two"}
    ours = kv(space.run(argv, env=env, capture_output=True).stdout)
    native = kv(subprocess.run(argv, env=env, capture_output=True).stdout)
    for key in SAME_AS_NATIVE:
        assert ours[key] == native[key], key
    for key in CHECKS:
        assert ours[key] == "1", key
    assert ours["AT_EXECFN"] == native["AT_EXECFN"] == exe
    # One mm, one vDSO: the program's is the host's.
    getauxval = ctypes.CDLL(None).getauxval
    getauxval.restype = ctypes.c_ulong
    assert int(ours["AT_SYSINFO_EHDR"], 16) == getauxval(33)
    assert [ours[f"argv[{i}]"] for i in range(4)] == argv
    assert ours["env[0]"] == "A=1" and ours["env[1]"] == "B=two" and "env[2]" not in ours
    if variant == "auxv.c":
        # Its own copy of ld.so, not the host's.
        assert int(ours["AT_BASE"], 16) not in (0, getauxval(7))
    else:
        assert int(ours["AT_BASE"], 16) == 0
