/* store_model.c — the model, batches and comparisons of the PageStore
 * tests (the header says what each part is). */
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
#include "store_model.h"

/* ---- deterministic randomness ---- */
uint64_t sm_rng_state = 0x12345678;
uint64_t sm_rnd(void)
{
	sm_rng_state ^= sm_rng_state << 13;
	sm_rng_state ^= sm_rng_state >> 7;
	sm_rng_state ^= sm_rng_state << 17;
	return sm_rng_state;
}

/* ---- the model ---- */

void sm_model_init(struct model *m)
{
	memset(m, 0, sizeof(*m));
	T_ASSERT(ns_new(&m->ns) == 0);
	m->now = 1000000000;
}

void sm_model_free(struct model *m)
{
	for (int i = 0; i < m->n; i++)
		free(m->f[i].data);
	ns_free(m->ns);
}

/* ---- batches ---- */

void sm_batch_put(struct batch *b, const void *src, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		T_ASSERT(b->p);
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

void sm_frame_add_level(struct batch *b, uint8_t type, uint64_t ino, uint64_t off, const void *raw, size_t len,
			int level)
{
	uint8_t hdr[REC_HDR_MAX];
	struct rec_hdr h = {.type = type, .codec = REC_RAW, .ino = ino, .off = off, .raw_len = (uint32_t)len};
	void *z = NULL;
	const void *payload = raw;
	size_t plen = len;

	h.hash = rec_hash(raw, len);
	if (level) {
		size_t cap = ZSTD_compressBound(len);
		z = malloc(cap);
		size_t zn = ZSTD_compress(z, cap, raw, len, level);
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
	sm_batch_put(b, hdr, (size_t)hl);
	sm_batch_put(b, payload, plen);
	free(z);
}

void sm_frame_add(struct batch *b, uint8_t type, uint64_t ino, uint64_t off, const void *raw, size_t len, bool zstd)
{
	sm_frame_add_level(b, type, ino, off, raw, len, zstd ? 1 : 0);
}

/* Adds a namespace op to the batch and applies it to the model. */
int sm_nsop_add(struct model *m, struct batch *b, struct ns_op *op)
{
	uint8_t buf[NSOP_MAX_LEN];
	op->ctime_ns = op->ctime_ns ? op->ctime_ns : m->now;
	int n = nsop_encode(op, buf, sizeof(buf));
	T_ASSERT(n > 0);
	sm_frame_add(b, REC_NS, 0, 0, buf, (size_t)n, false);
	return ns_apply(m->ns, op);
}

struct mfile *sm_model_file(struct model *m, uint64_t ino)
{
	for (int i = 0; i < m->n; i++)
		if (m->f[i].ino == ino)
			return &m->f[i];
	return NULL;
}

uint64_t sm_mk_file(struct model *m, struct batch *b, uint64_t parent, const char *name)
{
	struct ns_op op = {.kind = NS_CREATE, .parent = parent, .name = name, .name_len = (uint32_t)strlen(name),
			   .mode = S_IFREG | 0644, .uid = 1, .gid = 2};
	op.ino = ns_alloc_ino(m->ns);
	op.atime_ns = op.mtime_ns = op.ctime_ns = m->now;
	T_ASSERT(sm_nsop_add(m, b, &op) == 0);
	T_ASSERT(m->n < MAX_FILES);
	struct mfile *f = &m->f[m->n++];
	memset(f, 0, sizeof(*f));
	f->ino = op.ino;
	f->live = true;
	return op.ino;
}

/* Unlinks file ino, named name in parent (its last link), in the batch and
 * the model; returns sm_nsop_add's result. */
int sm_rm_file(struct model *m, struct batch *b, uint64_t parent, const char *name, uint64_t ino)
{
	struct ns_op op = {.kind = NS_UNLINK, .parent = parent, .name = name, .name_len = (uint32_t)strlen(name)};
	int r = sm_nsop_add(m, b, &op);

	sm_model_file(m, ino)->live = false;
	return r;
}

/* A directory or an empty regular file (by mode) named name in parent, in
 * the batch and the model; not tracked as a file with data. */
uint64_t sm_mk_node(struct model *m, struct batch *b, uint64_t parent, const char *name, uint32_t mode)
{
	struct ns_op op = {.kind = S_ISDIR(mode) ? NS_MKDIR : NS_CREATE, .parent = parent, .name = name,
			   .name_len = (uint32_t)strlen(name), .mode = mode, .ino = ns_alloc_ino(m->ns)};
	T_ASSERT(sm_nsop_add(m, b, &op) == 0);
	return op.ino;
}

void sm_fill(uint8_t *p, size_t n, uint64_t ino, uint64_t off, bool text)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t x = ino * 1315423911u + off + i;
		p[i] = text ? (uint8_t)("abcdefgh \n"[(x * 7 + (x >> 5)) % 10]) : (uint8_t)(x ^ (x >> 8) ^ (x >> 16));
	}
}

/* Appends len bytes to file f (frame in b; model updated). */
void sm_append_bytes(struct model *m, struct batch *b, struct mfile *f, uint8_t *p, size_t len, bool zstd)
{
	sm_frame_add(b, REC_DATA, f->ino, f->len, p, len, zstd);
	if (f->len + len > f->cap) {
		f->cap = (f->len + len) * 2;
		f->data = realloc(f->data, f->cap);
	}
	memcpy(f->data + f->len, p, len);
	f->len += len;
	T_ASSERT(ns_set_size(m->ns, f->ino, f->len, m->now) == 0);
	free(p);
}

void sm_append(struct model *m, struct batch *b, struct mfile *f, size_t len, bool zstd)
{
	uint8_t *p = malloc(len);
	sm_fill(p, len, f->ino, f->len, zstd);
	sm_append_bytes(m, b, f, p, len, zstd);
}

/* Appends len (>= 300) bytes that compress to about 300: text, then 300
 * bytes of noise (a sealed chunk of >= chunk/2 raw bytes whose frame is
 * packed). */
void sm_append_packable(struct model *m, struct batch *b, struct mfile *f, size_t len)
{
	uint8_t *p = malloc(len);
	sm_fill(p, len - 300, f->ino, f->len, true);
	sm_fill(p + len - 300, 300, f->ino, f->len + len - 300, false);
	sm_append_bytes(m, b, f, p, len, true);
}

int sm_commit(struct store *s, struct model *m, struct batch *b)
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
void sm_dump_put(struct dump *d, const char *s, size_t n)
{
	if (d->len + n + 1 > d->cap) {
		d->cap = (d->len + n + 1) * 2;
		d->p = realloc(d->p, d->cap);
	}
	memcpy(d->p + d->len, s, n);
	d->len += n;
	d->p[d->len] = 0;
}
static int sm_dump_inode(void *arg, const struct ns_attr *a, const char *sl, size_t sl_len)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "I %llu %o %u %u %u %llu %lld %lld %lld %lld %x ",
			 (unsigned long long)a->ino, a->mode, a->uid, a->gid, a->nlink, (unsigned long long)a->size,
			 (long long)a->atime_ns, (long long)a->mtime_ns, (long long)a->ctime_ns, (long long)a->append_ns,
			 a->rdev);
	sm_dump_put(arg, line, (size_t)n);
	if (sl)
		sm_dump_put(arg, sl, sl_len);
	sm_dump_put(arg, "\n", 1);
	return 0;
}
static int sm_dump_dirent(void *arg, uint64_t dir, const char *name, size_t name_len, uint64_t ino)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "D %llu %llu ", (unsigned long long)dir, (unsigned long long)ino);
	sm_dump_put(arg, line, (size_t)n);
	sm_dump_put(arg, name, name_len);
	sm_dump_put(arg, "\n", 1);
	return 0;
}
static int sm_dump_xattr(void *arg, uint64_t ino, const char *name, size_t nlen, const void *val, size_t vlen)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "X %llu %zu ", (unsigned long long)ino, vlen);
	sm_dump_put(arg, line, (size_t)n);
	sm_dump_put(arg, name, nlen);
	sm_dump_put(arg, "=", 1);
	for (size_t i = 0; i < vlen; i++) {
		n = snprintf(line, sizeof(line), "%02x", ((const uint8_t *)val)[i]);
		sm_dump_put(arg, line, (size_t)n);
	}
	sm_dump_put(arg, "\n", 1);
	return 0;
}
char *sm_ns_dump(struct ns *ns)
{
	struct dump d = {0};
	struct ns_visit v = {.inode = sm_dump_inode, .dirent = sm_dump_dirent, .xattr = sm_dump_xattr};
	char line[64];
	int n = snprintf(line, sizeof(line), "next %llu\n", (unsigned long long)ns_next_ino(ns));
	sm_dump_put(&d, line, (size_t)n);
	T_ASSERT(ns_walk(ns, &v, &d) == 0);
	return d.p;
}

/* Compares the store with the model: namespace, every file in full and
 * some random ranges. Returns the number of mismatches. */
int sm_verify(struct store *s, struct model *m, int random_reads)
{
	int bad = 0;
	struct ns *ns = NULL;

	if (store_ns_clone(s, &ns) != 0)
		return 1;
	char *a = sm_ns_dump(ns), *b = sm_ns_dump(m->ns);
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
			uint64_t off = sm_rnd() % f->len;
			size_t len = (size_t)(sm_rnd() % 9000) + 1;
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

void sm_opts(struct store_opts *o, struct vfs *v)
{
	store_opts_default(o);
	o->vfs = v;
	o->wal_segment_bytes = 256 << 10;
	o->wal_segments = 4;
	o->cache_bytes = 64 << 10;
	o->chunk_bytes = 4096; /* records of >= 2 KiB are chunks; smaller ones gather in open chunks */
}

int sm_open_store(struct vfs *v, struct store **ret)
{
	struct store_opts o;
	sm_opts(&o, v);
	return store_open(&o, ret);
}

/* A workload: nf files, rounds of batches with several frames of varied
 * sizes, raw and zstd, a checkpoint every ckpt_every rounds (0 = never). */
void sm_workload(struct store *s, struct model *m, int nf, int rounds, int ckpt_every)
{
	struct batch b = {0};
	for (int i = 0; i < nf; i++) {
		char name[32];
		snprintf(name, sizeof(name), "f%d", m->n);
		sm_mk_file(m, &b, NS_ROOT_INO, name);
	}
	T_CHECK_EQ(sm_commit(s, m, &b), 0);
	for (int r = 0; r < rounds; r++) {
		int frames = 1 + (int)(sm_rnd() % 5);
		for (int k = 0; k < frames; k++) {
			struct mfile *f = &m->f[m->n - nf + (int)(sm_rnd() % (uint64_t)nf)];
			static const size_t sizes[] = {1, 17, 100, 700, 4000, 4048, 4100, 9000, 20000};
			size_t len = sizes[sm_rnd() % BZ_ARRAY_SIZE(sizes)];
			sm_append(m, &b, f, len, sm_rnd() % 2);
		}
		T_CHECK_EQ(sm_commit(s, m, &b), 0);
		if (ckpt_every && r % ckpt_every == ckpt_every - 1)
			T_CHECK_EQ(store_checkpoint(s), 0);
	}
	free(b.p);
}

