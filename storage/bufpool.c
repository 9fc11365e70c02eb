/* bufpool.c — large buffers recycled, not mapped and unmapped each time.
 *
 * WHY. The daemon fixes glibc's mmap threshold at 128 KiB (fs/main.c) so
 * that freed records and batches go back to the system and RSS stays near
 * what is in flight. The price: every record buffer of a bulk write
 * (256 KiB) and every encoded batch (~1 MiB) was a fresh mmap, and filling
 * it page-faulted and zeroed each page. Streaming 1 MiB writes, the FUSE
 * threads spent more time in page faults than copying (perf: ~20% of all
 * samples in exc_page_fault/clear_page). Those buffers are filled by one
 * thread (a FUSE thread, a worker) and freed by another (the commit thread
 * after the apply), at the rate data flows, so a small pool that hands the
 * freed ones back to the next filler removes the faults while the bound on
 * what it keeps (BP_KEEP) keeps the RSS bound. BP_KEEP is 32 MiB, the
 * default max_inflight: at 8 MiB the pool kept four encoded batches (2 MiB
 * class) and missed most of them while the pipeline was full, and fio's
 * 1 MiB sequential writer spent a quarter of the daemon's samples in page
 * faults of fresh buffers (text-like 350 -> 527-555 MB/s, random 206 ->
 * 275-302 MB/s with 32 MiB; peak RSS streaming 4 GiB with cache_mb=32:
 * 55-68 MiB, the bar being 96). The store's extent writes and readers'
 * buffers come from here too (store_data.c, store_read.c).
 *
 * FORMAT. Classes are the powers of two from BP_MIN to BP_MAX; a request
 * of n bytes in that range gets a buffer of the smallest class >= n. Each
 * class keeps freed buffers on a singly linked list threaded through the
 * buffers' own first bytes (no allocation to keep one). Below BP_MIN or
 * above BP_MAX, and for a capacity that is not a class size, this is
 * malloc/free.
 *
 * INVARIANTS. kept == the sum of the class sizes of the listed buffers <=
 * BP_KEEP. A listed buffer is owned by the pool only; bp_get hands it to
 * exactly one caller.
 *
 * LOCKS. One process-wide mutex (bp_mu) guards the lists and counters; it
 * is a leaf: nothing is called with it held but pointer moves.
 * (glibc's allocator and libjemalloc keep such caches per thread or arena;
 * with the fixed mmap threshold glibc keeps none for these sizes, and
 * linking another allocator for two buffer kinds would change every
 * allocation of the daemon and its sanitizer builds.)
 */
#include <stdlib.h>

#include "bufpool.h"
#include "tsa.h"

#define BP_CLASSES 6 /* 128K 256K 512K 1M 2M 4M */

struct bp_free {
	struct bp_free *next;
};

static bz_mutex bp_mu = {PTHREAD_MUTEX_INITIALIZER};
static struct bp_free *bp_list[BP_CLASSES] GUARDED_BY(bp_mu);
static size_t bp_kept GUARDED_BY(bp_mu);
static uint64_t bp_hits GUARDED_BY(bp_mu), bp_misses GUARDED_BY(bp_mu);

/* The class of a capacity that is exactly a class size, else -1. */
static int class_of_cap(size_t cap)
{
	for (int c = 0; c < BP_CLASSES; c++)
		if (cap == BP_MIN << c)
			return c;
	return -1;
}

void *bp_get(size_t n, size_t *ret_cap)
{
	void *p = NULL;
	int c = 0;

	if (n < BP_MIN || n > BP_MAX) {
		*ret_cap = n;
		return malloc(n ? n : 1);
	}
	while ((BP_MIN << c) < n)
		c++;
	bz_mutex_lock(&bp_mu);
	if (bp_list[c]) {
		struct bp_free *f = bp_list[c];
		bp_list[c] = f->next;
		bp_kept -= BP_MIN << c;
		bp_hits++;
		p = f;
	} else {
		bp_misses++;
	}
	bz_mutex_unlock(&bp_mu);
	if (!p)
		p = malloc(BP_MIN << c);
	*ret_cap = p ? BP_MIN << c : 0;
	return p;
}

void bp_put(void *p, size_t cap)
{
	int c = class_of_cap(cap);

	if (!p)
		return;
	if (c >= 0) {
		bz_mutex_lock(&bp_mu);
		if (bp_kept + cap <= BP_KEEP) {
			struct bp_free *f = p;
			f->next = bp_list[c];
			bp_list[c] = f;
			bp_kept += cap;
			p = NULL;
		}
		bz_mutex_unlock(&bp_mu);
	}
	free(p);
}

void bp_drain(void)
{
	struct bp_free *all[BP_CLASSES];

	bz_mutex_lock(&bp_mu);
	for (int c = 0; c < BP_CLASSES; c++) {
		all[c] = bp_list[c];
		bp_list[c] = NULL;
	}
	bp_kept = 0;
	bz_mutex_unlock(&bp_mu);
	for (int c = 0; c < BP_CLASSES; c++) {
		while (all[c]) {
			struct bp_free *f = all[c];
			all[c] = f->next;
			free(f);
		}
	}
}

void bp_stats(struct bp_stats *ret)
{
	bz_mutex_lock(&bp_mu);
	ret->hits = bp_hits;
	ret->misses = bp_misses;
	ret->kept_bytes = bp_kept;
	bz_mutex_unlock(&bp_mu);
}
