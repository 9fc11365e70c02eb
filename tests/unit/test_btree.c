/* test_btree.c — the copy-on-write B+tree (storage/btree.c) over an
 * in-memory page store that tracks every page's state:
 *
 *   FREE -> (alloc) ALLOCATED -> (free_page) PENDING -> (mem_durable) FREE
 *
 * like the store will (pending pages are reused only after the superblock
 * naming the new root is durable). The store refuses, and the test counts
 * as a failure, a write to a page that is not ALLOCATED, a second write to
 * the same allocation, and a free of a page that is not ALLOCATED.
 *
 * Checked: random operations against a reference model with flushes and
 * reopens; after each flush, the pages reachable from the new root are
 * exactly the allocated ones, the freed pages exactly those the old root
 * reached and the new one does not, and the old root still reads as the
 * old model until the pending pages are reused; flush cost O(depth) on a
 * 1M-key tree (and the put/get/flush figures, printed); flushes cut at
 * every write; corrupt pages give errors, not crashes.
 * BTREE_BIG_KEYS=N changes the 1M of the big test (200k under sanitizers,
 * which also take 120k random steps instead of 300k and cut every 3rd write);
 * BTREE_ONLY=basic|random|cut|corrupt|big runs one test. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "storage/btree.h"
#include "storage/pager.h"
#include "t.h"

/* The sanitizer builds (several times slower): fewer steps and keys. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifdef SANITIZED
#define BIG_DEFAULT 200000
#define RANDOM_STEPS 120000
#define CUT_STRIDE 3 /* cut at every third write */
#else
#define BIG_DEFAULT 1000000
#define RANDOM_STEPS 300000
#define CUT_STRIDE 1
#endif

/* ---- the page store ---- */

enum { PS_NEVER = 0, PS_FREE, PS_ALLOC, PS_PENDING };

struct mem {
	uint8_t **pg;
	uint8_t *state, *written;
	size_t cap;
	uint64_t H;
	uint64_t *fstack; /* free pages, reused LIFO */
	size_t nf;
	uint64_t *freed;  /* free_page calls since mem_log_reset */
	size_t nfreed, capfreed;
	uint64_t writes, bad;
	long cut;         /* writes left before failing; < 0: never */
	bool torn;        /* the failing write stores half a page */
};

static void mem_grow(struct mem *m, uint64_t pgno)
{
	size_t cap = m->cap ? m->cap : 1024;

	if (pgno < m->cap)
		return;
	while (cap <= pgno)
		cap *= 2;
	m->pg = realloc(m->pg, cap * sizeof(*m->pg));
	m->state = realloc(m->state, cap);
	m->written = realloc(m->written, cap);
	m->fstack = realloc(m->fstack, cap * sizeof(*m->fstack));
	T_ASSERT(m->pg && m->state && m->written && m->fstack);
	memset(m->pg + m->cap, 0, (cap - m->cap) * sizeof(*m->pg));
	memset(m->state + m->cap, 0, cap - m->cap);
	memset(m->written + m->cap, 0, cap - m->cap);
	m->cap = cap;
}

static void mem_init(struct mem *m)
{
	memset(m, 0, sizeof(*m));
	m->H = 2;
	m->cut = -1;
	mem_grow(m, 2);
}

static void mem_free(struct mem *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->pg[i]);
	free(m->pg);
	free(m->state);
	free(m->written);
	free(m->fstack);
	free(m->freed);
}

static void mem_copy(struct mem *dst, const struct mem *src)
{
	mem_init(dst);
	mem_grow(dst, src->cap - 1);
	for (size_t i = 0; i < src->cap; i++)
		if (src->pg[i]) {
			dst->pg[i] = malloc(PAGER_PAGE_SIZE);
			T_ASSERT(dst->pg[i]);
			memcpy(dst->pg[i], src->pg[i], PAGER_PAGE_SIZE);
		}
	memcpy(dst->state, src->state, src->cap);
	memcpy(dst->written, src->written, src->cap);
	memcpy(dst->fstack, src->fstack, src->nf * sizeof(*src->fstack));
	dst->nf = src->nf;
	dst->H = src->H;
}

static int m_read(void *arg, uint64_t pgno, uint8_t *buf)
{
	struct mem *m = arg;

	if (pgno >= m->cap || !m->pg[pgno])
		return -EIO;
	memcpy(buf, m->pg[pgno], PAGER_PAGE_SIZE);
	return 0;
}

static int m_alloc(void *arg, uint64_t *ret)
{
	struct mem *m = arg;
	uint64_t p;

	if (m->nf)
		p = m->fstack[--m->nf];
	else {
		p = m->H++;
		mem_grow(m, p);
	}
	if (m->state[p] != PS_FREE && m->state[p] != PS_NEVER)
		m->bad++;
	m->state[p] = PS_ALLOC;
	m->written[p] = 0;
	*ret = p;
	return 0;
}

static void m_freep(void *arg, uint64_t pgno)
{
	struct mem *m = arg;

	if (pgno >= m->cap || m->state[pgno] != PS_ALLOC) {
		m->bad++;
		return;
	}
	m->state[pgno] = PS_PENDING;
	if (m->nfreed == m->capfreed) {
		m->capfreed = m->capfreed ? m->capfreed * 2 : 256;
		m->freed = realloc(m->freed, m->capfreed * sizeof(*m->freed));
		T_ASSERT(m->freed);
	}
	m->freed[m->nfreed++] = pgno;
}

static int m_write(void *arg, uint64_t pgno, const uint8_t *page)
{
	struct mem *m = arg;
	size_t n = PAGER_PAGE_SIZE;
	int r = 0;

	if (pgno >= m->cap || m->state[pgno] != PS_ALLOC || m->written[pgno]) {
		m->bad++;
		return -EINVAL;
	}
	if (m->cut == 0) {
		if (!m->torn)
			return -EIO;
		n = PAGER_PAGE_SIZE / 2;
		r = -EIO;
	} else if (m->cut > 0) {
		m->cut--;
	}
	if (!m->pg[pgno]) {
		m->pg[pgno] = calloc(1, PAGER_PAGE_SIZE);
		T_ASSERT(m->pg[pgno]);
	}
	memcpy(m->pg[pgno], page, n);
	m->written[pgno] = 1;
	m->writes++;
	return r;
}

static uint64_t m_hw(void *arg) { return ((struct mem *)arg)->H; }

/* The superblock naming the new root is durable: pending pages are free. */
static void mem_durable(struct mem *m)
{
	for (uint64_t p = 2; p < m->H; p++)
		if (m->state[p] == PS_PENDING) {
			m->state[p] = PS_FREE;
			m->fstack[m->nf++] = p;
		}
}

static struct btree_io mem_io(struct mem *m)
{
	return (struct btree_io){ .read_page = m_read, .alloc_page = m_alloc, .free_page = m_freep,
		.write_page = m_write, .high_water = m_hw, .arg = m };
}

/* ---- keys, values and the model ---- */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

/* id < 256: a 1-byte key (prefixes of longer keys); id % 13 == 0: 100..300
 * bytes sharing long prefixes; else ~20-40 bytes. Distinct for distinct ids. */
static size_t key_of(uint64_t id, uint8_t *k)
{
	if (id < 256) {
		k[0] = (uint8_t)id;
		return 1;
	}
	if (id % 13 == 0) {
		size_t n = 100 + (size_t)(mix(id) % 180);
		memset(k, 'x', n);
		return n + (size_t)sprintf((char *)k + n, "%llx", (unsigned long long)id);
	}
	return (size_t)sprintf((char *)k, "u/%llx/%llu", (unsigned long long)(mix(id) % 4096),
		(unsigned long long)id);
}

static void val_fill(uint64_t seed, uint32_t len, uint8_t *v)
{
	uint64_t x = seed | 1;

	for (uint32_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v[i] = (uint8_t)x;
	}
}

static uint32_t val_len(uint64_t r)
{
	uint64_t c = r % 100;

	if (c < 70)
		return (uint32_t)(mix(r) % 150);
	if (c < 90)
		return 150 + (uint32_t)(mix(r) % 875);
	if (c < 98)
		return 1025 + (uint32_t)(mix(r) % 8000);
	return 9000 + (uint32_t)(mix(r) % 61000);
}

struct model {
	uint64_t n;       /* universe */
	uint8_t **key;
	uint16_t *klen;
	uint64_t *order;  /* ids sorted by key */
	uint8_t *present;
	uint64_t *seed;
	uint32_t *vlen;
	uint64_t count;
};

static struct model *sort_m;
static int id_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	size_t lx = sort_m->klen[x], ly = sort_m->klen[y];
	int c = memcmp(sort_m->key[x], sort_m->key[y], lx < ly ? lx : ly);
	return c ? c : (lx < ly ? -1 : lx > ly);
}

static void model_init(struct model *m, uint64_t n)
{
	uint8_t k[BTREE_KEY_MAX + 32];

	memset(m, 0, sizeof(*m));
	m->n = n;
	m->key = calloc(n, sizeof(*m->key));
	m->klen = calloc(n, sizeof(*m->klen));
	m->order = calloc(n, sizeof(*m->order));
	m->present = calloc(n, 1);
	m->seed = calloc(n, sizeof(*m->seed));
	m->vlen = calloc(n, sizeof(*m->vlen));
	T_ASSERT(m->key && m->klen && m->order && m->present && m->seed && m->vlen);
	for (uint64_t i = 0; i < n; i++) {
		m->klen[i] = (uint16_t)key_of(i, k);
		T_ASSERT(m->klen[i] >= 1 && m->klen[i] <= BTREE_KEY_MAX);
		m->key[i] = malloc(m->klen[i]);
		memcpy(m->key[i], k, m->klen[i]);
		m->order[i] = i;
	}
	sort_m = m;
	qsort(m->order, n, sizeof(*m->order), id_cmp);
	for (uint64_t i = 1; i < n; i++)
		T_ASSERT(id_cmp(&m->order[i - 1], &m->order[i]) < 0);
}

static void model_copy(struct model *dst, const struct model *src)
{
	*dst = *src;
	dst->present = malloc(src->n);
	dst->seed = malloc(src->n * sizeof(*dst->seed));
	dst->vlen = malloc(src->n * sizeof(*dst->vlen));
	memcpy(dst->present, src->present, src->n);
	memcpy(dst->seed, src->seed, src->n * sizeof(*dst->seed));
	memcpy(dst->vlen, src->vlen, src->n * sizeof(*dst->vlen));
}

static void model_copy_free(struct model *m)
{
	free(m->present);
	free(m->seed);
	free(m->vlen);
}

static void model_free(struct model *m)
{
	for (uint64_t i = 0; i < m->n; i++)
		free(m->key[i]);
	free(m->key);
	free(m->klen);
	free(m->order);
	model_copy_free(m);
}

struct cmp_ctx {
	const struct model *m;
	uint64_t pos; /* index in order */
	uint64_t bad, seen;
	uint8_t *vb;
};

static int cmp_cb(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	struct cmp_ctx *c = arg;
	const struct model *m = c->m;
	uint64_t id;

	while (c->pos < m->n && !m->present[m->order[c->pos]])
		c->pos++;
	c->seen++;
	if (c->pos >= m->n) {
		c->bad++;
		return 0;
	}
	id = m->order[c->pos++];
	if (klen != m->klen[id] || memcmp(key, m->key[id], klen) || vlen != m->vlen[id]) {
		c->bad++;
		return 0;
	}
	val_fill(m->seed[id], m->vlen[id], c->vb);
	if (vlen && memcmp(val, c->vb, vlen))
		c->bad++;
	return 0;
}

/* The whole tree equals the model (iteration in order, values included). */
static void check_equal(struct btree *t, const struct model *m)
{
	struct cmp_ctx c = { .m = m, .vb = malloc(BTREE_VALUE_MAX) };
	int r = btree_iter(t, NULL, 0, cmp_cb, &c);

	T_CHECK_EQ(r, 0);
	T_CHECK_EQ(c.bad, 0);
	T_CHECK_EQ(c.seen, m->count);
	T_CHECK_EQ(btree_count(t), m->count);
	free(c.vb);
	/* btree_last: the largest present key */
	uint8_t last[BTREE_KEY_MAX];
	size_t llen = 0;
	size_t pos = m->n;
	while (pos > 0 && !m->present[m->order[pos - 1]])
		pos--;
	r = btree_last(t, last, &llen);
	if (pos == 0) {
		T_CHECK_EQ(r, -ENOENT);
	} else {
		uint64_t id = m->order[pos - 1];
		T_CHECK_EQ(r, 0);
		T_CHECK(r == 0 && llen == m->klen[id] && !memcmp(last, m->key[id], llen));
	}
}

/* ---- reachability ---- */

struct reach {
	uint8_t *in; /* per page: reached */
	size_t cap;
	uint64_t n, not_alloc;
	const struct mem *m;
};

static void reach_cb(void *arg, uint64_t pgno, uint8_t type)
{
	struct reach *r = arg;

	(void)type;
	T_ASSERT(pgno < r->cap);
	r->in[pgno]++;
	r->n++;
	if (r->m && r->m->state[pgno] != PS_ALLOC)
		r->not_alloc++;
}

static void reach_of(const struct mem *m, uint64_t root, uint64_t count, struct reach *ret, bool check_alloc)
{
	struct btree_io io = mem_io((struct mem *)m);

	ret->cap = m->cap;
	ret->in = calloc(m->cap, 1);
	ret->n = ret->not_alloc = 0;
	ret->m = check_alloc ? m : NULL;
	T_CHECK_EQ(btree_verify(&io, root, count, reach_cb, ret), 0);
}

/* After a flush from old_root to new_root: freed == old \ new, no page of
 * new is pending or free, every allocated page is reachable from new. */
static void check_flush_pages(struct mem *m, const struct reach *old, uint64_t new_root, uint64_t count)
{
	struct reach nw;
	uint8_t *fr = calloc(m->cap, 1);
	uint64_t bad_freed = 0, missed = 0, allocated = 0, leaked = 0;

	reach_of(m, new_root, count, &nw, true);
	T_CHECK_EQ(nw.not_alloc, 0);
	for (size_t i = 0; i < m->nfreed; i++)
		fr[m->freed[i]]++;
	for (uint64_t p = 2; p < m->H; p++) {
		bool o = p < old->cap && old->in[p], n = p < nw.cap && nw.in[p];
		if (fr[p] && (fr[p] > 1 || !o || n))
			bad_freed++;
		if (o && !n && !fr[p])
			missed++;
		if (m->state[p] == PS_ALLOC) {
			allocated++;
			if (!n)
				leaked++;
		}
	}
	T_CHECK_EQ(bad_freed, 0);
	T_CHECK_EQ(missed, 0);
	T_CHECK_EQ(leaked, 0);
	T_CHECK_EQ(allocated, nw.n);
	T_CHECK_EQ(m->bad, 0);
	free(fr);
	free(nw.in);
	m->nfreed = 0;
}

/* ---- tests ---- */

struct first_ctx {
	uint8_t key[BTREE_KEY_MAX];
	size_t klen;
	int calls;
	int get_rc;
	struct btree *t;
};

static int first_cb(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	struct first_ctx *c = arg;

	(void)val;
	(void)vlen;
	if (c->calls++ == 0) {
		memcpy(c->key, key, klen);
		c->klen = klen;
		c->get_rc = btree_put(c->t, "zz", 2, "", 0); /* not allowed while iterating */
	}
	return c->calls == 3 ? 42 : 0;
}

static void test_basic(void)
{
	struct mem m;
	struct btree_io io;
	struct btree *t = NULL;
	uint8_t big[BTREE_KEY_MAX + 1], buf[64];
	size_t vl = 0;
	uint64_t root = 1;
	struct first_ctx fc = { 0 };

	mem_init(&m);
	io = mem_io(&m);
	T_ASSERT(btree_open(&io, 0, 0, &t) == 0);
	T_CHECK_EQ(btree_open(&io, 0, 5, &(struct btree *){ NULL }), -EUCLEAN);
	T_CHECK_EQ(btree_get(t, "a", 1, buf, sizeof(buf), &vl), -ENOENT);
	T_CHECK_EQ(btree_del(t, "a", 1), -ENOENT);
	T_CHECK_EQ(btree_flush(t, 1, &root), 0);
	T_CHECK_EQ(root, 0);
	T_CHECK_EQ(m.writes, 0);
	memset(big, 'k', sizeof(big));
	T_CHECK_EQ(btree_put(t, big, 0, "", 0), -EINVAL);
	T_CHECK_EQ(btree_put(t, big, BTREE_KEY_MAX + 1, "", 0), -EINVAL);
	T_CHECK_EQ(btree_put(t, big, BTREE_KEY_MAX, "v", 1), 0);
	T_CHECK_EQ(btree_put(t, "b", 1, "two", 3), 0);
	T_CHECK_EQ(btree_put(t, "ab", 2, "", 0), 0);
	T_CHECK_EQ(btree_put(t, "a", 1, "one", 3), 0);
	T_CHECK_EQ(btree_put(t, "b", 1, "TWO!", 4), 0); /* replace */
	T_CHECK_EQ(btree_count(t), 4);
	T_CHECK_EQ(btree_get(t, "b", 1, buf, 2, &vl), -ERANGE);
	T_CHECK_EQ(vl, 4);
	T_CHECK_EQ(btree_get(t, "b", 1, buf, sizeof(buf), &vl), 0);
	T_CHECK(vl == 4 && memcmp(buf, "TWO!", 4) == 0);
	T_CHECK_EQ(btree_get(t, "ab", 2, NULL, 0, &vl), 0);
	T_CHECK_EQ(vl, 0);
	T_CHECK_EQ(btree_get(t, "abc", 3, buf, sizeof(buf), &vl), -ENOENT);
	/* Order: "a" < "ab" < "b" < "kkk..."; from "aa" starts at "ab". */
	fc.t = t;
	T_CHECK_EQ(btree_iter(t, "aa", 2, first_cb, &fc), 42);
	T_CHECK(fc.klen == 2 && memcmp(fc.key, "ab", 2) == 0);
	T_CHECK_EQ(fc.calls, 3);
	T_CHECK_EQ(fc.get_rc, -EBUSY);
	fc.calls = 0;
	T_CHECK_EQ(btree_iter(t, NULL, 0, first_cb, &fc), 42);
	T_CHECK(fc.klen == 1 && fc.key[0] == 'a');
	T_CHECK_EQ(btree_flush(t, 1, &root), 0);
	T_CHECK(root >= 2);
	T_CHECK_EQ(m.writes, 1);
	T_CHECK_EQ(btree_del(t, "a", 1), 0);
	T_CHECK_EQ(btree_del(t, "a", 1), -ENOENT);
	T_CHECK_EQ(btree_del(t, "ab", 2), 0);
	T_CHECK_EQ(btree_del(t, "b", 1), 0);
	T_CHECK_EQ(btree_del(t, big, BTREE_KEY_MAX), 0);
	T_CHECK_EQ(btree_count(t), 0);
	T_CHECK_EQ(btree_flush(t, 2, &root), 0);
	T_CHECK_EQ(root, 0);
	T_CHECK_EQ(m.nfreed, 1);
	T_CHECK_EQ(m.bad, 0);
	btree_close(t);
	mem_free(&m);
}

/* btree_ends_max: the highest page on the leftmost and rightmost paths,
 * not the root's. Built so that the root is low while the rightmost leaf
 * is high (what the store's giving-back looks for, store_nstree.c). */
static void test_ends(void)
{
	struct mem m;
	struct btree_io io;
	struct btree *t = NULL;
	char k[16], v[48];
	uint64_t root = 0, top = 1, n = 20000;

	mem_init(&m);
	io = mem_io(&m);
	T_ASSERT(btree_open(&io, 0, 0, &t) == 0);
	T_CHECK_EQ(btree_ends_max(t, &top), 0);
	T_CHECK_EQ(top, 0); /* empty */
	memset(v, 'v', sizeof(v));
	for (uint64_t i = 0; i < n; i++) {
		snprintf(k, sizeof(k), "k%08llu", (unsigned long long)i);
		T_CHECK_EQ(btree_put(t, k, 9, v, sizeof(v)), 0);
	}
	T_CHECK_EQ(btree_flush(t, 1, &root), 0);
	T_CHECK_EQ(btree_ends_max(t, &top), 0);
	T_CHECK_EQ(top, root); /* all pages new: the root, written last, is the highest */
	mem_durable(&m);
	/* the rightmost path moves to the top (nothing free: new pages at H) */
	uint64_t h2 = m.H;
	v[0] = 'w';
	T_CHECK_EQ(btree_put(t, "k00019999", 9, v, sizeof(v)), 0);
	T_CHECK_EQ(btree_flush(t, 2, &root), 0);
	T_CHECK_EQ(btree_ends_max(t, &top), 0);
	T_CHECK(top >= h2 && top == root);
	mem_durable(&m);
	/* one middle key: its path and the root take the pages flush 2 freed
	 * (the old rightmost path, low); the rightmost leaf, the first page of
	 * flush 2, stays at the top */
	T_CHECK_EQ(btree_put(t, "k00010000", 9, v, sizeof(v)), 0);
	T_CHECK_EQ(btree_flush(t, 3, &root), 0);
	T_CHECK(root < h2);
	T_CHECK_EQ(btree_ends_max(t, &top), 0);
	T_CHECK(top >= h2 && top < m.H);
	mem_durable(&m);
	/* rewriting the first and last keys rewrites both end paths: the
	 * highest of them is the highest page this flush allocated */
	size_t cap0 = m.cap;
	uint8_t *before = malloc(cap0);
	T_ASSERT(before);
	memcpy(before, m.state, cap0);
	T_CHECK_EQ(btree_put(t, "k00000000", 9, v, sizeof(v)), 0);
	T_CHECK_EQ(btree_put(t, "k00019999", 9, "x", 1), 0);
	T_CHECK_EQ(btree_flush(t, 4, &root), 0);
	uint64_t want = 0;
	for (uint64_t p = 2; p < m.H; p++)
		if (m.state[p] == PS_ALLOC && (p >= cap0 || before[p] != PS_ALLOC))
			want = p;
	free(before);
	T_CHECK_EQ(btree_ends_max(t, &top), 0);
	T_CHECK(want > 0 && top == want);
	T_CHECK_EQ(m.bad, 0);
	btree_close(t);
	mem_free(&m);
}

static uint64_t seed_of(uint64_t step) { return mix(step * 7919 + 13); }

static void apply_op(struct btree *t, struct model *md, uint64_t step, uint8_t *vb, uint64_t *gets_bad)
{
	uint64_t r = seed_of(step), id = r % md->n;
	uint64_t op = (r >> 40) % 100;
	size_t vl = 0;
	int rc;

	if (op < 55) {
		uint32_t len = val_len(mix(r + 1));
		val_fill(r, len, vb);
		rc = btree_put(t, md->key[id], md->klen[id], vb, len);
		T_CHECK_EQ(rc, 0);
		if (!md->present[id])
			md->count++;
		md->present[id] = 1;
		md->seed[id] = r;
		md->vlen[id] = len;
	} else if (op < 85) {
		rc = btree_del(t, md->key[id], md->klen[id]);
		T_CHECK_EQ(rc, md->present[id] ? 0 : -ENOENT);
		if (md->present[id])
			md->count--;
		md->present[id] = 0;
	} else {
		rc = btree_get(t, md->key[id], md->klen[id], vb, BTREE_VALUE_MAX, &vl);
		if (!md->present[id]) {
			if (rc != -ENOENT)
				(*gets_bad)++;
			return;
		}
		if (rc != 0 || vl != md->vlen[id]) {
			(*gets_bad)++;
			return;
		}
		{
			uint8_t *ex = malloc(vl + 1);
			val_fill(md->seed[id], (uint32_t)vl, ex);
			if (memcmp(ex, vb, vl))
				(*gets_bad)++;
			free(ex);
		}
	}
}

/* Random puts, deletes and gets over 100k keys against the model; every
 * 15k steps a flush with the page checks and the old root re-read, then
 * the pending pages become reusable; every third flush a reopen. */
static void test_random(void)
{
	const uint64_t universe = 100000, steps = RANDOM_STEPS, every = 15000;
	struct mem m;
	struct btree_io io;
	struct btree *t = NULL;
	struct model md, last; /* last: what root holds */
	uint64_t root = 0, old_root, gets_bad = 0, flushes = 0;
	uint8_t *vb = malloc(BTREE_VALUE_MAX);
	struct btree_stats st;

	mem_init(&m);
	io = mem_io(&m);
	model_init(&md, universe);
	model_copy(&last, &md);
	T_ASSERT(btree_open(&io, 0, 0, &t) == 0);
	btree_set_cache_bytes(t, 512 << 10); /* far below the tree: evictions */
	for (uint64_t s = 0; s < steps; s++) {
		struct reach before;
		struct btree *ot = NULL;

		apply_op(t, &md, s, vb, &gets_bad);
		if ((s + 1) % every)
			continue;
		old_root = root;
		reach_of(&m, old_root, last.count, &before, true);
		T_CHECK_EQ(before.not_alloc, 0);
		T_CHECK_EQ(btree_flush(t, s, &root), 0);
		flushes++;
		check_flush_pages(&m, &before, root, md.count);
		free(before.in);
		/* The old root still reads as before while its pages are pending. */
		if (old_root) {
			T_ASSERT(btree_open(&io, old_root, last.count, &ot) == 0);
			check_equal(ot, &last);
			btree_close(ot);
		}
		model_copy_free(&last);
		model_copy(&last, &md);
		mem_durable(&m);
		if (flushes % 3 == 0) {
			btree_close(t);
			T_ASSERT(btree_open(&io, root, md.count, &t) == 0);
			btree_set_cache_bytes(t, 512 << 10);
		}
		check_equal(t, &md);
	}
	T_CHECK_EQ(gets_bad, 0);
	btree_stats(t, &st);
	T_CHECK(st.evictions > 0);
	T_CHECK(st.depth >= 3);
	fprintf(stderr, "random: %llu steps, %llu keys, depth %u, %llu pages, %llu flushes\n",
		(unsigned long long)steps, (unsigned long long)md.count, st.depth,
		(unsigned long long)(m.H - 2), (unsigned long long)flushes);
	/* Shrinking: merges give the pages back and lower the tree. */
	for (int round = 0; round < 2; round++) {
		struct reach before, after;
		uint64_t keep = round ? 0 : 200, dels = 0;
		reach_of(&m, root, md.count, &before, true);
		for (uint64_t id = 0; id < md.n; id++) {
			if (!md.present[id] || (keep && id % keep == 0))
				continue;
			T_CHECK_EQ(btree_del(t, md.key[id], md.klen[id]), 0);
			md.present[id] = 0;
			md.count--;
			dels++;
		}
		T_CHECK_EQ(btree_flush(t, steps + (uint64_t)round, &root), 0);
		check_flush_pages(&m, &before, root, md.count);
		mem_durable(&m);
		check_equal(t, &md);
		reach_of(&m, root, md.count, &after, true);
		btree_stats(t, &st);
		fprintf(stderr, "random: %llu deleted, %llu keys left: %llu pages, depth %u\n",
			(unsigned long long)dels, (unsigned long long)md.count, (unsigned long long)after.n, st.depth);
		if (round == 0) {
			/* ~300 keys need a few dozen pages at most (values < 70 KB). */
			T_CHECK(after.n < before.n / 20);
			T_CHECK(st.depth <= 3);
		} else {
			T_CHECK_EQ(root, 0);
			T_CHECK_EQ(after.n, 0);
			T_CHECK_EQ(st.depth, 0);
		}
		free(before.in);
		free(after.in);
	}
	btree_close(t);
	model_copy_free(&last);
	model_free(&md);
	mem_free(&m);
	free(vb);
}


static double now_s(void)
{
	struct timespec ts;

	/* CPU time: figures that do not depend on what else the machine runs */
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t big_key(uint64_t i, uint8_t *k)
{
	/* ~40 bytes, in an order unrelated to i */
	return (size_t)sprintf((char *)k, "tenant-%04llu/object/%016llx/x",
		(unsigned long long)(mix(i) % 1000), (unsigned long long)mix(i + 77));
}

/* 1M keys of ~40 bytes with 100-byte values: the put/get/flush figures, a
 * cold lookup reads depth pages, and one change costs depth pages. */
static void test_big(void)
{
	uint64_t n = BIG_DEFAULT, root = 0;
	const char *env = getenv("BTREE_BIG_KEYS");
	struct mem m;
	struct btree_io io;
	struct btree *t = NULL;
	struct btree_stats st0, st1;
	uint8_t k[64], v[128], buf[128];
	size_t kl, vl;
	double t0, tput, tget, tflush = 0;
	uint64_t w0, bad = 0, ovf_pages;

	if (env && atoll(env) > 0)
		n = (uint64_t)atoll(env);
	mem_init(&m);
	io = mem_io(&m);
	T_ASSERT(btree_open(&io, 0, 0, &t) == 0);
	btree_set_cache_bytes(t, 16 << 20);
	t0 = now_s();
	for (uint64_t i = 0; i < n; i++) {
		kl = big_key(i, k);
		val_fill(i, 100, v);
		if (btree_put(t, k, kl, v, 100) != 0)
			bad++;
		if ((i + 1) % 100000 == 0) {
			double f0 = now_s();
			T_CHECK_EQ(btree_flush(t, i, &root), 0);
			tflush += now_s() - f0;
			mem_durable(&m);
		}
	}
	T_CHECK_EQ(btree_flush(t, n, &root), 0);
	mem_durable(&m);
	tput = now_s() - t0;
	T_CHECK_EQ(bad, 0);
	T_CHECK_EQ(btree_count(t), n);
	btree_stats(t, &st0);
	T_CHECK(st0.depth >= 3);
	/* A cold tree: one lookup reads one page per level. */
	btree_close(t);
	T_ASSERT(btree_open(&io, root, n, &t) == 0);
	btree_set_cache_bytes(t, 16 << 20);
	kl = big_key(n / 2, k);
	T_CHECK_EQ(btree_get(t, k, kl, buf, sizeof(buf), &vl), 0);
	btree_stats(t, &st1);
	T_CHECK_EQ(st1.pages_read, st0.depth);
	/* Random gets, 16 MiB cache over a ~200 MiB tree. */
	t0 = now_s();
	for (uint64_t i = 0; i < n; i++) {
		uint64_t j = mix(i ^ 0x5555) % n;
		kl = big_key(j, k);
		val_fill(j, 100, v);
		if (btree_get(t, k, kl, buf, sizeof(buf), &vl) != 0 || vl != 100 || memcmp(buf, v, 100))
			bad++;
	}
	tget = now_s() - t0;
	T_CHECK_EQ(bad, 0);
	btree_stats(t, &st1);
	/* One change, one flush: depth pages written, depth freed. */
	kl = big_key(12345 % n, k);
	T_CHECK_EQ(btree_put(t, k, kl, "changed", 7), 0);
	w0 = m.writes;
	m.nfreed = 0;
	T_CHECK_EQ(btree_flush(t, n + 1, &root), 0);
	T_CHECK_EQ(m.writes - w0, st0.depth);
	T_CHECK_EQ(m.nfreed, st0.depth);
	{
		struct reach rc;
		reach_of(&m, root, n, &rc, true);
		fprintf(stderr, "big: %llu keys (40 B keys, 100 B values), depth %u, %llu tree pages (%.0f MiB), "
			"store high-water %llu pages\n", (unsigned long long)n, st0.depth, (unsigned long long)rc.n,
			(double)rc.n / 256, (unsigned long long)(m.H - 2));
		T_CHECK_EQ(rc.not_alloc, 0);
		free(rc.in);
	}
	fprintf(stderr, "big (CPU time): put %.0f ops/s (incl. 11 flushes: %.2f s), get %.0f ops/s random, "
		"cache 16 MiB: %llu hits %llu misses\n",
		(double)n / tput, tflush, (double)n / tget, (unsigned long long)st1.cache_hits,
		(unsigned long long)st1.cache_misses);
	fprintf(stderr, "big: flush of 1 changed key: %llu pages written, %llu freed\n",
		(unsigned long long)(m.writes - w0), (unsigned long long)m.nfreed);
	mem_durable(&m);
	/* A 70,000-byte value: depth pages plus its 18 overflow pages. */
	{
		uint8_t *lv = malloc(70000), *back = malloc(70000);
		val_fill(99, 70000, lv);
		T_CHECK_EQ(btree_put(t, k, kl, lv, 70000), 0);
		w0 = m.writes;
		m.nfreed = 0;
		T_CHECK_EQ(btree_flush(t, n + 2, &root), 0);
		ovf_pages = (70000 + PAGER_PAYLOAD - 1) / PAGER_PAYLOAD;
		T_CHECK_EQ(m.writes - w0, st0.depth + ovf_pages);
		T_CHECK_EQ(m.nfreed, st0.depth);
		mem_durable(&m);
		T_CHECK_EQ(btree_del(t, k, kl), 0);
		m.nfreed = 0;
		T_CHECK_EQ(btree_flush(t, n + 3, &root), 0);
		T_CHECK_EQ(m.nfreed, st0.depth + ovf_pages);
		T_CHECK_EQ(btree_get(t, k, kl, back, 70000, &vl), -ENOENT);
		free(lv);
		free(back);
	}
	T_CHECK_EQ(m.bad, 0);
	btree_close(t);
	mem_free(&m);
}

/* A flush whose writes stop at write k (for every k; the failing write
 * stores half a page) leaves the old root fully readable, and the tree
 * fails later calls instead of going on half flushed. */
static void crash_changes(struct btree *t, struct model *md, uint8_t *vb)
{
	uint64_t gb = 0;

	for (uint64_t s = 0; s < 600; s++)
		apply_op(t, md, 1000000 + s, vb, &gb);
	T_CHECK_EQ(gb, 0);
}

static void test_cut_flush(void)
{
	struct mem base, m;
	struct btree_io io;
	struct btree *t = NULL;
	struct model md, base_md;
	uint64_t root0 = 0, root = 0, full_writes;
	uint8_t *vb = malloc(BTREE_VALUE_MAX);

	mem_init(&base);
	io = mem_io(&base);
	model_init(&md, 6000);
	T_ASSERT(btree_open(&io, 0, 0, &t) == 0);
	for (uint64_t s = 0; s < 6000; s++) {
		uint64_t gb = 0;
		apply_op(t, &md, s, vb, &gb);
	}
	T_CHECK_EQ(btree_flush(t, 1, &root0), 0);
	btree_close(t);
	mem_durable(&base);
	model_copy(&base_md, &md);
	/* The uncut flush, to count its writes. */
	mem_copy(&m, &base);
	io = mem_io(&m);
	T_ASSERT(btree_open(&io, root0, base_md.count, &t) == 0);
	crash_changes(t, &md, vb);
	T_CHECK_EQ(btree_flush(t, 2, &root), 0);
	full_writes = m.writes;
	T_CHECK(full_writes > 20);
	check_equal(t, &md);
	btree_close(t);
	mem_free(&m);
	for (uint64_t k = 0; k < full_writes; k += CUT_STRIDE) {
		struct model mk;
		struct btree *ot = NULL;
		uint64_t r2 = 0;
		size_t vl;

		mem_copy(&m, &base);
		m.cut = (long)k;
		m.torn = k % 2;
		io = mem_io(&m);
		model_copy(&mk, &base_md);
		T_ASSERT(btree_open(&io, root0, base_md.count, &t) == 0);
		crash_changes(t, &mk, vb);
		T_CHECK_EQ(btree_flush(t, 2, &r2), -EIO);
		T_CHECK_EQ(btree_put(t, "a", 1, "", 0), -EIO);
		T_CHECK_EQ(btree_get(t, "a", 1, NULL, 0, &vl), -EIO);
		btree_close(t);
		/* Nothing the old root reaches was written: it reads as before. */
		T_CHECK_EQ(btree_verify(&io, root0, base_md.count, NULL, NULL), 0);
		T_ASSERT(btree_open(&io, root0, base_md.count, &ot) == 0);
		check_equal(ot, &base_md);
		btree_close(ot);
		T_CHECK_EQ(m.bad, 0);
		model_copy_free(&mk);
		mem_free(&m);
	}
	fprintf(stderr, "cut: flush of 600 changes to a %llu-key tree cut at each of its %llu writes\n",
		(unsigned long long)base_md.count, (unsigned long long)full_writes);
	model_copy_free(&base_md);
	model_free(&md);
	mem_free(&base);
	free(vb);
}

/* ---- corrupt pages ---- */

struct pages {
	uint64_t pg[4096];
	uint8_t type[4096];
	size_t n;
};

static void pages_cb(void *arg, uint64_t pgno, uint8_t type)
{
	struct pages *p = arg;

	if (p->n < BZ_ARRAY_SIZE(p->pg)) {
		p->pg[p->n] = pgno;
		p->type[p->n++] = type;
	}
}

static int count_cb(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	(*(uint64_t *)arg)++;
	return 0;
}

static void reseal(uint8_t *page)
{
	struct pager_hdr h;

	T_ASSERT(pager_check(page, bz_get_le64(page + 8), 0, &h) == 0 || true);
	h.type = page[4];
	h.pgno = bz_get_le64(page + 8);
	h.lsn = bz_get_le64(page + 16);
	h.next = bz_get_le64(page + 24);
	h.used = bz_get_le32(page + 32);
	pager_seal(page, &h);
}

/* Seven kinds of damage to every page: open/iter/get/put/flush return an
 * error (the iteration reads every page, so it must see it), never crash. */
static void test_corrupt(void)
{
	struct mem base;
	struct btree_io io;
	struct btree *t = NULL;
	struct model md;
	struct pages pg = { .n = 0 };
	uint64_t root = 0, gb = 0, tested = 0, failed_iter = 0, failed_verify = 0;
	uint8_t *vb = malloc(BTREE_VALUE_MAX);

	mem_init(&base);
	io = mem_io(&base);
	model_init(&md, 1500);
	T_ASSERT(btree_open(&io, 0, 0, &t) == 0);
	for (uint64_t s = 0; s < 1500; s++)
		apply_op(t, &md, s, vb, &gb);
	T_CHECK_EQ(btree_flush(t, 1, &root), 0);
	btree_close(t);
	T_CHECK_EQ(btree_verify(&io, root, md.count, pages_cb, &pg), 0);
	T_CHECK(pg.n > 10);
	for (size_t i = 0; i < pg.n; i++) {
		for (int kind = 0; kind < 7; kind++) {
			struct mem m;
			uint8_t *p;
			uint64_t seen = 0, r2;
			size_t vl;
			int rc;

			mem_copy(&m, &base);
			io = mem_io(&m);
			p = m.pg[pg.pg[i]];
			switch (kind) {
			case 0: /* a flipped bit: checksum */
				p[PAGER_HDR_SIZE + mix(i) % 64] ^= 4;
				break;
			case 1: /* another page type */
				p[4] = pg.type[i] == PAGER_OVERFLOW ? PAGER_BTREE_LEAF : PAGER_OVERFLOW;
				reseal(p);
				break;
			case 2: /* written at another place */
				bz_put_le64(p + 8, pg.pg[i] + 1);
				reseal(p);
				break;
			case 3: /* used out of range */
				bz_put_le32(p + 32, 5);
				reseal(p);
				break;
			case 4: /* node: child beyond H; leaf: first two keys swapped; overflow: chain cut */
				if (pg.type[i] == PAGER_BTREE_NODE) {
					bz_put_le64(p + PAGER_HDR_SIZE + bz_get_le16(p + PAGER_HDR_SIZE + 8) + 2, m.H + 3);
				} else if (pg.type[i] == PAGER_BTREE_LEAF) {
					uint8_t *e0 = p + PAGER_HDR_SIZE + bz_get_le16(p + PAGER_HDR_SIZE + 8);
					e0[7] = 0xff; /* the first key's first byte: now sorts after the next key */
				} else {
					bz_put_le64(p + 24, bz_get_le64(p + 24) ? 0 : 2);
				}
				reseal(p);
				break;
			case 6: /* node: first child = itself (a cycle); leaf: key length 0; overflow: next = itself */
				if (pg.type[i] == PAGER_BTREE_NODE)
					bz_put_le64(p + PAGER_HDR_SIZE + bz_get_le16(p + PAGER_HDR_SIZE + 8) + 2, pg.pg[i]);
				else if (pg.type[i] == PAGER_BTREE_LEAF)
					bz_put_le16(p + PAGER_HDR_SIZE + bz_get_le16(p + PAGER_HDR_SIZE + 8), 0);
				else
					bz_put_le64(p + 24, pg.pg[i]);
				reseal(p);
				break;
			case 5: /* slot array / level */
				if (pg.type[i] == PAGER_OVERFLOW)
					bz_put_le32(p + 32, bz_get_le32(p + 32) - 1);
				else
					p[PAGER_HDR_SIZE + 2] ^= 1;
				reseal(p);
				break;
			}
			tested++;
			if (btree_verify(&io, root, md.count, NULL, NULL) < 0)
				failed_verify++;
			rc = btree_open(&io, root, md.count, &t);
			T_ASSERT(rc == 0);
			rc = btree_iter(t, NULL, 0, count_cb, &seen);
			if (rc == -EIO || rc == -EUCLEAN)
				failed_iter++;
			else
				fprintf(stderr, "corrupt: page %llu type %u kind %d: iter %d\n",
					(unsigned long long)pg.pg[i], pg.type[i], kind, rc);
			for (uint64_t id = 0; id < md.n; id += 7)
				(void)btree_get(t, md.key[id], md.klen[id], vb, BTREE_VALUE_MAX, &vl);
			for (uint64_t id = 0; id < md.n; id += 11)
				(void)btree_put(t, md.key[id], md.klen[id], vb, id % 2000);
			for (uint64_t id = 3; id < md.n; id += 5)
				(void)btree_del(t, md.key[id], md.klen[id]);
			(void)btree_flush(t, 3, &r2);
			btree_close(t);
			mem_free(&m);
		}
	}
	T_CHECK_EQ(failed_iter, tested);
	T_CHECK_EQ(failed_verify, tested);
	model_free(&md);
	mem_free(&base);
	free(vb);
}

static bool run(const char *name)
{
	const char *only = getenv("BTREE_ONLY");

	return !only || strcmp(only, name) == 0;
}

int main(void)
{
	if (run("basic"))
		test_basic();
	if (run("ends"))
		test_ends();
	if (run("random"))
		test_random();
	if (run("cut"))
		test_cut_flush();
	if (run("corrupt"))
		test_corrupt();
	if (run("big"))
		test_big();
	T_DONE();
}
