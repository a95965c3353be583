/* Prints the per-process state a program inherits, one "key=value" a line:
 *
 *   pid, ppid, sid (getsid(0)), pgrp (getpgrp()), comm (/proc/self/comm),
 *   cwd, umask (octal)
 *   fds=0,1,2             open descriptors (/proc/self/fd, minus the one
 *                         used to read it); fd[N]=<readlink target> each
 *   SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt, NoNewPrivs, Seccomp, Seccomp_filters,
 *   Cpus_allowed_list
 *                         copied from /proc/self/status (hex masks as there)
 *   sigpipe, sigxfsz      SIG_DFL, SIG_IGN or handler (sigaction query)
 *   altstack              disabled or enabled (sigaltstack query)
 *   x87_cw=0x037f, mxcsr=0x1f80   on x86_64 (fnstcw/stmxcsr); fpcr=0x...
 *                         on aarch64; the others print n/a
 *   fegetround            FE_TONEAREST, FE_DOWNWARD, FE_UPWARD, FE_TOWARDZERO
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fenv.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void print_comm(void)
{
    char comm[64] = "";
    FILE *f = fopen("/proc/self/comm", "r");

    if ((f != NULL) && (fgets(comm, sizeof comm, f) != NULL))
        comm[strcspn(comm, "\n")] = '\0';
    if (f != NULL)
        fclose(f);
    printf("comm=%s\n", comm);
}

static int compare_ints(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;

    return (x > y) - (x < y);
}

static void print_fds(void)
{
    int fds[1024];
    size_t count = 0;
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *entry;

    if (dir == NULL) {
        perror("opendir /proc/self/fd");
        exit(1);
    }
    while (((entry = readdir(dir)) != NULL) && (count < (sizeof fds / sizeof fds[0]))) {
        if (entry->d_name[0] == '.')
            continue;
        int fd = atoi(entry->d_name);
        if (fd != dirfd(dir))
            fds[count++] = fd;
    }
    closedir(dir);
    qsort(fds, count, sizeof fds[0], compare_ints);

    printf("fds=");
    for (size_t i = 0; i < count; i++)
        printf("%s%d", (i == 0) ? "" : ",", fds[i]);
    printf("\n");
    for (size_t i = 0; i < count; i++) {
        char path[64], target[PATH_MAX];
        ssize_t n;

        snprintf(path, sizeof path, "/proc/self/fd/%d", fds[i]);
        n = readlink(path, target, sizeof target - 1);
        target[(n < 0) ? 0 : n] = '\0';
        printf("fd[%d]=%s\n", fds[i], target);
    }
}

static void print_status_lines(void)
{
    static const char *const wanted[] = {
        "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt", "NoNewPrivs", "Seccomp", "Seccomp_filters",
        "Cpus_allowed_list",
    };
    char line[512];
    FILE *f = fopen("/proc/self/status", "r");

    if (f == NULL) {
        perror("/proc/self/status");
        exit(1);
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char *colon = strchr(line, ':');
        if (colon == NULL)
            continue;
        *colon = '\0';
        for (size_t i = 0; i < (sizeof wanted / sizeof wanted[0]); i++) {
            if (strcmp(line, wanted[i]) == 0) {
                char *value = colon + 1;
                value += strspn(value, " \t");
                value[strcspn(value, "\n")] = '\0';
                printf("%s=%s\n", line, value);
            }
        }
    }
    fclose(f);
}

static const char *disposition(int sig)
{
    struct sigaction sa;

    if (sigaction(sig, NULL, &sa) != 0)
        return "error";
    if (sa.sa_handler == SIG_DFL)
        return "SIG_DFL";
    if (sa.sa_handler == SIG_IGN)
        return "SIG_IGN";
    return "handler";
}

static void print_fpu(void)
{
#if defined(__x86_64__)
    unsigned short cw;
    unsigned int mxcsr;

    __asm__ volatile("fnstcw %0" : "=m"(cw));
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    printf("x87_cw=0x%04x\nmxcsr=0x%04x\nfpcr=n/a\n", cw, mxcsr);
#elif defined(__aarch64__)
    unsigned long fpcr;

    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    printf("x87_cw=n/a\nmxcsr=n/a\nfpcr=0x%lx\n", fpcr);
#else
    printf("x87_cw=n/a\nmxcsr=n/a\nfpcr=n/a\n");
#endif
    switch (fegetround()) {
    case FE_TONEAREST: puts("fegetround=FE_TONEAREST"); break;
    case FE_DOWNWARD: puts("fegetround=FE_DOWNWARD"); break;
    case FE_UPWARD: puts("fegetround=FE_UPWARD"); break;
    case FE_TOWARDZERO: puts("fegetround=FE_TOWARDZERO"); break;
    default: printf("fegetround=%d\n", fegetround()); break;
    }
}

int main(void)
{
    char cwd[PATH_MAX];
    mode_t mask;
    stack_t altstack;

    printf("pid=%d\nppid=%d\n", (int)getpid(), (int)getppid());
    printf("sid=%d\npgrp=%d\n", (int)getsid(0), (int)getpgrp());
    print_comm();
    printf("cwd=%s\n", (getcwd(cwd, sizeof cwd) != NULL) ? cwd : "(error)");
    mask = umask(0);
    umask(mask);
    printf("umask=%04o\n", (unsigned)mask);
    print_fds();
    print_status_lines();
    printf("sigpipe=%s\nsigxfsz=%s\n", disposition(SIGPIPE), disposition(SIGXFSZ));
    if (sigaltstack(NULL, &altstack) == 0)
        printf("altstack=%s\n", ((altstack.ss_flags & SS_DISABLE) != 0) ? "disabled" : "enabled");
    print_fpu();
    return 0;
}
