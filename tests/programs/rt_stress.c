/* Shared-heap stress: blocks are filled with a pattern naming their
 * allocator and checked before every free, so any corruption is counted.
 *
 *   rt_stress ring ID N OPS SEED   program ID of a ring of N: each round
 *          allocates a block and sends it to program ID+1 (channel
 *          "ring-<ID+1>"), replaces a random block of a local pool, and
 *          receives one block from ID-1, checks it (contents and sender)
 *          and frees it; WINDOW blocks are kept in flight.  OPS counts
 *          allocations plus frees.  Prints ops=N errors=E seconds=S.
 *   rt_stress churn SEED           allocate and free at random forever;
 *          prints churning=1 after the first 10,000 operations (the tests
 *          SIGKILL it at some point inside that loop).
 *   rt_stress bench malloc|sp OPS SEED   the single-thread pattern of the
 *          benchmark: a pool of 4,096 slots, each operation frees a random
 *          slot's block (if any) and allocates a new one of a random size
 *          (16..1,024 bytes, 1 in 64 up to 16 KiB).  Prints ns_per_op=X.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sameprocess.h"

#define POOL 4096
#define WINDOW 32  /* blocks each ring member keeps in flight (channels hold 64) */
#define BLOCK_MAGIC 0x5354524553534b42ULL

struct header {
    uint64_t magic;  /* BLOCK_MAGIC ^ address */
    uint64_t owner, seq, size;
};

static uint64_t rng_state;

static uint64_t next_random(void)
{
    uint64_t x = rng_state;  /* xorshift64 */

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static size_t random_size(void)
{
    uint64_t r = next_random();

    if ((r % 64) == 0)
        return 1024 + ((r >> 8) % (15 * 1024));
    return 16 + ((r >> 8) % 1009);
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ((double)ts.tv_nsec / 1e9);
}

static unsigned char fill_byte(uint64_t owner, uint64_t seq)
{
    return (unsigned char)((owner * 31u) + seq);
}

static void *make_block(uint64_t owner, uint64_t seq)
{
    size_t size = random_size();
    struct header *h;

    if (size < sizeof *h)
        size = sizeof *h;
    h = sp_alloc(size);
    if (h == NULL)
        return NULL;
    h->magic = BLOCK_MAGIC ^ (uintptr_t)h;
    h->owner = owner;
    h->seq = seq;
    h->size = size;
    memset(h + 1, fill_byte(owner, seq), size - sizeof *h);
    return h;
}

/* 0 when the block is intact. */
static int check_block(const struct header *h)
{
    const unsigned char *bytes = (const unsigned char *)(h + 1);
    unsigned char expected;

    if (h->magic != (BLOCK_MAGIC ^ (uintptr_t)h) || (h->size < sizeof *h) || (h->size > 16 * 1024))
        return 1;
    expected = fill_byte(h->owner, h->seq);
    for (size_t i = 0; i < h->size - sizeof *h; i++) {
        if (bytes[i] != expected)
            return 1;
    }
    return 0;
}

static int ring(int id, int n, long ops, uint64_t seed)
{
    char name[32];
    sp_channel *in, *out;
    void *pool[256] = { 0 };
    long done = 0, errors = 0;
    uint64_t seq = 0;
    double start;

    rng_state = seed | 1;
    snprintf(name, sizeof name, "ring-%d", id);
    in = sp_channel_create(name, 64);
    snprintf(name, sizeof name, "ring-%d", (id + 1) % n);
    out = sp_channel_open(name, 60000);
    if ((in == NULL) || (out == NULL)) {
        printf("setup_failed errno=%d\n", errno);
        return 1;
    }
    start = now();
    for (int w = 0; w < WINDOW; w++) {  /* blocks in flight, so nobody waits each round */
        void *block = make_block(id, seq++);

        if ((block == NULL) || (sp_channel_send(out, block, -1) != 0))
            return printf("send_failed\n"), 1;
    }
    while (done < ops) {
        void *block = make_block(id, seq++), *received;
        unsigned slot = (unsigned)(next_random() % 256);

        if ((block == NULL) || (sp_channel_send(out, block, -1) != 0))
            return printf("send_failed\n"), 1;
        if (pool[slot] != NULL) {
            errors += check_block(pool[slot]);
            sp_free(pool[slot]);
            done++;
        }
        if ((pool[slot] = make_block(id, seq++)) == NULL)
            return printf("alloc_failed\n"), 1;
        if (sp_channel_recv(in, &received, -1) != 0)
            return printf("recv_failed\n"), 1;
        errors += check_block(received);
        errors += (((const struct header *)received)->owner != (uint64_t)((id + n - 1) % n));
        sp_free(received);
        done += 3;
    }
    for (int w = 0; w < WINDOW; w++) {
        void *received;

        if (sp_channel_recv(in, &received, -1) != 0)
            return printf("recv_failed\n"), 1;
        errors += check_block(received);
        sp_free(received);
        done += 2;
    }
    for (unsigned i = 0; i < 256; i++) {
        if (pool[i] != NULL) {
            errors += check_block(pool[i]);
            sp_free(pool[i]);
        }
    }
    printf("ops=%ld errors=%ld seconds=%.3f\n", done, errors, now() - start);
    return errors != 0;
}

static void churn(uint64_t seed)
{
    void *pool[POOL] = { 0 };

    rng_state = seed | 1;
    for (uint64_t i = 0;; i++) {
        unsigned slot = (unsigned)(next_random() % POOL);

        if (i == 10000) {
            printf("churning=1\n");
            fflush(stdout);
        }
        if (pool[slot] != NULL)
            sp_free(pool[slot]);
        pool[slot] = make_block(0, i);
    }
}

static void *malloc_wrapper(size_t size) { return malloc(size); }

static int bench(int use_sp, long ops, uint64_t seed)
{
    void *(*allocate)(size_t) = use_sp ? sp_alloc : malloc_wrapper;
    void (*release)(void *) = use_sp ? sp_free : free;
    static void *pool[POOL];
    static uint32_t sizes[1 << 16];
    double start;

    rng_state = seed | 1;
    for (unsigned i = 0; i < (1u << 16); i++)
        sizes[i] = (uint32_t)random_size();
    start = now();
    for (long i = 0; i < ops; i++) {
        unsigned slot = (unsigned)(next_random() % POOL);
        char *p;

        if (pool[slot] != NULL)
            release(pool[slot]);
        p = allocate(sizes[i & 0xffff]);
        if (p == NULL)
            return printf("alloc_failed\n"), 1;
        p[0] = (char)i;
        pool[slot] = p;
    }
    printf("ns_per_op=%.1f\n", (now() - start) * 1e9 / (double)ops);
    for (unsigned i = 0; i < POOL; i++) {
        release(pool[i]);
        pool[i] = NULL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((argc == 6) && (strcmp(argv[1], "ring") == 0))
        return ring(atoi(argv[2]), atoi(argv[3]), atol(argv[4]), strtoull(argv[5], NULL, 0));
    if ((argc == 3) && (strcmp(argv[1], "churn") == 0))
        churn(strtoull(argv[2], NULL, 0));
    if ((argc == 5) && (strcmp(argv[1], "bench") == 0))
        return bench(strcmp(argv[2], "sp") == 0, atol(argv[3]), strtoull(argv[4], NULL, 0));
    fprintf(stderr, "usage: see the comment at the top of rt_stress.c\n");
    return 2;
}
