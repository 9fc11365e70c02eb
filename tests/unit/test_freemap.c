/* test_freemap.c — the extent set (storage/freemap.c) against a bitmap
 * model: random adds, removes and first-fit allocations keep the set sorted,
 * coalesced and equal to the model; double frees are refused. */
#include <stdlib.h>
#include <string.h>

#include "storage/freemap.h"
#include "t.h"

#define NPG 512

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* The set equals the model, and its representation is canonical. */
static void same(const struct freemap *m, const bool *model)
{
	uint64_t pages = 0;
	for (size_t i = 0; i < m->n; i++) {
		T_CHECK(m->v[i].len > 0);
		if (i + 1 < m->n)
			T_CHECK(m->v[i].start + m->v[i].len < m->v[i + 1].start);
		pages += m->v[i].len;
	}
	T_CHECK_EQ(pages, m->pages);
	for (uint64_t pg = 0; pg < NPG; pg++)
		if (fm_contains(m, pg) != model[pg]) {
			T_CHECK(!"model mismatch");
			return;
		}
}

static void test_basic(void)
{
	struct freemap m = {0};
	uint64_t s;

	T_CHECK_EQ(fm_add(&m, 10, 5), 0);
	T_CHECK_EQ(fm_add(&m, 20, 5), 0);
	T_CHECK_EQ(m.n, 2);
	T_CHECK_EQ(fm_add(&m, 15, 5), 0); /* bridges both */
	T_CHECK_EQ(m.n, 1);
	T_CHECK_EQ(m.v[0].start, 10);
	T_CHECK_EQ(m.v[0].len, 15);
	T_CHECK_EQ(fm_add(&m, 24, 1), -EEXIST);
	T_CHECK_EQ(fm_add(&m, 5, 6), -EEXIST);
	T_CHECK_EQ(fm_add(&m, 5, 0), -EINVAL);
	T_CHECK_EQ(fm_add(&m, UINT64_MAX, 2), -EINVAL);
	T_CHECK_EQ(m.pages, 15);
	T_CHECK(!fm_alloc(&m, 16, &s));
	T_CHECK(fm_alloc(&m, 4, &s));
	T_CHECK_EQ(s, 10);
	T_CHECK_EQ(fm_remove(&m, 16, 2), 0); /* splits [14,25) */
	T_CHECK_EQ(m.n, 2);
	T_CHECK_EQ(fm_remove(&m, 16, 1), -ENOENT);
	T_CHECK_EQ(fm_remove(&m, 13, 2), -ENOENT);
	fm_cut(&m, 18); /* [18, 25) */
	T_CHECK_EQ(m.pages, 2);
	struct freemap o = {0};
	T_CHECK_EQ(fm_add(&o, 16, 2), 0);
	T_CHECK_EQ(fm_merge(&m, &o), 0);
	T_CHECK_EQ(m.n, 1);
	T_CHECK_EQ(m.v[0].start, 14);
	T_CHECK_EQ(m.v[0].len, 4);
	T_CHECK_EQ(fm_merge(&m, &o), -EEXIST);
	fm_free(&o);
	fm_free(&m);
	/* the union tail of two disjoint sets, and cutting above a page */
	struct freemap a = {0}, c = {0};
	T_CHECK_EQ(fm_add(&a, 10, 5), 0);  /* 10..14 */
	T_CHECK_EQ(fm_add(&c, 15, 3), 0);  /* 15..17 */
	T_CHECK_EQ(fm_add(&a, 18, 2), 0);  /* 18..19 */
	T_CHECK_EQ(fm_add(&c, 5, 2), 0);   /* 5..6 */
	T_CHECK_EQ(fm_union_tail(&a, &c, 20), 10);
	T_CHECK_EQ(fm_union_tail(&a, &c, 21), 21);
	T_CHECK_EQ(fm_union_tail(&a, &c, 7), 5);
	T_CHECK_EQ(fm_union_tail(&a, &c, 0), 0);
	fm_cut(&a, 12);
	fm_cut(&c, 12);
	T_CHECK_EQ(a.n, 1);
	T_CHECK_EQ(a.v[0].len, 2);
	T_CHECK_EQ(a.pages, 2);
	T_CHECK_EQ(c.n, 1);
	T_CHECK_EQ(c.pages, 2);
	fm_cut(&c, 0);
	T_CHECK_EQ(c.n, 0);
	T_CHECK_EQ(c.pages, 0);
	fm_free(&a);
	fm_free(&c);
}

static void test_model(void)
{
	struct freemap m = {0};
	static bool model[NPG];

	for (int step = 0; step < 200000; step++) {
		uint64_t start = rnd() % NPG, len = 1 + rnd() % 8;
		if (start + len > NPG)
			len = NPG - start;
		bool any = false, all = true;
		for (uint64_t p = start; p < start + len; p++) {
			any |= model[p];
			all &= model[p];
		}
		switch (rnd() % 3) {
		case 0: {
			int r = fm_add(&m, start, len);
			T_CHECK_EQ(r, any ? -EEXIST : 0);
			if (!any)
				for (uint64_t p = start; p < start + len; p++)
					model[p] = true;
			break;
		}
		case 1: {
			int r = fm_remove(&m, start, len);
			T_CHECK_EQ(r, all ? 0 : -ENOENT);
			if (all)
				for (uint64_t p = start; p < start + len; p++)
					model[p] = false;
			break;
		}
		default: {
			/* first fit: the lowest run of len free pages */
			uint64_t want = UINT64_MAX, run = 0, s = 0;
			for (uint64_t p = 0; p < NPG && want == UINT64_MAX; p++) {
				run = model[p] ? run + 1 : 0;
				if (run == 1)
					s = p;
				/* a fit must start at the start of a maximal run */
				if (run == len)
					want = s;
			}
			uint64_t got = 0;
			bool ok = fm_alloc(&m, len, &got);
			T_CHECK_EQ(ok, want != UINT64_MAX);
			if (ok) {
				T_CHECK_EQ(got, want);
				for (uint64_t p = got; p < got + len; p++)
					model[p] = false;
			}
			break;
		}
		}
		if (step % 997 == 0)
			same(&m, model);
	}
	same(&m, model);
	fm_free(&m);
}

int main(void)
{
	test_basic();
	test_model();
	T_DONE();
}
