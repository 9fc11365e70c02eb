/* btree_verify.c — btree_verify: reads a whole on-disk B+tree from its
 * root without the node cache and checks every rule of docs/FORMAT.md
 * ("B+tree pages"), page by page (btree_node_decode) and across pages:
 * levels, key bounds, overflow chains, no page reached twice (a set of page
 * numbers), the key count. For fsck and the tests. No state, no locks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "btree.h"
#include "btree_int.h"

struct vctx {
	struct btree *t; /* for read_checked and node_decode only: no cache use */
	void (*cb)(void *, uint64_t, uint8_t);
	void *arg;
	uint64_t *seen; /* open addressing set of page numbers, 0 = empty */
	size_t scap, sn;
	uint64_t keys;
};

static int seen_add(struct vctx *v, uint64_t pgno)
{
	size_t i;

	if (v->sn + 1 > v->scap / 2) {
		size_t ncap = v->scap ? v->scap * 2 : 1024;
		uint64_t *ns = calloc(ncap, sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		for (size_t j = 0; j < v->scap; j++) {
			uint64_t p = v->seen[j];
			if (!p)
				continue;
			for (i = (size_t)(p * 0x9e3779b97f4a7c15ull >> 20) & (ncap - 1); ns[i]; i = (i + 1) & (ncap - 1))
				;
			ns[i] = p;
		}
		free(v->seen);
		v->seen = ns;
		v->scap = ncap;
	}
	for (i = (size_t)(pgno * 0x9e3779b97f4a7c15ull >> 20) & (v->scap - 1); v->seen[i]; i = (i + 1) & (v->scap - 1))
		if (v->seen[i] == pgno)
			return -EUCLEAN;
	v->seen[i] = pgno;
	v->sn++;
	return 0;
}

static int verify_node(struct vctx *v, uint64_t pgno, int level, struct kbound lo, struct kbound hi)
{
	struct bnode *nd = NULL;
	struct pager_hdr h;
	uint8_t *buf = malloc(PAGER_PAGE_SIZE);
	int r = -ENOMEM;

	if (!buf)
		goto out;
	if ((r = seen_add(v, pgno)) < 0)
		goto out;
	if ((r = btree_read_checked(v->t, pgno, 0, buf, &h)) < 0)
		goto out;
	if ((r = btree_node_decode(v->t, buf, &h, level, lo, hi, &nd)) < 0)
		goto out;
	if (v->cb)
		v->cb(v->arg, pgno, h.type);
	for (uint32_t i = 0; i < nd->n; i++) {
		const struct bent *e = &nd->e[i];
		if (nd->level) {
			struct kbound clo = i ? (struct kbound){ e->kv, e->klen } : lo;
			struct kbound chi = i + 1 < nd->n ? (struct kbound){ nd->e[i + 1].kv, nd->e[i + 1].klen } : hi;
			if ((r = verify_node(v, e->ptr, nd->level - 1, clo, chi)) < 0)
				goto out;
			continue;
		}
		v->keys++;
		if (e->vkind == VK_OVF) {
			uint64_t p = e->ptr;
			uint32_t left = e->vlen;
			while (left) {
				if ((r = seen_add(v, p)) < 0)
					goto out;
				if ((r = btree_read_checked(v->t, p, PAGER_OVERFLOW, buf, &h)) < 0)
					goto out;
				if (h.used != BZ_MIN(left, PAGER_PAYLOAD) || (left > h.used) != (h.next != 0)) {
					r = -EUCLEAN;
					goto out;
				}
				if (v->cb)
					v->cb(v->arg, p, PAGER_OVERFLOW);
				left -= h.used;
				p = h.next;
			}
		}
	}
	r = 0;
out:
	btree_node_free(nd);
	free(buf);
	return r;
}

int btree_verify(const struct btree_io *io, uint64_t root_pgno, uint64_t count,
	void (*page_cb)(void *arg, uint64_t pgno, uint8_t type), void *cb_arg)
{
	struct kbound none = { NULL, 0 };
	struct vctx v = { .cb = page_cb, .arg = cb_arg };
	int r = btree_open(io, root_pgno, count, &v.t);

	if (r < 0)
		return r;
	if (root_pgno) {
		r = verify_node(&v, root_pgno, -1, none, none);
		if (r == 0 && v.keys != count)
			r = -EUCLEAN;
	}
	free(v.seen);
	btree_close(v.t);
	return r;
}
