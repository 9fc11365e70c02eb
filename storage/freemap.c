/* freemap.c — a set of page extents, for the PageStore's free space.
 *
 * REPRESENTATION. An array of extents (start, len) sorted by start, with the
 * invariant that no two extents overlap or touch (v[i].start + v[i].len <
 * v[i+1].start): every set of pages has exactly one representation, so a
 * freed run merges with its neighbours and `pages` = sum of len. Lookups are
 * binary searches; insertion and removal move the tail of the array (the
 * sets are small: free space is coalesced).
 *
 * USE. The PageStore (docs/FORMAT.md "Free space") keeps `free` (reusable
 * now) and `pending` (released during the current checkpoint interval,
 * reusable once the next superblock is durable). Allocation is first fit in
 * `free`; the caller falls back to the high-water mark. Adding a page that is
 * already in the set is refused (-EEXIST): a page freed twice is a bug the
 * caller must see, never a silent merge.
 *
 * THREADS. None: the owner serializes (the store's commit thread).
 */
#include <stdlib.h>
#include <string.h>

#include "freemap.h"

/* Index of the first extent whose start is > pg (0..n). */
static size_t upper(const struct freemap *m, uint64_t pg)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->v[mid].start <= pg)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int grow(struct freemap *m)
{
	if (m->n < m->cap)
		return 0;
	size_t cap = m->cap ? m->cap * 2 : 16;
	struct fm_ext *p = realloc(m->v, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	m->v = p;
	m->cap = cap;
	return 0;
}

int fm_add(struct freemap *m, uint64_t start, uint64_t len)
{
	uint64_t end = start + len;
	size_t i;
	int r = -EINVAL;

	if (!len || end < start)
		goto out;
	i = upper(m, start); /* v[i-1].start <= start < v[i].start */
	r = -EEXIST;
	if (i > 0 && m->v[i - 1].start + m->v[i - 1].len > start)
		goto out;
	if (i < m->n && m->v[i].start < end)
		goto out;
	bool left = i > 0 && m->v[i - 1].start + m->v[i - 1].len == start;
	bool right = i < m->n && m->v[i].start == end;
	if (left && right) {
		m->v[i - 1].len += len + m->v[i].len;
		memmove(m->v + i, m->v + i + 1, (m->n - i - 1) * sizeof(*m->v));
		m->n--;
	} else if (left) {
		m->v[i - 1].len += len;
	} else if (right) {
		m->v[i].start = start;
		m->v[i].len += len;
	} else {
		r = grow(m);
		if (r < 0)
			goto out;
		memmove(m->v + i + 1, m->v + i, (m->n - i) * sizeof(*m->v));
		m->v[i] = (struct fm_ext){start, len};
		m->n++;
	}
	m->pages += len;
	r = 0;
out:
	return r;
}

int fm_merge(struct freemap *m, const struct freemap *src)
{
	int r = 0;
	for (size_t i = 0; i < src->n && r == 0; i++)
		r = fm_add(m, src->v[i].start, src->v[i].len);
	return r;
}

bool fm_alloc(struct freemap *m, uint64_t n, uint64_t *ret_start)
{
	for (size_t i = 0; n && i < m->n; i++) {
		if (m->v[i].len < n)
			continue;
		*ret_start = m->v[i].start;
		m->v[i].start += n;
		m->v[i].len -= n;
		m->pages -= n;
		if (!m->v[i].len) {
			memmove(m->v + i, m->v + i + 1, (m->n - i - 1) * sizeof(*m->v));
			m->n--;
		}
		return true;
	}
	return false;
}

int fm_remove(struct freemap *m, uint64_t start, uint64_t len)
{
	uint64_t end = start + len;
	size_t i = upper(m, start);
	int r = -ENOENT;

	if (!len || end < start || i == 0)
		goto out;
	struct fm_ext *e = &m->v[i - 1];
	uint64_t e_end = e->start + e->len;
	if (e_end < end)
		goto out;
	if (e->start == start && e_end == end) {
		memmove(m->v + i - 1, m->v + i, (m->n - i) * sizeof(*m->v));
		m->n--;
	} else if (e->start == start) {
		e->start = end;
		e->len -= len;
	} else if (e_end == end) {
		e->len -= len;
	} else {
		r = grow(m);
		if (r < 0)
			goto out;
		e = &m->v[i - 1]; /* grow may have moved the array */
		memmove(m->v + i + 1, m->v + i, (m->n - i) * sizeof(*m->v));
		m->v[i] = (struct fm_ext){end, e_end - end};
		e->len = start - e->start;
		m->n++;
	}
	m->pages -= len;
	r = 0;
out:
	return r;
}

bool fm_contains(const struct freemap *m, uint64_t pg)
{
	size_t i = upper(m, pg);
	return i > 0 && pg - m->v[i - 1].start < m->v[i - 1].len;
}

void fm_cut(struct freemap *m, uint64_t from)
{
	while (m->n && m->v[m->n - 1].start + m->v[m->n - 1].len > from) {
		struct fm_ext *e = &m->v[m->n - 1];
		if (e->start >= from) {
			m->pages -= e->len;
			m->n--;
		} else {
			m->pages -= e->start + e->len - from;
			e->len = from - e->start;
		}
	}
}

/* The extent of m that contains pg - 1, as its start; pg if none. */
static uint64_t ext_down(const struct freemap *m, uint64_t pg)
{
	if (!pg || !fm_contains(m, pg - 1))
		return pg;
	size_t i = upper(m, pg - 1);
	return m->v[i - 1].start;
}

uint64_t fm_union_tail(const struct freemap *a, const struct freemap *b, uint64_t end)
{
	uint64_t p = end, q;
	/* the two sets are disjoint; walk down alternately while either
	 * continues the run */
	do {
		q = p;
		p = ext_down(a, p);
		p = ext_down(b, p);
	} while (p != q);
	return p;
}

void fm_clear(struct freemap *m)
{
	m->n = 0;
	m->pages = 0;
}

void fm_free(struct freemap *m)
{
	free(m->v);
	*m = (struct freemap){0};
}
