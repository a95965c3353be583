/* Benchmark control: run a program natively with brk growth refused, as it
 * is inside a space (seccomp: brk(0) allowed, any other brk returns 0, which
 * glibc reads as failure), so that glibc falls back to mmap-backed heaps.
 * Separates the cost of that fallback (glibc's) from the cost of the space.
 * usage: nobrk PROGRAM [ARGS...] */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_brk, 0, 2),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};

    if (argc < 2) {
        fprintf(stderr, "usage: nobrk PROGRAM [ARGS...]\n");
        return 2;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog) != 0) {
        perror("nobrk: seccomp");
        return 126;
    }
    execv(argv[1], argv + 1);
    perror("nobrk: execv");
    return 127;
}
