/* aarch64 pieces of the native core: the three things C cannot express. */
	.text

/* long sp_clone3(struct clone_args *args, size_t size, void (*fn)(void *), void *arg)
 * x0 = args, x1 = size, x2 = fn, x3 = arg.
 * Parent: returns the PID or -errno.  Child: runs fn(arg) on the new stack
 * (the kernel set sp = stack + stack_size); fn never returns. */
	.globl sp_clone3
	.type sp_clone3, %function
sp_clone3:
	mov x9, x2		/* svc preserves x9/x10 in both parent and child */
	mov x10, x3
	mov x8, #435		/* SYS_clone3 */
	svc #0
	cbnz x0, 1f
	mov x29, #0		/* child: outermost frame */
	mov x30, #0
	mov x0, x10
	blr x9
	udf #0
1:	ret
	.size sp_clone3, .-sp_clone3

/* long sp_syscall(long nr, long a1, ..., long a6): raw, returns -errno. */
	.globl sp_syscall
	.type sp_syscall, %function
sp_syscall:
	mov x8, x0
	mov x0, x1
	mov x1, x2
	mov x2, x3
	mov x3, x4
	mov x4, x5
	mov x5, x6
	svc #0
	ret
	.size sp_syscall, .-sp_syscall

/* void sp_enter(uint64_t entry, uint64_t sp): become the program.
 * Reset the FP control register, then enter as exec leaves things:
 * sp at argc, x0 = 0 (no rtld_fini), frame registers zero. */
	.globl sp_enter
	.type sp_enter, %function
sp_enter:
	msr fpcr, xzr
	mov sp, x1
	mov x16, x0
	mov x0, #0
	mov x1, #0
	mov x2, #0
	mov x3, #0
	mov x29, #0
	mov x30, #0
	br x16
	.size sp_enter, .-sp_enter

	.section .note.GNU-stack,"",@progbits
