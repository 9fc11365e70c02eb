/* ns_copy.c — the namespace copied, loaded and walked: ns_clone (a deep
 * copy), the backed namespace's loads (ns_new_backed, ns_copy_inode,
 * ns_copy_dir, ns_copy_rest: the semantics are at the top of ns.c), and
 * what a checkpoint needs (ns_walk, ns_walk_inode, ns_dirent_get, the
 * ns_load_* calls that rebuild a namespace from a checkpoint, the dirty-set
 * accessors). Structures: ns_int.h; the table and directory primitives are
 * ns.c's.
 *
 * Invariants kept here: a copy never shares memory with its source; a
 * loaded inode of a backed namespace is counted in `loaded` only (`count`
 * is the whole namespace's from the start); ns_copy_rest leaves a backed
 * namespace complete (loaded == count) and detached, or fails with it
 * still backed. No locks: the callers hold the backing namespace's.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ns_int.h"

static struct dir *dir_clone(const struct dir *s)
{
	struct dir *d = nsi_dir_new();
	if (!d)
		return NULL;
	d->next_cookie = s->next_cookie;
	for (size_t i = 0; i < s->ord_len; i++) {
		const struct dent *se = s->ord[i];
		if (!se)
			continue;
		struct dent *e = nsi_dent_new(se->name, se->len, se->hash, se->ino);
		if (!e || nsi_dir_reserve(d) < 0) {
			free(e);
			nsi_dir_free(d);
			return NULL;
		}
		nsi_tab_put_nogrow(d->tab, d->tab_cap, e);
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
		in->dir = nsi_dir_new();
		if (!in->dir)
			goto fail;
		in->dir->lazy = true;
		in->dir->next_cookie = s->dir->next_cookie;
		in->size = nsi_dir_count(s);
	} else if (s->dir) {
		in->dir = dir_clone(s->dir);
		if (!in->dir)
			goto fail;
	}
	return in;
fail:
	nsi_inode_free(in);
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

/* An empty namespace backed by bk: count inodes, numbers from next_ino on
 * never in the backing. Nothing loaded yet. */
static int backed_alloc(const struct ns_backing *bk, void *arg, uint64_t count, uint64_t next_ino,
			struct ns **ret_ns)
{
	struct ns *ns = NULL;

	if (!bk || !bk->inode || !bk->dir || !bk->rest || !bk->has)
		return -EINVAL;
	ns = calloc(1, sizeof(*ns));
	if (ns) {
		ns->tab_cap = 64;
		ns->tab = calloc(ns->tab_cap, sizeof(*ns->tab));
	}
	if (!ns || !ns->tab) {
		ns_free(ns);
		return -ENOMEM;
	}
	ns->next_ino = ns->bk_next = next_ino;
	ns->count = count;
	ns->bk = bk;
	ns->bk_arg = arg;
	*ret_ns = ns;
	return 0;
}

int ns_new_backed(const struct ns *from, const struct ns_backing *bk, void *arg, struct ns **ret_ns)
{
	struct ns *ns = NULL;
	int r = -EINVAL;

	if (from->parents_dirty)
		goto fail; /* (from may be backed itself: its root is loaded) */
	r = backed_alloc(bk, arg, from->count, from->next_ino, &ns);
	if (r < 0)
		goto fail;
	ns->dirty.all = true; /* never checkpointed: no dirty sets */
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
	const struct inode *s = nsi_ino_get(src, ino);
	struct inode *in = NULL;
	int r = -ENOENT;

	if (!s)
		goto out;
	r = -EINVAL;
	if (src->parents_dirty || !dst->bk)
		goto out;
	r = -EEXIST;
	if (nsi_ino_get(dst, ino))
		goto out;
	r = -ENOMEM;
	in = inode_copy(s, true);
	if (!in || nsi_ino_reserve(dst) < 0)
		goto out;
	in->pins = 0; /* the pins are each namespace's own: nothing here has it open yet */
	nsi_ino_put_nogrow(dst->tab, dst->tab_cap, in);
	dst->loaded++;
	in = NULL;
	r = 0;
out:
	nsi_inode_free(in);
	return r;
}

int ns_copy_dir(struct ns *dst, const struct ns *src, uint64_t dir)
{
	struct inode *p = nsi_ino_get(dst, dir);
	const struct inode *s = nsi_ino_get(src, dir);
	struct dir *d;

	if (!p || !p->dir || !p->dir->lazy || (s && s->dir && s->dir->lazy))
		return -EINVAL; /* (a backed src: its entries loaded first, ns_fetch) */
	if (!s || !s->dir || s->dir->n != p->size)
		return -EIO; /* the backing namespace changed what this one never did */
	d = dir_clone(s->dir);
	if (!d)
		return -ENOMEM;
	nsi_dir_free(p->dir);
	p->dir = d;
	p->size = 0;
	return 0;
}

int ns_copy_rest(struct ns *dst, const struct ns *src)
{
	int r = 0;

	if (!dst->bk)
		return 0;
	if (src->bk)
		return -EINVAL; /* a backed src: completed first (ns_detach) */
	/* inodes from bk_next on that are not here were created and freed
	 * here (their removal may still be on its way to src) */
	for (size_t i = 0; r == 0 && i < src->tab_cap; i++) {
		const struct inode *s = src->tab[i];
		if (s && s->ino < dst->bk_next && !nsi_ino_get(dst, s->ino) && !nsd_has_ino(&dst->gone, s->ino))
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

/* ---- namespace backed by records (ns.h ns_new_backed_by) --------------- */

int ns_new_backed_by(const struct ns_backing *bk, void *arg, uint64_t count, uint64_t next_ino,
		     struct ns **ret_ns)
{
	struct ns *ns = NULL;
	int r = -EINVAL;

	if (next_ino < 2 || count >= next_ino)
		goto fail;
	r = backed_alloc(bk, arg, count, next_ino, &ns);
	if (r == 0 && count == 0) {
		/* no checkpoint wrote an inode yet: ns_new's root */
		struct inode *root = nsi_root_new();
		r = root ? 0 : -ENOMEM;
		if (root) {
			nsi_ino_put_nogrow(ns->tab, ns->tab_cap, root);
			ns->loaded = ns->count = 1;
		}
	}
	if (r < 0)
		goto fail;
	*ret_ns = ns;
	return 0;
fail:
	ns_free(ns);
	return r;
}

void ns_loading(struct ns *ns, bool on) { ns->loading = on; }

/* One loaded entry into d: the name valid and not there yet, ino not 0,
 * the cookie (0 = the next one) not below d's next and leaving one after
 * it: 0, -EINVAL, -EEXIST or -ENOMEM; nothing changes on failure. */
static int dent_load(struct dir *d, const char *name, size_t len, uint64_t ino, uint64_t cookie)
{
	uint64_t h;
	struct dent *e;

	if (nsi_name_check(name, len) < 0 || ino == 0 ||
	    (cookie && (cookie < d->next_cookie || cookie == UINT64_MAX)))
		return -EINVAL; /* given cookies must increase (and leave a next one) */
	h = nsi_name_hash(name, len);
	if (nsi_dir_find(d, name, len, h))
		return -EEXIST;
	e = nsi_dent_new(name, len, h, ino);
	if (!e || nsi_dir_reserve(d) < 0) {
		free(e);
		return -ENOMEM;
	}
	if (cookie)
		d->next_cookie = cookie;
	nsi_dir_insert(d, e);
	return 0;
}

int ns_load_dir(struct ns *ns, uint64_t dir, const struct ns_dload *v, size_t n)
{
	struct inode *p = nsi_ino_get(ns, dir);
	struct dir *d = NULL;
	int r = -EINVAL;

	if (!p || !p->dir || !p->dir->lazy)
		goto out;
	r = -EIO;
	if (n != p->size)
		goto out; /* the directory's inode and its entries disagree */
	r = -ENOMEM;
	d = nsi_dir_new();
	if (!d || (n && nsi_dir_grow(d, n) < 0))
		goto out;
	r = 0;
	for (size_t i = 0; i < n && r == 0; i++) /* every entry with its cookie */
		r = v[i].cookie ? dent_load(d, v[i].name, v[i].len, v[i].ino, v[i].cookie) : -EINVAL;
	if (r < 0)
		goto out;
	nsi_dir_free(p->dir);
	p->dir = d;
	p->size = 0;
	d = NULL;
	r = 0;
out:
	nsi_dir_free(d);
	return r;
}

int ns_detach(struct ns *ns)
{
	if (!ns->bk)
		return 0;
	if (ns->loaded != ns->count)
		return -EAGAIN;
	for (size_t i = 0; i < ns->tab_cap; i++)
		if (ns->tab[i] && ns->tab[i]->dir && ns->tab[i]->dir->lazy)
			return -EAGAIN;
	ns->bk = NULL;
	nsd_free(&ns->gone);
	return 0;
}

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
		nsi_fill_attr(all[i], &a);
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
	struct inode *in = NULL, *old = nsi_ino_get(ns, attr->ino);
	int r;

	if (attr->ino == 0) {
		r = -EINVAL;
		goto out;
	}
	if (old && ns->loading) {
		r = -EEXIST; /* a backed load never replaces */
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
		in->dir = nsi_dir_new();
		if (!in->dir)
			goto out;
		in->parent = attr->parent;
		if (ns->loading && attr->size) { /* entries later (ns_load_dir); their count now */
			in->dir->lazy = true;
			in->size = attr->size;
		}
	} else if (S_ISLNK(attr->mode)) {
		in->size = symlink_len;
		in->target = malloc(symlink_len ? symlink_len : 1);
		if (!in->target)
			goto out;
		if (symlink_len)
			memcpy(in->target, symlink, symlink_len);
	}
	if (nsi_ino_reserve(ns) < 0)
		goto out;
	if (ns->loading) {
		if (attr->ino >= ns->bk_next) {
			r = -EIO; /* the backing holds a number it never handed out */
			goto out;
		}
		nsi_ino_put_nogrow(ns->tab, ns->tab_cap, in);
		ns->loaded++;
	} else {
		nsi_ino_insert(ns, in);
		ns->parents_dirty = true;
		nsd_mark_ino(&ns->dirty, attr->ino);
	}
	in = NULL;
	r = 0;
out:
	nsi_inode_free(in);
	return r;
}

int ns_load_dirent(struct ns *ns, uint64_t dir, const char *name, size_t name_len, uint64_t ino)
{
	return ns_load_dirent_cookie(ns, dir, name, name_len, ino, 0);
}

int ns_load_dirent_cookie(struct ns *ns, uint64_t dir, const char *name, size_t name_len, uint64_t ino,
			  uint64_t cookie)
{
	struct inode *p = nsi_ino_get(ns, dir);
	int r = !p ? -ENOENT : !nsi_is_dir(p) ? -ENOTDIR : dent_load(p->dir, name, name_len, ino, cookie);

	if (r == 0) {
		ns->parents_dirty = true;
		nsd_mark_ent(&ns->dirty, dir, name, name_len);
	}
	return r;
}

int ns_load_xattr(struct ns *ns, uint64_t ino, const char *name, size_t name_len, const void *value,
		  size_t value_len)
{
	struct inode *in = nsi_ino_get(ns, ino);
	int r;

	if (!in)
		return -ENOENT;
	if (value_len > NS_XATTR_VALUE_MAX)
		return -EINVAL;
	r = nsi_xa_set(in, name, name_len, value, value_len, NS_XATTR_CREATE);
	if (r == 0 && !ns->loading)
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
	const struct inode *p = nsi_ino_get(ns, dir);
	const struct dent *e;

	if (!p)
		return -ENOENT;
	if (!p->dir)
		return -ENOTDIR;
	e = nsi_dir_find(p->dir, name, name_len, nsi_name_hash(name, name_len));
	if (!e)
		return -ENOENT;
	*ret_ino = e->ino;
	*ret_cookie = e->cookie;
	return 0;
}

int ns_walk_inode(const struct ns *ns, uint64_t ino, const struct ns_visit *v, void *arg)
{
	const struct inode *in = nsi_ino_get(ns, ino);
	struct ns_attr a;
	int r = 0;

	if (!in)
		return -ENOENT;
	nsi_fill_attr(in, &a);
	if (v->inode)
		r = v->inode(arg, &a, in->target, in->target ? in->size : 0);
	for (uint32_t k = 0; r == 0 && k < in->n_xa && v->xattr; k++) {
		const struct xattr *x = in->xa[k];
		r = v->xattr(arg, in->ino, x->data, x->nlen, x->data + x->nlen, x->vlen);
	}
	return r;
}
