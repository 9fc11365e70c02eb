/* freemap.h — a set of page extents (start, len): sorted, coalesced,
 * non-overlapping. The PageStore keeps two (free, pending: docs/FORMAT.md
 * "Free space"). Pure: no I/O, no locks (the owner serializes). */
#ifndef BZ_FREEMAP_H
#define BZ_FREEMAP_H

#include "base.h"

struct fm_ext {
	uint64_t start, len; /* pages [start, start+len), len >= 1 */
};

struct freemap {
	struct fm_ext *v; /* sorted by start; no two touch or overlap */
	size_t n, cap;
	uint64_t pages;   /* sum of len */
};

/* Adds [start, start+len), merging with neighbours. -EEXIST (nothing
 * changed) if any of those pages is already in the set: a double free;
 * -EINVAL for len 0 or an overflowing range; -ENOMEM. */
int fm_add(struct freemap *m, uint64_t start, uint64_t len);
/* Adds every extent of src to m (-EEXIST: some page was in both; m then
 * holds the extents added before it). */
int fm_merge(struct freemap *m, const struct freemap *src);
/* First fit: takes n consecutive pages from the lowest extent that has
 * them. false (nothing changed) if none does. */
bool fm_alloc(struct freemap *m, uint64_t n, uint64_t *ret_start);
/* Removes [start, start+len) (all of it must be in the set: -ENOENT
 * otherwise, nothing changed). -ENOMEM if an extent had to split. */
int fm_remove(struct freemap *m, uint64_t start, uint64_t len);
/* Whether page pg is in the set. */
bool fm_contains(const struct freemap *m, uint64_t pg);
/* Removes every page >= from. */
void fm_cut(struct freemap *m, uint64_t from);
/* The lowest page p such that [p, end) is entirely in the union of a and
 * b; end if end-1 is in neither. */
uint64_t fm_union_tail(const struct freemap *a, const struct freemap *b, uint64_t end);
void fm_clear(struct freemap *m);
void fm_free(struct freemap *m);

#endif
