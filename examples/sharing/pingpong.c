/* Ping-pong over two channels: the messages are pointers to a shared
 * struct, so what travels is one word and the data never moves.
 *
 *   pingpong pong             create "ping" and "pong", answer until "ping" closes
 *   pingpong ping ROUNDS      send a ball back and forth ROUNDS times; print
 *                             the median and 99th percentile one-way latency
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sameprocess.h"

struct ball {
    long hits;
    uint64_t sent_ns;
};

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

static int pong(void)
{
    sp_channel *ping = sp_channel_create("ping", 1), *back = sp_channel_create("pong", 1);
    void *message;
    long answered = 0;

    if ((ping == NULL) || (back == NULL)) {
        fprintf(stderr, "pong: cannot create the channels: %s\n", strerror(errno));
        return 1;
    }
    while (sp_channel_recv(ping, &message, -1) == 0) {
        struct ball *ball = message;

        ball->hits++;
        ball->sent_ns = now_ns();
        sp_channel_send(back, ball, -1);
        answered++;
    }
    printf("pong: answered %ld times; ping closed\n", answered);
    sp_channel_destroy(ping);
    sp_channel_destroy(back);
    return 0;
}

static int ping(long rounds)
{
    sp_channel *out = sp_channel_open("ping", 10000), *in = sp_channel_open("pong", 10000);
    struct ball *ball = sp_alloc(sizeof *ball);
    uint64_t *one_way = calloc((size_t)rounds * 2, sizeof *one_way);
    void *message;

    if ((out == NULL) || (in == NULL) || (ball == NULL) || (one_way == NULL)) {
        fprintf(stderr, "ping: setup failed: %s\n", strerror(errno));
        return 1;
    }
    ball->hits = 0;
    for (long i = 0; i < rounds; i++) {
        uint64_t start = now_ns();

        sp_channel_send(out, ball, -1);
        sp_channel_recv(in, &message, -1);
        one_way[2 * i] = ball->sent_ns - start;  /* there: until pong had it and answered */
        one_way[(2 * i) + 1] = now_ns() - ball->sent_ns;  /* and back */
    }
    sp_channel_close(out);
    qsort(one_way, (size_t)rounds * 2, sizeof *one_way, by_value);
    printf("ping: %ld round trips, ball hit %ld times; one-way latency median %.2f us, p99 %.2f us\n",
           rounds, ball->hits, (double)one_way[rounds] / 1e3, (double)one_way[(rounds * 2 * 99) / 100] / 1e3);
    sp_free(ball);
    free(one_way);
    return 0;
}

int main(int argc, char **argv)
{
    if ((argc >= 2) && (strcmp(argv[1], "pong") == 0))
        return pong();
    if ((argc == 3) && (strcmp(argv[1], "ping") == 0))
        return ping(strtol(argv[2], NULL, 0));
    fprintf(stderr, "usage: pingpong pong | pingpong ping ROUNDS\n");
    return 2;
}
