/* A program to debug (tests/test_gdb.py): a global, a second thread, and a
 * main thread that waits in a named function for lines on stdin.  Each line
 * is handed to on_line(), where breakpoints go (noinline: -O2 would inline
 * it, and a breakpoint on an inlined copy may sit where the loop never
 * passes again); EOF ends the program.
 * Prints "ready PID" once both threads exist. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int dbg_global = 4242;
static pthread_barrier_t started;

static void *worker_loop(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&started);
    for (;;) {
        pause();
    }
    return NULL;
}

__attribute__((noinline)) int on_line(const char *line)
{
    dbg_global += (int)strlen(line);
    printf("line %d\n", dbg_global);
    fflush(stdout);
    return dbg_global;
}

__attribute__((noinline)) void wait_for_lines(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin) != NULL) {
        on_line(line);
    }
}

int main(void)
{
    pthread_t worker;
    pthread_barrier_init(&started, NULL, 2);
    if (pthread_create(&worker, NULL, worker_loop, NULL) != 0) {
        return 1;
    }
    pthread_barrier_wait(&started);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    wait_for_lines();
    return 0;
}
