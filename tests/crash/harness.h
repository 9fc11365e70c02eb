/* harness.h — shared by tests/crash/crash_enum.c and tests/fault/fault_store.c.
 *
 * Pieces:
 *   - rng: splitmix64, everything deterministic from a printed seed;
 *   - probe vfs: a pass-through backend that calls a hook before every call
 *     that changes the disk (pwrite, fdatasync, fsync, fallocate, ftruncate,
 *     rename, unlink, sync_dir, open with VFS_O_CREAT). The hook runs on the
 *     thread doing the I/O (the commit thread in pipeline mode), so the
 *     recording vfs below it is quiescent while the hook looks at it;
 *   - model: the global operation sequence (data appends and namespace
 *     ops), the bytes of every file, and after every op p a 64-bit state
 *     signature sig[p] (an order-independent sum of hashes over directory
 *     entries and inodes with their link count and size);
 *   - recovered-state extraction from a store (namespace walk + file sizes),
 *     matching against sig[p] for p in [acked, submitted], and a byte-exact
 *     content check of every live file.
 *
 * The probe backend includes storage/vfs_int.h (the backend interface): it
 * is a test backend, not part of the engine.
 */
#ifndef BZ_TEST_HARNESS_H
#define BZ_TEST_HARNESS_H

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#include "storage/log.h"
#include "storage/ns.h"
#include "storage/nsop.h"
#include "storage/record.h"
#include "storage/store.h"
#include "storage/vfs.h"
#include "storage/vfs_int.h"

/* ------------------------------------------------------------------ rng */
struct rng {
	uint64_t s;
};
static inline uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}
static inline uint64_t rng_below(struct rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }
static inline bool rng_chance(struct rng *r, unsigned pct) { return rng_below(r, 100) < pct; }
static inline uint64_t mix2(uint64_t a, uint64_t b)
{
	struct rng r = { a * 0x9E3779B97F4A7C15ull ^ b };
	return rng_next(&r);
}

/* ------------------------------------------------------------ probe vfs */
/* What the hook is told about the call about to happen: the file's name
 * (NULL for directory ops: rename, unlink, sync_dir), and for a pwrite its
 * offset, length and bytes (for a ftruncate/fallocate: off = the new size,
 * len = the current size). */
struct probe_io {
	const char *name;
	uint64_t off, len;
	const uint8_t *buf;
};
typedef void (*probe_hook_fn)(void *arg, enum vfs_op op, const struct probe_io *io);

struct probe {
	struct vfs base;
	struct vfs *inner; /* not owned */
	probe_hook_fn hook;
	void *arg;
};
struct probe_file {
	struct vfs_file base;
	struct vfs_file *inner;
	char name[32];
};

static inline struct probe *probe_of(struct vfs *v) { return (struct probe *)v; }
static inline struct vfs_file *pf_inner(struct vfs_file *f) { return ((struct probe_file *)f)->inner; }
static inline void probe_fire_io(struct vfs *v, enum vfs_op op, const char *name, uint64_t off, uint64_t len,
				 const void *buf)
{
	struct probe *p = probe_of(v);
	struct probe_io io = { .name = name, .off = off, .len = len, .buf = buf };
	if (p->hook)
		p->hook(p->arg, op, &io);
}
static inline void probe_fire(struct vfs *v, enum vfs_op op) { probe_fire_io(v, op, NULL, 0, 0, NULL); }
static inline const char *pf_name(struct vfs_file *f) { return ((struct probe_file *)f)->name; }

static int probe_open(struct vfs *v, const char *name, int flags, struct vfs_file **ret_file)
{
	struct probe_file *pf = calloc(1, sizeof(*pf));
	int r;

	if (!pf)
		return -ENOMEM;
	snprintf(pf->name, sizeof(pf->name), "%s", name);
	if (flags & VFS_O_CREAT)
		probe_fire_io(v, VFS_OP_OPEN, pf->name, 0, 0, NULL);
	r = vfs_open(probe_of(v)->inner, name, flags, &pf->inner);
	if (r < 0) {
		free(pf);
		return r;
	}
	pf->base.vfs = v;
	*ret_file = &pf->base;
	return 0;
}
static void probe_close(struct vfs_file *f)
{
	vfs_close(pf_inner(f));
	free(f);
}
static int probe_pread(struct vfs_file *f, void *buf, size_t len, uint64_t off, size_t *ret_n)
{
	return vfs_pread(pf_inner(f), buf, len, off, ret_n);
}
static int probe_pwrite(struct vfs_file *f, const void *buf, size_t len, uint64_t off)
{
	probe_fire_io(f->vfs, VFS_OP_PWRITE, pf_name(f), off, len, buf);
	return vfs_pwrite(pf_inner(f), buf, len, off);
}
static int probe_fdatasync(struct vfs_file *f)
{
	probe_fire_io(f->vfs, VFS_OP_FDATASYNC, pf_name(f), 0, 0, NULL);
	return vfs_fdatasync(pf_inner(f));
}
static int probe_fsync(struct vfs_file *f)
{
	probe_fire_io(f->vfs, VFS_OP_FSYNC, pf_name(f), 0, 0, NULL);
	return vfs_fsync(pf_inner(f));
}
static int probe_fallocate(struct vfs_file *f, uint64_t off, uint64_t len)
{
	uint64_t cur = 0;
	(void)vfs_size(pf_inner(f), &cur);
	probe_fire_io(f->vfs, VFS_OP_FALLOCATE, pf_name(f), BZ_MAX(cur, off + len), cur, NULL);
	return vfs_fallocate(pf_inner(f), off, len);
}
static int probe_ftruncate(struct vfs_file *f, uint64_t len)
{
	uint64_t cur = 0;
	(void)vfs_size(pf_inner(f), &cur);
	probe_fire_io(f->vfs, VFS_OP_FTRUNCATE, pf_name(f), len, cur, NULL);
	return vfs_ftruncate(pf_inner(f), len);
}
static int probe_size(struct vfs_file *f, uint64_t *ret_size) { return vfs_size(pf_inner(f), ret_size); }
static int probe_rename(struct vfs *v, const char *from, const char *to)
{
	probe_fire(v, VFS_OP_RENAME);
	return vfs_rename(probe_of(v)->inner, from, to);
}
static int probe_unlink(struct vfs *v, const char *name)
{
	probe_fire(v, VFS_OP_UNLINK);
	return vfs_unlink(probe_of(v)->inner, name);
}
static int probe_sync_dir(struct vfs *v)
{
	probe_fire(v, VFS_OP_SYNC_DIR);
	return vfs_sync_dir(probe_of(v)->inner);
}
static int probe_lock(struct vfs_file *f, bool shared)
{
	return shared ? vfs_lock_shared(pf_inner(f)) : vfs_lock(pf_inner(f));
}
static int probe_space(struct vfs *v, uint64_t *ret_free, uint64_t *ret_total)
{
	return vfs_space(probe_of(v)->inner, ret_free, ret_total);
}
static void probe_destroy(struct vfs *v) { free(v); }

static const struct vfs_ops probe_ops = {
	.open = probe_open,
	.close = probe_close,
	.pread = probe_pread,
	.pwrite = probe_pwrite,
	.fdatasync = probe_fdatasync,
	.fsync = probe_fsync,
	.fallocate = probe_fallocate,
	.ftruncate = probe_ftruncate,
	.size = probe_size,
	.rename = probe_rename,
	.unlink = probe_unlink,
	.sync_dir = probe_sync_dir,
	.lock = probe_lock,
	.space = probe_space,
	.destroy = probe_destroy,
};

static BZ_UNUSED int probe_new(struct vfs *inner, probe_hook_fn hook, void *arg, struct vfs **ret_vfs)
{
	struct probe *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->base.ops = &probe_ops;
	p->inner = inner;
	p->hook = hook;
	p->arg = arg;
	*ret_vfs = &p->base;
	return 0;
}

/* The pure durable image (what a power cut right now leaves). */
static const struct vfs_crash durable_only = { .keep = NULL, .torn_op = -1 };

/* ---------------------------------------------------------------- model */
#define M_MAX_INO 256
#define M_POST_INO (M_MAX_INO - 1) /* reserved: the file created after a recovery */
#define M_POST_LEN 1500
#define M_FILE_CAP (160u << 10)
#define M_MAX_DIRENTS 512
#define M_MAX_OPS 4096
#define M_MAX_APPEND (20u << 10)
/* Stress profile (crash_enum; fault_store keeps the plain one): one "hot"
 * file at a time takes many small appends (hundreds of records: full index
 * pages, a long-lived open tail) and now and then a large one (whole chunks
 * at once); it may grow to M_HOT_CAP, then the next created file is hot. */
#define M_HOT_CAP (1u << 20)
#define M_BIG_APPEND (24u << 10)
#define M_HOT_APPENDS 200 /* with chunk_bytes 512, ~130 chunks: past v2's inline tail of 100 entries */

enum { MT_FREE = 0, MT_REG = 1, MT_DIR = 2, MT_SPECIAL = 3 /* FIFO or device: size slot = rdev */ };
enum { MOP_DATA = 1, MOP_NS = 2 };

struct mop {
	uint8_t kind;   /* MOP_* */
	uint8_t nskind; /* enum ns_kind for MOP_NS */
	uint64_t ino;   /* data: the file */
	uint64_t off;   /* data: size before */
	uint32_t len;   /* data: bytes appended */
	uint8_t hole;   /* data: a hole (one REC_HOLE record: zeros, never cut) */
};

struct mdirent {
	uint64_t dir, ino;
	char name[16];
	uint8_t len;
	bool used;
};

struct model {
	/* current (generator) state */
	uint8_t type[M_MAX_INO];
	uint32_t nlink[M_MAX_INO];
	uint64_t size[M_MAX_INO];
	uint32_t xver[M_MAX_INO]; /* regular files: value "v<xver>" of attribute user.v, 0 = none */
	unsigned xver_ctr;
	struct mdirent d[M_MAX_DIRENTS];
	uint64_t next_ino;
	unsigned name_ctr;
	uint64_t cur_sig;
	/* all bytes ever appended to each inode (allocated at create, before publication) */
	uint8_t *content[M_MAX_INO];
	uint32_t cap[M_MAX_INO]; /* bytes allocated in content[] (the file's size limit) */
	/* stress profile (m->stress): see M_HOT_CAP */
	bool stress;
	uint8_t holes;           /* 0 none; 1 holes as REC_HOLE records; 2 as appended zeros */
	uint64_t hot;            /* the hot file, 0 = none (the next created file) */
	uint64_t epoch;          /* set by the driver: checkpoints done so far */
	uint64_t born[M_MAX_INO]; /* epoch when the file was created */
	uint32_t napp[M_MAX_INO]; /* appends to the file */
	struct {
		uint64_t appends, hot_appends, big_appends, holes, hole_bytes;
		uint64_t hot_files, hot_filled;  /* files made hot; hot files that reached M_HOT_CAP */
		uint64_t del_data;               /* files that lost their last link holding data */
		uint64_t del_named;              /* ... of them created before a checkpoint */
		uint64_t del_big;                /* ... of them holding >= 64 KiB */
		uint64_t del_many;               /* ... of them with > M_HOT_APPENDS appends */
	} st;
	/* the op log: written by the generator, then published via submitted */
	struct mop ops[M_MAX_OPS];
	uint64_t sig[M_MAX_OPS + 1]; /* sig[p]: state after the first p ops */
	uint8_t bnd[M_MAX_OPS + 1];  /* p may be a recovered state (store mode: batch ends) */
	size_t submitted;            /* __atomic: ops published */
	size_t acked;                /* __atomic: ops acknowledged durable */
	bool all_bnd;                /* pipeline mode: every p is a boundary, partial appends allowed */
	struct rng gen;
	int64_t time_ns;
};

static inline uint64_t h_inode(uint64_t ino, unsigned type, uint32_t nlink, uint64_t size)
{
	bool full = type == MT_REG || type == MT_SPECIAL;
	uint64_t t[4] = { ino, type, full ? nlink : 0, full ? size : 0 };
	return rec_hash_seeded(t, sizeof(t), 0x1e0de);
}
static inline uint64_t h_xattr(uint64_t ino, uint32_t ver)
{
	uint64_t t[2] = { ino, ver };
	return rec_hash_seeded(t, sizeof(t), 0xa77);
}
static inline uint64_t h_dirent(uint64_t dir, const char *name, size_t len, uint64_t ino)
{
	uint8_t b[16 + NS_NAME_MAX];
	size_t n = BZ_MIN(len, (size_t)NS_NAME_MAX);
	bz_put_le64(b, dir);
	bz_put_le64(b + 8, ino);
	memcpy(b + 16, name, n);
	return rec_hash_seeded(b, 16 + n, 0xd1e);
}

static inline size_t m_submitted(const struct model *m) { return __atomic_load_n(&m->submitted, __ATOMIC_ACQUIRE); }
static inline size_t m_acked(const struct model *m) { return __atomic_load_n(&m->acked, __ATOMIC_ACQUIRE); }
static inline void m_ack(struct model *m, size_t upto)
{
	size_t cur = __atomic_load_n(&m->acked, __ATOMIC_ACQUIRE);
	while (cur < upto && !__atomic_compare_exchange_n(&m->acked, &cur, upto, false, __ATOMIC_ACQ_REL,
							   __ATOMIC_ACQUIRE))
		;
}

static BZ_UNUSED void m_fill_post(uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)("post-recovery append\n"[i % 21] ^ (i >> 8));
}

static BZ_UNUSED int m_init(struct model *m, uint64_t seed, uint64_t first_ino, bool all_bnd)
{
	memset(m, 0, sizeof(*m));
	m->gen.s = seed;
	m->type[NS_ROOT_INO] = MT_DIR;
	m->next_ino = BZ_MAX(first_ino, 2);
	m->cur_sig = h_inode(NS_ROOT_INO, MT_DIR, 0, 0);
	m->sig[0] = m->cur_sig;
	m->bnd[0] = 1;
	m->all_bnd = all_bnd;
	m->time_ns = 1700000000000000000ll;
	m->content[M_POST_INO] = malloc(M_POST_LEN);
	if (!m->content[M_POST_INO])
		return -ENOMEM;
	m->cap[M_POST_INO] = M_POST_LEN;
	m_fill_post(m->content[M_POST_INO], M_POST_LEN);
	return 0;
}
static BZ_UNUSED void m_free(struct model *m)
{
	for (size_t i = 0; i < M_MAX_INO; i++)
		free(m->content[i]);
}

/* Publishes the op just applied to the current state. */
static void m_publish(struct model *m, const struct mop *op)
{
	size_t n = m->submitted;
	m->ops[n] = *op;
	m->sig[n + 1] = m->cur_sig;
	m->bnd[n + 1] = m->all_bnd;
	__atomic_store_n(&m->submitted, n + 1, __ATOMIC_RELEASE);
}

static size_t m_pick_dir(struct model *m, struct rng *r)
{
	uint64_t dirs[M_MAX_INO];
	size_t n = 0;
	for (uint64_t i = 1; i < M_MAX_INO; i++)
		if (m->type[i] == MT_DIR)
			dirs[n++] = i;
	return dirs[rng_below(r, n)];
}
static long m_pick_dirent(struct model *m, struct rng *r, unsigned type)
{
	size_t idx[M_MAX_DIRENTS], n = 0;
	for (size_t i = 0; i < M_MAX_DIRENTS; i++)
		if (m->d[i].used && m->type[m->d[i].ino] == type)
			idx[n++] = i;
	return n ? (long)idx[rng_below(r, n)] : -1;
}
static long m_free_dirent(struct model *m)
{
	for (size_t i = 0; i < M_MAX_DIRENTS; i++)
		if (!m->d[i].used)
			return (long)i;
	return -1;
}
static void m_inode_set(struct model *m, uint64_t ino, unsigned type, uint32_t nlink, uint64_t size)
{
	if (m->type[ino] != MT_FREE)
		m->cur_sig -= h_inode(ino, m->type[ino], m->nlink[ino], m->size[ino]);
	m->type[ino] = (uint8_t)type;
	m->nlink[ino] = nlink;
	m->size[ino] = size;
	if (type != MT_FREE)
		m->cur_sig += h_inode(ino, type, nlink, size);
}
static void m_dirent_add(struct model *m, size_t i, uint64_t dir, const char *name, uint64_t ino)
{
	struct mdirent *d = &m->d[i];
	d->used = true;
	d->dir = dir;
	d->ino = ino;
	d->len = (uint8_t)strlen(name);
	memcpy(d->name, name, d->len + 1);
	m->cur_sig += h_dirent(dir, d->name, d->len, ino);
}
static void m_dirent_del(struct model *m, size_t i)
{
	struct mdirent *d = &m->d[i];
	m->cur_sig -= h_dirent(d->dir, d->name, d->len, d->ino);
	d->used = false;
}
/* Sets (ver > 0) or removes (0) the attribute user.v of ino. */
static void m_xattr_set(struct model *m, uint64_t ino, uint32_t ver)
{
	if (m->xver[ino])
		m->cur_sig -= h_xattr(ino, m->xver[ino]);
	m->xver[ino] = ver;
	if (ver)
		m->cur_sig += h_xattr(ino, ver);
}
/* Drops one link of a regular file (frees it, and its attribute, at 0). */
static void m_unlink_ino(struct model *m, uint64_t ino)
{
	if (m->nlink[ino] <= 1) {
		m_xattr_set(m, ino, 0);
		if (m->size[ino]) {
			m->st.del_data++;
			m->st.del_named += m->born[ino] < m->epoch;
			m->st.del_big += m->size[ino] >= (64u << 10);
			m->st.del_many += m->napp[ino] > M_HOT_APPENDS;
		}
		if (m->hot == ino)
			m->hot = 0;
	}
	if (m->nlink[ino] > 1)
		m_inode_set(m, ino, MT_REG, m->nlink[ino] - 1, m->size[ino]);
	else
		m_inode_set(m, ino, MT_FREE, 0, 0);
}
static size_t m_live_files(const struct model *m)
{
	size_t n = 0;
	for (size_t i = 2; i < M_MAX_INO; i++)
		n += m->type[i] == MT_REG;
	return n;
}

/* Stress profile: the hot file keeps most of its names until it had
 * M_HOT_APPENDS appends (so that it grows long), one pick in 5 still takes
 * it. */
static bool m_young_hot(const struct model *m, uint64_t ino)
{
	return m->stress && ino == m->hot && m->napp[ino] <= M_HOT_APPENDS;
}
static bool m_spare_hot(struct model *m, struct rng *r, uint64_t ino)
{
	return m_young_hot(m, ino) && !rng_chance(r, 20);
}

/* Generated operation, ready for submission. */
struct gen_op {
	struct mop mop;
	struct ns_op ns;   /* MOP_NS */
	char name[16], name2[16];
	const uint8_t *data; /* MOP_DATA: m->content[ino] + off */
};

static void g_ns_base(struct model *m, struct gen_op *g, uint8_t kind)
{
	memset(&g->ns, 0, sizeof(g->ns));
	g->ns.kind = kind;
	m->time_ns += 1000003;
	g->ns.atime_ns = g->ns.mtime_ns = g->ns.ctime_ns = m->time_ns;
	g->mop.kind = MOP_NS;
	g->mop.nskind = kind;
}

static void g_fill(struct rng *r, uint8_t *p, size_t len)
{
	static const char *words[] = { "blaze ", "append ", "record ", "frame ", "fsync ", "wal ", "page ",
				       "checkpoint ", "INFO ", "ERROR ", "2026-11-25T12:00:00Z ", "\n" };
	if (rng_chance(r, 50)) {
		size_t i = 0;
		while (i < len) {
			const char *w = words[rng_below(r, BZ_ARRAY_SIZE(words))];
			size_t wl = strlen(w);
			size_t k = BZ_MIN(wl, len - i);
			memcpy(p + i, w, k);
			i += k;
		}
	} else {
		for (size_t i = 0; i < len; i += 8) {
			uint64_t v = rng_next(r);
			memcpy(p + i, &v, BZ_MIN((size_t)8, len - i));
		}
	}
}

static uint32_t g_append_len(struct rng *r)
{
	unsigned c = (unsigned)rng_below(r, 100);
	if (c < 55)
		return 1 + (uint32_t)rng_below(r, 256);
	if (c < 88)
		return 256 + (uint32_t)rng_below(r, 4096 - 256);
	return 4096 + (uint32_t)rng_below(r, M_MAX_APPEND - 4096 + 1);
}

enum { W_DATA, W_CREATE, W_MKDIR, W_LINK, W_RENAME, W_UNLINK, W_RMDIR, W_MKNOD, W_XATTR };

static bool m_gen_try(struct model *m, struct gen_op *g, int what, int *ret_err);

/* Generates one valid operation, applies it to the model's current state
 * and publishes it. data_pct: share of appends. Returns 0 or -ENOSPC when
 * the model is full. */
static BZ_UNUSED int m_gen(struct model *m, struct gen_op *g, unsigned data_pct)
{
	struct rng *r = &m->gen;
	size_t files = m_live_files(m);
	int what, err = 0;

	if (m->submitted >= M_MAX_OPS)
		return -ENOSPC;
	memset(g, 0, sizeof(*g));
	if (files == 0 || (files < 3 && rng_chance(r, 50))) {
		what = W_CREATE;
	} else if (rng_below(r, 100) < data_pct) {
		what = W_DATA;
	} else {
		unsigned k = (unsigned)rng_below(r, 100);
		what = k < 22 ? W_CREATE : k < 25 ? W_MKNOD : k < 35 ? W_MKDIR : k < 42 ? W_XATTR : k < 55 ? W_LINK :
		       k < 75 ? W_RENAME : k < 92 ? W_UNLINK : W_RMDIR;
		if (what == W_UNLINK && files < 2)
			what = W_CREATE;
	}
	if (!m_gen_try(m, g, what, &err)) {
		if (err)
			return err;
		memset(g, 0, sizeof(*g));
		if (!m_gen_try(m, g, W_CREATE, &err))
			return err ? err : -ENOSPC;
	}
	m_publish(m, &g->mop);
	return 0;
}

static bool m_gen_try(struct model *m, struct gen_op *g, int what, int *ret_err)
{
	struct rng *r = &m->gen;

	switch (what) {
	case W_DATA: {
		long di = m_pick_dirent(m, r, MT_REG);
		uint64_t ino = di >= 0 ? m->d[di].ino : 0;
		uint32_t len = g_append_len(r);
		if (m->stress && m->hot && rng_chance(r, 60)) {
			/* the hot file: mostly small appends, now and then a large one */
			unsigned c = (unsigned)rng_below(r, 100);
			ino = m->hot;
			di = 0;
			len = c < 45 ? 1 + (uint32_t)rng_below(r, 200) : c < 93 ? 256 + (uint32_t)rng_below(r, 768) :
			      (8u << 10) + (uint32_t)rng_below(r, M_BIG_APPEND - (8u << 10) + 1);
			if (m->size[ino] + len > m->cap[ino]) {
				m->hot = 0; /* full: the next created file is hot */
				m->st.hot_filled++;
				return false;
			}
			m->st.hot_appends++;
			m->st.big_appends += len >= (8u << 10);
		}
		if (di < 0 || m->size[ino] + len > m->cap[ino])
			return false;
		m->st.appends++;
		m->napp[ino]++;
		uint64_t off = m->size[ino];
		if (m->holes && rng_chance(r, 6)) { /* a growing truncate: a hole of zeros */
			g->mop.hole = m->holes == 1;
			memset(m->content[ino] + off, 0, len);
			m->st.holes++;
			m->st.hole_bytes += len;
		} else {
			g_fill(r, m->content[ino] + off, len);
		}
		m_inode_set(m, ino, MT_REG, m->nlink[ino], off + len);
		g->mop.kind = MOP_DATA;
		g->mop.ino = ino;
		g->mop.off = off;
		g->mop.len = len;
		g->data = m->content[ino] + off;
		return true;
	}
	case W_CREATE:
	case W_MKDIR: {
		bool dir = what == W_MKDIR;
		long fi = m_free_dirent(m);
		if (fi < 0 || m->next_ino >= M_POST_INO)
			return false;
		uint64_t ino = m->next_ino++;
		uint64_t parent = m_pick_dir(m, r);
		snprintf(g->name, sizeof(g->name), "%c%u", dir ? 'd' : 'f', m->name_ctr++);
		if (!dir) {
			bool hot = m->stress && !m->hot;
			m->cap[ino] = hot ? M_HOT_CAP : M_FILE_CAP;
			m->content[ino] = malloc(m->cap[ino]);
			if (!m->content[ino]) {
				*ret_err = -ENOMEM;
				return false;
			}
			m->born[ino] = m->epoch;
			m->napp[ino] = 0;
			if (hot) {
				m->hot = ino;
				m->st.hot_files++;
			}
		}
		g_ns_base(m, g, dir ? NS_MKDIR : NS_CREATE);
		g->ns.ino = ino;
		g->ns.parent = parent;
		g->ns.name = g->name;
		g->ns.name_len = (uint32_t)strlen(g->name);
		g->ns.mode = dir ? (S_IFDIR | 0755) : (S_IFREG | 0644);
		m_inode_set(m, ino, dir ? MT_DIR : MT_REG, 1, 0);
		m_dirent_add(m, (size_t)fi, parent, g->name, ino);
		g->mop.ino = ino;
		return true;
	}
	case W_MKNOD: { /* a FIFO or a character device (rdev in the signature) */
		long fi = m_free_dirent(m);
		if (fi < 0 || m->next_ino >= M_POST_INO)
			return false;
		uint64_t ino = m->next_ino++;
		uint64_t parent = m_pick_dir(m, r);
		bool dev = rng_chance(r, 50);
		snprintf(g->name, sizeof(g->name), "%c%u", dev ? 'c' : 'p', m->name_ctr++);
		g_ns_base(m, g, NS_MKNOD);
		g->ns.ino = ino;
		g->ns.parent = parent;
		g->ns.name = g->name;
		g->ns.name_len = (uint32_t)strlen(g->name);
		g->ns.mode = dev ? (S_IFCHR | 0600) : (S_IFIFO | 0644);
		g->ns.rdev = dev ? 1u + (uint32_t)rng_below(r, 1u << 20) : 0;
		m_inode_set(m, ino, MT_SPECIAL, 1, g->ns.rdev);
		m_dirent_add(m, (size_t)fi, parent, g->name, ino);
		g->mop.ino = ino;
		return true;
	}
	case W_XATTR: { /* set user.v = "v<n>" on a file, or remove it */
		long si = m_pick_dirent(m, r, MT_REG);
		if (si < 0)
			return false;
		uint64_t ino = m->d[si].ino;
		snprintf(g->name, sizeof(g->name), "user.v");
		if (m->xver[ino] && rng_chance(r, 25)) {
			g_ns_base(m, g, NS_REMOVEXATTR);
			m_xattr_set(m, ino, 0);
		} else {
			g_ns_base(m, g, NS_SETXATTR);
			uint32_t ver = ++m->xver_ctr;
			snprintf(g->name2, sizeof(g->name2), "v%u", ver);
			g->ns.name2 = g->name2;
			g->ns.name2_len = (uint32_t)strlen(g->name2);
			m_xattr_set(m, ino, ver);
		}
		g->ns.ino = ino;
		g->ns.name = g->name;
		g->ns.name_len = (uint32_t)strlen(g->name);
		g->mop.ino = ino;
		return true;
	}
	case W_LINK: {
		long si = m_pick_dirent(m, r, MT_REG);
		long fi = m_free_dirent(m);
		if (si < 0 || fi < 0)
			return false;
		uint64_t ino = m->d[si].ino;
		uint64_t parent = m_pick_dir(m, r);
		snprintf(g->name, sizeof(g->name), "l%u", m->name_ctr++);
		g_ns_base(m, g, NS_LINK);
		g->ns.ino = ino;
		g->ns.parent = g->ns.parent2 = parent;
		g->ns.name = g->ns.name2 = g->name;
		g->ns.name_len = g->ns.name2_len = (uint32_t)strlen(g->name);
		m_inode_set(m, ino, MT_REG, m->nlink[ino] + 1, m->size[ino]);
		m_dirent_add(m, (size_t)fi, parent, g->name, ino);
		return true;
	}
	case W_RENAME: { /* a file, to a new name or over another file */
		long si = m_pick_dirent(m, r, MT_REG);
		if (si < 0)
			return false;
		struct mdirent src = m->d[si];
		long ti = -1;
		if (rng_chance(r, 30)) {
			ti = m_pick_dirent(m, r, MT_REG);
			if (ti >= 0 && (m->d[ti].ino == src.ino || m_spare_hot(m, r, m->d[ti].ino)))
				ti = -1;
		}
		uint64_t parent2;
		if (ti >= 0) {
			parent2 = m->d[ti].dir;
			memcpy(g->name2, m->d[ti].name, (size_t)m->d[ti].len + 1);
		} else {
			parent2 = m_pick_dir(m, r);
			snprintf(g->name2, sizeof(g->name2), "r%u", m->name_ctr++);
		}
		memcpy(g->name, src.name, (size_t)src.len + 1);
		g_ns_base(m, g, NS_RENAME);
		g->ns.parent = src.dir;
		g->ns.name = g->name;
		g->ns.name_len = src.len;
		g->ns.parent2 = parent2;
		g->ns.name2 = g->name2;
		g->ns.name2_len = (uint32_t)strlen(g->name2);
		m_dirent_del(m, (size_t)si);
		if (ti >= 0) {
			uint64_t victim = m->d[ti].ino;
			m_dirent_del(m, (size_t)ti);
			m_unlink_ino(m, victim);
		}
		m_dirent_add(m, (size_t)si, parent2, g->name2, src.ino);
		return true;
	}
	case W_UNLINK: {
		long si = m_pick_dirent(m, r, MT_REG);
		if (si < 0 || m_spare_hot(m, r, m->d[si].ino))
			return false;
		if (m->stress && rng_chance(r, 35)) {
			/* the file with the most appends (records, index pages);
			 * the hot file only once it had M_HOT_APPENDS */
			for (size_t i = 0; i < M_MAX_DIRENTS; i++) {
				uint64_t f = m->d[i].ino;
				if (m->d[i].used && m->type[f] == MT_REG && m->napp[f] > m->napp[m->d[si].ino] &&
				    !m_young_hot(m, f))
					si = (long)i;
			}
		}
		struct mdirent src = m->d[si];
		memcpy(g->name, src.name, (size_t)src.len + 1);
		g_ns_base(m, g, NS_UNLINK);
		g->ns.parent = src.dir;
		g->ns.name = g->name;
		g->ns.name_len = src.len;
		m_dirent_del(m, (size_t)si);
		m_unlink_ino(m, src.ino);
		return true;
	}
	default: { /* rmdir of an empty directory */
		long di = -1;
		for (size_t i = 0; i < M_MAX_DIRENTS && di < 0; i++) {
			if (!m->d[i].used || m->type[m->d[i].ino] != MT_DIR)
				continue;
			bool empty = true;
			for (size_t j = 0; j < M_MAX_DIRENTS && empty; j++)
				empty = !(m->d[j].used && m->d[j].dir == m->d[i].ino);
			if (empty)
				di = (long)i;
		}
		if (di < 0)
			return false;
		struct mdirent src = m->d[di];
		memcpy(g->name, src.name, (size_t)src.len + 1);
		g_ns_base(m, g, NS_RMDIR);
		g->ns.parent = src.dir;
		g->ns.name = g->name;
		g->ns.name_len = src.len;
		m_dirent_del(m, (size_t)di);
		m_inode_set(m, src.ino, MT_FREE, 0, 0);
		return true;
	}
	}
}

/* File sizes after the first p ops. */
static void m_sizes_at(const struct model *m, size_t p, uint64_t *sizes)
{
	memset(sizes, 0, sizeof(uint64_t) * M_MAX_INO);
	for (size_t i = 0; i < p; i++)
		if (m->ops[i].kind == MOP_DATA)
			sizes[m->ops[i].ino] = m->ops[i].off + m->ops[i].len;
}

/* -------------------------------------------------------- frame building */
/* Appends the frame of one record to buf (cap >= len + REC_HDR_MAX +
 * ZSTD_compressBound(len)). Returns bytes written or a negative errno. */
static BZ_UNUSED int frame_build(uint8_t *buf, size_t cap, uint8_t type, uint64_t ino, uint64_t off,
				 const void *raw, size_t len, bool try_zstd)
{
	struct rec_hdr h = { .type = type, .codec = REC_RAW, .ino = ino, .off = off, .raw_len = (uint32_t)len };
	uint8_t *tmp = NULL;
	const void *payload = raw;
	size_t stored = len;
	int hl, r;

	h.hash = rec_hash(raw, len);
	if (try_zstd && len > 32) {
		size_t b = ZSTD_compressBound(len);
		tmp = malloc(b);
		if (!tmp)
			return -ENOMEM;
		size_t z = ZSTD_compress(tmp, b, raw, len, 1);
		if (!ZSTD_isError(z) && z < len) {
			h.codec = REC_ZSTD;
			payload = tmp;
			stored = z;
		}
	}
	h.stored_len = (uint32_t)stored;
	hl = rec_hdr_encode(&h, buf, cap);
	if (hl < 0) {
		r = hl;
		goto out;
	}
	if ((size_t)hl + stored > cap) {
		r = -ENOSPC;
		goto out;
	}
	memcpy(buf + hl, payload, stored);
	r = hl + (int)stored;
out:
	free(tmp);
	return r;
}

/* Appends the frame of a hole record (REC_DATA, codec REC_HOLE: no
 * payload, raw_len zeros) to buf. Returns bytes written or a negative errno. */
static BZ_UNUSED int hole_frame_build(uint8_t *buf, size_t cap, uint64_t ino, uint64_t off, uint64_t len)
{
	struct rec_hdr h = { .type = REC_DATA, .codec = REC_HOLE, .ino = ino, .off = off, .raw_len = len,
			     .stored_len = 0, .hash = rec_hash(NULL, 0) };
	return rec_hdr_encode(&h, buf, cap);
}

/* ------------------------------------------------------ recovered state */
struct rstate {
	uint64_t sig;
	uint8_t type[M_MAX_INO];
	uint32_t nlink[M_MAX_INO];
	uint64_t size[M_MAX_INO];
	uint64_t attr_size[M_MAX_INO];
	uint64_t ninodes, ndirents;
	uint64_t size_mismatch; /* ns attr size != store_file_size (reported, not fatal) */
	char err[256];
};

static int rs_inode(void *arg, const struct ns_attr *a, const char *symlink, size_t symlink_len)
{
	struct rstate *r = arg;
	(void)symlink;
	(void)symlink_len;
	if (a->ino >= M_MAX_INO || a->ino == 0) {
		snprintf(r->err, sizeof(r->err), "unknown inode %" PRIu64, a->ino);
		return -EINVAL;
	}
	if (r->type[a->ino] != MT_FREE) {
		snprintf(r->err, sizeof(r->err), "inode %" PRIu64 " visited twice", a->ino);
		return -EINVAL;
	}
	if (S_ISDIR(a->mode)) {
		r->type[a->ino] = MT_DIR;
	} else if (S_ISREG(a->mode)) {
		r->type[a->ino] = MT_REG;
		r->nlink[a->ino] = a->nlink;
		r->attr_size[a->ino] = a->size;
	} else if (S_ISFIFO(a->mode) || S_ISCHR(a->mode)) {
		r->type[a->ino] = MT_SPECIAL;
		r->nlink[a->ino] = a->nlink;
		r->size[a->ino] = a->rdev;
	} else {
		snprintf(r->err, sizeof(r->err), "inode %" PRIu64 " has unexpected mode 0%o", a->ino, a->mode);
		return -EINVAL;
	}
	r->ninodes++;
	return 0;
}
static int rs_xattr(void *arg, uint64_t ino, const char *name, size_t name_len, const void *value,
		    size_t value_len)
{
	struct rstate *r = arg;
	char v[16];
	unsigned ver = 0;
	if (name_len != 6 || memcmp(name, "user.v", 6) != 0 || value_len < 2 || value_len >= sizeof(v)) {
		snprintf(r->err, sizeof(r->err), "inode %" PRIu64 ": unexpected attribute %.*s", ino, (int)name_len,
			 name);
		return -EINVAL;
	}
	memcpy(v, value, value_len);
	v[value_len] = 0;
	if (sscanf(v, "v%u", &ver) != 1 || ver == 0) {
		snprintf(r->err, sizeof(r->err), "inode %" PRIu64 ": bad attribute value %s", ino, v);
		return -EINVAL;
	}
	r->sig += h_xattr(ino, ver);
	return 0;
}
static int rs_dirent(void *arg, uint64_t dir, const char *name, size_t name_len, uint64_t ino)
{
	struct rstate *r = arg;
	r->sig += h_dirent(dir, name, name_len, ino);
	r->ndirents++;
	return 0;
}

/* Extracts the recovered state of s. Returns 0, or -EINVAL with r->err set. */
static BZ_UNUSED int rs_extract(struct store *s, struct rstate *r)
{
	struct ns *ns = NULL;
	struct ns_visit v = { .inode = rs_inode, .dirent = rs_dirent, .xattr = rs_xattr };
	int rc;

	memset(r, 0, offsetof(struct rstate, err));
	r->err[0] = 0;
	rc = store_ns_clone(s, &ns);
	if (rc < 0) {
		snprintf(r->err, sizeof(r->err), "store_ns_clone: %s", strerror(-rc));
		goto out;
	}
	rc = ns_walk(ns, &v, r);
	if (rc < 0) {
		if (!r->err[0])
			snprintf(r->err, sizeof(r->err), "ns_walk: %s", strerror(-rc));
		goto out;
	}
	for (uint64_t i = 1; i < M_MAX_INO; i++) {
		if (r->type[i] == MT_FREE)
			continue;
		if (r->type[i] == MT_REG) {
			uint64_t sz = 0;
			int e = store_file_size(s, i, &sz);
			if (e < 0 && e != -ENOENT) {
				snprintf(r->err, sizeof(r->err), "store_file_size(%" PRIu64 "): %s", i, strerror(-e));
				rc = -EINVAL;
				goto out;
			}
			r->size[i] = e < 0 ? 0 : sz;
			if (r->attr_size[i] != r->size[i])
				r->size_mismatch++;
		}
		r->sig += h_inode(i, r->type[i], r->nlink[i], r->size[i]);
	}
	if (r->type[NS_ROOT_INO] != MT_DIR) {
		snprintf(r->err, sizeof(r->err), "no root directory");
		rc = -EINVAL;
	}
out:
	ns_free(ns);
	return rc < 0 ? -EINVAL : 0;
}

/* Finds p in [lo, hi] with state(p) == r (or, when partial appends are
 * allowed, state(p) plus a prefix of data op p). Returns p or -1. */
static BZ_UNUSED long m_match(const struct model *m, const struct rstate *r, size_t lo, size_t hi)
{
	for (size_t p = lo; p <= hi; p++) {
		if (!m->bnd[p])
			continue;
		if (m->sig[p] == r->sig)
			return (long)p;
		if (m->all_bnd && p < hi && m->ops[p].kind == MOP_DATA && !m->ops[p].hole) {
			const struct mop *o = &m->ops[p];
			uint64_t f = o->ino, sz = r->size[f];
			if (r->type[f] == MT_REG && sz > o->off && sz < o->off + o->len) {
				uint64_t adj = r->sig - h_inode(f, MT_REG, r->nlink[f], sz) +
					       h_inode(f, MT_REG, r->nlink[f], o->off);
				if (adj == m->sig[p])
					return (long)p;
			}
		}
	}
	return -1;
}

/* Byte-exact check of every live regular file against the model. */
static BZ_UNUSED int m_check_content(const struct model *m, struct store *s, const struct rstate *r, char *why,
				     size_t cap)
{
	static __thread uint8_t buf[64 << 10];
	for (uint64_t i = 2; i < M_MAX_INO; i++) {
		if (r->type[i] != MT_REG)
			continue;
		const uint8_t *want = m->content[i];
		uint64_t size = r->size[i];
		if (!want && size) {
			snprintf(why, cap, "inode %" PRIu64 " has %" PRIu64 " bytes the model never wrote", i, size);
			return -EINVAL;
		}
		for (uint64_t off = 0; off <= size; off += sizeof(buf)) {
			size_t n = 0, want_n = (size_t)BZ_MIN((uint64_t)sizeof(buf), size - off);
			int rc = store_read(s, i, off, buf, sizeof(buf), &n);
			if (rc < 0) {
				snprintf(why, cap, "store_read(ino %" PRIu64 ", off %" PRIu64 "): %s", i, off,
					 strerror(-rc));
				return -EINVAL;
			}
			if (n != want_n) {
				snprintf(why, cap,
					 "store_read(ino %" PRIu64 ", off %" PRIu64 ") returned %zu bytes, file size %" PRIu64,
					 i, off, n, size);
				return -EINVAL;
			}
			if (n && memcmp(buf, want + off, n) != 0) {
				size_t k = 0;
				while (buf[k] == want[off + k])
					k++;
				snprintf(why, cap,
					 "inode %" PRIu64 " differs at byte %" PRIu64 " (got 0x%02x, want 0x%02x), size %" PRIu64,
					 i, off + k, buf[k], want[off + k], size);
				return -EINVAL;
			}
			if (n < sizeof(buf))
				break;
		}
	}
	return 0;
}

/* A short description of how r differs from the model at p (diagnostics). */
static BZ_UNUSED void m_diff(const struct model *m, const struct rstate *r, size_t p, const char *label)
{
	uint64_t sizes[M_MAX_INO];
	int shown = 0;
	m_sizes_at(m, p, sizes);
	printf("    vs model after %zu ops (%s):", p, label);
	for (uint64_t i = 2; i < M_MAX_INO && shown < 12; i++) {
		if (r->type[i] == MT_REG && r->size[i] != sizes[i]) {
			printf(" ino%" PRIu64 ":%" PRIu64 "(want %" PRIu64 ")", i, r->size[i], sizes[i]);
			shown++;
		}
	}
	printf("%s\n", shown ? "" : " sizes of recovered files agree (namespace differs)");
}

#endif
