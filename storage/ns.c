/* ns.c — the in-memory namespace: inodes, directories, attributes.
 * This file: the tables, queries, ns_apply, pins; ns_copy.c: copies, the
 * backed namespace's loads, walks and checkpoint loads; the structures are
 * in ns_int.h, the dirty sets in ns_dirty.c.
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
 * Dirty sets are not kept (`all`): the live view is never checkpointed.
 * Queries change a backed namespace (they load): its owner serializes them
 * with the changes.
 *
 * BACKED BY RECORDS (ns_new_backed_by: the engine's namespace over its
 * checkpoint's trees). The same loads, but the callbacks parse records
 * into the namespace with the ns_load_* calls while `loading` is set (an
 * inode so loaded is part of `count` already and marks nothing dirty; a
 * directory comes lazy with its entry count and its parent from the
 * record; ns_load_dir fills it). Dirty sets are kept, and ns_apply loads
 * the op's directories before it notes what their names held, so the
 * inode an unlink or rename drops is marked like any other. ns_detach
 * drops the backing once everything is loaded.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ns_int.h"
#include "record.h"

static int dir_grow(struct dir *d, size_t n);

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

struct inode *nsi_ino_get(const struct ns *ns, uint64_t ino)
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

void nsi_ino_put_nogrow(struct inode **tab, size_t cap, struct inode *in)
{
	size_t i = ino_slot(in->ino, cap);
	while (tab[i])
		i = (i + 1) & (cap - 1);
	tab[i] = in;
}

/* Makes room for one more inode (the only failure point of an insert). */
int nsi_ino_reserve(struct ns *ns) { return ns_reserve(ns, ns->loaded + 1); }

/* Room for n inodes in the table: one rehash instead of one per doubling. */
int ns_reserve(struct ns *ns, size_t n)
{
	size_t cap = ns->tab_cap;
	struct inode **tab;

	if (n * 4 <= cap * 3)
		return 0;
	while (n * 4 > cap * 3)
		cap *= 2;
	tab = calloc(cap, sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	for (size_t i = 0; i < ns->tab_cap; i++)
		if (ns->tab[i])
			nsi_ino_put_nogrow(tab, cap, ns->tab[i]);
	free(ns->tab);
	ns->tab = tab;
	ns->tab_cap = cap;
	return 0;
}

int ns_reserve_entries(struct ns *ns, uint64_t dir, size_t n)
{
	struct inode *p = nsi_ino_get(ns, dir);

	return p && p->dir && !p->dir->lazy && n ? dir_grow(p->dir, p->dir->n + n) : 0;
}

void nsi_ino_insert(struct ns *ns, struct inode *in)
{
	nsi_ino_put_nogrow(ns->tab, ns->tab_cap, in);
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
	struct inode *in = nsi_ino_get(ns, ino);
	int r = -ENOENT;

	if (in || !ns->bk || ino == 0 || ino >= ns->bk_next || nsd_has_ino(&ns->gone, ino))
		goto out;
	gone_prune(ns);
	ns->loading = true;
	r = ns->bk->inode(ns->bk_arg, ns, ino);
	ns->loading = false;
	if (r == 0) {
		in = nsi_ino_get(ns, ino);
		r = in ? 0 : -EIO;
	} else if (r == -ENOENT && gone_reserve(ns) == 0) {
		gone_add(ns, ino); /* not there: never asked again (numbers are not reused) */
	}
out:
	if (ret_err)
		*ret_err = in ? 0 : r;
	return in;
}

/* ---- directories ------------------------------------------------------ */

uint64_t nsi_name_hash(const char *name, size_t len) { return rec_hash(name, len); }

struct dent *nsi_dir_find(const struct dir *d, const char *name, size_t len, uint64_t h)
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

void nsi_tab_put_nogrow(struct dent **tab, size_t cap, struct dent *e)
{
	size_t i = e->hash & (cap - 1);
	while (tab[i])
		i = (i + 1) & (cap - 1);
	tab[i] = e;
}

/* Room for n entries in the name table and n more order slots than used
 * (holes included). */
static int dir_grow(struct dir *d, size_t n)
{
	if (n * 4 > d->tab_cap * 3) {
		size_t cap = d->tab_cap ? d->tab_cap * 2 : 8;
		while (n * 4 > cap * 3)
			cap *= 2;
		struct dent **tab = calloc(cap, sizeof(*tab));
		if (!tab)
			return -ENOMEM;
		for (size_t i = 0; i < d->tab_cap; i++)
			if (d->tab[i])
				nsi_tab_put_nogrow(tab, cap, d->tab[i]);
		free(d->tab);
		d->tab = tab;
		d->tab_cap = cap;
	}
	if (d->ord_len + (n - d->n) > d->ord_cap) {
		size_t cap = d->ord_cap ? d->ord_cap * 2 : 8;
		while (d->ord_len + (n - d->n) > cap)
			cap *= 2;
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

/* Makes room for one more entry in both the name table and the order array. */
int nsi_dir_reserve(struct dir *d) { return dir_grow(d, d->n + 1); }
int nsi_dir_grow(struct dir *d, size_t n) { return dir_grow(d, n); }

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
void nsi_dir_insert(struct dir *d, struct dent *e)
{
	e->cookie = d->next_cookie++;
	nsi_tab_put_nogrow(d->tab, d->tab_cap, e);
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

struct dent *nsi_dent_new(const char *name, size_t len, uint64_t h, uint64_t ino)
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

void nsi_dir_free(struct dir *d)
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

struct dir *nsi_dir_new(void)
{
	struct dir *d = calloc(1, sizeof(*d));
	if (d)
		d->next_cookie = NS_COOKIE_FIRST;
	return d;
}

/* ---- inodes ----------------------------------------------------------- */

void nsi_inode_free(struct inode *in)
{
	if (!in)
		return;
	for (uint32_t i = 0; i < in->n_xa; i++)
		free(in->xa[i]);
	free(in->xa);
	nsi_dir_free(in->dir);
	free(in->target);
	free(in);
}

bool nsi_is_dir(const struct inode *in) { return S_ISDIR(in->mode); }

/* Entries of a directory, loaded or not. */
size_t nsi_dir_count(const struct inode *in) { return in->dir->lazy ? in->size : in->dir->n; }

/* Loads the entries of a lazy directory (ns_copy_dir): 0 or -errno. */
static int dir_load(struct ns *ns, struct inode *p)
{
	int r;

	if (!p->dir || !p->dir->lazy)
		return 0;
	ns->loading = true;
	r = ns->bk ? ns->bk->dir(ns->bk_arg, ns, p->ino) : -EIO;
	ns->loading = false;
	if (r == 0 && p->dir->lazy)
		r = -EIO;
	return r;
}

/* A directory with its entries loaded: -ENOENT (also, when live, for an
 * inode whose last link is gone), -ENOTDIR or a load's error. */
static int dir_fetch(struct ns *ns, uint64_t ino, bool live, struct inode **ret)
{
	int r;
	struct inode *p = ino_fetch(ns, ino, &r);

	if (!p)
		return r;
	if (live && p->nlink == 0)
		return -ENOENT;
	if (!nsi_is_dir(p))
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
		nsi_inode_free(in);
	}
}

struct inode *nsi_root_new(void)
{
	struct inode *root = calloc(1, sizeof(*root));

	if (root)
		root->dir = nsi_dir_new();
	if (!root || !root->dir) {
		nsi_inode_free(root);
		return NULL;
	}
	root->ino = NS_ROOT_INO;
	root->mode = S_IFDIR | 0755;
	root->nlink = 2;
	return root;
}

int ns_new(struct ns **ret_ns)
{
	struct ns *ns = calloc(1, sizeof(*ns));
	struct inode *root = nsi_root_new();
	int r = -ENOMEM;

	if (!ns || !root)
		goto fail;
	ns->tab_cap = 64;
	ns->tab = calloc(ns->tab_cap, sizeof(*ns->tab));
	if (!ns->tab)
		goto fail;
	ns->next_ino = 2;
	nsi_ino_insert(ns, root);
	*ret_ns = ns;
	return 0;
fail:
	nsi_inode_free(root);
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
		nsi_inode_free(ns->tab[i]);
	free(ns->tab);
	nsd_free(&ns->dirty);
	nsd_free(&ns->gone);
	free(ns);
}

/* ---- what is loaded ---------------------------------------------------- */

int ns_state(const struct ns *ns, uint64_t ino)
{
	if (nsi_ino_get(ns, ino))
		return 1;
	if (!ns->bk || ino == 0 || ino >= ns->bk_next || nsd_has_ino(&ns->gone, ino))
		return 0;
	return -EAGAIN;
}

int ns_dir_state(const struct ns *ns, uint64_t dir)
{
	const struct inode *p = nsi_ino_get(ns, dir);
	if (p)
		return p->dir && p->dir->lazy ? -EAGAIN : 1;
	return ns_state(ns, dir);
}

int ns_fetch(struct ns *ns, uint64_t ino, bool entries)
{
	int r;
	struct inode *in = ino_fetch(ns, ino, &r);

	if (in && entries)
		r = dir_load(ns, in);
	return r;
}

bool ns_is_backed(const struct ns *ns) { return ns->bk != NULL; }
void ns_test_no_preload(struct ns *ns) { ns->test_no_preload = true; }

/* ---- lookups ---------------------------------------------------------- */

int ns_lookup(struct ns *ns, uint64_t parent, const char *name, size_t name_len, uint64_t *ret_ino)
{
	int r;
	struct inode *p = ino_fetch(ns, parent, &r);
	const struct dent *e;

	if (!p)
		return r;
	if (!nsi_is_dir(p))
		return -ENOTDIR;
	if (name_len > NS_NAME_MAX)
		return -ENAMETOOLONG;
	if (!name || name_len == 0)
		return -ENOENT;
	r = dir_load(ns, p);
	if (r < 0)
		return r;
	e = nsi_dir_find(p->dir, name, name_len, nsi_name_hash(name, name_len));
	if (!e)
		return -ENOENT;
	*ret_ino = e->ino;
	return 0;
}

void nsi_fill_attr(const struct inode *in, struct ns_attr *a)
{
	memset(a, 0, sizeof(*a)); /* no stray padding bytes for callers that hash or compare it */
	a->ino = in->ino;
	a->mode = in->mode;
	a->uid = in->uid;
	a->gid = in->gid;
	a->nlink = in->nlink;
	a->size = in->dir ? nsi_dir_count(in) : in->size;
	a->atime_ns = in->atime_ns;
	a->mtime_ns = in->mtime_ns;
	a->ctime_ns = in->ctime_ns;
	a->append_ns = in->append_ns;
	a->rdev = in->rdev;
	a->parent = in->dir && in->ino != NS_ROOT_INO ? in->parent : 0;
}

int ns_getattr(struct ns *ns, uint64_t ino, struct ns_attr *ret_attr)
{
	int r;
	const struct inode *in = ino_fetch(ns, ino, &r);
	if (!in)
		return r;
	nsi_fill_attr(in, ret_attr);
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
int nsi_xa_set(struct inode *in, const char *name, size_t nlen, const void *value, size_t vlen,
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
	size_t n = nsi_is_dir(in) ? 3 : S_ISREG(in->mode) ? 2 : 0;

	for (size_t i = 0; i < n; i++) {
		long k = xa_find(p, names[i], strlen(names[i]));
		int r;
		if (k < 0)
			continue;
		r = nsi_xa_set(in, p->xa[k]->data, p->xa[k]->nlen, p->xa[k]->data + p->xa[k]->nlen, p->xa[k]->vlen, 0);
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
	int r = dir_fetch(ns, dir, false, &p);

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
int nsi_name_check(const char *name, size_t len)
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
static int get_dir(struct ns *ns, uint64_t ino, struct inode **ret) { return dir_fetch(ns, ino, true, ret); }

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
			struct inode *c = e ? nsi_ino_get(ns, e->ino) : NULL;
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
	r = nsi_name_check(name, len);
	if (r < 0)
		return r;
	h = nsi_name_hash(name, len);
	if (nsi_dir_find(p->dir, name, len, h))
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
	e = nsi_dent_new(op->name, op->name_len, h, op->ino);
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
		in->dir = nsi_dir_new();
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
	if (inherit_settings(p, in) < 0 || nsi_dir_reserve(p->dir) < 0 || nsi_ino_reserve(ns) < 0)
		goto out;
	/* commit: nothing below fails */
	nsi_ino_insert(ns, in);
	nsi_dir_insert(p->dir, e);
	if (op->kind == NS_MKDIR)
		p->nlink++;
	touch_dir(p, op->ctime_ns);
	in = NULL;
	e = NULL;
	r = 0;
out:
	nsi_inode_free(in);
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
	if (nsi_is_dir(in)) {
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
	e = nsi_dent_new(op->name2, op->name2_len, h, in->ino);
	if (!e || nsi_dir_reserve(p->dir) < 0)
		goto out;
	nsi_dir_insert(p->dir, e);
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
	r = nsi_name_check(op->name, op->name_len);
	if (r < 0)
		goto out;
	e = nsi_dir_find(p->dir, op->name, op->name_len, nsi_name_hash(op->name, op->name_len));
	r = -ENOENT;
	in = e ? ino_fetch(ns, e->ino, &r) : NULL;
	if (!in)
		goto out;
	if (op->kind == NS_UNLINK && nsi_is_dir(in)) {
		r = -EISDIR;
		goto out;
	}
	if (op->kind == NS_RMDIR && !nsi_is_dir(in)) {
		r = -ENOTDIR;
		goto out;
	}
	if (op->kind == NS_RMDIR && nsi_dir_count(in)) {
		r = -ENOTEMPTY;
		goto out;
	}
	r = gone_reserve(ns);
	if (r < 0)
		goto out;
	dir_remove(p->dir, e);
	free(e);
	if (nsi_is_dir(in)) {
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
	r = nsi_name_check(op->name, op->name_len);
	if (r < 0)
		goto out;
	r = nsi_name_check(op->name2, op->name2_len);
	if (r < 0)
		goto out;
	h1 = nsi_name_hash(op->name, op->name_len);
	h2 = nsi_name_hash(op->name2, op->name2_len);
	e1 = nsi_dir_find(p1->dir, op->name, op->name_len, h1);
	r = -ENOENT;
	src = e1 ? ino_fetch(ns, e1->ino, &r) : NULL;
	if (!src)
		goto out;
	e2 = nsi_dir_find(p2->dir, op->name2, op->name2_len, h2);
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
		r = nsi_is_dir(src) ? is_ancestor(ns, src, p2) : 0;
		if (r == 0 && nsi_is_dir(dst))
			r = is_ancestor(ns, dst, p1);
		if (r != 0) {
			r = r > 0 ? -EINVAL : r;
			goto out;
		}
		e1->ino = dst->ino;
		e2->ino = src->ino;
		if (p1 != p2 && nsi_is_dir(src) != nsi_is_dir(dst)) {
			if (nsi_is_dir(src)) {
				p1->nlink--;
				p2->nlink++;
			} else {
				p1->nlink++;
				p2->nlink--;
			}
		}
		if (nsi_is_dir(src))
			src->parent = p2->ino;
		if (nsi_is_dir(dst))
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
		if (nsi_is_dir(src) && !nsi_is_dir(dst)) {
			r = -ENOTDIR;
			goto out;
		}
		if (!nsi_is_dir(src) && nsi_is_dir(dst)) {
			r = -EISDIR;
			goto out;
		}
	}
	r = nsi_is_dir(src) ? is_ancestor(ns, src, p2) : 0;
	if (r != 0) {
		r = r > 0 ? -EINVAL : r;
		goto out;
	}
	if (dst && nsi_is_dir(dst) && nsi_dir_count(dst)) {
		r = -ENOTEMPTY;
		goto out;
	}
	if (nsi_is_dir(src) && !dst && p1 != p2 && p2->nlink == UINT32_MAX) {
		r = -EMLINK;
		goto out;
	}
	r = gone_reserve(ns);
	if (r < 0)
		goto out;
	r = -ENOMEM;
	ne = nsi_dent_new(op->name2, op->name2_len, h2, src->ino);
	if (!ne || nsi_dir_reserve(p2->dir) < 0)
		goto out;
	/* commit: nothing below fails */
	if (e2) {
		dir_remove(p2->dir, e2);
		free(e2);
		if (nsi_is_dir(dst)) {
			dst->nlink = 0;
			p2->nlink--;
		} else {
			dst->nlink--;
		}
		dst->ctime_ns = op->ctime_ns;
	}
	dir_remove(p1->dir, e1);
	free(e1);
	nsi_dir_insert(p2->dir, ne);
	ne = NULL;
	if (nsi_is_dir(src) && p1 != p2) {
		p1->nlink--;
		p2->nlink++;
	}
	if (nsi_is_dir(src))
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
		r = nsi_xa_set(in, op->name, op->name_len, op->name2, op->name2_len, op->flags);
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
	const struct inode *p = nsi_ino_get(ns, dir);
	const struct dent *e;

	if (!p || !p->dir || !name || !len)
		return 0;
	e = nsi_dir_find(p->dir, name, len, nsi_name_hash(name, len));
	return e ? e->ino : 0;
}

/* The directories op names, loaded: 0, or a load's error (a missing or
 * non-directory parent is left for apply_op to refuse). */
static int preload_dirs(struct ns *ns, const struct ns_op *op)
{
	struct inode *p;
	int r = op->parent ? dir_fetch(ns, op->parent, false, &p) : 0;

	if ((r == 0 || r == -ENOENT || r == -ENOTDIR) && (op->kind == NS_RENAME || op->kind == NS_LINK) &&
	    op->parent2)
		r = dir_fetch(ns, op->parent2, false, &p);
	return r == -ENOENT || r == -ENOTDIR ? 0 : r;
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
	if (track && ns->bk && !ns->test_no_preload) {
		/* the names' inodes before the op, for the marks below: their
		 * directories loaded first (a failure is the op's own to say,
		 * except a load's) */
		r = preload_dirs(ns, op);
		if (r < 0)
			return r;
	}
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
	if (nsi_is_dir(in))
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
	if (!nsi_is_dir(in))
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
