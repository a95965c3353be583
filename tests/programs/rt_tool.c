/* Runs sharing-runtime calls given as arguments, one "key=value" line each
 * (stdout flushed after every line), so tests can script programs:
 *
 *   in_space                    in_space=0|1
 *   publish NAME TEXT           copy TEXT into sp_alloc memory, publish it: publish=RC addr=0x..
 *   publish_own NAME TEXT       the same with the program's own malloc memory
 *   publish_raw NAME ADDR SIZE  publish=RC
 *   lookup NAME                 lookup=TEXT size=N addr=0x..  |  lookup=NULL errno=E
 *   wait NAME MS                like lookup, via sp_wait
 *   unpublish NAME              unpublish=RC
 *   alloc SIZE                  alloc=0x..|NULL errno=E
 *   alloc_text TEXT             copy TEXT into sp_alloc memory: alloc=0x..
 *   read ADDR                   read=TEXT (a NUL-terminated string at ADDR)
 *   free ADDR                   sp_free (aborts on misuse): free=done
 *   free_own                    sp_free of a malloc'ed pointer (aborts)
 *   fill_registry PREFIX        publish PREFIX0, PREFIX1... until it fails: published=N rc=RC
 *   exhaust SIZE                sp_alloc(SIZE) until NULL: blocks=N errno=E (all freed after)
 *   check                       check=0|RC message=...
 *   stats                       used_blocks=N ... (sp__stats)
 *   hold heap|registry          take the lock, print held=TID, keep it until killed
 *   readline                    block until a line arrives on stdin: readline=TEXT
 *   fork_in_space NAME [ADDR]   a forked child (its own copy of the memory):
 *                               child_in_space=0|1 child_lookup_errno=E
 *                               child_read=TEXT (the string at ADDR, if given)
 *
 * Negative RC values are -errno; errno names are printed as numbers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sameprocess.h"

struct sp_stats {
    uint64_t heap_size, used_bytes, used_blocks;
    uint64_t allocs, frees, failed_allocs, bad_frees, heap_recoveries;
    uint64_t registry_live, registry_recoveries;
};
int sp__stats(struct sp_stats *out);
int sp__heap_check(char *message, size_t length);
int sp__debug_hold(int which, int fd);

static void say(const char *format, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *format, ...)
{
    va_list args;

    va_start(args, format);
    vprintf(format, args);
    va_end(args);
    putchar('\n');
    fflush(stdout);
}

static void *parse_address(const char *text)
{
    return (void *)(uintptr_t)strtoull(text, NULL, 0);
}

static char *copy_into(void *(*allocate)(size_t), const char *text)
{
    char *p = allocate(strlen(text) + 1);

    if (p != NULL)
        strcpy(p, text);
    return p;
}

static void show_lookup(const char *key, void *p, size_t size)
{
    if (p == NULL)
        say("%s=NULL errno=%d", key, errno);
    else
        say("%s=%.*s size=%zu addr=%p", key, (int)size, (const char *)p, size, p);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *cmd = argv[i];
        size_t size = 0;

        if (strcmp(cmd, "in_space") == 0) {
            say("in_space=%d", sp_in_space());
        } else if ((strcmp(cmd, "publish") == 0) || (strcmp(cmd, "publish_own") == 0)) {
            const char *name = argv[++i], *text = argv[++i];
            char *p = copy_into((cmd[7] == '\0') ? sp_alloc : malloc, text);

            say("publish=%d addr=%p", sp_publish(name, p, strlen(text)), (void *)p);
        } else if (strcmp(cmd, "publish_raw") == 0) {
            const char *name = argv[++i];
            void *p = parse_address(argv[++i]);

            say("publish=%d", sp_publish(name, p, strtoull(argv[++i], NULL, 0)));
        } else if (strcmp(cmd, "lookup") == 0) {
            void *p = sp_lookup(argv[++i], &size);

            show_lookup("lookup", p, size);
        } else if (strcmp(cmd, "wait") == 0) {
            const char *name = argv[++i];
            void *p = sp_wait(name, &size, strtol(argv[++i], NULL, 0));

            show_lookup("wait", p, size);
        } else if (strcmp(cmd, "unpublish") == 0) {
            say("unpublish=%d", sp_unpublish(argv[++i]));
        } else if (strcmp(cmd, "alloc") == 0) {
            void *p = sp_alloc(strtoull(argv[++i], NULL, 0));

            if (p == NULL)
                say("alloc=NULL errno=%d", errno);
            else
                say("alloc=%p", p);
        } else if (strcmp(cmd, "alloc_text") == 0) {
            say("alloc=%p", (void *)copy_into(sp_alloc, argv[++i]));
        } else if (strcmp(cmd, "read") == 0) {
            say("read=%s", (const char *)parse_address(argv[++i]));
        } else if (strcmp(cmd, "free") == 0) {
            sp_free(parse_address(argv[++i]));
            say("free=done");
        } else if (strcmp(cmd, "free_own") == 0) {
            sp_free(malloc(64));
            say("free=done");
        } else if (strcmp(cmd, "fill_registry") == 0) {
            const char *prefix = argv[++i];
            char name[SP_NAME_MAX];
            static char target;
            int n = 0, rc;

            for (;;) {
                snprintf(name, sizeof name, "%s%d", prefix, n);
                if ((rc = sp_publish(name, &target, 1)) != 0)
                    break;
                n++;
            }
            say("published=%d rc=%d", n, rc);
        } else if (strcmp(cmd, "exhaust") == 0) {
            size_t each = strtoull(argv[++i], NULL, 0);
            void **blocks = NULL;
            size_t n = 0;
            void *p;

            while ((p = sp_alloc(each)) != NULL) {
                blocks = realloc(blocks, (n + 1) * sizeof *blocks);
                blocks[n++] = p;
            }
            say("blocks=%zu errno=%d", n, errno);
            while (n > 0)
                sp_free(blocks[--n]);
            free(blocks);
        } else if (strcmp(cmd, "check") == 0) {
            char message[200] = "";
            int rc = sp__heap_check(message, sizeof message);

            say("check=%d message=%s", rc, message);
        } else if (strcmp(cmd, "stats") == 0) {
            struct sp_stats s;

            sp__stats(&s);
            say("used_blocks=%llu used_bytes=%llu heap_recoveries=%llu registry_recoveries=%llu",
                (unsigned long long)s.used_blocks, (unsigned long long)s.used_bytes,
                (unsigned long long)s.heap_recoveries, (unsigned long long)s.registry_recoveries);
        } else if (strcmp(cmd, "hold") == 0) {
            const char *which = argv[++i];

            say("hold_failed=%d", sp__debug_hold((strcmp(which, "heap") == 0) ? 1 : 2, 1));
        } else if (strcmp(cmd, "readline") == 0) {
            char line[256] = "";

            if (fgets(line, sizeof line, stdin) != NULL)
                line[strcspn(line, "\n")] = '\0';
            say("readline=%s", line);
        } else if (strcmp(cmd, "fork_in_space") == 0) {
            const char *name = argv[++i];
            pid_t child = fork();

            if (child == 0) {
                void *p = sp_lookup(name, NULL);

                say("child_in_space=%d child_lookup_errno=%d", sp_in_space(), (p == NULL) ? errno : 0);
                if ((i + 1 < argc) && (strncmp(argv[i + 1], "0x", 2) == 0))  /* the child's own copy */
                    say("child_read=%s", (const char *)parse_address(argv[++i]));
                _exit(0);
            }
            waitpid(child, NULL, 0);
            i += (i + 1 < argc) && (strncmp(argv[i + 1], "0x", 2) == 0);
        } else {
            fprintf(stderr, "rt_tool: unknown command %s\n", cmd);
            return 2;
        }
    }
    return 0;
}
