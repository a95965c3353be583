/* The ledger's operations (ledger.c), used by the keeper task only. */
#ifndef SAMEPROCESS_LEDGER_H
#define SAMEPROCESS_LEDGER_H

#include <stdint.h>

#include "keeper.h"

/* Forget [start, end), splitting ranges that stick out; -1: ledger full. */
int ledger_carve(struct sp_keeper *k, uint64_t start, uint64_t end);
/* Record [start, end) as slot's, whoever had it before; -1: ledger full. */
int ledger_set(struct sp_keeper *k, uint64_t start, uint64_t end, uint32_t slot);
/* A free, aligned range of len bytes in the window, or 0. */
uint64_t ledger_place(struct sp_keeper *k, uint64_t len, uint64_t align);
/* Unmap every range of slot; returns how many, with their bytes. */
uint64_t ledger_reclaim(struct sp_keeper *k, uint32_t slot, uint64_t *bytes);
/* Copy up to cap of slot's ranges into buf (start, end pairs); returns how
 * many it has in all, with their bytes. */
uint64_t ledger_query(const struct sp_keeper *k, uint32_t slot, uint64_t *buf, uint64_t cap,
                      uint64_t *bytes);

#endif
