/* store_nstree.c — the namespace tables of format 4: three copy-on-write
 * B+trees (btree.c) over store pages, named by the superblock (root page
 * and key count each). Format: docs/FORMAT.md §6a.
 *
 * INODE TREE. Key: the inode number, 8 bytes big endian (so memcmp order
 * is numeric order). Value: the inode's records exactly as the version-4
 * stream writes them (§6): its 'I' record, then its 'X' records (name
 * order), then its 'F' record if the store holds data for it. Every record
 * names the key's inode. Every live inode has a key (the root included,
 * once any checkpoint wrote it; an empty tree means ns_new's namespace).
 *
 * ENTRY TREE. Key: the directory's inode number (8 bytes big endian) then
 * the name (1..255 bytes). Value: varint child inode, varint readdir
 * cookie (>= NS_COOKIE_FIRST). Cookies are kept so that readdir order and
 * positions survive a remount.
 *
 * PACK TREE (format 4). Key: a pack page's number, 8 bytes big endian.
 * Value: varint live bytes of that page, 1..page payload (the frames index
 * entries name in it, store_data.c). Every pack page with live bytes has a
 * key, no other page has one. Format 3 kept this table in the stream ('K'),
 * written whole at every checkpoint; a format 3 store is read that way and
 * its first checkpoint writes the tree (kdirty_all).
 *
 * INCREMENTAL UPDATE. A checkpoint (st_nst_update, step 3 of §8) puts or
 * deletes exactly the inodes and entries in the namespace's dirty sets
 * (ns_dirty_*: ns_apply marks what an op changes, the store marks a file
 * whose index state changed), puts or deletes the pack pages whose live
 * bytes changed (s->kdirty, marked by store_data.c) and flushes the three
 * trees: O(changes x depth) pages. The pages a flush replaces go to the store's pending set
 * (st_release), so they are reused only after the superblock naming the
 * new roots is durable. When the dirty sets overflowed (ENOMEM) or the
 * namespace came from a format 2 stream (upgrade in place), the trees are
 * rebuilt whole: every page of the old trees is released (found with
 * btree_verify) and new trees are written from the whole namespace; the
 * pack tree likewise when its dirty set overflowed or the store was
 * format 2 or 3.
 *
 * LOAD. Format 5: on demand ("DEMAND LOADS" below), the pack table too
 * (a page's count before it changes: st_pack_fetch). Formats 3 and 4: at open the whole trees are read into
 * the in-memory namespace, file table and pack table (O(files)), and the
 * first checkpoint rewrites them as format 5. Entries are inserted per
 * directory in cookie order. Everything read is untrusted: the trees
 * verify their pages, the values go through the stream parser.
 *
 * LOCKS. st_nst_update runs on the commit thread with s->lock shared (it
 * reads the namespace and the file table; it touches only what is loaded,
 * and no load runs meanwhile: loads take s->lock exclusive, which is also
 * what keeps the trees, not thread-safe, to one thread at a time). Open
 * runs before any other thread sees the store.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store_int.h"

/* ---- the trees' page I/O ---- */

static int io_read(void *arg, uint64_t pgno, uint8_t *buf)
{
	struct store *s = arg;
	return pager_read(s->pager, pgno, 0, buf, NULL);
}

static int io_alloc(void *arg, uint64_t *ret)
{
	*ret = st_page_alloc(arg);
	return 0;
}

static void io_free(void *arg, uint64_t pgno)
{
	struct store *s = arg;
	int r = st_release(s, pgno, 1);
	if (r < 0 && !s->nst_err)
		s->nst_err = r;
}

static int io_write(void *arg, uint64_t pgno, const uint8_t *page)
{
	struct store *s = arg;
	return pager_write(s->pager, pgno, page);
}

static uint64_t io_hw(void *arg) { return ((struct store *)arg)->hwm; }

void st_nst_io(struct store *s, struct btree_io *io)
{
	*io = (struct btree_io){.read_page = io_read, .alloc_page = io_alloc, .free_page = io_free,
				.write_page = io_write, .high_water = io_hw, .arg = s};
}

int st_nst_open(struct store *s, const struct store_sb *sb) NO_TSA
{
	struct btree_io io;
	int r;

	st_nst_close(s);
	st_nst_io(s, &io);
	r = btree_open(&io, sb->ino_root, sb->ino_count, &s->itree);
	if (r == 0)
		r = btree_open(&io, sb->dent_root, sb->dent_count, &s->dtree);
	if (r == 0)
		r = btree_open(&io, sb->pack_root, sb->pack_count, &s->ptree);
	return r;
}

void st_nst_close(struct store *s)
{
	btree_close(s->itree);
	btree_close(s->dtree);
	btree_close(s->ptree);
	s->itree = s->dtree = s->ptree = NULL;
}

/* ---- load (open) ---- */

struct dload {
	uint64_t dir, cookie, ino;
	size_t off; /* of the name in lctx.names */
	uint32_t len;
};

struct lctx {
	struct store *s;
	uint64_t n;
	uint64_t dir; /* gathering one directory's entries (demand loads) */
	struct dload *v;
	size_t nv, cap;
	char *names; /* every entry's name, back to back */
	size_t names_len, names_cap;
	int err;
};

static uint64_t be64(const uint8_t *p)
{
	uint64_t x = 0;
	for (int i = 0; i < 8; i++)
		x = x << 8 | p[i];
	return x;
}

static void put_be64(uint8_t *p, uint64_t x)
{
	for (int i = 7; i >= 0; i--, x >>= 8)
		p[i] = (uint8_t)x;
}

static int load_inode(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen) NO_TSA
{
	struct lctx *c = arg;
	uint64_t ino = klen == 8 ? be64(key) : 0;
	int r;

	c->n++;
	if (!ino)
		return -EBADMSG;
	r = st_ns_parse_one(c->s, ino, val, vlen);
	if (r < 0)
		bz_err("store.db: inode tree: inode %llu: %s", (unsigned long long)ino, strerror(-r));
	return r;
}

/* varint as rec_varint_get reads it; -EBADMSG when malformed */
static int get_var(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
	int n = rec_varint_get(*p, (size_t)(end - *p), ret);
	if (n <= 0)
		return -EBADMSG;
	*p += n;
	return 0;
}

static int load_dent(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	struct lctx *c = arg;
	const uint8_t *p = val, *end = val + vlen;
	struct dload d = {0};

	c->n++;
	if (klen < 9 || klen > 8 + NS_NAME_MAX)
		return -EBADMSG;
	d.dir = be64(key);
	d.len = (uint32_t)(klen - 8);
	if (get_var(&p, end, &d.ino) < 0 || get_var(&p, end, &d.cookie) < 0 || p != end || !d.ino ||
	    d.cookie < NS_COOKIE_FIRST || d.cookie == UINT64_MAX)
		return -EBADMSG;
	if (c->nv == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		struct dload *v = realloc(c->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	if (c->names_len + d.len > c->names_cap) {
		size_t cap = c->names_cap ? c->names_cap * 2 : 64 * 1024;
		while (c->names_len + d.len > cap)
			cap *= 2;
		char *nm = realloc(c->names, cap);
		if (!nm)
			return -ENOMEM;
		c->names = nm;
		c->names_cap = cap;
	}
	d.off = c->names_len;
	memcpy(c->names + d.off, key + 8, d.len);
	c->names_len += d.len;
	c->v[c->nv++] = d;
	return 0;
}

/* A pack tree key and value: the page inside [2, H) and its live bytes,
 * in (0, page payload]. */
static int pack_kv(const struct store *s, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
		   uint64_t *ret_pg, uint32_t *ret_live) NO_TSA
{
	const uint8_t *p = val, *end = val + vlen;
	uint64_t pg = klen == 8 ? be64(key) : 0, live = 0;

	if (pg < 2 || pg >= s->hwm || get_var(&p, end, &live) < 0 || p != end || live == 0 || live > PAGER_PAYLOAD)
		return -EBADMSG;
	*ret_pg = pg;
	*ret_live = (uint32_t)live;
	return 0;
}

/* One pack tree key of a whole load (formats 3 and 4), pages increasing
 * (the tree's order). */
static int load_pack(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen) NO_TSA
{
	struct lctx *c = arg;
	uint64_t pg = 0;
	uint32_t live = 0;
	int r = pack_kv(c->s, key, klen, val, vlen, &pg, &live);

	c->n++;
	return r < 0 ? r : st_pack_live_add(c->s, pg, live);
}

/* Every key of t through fn; the keys counted must be the superblock's. */
static int load_tree(struct btree *t, btree_iter_fn fn, struct lctx *c, uint64_t count) NO_TSA
{
	c->n = 0;
	int r = btree_iter(t, NULL, 0, fn, c);
	return r == 0 && c->n != count ? -EBADMSG : r;
}

static int dload_cmp(const void *a, const void *b)
{
	const struct dload *x = a, *y = b;
	if (x->dir != y->dir)
		return x->dir < y->dir ? -1 : 1;
	return x->cookie < y->cookie ? -1 : x->cookie > y->cookie;
}

int st_nst_load(struct store *s, const struct store_sb *sb) NO_TSA
{
	struct lctx c = {.s = s};
	int r;

	/* what the trees hold is clean: no mark per loaded inode and entry
	 * (every mark is a no-op while `all` is set; cleared at the end) */
	ns_dirty_set_all(s->ns);
	st_reloc_seed(s);
	/* The tables sized once from the superblock's count, an optimization
	 * only: the count is untrusted (a wrong one fails load_tree below),
	 * so it is bounded by what the file's pages could hold and a failed
	 * reservation is ignored (the inserts grow the tables as needed). */
	{
		size_t want = (size_t)BZ_MIN(sb->ino_count, s->hwm * 256);
		(void)ns_reserve(s->ns, want);
		(void)st_ftab_reserve(&s->files, want);
	}
	r = load_tree(s->itree, load_inode, &c, sb->ino_count);
	if (r == 0)
		r = load_tree(s->dtree, load_dent, &c, sb->dent_count);
	/* the pack table's marks likewise (pack_dirty is a no-op under
	 * kdirty_all; cleared below) */
	s->kdirty_all = true;
	if (r == 0 && sb->format >= SB_VERSION_4)
		r = load_tree(s->ptree, load_pack, &c, sb->pack_count);
	if (r < 0)
		goto out;
	if (c.nv) /* qsort's base must not be NULL (an empty entry tree) */
		qsort(c.v, c.nv, sizeof(*c.v), dload_cmp);
	for (size_t i = 0; i < c.nv; i++) {
		const struct dload *d = &c.v[i];
		if (i == 0 || d->dir != c.v[i - 1].dir) { /* a directory's entries at once */
			size_t k = i;
			while (k < c.nv && c.v[k].dir == d->dir)
				k++;
			(void)ns_reserve_entries(s->ns, d->dir, k - i); /* as above */
		}
		r = ns_load_dirent_cookie(s->ns, d->dir, c.names + d->off, d->len, d->ino, d->cookie);
		if (r < 0) {
			bz_err("store.db: entry tree: entry %.*s in %llu: %s", (int)d->len, c.names + d->off,
			       (unsigned long long)d->dir, strerror(-r));
			r = r == -ENOMEM ? r : -EBADMSG;
			goto out;
		}
	}
	ns_dirty_clear(s->ns); /* loaded as the trees hold it */
	st_pack_dirty_clear(s);
	if (sb->format < SB_VERSION_4)
		s->kdirty_all = true; /* 'K' came from the stream: the first checkpoint writes the tree */
out:
	free(c.names);
	free(c.v);
	if (r == -EBADMSG || r == -EUCLEAN || r == -EIO || r == -EINVAL || r == -EEXIST || r == -ENOENT ||
	    r == -ENOTDIR) {
		bz_err("store.db: the namespace trees of checkpoint %llu are corrupt", (unsigned long long)sb->gen);
		r = -EUCLEAN;
	}
	return r;
}

/* ---- demand loads (format 5) ----
 *
 * s->ns is a namespace backed by the trees (ns.h ns_new_backed_by): open
 * reads the superblock's counts and nothing else of the namespace. An
 * inode is read from the inode tree (btree_get, then the same parser as a
 * whole load) the first time anything asks for it; a directory's entries
 * from the entry tree (its keys are contiguous: one range scan). Sound for
 * the same reason as the live view's (ns.c "BACKED NAMESPACE"): s->ns is
 * the trees' only writer and every op loads what it touches before it
 * changes it, so what s->ns has not loaded the trees hold as it would;
 * inodes freed since the last checkpoint are still in the inode tree and
 * are in the namespace's gone set. Loads mark nothing dirty.
 *
 * BACKGROUND LOAD. st_ns_load_step goes on through the trees in key order
 * from where it stopped (ld_phase, ld_next: pack pages, inodes, then
 * directories' entries, a directory at once), loading what is not loaded
 * yet (a pack page changed since the checkpoint is known already), and
 * detaches s->ns when everything is: relocation's candidates and cleaning
 * see every file then (both are correct on a part: store_reloc.c,
 * st_pack_clean). The commit thread calls it when idle (pipe_commit.c);
 * tools and whole rebuilds call st_ns_load_all. Between steps the trees
 * change only in keys s->ns has loaded, so resuming at a key is exact.
 *
 * LOCKS. Loads change s->ns, s->files and the relocation heap, and read
 * the trees, which are not thread-safe: they run under s->lock exclusive
 * only. A reader holding s->lock shared that finds an inode not loaded
 * (ns_state -EAGAIN) lets go and calls st_ns_need. */

static int load_err(struct store *s, const char *what, uint64_t ino, int r) REQUIRES(store_cap)
{
	if (r == -ENOMEM || r == -ENOENT)
		return r;
	bz_err("store.db: namespace %s %llu could not be loaded: %s", what, (unsigned long long)ino, strerror(-r));
	r = r == -EIO ? r : -EUCLEAN;
	(void)st_set_error(s, r, "namespace load");
	return r;
}

/* One inode's value, parsed into s->ns (which has it loading). */
static int tree_inode(void *arg, struct ns *ns, uint64_t ino) REQUIRES(store_cap)
{
	struct store *s = arg;
	uint8_t key[8], small[2048], *val = small;
	size_t vlen = 0;
	int r;

	(void)ns; /* == s->ns */
	put_be64(key, ino);
	r = btree_get(s->itree, key, 8, small, sizeof(small), &vlen);
	if (r == -ERANGE) {
		val = malloc(vlen);
		r = val ? btree_get(s->itree, key, 8, val, vlen, &vlen) : -ENOMEM;
	}
	if (r == 0)
		r = st_ns_parse_one(s, ino, val, vlen);
	if (val != small)
		free(val);
	return r < 0 ? load_err(s, "inode", ino, r) : 0;
}

/* A directory's entries being gathered (lctx.v, lctx.names: load_dent). */
static int gather_dent(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	struct lctx *c = arg;
	if (klen < 8 || be64(key) != c->dir)
		return 1; /* past the directory's keys */
	return load_dent(arg, key, klen, val, vlen);
}

/* The gathered entries of directory dir into s->ns, in cookie order. */
static int put_dir(struct store *s, struct lctx *c, uint64_t dir) REQUIRES(store_cap)
{
	struct ns_dload *v = NULL;
	int r = -ENOMEM;

	if (c->nv) {
		qsort(c->v, c->nv, sizeof(*c->v), dload_cmp);
		v = malloc(c->nv * sizeof(*v));
		if (!v)
			goto out;
	}
	for (size_t i = 0; i < c->nv; i++)
		v[i] = (struct ns_dload){.name = c->names + c->v[i].off, .len = c->v[i].len, .ino = c->v[i].ino,
					 .cookie = c->v[i].cookie};
	r = ns_load_dir(s->ns, dir, v, c->nv);
out:
	free(v);
	c->nv = c->names_len = 0;
	return r;
}

static int tree_dir(void *arg, struct ns *ns, uint64_t dir) REQUIRES(store_cap)
{
	struct store *s = arg;
	struct lctx c = {.s = s, .dir = dir};
	uint8_t key[8];
	int r;

	(void)ns;
	put_be64(key, dir);
	r = btree_iter(s->dtree, key, 8, gather_dent, &c);
	if (r >= 0)
		r = put_dir(s, &c, dir);
	free(c.names);
	free(c.v);
	return r < 0 ? load_err(s, "directory", dir, r) : 0;
}

static int tree_has(void *arg, uint64_t ino) REQUIRES(store_cap)
{
	struct store *s = arg;
	uint8_t key[8];
	size_t vlen = 0;
	int r;

	put_be64(key, ino);
	r = btree_get(s->itree, key, 8, NULL, 0, &vlen);
	return r == 0 || r == -ERANGE ? 1 : r == -ENOENT ? 0 : r;
}

static int tree_rest(void *arg, struct ns *ns) REQUIRES(store_cap)
{
	(void)ns;
	return st_ns_load_all(arg);
}

static const struct ns_backing tree_backing = {
	.inode = tree_inode, .dir = tree_dir, .rest = tree_rest, .has = tree_has,
};

int st_nst_attach(struct store *s, const struct store_sb *sb) NO_TSA
{
	struct ns *ns = NULL;
	int r;

	r = ns_new_backed_by(&tree_backing, s, sb->ino_count, sb->next_ino, &ns);
	if (r == -EINVAL)
		r = -EUCLEAN; /* counts the superblock cannot have */
	if (r < 0)
		goto out;
	ns_free(s->ns);
	s->ns = ns;
	if (st_mutant() == STORE_MUTANT_NO_PRELOAD)
		ns_test_no_preload(ns);
	/* the pack table loads in the background too (first), a page's count
	 * on demand before it changes (st_pack_fetch) */
	s->pk_done = sb->pack_count == 0;
	s->ld_phase = s->pk_done ? LD_INODES : LD_PACKS;
	s->ld_next = 0;
	__atomic_store_n(&s->ld_done, false, __ATOMIC_RELAXED);
	st_reloc_seed(s);
	if (r == 0) {
		struct ns_attr a;
		r = ns_getattr(s->ns, NS_ROOT_INO, &a); /* the root now: every lookup starts there */
		if (r == 0 && !S_ISDIR(a.mode))
			r = -EBADMSG;
	}
	/* the trees' end paths, which every checkpoint reads (st_nst_update:
	 * btree_ends_max): O(depth) pages now rather than cold in the first
	 * checkpoint; damage there is that checkpoint's to report */
	struct btree *trees[3] = {s->itree, s->dtree, s->ptree};
	for (int i = 0; i < 3 && r == 0; i++) {
		uint64_t top = 0;
		(void)btree_ends_max(trees[i], &top);
	}
	if (r == 0 && s->pk_done && ns_detach(s->ns) == 0) { /* nothing else to load (a new store) */
		s->ld_phase = LD_DONE;
		__atomic_store_n(&s->ld_done, true, __ATOMIC_RELAXED);
	}
out:
	if (r == -EBADMSG || r == -EIO || r == -EINVAL || r == -EEXIST || r == -ENOENT) {
		bz_err("store.db: the namespace trees of checkpoint %llu are corrupt", (unsigned long long)sb->gen);
		r = -EUCLEAN;
	}
	return r;
}

int st_pack_tree_get(struct store *s, uint64_t pg) NO_TSA
{
	uint8_t key[8], val[16];
	size_t vlen = 0;
	uint64_t kpg = 0;
	uint32_t live = 0;
	int r;

	put_be64(key, pg);
	r = btree_get(s->ptree, key, 8, val, sizeof(val), &vlen);
	if (r == -ENOENT)
		return 0; /* no live bytes at the checkpoint: a page new since, or none */
	if (r == 0)
		r = pack_kv(s, key, 8, val, vlen, &kpg, &live);
	if (r == 0)
		r = st_pack_put_loaded(s, pg, live);
	return r < 0 ? load_err(s, "pack page", pg, r == -ERANGE ? -EBADMSG : r) : 0;
}

struct stepctx {
	struct store *s;
	size_t budget, done;
	bool yield; /* stop early for a thread waiting to load */
	uint64_t stop_at; /* the key (inode or directory) to resume at */
	struct lctx c;    /* the directory being gathered */
	uint64_t cur;     /* its number, 0 = none */
	int err;
};

static int step_pack(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen) NO_TSA
{
	struct stepctx *x = arg;
	uint64_t pg = 0;
	uint32_t live = 0;
	int r = pack_kv(x->s, key, klen, val, vlen, &pg, &live);

	if (r < 0)
		return x->err = load_err(x->s, "pack page", klen == 8 ? be64(key) : 0, r);
	if (x->s->kdirty_all)
		return x->err = -ENOMEM; /* the marks overflowed: which pages changed is not known */
	if (x->done >= x->budget || (x->yield && store_ns_load_waiting(x->s))) {
		x->stop_at = pg;
		return 1;
	}
	x->done++;
	if (st_pack_known(x->s, pg))
		return 0; /* loaded already, or changed since the checkpoint */
	r = st_pack_put_loaded(x->s, pg, live);
	return r < 0 ? (x->err = r) : 0;
}

static int step_inode(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen) NO_TSA
{
	struct stepctx *x = arg;
	uint64_t ino = klen == 8 ? be64(key) : 0;
	int r;

	if (!ino)
		return -EBADMSG;
	if (x->done >= x->budget || (x->yield && store_ns_load_waiting(x->s))) {
		x->stop_at = ino;
		return 1;
	}
	x->done++;
	r = ns_state(x->s->ns, ino);
	if (r != -EAGAIN)
		return 0; /* loaded already, or freed since */
	ns_loading(x->s->ns, true);
	r = st_ns_parse_one(x->s, ino, val, vlen);
	ns_loading(x->s->ns, false);
	if (r < 0) {
		x->err = load_err(x->s, "inode", ino, r);
		return x->err;
	}
	return 0;
}

/* The gathered directory, if it is to be loaded. */
static int step_flush(struct stepctx *x) NO_TSA
{
	int r = 0;

	uint64_t dir = x->cur;

	if (dir && ns_dir_state(x->s->ns, dir) == -EAGAIN)
		r = put_dir(x->s, &x->c, dir);
	x->c.nv = x->c.names_len = 0;
	x->cur = 0;
	return r < 0 ? load_err(x->s, "directory", dir, r) : 0;
}

static int step_dent(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen) NO_TSA
{
	struct stepctx *x = arg;
	uint64_t dir = klen >= 8 ? be64(key) : 0;
	int r;

	if (!dir)
		return -EBADMSG;
	if (dir != x->cur) {
		r = step_flush(x);
		if (r < 0)
			return x->err = r;
		if (x->done >= x->budget || (x->yield && store_ns_load_waiting(x->s))) {
			x->stop_at = dir;
			return 1;
		}
		x->cur = dir;
	}
	x->done++;
	if (ns_dir_state(x->s->ns, dir) != -EAGAIN)
		return 0; /* loaded already (or gone): its keys are skipped */
	return load_dent(&x->c, key, klen, val, vlen);
}

/* One step of a phase that loads key by key (pack pages, inodes): from
 * key on; at the tree's end the next phase starts at its first key. 1
 * (more to do) or an error. */
static int step_tree(struct store *s, struct btree *t, btree_iter_fn fn, struct stepctx *x, const uint8_t *key,
		     int next_phase) REQUIRES(store_cap)
{
	int r = btree_iter(t, key, 8, fn, x);

	if (r == 0) {
		s->ld_phase = next_phase;
		s->ld_next = 0;
		r = 1;
	} else if (r == 1) {
		s->ld_next = x->stop_at;
	}
	return r;
}

static int load_step(struct store *s, size_t budget, bool yield) REQUIRES(store_cap)
{
	struct stepctx x = {.s = s, .budget = budget ? budget : 1, .yield = yield, .c = {.s = s}};
	uint8_t key[8];
	int r = 0;

	if (s->ld_phase == LD_DONE)
		goto done;
	put_be64(key, s->ld_next);
	if (s->ld_phase == LD_PACKS) {
		r = step_tree(s, s->ptree, step_pack, &x, key, LD_INODES);
		if (s->ld_phase == LD_INODES)
			s->pk_done = true;
		goto out;
	}
	if (!ns_is_backed(s->ns))
		goto done;
	if (s->ld_phase == LD_INODES) {
		r = step_tree(s, s->itree, step_inode, &x, key, LD_ENTRIES);
		goto out;
	}
	r = btree_iter(s->dtree, key, 8, step_dent, &x);
	if (r == 0)
		r = step_flush(&x);
	if (r == 1) {
		s->ld_next = x.stop_at;
		goto out;
	}
	if (r < 0)
		goto out;
	r = ns_detach(s->ns);
	if (r == -EAGAIN) {
		bz_err("store.db: the namespace trees hold fewer inodes or entries than the superblock counts");
		r = -EUCLEAN;
		(void)st_set_error(s, r, "namespace load");
		goto out;
	}
done:
	s->ld_phase = LD_DONE;
	__atomic_store_n(&s->ld_done, true, __ATOMIC_RELAXED);
	r = 0;
out:
	free(x.c.names);
	free(x.c.v);
	if (r < 0 && x.err)
		r = x.err;
	else if (r < 0 && r != -ENOMEM)
		r = load_err(s, "tree at", s->ld_next, r);
	return r;
}

int st_ns_load_step(struct store *s, size_t budget) REQUIRES(store_cap) { return load_step(s, budget, false); }

int st_ns_load_all(struct store *s) REQUIRES(store_cap)
{
	int r;
	do
		r = load_step(s, 1u << 16, false);
	while (r == 1);
	return r;
}

/* About 1 ms of loading per step (a few µs an inode or entry), so that a
 * batch waiting for the commit thread waits that long at most. */
#define LOAD_STEP 512

int store_ns_load_some(struct store *s, unsigned keys)
{
	int r = 0;

	if (__atomic_load_n(&s->ld_done, __ATOMIC_RELAXED))
		return 0;
	if (store_ns_load_waiting(s))
		return 1; /* after it */
	bz_cap_wrlock(&s->lock, &store_cap);
	r = load_step(s, keys, true);
	bz_cap_wrunlock(&s->lock, &store_cap);
	return r;
}

int store_ns_load_more(struct store *s) { return store_ns_load_some(s, LOAD_STEP); }

bool store_ns_loaded(const struct store *s) { return __atomic_load_n(&s->ld_done, __ATOMIC_RELAXED); }
bool store_ns_load_waiting(const struct store *s) { return __atomic_load_n(&s->ld_waiters, __ATOMIC_RELAXED) != 0; }

void st_ns_wrlock(struct store *s) ACQUIRE(store_cap) NO_TSA
{
	__atomic_add_fetch(&s->ld_waiters, 1, __ATOMIC_RELAXED);
	bz_cap_wrlock(&s->lock, &store_cap);
	__atomic_sub_fetch(&s->ld_waiters, 1, __ATOMIC_RELAXED);
}

int st_ns_ensure(struct store *s, uint64_t ino) EXCLUDES(store_cap)
{
	int r;

	if (__atomic_load_n(&s->ld_done, __ATOMIC_RELAXED))
		return 0;
	bz_cap_rdlock(&s->lock, &store_cap);
	r = ns_state(s->ns, ino);
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (r != -EAGAIN)
		return 0;
	r = st_ns_need(s, ino, false);
	return r == -ENOENT ? 0 : r;
}

int st_ns_getattr(struct store *s, uint64_t ino, struct ns_attr *ret_attr) REQUIRES_SHARED(store_cap)
{
	/* never a load under a shared lock: st_ns_ensure came first, and a
	 * loaded inode stays loaded (checked only while loads can happen:
	 * one table probe per read is enough once everything is loaded) */
	if (!store_ns_loaded(s) && NEVER(ns_state(s->ns, ino) == -EAGAIN))
		return -EIO;
	return ns_getattr(s->ns, ino, ret_attr);
}

int st_ns_need(struct store *s, uint64_t ino, bool entries) EXCLUDES(store_cap)
{
	int r;

	st_ns_wrlock(s);
	r = ns_fetch(s->ns, ino, entries);
	bz_cap_wrunlock(&s->lock, &store_cap);
	return r;
}

/* ---- update (checkpoint) ---- */

struct uctx {
	struct store *s;
	int skip;  /* mutant forget_dirty: inodes still to leave out */
	int kskip; /* mutant forget_pack: pack pages still to leave out */
};

static int put_inode(void *arg, uint64_t ino) REQUIRES_SHARED(store_cap)
{
	struct uctx *u = arg;
	struct store *s = u->s;
	uint8_t key[8], *val = NULL;
	size_t vlen = 0;
	int r;

	put_be64(key, ino);
	if (u->skip && ino != NS_ROOT_INO) {
		u->skip--;
		return 0;
	}
	if (NEVER(ns_state(s->ns, ino) == -EAGAIN))
		return 0; /* not loaded, so unchanged: its key stays as it is */
	r = st_ns_ser_one(s, ino, &val, &vlen);
	if (r == -ENOENT) {
		r = btree_del(s->itree, key, 8);
		return r == -ENOENT ? 0 : r;
	}
	if (r == 0)
		r = btree_put(s->itree, key, 8, val, vlen);
	free(val);
	return r;
}

static int put_dent(void *arg, uint64_t dir, const char *name, size_t len) REQUIRES_SHARED(store_cap)
{
	struct uctx *u = arg;
	struct store *s = u->s;
	uint8_t key[8 + NS_NAME_MAX], val[20];
	uint64_t ino = 0, cookie = 0;
	size_t n = 0;
	int r;

	if (len == 0 || len > NS_NAME_MAX)
		return -EINVAL;
	put_be64(key, dir);
	memcpy(key + 8, name, len);
	if (NEVER(ns_dir_state(s->ns, dir) == -EAGAIN))
		return 0; /* entries not loaded, so unchanged */
	r = ns_dirent_get(s->ns, dir, name, len, &ino, &cookie);
	if (r < 0) {
		r = btree_del(s->dtree, key, 8 + len);
		return r == -ENOENT ? 0 : r;
	}
	n += (size_t)rec_varint_put(val + n, sizeof(val) - n, ino);
	n += (size_t)rec_varint_put(val + n, sizeof(val) - n, cookie);
	return btree_put(s->dtree, key, 8 + len, val, n);
}

/* Pack page pg's key takes its current live bytes (none: deleted). */
static int put_pack(void *arg, uint64_t pg) REQUIRES_SHARED(store_cap)
{
	struct uctx *u = arg;
	struct store *s = u->s;
	uint8_t key[8], val[10];
	uint32_t live = st_pack_live_get(s, pg);
	int r;

	if (u->kskip) {
		u->kskip--;
		return 0;
	}
	put_be64(key, pg);
	if (!live) {
		r = btree_del(s->ptree, key, 8);
		return r == -ENOENT ? 0 : r;
	}
	return btree_put(s->ptree, key, 8, val, (size_t)rec_varint_put(val, sizeof(val), live));
}

struct wctx {
	struct uctx *u;
	int r;
};

static int all_inode(void *arg, const struct ns_attr *a, const char *sl, size_t sl_len) NO_TSA
{
	struct wctx *w = arg;
	(void)sl;
	(void)sl_len;
	w->r = put_inode(w->u, a->ino);
	return w->r;
}

static int all_dent(void *arg, uint64_t dir, const char *name, size_t len, uint64_t ino) NO_TSA
{
	struct wctx *w = arg;
	(void)ino;
	w->r = put_dent(w->u, dir, name, len);
	return w->r;
}

static void release_cb(void *arg, uint64_t pgno, uint8_t type)
{
	(void)type;
	io_free(arg, pgno);
}

/* The dirty-all case: new trees from the whole namespace; the old trees'
 * pages are released. */
static int rebuild(struct store *s, struct uctx *u) REQUIRES_SHARED(store_cap)
{
	struct btree_io io;
	struct btree *it = NULL, *dt = NULL;
	struct ns_visit v = {.inode = all_inode, .dirent = all_dent};
	struct wctx w = {.u = u};
	int r;

	st_nst_io(s, &io);
	r = btree_verify(&io, s->sb.ino_root, s->sb.ino_count, release_cb, s);
	if (r == 0)
		r = btree_verify(&io, s->sb.dent_root, s->sb.dent_count, release_cb, s);
	if (r == 0)
		r = btree_open(&io, 0, 0, &it);
	if (r == 0)
		r = btree_open(&io, 0, 0, &dt);
	if (r < 0)
		goto out;
	btree_close(s->itree);
	btree_close(s->dtree);
	s->itree = it;
	s->dtree = dt;
	it = dt = NULL;
	r = ns_walk(s->ns, &v, &w);
	if (r == 0)
		r = w.r;
out:
	btree_close(it);
	btree_close(dt);
	return r;
}

/* The space the next checkpoint's flush can need, in pages (store_space):
 * each dirty key rewrites at most its path (depth pages) plus a split
 * sibling per level, and an inode's value may need an overflow chain of up
 * to its size (the 'F' record of 100 tail entries: one page; attributes
 * beyond that are counted by the stream estimate of the ops that set
 * them). A rebuild writes every key again. [commit] */
void st_nst_estimate(struct store *s) REQUIRES_SHARED(store_cap)
{
	struct btree_stats a = {0}, b = {0};
	size_t nd = 0, ni = ns_dirty_counts(s->ns, &nd);
	uint64_t est;

	if (s->itree)
		btree_stats(s->itree, &a);
	if (s->dtree)
		btree_stats(s->dtree, &b);
	if (ns_dirty_all(s->ns) || s->sb.format < SB_VERSION_3)
		est = ns_count(s->ns) * 2 + 64; /* values <= 2 KiB: 2 a page or better; entries likewise */
	else
		est = ni * (2ull * a.depth + 4) + nd * (2ull * b.depth + 2);
	/* pack keys: 8 + 1 + <= 2 bytes and their slot, 100 a page or better */
	if (s->kdirty_all || s->sb.format < SB_VERSION_4)
		est += s->packs.n / 50 + 16;
	else if (s->kdirty.n) {
		struct btree_stats c = {0};
		if (s->ptree)
			btree_stats(s->ptree, &c);
		est += s->kdirty.n * (2ull * c.depth + 2) + 2;
	}
	st_set_u64(&s->tree_est, est);
}

/* The pack tree written whole: the durable tree's pages are released, a
 * new tree takes every pack page with live bytes. [commit] */
static int pack_rebuild(struct store *s, struct uctx *u) REQUIRES_SHARED(store_cap)
{
	struct btree_io io;
	struct btree *pt = NULL;
	int r = 0;

	st_nst_io(s, &io);
	if (s->sb.format >= SB_VERSION_4)
		r = btree_verify(&io, s->sb.pack_root, s->sb.pack_count, release_cb, s);
	if (r == 0)
		r = btree_open(&io, 0, 0, &pt);
	if (r < 0)
		goto out;
	btree_close(s->ptree);
	s->ptree = pt;
	pt = NULL;
	u->kskip = 0;
	for (size_t i = 0; i < s->packs.cap && r == 0; i++)
		if (s->packs.pg[i])
			r = put_pack(u, s->packs.pg[i]);
out:
	btree_close(pt);
	return r;
}

/* ---- moving the trees down ---- */

struct kcap {
	uint8_t key[BTREE_KEY_MAX];
	size_t klen;
	bool first_only;
};

static int key_cb(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	struct kcap *k = arg;
	(void)val;
	(void)vlen;
	memcpy(k->key, key, klen);
	k->klen = klen;
	return k->first_only;
}

/* Rewrites the path to key (a put of its own value): the flush writes
 * that leaf and its ancestors to first-fit pages. */
static int touch_key(struct btree *t, const uint8_t *key, size_t klen)
{
	size_t vlen = 0;
	uint8_t *v = NULL;
	int r = btree_get(t, key, klen, NULL, 0, &vlen);

	if (r < 0 && r != -ERANGE)
		goto out;
	r = -ENOMEM;
	v = malloc(vlen ? vlen : 1);
	if (!v)
		goto out;
	r = btree_get(t, key, klen, v, vlen, &vlen);
	if (r == 0)
		r = btree_put(t, key, klen, v, vlen);
out:
	free(v);
	return r;
}

/* The leftmost and the rightmost path of the tree are rewritten (new
 * inodes, hence the pages written last, sort last): O(depth). */
static int touch_ends(struct btree *t)
{
	struct kcap k = {.first_only = true};
	int r;

	if (!btree_count(t))
		return 0;
	r = btree_iter(t, NULL, 0, key_cb, &k); /* 1: stopped at the first key */
	if (r >= 0)
		r = k.klen ? touch_key(t, k.key, k.klen) : 0;
	if (r == 0) {
		r = btree_last(t, k.key, &k.klen);
		if (r == 0)
			r = touch_key(t, k.key, k.klen);
		else if (r == -ENOENT)
			r = 0;
	}
	return r;
}

int st_nst_update(struct store *s, uint64_t lsn, struct store_sb *sb) REQUIRES_SHARED(store_cap)
{
	struct uctx u = {.s = s, .skip = st_mutant() == STORE_MUTANT_FORGET_DIRTY,
			 .kskip = st_mutant() == STORE_MUTANT_FORGET_PACK};
	int r;

	if (ns_dirty_all(s->ns) || s->sb.format < SB_VERSION_3)
		r = rebuild(s, &u);
	else {
		r = ns_dirty_each_ino(s->ns, put_inode, &u);
		if (r == 0)
			r = ns_dirty_each_dirent(s->ns, put_dent, &u);
	}
	if (r == 0 && (s->kdirty_all || s->sb.format < SB_VERSION_4))
		r = pack_rebuild(s, &u);
	else if (r == 0)
		r = st_pack_dirty_each(s, put_pack, &u);
	/* End paths above every free page below the tail this checkpoint gives
	 * back (free or pending up to H, §7): the tree pins the end of
	 * store.db with free space below, so its two end paths (new inodes
	 * sort last: the pages written last) move down by first fit and stop
	 * pinning it (§7 giving space back). End paths with free space above
	 * them pin nothing: rewriting them then would only trade places with
	 * the pages the last checkpoint freed (first fit takes the lowest), at
	 * every checkpoint. Each move goes strictly lower, so it stops. */
	uint64_t cut = fm_union_tail(&s->free, &s->pending, s->hwm), end = UINT64_MAX;
	for (size_t i = s->free.n; i-- > 0;)
		if (s->free.v[i].start < cut) {
			end = BZ_MIN(s->free.v[i].start + s->free.v[i].len, cut);
			break;
		}
	struct btree *trees[3] = {s->itree, s->dtree, s->ptree};
	for (int i = 0; i < 3 && r == 0; i++) {
		uint64_t top = 0;
		r = btree_ends_max(trees[i], &top);
		if (r == 0 && top >= end)
			r = touch_ends(trees[i]);
	}
	if (r == 0)
		r = btree_flush(s->itree, lsn, &sb->ino_root);
	if (r == 0)
		r = btree_flush(s->dtree, lsn, &sb->dent_root);
	if (r == 0)
		r = btree_flush(s->ptree, lsn, &sb->pack_root);
	if (r == 0 && s->nst_err)
		r = s->nst_err;
	sb->ino_count = btree_count(s->itree);
	sb->dent_count = btree_count(s->dtree);
	sb->pack_count = btree_count(s->ptree);
	sb->format = SB_VERSION;
	return r > 0 ? -EIO : r; /* a callback's stop value is never success here */
}
