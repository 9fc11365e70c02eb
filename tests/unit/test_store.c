/* test_store.c — the PageStore and engine API against memory, recording and
 * fault vfs backends: data and namespace survive close/reopen and crashes
 * at every mutating call of a checkpoint (plus torn writes), corruption is
 * detected (-EIO, never wrong bytes), the lock, refusing to reinitialize,
 * and that open does not read data pages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <pthread.h>
#include <zstd.h>

#include "storage/log.h"
#include "storage/pager.h"
#include "storage/record.h"
#include "storage/store.h"
#include "storage/wal.h"
#include "t.h"

/* ---- deterministic randomness ---- */
static uint64_t rng_state = 0x12345678;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* ---- the model ---- */
#define MAX_FILES 64
struct mfile {
	uint64_t ino;
	uint8_t *data;
	size_t len, cap;
	bool live;
};
struct model {
	struct mfile f[MAX_FILES];
	int n;
	struct ns *ns;
	int64_t now;
};

static void model_init(struct model *m)
{
	memset(m, 0, sizeof(*m));
	T_ASSERT(ns_new(&m->ns) == 0);
	m->now = 1000000000;
}

static void model_free(struct model *m)
{
	for (int i = 0; i < m->n; i++)
		free(m->f[i].data);
	ns_free(m->ns);
}

/* ---- batches ---- */
struct batch {
	uint8_t *p;
	size_t len, cap;
};

static void batch_put(struct batch *b, const void *src, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		T_ASSERT(b->p);
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

static void frame_add(struct batch *b, uint8_t type, uint64_t ino, uint64_t off, const void *raw, size_t len,
		      bool zstd)
{
	uint8_t hdr[REC_HDR_MAX];
	struct rec_hdr h = {.type = type, .codec = REC_RAW, .ino = ino, .off = off, .raw_len = (uint32_t)len};
	void *z = NULL;
	const void *payload = raw;
	size_t plen = len;

	h.hash = rec_hash(raw, len);
	if (zstd) {
		size_t cap = ZSTD_compressBound(len);
		z = malloc(cap);
		size_t zn = ZSTD_compress(z, cap, raw, len, 1);
		T_ASSERT(!ZSTD_isError(zn));
		if (zn < len) {
			h.codec = REC_ZSTD;
			payload = z;
			plen = zn;
		}
	}
	h.stored_len = (uint32_t)plen;
	int hl = rec_hdr_encode(&h, hdr, sizeof(hdr));
	T_ASSERT(hl > 0);
	batch_put(b, hdr, (size_t)hl);
	batch_put(b, payload, plen);
	free(z);
}

/* Adds a namespace op to the batch and applies it to the model. */
static int nsop_add(struct model *m, struct batch *b, struct ns_op *op)
{
	uint8_t buf[NSOP_MAX_LEN];
	op->ctime_ns = op->ctime_ns ? op->ctime_ns : m->now;
	int n = nsop_encode(op, buf, sizeof(buf));
	T_ASSERT(n > 0);
	frame_add(b, REC_NS, 0, 0, buf, (size_t)n, false);
	return ns_apply(m->ns, op);
}

static struct mfile *model_file(struct model *m, uint64_t ino)
{
	for (int i = 0; i < m->n; i++)
		if (m->f[i].ino == ino)
			return &m->f[i];
	return NULL;
}

static uint64_t mk_file(struct model *m, struct batch *b, uint64_t parent, const char *name)
{
	struct ns_op op = {.kind = NS_CREATE, .parent = parent, .name = name, .name_len = (uint32_t)strlen(name),
			   .mode = S_IFREG | 0644, .uid = 1, .gid = 2};
	op.ino = ns_alloc_ino(m->ns);
	op.atime_ns = op.mtime_ns = op.ctime_ns = m->now;
	T_ASSERT(nsop_add(m, b, &op) == 0);
	T_ASSERT(m->n < MAX_FILES);
	struct mfile *f = &m->f[m->n++];
	memset(f, 0, sizeof(*f));
	f->ino = op.ino;
	f->live = true;
	return op.ino;
}

/* A directory or an empty regular file (by mode) named name in parent, in
 * the batch and the model; not tracked as a file with data. */
static uint64_t mk_node(struct model *m, struct batch *b, uint64_t parent, const char *name, uint32_t mode)
{
	struct ns_op op = {.kind = S_ISDIR(mode) ? NS_MKDIR : NS_CREATE, .parent = parent, .name = name,
			   .name_len = (uint32_t)strlen(name), .mode = mode, .ino = ns_alloc_ino(m->ns)};
	T_ASSERT(nsop_add(m, b, &op) == 0);
	return op.ino;
}

static void fill(uint8_t *p, size_t n, uint64_t ino, uint64_t off, bool text)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t x = ino * 1315423911u + off + i;
		p[i] = text ? (uint8_t)("abcdefgh \n"[(x * 7 + (x >> 5)) % 10]) : (uint8_t)(x ^ (x >> 8) ^ (x >> 16));
	}
}

/* Appends len bytes to file f (frame in b; model updated). */
static void append_bytes(struct model *m, struct batch *b, struct mfile *f, uint8_t *p, size_t len, bool zstd)
{
	frame_add(b, REC_DATA, f->ino, f->len, p, len, zstd);
	if (f->len + len > f->cap) {
		f->cap = (f->len + len) * 2;
		f->data = realloc(f->data, f->cap);
	}
	memcpy(f->data + f->len, p, len);
	f->len += len;
	T_ASSERT(ns_set_size(m->ns, f->ino, f->len, m->now) == 0);
	free(p);
}

static void append(struct model *m, struct batch *b, struct mfile *f, size_t len, bool zstd)
{
	uint8_t *p = malloc(len);
	fill(p, len, f->ino, f->len, zstd);
	append_bytes(m, b, f, p, len, zstd);
}

/* Appends len (>= 300) bytes that compress to about 300: text, then 300
 * bytes of noise (a sealed chunk of >= chunk/2 raw bytes whose frame is
 * packed). */
static void append_packable(struct model *m, struct batch *b, struct mfile *f, size_t len)
{
	uint8_t *p = malloc(len);
	fill(p, len - 300, f->ino, f->len, true);
	fill(p + len - 300, 300, f->ino, f->len + len - 300, false);
	append_bytes(m, b, f, p, len, true);
}

static int commit(struct store *s, struct model *m, struct batch *b)
{
	uint64_t lsn;
	int r = store_wal_append(s, m->now, b->p, b->len, &lsn);
	if (r == 0)
		r = store_wal_sync(s);
	if (r == 0)
		r = store_apply(s, lsn, m->now, b->p, b->len);
	b->len = 0;
	m->now += 1000;
	return r;
}

/* ---- comparing ---- */
struct dump {
	char *p;
	size_t len, cap;
};
static void dump_put(struct dump *d, const char *s, size_t n)
{
	if (d->len + n + 1 > d->cap) {
		d->cap = (d->len + n + 1) * 2;
		d->p = realloc(d->p, d->cap);
	}
	memcpy(d->p + d->len, s, n);
	d->len += n;
	d->p[d->len] = 0;
}
static int dump_inode(void *arg, const struct ns_attr *a, const char *sl, size_t sl_len)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "I %llu %o %u %u %u %llu %lld %lld %lld %lld %x ",
			 (unsigned long long)a->ino, a->mode, a->uid, a->gid, a->nlink, (unsigned long long)a->size,
			 (long long)a->atime_ns, (long long)a->mtime_ns, (long long)a->ctime_ns, (long long)a->append_ns,
			 a->rdev);
	dump_put(arg, line, (size_t)n);
	if (sl)
		dump_put(arg, sl, sl_len);
	dump_put(arg, "\n", 1);
	return 0;
}
static int dump_dirent(void *arg, uint64_t dir, const char *name, size_t name_len, uint64_t ino)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "D %llu %llu ", (unsigned long long)dir, (unsigned long long)ino);
	dump_put(arg, line, (size_t)n);
	dump_put(arg, name, name_len);
	dump_put(arg, "\n", 1);
	return 0;
}
static int dump_xattr(void *arg, uint64_t ino, const char *name, size_t nlen, const void *val, size_t vlen)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "X %llu %zu ", (unsigned long long)ino, vlen);
	dump_put(arg, line, (size_t)n);
	dump_put(arg, name, nlen);
	dump_put(arg, "=", 1);
	for (size_t i = 0; i < vlen; i++) {
		n = snprintf(line, sizeof(line), "%02x", ((const uint8_t *)val)[i]);
		dump_put(arg, line, (size_t)n);
	}
	dump_put(arg, "\n", 1);
	return 0;
}
static char *ns_dump(struct ns *ns)
{
	struct dump d = {0};
	struct ns_visit v = {.inode = dump_inode, .dirent = dump_dirent, .xattr = dump_xattr};
	char line[64];
	int n = snprintf(line, sizeof(line), "next %llu\n", (unsigned long long)ns_next_ino(ns));
	dump_put(&d, line, (size_t)n);
	T_ASSERT(ns_walk(ns, &v, &d) == 0);
	return d.p;
}

/* Compares the store with the model: namespace, every file in full and
 * some random ranges. Returns the number of mismatches. */
static int verify(struct store *s, struct model *m, int random_reads)
{
	int bad = 0;
	struct ns *ns = NULL;

	if (store_ns_clone(s, &ns) != 0)
		return 1;
	char *a = ns_dump(ns), *b = ns_dump(m->ns);
	if (strcmp(a, b) != 0) {
		fprintf(stderr, "namespace differs:\n--- store\n%s--- model\n%s", a, b);
		bad++;
	}
	free(a);
	free(b);
	ns_free(ns);
	for (int i = 0; i < m->n; i++) {
		struct mfile *f = &m->f[i];
		uint64_t size = 0;
		if (!f->live) {
			if (store_file_size(s, f->ino, &size) != -ENOENT)
				bad++;
			continue;
		}
		if (store_file_size(s, f->ino, &size) != 0 || size != f->len) {
			fprintf(stderr, "ino %llu: size %llu, model %zu\n", (unsigned long long)f->ino,
				(unsigned long long)size, f->len);
			bad++;
			continue;
		}
		uint8_t *buf = malloc(f->len + 100);
		size_t n = 0;
		int r = store_read(s, f->ino, 0, buf, f->len + 100, &n);
		if (r != 0 || n != f->len || (f->len && memcmp(buf, f->data, f->len) != 0)) {
			fprintf(stderr, "ino %llu: full read r=%d n=%zu (model %zu)\n", (unsigned long long)f->ino, r,
				n, f->len);
			bad++;
		}
		for (int k = 0; k < random_reads && f->len; k++) {
			uint64_t off = rnd() % f->len;
			size_t len = (size_t)(rnd() % 9000) + 1;
			size_t want = (size_t)BZ_MIN((uint64_t)len, f->len - off);
			r = store_read(s, f->ino, off, buf, len, &n);
			if (r != 0 || n != want || memcmp(buf, f->data + off, want) != 0) {
				fprintf(stderr, "ino %llu: read at %llu len %zu: r=%d n=%zu\n",
					(unsigned long long)f->ino, (unsigned long long)off, len, r, n);
				bad++;
			}
		}
		free(buf);
	}
	return bad;
}

static void opts(struct store_opts *o, struct vfs *v)
{
	store_opts_default(o);
	o->vfs = v;
	o->wal_segment_bytes = 256 << 10;
	o->wal_segments = 4;
	o->cache_bytes = 64 << 10;
	o->chunk_bytes = 4096; /* records of >= 2 KiB are chunks; smaller ones gather in open chunks */
}

static int open_store(struct vfs *v, struct store **ret)
{
	struct store_opts o;
	opts(&o, v);
	return store_open(&o, ret);
}

/* A workload: nf files, rounds of batches with several frames of varied
 * sizes, raw and zstd, a checkpoint every ckpt_every rounds (0 = never). */
static void workload(struct store *s, struct model *m, int nf, int rounds, int ckpt_every)
{
	struct batch b = {0};
	for (int i = 0; i < nf; i++) {
		char name[32];
		snprintf(name, sizeof(name), "f%d", m->n);
		mk_file(m, &b, NS_ROOT_INO, name);
	}
	T_CHECK_EQ(commit(s, m, &b), 0);
	for (int r = 0; r < rounds; r++) {
		int frames = 1 + (int)(rnd() % 5);
		for (int k = 0; k < frames; k++) {
			struct mfile *f = &m->f[m->n - nf + (int)(rnd() % (uint64_t)nf)];
			static const size_t sizes[] = {1, 17, 100, 700, 4000, 4048, 4100, 9000, 20000};
			size_t len = sizes[rnd() % BZ_ARRAY_SIZE(sizes)];
			append(m, &b, f, len, rnd() % 2);
		}
		T_CHECK_EQ(commit(s, m, &b), 0);
		if (ckpt_every && r % ckpt_every == ckpt_every - 1)
			T_CHECK_EQ(store_checkpoint(s), 0);
	}
	free(b.p);
}

/* ---- tests ---- */

static void test_roundtrip(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	workload(s, &m, 6, 150, 40);
	T_CHECK_EQ(verify(s, &m, 20), 0);
	T_CHECK_EQ(store_close(s), 0);
	for (int i = 0; i < 2; i++) {
		T_ASSERT(open_store(v, &s) == 0);
		T_CHECK_EQ(verify(s, &m, 20), 0);
		if (i == 0) {
			workload(s, &m, 3, 40, 0); /* more data, closed by close's checkpoint */
			T_CHECK_EQ(verify(s, &m, 5), 0);
		}
		struct store_file_info fi;
		T_CHECK_EQ(store_file_info(s, m.f[0].ino, &fi), 0);
		T_CHECK_EQ(fi.raw_bytes, m.f[0].len);
		T_CHECK(fi.records > 0 && fi.stored_bytes > 0);
		T_CHECK_EQ(store_close(s), 0);
	}
	model_free(&m);
	vfs_destroy(v);
}

/* Replay: the WAL is synced but never checkpointed; the durable image of a
 * recording vfs (a power cut) must recover everything. */
static void test_replay(void)
{
	struct vfs *rec, *crash;
	struct store *s = NULL;
	struct model m;

	T_ASSERT(vfs_rec_new(&rec) == 0);
	model_init(&m);
	T_ASSERT(open_store(rec, &s) == 0);
	workload(s, &m, 4, 60, 25);
	struct vfs_crash c = {.keep = NULL, .torn_op = -1};
	T_ASSERT(vfs_rec_crash(rec, &c, &crash) == 0);
	store_close(s);
	vfs_destroy(rec);

	struct store_opts o;
	opts(&o, crash);
	o.read_only = true; /* replays into memory, never writes */
	T_ASSERT(store_open(&o, &s) == 0);
	struct store_stats st;
	store_stats(s, &st);
	T_CHECK(st.replayed_batches > 0);
	T_CHECK_EQ(verify(s, &m, 10), 0);
	T_CHECK_EQ(store_close(s), 0);
	for (int i = 0; i < 3; i++) { /* recovery, then recovery of the recovered store */
		T_ASSERT(open_store(crash, &s) == 0);
		T_CHECK_EQ(verify(s, &m, 10), 0);
		store_close(s);
	}
	model_free(&m);
	vfs_destroy(crash);
}

static void test_namespace(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	struct ns_op op = {.kind = NS_MKDIR, .parent = NS_ROOT_INO, .name = "dir", .name_len = 3,
			   .mode = S_IFDIR | 0750, .uid = 5, .gid = 6};
	op.ino = ns_alloc_ino(m.ns);
	uint64_t dir = op.ino;
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	uint64_t a = mk_file(&m, &b, dir, "a");
	uint64_t bb = mk_file(&m, &b, dir, "b");
	uint64_t c = mk_file(&m, &b, NS_ROOT_INO, "c");
	append(&m, &b, model_file(&m, a), 5000, false);
	append(&m, &b, model_file(&m, bb), 300, true);
	append(&m, &b, model_file(&m, c), 10, false);
	T_CHECK_EQ(commit(s, &m, &b), 0);
	op = (struct ns_op){.kind = NS_SYMLINK, .parent = dir, .name = "ln", .name_len = 2, .name2 = "../c", .mode = S_IFLNK | 0777,
			    .name2_len = 4, .uid = 7, .gid = 8};
	op.ino = ns_alloc_ino(m.ns);
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_LINK, .ino = a, .parent2 = NS_ROOT_INO, .name2 = "hard", .name2_len = 4};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_RENAME, .parent = dir, .name = "b", .name_len = 1, .parent2 = NS_ROOT_INO,
			    .name2 = "b2", .name2_len = 2};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_SETATTR, .ino = c, .flags = NS_SET_MODE | NS_SET_UID | NS_SET_MTIME,
			    .mode = S_IFREG | 0600, .uid = 42, .mtime_ns = 777};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_SETATTR, .ino = NS_ROOT_INO, .flags = NS_SET_MODE, .mode = S_IFDIR | 0711};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	/* touch -d of a file with data: mtime moves, the append clock (append_ns,
	 * stream version 3) does not, in the store as in the model */
	op = (struct ns_op){.kind = NS_SETATTR, .ino = bb, .flags = NS_SET_MTIME, .mtime_ns = 555};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	/* a setting of dir is inherited by a file created in it, in both */
	op = (struct ns_op){.kind = NS_SETXATTR, .ino = dir, .name = NS_XA_ZSTD_LEVEL,
			    .name_len = sizeof(NS_XA_ZSTD_LEVEL) - 1, .name2 = "19", .name2_len = 2};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	(void)mk_file(&m, &b, dir, "inherits");
	/* special files (rdev kept) and extended attributes (binary values) */
	op = (struct ns_op){.kind = NS_MKNOD, .parent = dir, .name = "fifo", .name_len = 4, .mode = S_IFIFO | 0640};
	op.ino = ns_alloc_ino(m.ns);
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_MKNOD, .parent = dir, .name = "dev", .name_len = 3, .mode = S_IFBLK | 0600,
			    .rdev = 0x80301};
	op.ino = ns_alloc_ino(m.ns);
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_SETXATTR, .ino = a, .name = "user.k", .name_len = 6, .name2 = "v\0\xff",
			    .name2_len = 3};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_SETXATTR, .ino = dir, .name = "trusted.t", .name_len = 9};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_SETXATTR, .ino = a, .name = "user.gone", .name_len = 9, .name2 = "x",
			    .name2_len = 1};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_REMOVEXATTR, .ino = a, .name = "user.gone", .name_len = 9};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_SETXATTR, .ino = a, .name = "user.k", .name_len = 6, .name2 = "new",
			    .name2_len = 3, .flags = NS_XATTR_CREATE};
	T_CHECK(nsop_add(&m, &b, &op) < 0); /* refused by both */
	/* unlink c: its data goes; a later data record for it is dropped */
	op = (struct ns_op){.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "c", .name_len = 1};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	model_file(&m, c)->live = false;
	frame_add(&b, REC_DATA, c, 10, "late", 4, false);
	/* an op that fails is skipped by the store too */
	op = (struct ns_op){.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "nope", .name_len = 4};
	T_CHECK(nsop_add(&m, &b, &op) < 0);
	T_CHECK_EQ(commit(s, &m, &b), 0);
	append(&m, &b, model_file(&m, a), 100, false);
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(verify(s, &m, 5), 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(open_store(v, &s) == 0);
	T_CHECK_EQ(verify(s, &m, 5), 0);
	/* the new store allocates inode numbers after the old ones */
	struct ns *clone = NULL;
	T_ASSERT(store_ns_clone(s, &clone) == 0);
	T_CHECK_EQ(ns_next_ino(clone), ns_next_ino(m.ns));
	ns_free(clone);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
}

/* Deleting files with full index pages frees those pages (after the next
 * checkpoint) and they get reused. */
static void test_free_pages(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_stats st;

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	uint64_t x = mk_file(&m, &b, NS_ROOT_INO, "x");
	T_CHECK_EQ(commit(s, &m, &b), 0);
	for (int i = 0; i < 400; i++) {
		append(&m, &b, model_file(&m, x), 2100, false); /* one chunk each */
		if (i % 20 == 19)
			T_CHECK_EQ(commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_close(s);
	T_ASSERT(open_store(v, &s) == 0);
	T_CHECK_EQ(verify(s, &m, 30), 0); /* lazily loads 3 index pages */
	struct ns_op op = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "x", .name_len = 1};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	model_file(&m, x)->live = false;
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_stats(s, &st);
	T_CHECK(st.pages_free >= 3);
	uint64_t total = st.pages_total;
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(verify(s, &m, 0), 0);
	store_stats(s, &st);
	T_CHECK(st.pages_total <= total + 1); /* chains reuse freed pages */
	store_close(s);
	T_ASSERT(open_store(v, &s) == 0);
	T_CHECK_EQ(verify(s, &m, 0), 0);
	store_close(s);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
}

/* Crash at every mutating call of a checkpoint; plus torn writes. */
static int recover_check(struct vfs *crash, struct model *m, const char *what, uint64_t k)
{
	struct store *s = NULL;
	int bad = 0;
	int r = open_store(crash, &s);
	if (r != 0) {
		fprintf(stderr, "crash %s k=%llu: open failed %d\n", what, (unsigned long long)k, r);
		return 1;
	}
	bad += verify(s, m, 2);
	bad += store_close(s) != 0;
	T_ASSERT(open_store(crash, &s) == 0); /* recovery is idempotent */
	bad += verify(s, m, 0);
	store_close(s);
	if (bad)
		fprintf(stderr, "crash %s k=%llu: %d mismatches\n", what, (unsigned long long)k, bad);
	return bad;
}

static void test_crash_checkpoint(void)
{
	uint64_t states = 0;
	bool finished = false;

	for (uint64_t k = 1; !finished && k < 200; k++) {
		struct vfs *rec, *fault, *crash;
		struct store *s = NULL;
		struct model m;

		rng_state = 777;
		model_init(&m);
		T_ASSERT(vfs_rec_new(&rec) == 0);
		T_ASSERT(vfs_fault_new(rec, &fault) == 0);
		T_ASSERT(open_store(fault, &s) == 0);
		workload(s, &m, 3, 12, 5); /* a checkpointed base plus a WAL tail */
		workload(s, &m, 30, 20, 0); /* many files: a multi-page namespace chain */
		struct batch b = {0};
		struct ns_op op = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "f0", .name_len = 2};
		T_CHECK_EQ(nsop_add(&m, &b, &op), 0); /* a dead index chain to release */
		m.f[0].live = false;
		append(&m, &b, &m.f[1], 100, false);
		T_CHECK_EQ(commit(s, &m, &b), 0);
		free(b.p);
		struct vfs_fault_spec spec = {.fail_at = k, .mode = VFS_FAULT_EIO, .persistent = true};
		vfs_fault_arm(fault, &spec);
		int r = store_checkpoint(s);
		finished = r == 0;
		store_close(s);

		size_t np = vfs_rec_pending(rec);
		uint8_t *keep = calloc(np + 1, 1);
		struct vfs_crash c = {.keep = NULL, .torn_op = -1};
		T_ASSERT(vfs_rec_crash(rec, &c, &crash) == 0);
		T_CHECK_EQ(recover_check(crash, &m, "durable", k), 0);
		vfs_destroy(crash);
		states++;
		/* every pending op reached the disk */
		memset(keep, 1, np);
		c = (struct vfs_crash){.keep = keep, .n_keep = np, .torn_op = -1};
		T_ASSERT(vfs_rec_crash(rec, &c, &crash) == 0);
		T_CHECK_EQ(recover_check(crash, &m, "all", k), 0);
		vfs_destroy(crash);
		states++;
		/* any single pending op alone, and all but one (reordering) */
		for (size_t i = 0; i < np; i++) {
			for (int mode = 0; mode < 2; mode++) {
				for (size_t j = 0; j < np; j++)
					keep[j] = mode ? (j != i) : (j == i);
				c = (struct vfs_crash){.keep = keep, .n_keep = np, .torn_op = -1};
				T_ASSERT(vfs_rec_crash(rec, &c, &crash) == 0);
				T_CHECK_EQ(recover_check(crash, &m, mode ? "all but one" : "only one", k), 0);
				vfs_destroy(crash);
				states++;
			}
		}
		/* prefixes ending in a torn write to store.db */
		for (size_t i = 0; i < np; i++) {
			struct vfs_rec_op op;
			T_ASSERT(vfs_rec_op_get(rec, i, &op) == 0);
			if (op.kind != VFS_REC_WRITE || strcmp(op.name, "store.db") != 0 || op.len < 1024)
				continue;
			for (size_t j = 0; j < np; j++)
				keep[j] = j <= i;
			c = (struct vfs_crash){.keep = keep, .n_keep = np, .torn_op = (long)i,
					       .torn_at = 512 * (1 + (k + i) % 7), .torn_fill = (k + i) % 3,
					       .seed = k * 1000 + i};
			T_ASSERT(vfs_rec_crash(rec, &c, &crash) == 0);
			T_CHECK_EQ(recover_check(crash, &m, "torn", k), 0);
			vfs_destroy(crash);
			states++;
		}
		free(keep);
		vfs_destroy(fault);
		vfs_destroy(rec);
		model_free(&m);
	}
	T_CHECK(finished);
	fprintf(stderr, "crash states checked: %llu\n", (unsigned long long)states);
}

static int flip_byte_at_marker(struct vfs *v, const uint8_t *marker, size_t mlen)
{
	struct vfs_file *f;
	uint64_t size;
	int found = 0;
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDWR, &f) == 0);
	T_ASSERT(vfs_size(f, &size) == 0);
	uint8_t *img = malloc(size);
	size_t n;
	T_ASSERT(vfs_pread(f, img, size, 0, &n) == 0 && n == size);
	for (size_t i = 0; i + mlen <= size; i++) {
		if (memcmp(img + i, marker, mlen) == 0) {
			img[i + mlen / 2] ^= 0x20;
			T_ASSERT(vfs_pwrite(f, img + i + mlen / 2, 1, i + mlen / 2) == 0);
			found = 1;
			break;
		}
	}
	free(img);
	vfs_close(f);
	return found;
}

static void test_corruption(void)
{
	struct vfs *v;
	struct store *s = NULL, *s2 = NULL;
	struct model m;
	struct batch b = {0};

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	/* a second open of the same store is refused */
	T_CHECK_EQ(open_store(v, &s2), -EBUSY);
	uint64_t a = mk_file(&m, &b, NS_ROOT_INO, "a");
	uint64_t c = mk_file(&m, &b, NS_ROOT_INO, "c");
	T_CHECK_EQ(commit(s, &m, &b), 0);
	append(&m, &b, model_file(&m, a), 12000, false); /* raw: findable in the image */
	T_CHECK_EQ(commit(s, &m, &b), 0);
	append(&m, &b, model_file(&m, c), 6000, false);
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_close(s), 0);

	T_CHECK(flip_byte_at_marker(v, model_file(&m, a)->data + 5000, 64));
	T_ASSERT(open_store(v, &s) == 0);
	uint8_t *buf = malloc(20000);
	size_t n;
	T_CHECK_EQ(store_read(s, a, 0, buf, 20000, &n), -EIO);
	T_CHECK_EQ(store_read(s, a, 4900, buf, 200, &n), -EIO);
	T_CHECK_EQ(store_read(s, c, 0, buf, 20000, &n), 0);
	T_CHECK_EQ(n, 6000);
	T_CHECK(memcmp(buf, model_file(&m, c)->data, 6000) == 0);
	struct store_stats st;
	store_stats(s, &st);
	T_CHECK(st.checksum_errors > 0);
	store_close(s);
	free(buf);

	/* both superblocks corrupt: refused, not reinitialized */
	struct vfs_file *f;
	uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDWR, &f) == 0);
	T_ASSERT(vfs_pwrite(f, junk, 8, 100) == 0);
	T_ASSERT(vfs_pwrite(f, junk, 8, 4096 + 100) == 0);
	uint64_t size_before, size_after;
	T_ASSERT(vfs_size(f, &size_before) == 0);
	T_CHECK_EQ(open_store(v, &s), -EUCLEAN);
	T_ASSERT(vfs_size(f, &size_after) == 0);
	T_CHECK_EQ(size_before, size_after);
	uint8_t chk[8];
	T_ASSERT(vfs_pread(f, chk, 8, 100, &n) == 0);
	T_CHECK(memcmp(chk, junk, 8) == 0);
	vfs_close(f);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
}

/* Open must not read data: preads at open are about the same for a store
 * with few and with many records. */
static uint64_t open_preads(int records)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		mk_file(&m, &b, NS_ROOT_INO, name);
	}
	T_CHECK_EQ(commit(s, &m, &b), 0);
	for (int i = 0; i < records; i++) {
		append(&m, &b, &m.f[i % 4], 100, true);
		if (i % 64 == 63 || i == records - 1) {
			T_CHECK_EQ(commit(s, &m, &b), 0);
			if (store_need_checkpoint(s))
				T_CHECK_EQ(store_checkpoint(s), 0);
		}
	}
	T_CHECK_EQ(store_close(s), 0);
	uint64_t before = vfs_count(v, VFS_OP_PREAD);
	T_ASSERT(open_store(v, &s) == 0);
	uint64_t preads = vfs_count(v, VFS_OP_PREAD) - before;
	T_CHECK_EQ(verify(s, &m, 3), 0);
	store_close(s);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
	return preads;
}

static void test_open_cost(void)
{
	uint64_t small = open_preads(100), big = open_preads(20000);
	fprintf(stderr, "preads at open: 100 records %llu, 20000 records %llu\n", (unsigned long long)small,
		(unsigned long long)big);
	T_CHECK(big <= small + 4);
}

/* A crash at every mutating call of recovery itself (replay + its
 * checkpoint) recovers to the same state. */
static void test_crash_recovery(void)
{
	struct vfs *rec, *base;
	struct store *s = NULL;
	struct model m;
	uint64_t states = 0;
	bool finished = false;

	rng_state = 4242;
	model_init(&m);
	T_ASSERT(vfs_rec_new(&rec) == 0);
	T_ASSERT(open_store(rec, &s) == 0);
	workload(s, &m, 3, 37, 10); /* checkpoints, then a WAL tail of 7 batches */
	struct vfs_crash c = {.keep = NULL, .torn_op = -1};
	T_ASSERT(vfs_rec_crash(rec, &c, &base) == 0);
	store_close(s);
	vfs_destroy(rec);
	for (uint64_t k = 1; !finished && k < 400; k++) {
		struct vfs *rec2, *fault, *crash;
		T_ASSERT(vfs_rec_from(base, &rec2) == 0);
		T_ASSERT(vfs_fault_new(rec2, &fault) == 0);
		struct vfs_fault_spec spec = {.fail_at = k, .mode = VFS_FAULT_EIO, .persistent = true};
		vfs_fault_arm(fault, &spec);
		s = NULL;
		int r = open_store(fault, &s);
		finished = r == 0;
		if (r == 0) {
			T_CHECK_EQ(verify(s, &m, 0), 0);
			store_close(s);
		}
		T_ASSERT(vfs_rec_crash(rec2, &c, &crash) == 0);
		T_CHECK_EQ(recover_check(crash, &m, "in recovery", k), 0);
		vfs_destroy(crash);
		states++;
		size_t np = vfs_rec_pending(rec2);
		uint8_t *keep = malloc(np + 1);
		memset(keep, 1, np + 1);
		struct vfs_crash all = {.keep = keep, .n_keep = np, .torn_op = -1};
		T_ASSERT(vfs_rec_crash(rec2, &all, &crash) == 0);
		T_CHECK_EQ(recover_check(crash, &m, "in recovery, all", k), 0);
		vfs_destroy(crash);
		states++;
		free(keep);
		vfs_destroy(fault);
		vfs_destroy(rec2);
	}
	T_CHECK(finished);
	fprintf(stderr, "crash-in-recovery states checked: %llu\n", (unsigned long long)states);
	vfs_destroy(base);
	model_free(&m);
}

/* Readers on other threads while the commit path appends and checkpoints:
 * every byte read equals what was appended (content is a function of the
 * position). */
struct reader_arg {
	struct store *s;
	uint64_t ino[3];
	int stop; /* __atomic */
	int errors;
	uint64_t reads;
};

static void *reader_main(void *p)
{
	struct reader_arg *a = p;
	uint64_t seed = (uint64_t)(uintptr_t)p | 1;
	uint8_t *buf = malloc(10000), *want = malloc(10000);
	while (!__atomic_load_n(&a->stop, __ATOMIC_RELAXED)) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		uint64_t ino = a->ino[seed % 3], size = 0;
		size_t n = 0;
		if (store_file_size(a->s, ino, &size) != 0) {
			a->errors++;
			continue;
		}
		if (!size)
			continue;
		uint64_t off = (seed >> 8) % size;
		size_t len = (size_t)((seed >> 40) % 10000) + 1;
		if (store_read(a->s, ino, off, buf, len, &n) != 0 || n == 0 || n > len) {
			a->errors++;
			continue;
		}
		fill(want, n, ino, off, false);
		if (memcmp(buf, want, n) != 0)
			a->errors++;
		a->reads++;
	}
	free(buf);
	free(want);
	return NULL;
}

static void test_concurrent_reads(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	pthread_t th[2];

	rng_state = 99;
	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	struct reader_arg a = {.s = s};
	for (int i = 0; i < 3; i++) {
		char name[8] = {'c', (char)('0' + i), 0};
		a.ino[i] = mk_file(&m, &b, NS_ROOT_INO, name);
	}
	T_CHECK_EQ(commit(s, &m, &b), 0);
	for (int r = 0; r < 1200; r++) { /* > 1024 records per file: over the index budget */
		append(&m, &b, &m.f[r % 3], 1 + (size_t)(rnd() % 100), false);
		if (r % 16 == 15)
			T_CHECK_EQ(commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(open_store(v, &s) == 0); /* readers now load indexes lazily */
	a.s = s;
	struct reader_arg args[2] = {a, a};
	for (int i = 0; i < 2; i++)
		T_ASSERT(pthread_create(&th[i], NULL, reader_main, &args[i]) == 0);
	for (int r = 0; r < 400; r++) {
		for (int k = 0; k < 3; k++)
			append(&m, &b, &m.f[rnd() % 3], 1 + (size_t)(rnd() % 6000), false);
		T_CHECK_EQ(commit(s, &m, &b), 0);
		if (r % 50 == 49)
			T_CHECK_EQ(store_checkpoint(s), 0);
	}
	for (int i = 0; i < 2; i++) {
		__atomic_store_n(&args[i].stop, 1, __ATOMIC_RELAXED);
		pthread_join(th[i], NULL);
		T_CHECK_EQ(args[i].errors, 0);
	}
	fprintf(stderr, "concurrent reads: %llu + %llu\n", (unsigned long long)args[0].reads,
		(unsigned long long)args[1].reads);
	T_CHECK_EQ(verify(s, &m, 10), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
}

/* Random byte flips in store.db: open fails cleanly or every read returns
 * -EIO or bytes equal to a prefix of what was written — never wrong bytes. */
static void test_random_corruption(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	int opened = 0, eio = 0;

	rng_state = 31337;
	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	workload(s, &m, 4, 40, 15);
	T_CHECK_EQ(store_close(s), 0);
	struct vfs_file *f;
	uint64_t size;
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDONLY, &f) == 0);
	T_ASSERT(vfs_size(f, &size) == 0);
	vfs_close(f);
	enum bz_log_level saved = bz_log_get_level();
	bz_log_set_level((enum bz_log_level)-1); /* hundreds of expected checksum errors */
	for (int it = 0; it < 300; it++) {
		struct vfs *c;
		T_ASSERT(vfs_mem_clone(v, &c) == 0);
		T_ASSERT(vfs_open(c, "store.db", VFS_O_RDWR, &f) == 0);
		for (int k = 0; k < 1 + it % 3; k++) {
			uint64_t off = rnd() % size;
			uint8_t byte;
			size_t n;
			T_ASSERT(vfs_pread(f, &byte, 1, off, &n) == 0 && n == 1);
			byte ^= (uint8_t)(1u << (rnd() % 8));
			T_ASSERT(vfs_pwrite(f, &byte, 1, off) == 0);
		}
		vfs_close(f);
		struct store_opts o;
		opts(&o, c);
		o.read_only = true;
		s = NULL;
		if (store_open(&o, &s) == 0) {
			opened++;
			for (int i = 0; i < m.n; i++) {
				struct mfile *mf = &m.f[i];
				uint8_t *buf = malloc(mf->len + 1);
				size_t n = 0;
				int r = store_read(s, mf->ino, 0, buf, mf->len + 1, &n);
				if (r == -EIO || r == -ENOENT)
					eio++;
				else
					T_CHECK(r == 0 && n <= mf->len && (!n || memcmp(buf, mf->data, n) == 0));
				free(buf);
			}
			store_close(s);
		}
		vfs_destroy(c);
	}
	bz_log_set_level(saved);
	fprintf(stderr, "random corruption: %d of 300 opened, %d reads refused\n", opened, eio);
	T_CHECK(opened > 0);
	model_free(&m);
	vfs_destroy(v);
}

/* One failing I/O call (EIO, ENOSPC, short write) at every mutating call k
 * of a workload: the failure is reported, the store stays failed (-EIO),
 * close does not hang, and a reopen of what is on disk yields files that
 * are prefixes of what was written. */
static int fault_workload(struct store *s, struct model *m)
{
	struct batch b = {0};
	int r = 0;
	for (int i = 0; i < 3 && r == 0; i++) {
		char name[8] = {'q', (char)('0' + i), 0};
		mk_file(m, &b, NS_ROOT_INO, name);
	}
	r = commit(s, m, &b);
	for (int round = 0; round < 20 && r == 0; round++) {
		for (int k = 0; k < 3; k++)
			append(m, &b, &m->f[rnd() % 3], 1 + (size_t)(rnd() % 9000), rnd() % 2);
		r = commit(s, m, &b);
		if (r == 0 && round % 7 == 6)
			r = store_checkpoint(s);
	}
	free(b.p);
	return r;
}

static void test_faults(void)
{
	uint64_t total = 0;
	int cases = 0;

	for (int mode = VFS_FAULT_EIO; mode <= VFS_FAULT_SHORT; mode++) {
		for (uint64_t k = 1;; k++) {
			struct vfs *mem, *fault;
			struct store *s = NULL;
			struct model m;
			rng_state = 555;
			model_init(&m);
			T_ASSERT(vfs_mem_new(&mem) == 0);
			T_ASSERT(vfs_fault_new(mem, &fault) == 0);
			T_ASSERT(open_store(fault, &s) == 0);
			struct vfs_fault_spec spec = {.fail_at = k, .mode = (enum vfs_fault_mode)mode};
			vfs_fault_arm(fault, &spec);
			int r = fault_workload(s, &m);
			bool hit = vfs_fault_injected(fault) > 0;
			if (!hit)
				total = vfs_fault_calls(fault);
			if (hit) {
				T_CHECK(r < 0);
				uint64_t lsn;
				T_CHECK_EQ(store_wal_append(s, 0, "x", 1, &lsn), -EIO);
				T_CHECK_EQ(store_checkpoint(s), -EIO);
				struct store_stats st;
				store_stats(s, &st);
				T_CHECK(st.error < 0);
			} else {
				T_CHECK_EQ(r, 0);
			}
			store_close(s);
			vfs_destroy(fault);
			/* what is on the disk now recovers to prefixes */
			T_ASSERT(open_store(mem, &s) == 0);
			for (int i = 0; i < m.n; i++) {
				struct mfile *f = &m.f[i];
				uint8_t *buf = malloc(f->len + 1);
				size_t n = 0;
				int rr = store_read(s, f->ino, 0, buf, f->len + 1, &n);
				T_CHECK(rr == -ENOENT || (rr == 0 && n <= f->len && (!n || memcmp(buf, f->data, n) == 0)));
				free(buf);
			}
			store_close(s);
			vfs_destroy(mem);
			model_free(&m);
			cases++;
			if (!hit)
				break;
		}
	}
	fprintf(stderr, "fault cases: %d (workload makes %llu mutating calls)\n", cases, (unsigned long long)total);
}

/* A store directory with WAL segments that hold committed batches but no
 * store.db (an operator deleted or moved it) is refused, and the log is
 * left as it was; segments without any written header (a creation
 * interrupted before store.db was renamed into place) are recreated. */
static void test_missing_db(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct wal_probe_info pi;

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	workload(s, &m, 2, 20, 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(vfs_unlink(v, "store.db") == 0);
	s = NULL;
	T_CHECK_EQ(open_store(v, &s), -EUCLEAN);
	T_CHECK(s == NULL);
	T_ASSERT(wal_probe_dir(v, &pi) == 0);
	T_CHECK_EQ(pi.files, 4);
	T_CHECK(pi.with_header > 0); /* not zeroed */
	T_CHECK_EQ(vfs_open(v, "store.db", VFS_O_RDONLY, &(struct vfs_file *){NULL}), -ENOENT);
	model_free(&m);
	vfs_destroy(v);

	/* an interrupted creation: segments written, no header, no store.db */
	struct wal_opts wo = {.segment_bytes = 256 << 10, .segments = 4};
	struct wal_pos pos;
	T_ASSERT(vfs_mem_new(&v) == 0);
	T_ASSERT(wal_create(v, &wo, &pos) == 0);
	T_ASSERT(wal_probe_dir(v, &pi) == 0);
	T_CHECK_EQ(pi.files, 4);
	T_CHECK_EQ(pi.with_header, 0);
	T_CHECK_EQ(open_store(v, &s), 0);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
}

/* store_space: the disk growth a checkpoint can need is bounded before it
 * happens (namespace growth included: symlink targets, names, index tails),
 * and free pages left over count as spare once the namespace shrinks. */
static void test_space_bound(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_stats st0, st1;
	uint64_t need = 0, spare = 0;
	char target[4000], name[32];

	memset(target, 'x', sizeof(target));
	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	workload(s, &m, 3, 30, 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	for (int round = 0; round < 3; round++) {
		uint64_t need0;
		store_space(s, &need0, &spare);
		for (int i = 0; i < 20; i++) {
			for (int k = 0; k < 6; k++) {
				snprintf(name, sizeof(name), "sym%d.%d.%d", round, i, k);
				struct ns_op op = {.kind = NS_SYMLINK, .parent = NS_ROOT_INO, .name = name,
						   .name_len = (uint32_t)strlen(name), .name2 = target,
						   .name2_len = (uint32_t)(sizeof(target) - (size_t)k),
						   .mode = S_IFLNK | 0777, .uid = 1, .gid = 2};
				op.ino = ns_alloc_ino(m.ns);
				op.atime_ns = op.mtime_ns = op.ctime_ns = m.now;
				T_ASSERT(nsop_add(&m, &b, &op) == 0);
			}
			T_ASSERT(commit(s, &m, &b) == 0);
		}
		store_space(s, &need, &spare);
		store_stats(s, &st0);
		T_CHECK(need >= need0 + 120u * 4000); /* grows with the namespace before any checkpoint */
		T_CHECK_EQ(store_checkpoint(s), 0);
		store_stats(s, &st1);
		/* what the checkpoint really grew store.db by is within the bound */
		T_CHECK((st1.pages_total - st0.pages_total) * st0.page_size <= need);
	}
	/* remove most of it: after two checkpoints the old chains' pages are
	 * free, more than the next checkpoint needs: spare space inside
	 * store.db or space given back to the disk (format 2), no need */
	struct store_stats before;
	store_stats(s, &before);
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 20; i++)
			for (int k = 0; k < 6; k++) {
				snprintf(name, sizeof(name), "sym%d.%d.%d", round, i, k);
				struct ns_op op = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = name,
						   .name_len = (uint32_t)strlen(name)};
				T_ASSERT(nsop_add(&m, &b, &op) == 0);
				if (b.len > 8000)
					T_ASSERT(commit(s, &m, &b) == 0);
			}
	T_ASSERT(commit(s, &m, &b) == 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_space(s, &need, &spare);
	store_stats(s, &st1);
	/* what is given back is no longer spare: the next checkpoint may grow
	 * store.db again by its own bound (the run, the open page, a small
	 * chain), never by what was freed */
	T_CHECK(need <= 80u * 4096);
	T_CHECK(spare + (before.pages_total - st1.pages_total) * st1.page_size > 240u * 4000);
	T_CHECK(st1.store_db_truncations > 0);
	T_CHECK(!store_need_checkpoint(s));
	T_CHECK_EQ(verify(s, &m, 5), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
}

/* The commit thread never waits for a reader's decompression: with a
 * reader parked inside the decode of a record (test hook, no lock held),
 * store_apply of new batches, a checkpoint and a first read of another
 * file's whole index all complete. */
struct park {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int parked, release, applied;
};
static struct park g_park = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

static void park_hook(void *arg, uint64_t ino, uint64_t off)
{
	struct park *k = arg;
	(void)ino;
	(void)off;
	pthread_mutex_lock(&k->mu);
	k->parked = 1;
	pthread_cond_broadcast(&k->cv);
	while (!k->release)
		pthread_cond_wait(&k->cv, &k->mu);
	pthread_mutex_unlock(&k->mu);
}

struct parked_reader {
	struct store *s;
	uint64_t ino;
	size_t len;
	uint8_t *buf;
	int r;
};

static void *parked_reader_main(void *arg)
{
	struct parked_reader *pr = arg;
	size_t n = 0;
	pr->r = store_read(pr->s, pr->ino, 0, pr->buf, pr->len, &n);
	if (pr->r == 0 && n != pr->len)
		pr->r = -EIO;
	return NULL;
}

struct applier {
	struct store *s;
	struct model *m;
	struct batch *b;
	int r;
};

static void *applier_main(void *arg)
{
	struct applier *ap = arg;
	for (int i = 0; i < 20 && ap->r == 0; i++) {
		append(ap->m, ap->b, &ap->m->f[1], 3000, true);
		ap->r = commit(ap->s, ap->m, ap->b);
	}
	if (ap->r == 0)
		ap->r = store_checkpoint(ap->s);
	pthread_mutex_lock(&g_park.mu);
	g_park.applied = 1;
	pthread_cond_broadcast(&g_park.cv);
	pthread_mutex_unlock(&g_park.mu);
	return NULL;
}

static void test_reader_never_blocks_commit(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	pthread_t rt, at;

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	mk_file(&m, &b, NS_ROOT_INO, "big");
	mk_file(&m, &b, NS_ROOT_INO, "other");
	T_CHECK_EQ(commit(s, &m, &b), 0);
	for (int i = 0; i < 300; i++) { /* > 126 records: index pages, loaded lazily after reopen */
		append(&m, &b, &m.f[i % 2], 2000, true);
		T_CHECK_EQ(commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(open_store(v, &s) == 0);

	struct store_test_hooks h = {.arg = &g_park, .before_decode = park_hook};
	store_set_test_hooks(&h);
	struct parked_reader pr = {.s = s, .ino = m.f[0].ino, .len = m.f[0].len};
	pr.buf = malloc(pr.len);
	T_ASSERT(pr.buf && pthread_create(&rt, NULL, parked_reader_main, &pr) == 0);
	pthread_mutex_lock(&g_park.mu);
	while (!g_park.parked)
		pthread_cond_wait(&g_park.cv, &g_park.mu);
	pthread_mutex_unlock(&g_park.mu);
	store_set_test_hooks(NULL); /* only the first reader parks (set before it ran; it copied nothing) */

	struct applier ap = {.s = s, .m = &m, .b = &b};
	T_ASSERT(pthread_create(&at, NULL, applier_main, &ap) == 0);
	/* A generous bound only to turn a deadlock into a failure, not a timing
	 * check: the applier needs no reader to make progress. */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 120;
	pthread_mutex_lock(&g_park.mu);
	while (!g_park.applied && pthread_cond_timedwait(&g_park.cv, &g_park.mu, &until) == 0)
		;
	int applied = g_park.applied;
	g_park.release = 1; /* let the reader go either way */
	pthread_cond_broadcast(&g_park.cv);
	pthread_mutex_unlock(&g_park.mu);
	T_CHECK(applied); /* store_apply + checkpoint completed while the reader was parked */
	pthread_join(at, NULL);
	pthread_join(rt, NULL);
	T_CHECK_EQ(ap.r, 0);
	T_CHECK_EQ(pr.r, 0);
	T_CHECK(memcmp(pr.buf, m.f[0].data, pr.len) == 0);
	T_CHECK_EQ(verify(s, &m, 5), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(pr.buf);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
}


/* ---- format 2: reclaimed extents, store.db given back, holes, v1 refused ---- */

static uint64_t db_size(struct vfs *v)
{
	struct vfs_file *f = NULL;
	uint64_t n = 0;
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDONLY, &f) == 0);
	T_ASSERT(vfs_size(f, &n) == 0);
	vfs_close(f);
	return n;
}

/* Deleting a file frees its extents (frames of more than one page: here
 * 20000 incompressible bytes each, with full index pages), the space is
 * reused before store.db grows, and free space at its end is given back
 * to the disk after a checkpoint. */
static void test_reclaim(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_stats st0, st1, st2;

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	uint64_t keep = mk_file(&m, &b, NS_ROOT_INO, "keep");
	T_CHECK_EQ(commit(s, &m, &b), 0);
	append(&m, &b, model_file(&m, keep), 3000, true);
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	uint64_t base = db_size(v);
	for (int round = 0; round < 3; round++) {
		char name[16];
		snprintf(name, sizeof(name), "big%d", round);
		uint64_t x = mk_file(&m, &b, NS_ROOT_INO, name);
		T_CHECK_EQ(commit(s, &m, &b), 0);
		for (int i = 0; i < 150; i++) { /* 150 entries: a full index page and a tail */
			append(&m, &b, model_file(&m, x), 20000, false);
			if (i % 5 == 4) {
				T_CHECK_EQ(commit(s, &m, &b), 0);
				T_CHECK_EQ(store_checkpoint(s), 0); /* the test's WAL is 1 MiB */
			}
		}
		T_CHECK_EQ(store_checkpoint(s), 0);
		store_stats(s, &st0);
		T_CHECK(st0.pages_total * 4096 >= 150u * 20000);
		T_CHECK_EQ(verify(s, &m, 20), 0);
		struct ns_op op = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = name,
				   .name_len = (uint32_t)strlen(name)};
		T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
		model_file(&m, x)->live = false;
		T_CHECK(!store_need_checkpoint(s));
		T_CHECK_EQ(commit(s, &m, &b), 0);
		/* the deleted file holds most of store.db: a checkpoint is due
		 * (its space is reusable only after one) */
		T_CHECK(store_need_checkpoint(s));
		/* the checkpoint that drops the file releases its pages; they
		 * are free once it is durable; the next one gives them back */
		T_CHECK_EQ(store_checkpoint(s), 0);
		T_CHECK_EQ(store_checkpoint(s), 0);
		store_stats(s, &st1);
		T_CHECK(st1.pages_released >= 150u * 5);
		T_CHECK(db_size(v) <= base + 16 * 4096);
		T_CHECK(st1.pages_total * 4096 == db_size(v));
		T_CHECK_EQ(verify(s, &m, 5), 0);
	}
	/* a free extent in the middle: with "late" written after "mid",
	 * deleting "mid" leaves a hole; relocation moves "late" (at the end)
	 * into it (store_reloc.c) and the end is cut; "again" then takes the
	 * rest of the hole before store.db grows */
	uint64_t mid = mk_file(&m, &b, NS_ROOT_INO, "mid");
	T_CHECK_EQ(commit(s, &m, &b), 0);
	for (int i = 0; i < 20; i++) {
		append(&m, &b, model_file(&m, mid), 20000, false);
		if (i % 5 == 4) {
			T_CHECK_EQ(commit(s, &m, &b), 0);
			T_CHECK_EQ(store_checkpoint(s), 0);
		}
	}
	uint64_t late = mk_file(&m, &b, NS_ROOT_INO, "late");
	T_CHECK_EQ(commit(s, &m, &b), 0);
	append(&m, &b, model_file(&m, late), 9000, false);
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	struct ns_op op = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "mid", .name_len = 3};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	model_file(&m, mid)->live = false;
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_stats(s, &st1);
	/* either "late" moved down into the hole, or first fit had already
	 * placed it below (the namespace trees' roots no longer pin the end,
	 * so the earlier rounds gave all their space back): either way the
	 * end is cut to what keep, late and the metadata need */
	T_CHECK(st1.pages_relocated >= 3 || st1.pages_total <= 16);
	T_CHECK(st1.pages_free <= 8);
	T_CHECK_EQ(verify(s, &m, 5), 0);
	uint64_t again = mk_file(&m, &b, NS_ROOT_INO, "again");
	T_CHECK_EQ(commit(s, &m, &b), 0);
	for (int i = 0; i < 15; i++) {
		append(&m, &b, model_file(&m, again), 20000, false);
		if (i % 5 == 4)
			T_CHECK_EQ(commit(s, &m, &b), 0);
	}
	store_stats(s, &st2);
	/* growth by at most what the free pages could not hold: when the
	 * hole is there, "again" (5-page chunks) fills it first; a few
	 * scattered free pages (old chain and tree pages) hold none of them */
	if (st1.pages_free >= 15)
		T_CHECK(st2.pages_total <= st1.pages_total + 15u * 5 - st1.pages_free / 5 * 5 + 1);
	else
		T_CHECK(st2.pages_total <= st1.pages_total + 15u * 5 + 1);
	T_CHECK_EQ(verify(s, &m, 20), 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(open_store(v, &s) == 0);
	T_CHECK_EQ(verify(s, &m, 20), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
}

static uint64_t check_errors(struct store *s, struct store_check_report *rep)
{
	memset(rep, 0, sizeof(*rep));
	if (store_check(s, 0, NULL, NULL, rep) != 0)
		return 1000;
	return rep->errors + rep->unreachable;
}

/* Pack pages: live bytes per page, kept across a checkpoint (the 'K'
 * record) and a crash (WAL replay); a deleted file's packed frames
 * (inline tail and full index pages) give their pages back once no other
 * file's frame is in them. */
static void test_pack_reclaim(void)
{
	struct vfs *v, *crash;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_stats st0, st1, st2;
	struct store_check_report rep;

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	uint64_t a = mk_file(&m, &b, NS_ROOT_INO, "a");
	uint64_t c = mk_file(&m, &b, NS_ROOT_INO, "c");
	T_CHECK_EQ(commit(s, &m, &b), 0);
	for (int i = 0; i < 150; i++) { /* a: a full index page of packed entries and a tail */
		/* compressible records of chunk/2 bytes and more: sealed chunks
		 * whose frames are small enough to be packed */
		append_packable(&m, &b, model_file(&m, a), 2100);
		if (i % 10 == 0)
			append_packable(&m, &b, model_file(&m, c), 2048);
		if (i % 50 == 49) {
			T_CHECK_EQ(commit(s, &m, &b), 0);
			T_CHECK_EQ(store_checkpoint(s), 0);
		}
	}
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_stats(s, &st0);
	T_CHECK(st0.pack_pages >= 10);
	T_CHECK(st0.pack_live_bytes == st0.stored_bytes); /* every frame is packed */
	T_CHECK_EQ(check_errors(s, &rep), 0);
	/* reopened: the counts come back from the checkpoint (format 5 loads
	 * the pack table in the background: once that is done) */
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(open_store(v, &s) == 0);
	while (store_ns_load_more(s) == 1)
		;
	store_stats(s, &st1);
	T_CHECK_EQ(st1.pack_pages, st0.pack_pages);
	T_CHECK_EQ(st1.pack_live_bytes, st0.pack_live_bytes);
	/* delete a; a crash before the checkpoint replays the unlink */
	struct ns_op op = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "a", .name_len = 1};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	model_file(&m, a)->live = false;
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_ASSERT(vfs_mem_clone(v, &crash) == 0);
	T_CHECK_EQ(store_close(s), 0);
	for (int k = 0; k < 2; k++) {
		T_ASSERT(open_store(k ? v : crash, &s) == 0);
		T_CHECK_EQ(check_errors(s, &rep), 0);
		T_CHECK_EQ(store_checkpoint(s), 0); /* releases a's full index page's frames */
		T_CHECK_EQ(store_checkpoint(s), 0);
		store_stats(s, &st2);
		T_CHECK_EQ(st2.pack_live_bytes, st2.stored_bytes);
		/* c's 15 frames were in 15 mostly dead pages: cleaning (the
		 * second checkpoint: the first released a's index page frames
		 * after cleaning) moved them into as few as they fit in */
		T_CHECK(st2.pack_pages <= st2.pack_live_bytes / 4048 + 2); /* as full as frames allow */
		T_CHECK(st2.pages_cleaned >= 10 || k == 1); /* k 1: cleaned before the close */
		/* the emptied pages are free or given back to the disk */
		T_CHECK(st2.pages_free + st0.pages_total >= st2.pages_total + st0.pack_pages - st2.pack_pages);
		T_CHECK_EQ(check_errors(s, &rep), 0);
		T_CHECK_EQ(verify(s, &m, 5), 0);
		if (k == 0)
			T_CHECK_EQ(store_close(s), 0);
	}
	/* delete c too: no pack page is left */
	struct ns_op op2 = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "c", .name_len = 1};
	T_CHECK_EQ(nsop_add(&m, &b, &op2), 0);
	model_file(&m, c)->live = false;
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_stats(s, &st2);
	T_CHECK_EQ(st2.pack_pages, 0);
	T_CHECK_EQ(st2.pack_live_bytes, 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	model_free(&m);
	vfs_destroy(crash);
	vfs_destroy(v);
}

static void hole_add(struct batch *b, uint64_t ino, uint64_t off, uint64_t len)
{
	uint8_t hdr[REC_HDR_MAX];
	struct rec_hdr h = {.type = REC_DATA, .codec = REC_HOLE, .ino = ino, .off = off, .raw_len = len,
			    .hash = rec_hash("", 0)};
	int hl = rec_hdr_encode(&h, hdr, sizeof(hdr));
	T_ASSERT(hl > 0);
	batch_put(b, hdr, (size_t)hl);
}

/* Reads [off, off+len) of ino and checks it against the pattern of a file
 * made of "head" (100 bytes at 0), a 1 MiB hole, "mid" (5000 bytes), then
 * a hole of 8 TiB. */
static int holes_check(struct store *s, uint64_t ino, uint64_t off, size_t len)
{
	static uint8_t want[70000], got[70000];
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		uint64_t at = off + i;
		uint8_t c = 0;
		if (at < 100)
			c = 'h';
		else if (at >= 100 + (1u << 20) && at < 100 + (1u << 20) + 5000)
			c = (uint8_t)('a' + at % 26);
		want[i] = c;
	}
	memset(got, 0xee, len);
	if (store_read(s, ino, off, got, len, &n) != 0 || n != len)
		return 1;
	return memcmp(want, got, len) != 0;
}

static void test_holes(void)
{
	struct vfs *v, *crash = NULL;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_stats st;
	static uint8_t mid[5000];
	const uint64_t h1 = 1u << 20, h2 = 8ull << 40;
	const uint64_t size = 100 + h1 + 5000 + h2;

	for (size_t i = 0; i < sizeof(mid); i++)
		mid[i] = (uint8_t)('a' + (100 + h1 + i) % 26);
	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	struct ns_op op = {.kind = NS_CREATE, .parent = NS_ROOT_INO, .name = "sparse", .name_len = 6,
			   .mode = S_IFREG | 0644};
	op.ino = ns_alloc_ino(m.ns);
	T_ASSERT(nsop_add(&m, &b, &op) == 0);
	uint64_t ino = op.ino;
	T_CHECK_EQ(commit(s, &m, &b), 0);
	frame_add(&b, REC_DATA, ino, 0, "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh",
		  100, false);
	hole_add(&b, ino, 100, h1);
	frame_add(&b, REC_DATA, ino, 100 + h1, mid, sizeof(mid), true);
	T_CHECK_EQ(commit(s, &m, &b), 0);
	hole_add(&b, ino, 100 + h1 + 5000, h2);
	hole_add(&b, ino + 100, 0, 10); /* no such inode: dropped */
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_ASSERT(ns_set_size(m.ns, ino, size, m.now - 1000) == 0);
	uint64_t got = 0;
	T_CHECK_EQ(store_file_size(s, ino, &got), 0);
	T_CHECK(got == size);
	store_stats(s, &st);
	T_CHECK(st.stored_bytes < 6000); /* the holes store nothing */
	T_CHECK(st.logical_bytes == 5100);
	T_CHECK(db_size(v) < (1u << 20)); /* nor does store.db grow by them */
	T_CHECK_EQ(holes_check(s, ino, 0, 4096), 0);
	T_CHECK_EQ(holes_check(s, ino, 90, 20), 0);
	T_CHECK_EQ(holes_check(s, ino, h1 - 1000, 70000), 0);  /* hole, "mid", hole */
	T_CHECK_EQ(holes_check(s, ino, 100 + h1 - 10, 5020), 0);
	T_CHECK_EQ(holes_check(s, ino, 5ull << 40, 65536), 0); /* deep in the 8 TiB hole */
	T_CHECK_EQ(holes_check(s, ino, size - 100, 100), 0);
	size_t n = 1;
	uint8_t x[16];
	T_CHECK_EQ(store_read(s, ino, size, x, sizeof(x), &n), 0);
	T_CHECK_EQ(n, 0);
	T_CHECK_EQ(verify(s, &m, 0), 0); /* the namespace, sizes included */
	/* the WAL replays the holes (a crash image before any checkpoint) */
	T_ASSERT(vfs_mem_clone(v, &crash) == 0);
	T_CHECK_EQ(store_close(s), 0);
	for (int k = 0; k < 2; k++) {
		T_ASSERT(open_store(k ? v : crash, &s) == 0);
		T_CHECK_EQ(store_file_size(s, ino, &got), 0);
		T_CHECK(got == size);
		T_CHECK_EQ(holes_check(s, ino, 0, 4096), 0);
		T_CHECK_EQ(holes_check(s, ino, h1 - 1000, 70000), 0);
		T_CHECK_EQ(holes_check(s, ino, size - 65536, 65536), 0);
		T_CHECK_EQ(verify(s, &m, 0), 0);
		T_CHECK_EQ(store_close(s), 0);
	}
	vfs_destroy(crash);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
}

/* A format 1 store (both superblocks version 1) is refused with -EPROTO
 * and left exactly as it was. */
static void test_format1_refused(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct vfs_file *f = NULL;
	static uint8_t before[3 * 4096], after[3 * 4096];
	size_t n = 0;

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	workload(s, &m, 2, 5, 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDWR, &f) == 0);
	for (uint64_t pg = 0; pg < 2; pg++) {
		uint8_t page[PAGER_PAGE_SIZE];
		struct pager_hdr h;
		T_ASSERT(vfs_pread(f, page, sizeof(page), pg * 4096, &n) == 0 && n == sizeof(page));
		T_ASSERT(pager_check(page, pg, PAGER_SUPER, &h) == 0);
		T_CHECK_EQ(bz_get_le32(page + PAGER_HDR_SIZE + 4), 5);
		bz_put_le32(page + PAGER_HDR_SIZE + 4, 1);
		pager_seal(page, &h);
		T_ASSERT(vfs_pwrite(f, page, sizeof(page), pg * 4096) == 0);
	}
	T_ASSERT(vfs_pread(f, before, sizeof(before), 0, &n) == 0);
	vfs_close(f);
	T_CHECK_EQ(open_store(v, &s), -EPROTO);
	struct store_opts o;
	opts(&o, v);
	o.read_only = true;
	T_CHECK_EQ(store_open(&o, &s), -EPROTO);
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDONLY, &f) == 0);
	T_ASSERT(vfs_pread(f, after, sizeof(after), 0, &n) == 0);
	vfs_close(f);
	T_CHECK(memcmp(before, after, sizeof(before)) == 0);
	model_free(&m);
	vfs_destroy(v);
}

/* Online metadata scrub (store_scrub_meta): the namespace walk covers both
 * superblocks and the whole chain, follows a checkpoint that replaced (and
 * freed, and reused) the chain it was walking by starting again, never
 * calling that damage; the index walk finds a damaged INDEX page, and stops
 * (-ENOENT) for a file deleted meanwhile. */
static int scrub_walk(struct store *s, unsigned what, uint64_t ino, struct store_scrub_meta *c, uint64_t *ret_pages,
		      unsigned *ret_bad)
{
	uint64_t pages = 0;
	int r = 0;

	*ret_bad = 0;
	for (int guard = 0; guard < 100000; guard++) {
		r = store_scrub_meta(s, what, ino, 1, c);
		if (r < 0)
			break;
		pages += c->done;
		if (c->bad && !*ret_bad)
			*ret_bad = c->bad;
		if (c->end)
			break;
	}
	*ret_pages = pages;
	return r;
}

static void test_scrub_meta(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_scrub_meta c;
	uint64_t pages;
	unsigned bad;

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	/* a namespace stream of several pages: format 4 keeps the names and
	 * the pack pages' live bytes in the trees, the stream holds the free
	 * extents ('P', about 3 bytes each): two files whose 2,100-byte
	 * chunks take a pack page each, alternately, 6,000 each; deleting
	 * one frees every other page */
	uint64_t pk = mk_file(&m, &b, NS_ROOT_INO, "packs");
	uint64_t gone = mk_file(&m, &b, NS_ROOT_INO, "gone");
	T_CHECK_EQ(commit(s, &m, &b), 0);
	for (int i = 0; i < 12000; i++) {
		append(&m, &b, model_file(&m, i % 2 ? gone : pk), 2100, false);
		T_CHECK_EQ(commit(s, &m, &b), 0);
		if (i % 200 == 199)
			T_CHECK_EQ(store_checkpoint(s), 0); /* the test's WAL is 1 MiB */
	}
	struct ns_op gop = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "gone", .name_len = 4};
	T_CHECK_EQ(nsop_add(&m, &b, &gop), 0);
	model_file(&m, gone)->live = false;
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	uint64_t x = mk_file(&m, &b, NS_ROOT_INO, "x");
	T_CHECK_EQ(commit(s, &m, &b), 0);
	for (int i = 0; i < 250; i++) { /* 250 records: 2 full index pages */
		append(&m, &b, model_file(&m, x), 2100, false); /* one chunk each (chunk_bytes 4096) */
		T_CHECK_EQ(commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_checkpoint(s), 0);

	/* a whole clean namespace walk */
	memset(&c, 0, sizeof(c));
	T_CHECK_EQ(scrub_walk(s, STORE_SCRUB_NS, 0, &c, &pages, &bad), 0);
	T_CHECK_EQ(bad, 0);
	T_CHECK(c.end && !c.restarted);
	T_CHECK(c.total >= 2 + 3);
	T_CHECK_EQ(pages, c.total);

	/* halfway through the chain, a checkpoint replaces it (its pages are
	 * free after it), data overwrites them, another checkpoint follows:
	 * the walk must start again, not follow its stale link into data */
	memset(&c, 0, sizeof(c));
	for (int i = 0; i < 4; i++)
		T_CHECK_EQ(store_scrub_meta(s, STORE_SCRUB_NS, 0, 1, &c), 0);
	T_CHECK_EQ(c.pos, 4);
	uint64_t gen0 = c.gen;
	for (int k = 0; k < 2; k++) {
		char name[32];
		snprintf(name, sizeof(name), "late%d", k);
		mk_file(&m, &b, NS_ROOT_INO, name);
		T_CHECK_EQ(commit(s, &m, &b), 0);
		T_CHECK_EQ(store_checkpoint(s), 0);
		for (int i = 0; k == 0 && i < 8; i++) { /* a pack page each: first fit over the freed chain */
			append(&m, &b, &m.f[0], 4000, false);
			T_CHECK_EQ(commit(s, &m, &b), 0);
		}
	}
	T_CHECK_EQ(scrub_walk(s, STORE_SCRUB_NS, 0, &c, &pages, &bad), 0);
	T_CHECK_EQ(bad, 0);
	T_CHECK(c.end);
	T_CHECK_EQ(c.gen, gen0 + 2);
	T_CHECK_EQ(c.pos, c.total);

	/* the index walk: clean, then one page damaged on disk */
	memset(&c, 0, sizeof(c));
	T_CHECK_EQ(scrub_walk(s, STORE_SCRUB_INDEX, x, &c, &pages, &bad), 0);
	T_CHECK_EQ(bad, 0);
	T_CHECK_EQ(c.total, 2);
	T_CHECK_EQ(pages, 2);
	memset(&c, 0, sizeof(c));
	T_CHECK_EQ(store_scrub_meta(s, STORE_SCRUB_INDEX, x, 1, &c), 0); /* the newest page */
	uint64_t older = c.pgno;
	T_CHECK(older >= 2 && !c.bad && !c.end);
	{
		struct vfs_file *f;
		uint8_t byte;
		size_t n;
		T_ASSERT(vfs_open(v, "store.db", VFS_O_RDWR, &f) == 0);
		T_ASSERT(vfs_pread(f, &byte, 1, older * PAGER_PAGE_SIZE + 100, &n) == 0 && n == 1);
		byte ^= 0x10;
		T_ASSERT(vfs_pwrite(f, &byte, 1, older * PAGER_PAGE_SIZE + 100) == 0);
		vfs_close(f);
	}
	T_CHECK_EQ(store_scrub_meta(s, STORE_SCRUB_INDEX, x, 1, &c), 0);
	T_CHECK_EQ(c.bad, STORE_SCRUB_BAD_PAGE);
	T_CHECK_EQ(c.bad_pgno, older);
	T_CHECK(c.end);

	/* a file deleted (and its pages freed) during its index walk */
	memset(&c, 0, sizeof(c));
	T_CHECK_EQ(store_scrub_meta(s, STORE_SCRUB_INDEX, x, 1, &c), 0);
	struct ns_op op = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "x", .name_len = 1};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	model_file(&m, x)->live = false;
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(store_scrub_meta(s, STORE_SCRUB_INDEX, x, 1, &c), -ENOENT);

	store_close(s);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
}

/* The rotation case: the live file sits at the end of store.db above the
 * space of a deleted one; checkpoints move its extents down (rewriting its
 * index chain) and store.db is cut to about one file. A crash image taken
 * between the relocating checkpoint's writes recovers either placement. */
static void test_relocate(void)
{
	struct vfs *v, *crash = NULL;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_check_report rep;
	struct store_stats st;

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	uint64_t a = mk_file(&m, &b, NS_ROOT_INO, "a");
	uint64_t c = mk_file(&m, &b, NS_ROOT_INO, "c");
	T_CHECK_EQ(commit(s, &m, &b), 0);
	for (int i = 0; i < 150; i++) { /* a: 150 chunks of 5000 bytes (2-page extents), a full index page */
		append(&m, &b, model_file(&m, a), 5000, false);
		if (i % 10 == 9)
			T_CHECK_EQ(commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_checkpoint(s), 0);
	for (int i = 0; i < 150; i++) { /* c: the same, after a: at the end of store.db */
		append(&m, &b, model_file(&m, c), 5000, false);
		if (i % 10 == 9)
			T_CHECK_EQ(commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_checkpoint(s), 0);
	uint64_t two = db_size(v);
	struct ns_op op = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "a", .name_len = 1};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	model_file(&m, a)->live = false;
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0); /* a's pages pending, then free */
	T_CHECK_EQ(verify(s, &m, 20), 0);   /* c's full index loaded by readers */
	T_CHECK_EQ(store_checkpoint(s), 0); /* moves c down, rewrites its chain */
	T_ASSERT(vfs_mem_clone(v, &crash) == 0);
	T_CHECK_EQ(store_checkpoint(s), 0); /* the old placement's pages are free: the end is cut */
	store_stats(s, &st);
	if (st.pages_relocated < 250) fprintf(stderr, "relocated %llu pages total %llu free %llu\n", (unsigned long long)st.pages_relocated, (unsigned long long)st.pages_total, (unsigned long long)st.pages_free);
	T_CHECK(st.pages_relocated >= 250);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(verify(s, &m, 50), 0);
	T_CHECK_EQ(store_close(s), 0);
	T_CHECK(db_size(v) * 10 < two * 6); /* about one file of two */
	/* reopened: the moved chunks and the new chain are what the checkpoint names */
	T_ASSERT(open_store(v, &s) == 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(verify(s, &m, 50), 0);
	T_CHECK_EQ(store_close(s), 0);
	/* the image taken after the relocating checkpoint */
	T_ASSERT(open_store(crash, &s) == 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(verify(s, &m, 50), 0);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(crash);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
}

/* readdir of the root as "name cookie" lines. */
static int ls_cb(void *arg, const char *name, size_t len, uint64_t ino, uint32_t mode, uint64_t cookie)
{
	struct dump *d = arg;
	char line[300];
	(void)ino;
	(void)mode;
	int n = snprintf(line, sizeof(line), "%.*s %llu\n", (int)len, name, (unsigned long long)cookie);
	dump_put(d, line, (size_t)n);
	return 0;
}

static char *ls_root(struct store *s)
{
	struct dump d = {0};
	struct ns *ns = NULL;
	T_ASSERT(store_ns_clone(s, &ns) == 0);
	T_CHECK_EQ(ns_readdir(ns, NS_ROOT_INO, 0, ls_cb, &d), 0);
	dump_put(&d, "", 1);
	ns_free(ns);
	return d.p;
}

/* Pages of store.db that differ between two images. */
static uint64_t pages_changed(struct vfs *a, struct vfs *b)
{
	struct vfs_file *fa, *fb;
	uint8_t pa[PAGER_PAGE_SIZE], pb[PAGER_PAGE_SIZE];
	uint64_t n = 0;
	T_ASSERT(vfs_open(a, "store.db", VFS_O_RDONLY, &fa) == 0);
	T_ASSERT(vfs_open(b, "store.db", VFS_O_RDONLY, &fb) == 0);
	for (uint64_t pg = 0;; pg++) {
		size_t na = 0, nb = 0;
		memset(pa, 0, sizeof(pa));
		memset(pb, 0, sizeof(pb));
		T_ASSERT(vfs_pread(fa, pa, sizeof(pa), pg * PAGER_PAGE_SIZE, &na) == 0);
		T_ASSERT(vfs_pread(fb, pb, sizeof(pb), pg * PAGER_PAGE_SIZE, &nb) == 0);
		if (!na && !nb)
			break;
		n += memcmp(pa, pb, sizeof(pa)) != 0;
	}
	vfs_close(fa);
	vfs_close(fb);
	return n;
}

/* Checkpoints cost what changed (format 3, the namespace in B+trees): with
 * 3,000 inodes and entries, the checkpoint after one file's append writes a
 * handful of pages (the trees' paths to it, the short stream, the pack
 * page, the superblock) where the whole namespace is ~50 pages; a rename
 * and an unlink cost the same; the store reopens to the same namespace
 * with the same readdir cookies, and fsck finds it clean. */
static void test_incremental_checkpoint(void)
{
	struct vfs *v, *before = NULL, *after = NULL;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_check_report rep;
	char name[64];

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	for (int i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "a-file-with-a-long-name-%04d", i);
		(void)mk_node(&m, &b, NS_ROOT_INO, name, S_IFREG | 0644);
		if (i % 250 == 249) {
			T_CHECK_EQ(commit(s, &m, &b), 0);
			T_CHECK_EQ(store_checkpoint(s), 0);
		}
	}
	uint64_t x = mk_file(&m, &b, NS_ROOT_INO, "x");
	append(&m, &b, model_file(&m, x), 100, false);
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(store_checkpoint(s), 0); /* pending pages free */
	for (int k = 0; k < 3; k++) {
		T_ASSERT(vfs_mem_clone(v, &before) == 0);
		if (k == 0) {
			append(&m, &b, model_file(&m, x), 100, false);
		} else if (k == 1) {
			struct ns_op op = {.kind = NS_RENAME, .parent = NS_ROOT_INO, .name = "a-file-with-a-long-name-1234",
					   .name_len = 28, .parent2 = NS_ROOT_INO, .name2 = "renamed", .name2_len = 7};
			T_ASSERT(nsop_add(&m, &b, &op) == 0);
		} else {
			struct ns_op op = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "a-file-with-a-long-name-0042",
					   .name_len = 28};
			T_ASSERT(nsop_add(&m, &b, &op) == 0);
		}
		T_CHECK_EQ(commit(s, &m, &b), 0);
		T_CHECK_EQ(store_checkpoint(s), 0);
		T_ASSERT(vfs_mem_clone(v, &after) == 0);
		uint64_t n = pages_changed(before, after);
		if (n > 16 || n < 2)
			fprintf(stderr, "checkpoint %d changed %llu pages\n", k, (unsigned long long)n);
		T_CHECK(n >= 2 && n <= 16);
		vfs_destroy(before);
		vfs_destroy(after);
	}
	char *ls1 = ls_root(s);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK(rep.tree_pages > 10);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(open_store(v, &s) == 0);
	char *ls2 = ls_root(s);
	T_CHECK(strcmp(ls1, ls2) == 0);
	T_CHECK(strstr(ls2, "renamed ") != NULL);
	T_CHECK_EQ(verify(s, &m, 0), 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	free(ls1);
	free(ls2);
	store_close(s);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
}

/* Format 5: the namespace loads on demand. After a reopen nothing but the
 * root is loaded; ops on inodes and directories never loaded since (an
 * unlink of a last link and of one of two links, a directory renamed into
 * another, a rename into its own subtree that both must refuse, an
 * append, a setattr) give the model's state, the background load steps
 * interleaved with ops end complete, and fsck finds nothing. */
static void test_lazy_namespace(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_check_report rep;
	uint64_t dirs[8], files[8];
	char name[32];

	T_ASSERT(vfs_mem_new(&v) == 0);
	model_init(&m);
	T_ASSERT(open_store(v, &s) == 0);
	for (int d = 0; d < 8; d++) {
		snprintf(name, sizeof(name), "d%d", d);
		dirs[d] = mk_node(&m, &b, NS_ROOT_INO, name, S_IFDIR | 0755);
		for (int i = 0; i < 40; i++) {
			snprintf(name, sizeof(name), "f%02d", i);
			(void)mk_node(&m, &b, dirs[d], name, S_IFREG | 0644);
		}
		files[d] = mk_file(&m, &b, dirs[d], "data");
		append(&m, &b, model_file(&m, files[d]), 3000 + 100 * (size_t)d, d & 1);
	}
	uint64_t sub = mk_node(&m, &b, dirs[5], "sub", S_IFDIR | 0700);
	struct ns_op op = {.kind = NS_LINK, .ino = files[2], .parent2 = dirs[3], .name2 = "twin", .name2_len = 4};
	T_ASSERT(nsop_add(&m, &b, &op) == 0);
	(void)mk_node(&m, &b, dirs[4], "empty", S_IFDIR | 0755);
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_close(s), 0);

	T_ASSERT(open_store(v, &s) == 0);
	T_CHECK(!store_ns_loaded(s)); /* nothing but the root yet */
	{ /* a read of a file no op loaded (store_read loads its inode) */
		struct mfile *f = model_file(&m, files[6]);
		uint8_t buf[64];
		size_t n = 0;
		T_CHECK_EQ(store_read(s, files[6], 100, buf, sizeof(buf), &n), 0);
		T_CHECK(n == sizeof(buf) && memcmp(buf, f->data + 100, n) == 0);
	}
	op = (struct ns_op){.kind = NS_UNLINK, .parent = dirs[1], .name = "data", .name_len = 4};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	model_file(&m, files[1])->live = false;
	op = (struct ns_op){.kind = NS_UNLINK, .parent = dirs[3], .name = "twin", .name_len = 4};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0); /* files[2] keeps one link */
	op = (struct ns_op){.kind = NS_RENAME, .parent = NS_ROOT_INO, .name = "d6", .name_len = 2, .parent2 = sub,
			    .name2 = "d6", .name2_len = 2};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_RENAME, .parent = NS_ROOT_INO, .name = "d5", .name_len = 2, .parent2 = dirs[6],
			    .name2 = "loop", .name2_len = 4};
	T_CHECK_EQ(nsop_add(&m, &b, &op), -EINVAL); /* d6 is inside d5 now: refused by both */
	m.now += 1000;
	op = (struct ns_op){.kind = NS_RMDIR, .parent = dirs[4], .name = "empty", .name_len = 5};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_RENAME, .parent = dirs[2], .name = "f05", .name_len = 3, .parent2 = dirs[0],
			    .name2 = "moved", .name2_len = 5};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	append(&m, &b, model_file(&m, files[7]), 500, false);
	op = (struct ns_op){.kind = NS_SETATTR, .ino = files[4], .flags = NS_SET_MODE, .mode = S_IFREG | 0600};
	T_CHECK_EQ(nsop_add(&m, &b, &op), 0);
	T_CHECK_EQ(commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(store_close(s), 0);

	/* the parents written: the refusal holds after a reopen too */
	T_ASSERT(open_store(v, &s) == 0);
	op = (struct ns_op){.kind = NS_RENAME, .parent = NS_ROOT_INO, .name = "d5", .name_len = 2, .parent2 = dirs[6],
			    .name2 = "loop", .name2_len = 4};
	T_CHECK_EQ(nsop_add(&m, &b, &op), -EINVAL);
	T_CHECK_EQ(commit(s, &m, &b), 0);
	/* the rest loads a step at a time between ops */
	int steps = 0, r;
	while ((r = store_ns_load_more(s)) == 1) {
		snprintf(name, sizeof(name), "n%d", steps++);
		(void)mk_file(&m, &b, dirs[steps % 2 ? 0 : 7], name);
		T_ASSERT(commit(s, &m, &b) == 0);
		T_ASSERT(steps < MAX_FILES - 12);
	}
	T_CHECK_EQ(r, 0);
	T_CHECK(steps >= 1);
	T_CHECK(store_ns_loaded(s));
	T_CHECK_EQ(verify(s, &m, 5), 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(open_store(v, &s) == 0);
	T_CHECK_EQ(verify(s, &m, 5), 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	model_free(&m);
	vfs_destroy(v);
}

/* The whole visible state of a store: namespace dump, then every regular
 * file's bytes (hex of an xxh3 each) and the root's readdir cookies. */
static int state_file(void *arg, const struct ns_attr *a, const char *sl, size_t sl_len)
{
	void **ctx = arg;
	struct dump *d = ctx[0];
	struct store *s = ctx[1];
	char line[96];
	(void)sl;
	(void)sl_len;
	if (!S_ISREG(a->mode))
		return 0;
	/* the first 4 MiB (a sparse file may be 1 TiB), 64 KiB at a time */
	static uint8_t buf[64 << 10];
	uint64_t h = 0, off = 0;
	int r = 0;
	while (off < a->size && off < (4u << 20) && r == 0) {
		size_t n = 0;
		r = store_read(s, a->ino, off, buf, sizeof(buf), &n);
		if (n == 0)
			break;
		h = rec_hash_seeded(buf, n, h);
		off += n;
	}
	int k = snprintf(line, sizeof(line), "F %llu size=%llu r=%d read=%llu h=%016llx\n", (unsigned long long)a->ino,
			 (unsigned long long)a->size, r, (unsigned long long)off, (unsigned long long)h);
	dump_put(d, line, (size_t)k);
	return 0;
}

static char *store_state(struct store *s)
{
	struct ns *ns = NULL;
	T_ASSERT(store_ns_clone(s, &ns) == 0);
	char *a = ns_dump(ns);
	struct dump d = {0};
	dump_put(&d, a, strlen(a));
	free(a);
	void *ctx[2] = {&d, s};
	struct ns_visit v = {.inode = state_file};
	T_CHECK_EQ(ns_walk(ns, &v, ctx), 0);
	ns_free(ns);
	char *ls = ls_root(s);
	dump_put(&d, ls, strlen(ls));
	free(ls);
	return d.p;
}

static struct store_sb_info sb_newest(struct vfs *v)
{
	struct store_sb_info sb[2];
	T_ASSERT(store_read_superblocks(v, sb) == 0);
	int k = sb[0].valid && (!sb[1].valid || sb[0].generation > sb[1].generation) ? 0 : 1;
	return sb[k];
}

static uint32_t sb_format(struct vfs *v) { return sb_newest(v).format; }

/* Upgrade in place (docs/FORMAT.md §6a): a format 2 store (the fuzz seed
 * chunks-format2.bin: store.db with a version-4 stream and a WAL segment
 * with batches to replay) or a format 3 store (chunks-format3.bin: the
 * namespace trees, the pack pages' live bytes in the stream) opens
 * read-only as it is, unchanged; opened read-write it shows the same
 * state, and its checkpoint writes format 4 (three trees); reopened, the
 * same state again, fsck clean. */
static void test_upgrade(const char *src, const char *seed, uint32_t format)
{
	char path[1024];
	struct vfs *v, *ro_before = NULL;
	struct store *s = NULL;
	struct store_opts o;
	struct store_check_report rep;
	FILE *f;

	snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/recover/%s", src, seed);
	f = fopen(path, "rb");
	T_ASSERT(f);
	static uint8_t in[1 << 20];
	size_t len = fread(in, 1, sizeof(in), f);
	fclose(f);
	T_ASSERT(len > 5);
	size_t ndb = (size_t)bz_get_le32(in);
	T_ASSERT(ndb + 5 <= len);
	char seg[16];
	snprintf(seg, sizeof(seg), "wal.%03u", (unsigned)(in[4] % 3));

	/* a store of the seeds' geometry, then the seed's store.db and segment */
	T_ASSERT(vfs_mem_new(&v) == 0);
	store_opts_default(&o);
	o.vfs = v;
	o.wal_segment_bytes = 64 << 10;
	o.wal_segments = 3;
	o.checkpoint_bytes = 64 << 10;
	o.cache_bytes = 256 << 10;
	T_ASSERT(store_open(&o, &s) == 0);
	T_CHECK_EQ(store_close(s), 0);
	struct vfs_file *vf;
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDWR, &vf) == 0);
	T_ASSERT(vfs_ftruncate(vf, 0) == 0 && vfs_pwrite(vf, in + 5, ndb, 0) == 0);
	vfs_close(vf);
	T_ASSERT(vfs_open(v, seg, VFS_O_RDWR, &vf) == 0);
	T_ASSERT(vfs_ftruncate(vf, 0) == 0 && vfs_pwrite(vf, in + 5 + ndb, len - 5 - ndb, 0) == 0 &&
		 vfs_ftruncate(vf, 64 << 10) == 0);
	vfs_close(vf);
	T_CHECK_EQ(sb_format(v), format);

	o.read_only = true;
	T_ASSERT(vfs_mem_clone(v, &ro_before) == 0);
	T_ASSERT(store_open(&o, &s) == 0);
	char *a = store_state(s);
	T_CHECK(strstr(a, "hot.log") != NULL);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	store_close(s);
	T_CHECK_EQ(pages_changed(ro_before, v), 0); /* read-only: nothing written */
	T_CHECK_EQ(sb_format(v), format);
	vfs_destroy(ro_before);

	o.read_only = false;
	T_ASSERT(store_open(&o, &s) == 0); /* replay + checkpoint: upgraded */
	T_CHECK_EQ(sb_format(v), 5);
	struct store_stats st;
	store_stats(s, &st);
	T_CHECK(st.pack_pages > 0);
	T_CHECK_EQ(sb_newest(v).pack_count, st.pack_pages); /* every pack page has its key */
	char *b = store_state(s);
	T_CHECK(strcmp(a, b) == 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK(rep.tree_pages >= 2);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(store_open(&o, &s) == 0);
	char *c = store_state(s);
	T_CHECK(strcmp(a, c) == 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(a);
	free(b);
	free(c);
	vfs_destroy(v);
}

int main(int argc, char **argv)
{
	bz_log_set_level(BZ_LOG_ERR);
	if (getenv("T_VERBOSE"))
		bz_log_set_level(BZ_LOG_DEBUG);
	test_roundtrip();
	test_replay();
	test_namespace();
	test_free_pages();
	test_corruption();
	test_open_cost();
	test_crash_checkpoint();
	test_crash_recovery();
	test_concurrent_reads();
	test_random_corruption();
	test_faults();
	test_missing_db();
	test_space_bound();
	test_reader_never_blocks_commit();
	test_reclaim();
	test_pack_reclaim();
	test_holes();
	test_format1_refused();
	test_scrub_meta();
	test_relocate();
	test_incremental_checkpoint();
	test_lazy_namespace();
	if (argc > 1) { /* the source tree: tests/fuzz/corpus holds format 2 and 3 stores */
		test_upgrade(argv[1], "chunks-format2.bin", 2);
		test_upgrade(argv[1], "chunks-format3.bin", 3);
		test_upgrade(argv[1], "chunks-format4.bin", 4);
	} else
		fprintf(stderr, "test_upgrade: skipped (no source directory argument)\n");
	T_DONE();
}
