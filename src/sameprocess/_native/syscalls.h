/* What the native core's C files share to make raw system calls: numbers
 * older headers lack (the same on x86_64 and aarch64) and the SYSCALL
 * macro over sp_syscall (no errno: the result is -errno on failure). */
#ifndef SAMEPROCESS_SYSCALLS_H
#define SAMEPROCESS_SYSCALLS_H

#include <sys/syscall.h>

#include "spawn.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif
#define KERNEL_SIGSET_SIZE 8
#define MAX_ERRNO 4095

#define SYSCALL(nr, a, b, c, d, e, f) \
    sp_syscall((nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

#endif
