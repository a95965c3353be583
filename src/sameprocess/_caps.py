"""The host's effective capabilities, as the kernel reports them (the CapEff
line of /proc/self/status): what decides whether it may do something
privileged for a program (NO_NEW_PRIVS before a filter, a lower nice, ptrace
under yama)."""
from __future__ import annotations

CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_SYS_NICE = 19, 21, 23   # linux/capability.h


def has_capability(number: int) -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> number & 1)
    return False
