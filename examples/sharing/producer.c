/* C producer: fills an array of doubles in the shared heap, publishes it as
 * "samples" and exits.  The array outlives this program; the Python
 * consumer reads it as a numpy array (no copy) and frees it.
 *
 * usage: producer [COUNT]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "sameprocess.h"

int main(int argc, char **argv)
{
    size_t count = (argc > 1) ? strtoul(argv[1], NULL, 0) : 1000000;
    double *samples;
    int rc;

    samples = sp_alloc(count * sizeof *samples);
    if (samples == NULL) {
        perror("producer: sp_alloc");
        return 1;
    }
    for (size_t i = 0; i < count; i++)
        samples[i] = 3.0 + sin((double)i / 1000.0);
    if ((rc = sp_publish("samples", samples, count * sizeof *samples)) != 0) {
        fprintf(stderr, "producer: sp_publish: %d\n", rc);
        return 1;
    }
    printf("producer (pid %d): %zu doubles at %p published as \"samples\"; exiting\n", (int)getpid(),
           count, (void *)samples);
    return 0;
}
