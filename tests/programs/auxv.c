/* Prints what a program sees of its initial stack, one "key=value" a line:
 *
 *   argc=N, argv[i]=..., env[i]=...   (env in order)
 *   AT_xxx=0x...   for each entry below found by getauxval(), AT_xxx=absent
 *                  when it is not there; AT_PLATFORM and AT_EXECFN print
 *                  the string they point to instead
 *   auxv_types=3,4,...    the raw vector's a_type values, in order, read
 *                         from right after envp's NULL (AT_NULL excluded)
 *   raw[i]=TYPE:0xVALUE   each raw entry (glibc's getauxval answers some
 *                         types from its own copy: on x86_64 AT_HWCAP is
 *                         0x2 there, the kernel's CPUID bits here)
 *   auxv_follows_env=1/0  the raw vector right after envp has the same
 *                         AT_PAGESZ and AT_PHDR as getauxval says
 *   envp_follows_argv=1/0 envp == argv + argc + 1
 *   argv_null=1/0         argv[argc] == NULL
 *   phdr_matches=1/0      AT_PHDR/AT_PHNUM equal dl_iterate_phdr's for the
 *                         main object (the first one it reports)
 *   entry_matches=1/0     AT_ENTRY == &_start
 *   random_readable=1/0   AT_RANDOM points at 16 bytes, not all zero
 *   stack_aligned=1/0     the initial sp (argc's slot, &argv[-1]) is
 *                         16-byte aligned, as the ABIs require
 *   argv_aligned=1/0      argv itself is 8-byte aligned
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif

extern char _start[];

struct main_object {
    int found;
    const ElfW(Phdr) *phdr;
    ElfW(Half) phnum;
};

#define ENTRY(name, is_string) { #name, name, is_string }
static const struct {
    const char *name;
    unsigned long type;
    int is_string;
} entries[] = {
    ENTRY(AT_PHDR, 0), ENTRY(AT_PHENT, 0), ENTRY(AT_PHNUM, 0),
    ENTRY(AT_PAGESZ, 0), ENTRY(AT_BASE, 0), ENTRY(AT_FLAGS, 0),
    ENTRY(AT_ENTRY, 0), ENTRY(AT_UID, 0), ENTRY(AT_EUID, 0),
    ENTRY(AT_GID, 0), ENTRY(AT_EGID, 0), ENTRY(AT_PLATFORM, 1),
    ENTRY(AT_HWCAP, 0), ENTRY(AT_HWCAP2, 0), ENTRY(AT_CLKTCK, 0),
    ENTRY(AT_SECURE, 0), ENTRY(AT_RANDOM, 0), ENTRY(AT_EXECFN, 1),
    ENTRY(AT_SYSINFO_EHDR, 0), ENTRY(AT_MINSIGSTKSZ, 0),
};

static int first_object(struct dl_phdr_info *info, size_t size, void *data)
{
    struct main_object *main_object = data;

    (void)size;
    main_object->found = 1;
    main_object->phdr = info->dlpi_phdr;
    main_object->phnum = info->dlpi_phnum;
    return 1;  /* stop: the first object reported is the main program */
}

int main(int argc, char **argv, char **envp)
{
    struct main_object main_object = { 0, NULL, 0 };
    const ElfW(auxv_t) *raw;
    char **env;
    int i;

    printf("argc=%d\n", argc);
    for (i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (i = 0; envp[i] != NULL; i++)
        printf("env[%d]=%s\n", i, envp[i]);

    for (size_t k = 0; k < (sizeof entries / sizeof entries[0]); k++) {
        unsigned long value;

        errno = 0;
        value = getauxval(entries[k].type);
        if ((value == 0) && (errno == ENOENT))
            printf("%s=absent\n", entries[k].name);
        else if (entries[k].is_string && (value != 0))
            printf("%s=%s\n", entries[k].name, (const char *)value);
        else
            printf("%s=0x%lx\n", entries[k].name, value);
    }

    /* The raw vector starts right after envp's terminating NULL. */
    for (env = envp; *env != NULL; env++)
        ;
    raw = (const ElfW(auxv_t) *)(env + 1);
    {
        int follows = 1, seen_pagesz = 0, seen_phdr = 0;
        const ElfW(auxv_t) *a;

        printf("auxv_types=");
        for (a = raw; a->a_type != AT_NULL; a++) {
            printf("%s%lu", (a == raw) ? "" : ",", (unsigned long)a->a_type);
            if (a->a_type == AT_PAGESZ) {
                seen_pagesz = 1;
                follows = follows && (a->a_un.a_val == getauxval(AT_PAGESZ));
            } else if (a->a_type == AT_PHDR) {
                seen_phdr = 1;
                follows = follows && (a->a_un.a_val == getauxval(AT_PHDR));
            }
        }
        printf("\n");
        for (a = raw, i = 0; a->a_type != AT_NULL; a++, i++)
            printf("raw[%d]=%lu:0x%lx\n", i, (unsigned long)a->a_type, (unsigned long)a->a_un.a_val);
        printf("auxv_follows_env=%d\n", (follows && seen_pagesz && seen_phdr) ? 1 : 0);
    }

    printf("envp_follows_argv=%d\n", (envp == (argv + argc + 1)) ? 1 : 0);
    printf("argv_null=%d\n", (argv[argc] == NULL) ? 1 : 0);

    dl_iterate_phdr(first_object, &main_object);
    printf("phdr_matches=%d\n",
           (main_object.found
            && ((uintptr_t)main_object.phdr == getauxval(AT_PHDR))
            && (main_object.phnum == getauxval(AT_PHNUM))) ? 1 : 0);
    printf("entry_matches=%d\n", ((uintptr_t)_start == getauxval(AT_ENTRY)) ? 1 : 0);

    {
        const unsigned char *random = (const unsigned char *)getauxval(AT_RANDOM);
        int nonzero = 0;

        if (random != NULL)
            for (i = 0; i < 16; i++)
                nonzero |= random[i];
        printf("random_readable=%d\n", (nonzero != 0) ? 1 : 0);
    }

    printf("stack_aligned=%d\n", (((uintptr_t)&argv[-1] % 16) == 0) ? 1 : 0);
    printf("argv_aligned=%d\n", (((uintptr_t)argv % sizeof(char *)) == 0) ? 1 : 0);
    return 0;
}
