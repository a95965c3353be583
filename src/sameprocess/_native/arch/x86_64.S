/* x86_64 pieces of the native core: the three things C cannot express. */
	.text

/* long sp_clone3(struct clone_args *args, size_t size, void (*fn)(void *), void *arg)
 * rdi = args, rsi = size, rdx = fn, rcx = arg.
 * Parent: returns the PID or -errno.  Child: runs fn(arg) on the new stack
 * (the kernel set rsp = stack + stack_size); fn never returns. */
	.globl sp_clone3
	.type sp_clone3, @function
sp_clone3:
	mov %rdx, %r8		/* syscall clobbers rcx and r11 only */
	mov %rcx, %r9
	mov $435, %eax		/* SYS_clone3 */
	syscall
	test %rax, %rax
	jnz 1f
	xor %ebp, %ebp		/* child: outermost frame */
	and $-16, %rsp
	mov %r9, %rdi
	call *%r8
	ud2
1:	ret
	.size sp_clone3, .-sp_clone3

/* long sp_syscall(long nr, long a1, ..., long a6): raw, returns -errno. */
	.globl sp_syscall
	.type sp_syscall, @function
sp_syscall:
	mov %rdi, %rax
	mov %rsi, %rdi
	mov %rdx, %rsi
	mov %rcx, %rdx
	mov %r8, %r10
	mov %r9, %r8
	mov 8(%rsp), %r9
	syscall
	ret
	.size sp_syscall, .-sp_syscall

/* void sp_enter(uint64_t entry, uint64_t sp): become the program.
 * Reset the FPU control state the host may have changed, then enter with
 * the registers the kernel's exec leaves: rsp at argc, rdx = 0 (no
 * rtld_fini), everything else zero. */
	.globl sp_enter
	.type sp_enter, @function
sp_enter:
	fninit
	movl $0x1f80, -4(%rsp)
	ldmxcsr -4(%rsp)
	cld
	mov %rsi, %rsp
	mov %rdi, %r11
	xor %eax, %eax
	xor %ebx, %ebx
	xor %ecx, %ecx
	xor %edx, %edx
	xor %esi, %esi
	xor %edi, %edi
	xor %ebp, %ebp
	xor %r8d, %r8d
	xor %r9d, %r9d
	xor %r10d, %r10d
	xor %r12d, %r12d
	xor %r13d, %r13d
	xor %r14d, %r14d
	xor %r15d, %r15d
	jmp *%r11
	.size sp_enter, .-sp_enter

	.section .note.GNU-stack,"",@progbits
