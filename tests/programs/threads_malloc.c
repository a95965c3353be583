/* Four threads, each mallocs 200 KB in 1000-byte blocks (so each one gets a
 * malloc arena of its own) and writes all of it; joined; exits 0 without
 * freeing.  Prints "threads=4" and "bytes_per_thread=204800".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define BLOCKS 200
#define BLOCK_SIZE 1024

static void *work(void *arg)
{
    long sum = 0;

    for (int i = 0; i < BLOCKS; i++) {
        unsigned char *block = malloc(BLOCK_SIZE);
        if (block == NULL)
            return NULL;
        memset(block, (int)(((long)arg + i) & 0xff), BLOCK_SIZE);
        sum += block[BLOCK_SIZE - 1];
    }
    return (void *)(sum + 1);
}

int main(void)
{
    pthread_t threads[THREADS];

    for (long i = 0; i < THREADS; i++) {
        if (pthread_create(&threads[i], NULL, work, (void *)i) != 0) {
            fprintf(stderr, "threads_malloc: pthread_create failed\n");
            return 2;
        }
    }
    for (int i = 0; i < THREADS; i++) {
        void *result = NULL;
        pthread_join(threads[i], &result);
        if (result == NULL) {
            fprintf(stderr, "threads_malloc: malloc failed in thread %d\n", i);
            return 1;
        }
    }
    printf("threads=%d\nbytes_per_thread=%d\n", THREADS, BLOCKS * BLOCK_SIZE);
    return 0;
}
