/* vfs_mem.c — the memory backend and the recording (crash-simulating) backend.
 *
 * Both are one implementation: a flat namespace of directory entries
 * (name -> node) over nodes (inodes) whose contents live in growable buffers.
 * Nodes are separate from names so that an open file survives rename and
 * unlink, as on POSIX. Reads past EOF are short; writes past EOF zero-fill.
 *
 * The recording backend (rec == true) keeps in addition:
 *   - per node a durable data image (dur): what a power cut leaves of the
 *     node's contents;
 *   - a durable namespace (dents_dur): the names a power cut leaves;
 *   - a global ordered list of pending (not yet durable) operations.
 * Durability rules (the crash model, see docs/TESTING.md ("The crash model")):
 *   - pwrite / ftruncate / fallocate of a node append a WRITE / TRUNCATE op;
 *     fdatasync or fsync of the node applies all of that node's pending data
 *     ops to its durable image, in order, and drops them from the list;
 *   - creation (open with VFS_O_CREAT of a missing name), rename and unlink
 *     append CREATE / RENAME / UNLINK ops; vfs_sync_dir applies all of them to
 *     the durable namespace and drops them.
 *   - strict model: a created file whose creation was never dir-synced does
 *     not exist after a crash, even if it was fsynced.
 * vfs_rec_crash materializes a crash state as an independent memory backend:
 * durable namespace with durable images, then the kept pending ops in order
 * (an op on a node absent from the crash namespace is skipped), one write
 * optionally torn at a 512-byte sector boundary. The cost is one copy of the
 * durable images plus one pass over the pending ops.
 *
 * Locking: one bz_rwlock per backend guards everything (namespace, nodes,
 * pending ops). pread and the crash/clone readers take it shared, every
 * mutation exclusive. Node contents are reached only through mv->nodes
 * (GUARDED_BY + PT_GUARDED_BY lock); a file handle holds a node id, never a
 * node pointer, so every access goes through the guarded table. Handles'
 * own fields (node id, writable) are immutable after open.
 *
 * Capacity: vfs_space reports 1 TiB less the bytes of all nodes, unless a
 * test set a smaller capacity (vfs_mem_set_capacity, a small disk): then
 * growing a file past it fails with -ENOSPC before anything changes. Crash
 * images and clones start without one.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "tsa.h"
#include "vfs_int.h"

/* The backend lock, as a capability token (tsa.h explains why C needs
 * one): every guarded field and REQUIRES names mem_cap, and only the
 * wrappers below take the real rwlock. Two backends are locked at once only
 * when a crash image or a clone is built into a fresh backend that no other
 * thread can see yet; those two functions are NO_TSA and say so. */
BZ_CAP_DECLARE(mem_cap);

#define MEM_CAPACITY (1ull << 40) /* 1 TiB reported by vfs_space */
#define SECTOR 512u

struct mem_buf {
	uint8_t *p;
	uint64_t size, cap;
};

/* A node (inode). Reached only through mem_vfs.nodes, under mem_vfs.lock. */
struct mem_node {
	struct mem_buf cur;   /* current contents */
	struct mem_buf dur;   /* recording only: durable image */
	char *name;           /* last name it had (for op descriptions) */
	unsigned refs;        /* dirents (current + durable) + open handles + pending ops */
	unsigned npend_data;  /* recording: pending WRITE/TRUNCATE ops of this node */
	const struct vfs_file *locker; /* holder of vfs_lock, or NULL */
	unsigned shared;               /* holders of vfs_lock_shared */
};

struct mem_dirent {
	char *name;
	uint32_t node;
};

struct mem_dir {
	struct mem_dirent *e;
	size_t n, cap;
};

struct rec_op {
	enum vfs_rec_kind kind;
	uint32_t node;
	char *name, *name2;
	uint64_t off, len;
	uint8_t *data; /* WRITE: len bytes */
};

struct mem_vfs {
	struct vfs base;
	bool rec; /* immutable */
	bz_rwlock lock;
	struct mem_node **nodes GUARDED_BY(mem_cap) PT_GUARDED_BY(mem_cap); /* by id; NULL = free slot */
	uint32_t nnodes GUARDED_BY(mem_cap);
	struct mem_dir dents GUARDED_BY(mem_cap);     /* current namespace */
	struct mem_dir dents_dur GUARDED_BY(mem_cap); /* recording: durable namespace */
	struct rec_op *pend GUARDED_BY(mem_cap);      /* recording: pending ops, oldest first */
	uint64_t capacity GUARDED_BY(mem_cap);        /* vfs_mem_set_capacity; 0 = MEM_CAPACITY, not enforced */
	size_t npend GUARDED_BY(mem_cap), cappend GUARDED_BY(mem_cap);
};

static void mv_rdlock(struct mem_vfs *mv) ACQUIRE_SHARED(mem_cap) NO_TSA { bz_rwlock_rdlock(&mv->lock); }
static void mv_rdunlock(struct mem_vfs *mv) RELEASE_SHARED(mem_cap) NO_TSA { bz_rwlock_rdunlock(&mv->lock); }
static void mv_wrlock(struct mem_vfs *mv) ACQUIRE(mem_cap) NO_TSA { bz_rwlock_wrlock(&mv->lock); }
static void mv_wrunlock(struct mem_vfs *mv) RELEASE(mem_cap) NO_TSA { bz_rwlock_wrunlock(&mv->lock); }


struct mem_file {
	struct vfs_file base;
	uint32_t node;  /* immutable */
	bool writable;  /* immutable */
	bool shared;    /* holds a shared lock on its node (under mem_vfs.lock) */
};

static const struct vfs_ops mem_ops;

static struct mem_vfs *to_mv(struct vfs *v) { return (struct mem_vfs *)v; }
static struct mem_file *to_mf(struct vfs_file *f) { return (struct mem_file *)f; }

/* ---- buffers ---- */

static int buf_reserve(struct mem_buf *b, uint64_t need)
{
	uint64_t cap;
	uint8_t *p;

	if (need <= b->cap)
		return 0;
	if (need > (uint64_t)SIZE_MAX / 2)
		return -EFBIG;
	cap = b->cap ? b->cap : 4096;
	while (cap < need)
		cap *= 2;
	p = realloc(b->p, (size_t)cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

/* Sets the size; bytes gained read as zero. */
static int buf_resize(struct mem_buf *b, uint64_t size)
{
	int r = 0;

	if (size > b->size) {
		r = buf_reserve(b, size);
		if (r < 0)
			goto out;
		memset(b->p + b->size, 0, (size_t)(size - b->size));
	}
	b->size = size;
out:
	return r;
}

static int buf_write(struct mem_buf *b, const void *data, uint64_t len, uint64_t off)
{
	int r = 0;

	if (!len)
		goto out;
	if (off + len > b->size) {
		r = buf_resize(b, off + len);
		if (r < 0)
			goto out;
	}
	memcpy(b->p + off, data, (size_t)len);
out:
	return r;
}

static int buf_copy(struct mem_buf *dst, const struct mem_buf *src)
{
	int r;

	dst->size = 0;
	r = buf_resize(dst, src->size);
	if (r == 0 && src->size)
		memcpy(dst->p, src->p, (size_t)src->size);
	return r;
}

static void buf_free(struct mem_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->size = b->cap = 0;
}

/* ---- nodes and directories (caller holds the lock exclusively) ---- */

static struct mem_node *mv_node(struct mem_vfs *mv, uint32_t id) REQUIRES_SHARED(mem_cap)
{
	if (NEVER(id >= mv->nnodes || !mv->nodes[id]))
		abort();
	return mv->nodes[id];
}

static int node_new(struct mem_vfs *mv, const char *name, uint32_t *ret_id) REQUIRES(mem_cap)
{
	struct mem_node *n = NULL;
	uint32_t id;
	int r;

	for (id = 0; id < mv->nnodes; id++)
		if (!mv->nodes[id])
			break;
	if (id == mv->nnodes) {
		struct mem_node **t = realloc(mv->nodes, sizeof(*t) * (mv->nnodes + 8u));
		if (!t) {
			r = -ENOMEM;
			goto out;
		}
		mv->nodes = t;
		for (uint32_t i = mv->nnodes; i < mv->nnodes + 8u; i++)
			mv->nodes[i] = NULL;
		mv->nnodes += 8u;
	}
	n = calloc(1, sizeof(*n));
	if (!n || !(n->name = strdup(name))) {
		r = -ENOMEM;
		goto out;
	}
	mv->nodes[id] = n;
	n = NULL;
	*ret_id = id;
	r = 0;
out:
	free(n);
	return r;
}

static void node_ref(struct mem_vfs *mv, uint32_t id) REQUIRES(mem_cap) { mv_node(mv, id)->refs++; }

static void node_unref(struct mem_vfs *mv, uint32_t id) REQUIRES(mem_cap)
{
	struct mem_node *n = mv_node(mv, id);

	if (NEVER(n->refs == 0))
		return;
	if (--n->refs)
		return;
	buf_free(&n->cur);
	buf_free(&n->dur);
	free(n->name);
	free(n);
	mv->nodes[id] = NULL;
}

static long dir_find(const struct mem_dir *d, const char *name)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->e[i].name, name) == 0)
			return (long)i;
	return -1;
}

/* Adds name -> node (name must be absent); takes a node reference. */
static int dir_add(struct mem_vfs *mv, struct mem_dir *d, const char *name, uint32_t node) REQUIRES(mem_cap)
{
	char *s = NULL;
	int r;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct mem_dirent *e = realloc(d->e, sizeof(*e) * cap);
		if (!e) {
			r = -ENOMEM;
			goto out;
		}
		d->e = e;
		d->cap = cap;
	}
	s = strdup(name);
	if (!s) {
		r = -ENOMEM;
		goto out;
	}
	d->e[d->n].name = s;
	d->e[d->n].node = node;
	d->n++;
	node_ref(mv, node);
	r = 0;
out:
	return r;
}

static void dir_del(struct mem_vfs *mv, struct mem_dir *d, size_t i) REQUIRES(mem_cap)
{
	uint32_t node = d->e[i].node;

	free(d->e[i].name);
	d->e[i] = d->e[--d->n];
	node_unref(mv, node);
}

/* Renames entry `from` to `to` in d, replacing `to`. Both names valid. */
static int dir_rename(struct mem_vfs *mv, struct mem_dir *d, const char *from, const char *to) REQUIRES(mem_cap)
{
	long i = dir_find(d, from), j;
	char *s = NULL;
	int r;

	if (i < 0) {
		r = -ENOENT;
		goto out;
	}
	if (strcmp(from, to) == 0) {
		r = 0;
		goto out;
	}
	s = strdup(to);
	if (!s) {
		r = -ENOMEM;
		goto out;
	}
	free(d->e[i].name);
	d->e[i].name = s;
	j = -1;
	for (size_t k = 0; k < d->n; k++)
		if ((long)k != i && strcmp(d->e[k].name, to) == 0)
			j = (long)k;
	if (j >= 0)
		dir_del(mv, d, (size_t)j);
	r = 0;
out:
	return r;
}

static bool dir_named(const struct mem_dir *d, uint32_t node)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->e[i].node == node)
			return true;
	return false;
}

static void dir_free(struct mem_dir *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->e[i].name);
	free(d->e);
	d->e = NULL;
	d->n = d->cap = 0;
}

static bool name_ok(const char *name)
{
	return name && name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* ---- pending ops (recording) ---- */

static void op_free(struct rec_op *op)
{
	free(op->name);
	free(op->name2);
	free(op->data);
}

/* Appends an op on node (takes a node reference). data is copied. */
static int pend_add(struct mem_vfs *mv, enum vfs_rec_kind kind, uint32_t node, const char *name,
		    const char *name2, uint64_t off, uint64_t len, const void *data) REQUIRES(mem_cap)
{
	struct rec_op op = {.kind = kind, .node = node, .off = off, .len = len};
	int r;

	if (mv->npend == mv->cappend) {
		size_t cap = mv->cappend ? mv->cappend * 2 : 64;
		struct rec_op *p = realloc(mv->pend, sizeof(*p) * cap);
		if (!p) {
			r = -ENOMEM;
			goto fail;
		}
		mv->pend = p;
		mv->cappend = cap;
	}
	op.name = strdup(name);
	if (!op.name || (name2 && !(op.name2 = strdup(name2)))) {
		r = -ENOMEM;
		goto fail;
	}
	if (data) {
		op.data = malloc(len ? (size_t)len : 1);
		if (!op.data) {
			r = -ENOMEM;
			goto fail;
		}
		memcpy(op.data, data, (size_t)len);
	}
	mv->pend[mv->npend++] = op;
	node_ref(mv, node);
	if (kind == VFS_REC_WRITE || kind == VFS_REC_TRUNCATE)
		mv_node(mv, node)->npend_data++;
	return 0;
fail:
	op_free(&op);
	return r;
}

static bool op_is_data(const struct rec_op *op) { return op->kind == VFS_REC_WRITE || op->kind == VFS_REC_TRUNCATE; }

/* Applies a data op to a buffer (in full). */
static int op_apply_data(const struct rec_op *op, struct mem_buf *b)
{
	if (op->kind == VFS_REC_WRITE)
		return buf_write(b, op->data, op->len, op->off);
	return buf_resize(b, op->len);
}

/* ---- backend ops ---- */

static int mem_open(struct vfs *v, const char *name, int flags, struct vfs_file **ret_file)
{
	struct mem_vfs *mv = to_mv(v);
	struct mem_file *mf = NULL;
	uint32_t id = 0;
	bool created = false;
	long i;
	int r;

	if (!name_ok(name))
		return -EINVAL;
	mf = calloc(1, sizeof(*mf));
	if (!mf)
		return -ENOMEM;
	mv_wrlock(mv);
	i = dir_find(&mv->dents, name);
	if (i >= 0) {
		if ((flags & VFS_O_CREAT) && (flags & VFS_O_EXCL)) {
			r = -EEXIST;
			goto out;
		}
		id = mv->dents.e[i].node;
	} else {
		if (!(flags & VFS_O_CREAT)) {
			r = -ENOENT;
			goto out;
		}
		r = node_new(mv, name, &id);
		if (r < 0)
			goto out;
		mv_node(mv, id)->refs = 1; /* held by this function until the handle takes it */
		created = true;
		r = dir_add(mv, &mv->dents, name, id);
		if (r == 0 && mv->rec)
			r = pend_add(mv, VFS_REC_CREATE, id, name, NULL, 0, 0, NULL);
		if (r < 0) {
			long k = dir_find(&mv->dents, name);
			if (k >= 0)
				dir_del(mv, &mv->dents, (size_t)k);
			node_unref(mv, id);
			goto out;
		}
	}
	if (!created)
		node_ref(mv, id); /* the handle's reference */
	mf->base.vfs = v;
	mf->node = id;
	mf->writable = (flags & VFS_O_RDWR) != 0;
	*ret_file = &mf->base;
	mf = NULL;
	r = 0;
out:
	mv_wrunlock(mv);
	free(mf);
	return r;
}

static void mem_close(struct vfs_file *f)
{
	struct mem_vfs *mv = to_mv(f->vfs);
	struct mem_file *mf = to_mf(f);
	struct mem_node *n;

	mv_wrlock(mv);
	n = mv_node(mv, mf->node);
	if (n->locker == f)
		n->locker = NULL;
	if (mf->shared)
		n->shared--;
	node_unref(mv, mf->node);
	mv_wrunlock(mv);
	free(mf);
}

static int mem_pread(struct vfs_file *f, void *buf, size_t len, uint64_t off, size_t *ret_n)
{
	struct mem_vfs *mv = to_mv(f->vfs);
	struct mem_node *n;
	size_t k = 0;

	mv_rdlock(mv);
	n = mv_node(mv, to_mf(f)->node);
	if (off < n->cur.size) {
		k = (size_t)BZ_MIN((uint64_t)len, n->cur.size - off);
		memcpy(buf, n->cur.p + off, k);
	}
	mv_rdunlock(mv);
	*ret_n = k;
	return 0;
}

/* -ENOSPC when growing node n to size would take the files past a
 * capacity set by vfs_mem_set_capacity (unlinked nodes still open count,
 * as on a disk). O(nodes): only tests that set a capacity pay for it. */
static int mem_room(struct mem_vfs *mv, const struct mem_node *n, uint64_t size) REQUIRES(mem_cap)
{
	uint64_t used = 0;

	if (!mv->capacity || size <= n->cur.size)
		return 0;
	for (uint32_t i = 0; i < mv->nnodes; i++)
		if (mv->nodes[i])
			used += mv->nodes[i]->cur.size;
	return used + (size - n->cur.size) > mv->capacity ? -ENOSPC : 0;
}

static int mem_pwrite(struct vfs_file *f, const void *buf, size_t len, uint64_t off)
{
	struct mem_vfs *mv = to_mv(f->vfs);
	struct mem_file *mf = to_mf(f);
	struct mem_node *n;
	int r;

	if (!mf->writable)
		return -EBADF;
	if (off + len < off || off + len > MEM_CAPACITY)
		return -EFBIG;
	if (!len)
		return 0;
	mv_wrlock(mv);
	n = mv_node(mv, mf->node);
	r = mem_room(mv, n, off + len);
	if (r < 0)
		goto out;
	/* reserve first so the op list and the contents never disagree */
	r = buf_reserve(&n->cur, off + len);
	if (r < 0)
		goto out;
	if (mv->rec) {
		r = pend_add(mv, VFS_REC_WRITE, mf->node, n->name, NULL, off, len, buf);
		if (r < 0)
			goto out;
	}
	r = buf_write(&n->cur, buf, len, off);
out:
	mv_wrunlock(mv);
	return r;
}

static int mem_sync(struct vfs_file *f)
{
	struct mem_vfs *mv = to_mv(f->vfs);
	uint32_t id = to_mf(f)->node;
	struct mem_node *n;
	size_t w = 0;
	int r = 0;

	if (!mv->rec)
		return 0;
	mv_wrlock(mv);
	n = mv_node(mv, id);
	if (!n->npend_data)
		goto out;
	/* reserve the durable image's final size first, so applying cannot fail midway */
	{
		uint64_t need = n->dur.size;
		for (size_t i = 0; i < mv->npend; i++) {
			const struct rec_op *op = &mv->pend[i];
			if (op->node != id || !op_is_data(op))
				continue;
			need = op->kind == VFS_REC_WRITE ? BZ_MAX(need, op->off + op->len) : op->len;
			r = buf_reserve(&n->dur, need);
			if (r < 0)
				goto out;
		}
	}
	for (size_t i = 0; i < mv->npend; i++) {
		struct rec_op *op = &mv->pend[i];
		if (op->node == id && op_is_data(op)) {
			r = op_apply_data(op, &n->dur);
			if (NEVER(r < 0))
				bz_err("vfs_rec: applying a reserved op failed");
			op_free(op);
			n->npend_data--;
			n->refs--; /* n stays alive: the handle holds a reference */
			continue;
		}
		mv->pend[w++] = *op;
	}
	mv->npend = w;
	r = 0;
out:
	mv_wrunlock(mv);
	return r;
}

static int mem_fallocate(struct vfs_file *f, uint64_t off, uint64_t len)
{
	struct mem_vfs *mv = to_mv(f->vfs);
	struct mem_file *mf = to_mf(f);
	struct mem_node *n;
	int r = 0;

	if (!mf->writable)
		return -EBADF;
	if (off + len < off || off + len > MEM_CAPACITY)
		return -EFBIG;
	mv_wrlock(mv);
	n = mv_node(mv, mf->node);
	if (off + len <= n->cur.size)
		goto out;
	r = mem_room(mv, n, off + len);
	if (r < 0)
		goto out;
	r = buf_reserve(&n->cur, off + len);
	if (r < 0)
		goto out;
	if (mv->rec) {
		r = pend_add(mv, VFS_REC_TRUNCATE, mf->node, n->name, NULL, 0, off + len, NULL);
		if (r < 0)
			goto out;
	}
	r = buf_resize(&n->cur, off + len);
out:
	mv_wrunlock(mv);
	return r;
}

static int mem_ftruncate(struct vfs_file *f, uint64_t len)
{
	struct mem_vfs *mv = to_mv(f->vfs);
	struct mem_file *mf = to_mf(f);
	struct mem_node *n;
	int r;

	if (!mf->writable)
		return -EBADF;
	if (len > MEM_CAPACITY)
		return -EFBIG;
	mv_wrlock(mv);
	n = mv_node(mv, mf->node);
	r = mem_room(mv, n, len);
	if (r < 0)
		goto out;
	r = buf_reserve(&n->cur, len);
	if (r < 0)
		goto out;
	if (mv->rec) {
		r = pend_add(mv, VFS_REC_TRUNCATE, mf->node, n->name, NULL, 0, len, NULL);
		if (r < 0)
			goto out;
	}
	r = buf_resize(&n->cur, len);
out:
	mv_wrunlock(mv);
	return r;
}

static int mem_size(struct vfs_file *f, uint64_t *ret_size)
{
	struct mem_vfs *mv = to_mv(f->vfs);

	mv_rdlock(mv);
	*ret_size = mv_node(mv, to_mf(f)->node)->cur.size;
	mv_rdunlock(mv);
	return 0;
}

static int mem_rename(struct vfs *v, const char *from, const char *to)
{
	struct mem_vfs *mv = to_mv(v);
	char *newname = NULL;
	long i;
	int r;

	if (!name_ok(from) || !name_ok(to))
		return -EINVAL;
	mv_wrlock(mv);
	i = dir_find(&mv->dents, from);
	if (i < 0) {
		r = -ENOENT;
		goto out;
	}
	if (strcmp(from, to) == 0) {
		r = 0;
		goto out;
	}
	newname = strdup(to);
	if (!newname) {
		r = -ENOMEM;
		goto out;
	}
	if (mv->rec) {
		r = pend_add(mv, VFS_REC_RENAME, mv->dents.e[i].node, from, to, 0, 0, NULL);
		if (r < 0)
			goto out;
	}
	{
		struct mem_node *n = mv_node(mv, mv->dents.e[i].node);
		free(n->name);
		n->name = newname;
		newname = NULL;
	}
	r = dir_rename(mv, &mv->dents, from, to);
	if (NEVER(r < 0))
		bz_err("vfs_mem: rename failed after logging it");
out:
	mv_wrunlock(mv);
	free(newname);
	return r;
}

static int mem_unlink(struct vfs *v, const char *name)
{
	struct mem_vfs *mv = to_mv(v);
	long i;
	int r;

	if (!name_ok(name))
		return -EINVAL;
	mv_wrlock(mv);
	i = dir_find(&mv->dents, name);
	if (i < 0) {
		r = -ENOENT;
		goto out;
	}
	if (mv->rec) {
		r = pend_add(mv, VFS_REC_UNLINK, mv->dents.e[i].node, name, NULL, 0, 0, NULL);
		if (r < 0)
			goto out;
	}
	dir_del(mv, &mv->dents, (size_t)i);
	r = 0;
out:
	mv_wrunlock(mv);
	return r;
}

/* Applies a namespace op to directory d (the durable namespace, or a crash
 * state's for RENAME/UNLINK). node: the node a CREATE names. */
static int ns_apply(struct mem_vfs *mv, struct mem_dir *d, const struct rec_op *op, uint32_t node)
	REQUIRES(mem_cap)
{
	long i;
	int r = 0;

	switch (op->kind) {
	case VFS_REC_CREATE:
		i = dir_find(d, op->name);
		if (i >= 0)
			dir_del(mv, d, (size_t)i);
		r = dir_add(mv, d, op->name, node);
		break;
	case VFS_REC_RENAME:
		if (dir_find(d, op->name) >= 0)
			r = dir_rename(mv, d, op->name, op->name2);
		break;
	case VFS_REC_UNLINK:
		i = dir_find(d, op->name);
		if (i >= 0)
			dir_del(mv, d, (size_t)i);
		break;
	default:
		break;
	}
	return r;
}

static int mem_sync_dir(struct vfs *v)
{
	struct mem_vfs *mv = to_mv(v);
	size_t w = 0;
	int r = 0;

	if (!mv->rec)
		return 0;
	mv_wrlock(mv);
	for (size_t i = 0; i < mv->npend; i++) {
		struct rec_op *op = &mv->pend[i];
		if (!op_is_data(op)) {
			if (r == 0) {
				r = ns_apply(mv, &mv->dents_dur, op, op->node);
				if (r == 0) {
					node_unref(mv, op->node);
					op_free(op);
					continue;
				}
			}
		}
		mv->pend[w++] = *op;
	}
	mv->npend = w;
	mv_wrunlock(mv);
	return r;
}

static int mem_lock(struct vfs_file *f, bool shared)
{
	struct mem_vfs *mv = to_mv(f->vfs);
	struct mem_file *mf = to_mf(f);
	struct mem_node *n;
	int r = 0;

	mv_wrlock(mv);
	n = mv_node(mv, mf->node);
	if (n->locker && n->locker != f)
		r = -EWOULDBLOCK;
	else if (shared) {
		if (!mf->shared)
			n->shared++;
		mf->shared = true;
	} else if (n->shared > (mf->shared ? 1u : 0u))
		r = -EWOULDBLOCK;
	else
		n->locker = f;
	mv_wrunlock(mv);
	return r;
}

static int mem_space(struct vfs *v, uint64_t *ret_free, uint64_t *ret_total)
{
	struct mem_vfs *mv = to_mv(v);
	uint64_t used = 0;

	mv_rdlock(mv);
	for (uint32_t i = 0; i < mv->nnodes; i++)
		if (mv->nodes[i])
			used += mv->nodes[i]->cur.size;
	uint64_t cap = mv->capacity ? mv->capacity : MEM_CAPACITY;
	mv_rdunlock(mv);
	*ret_free = used < cap ? cap - used : 0;
	*ret_total = cap;
	return 0;
}

static void mem_destroy(struct vfs *v)
{
	struct mem_vfs *mv = to_mv(v);

	mv_wrlock(mv);
	for (size_t i = 0; i < mv->npend; i++)
		op_free(&mv->pend[i]);
	free(mv->pend);
	dir_free(&mv->dents);
	dir_free(&mv->dents_dur);
	for (uint32_t i = 0; i < mv->nnodes; i++) {
		struct mem_node *n = mv->nodes[i];
		if (!n)
			continue;
		buf_free(&n->cur);
		buf_free(&n->dur);
		free(n->name);
		free(n);
	}
	free(mv->nodes);
	mv_wrunlock(mv);
	bz_rwlock_destroy(&mv->lock);
	free(mv);
}

static const struct vfs_ops mem_ops = {
	.open = mem_open,
	.close = mem_close,
	.pread = mem_pread,
	.pwrite = mem_pwrite,
	.fdatasync = mem_sync,
	.fsync = mem_sync,
	.fallocate = mem_fallocate,
	.ftruncate = mem_ftruncate,
	.size = mem_size,
	.rename = mem_rename,
	.unlink = mem_unlink,
	.sync_dir = mem_sync_dir,
	.lock = mem_lock,
	.space = mem_space,
	.destroy = mem_destroy,
};

static int mem_create(bool rec, struct mem_vfs **ret)
{
	struct mem_vfs *mv = calloc(1, sizeof(*mv));

	if (!mv)
		return -ENOMEM;
	mv->base.ops = &mem_ops;
	mv->rec = rec;
	bz_rwlock_init(&mv->lock);
	*ret = mv;
	return 0;
}

int vfs_mem_new(struct vfs **ret_vfs)
{
	struct mem_vfs *mv;
	int r = mem_create(false, &mv);

	if (r == 0)
		*ret_vfs = &mv->base;
	return r;
}

int vfs_rec_new(struct vfs **ret_vfs)
{
	struct mem_vfs *mv;
	int r = mem_create(true, &mv);

	if (r == 0)
		*ret_vfs = &mv->base;
	return r;
}

static struct mem_vfs *as_mem(struct vfs *v)
{
	return v && v->ops == &mem_ops ? to_mv(v) : NULL;
}

static struct mem_vfs *as_rec(struct vfs *v)
{
	struct mem_vfs *mv = as_mem(v);
	return mv && mv->rec ? mv : NULL;
}

int vfs_mem_set_capacity(struct vfs *v, uint64_t bytes)
{
	struct mem_vfs *mv = as_mem(v);

	if (!mv || bytes > MEM_CAPACITY)
		return -EINVAL;
	mv_wrlock(mv);
	mv->capacity = bytes;
	mv_wrunlock(mv);
	return 0;
}

/* ---- recording inspection ---- */

size_t vfs_rec_pending(struct vfs *rec)
{
	struct mem_vfs *mv = as_rec(rec);
	size_t n;

	if (!mv)
		return 0;
	mv_rdlock(mv);
	n = mv->npend;
	mv_rdunlock(mv);
	return n;
}

int vfs_rec_op_get(struct vfs *rec, size_t i, struct vfs_rec_op *ret_op)
{
	struct mem_vfs *mv = as_rec(rec);
	int r = 0;

	if (!mv)
		return -EINVAL;
	mv_rdlock(mv);
	if (i >= mv->npend) {
		r = -ERANGE;
	} else {
		const struct rec_op *op = &mv->pend[i];
		ret_op->kind = op->kind;
		ret_op->name = op->name;
		ret_op->name2 = op->name2;
		ret_op->off = op->off;
		ret_op->len = op->len;
	}
	mv_rdunlock(mv);
	return r;
}

/* ---- materialization ---- */

/* Adds to dst (a fresh backend) a file name with contents b. Returns its id
 * with a reference held for the caller (release with node_unref). */
static int dst_add(struct mem_vfs *dst, const char *name, const struct mem_buf *b, uint32_t *ret_id)
	REQUIRES(mem_cap)
{
	uint32_t id;
	int r;

	r = node_new(dst, name, &id);
	if (r < 0)
		goto out;
	mv_node(dst, id)->refs = 1;
	r = buf_copy(&mv_node(dst, id)->cur, b);
	if (r == 0)
		r = dir_add(dst, &dst->dents, name, id);
	if (r < 0) {
		node_unref(dst, id);
		goto out;
	}
	*ret_id = id;
out:
	return r;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Applies WRITE op torn after torn_at bytes (see vfs.h / docs/TESTING.md ("The crash model")). */
static int apply_torn(const struct rec_op *op, struct mem_buf *b, const struct vfs_crash *c)
{
	uint64_t p = op->off + c->torn_at;
	uint64_t old_size = b->size;
	uint64_t end, fill_end;
	int r;

	r = buf_write(b, op->data, c->torn_at, op->off);
	if (r < 0 || p % SECTOR == 0)
		goto out;
	/* fill up to the sector's end, but never grow the file past what the
	 * whole write would have made it */
	end = (p / SECTOR + 1) * SECTOR;
	fill_end = BZ_MIN(end, BZ_MAX(op->off + op->len, old_size));
	if (fill_end <= p)
		goto out;
	if (fill_end > b->size) {
		r = buf_resize(b, fill_end); /* gained bytes are zero (OLD beyond EOF = zero) */
		if (r < 0)
			goto out;
	}
	if (c->torn_fill == VFS_TEAR_ZERO) {
		memset(b->p + p, 0, (size_t)(fill_end - p));
	} else if (c->torn_fill == VFS_TEAR_GARBAGE) {
		uint64_t s = c->seed ^ (p * 0x2545f4914f6cdd1dull);
		for (uint64_t i = p; i < fill_end; i++)
			b->p[i] = (uint8_t)splitmix64(&s);
	}
	/* VFS_TEAR_OLD: previous contents stay */
out:
	return r;
}

/* Crash file of a recorded node: src node id in rec -> dst node id in the
 * crash backend (a reference is held on dst until the end, so ids are not
 * reused while the map lives). */
struct crash_map {
	uint32_t src, dst;
};

/* NO_TSA: locks rec shared and the fresh, still private crash backend
 * exclusive — two instances of mem_cap the analysis cannot tell apart. */
int vfs_rec_crash(struct vfs *rec, const struct vfs_crash *c, struct vfs **ret_mem) NO_TSA
{
	struct mem_vfs *mv = as_rec(rec);
	struct mem_vfs *dst = NULL;
	struct crash_map *map = NULL;
	size_t nmap = 0;
	int r;

	if (!mv || !c)
		return -EINVAL;
	r = mem_create(false, &dst);
	if (r < 0)
		return r;
	mv_rdlock(mv);
	mv_wrlock(dst);
	if ((c->keep && c->n_keep != mv->npend) || (!c->keep && c->torn_op != -1) ||
	    (c->torn_op != -1 && (c->torn_op < 0 || (size_t)c->torn_op >= mv->npend || !c->keep[c->torn_op] ||
				  mv->pend[c->torn_op].kind != VFS_REC_WRITE ||
				  c->torn_at >= mv->pend[c->torn_op].len))) {
		r = -EINVAL;
		goto out;
	}
	/* at most one map entry per durable file and per kept CREATE */
	map = calloc(mv->dents_dur.n + mv->npend + 1, sizeof(*map));
	if (!map) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < mv->dents_dur.n; i++) {
		const struct mem_dirent *e = &mv->dents_dur.e[i];
		r = dst_add(dst, e->name, &mv_node(mv, e->node)->dur, &map[nmap].dst);
		if (r < 0)
			goto out;
		map[nmap].src = e->node;
		nmap++;
	}
	for (size_t i = 0; c->keep && i < mv->npend; i++) {
		const struct rec_op *op = &mv->pend[i];
		struct crash_map *m = NULL;
		long k;

		if (!c->keep[i])
			continue;
		if (op->kind == VFS_REC_CREATE) {
			k = dir_find(&dst->dents, op->name);
			if (k >= 0)
				dir_del(dst, &dst->dents, (size_t)k);
			r = dst_add(dst, op->name, &mv_node(mv, op->node)->dur, &map[nmap].dst);
			if (r < 0)
				goto out;
			map[nmap].src = op->node;
			nmap++;
			continue;
		}
		if (op->kind == VFS_REC_RENAME || op->kind == VFS_REC_UNLINK) {
			r = ns_apply(dst, &dst->dents, op, 0);
			if (r < 0)
				goto out;
			continue;
		}
		/* data op: the node's newest crash file, if it is still named */
		for (size_t j = nmap; j-- > 0;) {
			if (map[j].src == op->node) {
				m = &map[j];
				break;
			}
		}
		if (!m || !dir_named(&dst->dents, m->dst))
			continue;
		if ((long)i == c->torn_op)
			r = apply_torn(op, &mv_node(dst, m->dst)->cur, c);
		else
			r = op_apply_data(op, &mv_node(dst, m->dst)->cur);
		if (r < 0)
			goto out;
	}
	r = 0;
out:
	for (size_t j = 0; j < nmap; j++)
		node_unref(dst, map[j].dst);
	mv_wrunlock(dst);
	mv_rdunlock(mv);
	free(map);
	if (r == 0)
		*ret_mem = &dst->base;
	else
		mem_destroy(&dst->base);
	return r;
}

/* Copies src's current namespace and contents into dst; with dur, also makes
 * them dst's durable namespace and images. */
/* NO_TSA: src shared + the fresh, still private dst exclusive (two
 * instances of mem_cap). */
static int copy_current(struct mem_vfs *src, struct mem_vfs *dst, bool dur) NO_TSA
{
	int r = 0;

	mv_rdlock(src);
	mv_wrlock(dst);
	for (size_t i = 0; i < src->dents.n; i++) {
		const struct mem_dirent *e = &src->dents.e[i];
		uint32_t id;
		r = dst_add(dst, e->name, &mv_node(src, e->node)->cur, &id);
		if (r < 0)
			break;
		if (dur)
			r = buf_copy(&mv_node(dst, id)->dur, &mv_node(src, e->node)->cur);
		if (r == 0 && dur)
			r = dir_add(dst, &dst->dents_dur, e->name, id);
		node_unref(dst, id);
		if (r < 0)
			break;
	}
	mv_wrunlock(dst);
	mv_rdunlock(src);
	return r;
}

/* A new memory (rec false) or recording (rec true: the copy is also its
 * durable image) backend holding src's current files. */
static int clone_as(struct vfs *v, bool rec, struct vfs **ret_vfs)
{
	struct mem_vfs *src = as_mem(v), *dst = NULL;
	int r;

	if (!src)
		return -EINVAL;
	r = mem_create(rec, &dst);
	if (r == 0)
		r = copy_current(src, dst, rec);
	if (r == 0) {
		*ret_vfs = &dst->base;
		dst = NULL;
	}
	if (dst)
		mem_destroy(&dst->base);
	return r;
}

int vfs_mem_clone(struct vfs *v, struct vfs **ret_mem) { return clone_as(v, false, ret_mem); }

int vfs_rec_from(struct vfs *src_vfs, struct vfs **ret_rec) { return clone_as(src_vfs, true, ret_rec); }
