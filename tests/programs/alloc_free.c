/* Used by leak tests: allocates a few buffers of assorted sizes (small,
 * large enough for mmap), touches them, frees them, exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    static const size_t sizes[] = { 16, 1000, 64 * 1024, 1024 * 1024, 8 * 1024 * 1024 };
    void *bufs[sizeof sizes / sizeof sizes[0]];
    size_t n = sizeof sizes / sizeof sizes[0];

    for (size_t i = 0; i < n; i++) {
        bufs[i] = malloc(sizes[i]);
        if (bufs[i] == NULL) {
            perror("malloc");
            return 1;
        }
        memset(bufs[i], (int)i, sizes[i]);
    }
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    printf("freed %zu buffers\n", n);
    return 0;
}
