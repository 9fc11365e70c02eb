/* ns.c — the in-memory namespace: inodes, directories, attributes.
 *
 * Pure data structure; the owner serializes access. All changes go through
 * ns_apply() (plus the data bookkeeping ns_set_size and pinning), which gives
 * rename(2)/unlink(2)/... semantics and changes nothing when it fails: every
 * check and every allocation happens before the first mutation.
 *
 * Structures:
 *  - inode table: open addressing (linear probing, backward-shift deletion)
 *    from inode number to struct inode; inode 0 marks an empty slot.
 *  - per directory: a name table (open addressing on XXH3 of the name) to
 *    struct dent, and an order array of the entries in ascending cookie
 *    order. A new entry gets the directory's next cookie (monotonic, never
 *    reused), so it always appends; a removed entry leaves a hole (NULL slot,
 *    its cookie kept in the parallel cookie array so binary search still
 *    works) until holes outnumber live entries and the array is compacted.
 *    readdir binary-searches the first cookie > the one given. Cookies start
 *    at NS_COOKIE_FIRST (3): 1 and 2 are left to the filesystem for "." and
 *    "..". A renamed entry is a new entry (new cookie) in its new place;
 *    RENAME_EXCHANGE keeps both entries' cookies and swaps their inodes.
 *  - a directory inode records its parent (for the "into its own subtree"
 *    check); after ns_load_dirent the parents are recomputed lazily, so a
 *    checkpoint may list entries before the inodes they name.
 *
 *  - per inode: its extended attributes, an array of (name, value) in
 *    ascending name order (memcmp, then length); sum of name_len + 1 +
 *    value_len bounded by NS_XATTR_TOTAL_MAX (-ENOSPC beyond, as ext4 says
 *    when an inode's attribute space is full). Any inode kind may carry them
 *    here; which names a user may set where is the filesystem's business.
 *    One rule is the namespace's own, because it is part of what an op
 *    means: NS_CREATE / NS_MKDIR copy the parent's inherited settings
 *    (ns.h NS_XA_*) into the new inode in the same apply.
 *  - per inode: append_ns, the daemon's clock of the last append (creation
 *    ctime, then every timed ns_set_size); no op sets it otherwise.
 *  - FIFOs, sockets and device nodes (NS_MKNOD) hold no data; device nodes
 *    keep their rdev.
 *
 * Link counts: regular files, symlinks and special files count their names; a directory has
 * 2 + its subdirectories while it exists, 0 once removed. An inode whose
 * count drops to 0 is freed unless pinned (then ns_unpin frees it).
 * Directory size = number of entries. ns_walk visits every inode in
 * ascending inode order, then every entry of every directory (directories in
 * ascending inode order, entries in cookie order).
 *
 * BACKED NAMESPACE (ns_new_backed: the filesystem's live view over the
 * engine's namespace). It starts with the root and the backing namespace's
 * counts, and loads an inode, or the entries of a directory, from the
 * backing namespace (struct ns_backing: ns_copy_inode / ns_copy_dir under
 * the backing owner's lock) the first time a query or an op needs it; a
 * directory loaded without its entries is "lazy" (struct dir.lazy; its
 * entry count is kept in inode.size). This is sound because the backed
 * namespace is the only writer of the backing one: every op is applied
 * here first and to the backing namespace later (the pipeline), and an op
 * loads everything it reads or changes here before it changes anything.
 * So what this namespace has not loaded, it has never changed, and the
 * backing namespace's copy, however far behind, is exactly what it would
 * hold. One exception: an inode freed here may still be in the backing
 * namespace (the removal is still in flight): its number goes into the
 * "gone" set (inode numbers are never reused) and is never loaded again;
 * numbers the backing namespace no longer holds are pruned from the set
 * as it grows. Inodes from bk_next on were never in the backing namespace
 * (no fetch). `count` is the whole namespace's, `loaded` the table's.
 * ns_walk first loads everything (ns_copy_rest) and detaches the backing.
 * Dirty sets are not kept (`all`): a backed namespace is never
 * checkpointed. Queries change a backed namespace (they load): its owner
 * serializes them with the changes.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ns.h"
#include "ns_dirty.h"
#include "record.h"

struct dent {
	uint64_t hash;
	uint64_t cookie;
	uint64_t ino;
	uint32_t len;
	char name[];
};

struct dir {
	struct dent **tab; /* name table, cap a power of two (or 0) */
	size_t tab_cap;
	size_t n;          /* live entries */
	struct dent **ord; /* ascending cookie order; NULL = hole */
	uint64_t *ordc;    /* cookie of each ord slot (kept for holes) */
	size_t ord_len, ord_cap, holes;
	uint64_t next_cookie;
	bool lazy; /* backed namespace: entries not loaded yet (n, tab, ord empty) */
};

struct xattr {
	uint32_t nlen, vlen;
	char data[]; /* name, then value */
};

struct inode {
	uint64_t ino;
	uint32_t mode, uid, gid, nlink;
	uint32_t rdev;       /* device nodes */
	uint32_t n_xa;       /* extended attributes: xa[0..n_xa), name order */
	uint32_t xa_bytes;   /* sum of nlen + 1 + vlen */
	struct xattr **xa;
	uint64_t size; /* regular files; symlinks: target length */
	int64_t atime_ns, mtime_ns, ctime_ns;
	int64_t append_ns; /* creation ctime, then every ns_set_size with a time */
	uint32_t pins;
	uint64_t parent; /* directories: the directory holding it (root: 0) */
	char *target;    /* symlinks */
	struct dir *dir; /* directories */
};

struct ns {
	struct inode **tab; /* inode table, cap a power of two */
	size_t tab_cap, loaded; /* loaded: inodes in tab */
	size_t count;           /* inodes of the namespace (loaded or not) */
	uint64_t next_ino;
	bool parents_dirty;
	struct nsd dirty; /* changed since the last checkpoint (ns_dirty.c) */
	/* backed namespace (see the top): NULL bk = everything is loaded */
	const struct ns_backing *bk;
	void *bk_arg;
	uint64_t bk_next;  /* inodes >= this were never in the backing namespace */
	struct nsd gone;   /* freed here, maybe still there (ino set only) */
	size_t gone_kept;  /* gone.ino_n after the last prune */
};

/* ---- the backed namespace's gone set ----------------------------------- */

/* Room for the number of an inode an op may free (gone_add cannot fail). */
static int gone_reserve(struct ns *ns) { return ns->bk ? nsd_reserve_ino(&ns->gone) : 0; }
static void gone_add(struct ns *ns, uint64_t ino) { nsd_mark_ino(&ns->gone, ino); }

/* Drops the numbers the backing namespace no longer holds, once the set
 * has doubled since the last prune (amortized O(1) per free). Keeps the
 * set as it is when anything fails. */
static void gone_prune(struct ns *ns)
{
	struct nsd keep = {0};
	size_t n = ns->gone.ino_n;

	if (n < 64 || n < 2 * ns->gone_kept)
		return;
	for (size_t i = 0; i < ns->gone.ino_cap; i++) {
		uint64_t ino = ns->gone.ino[i];
		if (!ino || ns->bk->has(ns->bk_arg, ino) == 0)
			continue;
		if (nsd_reserve_ino(&keep) < 0) {
			nsd_free(&keep);
			return;
		}
		nsd_mark_ino(&keep, ino);
	}
	nsd_free(&ns->gone);
	ns->gone = keep;
	ns->gone_kept = keep.ino_n;
}

/* ---- inode table ------------------------------------------------------ */

static size_t ino_slot(uint64_t ino, size_t cap) { return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1); }

static struct inode *ino_get(const struct ns *ns, uint64_t ino)
{
	if (ino == 0)
		return NULL;
	for (size_t i = ino_slot(ino, ns->tab_cap);; i = (i + 1) & (ns->tab_cap - 1)) {
		struct inode *in = ns->tab[i];
		if (!in)
			return NULL;
		if (in->ino == ino)
			return in;
	}
}

static void ino_put_nogrow(struct inode **tab, size_t cap, struct inode *in)
{
	size_t i = ino_slot(in->ino, cap);
	while (tab[i])
		i = (i + 1) & (cap - 1);
	tab[i] = in;
}

/* Makes room for one more inode (the only failure point of an insert). */
static int ino_reserve(struct ns *ns)
{
	size_t cap = ns->tab_cap;
	struct inode **tab;
	if ((ns->loaded + 1) * 4 <= cap * 3)
		return 0;
	tab = calloc(cap * 2, sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	for (size_t i = 0; i < cap; i++)
		if (ns->tab[i])
			ino_put_nogrow(tab, cap * 2, ns->tab[i]);
	free(ns->tab);
	ns->tab = tab;
	ns->tab_cap = cap * 2;
	return 0;
}

static void ino_insert(struct ns *ns, struct inode *in)
{
	ino_put_nogrow(ns->tab, ns->tab_cap, in);
	ns->loaded++;
	ns->count++;
	if (in->ino >= ns->next_ino)
		ns->next_ino = in->ino + 1;
}

static void ino_remove(struct ns *ns, uint64_t ino)
{
	size_t mask = ns->tab_cap - 1, i = ino_slot(ino, ns->tab_cap);
	while (ns->tab[i]->ino != ino)
		i = (i + 1) & mask;
	/* backward-shift deletion */
	for (size_t j = (i + 1) & mask; ns->tab[j]; j = (j + 1) & mask) {
		size_t home = ino_slot(ns->tab[j]->ino, ns->tab_cap);
		/* move j into the hole i if home is not in (i, j] cyclically */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			ns->tab[i] = ns->tab[j];
			i = j;
		}
	}
	ns->tab[i] = NULL;
	ns->loaded--;
	ns->count--;
	if (ns->bk && ino < ns->bk_next)
		gone_add(ns, ino);
}

/* The inode, loaded from the backing namespace if need be: NULL with
 * *ret_err (may be NULL) = -ENOENT (no such inode) or the load's error. */
static struct inode *ino_fetch(struct ns *ns, uint64_t ino, int *ret_err)
{
	struct inode *in = ino_get(ns, ino);
	int r = -ENOENT;

	if (in || !ns->bk || ino == 0 || ino >= ns->bk_next || nsd_has_ino(&ns->gone, ino))
		goto out;
	gone_prune(ns);
	r = ns->bk->inode(ns->bk_arg, ns, ino);
	if (r == 0) {
		in = ino_get(ns, ino);
		r = in ? 0 : -EIO;
	}
out:
	if (ret_err)
		*ret_err = in ? 0 : r;
	return in;
}

/* ---- directories ------------------------------------------------------ */

static uint64_t name_hash(const char *name, size_t len) { return rec_hash(name, len); }

static struct dent *dir_find(const struct dir *d, const char *name, size_t len, uint64_t h)
{
	if (!d->tab_cap)
		return NULL;
	for (size_t i = h & (d->tab_cap - 1);; i = (i + 1) & (d->tab_cap - 1)) {
		struct dent *e = d->tab[i];
		if (!e)
			return NULL;
		if (e->hash == h && e->len == len && memcmp(e->name, name, len) == 0)
			return e;
	}
}

static void tab_put_nogrow(struct dent **tab, size_t cap, struct dent *e)
{
	size_t i = e->hash & (cap - 1);
	while (tab[i])
		i = (i + 1) & (cap - 1);
	tab[i] = e;
}

/* Makes room for one more entry in both the name table and the order array. */
static int dir_reserve(struct dir *d)
{
	if ((d->n + 1) * 4 > d->tab_cap * 3) {
		size_t cap = d->tab_cap ? d->tab_cap * 2 : 8;
		struct dent **tab = calloc(cap, sizeof(*tab));
		if (!tab)
			return -ENOMEM;
		for (size_t i = 0; i < d->tab_cap; i++)
			if (d->tab[i])
				tab_put_nogrow(tab, cap, d->tab[i]);
		free(d->tab);
		d->tab = tab;
		d->tab_cap = cap;
	}
	if (d->ord_len == d->ord_cap) {
		size_t cap = d->ord_cap ? d->ord_cap * 2 : 8;
		struct dent **ord = realloc(d->ord, cap * sizeof(*ord));
		if (!ord)
			return -ENOMEM;
		d->ord = ord;
		uint64_t *ordc = realloc(d->ordc, cap * sizeof(*ordc));
		if (!ordc)
			return -ENOMEM; /* ord grew, harmless */
		d->ordc = ordc;
		d->ord_cap = cap;
	}
	return 0;
}

/* Index of the first order slot with cookie > c. */
static size_t ord_after(const struct dir *d, uint64_t c)
{
	size_t lo = 0, hi = d->ord_len;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (d->ordc[mid] <= c)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Inserts e (its hash and name set) with the next cookie. dir_reserve first. */
static void dir_insert(struct dir *d, struct dent *e)
{
	e->cookie = d->next_cookie++;
	tab_put_nogrow(d->tab, d->tab_cap, e);
	d->ord[d->ord_len] = e;
	d->ordc[d->ord_len] = e->cookie;
	d->ord_len++;
	d->n++;
}

/* Unlinks e from d (does not free it). */
static void dir_remove(struct dir *d, struct dent *e)
{
	size_t mask = d->tab_cap - 1, i = e->hash & mask;
	while (d->tab[i] != e)
		i = (i + 1) & mask;
	for (size_t j = (i + 1) & mask; d->tab[j]; j = (j + 1) & mask) {
		size_t home = d->tab[j]->hash & mask;
		if (((j - home) & mask) >= ((j - i) & mask)) {
			d->tab[i] = d->tab[j];
			i = j;
		}
	}
	d->tab[i] = NULL;
	d->n--;

	size_t k = ord_after(d, e->cookie - 1);
	if (ALWAYS(k < d->ord_len && d->ord[k] == e)) {
		d->ord[k] = NULL;
		d->holes++;
	}
	if (k == d->ord_len - 1) {
		/* trim trailing holes */
		while (d->ord_len && !d->ord[d->ord_len - 1]) {
			d->ord_len--;
			d->holes--;
		}
	} else if (d->holes > 16 && d->holes > d->n) {
		size_t w = 0;
		for (size_t r = 0; r < d->ord_len; r++) {
			if (d->ord[r]) {
				d->ord[w] = d->ord[r];
				d->ordc[w] = d->ordc[r];
				w++;
			}
		}
		d->ord_len = w;
		d->holes = 0;
	}
}

static struct dent *dent_new(const char *name, size_t len, uint64_t h, uint64_t ino)
{
	struct dent *e = malloc(sizeof(*e) + len);
	if (!e)
		return NULL;
	e->hash = h;
	e->cookie = 0;
	e->ino = ino;
	e->len = (uint32_t)len;
	memcpy(e->name, name, len);
	return e;
}

static void dir_free(struct dir *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->ord_len; i++)
		free(d->ord[i]);
	free(d->ord);
	free(d->ordc);
	free(d->tab);
	free(d);
}

static struct dir *dir_new(void)
{
	struct dir *d = calloc(1, sizeof(*d));
	if (d)
		d->next_cookie = NS_COOKIE_FIRST;
	return d;
}

/* ---- inodes ----------------------------------------------------------- */

static void inode_free(struct inode *in)
{
	if (!in)
		return;
	for (uint32_t i = 0; i < in->n_xa; i++)
		free(in->xa[i]);
	free(in->xa);
	dir_free(in->dir);
	free(in->target);
	free(in);
}

static bool is_dir(const struct inode *in) { return S_ISDIR(in->mode); }

/* Entries of a directory, loaded or not. */
static size_t dir_count(const struct inode *in) { return in->dir->lazy ? in->size : in->dir->n; }

/* Loads the entries of a lazy directory (ns_copy_dir): 0 or -errno. */
static int dir_load(struct ns *ns, struct inode *p)
{
	int r;

	if (!p->dir || !p->dir->lazy)
		return 0;
	r = ns->bk ? ns->bk->dir(ns->bk_arg, ns, p->ino) : -EIO;
	if (r == 0 && p->dir->lazy)
		r = -EIO;
	return r;
}

/* A directory with its entries loaded: -ENOENT, -ENOTDIR or a load's error. */
static int dir_fetch(struct ns *ns, uint64_t ino, struct inode **ret)
{
	int r;
	struct inode *p = ino_fetch(ns, ino, &r);

	if (!p)
		return r;
	if (!is_dir(p))
		return -ENOTDIR;
	r = dir_load(ns, p);
	if (r == 0)
		*ret = p;
	return r;
}

/* Drops in from the table and frees it if it has no links and no pins. */
static void maybe_free(struct ns *ns, struct inode *in)
{
	if (in->nlink == 0 && in->pins == 0) {
		ino_remove(ns, in->ino);
		inode_free(in);
	}
}

int ns_new(struct ns **ret_ns)
{
	struct ns *ns = calloc(1, sizeof(*ns));
	struct inode *root = calloc(1, sizeof(*root));
	int r = -ENOMEM;

	if (!ns || !root)
		goto fail;
	ns->tab_cap = 64;
	ns->tab = calloc(ns->tab_cap, sizeof(*ns->tab));
	root->dir = dir_new();
	if (!ns->tab || !root->dir)
		goto fail;
	root->ino = NS_ROOT_INO;
	root->mode = S_IFDIR | 0755;
	root->nlink = 2;
	ns->next_ino = 2;
	ino_insert(ns, root);
	*ret_ns = ns;
	return 0;
fail:
	inode_free(root);
	if (ns)
		free(ns->tab);
	free(ns);
	return r;
}

void ns_free(struct ns *ns)
{
	if (!ns)
		return;
	for (size_t i = 0; i < ns->tab_cap; i++)
		inode_free(ns->tab[i]);
	free(ns->tab);
	nsd_free(&ns->dirty);
	nsd_free(&ns->gone);
	free(ns);
}

static struct dir *dir_clone(const struct dir *s)
{
	struct dir *d = dir_new();
	if (!d)
		return NULL;
	d->next_cookie = s->next_cookie;
	for (size_t i = 0; i < s->ord_len; i++) {
		const struct dent *se = s->ord[i];
		if (!se)
			continue;
		struct dent *e = dent_new(se->name, se->len, se->hash, se->ino);
		if (!e || dir_reserve(d) < 0) {
			free(e);
			dir_free(d);
			return NULL;
		}
		tab_put_nogrow(d->tab, d->tab_cap, e);
		e->cookie = se->cookie;
		d->ord[d->ord_len] = e;
		d->ordc[d->ord_len++] = e->cookie;
		d->n++;
	}
	return d;
}

/* A copy of inode s: attributes, extended attributes, symlink target, and
 * a directory's entries (or, lazy, none: their count goes into size). */
static struct inode *inode_copy(const struct inode *s, bool lazy)
{
	struct inode *in = malloc(sizeof(*in));

	if (!in)
		return NULL;
	*in = *s;
	in->target = NULL;
	in->dir = NULL;
	in->xa = NULL;
	in->n_xa = 0;
	if (s->n_xa) {
		in->xa = calloc(s->n_xa, sizeof(*in->xa));
		if (!in->xa)
			goto fail;
		for (; in->n_xa < s->n_xa; in->n_xa++) {
			const struct xattr *x = s->xa[in->n_xa];
			size_t sz = sizeof(*x) + x->nlen + x->vlen;
			in->xa[in->n_xa] = malloc(sz);
			if (!in->xa[in->n_xa])
				goto fail;
			memcpy(in->xa[in->n_xa], x, sz);
		}
	}
	if (s->target) {
		in->target = malloc(s->size ? s->size : 1);
		if (!in->target)
			goto fail;
		memcpy(in->target, s->target, s->size);
	}
	if (s->dir && lazy) {
		in->dir = dir_new();
		if (!in->dir)
			goto fail;
		in->dir->lazy = true;
		in->dir->next_cookie = s->dir->next_cookie;
		in->size = dir_count(s);
	} else if (s->dir) {
		in->dir = dir_clone(s->dir);
		if (!in->dir)
			goto fail;
	}
	return in;
fail:
	inode_free(in);
	return NULL;
}

int ns_clone(const struct ns *src, struct ns **ret_ns)
{
	struct ns *ns = NULL;
	int r = -EINVAL;

	if (src->bk)
		goto fail; /* its unloaded part is not here to copy */
	r = -ENOMEM;
	ns = calloc(1, sizeof(*ns));
	if (!ns)
		goto fail;
	ns->tab_cap = src->tab_cap;
	ns->tab = calloc(ns->tab_cap, sizeof(*ns->tab));
	if (!ns->tab)
		goto fail;
	ns->next_ino = src->next_ino;
	ns->parents_dirty = src->parents_dirty;
	for (size_t i = 0; i < src->tab_cap; i++) {
		if (!src->tab[i])
			continue;
		ns->tab[i] = inode_copy(src->tab[i], false); /* same capacity: same slot */
		if (!ns->tab[i])
			goto fail;
		ns->loaded++;
		ns->count++;
	}
	*ret_ns = ns;
	return 0;
fail:
	ns_free(ns);
	return r;
}

/* ---- backed namespace (see the top) ------------------------------------ */

int ns_new_backed(const struct ns *from, const struct ns_backing *bk, void *arg, struct ns **ret_ns)
{
	struct ns *ns = NULL;
	int r = -EINVAL;

	if (from->bk || from->parents_dirty || !bk || !bk->inode || !bk->dir || !bk->rest || !bk->has)
		goto fail;
	r = -ENOMEM;
	ns = calloc(1, sizeof(*ns));
	if (!ns)
		goto fail;
	ns->tab_cap = 64;
	ns->tab = calloc(ns->tab_cap, sizeof(*ns->tab));
	if (!ns->tab)
		goto fail;
	ns->dirty.all = true; /* never checkpointed: no dirty sets */
	ns->next_ino = ns->bk_next = from->next_ino;
	ns->count = from->count;
	ns->bk = bk;
	ns->bk_arg = arg;
	r = ns_copy_inode(ns, from, NS_ROOT_INO);
	if (r < 0)
		goto fail;
	*ret_ns = ns;
	return 0;
fail:
	ns_free(ns);
	return r;
}

int ns_copy_inode(struct ns *dst, const struct ns *src, uint64_t ino)
{
	const struct inode *s = ino_get(src, ino);
	struct inode *in = NULL;
	int r = -ENOENT;

	if (!s)
		goto out;
	r = -EINVAL;
	if (src->bk || src->parents_dirty || !dst->bk)
		goto out;
	r = -EEXIST;
	if (ino_get(dst, ino))
		goto out;
	r = -ENOMEM;
	in = inode_copy(s, true);
	if (!in || ino_reserve(dst) < 0)
		goto out;
	in->pins = 0; /* the pins are each namespace's own: nothing here has it open yet */
	ino_put_nogrow(dst->tab, dst->tab_cap, in);
	dst->loaded++;
	in = NULL;
	r = 0;
out:
	inode_free(in);
	return r;
}

int ns_copy_dir(struct ns *dst, const struct ns *src, uint64_t dir)
{
	struct inode *p = ino_get(dst, dir);
	const struct inode *s = ino_get(src, dir);
	struct dir *d;

	if (!p || !p->dir || !p->dir->lazy || src->bk)
		return -EINVAL;
	if (!s || !s->dir || s->dir->n != p->size)
		return -EIO; /* the backing namespace changed what this one never did */
	d = dir_clone(s->dir);
	if (!d)
		return -ENOMEM;
	dir_free(p->dir);
	p->dir = d;
	p->size = 0;
	return 0;
}

int ns_copy_rest(struct ns *dst, const struct ns *src)
{
	int r = 0;

	if (!dst->bk)
		return 0;
	/* inodes from bk_next on that are not here were created and freed
	 * here (their removal may still be on its way to src) */
	for (size_t i = 0; r == 0 && i < src->tab_cap; i++) {
		const struct inode *s = src->tab[i];
		if (s && s->ino < dst->bk_next && !ino_get(dst, s->ino) && !nsd_has_ino(&dst->gone, s->ino))
			r = ns_copy_inode(dst, src, s->ino);
	}
	for (size_t i = 0; r == 0 && i < dst->tab_cap; i++) {
		struct inode *p = dst->tab[i];
		if (p && p->dir && p->dir->lazy)
			r = ns_copy_dir(dst, src, p->ino);
	}
	if (r == 0 && dst->loaded != dst->count)
		r = -EIO;
	if (r == 0) {
		dst->bk = NULL; /* complete: nothing is fetched any more */
		nsd_free(&dst->gone);
	}
	return r;
}

/* ---- lookups ---------------------------------------------------------- */

int ns_lookup(struct ns *ns, uint64_t parent, const char *name, size_t name_len, uint64_t *ret_ino)
{
	int r;
	struct inode *p = ino_fetch(ns, parent, &r);
	const struct dent *e;

	if (!p)
		return r;
	if (!is_dir(p))
		return -ENOTDIR;
	if (name_len > NS_NAME_MAX)
		return -ENAMETOOLONG;
	if (!name || name_len == 0)
		return -ENOENT;
	r = dir_load(ns, p);
	if (r < 0)
		return r;
	e = dir_find(p->dir, name, name_len, name_hash(name, name_len));
	if (!e)
		return -ENOENT;
	*ret_ino = e->ino;
	return 0;
}

static void fill_attr(const struct inode *in, struct ns_attr *a)
{
	memset(a, 0, sizeof(*a)); /* no stray padding bytes for callers that hash or compare it */
	a->ino = in->ino;
	a->mode = in->mode;
	a->uid = in->uid;
	a->gid = in->gid;
	a->nlink = in->nlink;
	a->size = in->dir ? dir_count(in) : in->size;
	a->atime_ns = in->atime_ns;
	a->mtime_ns = in->mtime_ns;
	a->ctime_ns = in->ctime_ns;
	a->append_ns = in->append_ns;
	a->rdev = in->rdev;
}

int ns_getattr(struct ns *ns, uint64_t ino, struct ns_attr *ret_attr)
{
	int r;
	const struct inode *in = ino_fetch(ns, ino, &r);
	if (!in)
		return r;
	fill_attr(in, ret_attr);
	return 0;
}

int ns_readlink(struct ns *ns, uint64_t ino, char *buf, size_t cap)
{
	int r;
	const struct inode *in = ino_fetch(ns, ino, &r);
	if (!in)
		return r;
	if (!S_ISLNK(in->mode) || !in->target)
		return -EINVAL;
	if (cap && in->size)
		memcpy(buf, in->target, BZ_MIN(cap, in->size));
	return (int)in->size;
}

/* ---- extended attributes --------------------------------------------- */

static int xa_cmp(const struct xattr *x, const char *name, size_t len)
{
	int c = memcmp(x->data, name, BZ_MIN((size_t)x->nlen, len));
	return c ? c : (x->nlen > len) - (x->nlen < len);
}

/* Index of name, or -(insertion point) - 1. */
static long xa_find(const struct inode *in, const char *name, size_t len)
{
	size_t lo = 0, hi = in->n_xa;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = xa_cmp(in->xa[mid], name, len);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(long)lo - 1;
}

static uint32_t xa_cost(size_t nlen, size_t vlen) { return (uint32_t)(nlen + 1 + vlen); }

/* Sets (creates or replaces) name = value; flags NS_XATTR_*. Nothing
 * changes on failure. */
static int xa_set(struct inode *in, const char *name, size_t nlen, const void *value, size_t vlen,
		  uint32_t flags)
{
	long i = xa_find(in, name, nlen);
	uint64_t bytes = in->xa_bytes;
	struct xattr *x;

	if (nlen < 1 || nlen > NS_XATTR_NAME_MAX || memchr(name, 0, nlen))
		return -EINVAL;
	if (vlen > NS_XATTR_VALUE_MAX)
		return -E2BIG;
	if (i >= 0 && (flags & NS_XATTR_CREATE))
		return -EEXIST;
	if (i < 0 && (flags & NS_XATTR_REPLACE))
		return -ENODATA;
	if (i >= 0)
		bytes -= xa_cost(in->xa[i]->nlen, in->xa[i]->vlen);
	if (bytes + xa_cost(nlen, vlen) > NS_XATTR_TOTAL_MAX)
		return -ENOSPC;
	x = malloc(sizeof(*x) + nlen + vlen);
	if (!x)
		return -ENOMEM;
	x->nlen = (uint32_t)nlen;
	x->vlen = (uint32_t)vlen;
	memcpy(x->data, name, nlen);
	if (vlen)
		memcpy(x->data + nlen, value, vlen);
	if (i >= 0) {
		free(in->xa[i]);
		in->xa[i] = x;
	} else {
		struct xattr **a = realloc(in->xa, (in->n_xa + 1) * sizeof(*a));
		size_t at = (size_t)(-i - 1);
		if (!a) {
			free(x);
			return -ENOMEM;
		}
		memmove(a + at + 1, a + at, (in->n_xa - at) * sizeof(*a));
		a[at] = x;
		in->xa = a;
		in->n_xa++;
	}
	in->xa_bytes = (uint32_t)(bytes + xa_cost(nlen, vlen));
	return 0;
}

static int xa_remove(struct inode *in, const char *name, size_t nlen)
{
	long i = xa_find(in, name, nlen);

	if (i < 0)
		return -ENODATA;
	in->xa_bytes -= xa_cost(in->xa[i]->nlen, in->xa[i]->vlen);
	free(in->xa[i]);
	memmove(in->xa + i, in->xa + i + 1, (in->n_xa - (size_t)i - 1) * sizeof(*in->xa));
	in->n_xa--;
	return 0;
}

/* Inherited settings (ns.h NS_XA_*): copies those of directory p that the
 * new inode in (a directory or a regular file, not yet inserted) takes.
 * -ENOMEM; in is freed by the caller on failure. */
static int inherit_settings(const struct inode *p, struct inode *in)
{
	static const char *const names[] = {NS_XA_ZSTD_LEVEL, NS_XA_CHUNK_BYTES, NS_XA_RETAIN};
	size_t n = is_dir(in) ? 3 : S_ISREG(in->mode) ? 2 : 0;

	for (size_t i = 0; i < n; i++) {
		long k = xa_find(p, names[i], strlen(names[i]));
		int r;
		if (k < 0)
			continue;
		r = xa_set(in, p->xa[k]->data, p->xa[k]->nlen, p->xa[k]->data + p->xa[k]->nlen, p->xa[k]->vlen, 0);
		if (r < 0)
			return r;
	}
	return 0;
}

static int copy_out(const void *src, size_t len, void *buf, size_t cap)
{
	if (len > INT32_MAX)
		return -E2BIG;
	if (cap == 0)
		return (int)len;
	if (cap < len)
		return -ERANGE;
	if (len && src)
		memcpy(buf, src, len);
	return (int)len;
}

int ns_getxattr(struct ns *ns, uint64_t ino, const char *name, size_t name_len, void *buf, size_t cap)
{
	int r;
	const struct inode *in = ino_fetch(ns, ino, &r);
	long i;

	if (!in)
		return r;
	i = xa_find(in, name, name_len);
	if (i < 0)
		return -ENODATA;
	return copy_out(in->xa[i]->data + in->xa[i]->nlen, in->xa[i]->vlen, buf, cap);
}

int ns_listxattr(struct ns *ns, uint64_t ino, char *buf, size_t cap)
{
	int r;
	const struct inode *in = ino_fetch(ns, ino, &r);
	size_t len = 0;

	if (!in)
		return r;
	for (uint32_t i = 0; i < in->n_xa; i++)
		len += in->xa[i]->nlen + 1;
	if (cap == 0 || cap < len)
		return copy_out(NULL, len, buf, cap);
	len = 0;
	for (uint32_t i = 0; i < in->n_xa; i++) {
		memcpy(buf + len, in->xa[i]->data, in->xa[i]->nlen);
		len += in->xa[i]->nlen;
		buf[len++] = '\0';
	}
	return (int)len;
}

int ns_readdir(struct ns *ns, uint64_t dir, uint64_t cookie, ns_dirent_fn fn, void *arg)
{
	struct inode *p = NULL;
	int r = dir_fetch(ns, dir, &p);

	if (r < 0)
		return r;
	/* loading a child changes the inode table, never p's entries */
	const struct dir *d = p->dir;
	for (size_t i = ord_after(d, cookie); i < d->ord_len; i++) {
		const struct dent *e = d->ord[i];
		if (!e)
			continue;
		const struct inode *c = ino_fetch(ns, e->ino, &r);
		if (!c && r != -ENOENT)
			return r;
		if (fn(arg, e->name, e->len, e->ino, c ? c->mode : 0, e->cookie))
			break;
	}
	return 0;
}

/* ---- ns_apply --------------------------------------------------------- */

/* The errno for a name a filesystem would refuse. */
static int name_check(const char *name, size_t len)
{
	if (len > NS_NAME_MAX)
		return -ENAMETOOLONG;
	if (!name || len == 0 || memchr(name, '/', len) || memchr(name, '\0', len))
		return -EINVAL;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return -EINVAL;
	return 0;
}

/* A live directory to change an entry of: -ENOENT / -ENOTDIR. */
static int get_dir(struct ns *ns, uint64_t ino, struct inode **ret)
{
	int r;
	struct inode *p = ino_fetch(ns, ino, &r);
	if (!p)
		return r;
	if (p->nlink == 0)
		return -ENOENT;
	if (!is_dir(p))
		return -ENOTDIR;
	r = dir_load(ns, p);
	if (r == 0)
		*ret = p;
	return r;
}

static void touch_dir(struct inode *p, int64_t t)
{
	p->mtime_ns = t;
	p->ctime_ns = t;
}

/* Is a an ancestor of (or equal to) directory d? 1, 0, or a load's error. */
static int is_ancestor(struct ns *ns, const struct inode *a, const struct inode *d)
{
	int r = 0;

	for (size_t depth = 0; d && depth <= ns->count; depth++) {
		if (d == a)
			return 1;
		if (d->ino == NS_ROOT_INO || d->parent == 0)
			return 0;
		d = ino_fetch(ns, d->parent, &r);
	}
	return r == -ENOENT ? 0 : r;
}

static void fix_parents(struct ns *ns)
{
	for (size_t i = 0; i < ns->tab_cap; i++) {
		struct inode *p = ns->tab[i];
		if (!p || !p->dir)
			continue;
		for (size_t k = 0; k < p->dir->ord_len; k++) {
			struct dent *e = p->dir->ord[k];
			struct inode *c = e ? ino_get(ns, e->ino) : NULL;
			if (c && c->dir)
				c->parent = p->ino;
		}
	}
	ns->parents_dirty = false;
}

void ns_fix_parents(struct ns *ns)
{
	if (ns->parents_dirty)
		fix_parents(ns);
}


/* A name about to be created in directory dir: the directory exists, the
 * name is valid and not taken. Returns the directory and the name's hash. */
static int free_name(struct ns *ns, uint64_t dir, const char *name, size_t len, struct inode **ret_dir,
		     uint64_t *ret_hash)
{
	struct inode *p;
	uint64_t h;
	int r = get_dir(ns, dir, &p);

	if (r < 0)
		return r;
	r = name_check(name, len);
	if (r < 0)
		return r;
	h = name_hash(name, len);
	if (dir_find(p->dir, name, len, h))
		return -EEXIST;
	*ret_dir = p;
	*ret_hash = h;
	return 0;
}
static int apply_new(struct ns *ns, const struct ns_op *op)
{
	struct inode *p, *in = NULL;
	struct dent *e = NULL;
	uint64_t h;
	int r;

	r = free_name(ns, op->parent, op->name, op->name_len, &p, &h);
	if (r < 0)
		goto out;
	if (op->ino == 0 || ino_fetch(ns, op->ino, &r)) {
		r = -EINVAL;
		goto out;
	}
	if (r != -ENOENT)
		goto out;
	if (op->kind == NS_MKDIR && p->nlink == UINT32_MAX) {
		r = -EMLINK;
		goto out;
	}
	if (op->kind == NS_SYMLINK &&
	    (!op->name2 || op->name2_len == 0 || op->name2_len > NS_SYMLINK_MAX || memchr(op->name2, 0, op->name2_len))) {
		r = op->name2_len > NS_SYMLINK_MAX ? -ENAMETOOLONG : -EINVAL;
		goto out;
	}
	r = -ENOMEM;
	in = calloc(1, sizeof(*in));
	e = dent_new(op->name, op->name_len, h, op->ino);
	if (!in || !e)
		goto out;
	in->ino = op->ino;
	in->uid = op->uid;
	in->gid = op->gid;
	in->atime_ns = op->atime_ns;
	in->mtime_ns = op->mtime_ns;
	in->ctime_ns = op->ctime_ns;
	in->append_ns = op->ctime_ns;
	in->nlink = 1;
	switch (op->kind) {
	case NS_CREATE:
		in->mode = S_IFREG | (op->mode & 07777);
		break;
	case NS_MKDIR:
		in->mode = S_IFDIR | (op->mode & 07777);
		in->nlink = 2;
		in->parent = p->ino;
		in->dir = dir_new();
		if (!in->dir)
			goto out;
		break;
	case NS_MKNOD:
		in->mode = op->mode & (S_IFMT | 07777);
		if (!S_ISFIFO(in->mode) && !S_ISSOCK(in->mode) && !S_ISCHR(in->mode) && !S_ISBLK(in->mode)) {
			r = -EINVAL;
			goto out;
		}
		in->rdev = S_ISCHR(in->mode) || S_ISBLK(in->mode) ? op->rdev : 0;
		break;
	default: /* NS_SYMLINK */
		in->mode = S_IFLNK | 0777;
		in->size = op->name2_len;
		in->target = malloc(op->name2_len);
		if (!in->target)
			goto out;
		memcpy(in->target, op->name2, op->name2_len);
		break;
	}
	if (inherit_settings(p, in) < 0 || dir_reserve(p->dir) < 0 || ino_reserve(ns) < 0)
		goto out;
	/* commit: nothing below fails */
	ino_insert(ns, in);
	dir_insert(p->dir, e);
	if (op->kind == NS_MKDIR)
		p->nlink++;
	touch_dir(p, op->ctime_ns);
	in = NULL;
	e = NULL;
	r = 0;
out:
	inode_free(in);
	free(e);
	return r;
}

static int apply_link(struct ns *ns, const struct ns_op *op)
{
	int r;
	struct inode *in = ino_fetch(ns, op->ino, &r), *p;
	struct dent *e = NULL;
	uint64_t h;

	if (!in)
		goto out;
	if (in->nlink == 0) {
		r = -ENOENT;
		goto out;
	}
	if (is_dir(in)) {
		r = -EPERM;
		goto out;
	}
	r = free_name(ns, op->parent2, op->name2, op->name2_len, &p, &h);
	if (r < 0)
		goto out;
	if (in->nlink == UINT32_MAX) {
		r = -EMLINK;
		goto out;
	}
	r = -ENOMEM;
	e = dent_new(op->name2, op->name2_len, h, in->ino);
	if (!e || dir_reserve(p->dir) < 0)
		goto out;
	dir_insert(p->dir, e);
	e = NULL;
	in->nlink++;
	in->ctime_ns = op->ctime_ns;
	touch_dir(p, op->ctime_ns);
	r = 0;
out:
	free(e);
	return r;
}

static int apply_remove(struct ns *ns, const struct ns_op *op)
{
	struct inode *p, *in;
	struct dent *e;
	int r;

	r = get_dir(ns, op->parent, &p);
	if (r < 0)
		goto out;
	r = name_check(op->name, op->name_len);
	if (r < 0)
		goto out;
	e = dir_find(p->dir, op->name, op->name_len, name_hash(op->name, op->name_len));
	r = -ENOENT;
	in = e ? ino_fetch(ns, e->ino, &r) : NULL;
	if (!in)
		goto out;
	if (op->kind == NS_UNLINK && is_dir(in)) {
		r = -EISDIR;
		goto out;
	}
	if (op->kind == NS_RMDIR && !is_dir(in)) {
		r = -ENOTDIR;
		goto out;
	}
	if (op->kind == NS_RMDIR && dir_count(in)) {
		r = -ENOTEMPTY;
		goto out;
	}
	r = gone_reserve(ns);
	if (r < 0)
		goto out;
	dir_remove(p->dir, e);
	free(e);
	if (is_dir(in)) {
		in->nlink = 0;
		p->nlink--;
	} else {
		in->nlink--;
	}
	in->ctime_ns = op->ctime_ns;
	touch_dir(p, op->ctime_ns);
	maybe_free(ns, in);
	r = 0;
out:
	return r;
}

static int apply_rename(struct ns *ns, const struct ns_op *op)
{
	struct inode *p1, *p2, *src, *dst = NULL;
	struct dent *e1, *e2, *ne = NULL;
	uint64_t h1, h2;
	int r;

	if (op->flags & ~(uint32_t)(NS_RENAME_NOREPLACE | NS_RENAME_EXCHANGE) ||
	    op->flags == (NS_RENAME_NOREPLACE | NS_RENAME_EXCHANGE)) {
		r = -EINVAL;
		goto out;
	}
	r = get_dir(ns, op->parent, &p1);
	if (r < 0)
		goto out;
	r = get_dir(ns, op->parent2, &p2);
	if (r < 0)
		goto out;
	r = name_check(op->name, op->name_len);
	if (r < 0)
		goto out;
	r = name_check(op->name2, op->name2_len);
	if (r < 0)
		goto out;
	h1 = name_hash(op->name, op->name_len);
	h2 = name_hash(op->name2, op->name2_len);
	e1 = dir_find(p1->dir, op->name, op->name_len, h1);
	r = -ENOENT;
	src = e1 ? ino_fetch(ns, e1->ino, &r) : NULL;
	if (!src)
		goto out;
	e2 = dir_find(p2->dir, op->name2, op->name2_len, h2);
	if (e2)
		dst = ino_fetch(ns, e2->ino, &r);
	if (e2 && !dst)
		goto out; /* -ENOENT = dangling entry: cannot happen after ns_apply */

	if (op->flags == NS_RENAME_EXCHANGE) {
		if (!e2) {
			r = -ENOENT;
			goto out;
		}
		if (e1 == e2) {
			r = 0;
			goto out;
		}
		r = is_dir(src) ? is_ancestor(ns, src, p2) : 0;
		if (r == 0 && is_dir(dst))
			r = is_ancestor(ns, dst, p1);
		if (r != 0) {
			r = r > 0 ? -EINVAL : r;
			goto out;
		}
		e1->ino = dst->ino;
		e2->ino = src->ino;
		if (p1 != p2 && is_dir(src) != is_dir(dst)) {
			if (is_dir(src)) {
				p1->nlink--;
				p2->nlink++;
			} else {
				p1->nlink++;
				p2->nlink--;
			}
		}
		if (is_dir(src))
			src->parent = p2->ino;
		if (is_dir(dst))
			dst->parent = p1->ino;
		src->ctime_ns = op->ctime_ns;
		dst->ctime_ns = op->ctime_ns;
		touch_dir(p1, op->ctime_ns);
		touch_dir(p2, op->ctime_ns);
		r = 0;
		goto out;
	}

	if (dst) {
		if (op->flags == NS_RENAME_NOREPLACE) {
			r = -EEXIST;
			goto out;
		}
		if (dst == src) {
			r = 0; /* same inode (or same entry): nothing to do */
			goto out;
		}
		if (is_dir(src) && !is_dir(dst)) {
			r = -ENOTDIR;
			goto out;
		}
		if (!is_dir(src) && is_dir(dst)) {
			r = -EISDIR;
			goto out;
		}
	}
	r = is_dir(src) ? is_ancestor(ns, src, p2) : 0;
	if (r != 0) {
		r = r > 0 ? -EINVAL : r;
		goto out;
	}
	if (dst && is_dir(dst) && dir_count(dst)) {
		r = -ENOTEMPTY;
		goto out;
	}
	if (is_dir(src) && !dst && p1 != p2 && p2->nlink == UINT32_MAX) {
		r = -EMLINK;
		goto out;
	}
	r = gone_reserve(ns);
	if (r < 0)
		goto out;
	r = -ENOMEM;
	ne = dent_new(op->name2, op->name2_len, h2, src->ino);
	if (!ne || dir_reserve(p2->dir) < 0)
		goto out;
	/* commit: nothing below fails */
	if (e2) {
		dir_remove(p2->dir, e2);
		free(e2);
		if (is_dir(dst)) {
			dst->nlink = 0;
			p2->nlink--;
		} else {
			dst->nlink--;
		}
		dst->ctime_ns = op->ctime_ns;
	}
	dir_remove(p1->dir, e1);
	free(e1);
	dir_insert(p2->dir, ne);
	ne = NULL;
	if (is_dir(src) && p1 != p2) {
		p1->nlink--;
		p2->nlink++;
	}
	if (is_dir(src))
		src->parent = p2->ino;
	src->ctime_ns = op->ctime_ns;
	touch_dir(p1, op->ctime_ns);
	touch_dir(p2, op->ctime_ns);
	if (dst)
		maybe_free(ns, dst);
	r = 0;
out:
	free(ne);
	return r;
}

static int apply_setattr(struct ns *ns, const struct ns_op *op)
{
	int r;
	struct inode *in = ino_fetch(ns, op->ino, &r);

	if (!in)
		return r;
	if (op->flags & ~(uint32_t)(NS_SET_MODE | NS_SET_UID | NS_SET_GID | NS_SET_ATIME | NS_SET_MTIME))
		return -EINVAL;
	if (op->flags & NS_SET_MODE)
		in->mode = (in->mode & S_IFMT) | (op->mode & 07777);
	if (op->flags & NS_SET_UID)
		in->uid = op->uid;
	if (op->flags & NS_SET_GID)
		in->gid = op->gid;
	if (op->flags & NS_SET_ATIME)
		in->atime_ns = op->atime_ns;
	if (op->flags & NS_SET_MTIME)
		in->mtime_ns = op->mtime_ns;
	in->ctime_ns = op->ctime_ns;
	return 0;
}

static int apply_xattr(struct ns *ns, const struct ns_op *op)
{
	int r;
	struct inode *in = ino_fetch(ns, op->ino, &r);

	if (!in)
		return r;
	if (op->kind == NS_SETXATTR) {
		if (op->flags & ~(uint32_t)(NS_XATTR_CREATE | NS_XATTR_REPLACE) ||
		    op->flags == (NS_XATTR_CREATE | NS_XATTR_REPLACE))
			return -EINVAL;
		r = xa_set(in, op->name, op->name_len, op->name2, op->name2_len, op->flags);
	} else {
		r = xa_remove(in, op->name, op->name_len);
	}
	if (r == 0)
		in->ctime_ns = op->ctime_ns;
	return r;
}

static int apply_op(struct ns *ns, const struct ns_op *op)
{
	switch (op->kind) {
	case NS_CREATE:
	case NS_MKDIR:
	case NS_SYMLINK:
	case NS_MKNOD:
		return apply_new(ns, op);
	case NS_SETXATTR:
	case NS_REMOVEXATTR:
		return apply_xattr(ns, op);
	case NS_LINK:
		return apply_link(ns, op);
	case NS_UNLINK:
	case NS_RMDIR:
		return apply_remove(ns, op);
	case NS_RENAME:
		return apply_rename(ns, op);
	case NS_SETATTR:
		return apply_setattr(ns, op);
	default:
		return -EINVAL;
	}
}

/* The inode a name of op names now (0 if none). */
static uint64_t named_ino(const struct ns *ns, uint64_t dir, const char *name, size_t len)
{
	const struct inode *p = ino_get(ns, dir);
	const struct dent *e;

	if (!p || !p->dir || !name || !len)
		return 0;
	e = dir_find(p->dir, name, len, name_hash(name, len));
	return e ? e->ino : 0;
}

/* Dirty tracking: whatever op can change is marked, generically: the
 * inodes it names by number, the inodes its names named before and name
 * after, and its entries. A superset is harmless (the checkpoint rewrites
 * an unchanged record); a missed change would not be. */
int ns_apply(struct ns *ns, const struct ns_op *op)
{
	uint64_t before1 = 0, before2 = 0;
	bool track = !ns->dirty.all; /* every mark is a no-op under `all` */
	int r;

	if (ns->parents_dirty)
		fix_parents(ns);
	if (track) {
		before1 = named_ino(ns, op->parent, op->name, op->name_len);
		if (op->kind == NS_RENAME || op->kind == NS_LINK)
			before2 = named_ino(ns, op->parent2, op->name2, op->name2_len);
	}
	r = apply_op(ns, op);
	if (r < 0 || !track)
		return r;
	nsd_mark_ino(&ns->dirty, op->ino);
	nsd_mark_ino(&ns->dirty, op->parent);
	nsd_mark_ino(&ns->dirty, before1);
	nsd_mark_ino(&ns->dirty, named_ino(ns, op->parent, op->name, op->name_len));
	if (op->parent && op->name && op->name_len)
		nsd_mark_ent(&ns->dirty, op->parent, op->name, op->name_len);
	if (op->kind == NS_RENAME || op->kind == NS_LINK) {
		nsd_mark_ino(&ns->dirty, op->parent2);
		nsd_mark_ino(&ns->dirty, before2);
		nsd_mark_ino(&ns->dirty, named_ino(ns, op->parent2, op->name2, op->name2_len));
		nsd_mark_ent(&ns->dirty, op->parent2, op->name2, op->name2_len);
	}
	return 0;
}

/* ---- data bookkeeping, pins, inode numbers ----------------------------- */

int ns_set_size(struct ns *ns, uint64_t ino, uint64_t size, int64_t time_ns)
{
	int r;
	struct inode *in = ino_fetch(ns, ino, &r);
	if (!in)
		return r;
	if (is_dir(in))
		return -EISDIR;
	if (!S_ISREG(in->mode))
		return -EINVAL;
	in->size = size;
	nsd_mark_ino(&ns->dirty, ino);
	if (time_ns) {
		in->mtime_ns = time_ns;
		in->ctime_ns = time_ns;
		in->append_ns = time_ns;
	}
	return 0;
}

int ns_pin(struct ns *ns, uint64_t ino)
{
	int r;
	struct inode *in = ino_fetch(ns, ino, &r);
	if (!in)
		return r;
	if (in->pins == UINT32_MAX)
		return -EOVERFLOW;
	in->pins++;
	return 0;
}

int ns_unpin(struct ns *ns, uint64_t ino)
{
	int r;
	struct inode *in = ino_fetch(ns, ino, &r);
	if (!in)
		return r;
	if (in->pins == 0)
		return -EINVAL;
	r = gone_reserve(ns);
	if (r < 0)
		return r;
	in->pins--;
	nsd_mark_ino(&ns->dirty, ino);
	if (in->ino != NS_ROOT_INO)
		maybe_free(ns, in);
	return 0;
}

int ns_parent(struct ns *ns, uint64_t dir, uint64_t *ret_parent)
{
	int r;
	struct inode *in = ino_fetch(ns, dir, &r);

	if (!in)
		return r;
	if (!is_dir(in))
		return -ENOTDIR;
	if (ns->parents_dirty)
		fix_parents(ns);
	*ret_parent = (in->ino == NS_ROOT_INO || in->parent == 0) ? NS_ROOT_INO : in->parent;
	return 0;
}

uint64_t ns_alloc_ino(struct ns *ns) { return ns->next_ino++; }
uint64_t ns_next_ino(const struct ns *ns) { return ns->next_ino; }
void ns_set_next_ino(struct ns *ns, uint64_t next) { ns->next_ino = next; }
uint64_t ns_count(const struct ns *ns) { return ns->count; }

/* ---- checkpoint support ----------------------------------------------- */

static int cmp_ino(const void *a, const void *b)
{
	uint64_t x = (*(struct inode *const *)a)->ino, y = (*(struct inode *const *)b)->ino;
	return x < y ? -1 : x > y;
}

int ns_walk(struct ns *ns, const struct ns_visit *v, void *arg)
{
	struct inode **all = NULL;
	size_t n = 0;
	int r = ns->bk ? ns->bk->rest(ns->bk_arg, ns) : 0; /* loads everything, detaches */

	if (r < 0)
		goto out;
	r = -ENOMEM;
	all = malloc((ns->loaded ? ns->loaded : 1) * sizeof(*all));
	if (!all)
		goto out;
	for (size_t i = 0; i < ns->tab_cap; i++)
		if (ns->tab[i])
			all[n++] = ns->tab[i];
	qsort(all, n, sizeof(*all), cmp_ino);
	r = 0;
	for (size_t i = 0; i < n && v->inode; i++) {
		struct ns_attr a;
		fill_attr(all[i], &a);
		r = v->inode(arg, &a, all[i]->target, all[i]->target ? all[i]->size : 0);
		if (r)
			goto out;
		for (uint32_t k = 0; k < all[i]->n_xa && v->xattr; k++) {
			const struct xattr *x = all[i]->xa[k];
			r = v->xattr(arg, all[i]->ino, x->data, x->nlen, x->data + x->nlen, x->vlen);
			if (r)
				goto out;
		}
	}
	for (size_t i = 0; i < n && v->dirent; i++) {
		const struct dir *d = all[i]->dir;
		for (size_t k = 0; d && k < d->ord_len; k++) {
			const struct dent *e = d->ord[k];
			if (!e)
				continue;
			r = v->dirent(arg, all[i]->ino, e->name, e->len, e->ino);
			if (r)
				goto out;
		}
	}
out:
	free(all);
	return r;
}

int ns_load_inode(struct ns *ns, const struct ns_attr *attr, const char *symlink, size_t symlink_len)
{
	struct inode *in = NULL, *old = ino_get(ns, attr->ino);
	int r;

	if (attr->ino == 0) {
		r = -EINVAL;
		goto out;
	}
	if (old) {
		/* the fresh root of ns_new may be overwritten once */
		if (old->ino != NS_ROOT_INO || old->dir->n || !S_ISDIR(attr->mode)) {
			r = -EEXIST;
			goto out;
		}
		old->mode = attr->mode;
		old->uid = attr->uid;
		old->gid = attr->gid;
		old->nlink = attr->nlink;
		old->atime_ns = attr->atime_ns;
		old->mtime_ns = attr->mtime_ns;
		old->ctime_ns = attr->ctime_ns;
		old->append_ns = attr->append_ns;
		nsd_mark_ino(&ns->dirty, attr->ino);
		r = 0;
		goto out;
	}
	r = -ENOMEM;
	in = calloc(1, sizeof(*in));
	if (!in)
		goto out;
	in->ino = attr->ino;
	in->mode = attr->mode;
	in->uid = attr->uid;
	in->gid = attr->gid;
	in->nlink = attr->nlink;
	in->size = attr->size;
	in->atime_ns = attr->atime_ns;
	in->mtime_ns = attr->mtime_ns;
	in->ctime_ns = attr->ctime_ns;
	in->append_ns = attr->append_ns;
	in->rdev = S_ISCHR(attr->mode) || S_ISBLK(attr->mode) ? attr->rdev : 0;
	if (!S_ISREG(attr->mode) && !S_ISLNK(attr->mode))
		in->size = 0;
	if (S_ISDIR(attr->mode)) {
		in->size = 0;
		in->dir = dir_new();
		if (!in->dir)
			goto out;
	} else if (S_ISLNK(attr->mode)) {
		in->size = symlink_len;
		in->target = malloc(symlink_len ? symlink_len : 1);
		if (!in->target)
			goto out;
		if (symlink_len)
			memcpy(in->target, symlink, symlink_len);
	}
	if (ino_reserve(ns) < 0)
		goto out;
	ino_insert(ns, in);
	ns->parents_dirty = true;
	nsd_mark_ino(&ns->dirty, attr->ino);
	in = NULL;
	r = 0;
out:
	inode_free(in);
	return r;
}

int ns_load_dirent(struct ns *ns, uint64_t dir, const char *name, size_t name_len, uint64_t ino)
{
	return ns_load_dirent_cookie(ns, dir, name, name_len, ino, 0);
}

int ns_load_dirent_cookie(struct ns *ns, uint64_t dir, const char *name, size_t name_len, uint64_t ino,
			  uint64_t cookie)
{
	struct inode *p = ino_get(ns, dir);
	struct dent *e = NULL;
	uint64_t h;
	int r;

	if (!p) {
		r = -ENOENT;
		goto out;
	}
	if (!is_dir(p)) {
		r = -ENOTDIR;
		goto out;
	}
	r = name_check(name, name_len);
	if (r < 0 || ino == 0 || (cookie && (cookie < p->dir->next_cookie || cookie == UINT64_MAX))) {
		r = -EINVAL; /* given cookies must increase (and leave a next one) */
		goto out;
	}
	h = name_hash(name, name_len);
	if (dir_find(p->dir, name, name_len, h)) {
		r = -EEXIST;
		goto out;
	}
	r = -ENOMEM;
	e = dent_new(name, name_len, h, ino);
	if (!e || dir_reserve(p->dir) < 0)
		goto out;
	if (cookie)
		p->dir->next_cookie = cookie;
	dir_insert(p->dir, e);
	e = NULL;
	ns->parents_dirty = true;
	nsd_mark_ent(&ns->dirty, dir, name, name_len);
	r = 0;
out:
	free(e);
	return r;
}

int ns_load_xattr(struct ns *ns, uint64_t ino, const char *name, size_t name_len, const void *value,
		  size_t value_len)
{
	struct inode *in = ino_get(ns, ino);
	int r;

	if (!in)
		return -ENOENT;
	if (value_len > NS_XATTR_VALUE_MAX)
		return -EINVAL;
	r = xa_set(in, name, name_len, value, value_len, NS_XATTR_CREATE);
	if (r == 0)
		nsd_mark_ino(&ns->dirty, ino);
	return r == -ENOSPC ? -EINVAL : r;
}

/* ---- dirty tracking (ns_dirty.c) --------------------------------------- */

void ns_dirty_mark(struct ns *ns, uint64_t ino) { nsd_mark_ino(&ns->dirty, ino); }
void ns_dirty_set_all(struct ns *ns) { ns->dirty.all = true; }
bool ns_dirty_all(const struct ns *ns) { return ns->dirty.all; }
void ns_dirty_clear(struct ns *ns) { nsd_clear(&ns->dirty); }

size_t ns_dirty_counts(const struct ns *ns, size_t *ret_dirents)
{
	if (ret_dirents)
		*ret_dirents = ns->dirty.ent_n;
	return ns->dirty.ino_n;
}

int ns_dirty_each_ino(const struct ns *ns, int (*cb)(void *arg, uint64_t ino), void *arg)
{
	return nsd_each_ino(&ns->dirty, cb, arg);
}

int ns_dirty_each_dirent(const struct ns *ns, int (*cb)(void *arg, uint64_t dir, const char *name, size_t len),
			 void *arg)
{
	return nsd_each_ent(&ns->dirty, cb, arg);
}

int ns_dirent_get(const struct ns *ns, uint64_t dir, const char *name, size_t name_len, uint64_t *ret_ino,
		  uint64_t *ret_cookie)
{
	const struct inode *p = ino_get(ns, dir);
	const struct dent *e;

	if (!p)
		return -ENOENT;
	if (!p->dir)
		return -ENOTDIR;
	e = dir_find(p->dir, name, name_len, name_hash(name, name_len));
	if (!e)
		return -ENOENT;
	*ret_ino = e->ino;
	*ret_cookie = e->cookie;
	return 0;
}

int ns_walk_inode(const struct ns *ns, uint64_t ino, const struct ns_visit *v, void *arg)
{
	const struct inode *in = ino_get(ns, ino);
	struct ns_attr a;
	int r = 0;

	if (!in)
		return -ENOENT;
	fill_attr(in, &a);
	if (v->inode)
		r = v->inode(arg, &a, in->target, in->target ? in->size : 0);
	for (uint32_t k = 0; r == 0 && k < in->n_xa && v->xattr; k++) {
		const struct xattr *x = in->xa[k];
		r = v->xattr(arg, in->ino, x->data, x->nlen, x->data + x->nlen, x->vlen);
	}
	return r;
}
