/* A program that dumps core (tests/test_gdb_core.py): a second thread
 * waits while the main thread aborts inside a named function, with a
 * global set to a known value.  It aborts once stdin gives a line or ends
 * (at once with /dev/null), so a test can start two copies and crash one. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int crash_global = 1234;
static pthread_barrier_t started;

static void *idle_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&started);
    for (;;) {
        pause();
    }
    return NULL;
}

__attribute__((noinline)) void crash_here(int depth)
{
    crash_global = 5678 + depth;
    abort();
}

int main(void)
{
    pthread_t idle;
    pthread_barrier_init(&started, NULL, 2);
    if (pthread_create(&idle, NULL, idle_thread, NULL) != 0) {
        return 1;
    }
    pthread_barrier_wait(&started);
    char line[16];
    if (fgets(line, sizeof line, stdin) == NULL) {
        line[0] = '\0';
    }
    crash_here(3);
    return 0;
}
