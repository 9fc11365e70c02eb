/* hist.h — cheap always-on latency histograms (log2 buckets of nanoseconds,
 * relaxed atomics: any thread may add, any thread may read a snapshot). */
#ifndef BZ_HIST_H
#define BZ_HIST_H

#include "base.h"

#define BZ_HIST_BUCKETS 48 /* bucket i holds values in [2^i, 2^(i+1)) ns; 0 in bucket 0 */

struct bz_hist {
	uint64_t bucket[BZ_HIST_BUCKETS]; /* accessed with __atomic builtins only */
	uint64_t count;
	uint64_t sum;
	uint64_t max;
};

void bz_hist_add(struct bz_hist *h, uint64_t ns);
/* Copies h into ret (each field read atomically). */
void bz_hist_snapshot(const struct bz_hist *h, struct bz_hist *ret);
/* Quantile q in [0,1] of a snapshot, as the upper bound of its bucket (ns). */
uint64_t bz_hist_quantile(const struct bz_hist *snap, double q);

#endif
