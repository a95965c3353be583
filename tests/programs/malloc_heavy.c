/* Benchmark: mixed-size malloc/free against a live set.
 *
 * usage: malloc_heavy [operations]   (default 5,000,000: about 0.8 s natively)
 * Each operation frees a random slot of a 16384-entry live set and puts a new
 * block of a random size (mostly small, some up to 64 KiB) there, writing
 * into it.  Prints "checksum=N" (depends only on the operation count) and
 * "seconds=S" (CLOCK_MONOTONIC around the loop).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIVE 16384

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t next_random(void)
{
    /* xorshift64*: deterministic, so the checksum is reproducible. */
    rng_state ^= (rng_state >> 12);
    rng_state ^= (rng_state << 25);
    rng_state ^= (rng_state >> 27);
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static size_t random_size(void)
{
    uint64_t r = next_random();

    switch (r % 16) {
    case 0:
        return 4096 + ((r >> 8) % (60 * 1024));   /* 4 KiB .. 64 KiB */
    case 1: case 2: case 3:
        return 256 + ((r >> 8) % 3840);          /* 256 B .. 4 KiB */
    default:
        return 8 + ((r >> 8) % 248);             /* 8 .. 256 B */
    }
}

int main(int argc, char **argv)
{
    long operations = (argc > 1) ? atol(argv[1]) : 5000000L;
    static unsigned char *live[LIVE];
    static size_t live_size[LIVE];
    uint64_t checksum = 0;
    struct timespec t0, t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < operations; i++) {
        size_t slot = next_random() % LIVE;
        size_t size = random_size();

        if (live[slot] != NULL) {
            checksum += live[slot][0] + live[slot][live_size[slot] - 1];
            free(live[slot]);
        }
        live[slot] = malloc(size);
        if (live[slot] == NULL) {
            fprintf(stderr, "malloc(%zu) failed at operation %ld\n", size, i);
            return 1;
        }
        live_size[slot] = size;
        memset(live[slot], (int)(i & 0xff), (size < 64) ? size : 64);
        live[slot][size - 1] = (unsigned char)(size & 0xff);
    }
    for (size_t slot = 0; slot < LIVE; slot++) {
        if (live[slot] != NULL) {
            checksum += live[slot][0] + live[slot][live_size[slot] - 1];
            free(live[slot]);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);

    printf("checksum=%llu\n", (unsigned long long)checksum);
    printf("seconds=%.3f\n", (double)(t1.tv_sec - t0.tv_sec) + ((double)(t1.tv_nsec - t0.tv_nsec) / 1e9));
    return 0;
}
