/* Measurements for benchmarks/bench_sharing.py (also built by the tests).
 *
 * Latency: a message carries its send time (CLOCK_MONOTONIC ns); the
 * receiver, already waiting, takes now - sent as one one-way sample, then
 * answers the same way.  Prints median_ns=... p99_ns=... of its samples.
 *   rt_bench lat-chan a|b ROUNDS   two programs of a space, channels "lat-ab"
 *                                  and "lat-ba" (b creates them)
 *   rt_bench lat-fd socketpair|pipe ROUNDS   a forked pair over 8-byte writes
 *
 * Throughput: COUNT messages one way, as fast as the sender can; the
 * receiver times from its first message to its last.  Prints msgs_per_s=...
 *   rt_bench tput-chan send|recv COUNT   channel "tput" (recv creates it)
 *   rt_bench tput-fd socketpair|pipe COUNT
 *
 * Handoff of SIZE bytes, built (every page written) before the clock starts:
 *   rt_bench handoff-produce SIZE   sp_alloc + fill, then t0, sp_publish "big": t0_ns=...
 *   rt_bench handoff-consume        sp_wait "big", touch both ends: t1_ns=... size=...,
 *                                   then sp_free it
 *   rt_bench handoff-pipe SIZE      fork; the parent writes its buffer into a
 *                                   pipe, the child reads it into its own
 *                                   (pre-faulted) buffer: seconds=...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sameprocess.h"

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((uint64_t)ts.tv_sec * 1000000000u) + (uint64_t)ts.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static void report_latency(uint64_t *samples, long n)
{
    qsort(samples, (size_t)n, sizeof *samples, by_value);
    printf("median_ns=%llu p99_ns=%llu samples=%ld\n", (unsigned long long)samples[n / 2],
           (unsigned long long)samples[(n * 99) / 100], n);
}

static void die(const char *what)
{
    fprintf(stderr, "rt_bench: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* -- channels ------------------------------------------------------------------------ */

static int lat_chan(int first, long rounds)
{
    sp_channel *ab, *ba, *in, *out;
    uint64_t *samples = malloc((size_t)rounds * sizeof *samples);
    void *message;

    if (first) {
        ab = sp_channel_open("lat-ab", 30000);
        ba = sp_channel_open("lat-ba", 30000);
    } else {
        ab = sp_channel_create("lat-ab", 16);
        ba = sp_channel_create("lat-ba", 16);
    }
    if ((ab == NULL) || (ba == NULL) || (samples == NULL))
        die("lat-chan setup");
    in = first ? ba : ab;
    out = first ? ab : ba;
    for (long i = 0; i < rounds; i++) {
        if (first && (sp_channel_send(out, (void *)(uintptr_t)now_ns(), -1) != 0))
            die("send");
        if (sp_channel_recv(in, &message, -1) != 0)
            die("recv");
        samples[i] = now_ns() - (uint64_t)(uintptr_t)message;
        if (!first && (sp_channel_send(out, (void *)(uintptr_t)now_ns(), -1) != 0))
            die("send");
    }
    report_latency(samples, rounds);
    return 0;
}

static int tput_chan(int sending, long count)
{
    sp_channel *ch = sending ? sp_channel_open("tput", 30000) : sp_channel_create("tput", 1024);
    void *message;
    uint64_t start = 0, sum = 0;

    if (ch == NULL)
        die("tput-chan setup");
    for (long i = 0; i < count; i++) {
        if (sending) {
            if (sp_channel_send(ch, (void *)(uintptr_t)i, -1) != 0)
                die("send");
        } else {
            if (sp_channel_recv(ch, &message, -1) != 0)
                die("recv");
            if (i == 0)
                start = now_ns();
            sum += (uintptr_t)message;
        }
    }
    if (!sending)
        printf("msgs_per_s=%.0f ok=%d\n", (double)(count - 1) * 1e9 / (double)(now_ns() - start),
               sum == ((uint64_t)count * (uint64_t)(count - 1)) / 2);
    return 0;
}

/* -- socketpair and pipe -------------------------------------------------------------- */

static void fd_pair(const char *kind, int a_to_b[2], int b_to_a[2])
{
    if (strcmp(kind, "socketpair") == 0) {
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
            die("socketpair");
        a_to_b[0] = sv[1];  /* b reads here */
        a_to_b[1] = sv[0];  /* a writes here */
        b_to_a[0] = sv[0];
        b_to_a[1] = sv[1];
    } else if ((pipe(a_to_b) != 0) || (pipe(b_to_a) != 0)) {
        die("pipe");
    }
}

static void read_exact(int fd, void *buf, size_t n)
{
    char *p = buf;

    while (n > 0) {
        ssize_t got = read(fd, p, n);

        if (got <= 0)
            die("read");
        p += got;
        n -= (size_t)got;
    }
}

static void write_exact(int fd, const void *buf, size_t n)
{
    const char *p = buf;

    while (n > 0) {
        ssize_t put = write(fd, p, n);

        if (put <= 0)
            die("write");
        p += put;
        n -= (size_t)put;
    }
}

static int lat_fd(const char *kind, long rounds)
{
    int ab[2], ba[2];
    uint64_t *samples = malloc((size_t)rounds * sizeof *samples), stamp;
    pid_t child;

    fd_pair(kind, ab, ba);
    fflush(stdout);
    child = fork();
    for (long i = 0; i < rounds; i++) {
        if (child == 0) {  /* b */
            read_exact(ab[0], &stamp, sizeof stamp);
            stamp = now_ns();
            write_exact(ba[1], &stamp, sizeof stamp);
        } else {
            stamp = now_ns();
            write_exact(ab[1], &stamp, sizeof stamp);
            read_exact(ba[0], &stamp, sizeof stamp);
            samples[i] = now_ns() - stamp;
        }
    }
    if (child == 0)
        _exit(0);
    waitpid(child, NULL, 0);
    report_latency(samples, rounds);
    return 0;
}

static int tput_fd(const char *kind, long count)
{
    int ab[2], ba[2];
    uint64_t value, start = 0, sum = 0;
    pid_t child;

    fd_pair(kind, ab, ba);
    fflush(stdout);
    child = fork();
    for (long i = 0; i < count; i++) {
        if (child == 0) {
            value = (uint64_t)i;
            write_exact(ab[1], &value, sizeof value);
        } else {
            read_exact(ab[0], &value, sizeof value);  /* one message, one read */
            if (i == 0)
                start = now_ns();
            sum += value;
        }
    }
    if (child == 0)
        _exit(0);
    printf("msgs_per_s=%.0f ok=%d\n", (double)(count - 1) * 1e9 / (double)(now_ns() - start),
           sum == ((uint64_t)count * (uint64_t)(count - 1)) / 2);
    waitpid(child, NULL, 0);
    return 0;
}

/* -- handoff -------------------------------------------------------------------------------- */

static void fill(char *p, size_t size)
{
    for (size_t i = 0; i < size; i += 4096)
        p[i] = (char)(i >> 12);
    p[size - 1] = 42;
}

static int handoff_produce(size_t size)
{
    char *p = sp_alloc(size);
    uint64_t t0;

    if (p == NULL)
        die("sp_alloc");
    fill(p, size);
    t0 = now_ns();
    if (sp_publish("big", p, size) != 0)
        die("sp_publish");
    printf("t0_ns=%llu\n", (unsigned long long)t0);
    return 0;
}

static int handoff_consume(void)
{
    size_t size;
    volatile char *p = sp_wait("big", &size, 60000);
    uint64_t t1;
    int ok;

    if (p == NULL)
        die("sp_wait");
    ok = (p[0] == 0) && (p[size - 1] == 42);
    t1 = now_ns();
    printf("t1_ns=%llu size=%zu ok=%d\n", (unsigned long long)t1, size, ok);
    sp_unpublish("big");
    sp_free((void *)p);
    return 0;
}

static int handoff_pipe(size_t size)
{
    int data[2], ready[2];
    char *structure = malloc(size), signal_byte = 'r';
    uint64_t t0;
    pid_t child;

    if ((structure == NULL) || (pipe(data) != 0) || (pipe(ready) != 0))
        die("handoff-pipe setup");
    fill(structure, size);
    fflush(stdout);
    child = fork();
    if (child == 0) {  /* the consumer: its own buffer, faulted in before the clock */
        char *copy = malloc(size);

        if (copy == NULL)
            die("malloc");
        memset(copy, 1, size);
        write_exact(ready[1], &signal_byte, 1);
        read_exact(data[0], &t0, sizeof t0);
        read_exact(data[0], copy, size);
        printf("seconds=%.4f ok=%d\n", (double)(now_ns() - t0) / 1e9, (copy[0] == 0) && (copy[size - 1] == 42));
        _exit(0);
    }
    read_exact(ready[0], &signal_byte, 1);
    t0 = now_ns();
    write_exact(data[1], &t0, sizeof t0);
    write_exact(data[1], structure, size);
    waitpid(child, NULL, 0);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = (argc > 1) ? argv[1] : "";

    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((strcmp(mode, "lat-chan") == 0) && (argc == 4))
        return lat_chan(strcmp(argv[2], "a") == 0, atol(argv[3]));
    if ((strcmp(mode, "tput-chan") == 0) && (argc == 4))
        return tput_chan(strcmp(argv[2], "send") == 0, atol(argv[3]));
    if ((strcmp(mode, "lat-fd") == 0) && (argc == 4))
        return lat_fd(argv[2], atol(argv[3]));
    if ((strcmp(mode, "tput-fd") == 0) && (argc == 4))
        return tput_fd(argv[2], atol(argv[3]));
    if ((strcmp(mode, "handoff-produce") == 0) && (argc == 3))
        return handoff_produce(strtoull(argv[2], NULL, 0));
    if (strcmp(mode, "handoff-consume") == 0)
        return handoff_consume();
    if ((strcmp(mode, "handoff-pipe") == 0) && (argc == 3))
        return handoff_pipe(strtoull(argv[2], NULL, 0));
    fprintf(stderr, "usage: see the comment at the top of rt_bench.c\n");
    return 2;
}
