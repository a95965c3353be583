/* Starts N threads (default attributes) that all block on one condition
 * variable, prints "N threads running" (flushed) once every one has
 * started, waits for EOF on stdin, then exits CODE while they still block:
 * exit() ends them all.
 *   fault_threads N CODE */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t started = PTHREAD_COND_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int running;

static void *block_forever(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    running++;
    pthread_cond_signal(&started);
    for (;;)
        pthread_cond_wait(&never, &lock);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = (argc > 2) ? atoi(argv[1]) : 0;
    pthread_t thread;
    char buf[256];

    if (n <= 0) {
        fprintf(stderr, "usage: fault_threads N CODE\n");
        return 2;
    }
    for (int i = 0; i < n; i++) {
        int err = pthread_create(&thread, NULL, block_forever, NULL);
        if (err != 0) {
            printf("pthread_create %d failed: %s\n", i, strerror(err));
            return 1;
        }
    }
    pthread_mutex_lock(&lock);
    while (running < n)
        pthread_cond_wait(&started, &lock);
    pthread_mutex_unlock(&lock);
    printf("%d threads running\n", n);
    fflush(stdout);
    while (read(0, buf, sizeof buf) > 0) {
    }
    exit(atoi(argv[2]));
}
