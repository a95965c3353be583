/* Random mapping churn that checks its own memory.
 *
 * usage: mmap_churn SEED [OPERATIONS]   (default 2000 operations)
 *
 * Each operation, chosen from SEED, is one of: an anonymous mmap; a private
 * mmap of a temporary file (whose contents are checked first); munmap of a
 * whole range, its head, its tail or a hole in its middle; mremap that grows
 * (may move), shrinks, or moves a range onto a reservation of its own
 * (MREMAP_FIXED); an anonymous MAP_FIXED mapping over part of one of its own
 * ranges.  Every range it owns is filled with a pattern of its own (a 64-bit
 * tag mixed with the logical offset of each word, so contents that mremap
 * moves stay checkable), and checked before each munmap, after each mremap,
 * at random, and at the end.  It exits without unmapping what is left.
 *
 * Prints "progress=I" (flushed) after every 1000 operations, then "ops=N",
 * "live=K" (ranges left mapped), "live_bytes=B",
 * "checked_bytes=C" and "ok", exit 0.  A mismatch prints "mismatch ..." on
 * stderr and exits 1; a failed call prints the call and errno, exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLOTS 48
#define MAX_PAGES 256            /* a new range: at most 1 MiB */
#define BUDGET (24L << 20)       /* live bytes above this: unmap instead */
#define FILE_PAGES 128
#define FILE_TAG 0x46494c4546494c45ULL
#define MIX 0x9e3779b97f4a7c15ULL

struct range {
    unsigned char *addr;         /* NULL: a free slot */
    size_t len;
    size_t origin;               /* logical offset of the first byte */
    uint64_t tag;
    int is_file;
    int one_vma;                 /* mremap grow and move need a single mapping */
};

static struct range slots[SLOTS];
static size_t page;
static long live_bytes;
static unsigned long long checked_bytes;
static uint64_t rng;
static int file_fd = -1;

static uint64_t next_random(void)
{
    rng ^= (rng >> 12);
    rng ^= (rng << 25);
    rng ^= (rng >> 27);
    return rng * 0x2545f4914f6cdd1dULL;
}

static void fail(const char *call)
{
    fprintf(stderr, "mmap_churn: %s: %s\n", call, strerror(errno));
    exit(2);
}

static uint64_t word_at(uint64_t tag, size_t logical)
{
    return tag ^ (((uint64_t)logical) * MIX);
}

/* Fill bytes [from, to) of r (offsets from r->addr, multiples of 8). */
static void fill(const struct range *r, size_t from, size_t to)
{
    for (size_t off = from; off < to; off += 8)
        *(uint64_t *)(r->addr + off) = word_at(r->tag, r->origin + off);
}

static void expect(const struct range *r, size_t from, size_t to, uint64_t tag, size_t origin,
                   const char *what)
{
    for (size_t off = from; off < to; off += 8) {
        uint64_t want = word_at(tag, origin + off);
        uint64_t got = *(uint64_t *)(r->addr + off);
        if (got != want) {
            fprintf(stderr, "mismatch in %s at %p (range %p+%#zx): %#llx, expected %#llx\n", what,
                    (void *)(r->addr + off), (void *)r->addr, r->len, (unsigned long long)got,
                    (unsigned long long)want);
            exit(1);
        }
    }
    checked_bytes += (to - from);
}

static void check(const struct range *r, const char *what)
{
    expect(r, 0, r->len, r->tag, r->origin, what);
}

static void check_zero(const struct range *r, size_t from, size_t to, const char *what)
{
    for (size_t off = from; off < to; off += 8) {
        if (*(uint64_t *)(r->addr + off) != 0) {
            fprintf(stderr, "mismatch in %s at %p: not zero\n", what, (void *)(r->addr + off));
            exit(1);
        }
    }
}

static size_t random_pages(size_t max)
{
    uint64_t r = next_random();
    size_t pages = ((r % 8) == 0) ? (1 + ((r >> 8) % max)) : (1 + ((r >> 8) % 16));
    return (pages > max) ? max : pages;
}

static struct range *free_slot(void)
{
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].addr == NULL)
            return &slots[i];
    return NULL;
}

static struct range *live_slot(void)
{
    int start = (int)(next_random() % SLOTS);
    for (int i = 0; i < SLOTS; i++) {
        struct range *r = &slots[(start + i) % SLOTS];
        if (r->addr != NULL)
            return r;
    }
    return NULL;
}

static void map_anonymous(struct range *r)
{
    size_t len = random_pages(MAX_PAGES) * page;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        fail("mmap anonymous");
    *r = (struct range){p, len, (next_random() % 64) * page, next_random(), 0, 1};
    check_zero(r, 0, len, "a new anonymous mapping");
    fill(r, 0, len);
    live_bytes += (long)len;
}

static void map_file(struct range *r)
{
    size_t pages = random_pages(16);
    size_t first = next_random() % (FILE_PAGES - pages + 1);
    void *p = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, file_fd, (off_t)(first * page));
    if (p == MAP_FAILED)
        fail("mmap file");
    *r = (struct range){p, pages * page, first * page, FILE_TAG, 1, 1};
    check(r, "a new file mapping");      /* the file's own words */
    r->origin = (next_random() % 64) * page;
    r->tag = next_random();
    fill(r, 0, r->len);                  /* private: the file keeps its words */
    live_bytes += (long)r->len;
}

static void unmap(struct range *r)
{
    size_t pages = r->len / page;
    uint64_t how = next_random() % 8;

    check(r, "a range about to be unmapped");
    if ((pages < 3) || (how < 4)) {
        if (munmap(r->addr, r->len) != 0)
            fail("munmap");
        live_bytes -= (long)r->len;
        r->addr = NULL;
        return;
    }
    size_t cut = (1 + (next_random() % (pages - 2))) * page;
    struct range *rest = free_slot();
    if ((how == 4) || (how == 5)) {                 /* the head */
        if (munmap(r->addr, cut) != 0)
            fail("munmap head");
        r->addr += cut, r->len -= cut, r->origin += cut;
        live_bytes -= (long)cut;
    } else if ((how == 6) || (rest == NULL)) {      /* the tail */
        if (munmap(r->addr + cut, r->len - cut) != 0)
            fail("munmap tail");
        live_bytes -= (long)(r->len - cut);
        r->len = cut;
    } else {                                         /* one page from the middle */
        if (munmap(r->addr + cut, page) != 0)
            fail("munmap hole");
        *rest = *r;
        rest->addr += cut + page, rest->len -= cut + page, rest->origin += cut + page;
        r->len = cut;
        live_bytes -= (long)page;
        check(rest, "the part above a hole");
    }
    check(r, "what is left of a range");
}

static void remap(struct range *r)
{
    size_t pages = r->len / page;
    uint64_t how = next_random() % 3;

    check(r, "a range about to be remapped");
    if ((how == 0) && r->one_vma && !r->is_file && (pages < 2 * MAX_PAGES)) {   /* grow */
        size_t len = r->len + (random_pages(64) * page);
        void *p = mremap(r->addr, r->len, len, MREMAP_MAYMOVE);
        if (p == MAP_FAILED)
            fail("mremap grow");
        struct range old = *r;
        r->addr = p;
        r->len = len;
        check_zero(r, old.len, len, "the grown part");
        fill(r, old.len, len);
        live_bytes += (long)(len - old.len);
    } else if ((how == 1) && (pages > 1)) {                                 /* shrink */
        size_t len = (1 + (next_random() % (pages - 1))) * page;
        if (mremap(r->addr, r->len, len, 0) == MAP_FAILED)
            fail("mremap shrink");
        live_bytes -= (long)(r->len - len);
        r->len = len;
    } else if (r->one_vma) {                                                /* move */
        void *to = mmap(NULL, r->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (to == MAP_FAILED)
            fail("mmap reservation");
        void *p = mremap(r->addr, r->len, r->len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
        if (p != to)
            fail("mremap move");
        r->addr = p;
    }
    check(r, "a remapped range");
}

static void overlay(struct range *r)
{
    size_t pages = r->len / page;
    size_t first = next_random() % pages;
    size_t count = 1 + (next_random() % (pages - first));
    unsigned char *at = r->addr + (first * page);
    void *p = mmap(at, count * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

    if (p != at)
        fail("mmap MAP_FIXED over an own range");
    check_zero(r, first * page, (first + count) * page, "a MAP_FIXED overlay");
    fill(r, first * page, (first + count) * page);
    r->one_vma = (count == pages);
    check(r, "a range with an overlay");
}

static void open_file(void)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    static uint64_t words[512];

    if ((dir == NULL) || (dir[0] == '\0'))
        dir = "/tmp";
    if (snprintf(path, sizeof path, "%s/mmap_churn.XXXXXX", dir) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        fail("TMPDIR");
    }
    file_fd = mkstemp(path);
    if (file_fd < 0)
        fail("mkstemp");
    unlink(path);
    for (size_t off = 0; off < FILE_PAGES * page; off += sizeof words) {
        for (size_t i = 0; i < 512; i++)
            words[i] = word_at(FILE_TAG, off + (i * 8));
        if (write(file_fd, words, sizeof words) != (ssize_t)sizeof words)
            fail("write");
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: mmap_churn SEED [OPERATIONS]\n");
        return 2;
    }
    long ops = (argc > 2) ? atol(argv[2]) : 2000;
    page = (size_t)sysconf(_SC_PAGESIZE);
    rng = ((uint64_t)strtoull(argv[1], NULL, 0) * 2654435761ULL) + 0x9e3779b97f4a7c15ULL;
    open_file();

    for (long i = 0; i < ops; i++) {
        uint64_t op = next_random() % 16;
        struct range *r = (live_bytes < BUDGET) ? free_slot() : NULL;
        struct range *old = live_slot();

        if ((old == NULL) || ((r != NULL) && (op < 5)))
            map_anonymous(r ? r : &slots[0]);
        else if ((r != NULL) && (op < 7))
            map_file(r);
        else if ((op < 10) || (live_bytes >= BUDGET))
            unmap(old);
        else if (op < 12)
            remap(old);
        else if (op < 14)
            overlay(old);
        else
            check(old, "a range checked at random");
        if (((i + 1) % 1000) == 0) {
            printf("progress=%ld\n", i + 1);
            fflush(stdout);
        }
    }
    int live = 0;
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].addr != NULL) {
            check(&slots[i], "a range at the end");
            live++;
        }
    }
    printf("ops=%ld\nlive=%d\nlive_bytes=%ld\nchecked_bytes=%llu\nok\n", ops, live, live_bytes, checked_bytes);
    return 0;
}
