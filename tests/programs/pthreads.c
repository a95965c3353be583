/* Four threads each increment a shared counter 250,000 times under a mutex;
 * prints "threads=4" and "total=1000000". */
#include <pthread.h>
#include <stdio.h>

#define THREADS 4
#define INCREMENTS 250000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;

static void *work(void *arg)
{
    (void)arg;
    for (int i = 0; i < INCREMENTS; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(void)
{
    pthread_t threads[THREADS];

    for (int i = 0; i < THREADS; i++) {
        int err = pthread_create(&threads[i], NULL, work, NULL);
        if (err != 0) {
            fprintf(stderr, "pthread_create: error %d\n", err);
            return 1;
        }
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    printf("threads=%d\n", THREADS);
    printf("total=%ld\n", counter);
    return (counter == (long)THREADS * INCREMENTS) ? 0 : 1;
}
