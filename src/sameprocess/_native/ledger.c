/* The ledger: which program owns which range of the space.
 *
 * A sorted array of non-overlapping [start, end) ranges, each with the slot
 * of its owner.  Only the keeper task changes it (one writer, no locks).
 * Ranges are recorded exactly as the kernel was asked to map them, so an
 * munmap or a MAP_FIXED over part of a range splits it, whoever's it was:
 * ownership follows the last call that mapped the bytes, as in a process
 * where the last mmap wins.
 *
 * Same rules as the rest of the keeper: no libc state (no errno, no locks,
 * no allocation); memmove is pure and safe to call.
 */
#include <string.h>
#include <sys/syscall.h>

#include "keeper.h"
#include "ledger.h"
#include "syscalls.h"

/* Index of the first entry whose end is above addr (n_entries if none).
 * Ends are sorted too, since entries are sorted and never overlap. */
static uint64_t first_ending_above(const struct sp_keeper *k, uint64_t addr)
{
    uint64_t lo = 0, hi = k->n_entries;
    while (lo < hi) {
        uint64_t mid = lo + ((hi - lo) / 2);
        if (k->entries[mid].end > addr)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static int make_room(struct sp_keeper *k, uint64_t at)
{
    if (k->n_entries >= k->entry_cap)
        return -1;
    memmove(&k->entries[at + 1], &k->entries[at], (k->n_entries - at) * sizeof k->entries[0]);
    k->n_entries++;
    return 0;
}

static void remove_at(struct sp_keeper *k, uint64_t at)
{
    memmove(&k->entries[at], &k->entries[at + 1], (k->n_entries - at - 1) * sizeof k->entries[0]);
    k->n_entries--;
}

static void account(struct sp_keeper *k, uint32_t slot, int64_t bytes)
{
    k->slots[slot].mapped += (uint64_t)bytes;
}

int ledger_carve(struct sp_keeper *k, uint64_t start, uint64_t end)
{
    uint64_t i = first_ending_above(k, start);
    while (i < k->n_entries && k->entries[i].start < end) {
        struct sp_ledger_entry *e = &k->entries[i];
        if (e->start < start && e->end > end) {          /* a hole in the middle: split */
            if (make_room(k, i + 1) < 0)
                return -1;
            e = &k->entries[i];
            k->entries[i + 1] = *e;
            k->entries[i + 1].start = end;
            e->end = start;
            account(k, e->slot, -(int64_t)(end - start));
            return 0;
        }
        if (e->start < start) {                           /* keep the part below */
            account(k, e->slot, -(int64_t)(e->end - start));
            e->end = start;
            i++;
        } else if (e->end > end) {                        /* keep the part above */
            account(k, e->slot, -(int64_t)(end - e->start));
            e->start = end;
            return 0;
        } else {                                          /* all of it */
            account(k, e->slot, -(int64_t)(e->end - e->start));
            remove_at(k, i);
        }
    }
    return 0;
}

int ledger_set(struct sp_keeper *k, uint64_t start, uint64_t end, uint32_t slot)
{
    if (start >= end)
        return 0;
    if (ledger_carve(k, start, end) < 0)
        return -1;
    uint64_t at = first_ending_above(k, start);
    /* Grow a touching neighbour of the same owner instead of adding one. */
    if (at > 0 && k->entries[at - 1].end == start && k->entries[at - 1].slot == slot) {
        k->entries[at - 1].end = end;
        if (at < k->n_entries && k->entries[at].start == end && k->entries[at].slot == slot) {
            k->entries[at - 1].end = k->entries[at].end;
            remove_at(k, at);
        }
    } else if (at < k->n_entries && k->entries[at].start == end && k->entries[at].slot == slot) {
        k->entries[at].start = start;
    } else {
        if (make_room(k, at) < 0)
            return -1;
        k->entries[at] = (struct sp_ledger_entry){start, end, slot, 0};
    }
    account(k, slot, (int64_t)(end - start));
    return 0;
}

/* A free range of len bytes (aligned) in the window, next-fit from the
 * cursor downwards, wrapping once; 0 if none.  Free means free in the
 * ledger: the caller maps with MAP_FIXED_NOREPLACE, so anything the ledger
 * does not know about is never overwritten. */
uint64_t ledger_place(struct sp_keeper *k, uint64_t len, uint64_t align)
{
    uint64_t lo = k->window_lo, hi = k->window_hi;
    if (len == 0 || len > hi - lo)
        return 0;
    uint64_t end = (k->cursor > lo && k->cursor <= hi) ? k->cursor : hi;
    int wrapped = 0;
    for (;;) {
        /* The highest entry starting below `end` bounds the gap from below. */
        uint64_t i = first_ending_above(k, end);  /* entries[i-1] ends at or below end */
        if (i < k->n_entries && k->entries[i].start < end) {
            end = k->entries[i].start;            /* end falls inside an entry */
            continue;
        }
        uint64_t floor = (i > 0 && k->entries[i - 1].end > lo) ? k->entries[i - 1].end : lo;
        if (end >= floor + len) {
            uint64_t start = (end - len) & ~(align - 1);
            if (start >= floor) {
                k->cursor = start;
                return start;
            }
        }
        if (i > 0 && k->entries[i - 1].end > lo && k->entries[i - 1].start > lo) {
            end = k->entries[i - 1].start;
            continue;
        }
        if (wrapped)
            return 0;
        wrapped = 1;
        end = hi;
    }
}

/* Unmap and forget every range of slot: one pass that compacts the rest. */
uint64_t ledger_reclaim(struct sp_keeper *k, uint32_t slot, uint64_t *bytes)
{
    uint64_t count = 0, kept = 0;
    *bytes = 0;
    for (uint64_t i = 0; i < k->n_entries; i++) {
        struct sp_ledger_entry e = k->entries[i];
        if (e.slot != slot) {
            k->entries[kept++] = e;
            continue;
        }
        SYSCALL(SYS_munmap, e.start, e.end - e.start, 0, 0, 0, 0);
        *bytes += e.end - e.start;
        count++;
    }
    k->n_entries = kept;
    k->slots[slot].mapped = 0;
    return count;
}

uint64_t ledger_query(const struct sp_keeper *k, uint32_t slot, uint64_t *buf, uint64_t cap,
                      uint64_t *bytes)
{
    uint64_t count = 0;
    *bytes = 0;
    for (uint64_t i = 0; i < k->n_entries; i++) {
        const struct sp_ledger_entry *e = &k->entries[i];
        if (e->slot != slot)
            continue;
        if (count < cap) {
            buf[2 * count] = e->start;
            buf[2 * count + 1] = e->end;
        }
        *bytes += e->end - e->start;
        count++;
    }
    return count;
}
