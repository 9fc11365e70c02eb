/* btree.c — a copy-on-write B+tree of byte-string keys over store pages.
 *
 * PAGES. Every node is one 4096-byte store page with the pager's 48-byte
 * header (pager_seal/pager_check: magic, XXH3 checksum, type, own page
 * number); `next` is 0 and `used` is the payload bytes in use. Integers are
 * little endian. The payload of a LEAF (type 6) or NODE (type 7) page:
 *
 *   off size
 *     0   2  n        entries
 *     2   1  level    0 = leaf; a node's children have level - 1
 *     3   5  reserved zero
 *     8  2n  slots    payload offset of entry i; entries follow the slot
 *                     array back to back, so slot[0] = 8 + 2n, slot[i+1] =
 *                     slot[i] + size of entry i, and used = end of entry n-1
 *
 *   leaf entry: u16 klen | u8 flags | u32 vlen | key | value
 *     flags 0: the value inline (vlen <= 1024 bytes);
 *     flags 1: u64 first OVERFLOW page of the value (vlen > 1024).
 *   node entry: u16 klen | u64 child | key
 *     entry 0 has klen 0 (the leftmost child); entries 1.. have keys.
 *
 * Keys are 1..300 bytes, compared with memcmp then by length (a prefix
 * sorts first), strictly increasing within a page. In a node, child i holds
 * the keys k with key(i) <= k < key(i+1) (key(0) = the node's own lower
 * bound, key(n) = its upper bound). Separators are the shortest prefix of a
 * right sibling's first key that sorts after the left sibling's last key.
 *
 * An OVERFLOW page (type 8) holds the next min(4048, remaining) bytes of a
 * value in its payload (`used`), `next` = the following page, 0 on the last.
 * A value of L bytes spans exactly ceil(L / 4048) pages.
 *
 * INVARIANTS of a valid tree (checked when a page is read; btree_verify
 * checks all of them at once): child and overflow page numbers are in
 * [2, H); a child's level is its parent's minus one (so no cycle); every
 * key of a child lies within the bounds its parent gives it; a page is
 * referenced once. Violations return -EUCLEAN, a page failing its checksum
 * -EIO; the tree never crashes on what it reads.
 *
 * COPY-ON-WRITE. A node read from disk is CLEAN: cached by page number,
 * evictable (LRU, within cache_bytes). Changing a node makes it and all its
 * ancestors DIRTY: removed from the cache, pinned, reached from the parent
 * by pointer (bent.cmem), its old page number queued for freeing. So a
 * dirty node's parent is dirty, and the dirty nodes form a tree hanging
 * from the root. btree_flush writes that tree bottom-up, each node to a
 * freshly allocated page (never a page the previous root can reach), then
 * hands the queued pages to io->free_page; cost O(dirty nodes), which is
 * O(changes x depth). A node created and changed several times between two
 * flushes is written once.
 *
 * BALANCE. After a change, walking up the path: a node over 4048 bytes is
 * split at its byte midpoint (a leaf entry is at most 1333 bytes, a node
 * entry 312, so both halves fit); a node under 1/4 full is merged with a
 * sibling, and re-split at the midpoint when the two do not fit in one
 * page. A root with one child is replaced by it; an empty root leaf makes
 * the tree empty (root 0).
 *
 * LOCKS: none; the caller serializes (btree.h). ERRORS: an error after a
 * change has begun, or inside btree_flush, is sticky (t->err): later calls
 * return it and the caller reopens from the last durable root.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "btree.h"
#include "btree_int.h"
#include "pager.h"

struct ovf_ref {
	uint64_t first;
	uint32_t vlen;
};

struct btree {
	struct btree_io io;
	uint64_t root_pgno;      /* when root_dirty is NULL: the root page, 0 = empty */
	struct bnode *root_dirty;
	uint64_t count;
	uint32_t depth;          /* 0 = unknown (root not read yet) or empty */
	int err;                 /* sticky */
	bool iterating;
	struct bnode **htab;     /* clean nodes by page number */
	size_t hcap, hn;
	struct bnode *lru_head, *lru_tail; /* head = most recent */
	uint64_t clean_bytes, budget;
	uint64_t *tofree;        /* pages to free at the next flush */
	size_t nfree, capfree;
	struct ovf_ref *ovfree;  /* overflow chains to free at the next flush */
	size_t novf, capovf;
	uint8_t *vbuf;           /* btree_iter: a long value */
	size_t vcap;
	uint64_t ndirty;
	struct btree_stats st;
	uint8_t page[PAGER_PAGE_SIZE];
};

struct bpath {
	struct bnode *node[BT_MAXDEPTH];
	uint32_t idx[BT_MAXDEPTH];
	int depth; /* node[depth] is the leaf */
};

/* ---- keys and entries ---- */

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = alen && blen ? memcmp(a, b, BZ_MIN(alen, blen)) : 0;

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static size_t ent_bytes(const struct bnode *nd, const struct bent *e)
{
	if (nd->level)
		return BT_NODE_ENT + e->klen;
	return BT_LEAF_ENT + e->klen + (e->vkind == VK_INLINE ? e->vlen : 8u);
}

static size_t ent_mem(const struct bnode *nd, const struct bent *e)
{
	return sizeof(*e) + (e->own ? 16u + e->klen + (nd->level == 0 && e->vkind != VK_OVF ? e->vlen : 0) : 0);
}

static void ent_drop(struct bent *e)
{
	if (e->own)
		free(e->kv);
	e->kv = NULL;
	e->own = 0;
}

/* Gives e its own copy of its bytes (before it leaves its node's arena). */
static int ent_own(struct bent *e, uint8_t level)
{
	size_t len = e->klen + (level == 0 && e->vkind != VK_OVF ? e->vlen : 0u);
	uint8_t *kv;

	if (e->own || !e->kv)
		return 0;
	kv = malloc(len ? len : 1);
	if (!kv)
		return -ENOMEM;
	memcpy(kv, e->kv, len);
	e->kv = kv;
	e->own = 1;
	return 0;
}

static int node_own_from(struct bnode *nd, uint32_t from)
{
	for (uint32_t i = from; i < nd->n; i++) {
		int r = ent_own(&nd->e[i], nd->level);
		if (r < 0)
			return r;
	}
	return 0;
}

static void node_recount(struct bnode *nd)
{
	nd->bytes = BT_HDR;
	nd->mem = sizeof(*nd) + (nd->arena ? 16u + nd->arena_len : 0u);
	for (uint32_t i = 0; i < nd->n; i++) {
		nd->bytes += ent_bytes(nd, &nd->e[i]);
		nd->mem += ent_mem(nd, &nd->e[i]);
	}
}

static struct bnode *node_new(uint8_t level, uint32_t cap)
{
	struct bnode *nd = calloc(1, sizeof(*nd));

	if (!nd)
		return NULL;
	nd->level = level;
	nd->cap = cap ? cap : 8;
	nd->e = calloc(nd->cap, sizeof(*nd->e));
	if (!nd->e) {
		free(nd);
		return NULL;
	}
	nd->bytes = BT_HDR;
	return nd;
}

void btree_node_free(struct bnode *nd)
{
	if (!nd)
		return;
	for (uint32_t i = 0; i < nd->n; i++)
		ent_drop(&nd->e[i]);
	free(nd->e);
	free(nd->arena);
	free(nd);
}

static int node_reserve(struct bnode *nd, uint32_t n)
{
	struct bent *e;
	uint32_t cap = nd->cap;

	if (n <= cap)
		return 0;
	while (cap < n)
		cap *= 2;
	e = realloc(nd->e, cap * sizeof(*e));
	if (!e)
		return -ENOMEM;
	nd->e = e;
	nd->cap = cap;
	return 0;
}

/* Inserts *e at pos (takes its kv). */
static int node_insert(struct bnode *nd, uint32_t pos, const struct bent *e)
{
	int r = node_reserve(nd, nd->n + 1);

	if (r < 0)
		return r;
	memmove(&nd->e[pos + 1], &nd->e[pos], (nd->n - pos) * sizeof(*e));
	nd->e[pos] = *e;
	nd->n++;
	nd->bytes += ent_bytes(nd, e);
	return 0;
}

/* Removes entry pos (its kv is the caller's). */
static void node_remove(struct bnode *nd, uint32_t pos)
{
	nd->bytes -= ent_bytes(nd, &nd->e[pos]);
	memmove(&nd->e[pos], &nd->e[pos + 1], (nd->n - pos - 1) * sizeof(nd->e[0]));
	nd->n--;
}

/* Leaf: first entry with key >= k; *found if equal. */
static uint32_t leaf_lower(const struct bnode *nd, const uint8_t *k, size_t klen, bool *found)
{
	uint32_t lo = 0, hi = nd->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (key_cmp(nd->e[mid].kv, nd->e[mid].klen, k, klen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < nd->n && key_cmp(nd->e[lo].kv, nd->e[lo].klen, k, klen) == 0;
	return lo;
}

/* Node: the child whose range holds k (last i >= 1 with key(i) <= k, else 0). */
static uint32_t node_child(const struct bnode *nd, const uint8_t *k, size_t klen)
{
	uint32_t lo = 1, hi = nd->n; /* answer in [lo - 1, hi - 1] */

	if (!k)
		return 0;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (key_cmp(nd->e[mid].kv, nd->e[mid].klen, k, klen) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo - 1;
}

/* ---- the clean-node cache ---- */

static size_t hslot(const struct btree *t, uint64_t pgno)
{
	return (size_t)((pgno * 0x9e3779b97f4a7c15ull) >> 17) & (t->hcap - 1);
}

static struct bnode *cache_find(struct btree *t, uint64_t pgno)
{
	struct bnode *nd;

	if (!t->hcap)
		return NULL;
	for (nd = t->htab[hslot(t, pgno)]; nd; nd = nd->hnext)
		if (nd->pgno == pgno)
			return nd;
	return NULL;
}

static void lru_unlink(struct btree *t, struct bnode *nd)
{
	if (nd->lprev)
		nd->lprev->lnext = nd->lnext;
	else
		t->lru_head = nd->lnext;
	if (nd->lnext)
		nd->lnext->lprev = nd->lprev;
	else
		t->lru_tail = nd->lprev;
	nd->lprev = nd->lnext = NULL;
}

static void lru_push(struct btree *t, struct bnode *nd)
{
	nd->lprev = NULL;
	nd->lnext = t->lru_head;
	if (t->lru_head)
		t->lru_head->lprev = nd;
	else
		t->lru_tail = nd;
	t->lru_head = nd;
}

static int cache_add(struct btree *t, struct bnode *nd)
{
	size_t s;

	if (t->hn + 1 > t->hcap / 2) {
		size_t ncap = t->hcap ? t->hcap * 2 : 256;
		struct bnode **nt = calloc(ncap, sizeof(*nt));
		struct bnode **old = t->htab;
		size_t ocap = t->hcap;

		if (!nt)
			return -ENOMEM;
		t->htab = nt;
		t->hcap = ncap;
		for (size_t i = 0; i < ocap; i++) {
			struct bnode *x = old[i], *nx;
			for (; x; x = nx) {
				nx = x->hnext;
				s = hslot(t, x->pgno);
				x->hnext = nt[s];
				nt[s] = x;
			}
		}
		free(old);
	}
	s = hslot(t, nd->pgno);
	nd->hnext = t->htab[s];
	t->htab[s] = nd;
	t->hn++;
	lru_push(t, nd);
	node_recount(nd);
	t->clean_bytes += nd->mem;
	return 0;
}

static void cache_remove(struct btree *t, struct bnode *nd)
{
	struct bnode **pp = &t->htab[hslot(t, nd->pgno)];

	while (*pp != nd)
		pp = &(*pp)->hnext;
	*pp = nd->hnext;
	nd->hnext = NULL;
	t->hn--;
	lru_unlink(t, nd);
	t->clean_bytes -= nd->mem;
}

/* Drops least recently used clean nodes beyond the budget. No pointer to a
 * clean node may be held across this call. */
static void cache_trim(struct btree *t)
{
	while (t->clean_bytes > t->budget && t->lru_tail) {
		struct bnode *nd = t->lru_tail;
		cache_remove(t, nd);
		btree_node_free(nd);
		t->st.evictions++;
	}
}

/* ---- reading pages ---- */

static bool pg_ok(const struct btree *t, uint64_t pgno)
{
	return pgno >= 2 && (!t->io.high_water || pgno < t->io.high_water(t->io.arg));
}

int btree_read_checked(struct btree *t, uint64_t pgno, uint8_t type, uint8_t *buf, struct pager_hdr *h)
{
	int r;

	if (!pg_ok(t, pgno))
		return -EUCLEAN;
	r = t->io.read_page(t->io.arg, pgno, buf);
	t->st.pages_read++;
	if (r < 0)
		return r;
	if (pager_check(buf, pgno, 0, h) < 0)
		return -EIO;
	if (type && h->type != type)
		return -EUCLEAN;
	return 0;
}


/* Decodes a LEAF or NODE page into a new node; checks everything the page
 * alone can tell and that its keys lie in [lo, hi). level < 0: any. */
int btree_node_decode(struct btree *t, const uint8_t *page, const struct pager_hdr *h, int level,
	struct kbound lo, struct kbound hi, struct bnode **ret)
{
	const uint8_t *p = page + PAGER_HDR_SIZE;
	struct bnode *nd = NULL;
	uint32_t n, off, arena_off;
	uint8_t lvl;
	int r = -EUCLEAN;

	if (h->next || h->used < BT_HDR)
		goto out;
	n = bz_get_le16(p);
	lvl = p[2];
	if (p[3] || bz_get_le32(p + 4) || lvl >= BT_MAXDEPTH)
		goto out;
	if ((h->type == PAGER_BTREE_LEAF) != (lvl == 0) ||
	    (h->type != PAGER_BTREE_LEAF && h->type != PAGER_BTREE_NODE) || (level >= 0 && lvl != level))
		goto out;
	if (lvl && n == 0)
		goto out;
	off = BT_HDR + 2 * n;
	if (off > h->used)
		goto out;
	r = -ENOMEM;
	nd = node_new(lvl, n);
	if (!nd)
		goto out;
	arena_off = off;
	nd->arena_len = h->used - off;
	nd->arena = malloc(nd->arena_len ? nd->arena_len : 1);
	if (!nd->arena)
		goto out;
	memcpy(nd->arena, p + off, nd->arena_len);
	r = -EUCLEAN;
	for (uint32_t i = 0; i < n; i++) {
		struct bent e = { 0 };
		const uint8_t *q = p + off;
		size_t fixed = lvl ? 10u : 7u;
		size_t body;

		if (bz_get_le16(p + BT_HDR + 2 * i) != off || off + fixed > h->used)
			goto out;
		e.klen = bz_get_le16(q);
		if (lvl) {
			e.ptr = bz_get_le64(q + 2);
			if ((i == 0) != (e.klen == 0) || e.klen > BTREE_KEY_MAX || !pg_ok(t, e.ptr))
				goto out;
			body = e.klen;
		} else {
			uint8_t fl = q[2];
			e.vlen = bz_get_le32(q + 3);
			if (e.klen == 0 || e.klen > BTREE_KEY_MAX || fl > 1)
				goto out;
			if (fl == 0 && e.vlen > BTREE_INLINE_MAX)
				goto out;
			if (fl == 1 && (e.vlen <= BTREE_INLINE_MAX || e.vlen > BTREE_VALUE_MAX))
				goto out;
			e.vkind = fl ? VK_OVF : VK_INLINE;
			body = e.klen + (fl ? 8u : e.vlen);
		}
		if (off + fixed + body > h->used)
			goto out;
		if (body) {
			e.kv = nd->arena + (off + fixed - arena_off);
			if (e.vkind == VK_OVF) {
				e.ptr = bz_get_le64(q + fixed + e.klen);
				if (!pg_ok(t, e.ptr))
					goto out;
			}
		}
		nd->e[nd->n++] = e;
		off += (uint32_t)(fixed + body);
		if (e.klen) {
			const struct bent *pv = i > (lvl ? 1u : 0u) ? &nd->e[i - 1] : NULL;
			if (pv && key_cmp(pv->kv, pv->klen, e.kv, e.klen) >= 0)
				goto out;
			if (lo.k && key_cmp(e.kv, e.klen, lo.k, lo.len) < 0)
				goto out;
			if (hi.k && key_cmp(e.kv, e.klen, hi.k, hi.len) >= 0)
				goto out;
		}
	}
	if (off != h->used)
		goto out;
	nd->pgno = h->pgno;
	*ret = nd;
	nd = NULL;
	r = 0;
out:
	btree_node_free(nd);
	return r;
}

/* The clean node on page pgno (from the cache or read). */
static int node_load(struct btree *t, uint64_t pgno, int level, struct kbound lo, struct kbound hi,
	struct bnode **ret)
{
	struct bnode *nd = cache_find(t, pgno);
	struct pager_hdr h;
	int r;

	if (nd) {
		if (level >= 0 && nd->level != level)
			return -EUCLEAN;
		t->st.cache_hits++;
		lru_unlink(t, nd);
		lru_push(t, nd);
		*ret = nd;
		return 0;
	}
	t->st.cache_misses++;
	r = btree_read_checked(t, pgno, 0, t->page, &h);
	if (r < 0)
		return r;
	r = btree_node_decode(t, t->page, &h, level, lo, hi, &nd);
	if (r < 0)
		return r;
	r = cache_add(t, nd);
	if (r < 0) {
		btree_node_free(nd);
		return r;
	}
	*ret = nd;
	return 0;
}

static int root_get(struct btree *t, struct bnode **ret)
{
	struct kbound none = { NULL, 0 };
	int r;

	if (t->root_dirty) {
		*ret = t->root_dirty;
		return 0;
	}
	if (!t->root_pgno) {
		*ret = NULL;
		return 0;
	}
	r = node_load(t, t->root_pgno, -1, none, none, ret);
	if (r == 0)
		t->depth = (*ret)->level + 1u;
	return r;
}

static int child_get(struct btree *t, struct bnode *nd, uint32_t i, struct kbound lo, struct kbound hi,
	struct bnode **ret)
{
	if (nd->e[i].cmem) {
		*ret = nd->e[i].cmem;
		return 0;
	}
	return node_load(t, nd->e[i].ptr, nd->level - 1, lo, hi, ret);
}

/* Walks from the root to the leaf whose range holds k. *ret_hi (may be
 * NULL) = that leaf's upper bound (k NULL: unbounded). */
static int descend(struct btree *t, const uint8_t *k, size_t klen, struct bpath *path, struct kbound *ret_hi)
{
	struct kbound lo = { NULL, 0 }, hi = { NULL, 0 };
	struct bnode *nd;
	int r, d = 0;

	r = root_get(t, &nd);
	if (r < 0 || !nd)
		return r < 0 ? r : -ENOENT;
	for (;;) {
		uint32_t i;
		path->node[d] = nd;
		if (nd->level == 0)
			break;
		i = node_child(nd, k, klen);
		path->idx[d] = i;
		if (i > 0)
			lo = (struct kbound){ nd->e[i].kv, nd->e[i].klen };
		if (i + 1 < nd->n)
			hi = (struct kbound){ nd->e[i + 1].kv, nd->e[i + 1].klen };
		if (++d >= BT_MAXDEPTH)
			return -EUCLEAN;
		r = child_get(t, nd, i, lo, hi, &nd);
		if (r < 0)
			return r;
	}
	path->depth = d;
	if (ret_hi)
		*ret_hi = hi;
	return 0;
}

/* Reads a value of vlen bytes from the overflow chain at first into dst. */
static int ovf_read(struct btree *t, uint64_t first, uint32_t vlen, uint8_t *dst, uint8_t *buf)
{
	uint64_t pg = first;
	uint32_t done = 0;
	struct pager_hdr h;
	int r;

	while (done < vlen) {
		uint32_t want = BZ_MIN(vlen - done, PAGER_PAYLOAD);
		r = btree_read_checked(t, pg, PAGER_OVERFLOW, buf, &h);
		if (r < 0)
			return r;
		if (h.used != want || (done + want < vlen) != (h.next != 0))
			return -EUCLEAN;
		if (dst)
			memcpy(dst + done, buf + PAGER_HDR_SIZE, want);
		done += want;
		pg = h.next;
	}
	return 0;
}

/* ---- changing the tree ---- */

static int queue_free(struct btree *t, uint64_t pgno)
{
	if (!pgno)
		return 0;
	if (t->nfree == t->capfree) {
		size_t cap = t->capfree ? t->capfree * 2 : 64;
		uint64_t *nf = realloc(t->tofree, cap * sizeof(*nf));
		if (!nf)
			return -ENOMEM;
		t->tofree = nf;
		t->capfree = cap;
	}
	t->tofree[t->nfree++] = pgno;
	return 0;
}

static int queue_ovf(struct btree *t, uint64_t first, uint32_t vlen)
{
	if (t->novf == t->capovf) {
		size_t cap = t->capovf ? t->capovf * 2 : 16;
		struct ovf_ref *no = realloc(t->ovfree, cap * sizeof(*no));
		if (!no)
			return -ENOMEM;
		t->ovfree = no;
		t->capovf = cap;
	}
	t->ovfree[t->novf++] = (struct ovf_ref){ first, vlen };
	return 0;
}

/* Makes nd (child i of parent, or the root if parent is NULL) dirty. */
static int make_dirty(struct btree *t, struct bnode *parent, uint32_t i, struct bnode *nd)
{
	int r;

	if (!nd->dirty) {
		r = queue_free(t, nd->pgno);
		if (r < 0)
			return r;
		cache_remove(t, nd);
		nd->pgno = 0;
		nd->dirty = true;
		t->ndirty++;
	}
	if (parent)
		parent->e[i].cmem = nd;
	else
		t->root_dirty = nd;
	return 0;
}

static int path_dirty(struct btree *t, struct bpath *path)
{
	for (int d = 0; d <= path->depth; d++) {
		int r = make_dirty(t, d ? path->node[d - 1] : NULL, d ? path->idx[d - 1] : 0, path->node[d]);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Splits nd (over a page) at its byte midpoint: nd keeps the left half,
 * *ret_right the rest; *ret_sep (malloc'd) separates them. */
static int node_split(struct btree *t, struct bnode *nd, struct bnode **ret_right, uint8_t **ret_sep,
	uint16_t *ret_seplen)
{
	struct bnode *right = NULL;
	size_t half = (nd->bytes - BT_HDR) / 2, acc = 0;
	uint32_t k = 0;
	uint8_t *sep = NULL;
	uint16_t seplen;
	int r = -EUCLEAN;

	while (k < nd->n && acc < half)
		acc += ent_bytes(nd, &nd->e[k++]);
	if (k < 1 || k >= nd->n)
		goto out;
	r = node_own_from(nd, k); /* the right half leaves nd's arena */
	if (r < 0)
		goto out;
	r = -ENOMEM;
	right = node_new(nd->level, nd->n - k);
	if (!right)
		goto out;
	memcpy(right->e, &nd->e[k], (nd->n - k) * sizeof(nd->e[0]));
	right->n = nd->n - k;
	nd->n = k;
	if (nd->level) {
		/* The first key of the right node moves up. */
		sep = right->e[0].kv;
		seplen = right->e[0].klen;
		right->e[0].kv = NULL;
		right->e[0].klen = 0;
		right->e[0].own = 0;
	} else {
		const struct bent *l = &nd->e[k - 1], *s = &right->e[0];
		size_t p = 0;
		while (p < l->klen && p < s->klen && l->kv[p] == s->kv[p])
			p++;
		seplen = (uint16_t)(p + 1);
		sep = malloc(seplen);
		if (!sep) {
			/* undo */
			memcpy(&nd->e[k], right->e, right->n * sizeof(nd->e[0]));
			nd->n += right->n;
			right->n = 0;
			goto out;
		}
		memcpy(sep, s->kv, seplen);
	}
	node_recount(nd);
	node_recount(right);
	right->dirty = true;
	t->ndirty++;
	if (nd->bytes > PAGER_PAYLOAD || right->bytes > PAGER_PAYLOAD) {
		r = -EUCLEAN; /* cannot happen with the entry size limits */
		goto out_sep;
	}
	*ret_right = right;
	*ret_sep = sep;
	*ret_seplen = seplen;
	return 0;
out_sep:
	free(sep);
	t->ndirty--;
	memcpy(&nd->e[nd->n], right->e, right->n * sizeof(nd->e[0]));
	nd->n += right->n;
	right->n = 0;
out:
	btree_node_free(right);
	return r;
}

/* Appends all of right to left (both dirty, adjacent children si-1, si of
 * parent); a node's separator moves down; parent entry si goes. */
static int node_merge(struct btree *t, struct bnode *parent, uint32_t si, struct bnode *left, struct bnode *right)
{
	int r = node_reserve(left, left->n + right->n);

	if (r == 0)
		r = node_own_from(right, 0);
	if (r == 0 && left->level)
		r = ent_own(&parent->e[si], parent->level);
	if (r < 0)
		return r;
	if (left->level) {
		right->e[0].kv = parent->e[si].kv;
		right->e[0].klen = parent->e[si].klen;
		right->e[0].own = 1;
		parent->e[si].own = 0;
	}
	ent_drop(&parent->e[si]);
	node_remove(parent, si);
	memcpy(&left->e[left->n], right->e, right->n * sizeof(right->e[0]));
	left->n += right->n;
	right->n = 0;
	node_recount(left);
	btree_node_free(right);
	t->ndirty--;
	return 0;
}

static void tree_emptied(struct btree *t)
{
	btree_node_free(t->root_dirty);
	t->ndirty--;
	t->root_dirty = NULL;
	t->root_pgno = 0;
	t->depth = 0;
}

/* Restores the size bounds along path after its leaf changed. */
static int rebalance(struct btree *t, struct bpath *path)
{
	struct kbound none = { NULL, 0 };
	int r = 0;

	for (int d = path->depth; d >= 0; d--) {
		struct bnode *nd = path->node[d], *right = NULL, *sib = NULL, *parent;
		uint8_t *sep = NULL;
		uint16_t seplen = 0;
		uint32_t pi, si;

		if (d == 0) {
			if (nd->bytes > PAGER_PAYLOAD) {
				struct bnode *root;
				if (nd->level + 2 >= BT_MAXDEPTH)
					return -EUCLEAN;
				r = node_split(t, nd, &right, &sep, &seplen);
				if (r < 0)
					return r;
				root = node_new(nd->level + 1, 2);
				if (!root) {
					free(sep);
					btree_node_free(right);
					return -ENOMEM;
				}
				root->dirty = true;
				t->ndirty++;
				root->e[0] = (struct bent){ .cmem = nd };
				root->e[1] = (struct bent){ .kv = sep, .klen = seplen, .own = 1, .cmem = right };
				root->n = 2;
				node_recount(root);
				t->root_dirty = root;
				t->depth = root->level + 1u;
				return 0;
			}
			while (nd->level && nd->n == 1) {
				struct bnode *c = nd->e[0].cmem;
				uint64_t cp = nd->e[0].ptr;
				nd->n = 0;
				btree_node_free(nd);
				t->ndirty--;
				t->root_dirty = c;
				t->depth--;
				if (!c) {
					t->root_pgno = cp;
					return 0;
				}
				nd = c;
			}
			if (nd->level == 0 && nd->n == 0)
				tree_emptied(t);
			return 0;
		}
		parent = path->node[d - 1];
		pi = path->idx[d - 1];
		if (nd->bytes > PAGER_PAYLOAD) {
			struct bent e;
			r = node_split(t, nd, &right, &sep, &seplen);
			if (r < 0)
				return r;
			e = (struct bent){ .kv = sep, .klen = seplen, .own = 1, .cmem = right };
			r = node_insert(parent, pi + 1, &e);
			if (r < 0) {
				free(sep);
				btree_node_free(right);
				return r;
			}
		} else if (nd->bytes < BT_MIN_FILL && parent->n >= 2) {
			struct bnode *left;
			si = pi + 1 < parent->n ? pi + 1 : pi;       /* the right one's index */
			{
				uint32_t s = si == pi ? pi - 1 : pi + 1; /* the sibling's index */
				struct kbound lo = s ? (struct kbound){ parent->e[s].kv, parent->e[s].klen } : none;
				struct kbound hi = s + 1 < parent->n ?
					(struct kbound){ parent->e[s + 1].kv, parent->e[s + 1].klen } : none;
				r = child_get(t, parent, s, lo, hi, &sib);
				if (r < 0)
					return r;
				r = make_dirty(t, parent, s, sib);
				if (r < 0)
					return r;
			}
			left = si == pi ? sib : nd;
			right = si == pi ? nd : sib;
			r = node_merge(t, parent, si, left, right);
			if (r < 0)
				return r;
			if (left->bytes > PAGER_PAYLOAD) {
				struct bent e;
				r = node_split(t, left, &right, &sep, &seplen);
				if (r < 0)
					return r;
				e = (struct bent){ .kv = sep, .klen = seplen, .own = 1, .cmem = right };
				r = node_insert(parent, si, &e);
				if (r < 0) {
					free(sep);
					btree_node_free(right);
					return r;
				}
			}
		}
		node_recount(parent);
	}
	return r;
}

static int check_key(const void *key, size_t klen)
{
	return key && klen >= 1 && klen <= BTREE_KEY_MAX ? 0 : -EINVAL;
}

static int tree_usable(const struct btree *t)
{
	if (t->err)
		return t->err;
	return t->iterating ? -EBUSY : 0;
}

int btree_put(struct btree *t, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct bpath path;
	struct bent e = { 0 };
	struct bnode *leaf;
	uint32_t pos;
	bool found;
	int r = tree_usable(t);

	if (r < 0)
		return r;
	if ((r = check_key(key, klen)) < 0)
		return r;
	if (vlen > BTREE_VALUE_MAX)
		return -E2BIG;
	if (vlen && !val)
		return -EINVAL;
	e.kv = malloc(klen + vlen);
	if (!e.kv)
		return -ENOMEM;
	memcpy(e.kv, key, klen);
	if (vlen)
		memcpy(e.kv + klen, val, vlen);
	e.own = 1;
	e.klen = (uint16_t)klen;
	e.vlen = (uint32_t)vlen;
	e.vkind = vlen > BTREE_INLINE_MAX ? VK_NEW : VK_INLINE;
	r = descend(t, key, klen, &path, NULL);
	if (r == -ENOENT) {
		leaf = node_new(0, 8);
		if (!leaf) {
			r = -ENOMEM;
			goto out;
		}
		leaf->dirty = true;
		t->ndirty++;
		t->root_dirty = leaf;
		t->depth = 1;
		path.node[0] = leaf;
		path.depth = 0;
		r = 0;
	}
	if (r < 0)
		goto out;
	/* From here on, a failure leaves the tree half changed: sticky. */
	r = path_dirty(t, &path);
	if (r < 0)
		goto fail;
	leaf = path.node[path.depth];
	pos = leaf_lower(leaf, key, klen, &found);
	if (found) {
		struct bent *o = &leaf->e[pos];
		if (o->vkind == VK_OVF && (r = queue_ovf(t, o->ptr, o->vlen)) < 0)
			goto fail;
		leaf->bytes -= ent_bytes(leaf, o);
		ent_drop(o);
		*o = e;
		leaf->bytes += ent_bytes(leaf, o);
	} else {
		r = node_insert(leaf, pos, &e);
		if (r < 0)
			goto fail;
		t->count++;
	}
	e.kv = NULL;
	r = rebalance(t, &path);
	if (r < 0)
		goto fail;
	cache_trim(t);
	goto out;
fail:
	t->err = r;
out:
	free(e.kv);
	return r;
}

int btree_del(struct btree *t, const void *key, size_t klen)
{
	struct bpath path;
	struct bnode *leaf;
	uint32_t pos;
	bool found;
	int r = tree_usable(t);

	if (r < 0)
		return r;
	if ((r = check_key(key, klen)) < 0)
		return r;
	r = descend(t, key, klen, &path, NULL);
	if (r < 0)
		goto out;
	leaf = path.node[path.depth];
	pos = leaf_lower(leaf, key, klen, &found);
	if (!found) {
		r = -ENOENT;
		goto out;
	}
	r = path_dirty(t, &path);
	if (r < 0)
		goto fail;
	if (leaf->e[pos].vkind == VK_OVF && (r = queue_ovf(t, leaf->e[pos].ptr, leaf->e[pos].vlen)) < 0)
		goto fail;
	ent_drop(&leaf->e[pos]);
	node_remove(leaf, pos);
	if (t->count)
		t->count--;
	r = rebalance(t, &path);
	if (r < 0)
		goto fail;
	cache_trim(t);
	goto out;
fail:
	t->err = r;
out:
	return r;
}

/* ---- reading the tree ---- */

int btree_get(struct btree *t, const void *key, size_t klen, void *buf, size_t cap, size_t *ret_vlen)
{
	struct bpath path;
	struct bnode *leaf;
	const struct bent *e;
	uint8_t *pg = NULL;
	uint32_t pos;
	bool found;
	int r;

	if (t->err)
		return t->err;
	if ((r = check_key(key, klen)) < 0)
		return r;
	r = descend(t, key, klen, &path, NULL);
	if (r < 0)
		goto out;
	leaf = path.node[path.depth];
	pos = leaf_lower(leaf, key, klen, &found);
	if (!found) {
		r = -ENOENT;
		goto out;
	}
	e = &leaf->e[pos];
	if (ret_vlen)
		*ret_vlen = e->vlen;
	if (e->vlen > cap) {
		r = -ERANGE;
		goto out;
	}
	if (e->vkind != VK_OVF) {
		if (e->vlen)
			memcpy(buf, e->kv + e->klen, e->vlen);
		goto out;
	}
	/* Not t->page: btree_iter's callback may call us. */
	pg = malloc(PAGER_PAGE_SIZE);
	r = pg ? ovf_read(t, e->ptr, e->vlen, buf, pg) : -ENOMEM;
out:
	free(pg);
	if (!t->iterating)
		cache_trim(t);
	return r;
}

/* Walks the leftmost (right = false) or rightmost path from the root down:
 * *ret_nd = the node it ends on (a leaf; NULL for an empty tree), *top =
 * the highest page number met on the way (dirty nodes count 0). */
static int end_path(struct btree *t, bool right, struct bnode **ret_nd, uint64_t *top)
{
	struct kbound lo = { NULL, 0 }, hi = { NULL, 0 };
	struct bnode *nd;
	int r, d = 0;

	r = root_get(t, &nd);
	while (r == 0 && nd) {
		*top = nd->pgno > *top ? nd->pgno : *top;
		if (!nd->level || !nd->n)
			break;
		uint32_t i = right ? nd->n - 1 : 0;
		if (right && i > 0)
			lo = (struct kbound){ nd->e[i].kv, nd->e[i].klen };
		if (!right && nd->n > 1)
			hi = (struct kbound){ nd->e[1].kv, nd->e[1].klen };
		if (++d >= BT_MAXDEPTH)
			r = -EUCLEAN;
		else
			r = child_get(t, nd, i, lo, hi, &nd);
	}
	*ret_nd = r == 0 ? nd : NULL;
	return r;
}

int btree_last(struct btree *t, uint8_t *buf, size_t *ret_klen)
{
	struct bnode *nd;
	uint64_t top = 0;
	int r;

	if ((r = tree_usable(t)) < 0)
		return r;
	r = end_path(t, true, &nd, &top);
	if (r < 0)
		return r;
	if (!nd || nd->level || !nd->n)
		return -ENOENT;
	memcpy(buf, nd->e[nd->n - 1].kv, nd->e[nd->n - 1].klen);
	*ret_klen = nd->e[nd->n - 1].klen;
	return 0;
}

int btree_ends_max(struct btree *t, uint64_t *ret_pgno)
{
	struct bnode *nd;
	uint64_t top = 0;
	int r = tree_usable(t);

	if (r == 0)
		r = end_path(t, false, &nd, &top);
	if (r == 0)
		r = end_path(t, true, &nd, &top);
	*ret_pgno = r == 0 ? top : 0;
	return r;
}

int btree_iter(struct btree *t, const void *from, size_t flen, btree_iter_fn cb, void *arg)
{
	uint8_t cur[BTREE_KEY_MAX];
	size_t clen = 0;
	bool have = false;
	int r;

	if ((r = tree_usable(t)) < 0)
		return r;
	if (from && flen) {
		if ((r = check_key(from, flen)) < 0)
			return r;
		memcpy(cur, from, flen);
		clen = flen;
		have = true;
	}
	t->iterating = true;
	for (;;) {
		struct bpath path;
		struct kbound hi;
		struct bnode *leaf;
		uint32_t pos = 0;
		bool found;

		r = descend(t, have ? cur : NULL, clen, &path, &hi);
		if (r == -ENOENT) {
			r = 0;
			break;
		}
		if (r < 0)
			break;
		leaf = path.node[path.depth];
		if (have)
			pos = leaf_lower(leaf, cur, clen, &found);
		for (; pos < leaf->n; pos++) {
			const struct bent *e = &leaf->e[pos];
			const uint8_t *v = e->kv + e->klen;
			if (e->vkind == VK_OVF) {
				if (t->vcap < e->vlen) {
					uint8_t *nb = realloc(t->vbuf, e->vlen);
					if (!nb) {
						r = -ENOMEM;
						goto out;
					}
					t->vbuf = nb;
					t->vcap = e->vlen;
				}
				r = ovf_read(t, e->ptr, e->vlen, t->vbuf, t->page);
				if (r < 0)
					goto out;
				v = t->vbuf;
			}
			r = cb(arg, e->kv, e->klen, v, e->vlen);
			if (r)
				goto out;
		}
		if (!hi.k)
			break;
		/* Next leaf: keys >= hi; hi must grow or the tree is corrupt. */
		if (have && key_cmp(hi.k, hi.len, cur, clen) <= 0) {
			r = -EUCLEAN;
			break;
		}
		memcpy(cur, hi.k, hi.len);
		clen = hi.len;
		have = true;
		cache_trim(t);
	}
out:
	t->iterating = false;
	cache_trim(t);
	return r;
}

uint64_t btree_count(const struct btree *t) { return t->count; }

/* ---- flushing ---- */

static int page_write(struct btree *t, uint64_t pgno, const uint8_t *page)
{
	int r = t->io.write_page(t->io.arg, pgno, page);

	if (r == 0)
		t->st.pages_written++;
	return r;
}

/* Writes the value of leaf entry e (VK_NEW) to new overflow pages. */
static int ovf_write(struct btree *t, struct bent *e, uint64_t lsn)
{
	uint32_t np = (e->vlen + PAGER_PAYLOAD - 1) / PAGER_PAYLOAD;
	uint64_t *pg = calloc(np, sizeof(*pg));
	uint8_t *kv;
	int r = -ENOMEM;

	if (!pg)
		goto out;
	for (uint32_t i = 0; i < np; i++)
		if ((r = t->io.alloc_page(t->io.arg, &pg[i])) < 0)
			goto out;
	for (uint32_t i = 0; i < np; i++) {
		uint32_t off = i * PAGER_PAYLOAD, len = BZ_MIN(e->vlen - off, PAGER_PAYLOAD);
		struct pager_hdr h = { .type = PAGER_OVERFLOW, .pgno = pg[i], .lsn = lsn,
			.next = i + 1 < np ? pg[i + 1] : 0, .used = len };
		memset(t->page, 0, PAGER_PAGE_SIZE);
		memcpy(t->page + PAGER_HDR_SIZE, e->kv + e->klen + off, len);
		pager_seal(t->page, &h);
		if ((r = page_write(t, pg[i], t->page)) < 0)
			goto out;
	}
	e->vkind = VK_OVF;
	e->ptr = pg[0];
	kv = realloc(e->kv, e->klen);
	if (kv)
		e->kv = kv;
	r = 0;
out:
	free(pg);
	return r;
}

static void node_encode(const struct bnode *nd, uint8_t *page)
{
	uint8_t *p = page + PAGER_HDR_SIZE;
	uint32_t off = BT_HDR + 2 * nd->n;

	memset(page, 0, PAGER_PAGE_SIZE);
	bz_put_le16(p, (uint16_t)nd->n);
	p[2] = nd->level;
	for (uint32_t i = 0; i < nd->n; i++) {
		const struct bent *e = &nd->e[i];
		uint8_t *q = p + off;
		bz_put_le16(p + BT_HDR + 2 * i, (uint16_t)off);
		bz_put_le16(q, e->klen);
		if (nd->level) {
			bz_put_le64(q + 2, e->ptr);
			if (e->klen)
				memcpy(q + 10, e->kv, e->klen);
		} else {
			q[2] = e->vkind == VK_OVF;
			bz_put_le32(q + 3, e->vlen);
			memcpy(q + 7, e->kv, e->klen);
			if (e->vkind == VK_OVF)
				bz_put_le64(q + 7 + e->klen, e->ptr);
			else if (e->vlen)
				memcpy(q + 7 + e->klen, e->kv + e->klen, e->vlen);
		}
		off += (uint32_t)ent_bytes(nd, e) - 2u;
	}
}

/* Writes the dirty subtree at nd, children first; nd becomes clean. */
static int flush_node(struct btree *t, struct bnode *nd, uint64_t lsn)
{
	struct pager_hdr h = { 0 };
	uint64_t pgno;
	int r;

	for (uint32_t i = 0; i < nd->n; i++) {
		struct bent *e = &nd->e[i];
		if (nd->level && e->cmem) {
			struct bnode *c = e->cmem;
			if ((r = flush_node(t, c, lsn)) < 0)
				return r;
			e->ptr = c->pgno;
			e->cmem = NULL; /* c is in the cache now */
		} else if (!nd->level && e->vkind == VK_NEW) {
			if ((r = ovf_write(t, e, lsn)) < 0)
				return r;
		}
	}
	node_recount(nd);
	if ((r = t->io.alloc_page(t->io.arg, &pgno)) < 0)
		return r;
	node_encode(nd, t->page);
	h.type = nd->level ? PAGER_BTREE_NODE : PAGER_BTREE_LEAF;
	h.pgno = pgno;
	h.lsn = lsn;
	h.used = (uint32_t)nd->bytes;
	pager_seal(t->page, &h);
	if ((r = page_write(t, pgno, t->page)) < 0)
		return r;
	nd->pgno = pgno;
	nd->dirty = false;
	t->ndirty--;
	return cache_add(t, nd);
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int btree_flush(struct btree *t, uint64_t lsn, uint64_t *ret_root)
{
	uint8_t *pg = NULL;
	int r = tree_usable(t);

	if (r < 0)
		return r;
	/* Every page to free, first: overflow chains are read to list theirs. */
	if (t->novf) {
		r = -ENOMEM;
		pg = malloc(PAGER_PAGE_SIZE);
		if (!pg)
			goto fail;
	}
	for (size_t i = 0; i < t->novf; i++) {
		uint64_t p = t->ovfree[i].first;
		uint32_t left = t->ovfree[i].vlen;
		while (left) {
			struct pager_hdr h;
			if ((r = queue_free(t, p)) < 0)
				goto fail;
			if ((r = btree_read_checked(t, p, PAGER_OVERFLOW, pg, &h)) < 0)
				goto fail;
			if (h.used != BZ_MIN(left, PAGER_PAYLOAD) || (left > h.used) != (h.next != 0)) {
				r = -EUCLEAN;
				goto fail;
			}
			left -= h.used;
			p = h.next;
		}
	}
	t->novf = 0;
	/* A page queued twice is a page the tree referenced twice. */
	if (t->nfree)
		qsort(t->tofree, t->nfree, sizeof(t->tofree[0]), u64_cmp);
	for (size_t i = 1; i < t->nfree; i++)
		if (t->tofree[i] == t->tofree[i - 1]) {
			r = -EUCLEAN;
			goto fail;
		}
	if (t->root_dirty) {
		struct bnode *root = t->root_dirty;
		if ((r = flush_node(t, root, lsn)) < 0)
			goto fail;
		t->root_dirty = NULL;
		t->root_pgno = root->pgno;
	}
	for (size_t i = 0; i < t->nfree; i++)
		t->io.free_page(t->io.arg, t->tofree[i]);
	t->st.pages_freed += t->nfree;
	t->nfree = 0;
	*ret_root = t->root_pgno;
	cache_trim(t);
	r = 0;
	goto out;
fail:
	t->err = r;
out:
	free(pg);
	return r;
}

/* ---- open, close, stats ---- */

int btree_open(const struct btree_io *io, uint64_t root_pgno, uint64_t count, struct btree **ret_tree)
{
	struct btree *t;

	if (!io || !io->read_page || !io->alloc_page || !io->free_page || !io->write_page)
		return -EINVAL;
	if ((root_pgno == 0) != (count == 0) || root_pgno == 1)
		return -EUCLEAN;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->io = *io;
	t->root_pgno = root_pgno;
	t->count = count;
	t->budget = BT_DEFAULT_CACHE;
	*ret_tree = t;
	return 0;
}

void btree_set_cache_bytes(struct btree *t, uint64_t bytes)
{
	t->budget = bytes;
	if (!t->iterating)
		cache_trim(t);
}

static void free_dirty(struct bnode *nd)
{
	if (nd->level)
		for (uint32_t i = 0; i < nd->n; i++)
			if (nd->e[i].cmem)
				free_dirty(nd->e[i].cmem);
	btree_node_free(nd);
}

void btree_close(struct btree *t)
{
	if (!t)
		return;
	if (t->root_dirty)
		free_dirty(t->root_dirty);
	for (size_t i = 0; i < t->hcap; i++) {
		struct bnode *nd = t->htab[i], *nx;
		for (; nd; nd = nx) {
			nx = nd->hnext;
			btree_node_free(nd);
		}
	}
	free(t->htab);
	free(t->tofree);
	free(t->ovfree);
	free(t->vbuf);
	free(t);
}

void btree_stats(const struct btree *t, struct btree_stats *ret)
{
	*ret = t->st;
	ret->clean_bytes = t->clean_bytes;
	ret->clean_nodes = t->hn;
	ret->dirty_nodes = t->ndirty;
	ret->depth = t->depth;
}
