/* Microbenchmark: the cost of one mmap + munmap pair.
 *
 * usage: mmap_pairs [PAIRS]   (default 100,000)
 * Each pair maps 64 KiB anonymous, writes one byte (the first touch of a
 * page) and unmaps it.  Prints "pairs=N", "seconds=S" and "ns_per_pair=X".
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv)
{
    long pairs = (argc > 1) ? atol(argv[1]) : 100000L;
    struct timespec t0, t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < pairs; i++) {
        unsigned char *p = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap_pairs: mmap");
            return 1;
        }
        p[(i * 4096) % (64 << 10)] = (unsigned char)i;
        if (munmap(p, 64 << 10) != 0) {
            perror("mmap_pairs: munmap");
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + ((double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    printf("pairs=%ld\nseconds=%.3f\nns_per_pair=%.0f\n", pairs, seconds, (pairs > 0) ? (seconds * 1e9 / (double)pairs) : 0.0);
    return 0;
}
