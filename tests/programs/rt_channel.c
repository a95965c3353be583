/* Channel roles for the tests:
 *
 *   rt_channel create NAME CAP         create: created=RC
 *   rt_channel send NAME FROM TO       open (wait), send FROM..TO-1: sent=N
 *   rt_channel recv NAME COUNT         open, receive COUNT messages: received=N sum=S
 *   rt_channel drain NAME              receive until closed: drained=N sum=S rc=RC
 *   rt_channel close NAME              close=RC
 *   rt_channel pong NAME_IN NAME_OUT N echo N messages from one channel to another
 *   rt_channel timeout NAME MS         recv with a timeout on an empty channel: rc=RC
 *   rt_channel full NAME MS            fill it, then send once more with a timeout: filled=N rc=RC
 *   rt_channel bogus                   calls on a pointer that is not a channel: send=RC recv=RC
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sameprocess.h"

static sp_channel *open_or_die(const char *name)
{
    sp_channel *ch = sp_channel_open(name, 30000);

    if (ch == NULL) {
        printf("open_failed errno=%d\n", errno);
        exit(1);
    }
    return ch;
}

int main(int argc, char **argv)
{
    const char *verb = argv[1];

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(verb, "create") == 0) {
        sp_channel *ch = sp_channel_create(argv[2], strtoul(argv[3], NULL, 0));

        printf("created=%d\n", (ch != NULL) ? 0 : -errno);
    } else if (strcmp(verb, "send") == 0) {
        sp_channel *ch = open_or_die(argv[2]);
        uintptr_t from = strtoull(argv[3], NULL, 0), to = strtoull(argv[4], NULL, 0), n = 0;

        for (uintptr_t v = from; v < to; v++, n++) {
            int rc = sp_channel_send(ch, (void *)v, -1);

            if (rc != 0) {
                printf("send_failed=%d\n", rc);
                return 1;
            }
        }
        printf("sent=%lu\n", (unsigned long)n);
    } else if ((strcmp(verb, "recv") == 0) || (strcmp(verb, "drain") == 0)) {
        sp_channel *ch = open_or_die(argv[2]);
        unsigned long count = (verb[0] == 'r') ? strtoul(argv[3], NULL, 0) : ~0UL, n = 0;
        unsigned long long sum = 0;
        void *message;
        int rc = 0;

        while ((n < count) && ((rc = sp_channel_recv(ch, &message, -1)) == 0)) {
            sum += (uintptr_t)message;
            n++;
        }
        if (verb[0] == 'r')
            printf("received=%lu sum=%llu\n", n, sum);
        else
            printf("drained=%lu sum=%llu rc=%d\n", n, sum, rc);
    } else if (strcmp(verb, "close") == 0) {
        printf("close=%d\n", sp_channel_close(open_or_die(argv[2])));
    } else if (strcmp(verb, "pong") == 0) {
        sp_channel *in = open_or_die(argv[2]), *out = open_or_die(argv[3]);
        unsigned long n = strtoul(argv[4], NULL, 0);
        void *message;

        for (unsigned long i = 0; i < n; i++) {
            if ((sp_channel_recv(in, &message, -1) != 0) || (sp_channel_send(out, (void *)((uintptr_t)message + 1), -1) != 0))
                return 1;
        }
        printf("ponged=%lu\n", n);
    } else if (strcmp(verb, "timeout") == 0) {
        void *message;

        printf("rc=%d\n", sp_channel_recv(open_or_die(argv[2]), &message, strtol(argv[3], NULL, 0)));
    } else if (strcmp(verb, "full") == 0) {
        sp_channel *ch = open_or_die(argv[2]);
        unsigned long n = 0;

        while (sp_channel_send(ch, (void *)n, 0) == 0)
            n++;
        printf("filled=%lu rc=%d\n", n, sp_channel_send(ch, (void *)n, strtol(argv[3], NULL, 0)));
    } else if (strcmp(verb, "bogus") == 0) {
        char *not_a_channel = sp_alloc(4096);
        void *message;

        memset(not_a_channel, 0x5a, 4096);
        printf("send=%d recv=%d open_errno=", sp_channel_send((sp_channel *)not_a_channel, NULL, 0),
               sp_channel_recv((sp_channel *)not_a_channel, &message, 0));
        sp_publish("not-a-channel", not_a_channel, 4096);
        printf("%d\n", (sp_channel_open("not-a-channel", 0) == NULL) ? errno : 0);
    } else {
        return 2;
    }
    return 0;
}
