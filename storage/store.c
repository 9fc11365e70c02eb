/* store.c — the PageStore: data pages, per-file indexes, namespace
 * checkpoints, superblocks, recovery. The full specification (precise enough
 * for a second implementation) is docs/FORMAT.md ("The PageStore and recovery"); this comment is
 * the summary a reader of the code needs.
 *
 * FILES. "lock" (vfs_lock'ed while the store is open; shared by read-only
 * opens, which may also run without it on read-only media), "store.db" (pages,
 * see pager.c for the 48-byte page header) and the WAL segments (wal.c).
 *
 * SUPERBLOCKS. Pages 0 and 1. The superblock of generation g lives in page
 * g % 2 (LMDB style: a checkpoint overwrites the OLDER one). A new store is
 * written as generation 0 in page 0 and generation 1 in page 1, identical
 * otherwise. Payload (little endian, after the page header):
 *     0 u32 "BZSB"   4 u32 format version (1)   8 u32 page_size (4096)
 *    12 u32 wal segments   16 u64 generation   24 u64 checkpoint_lsn
 *    32 u32 wal_pos.segment   36 u32 0   40 u64 wal_pos.life
 *    48 u64 wal_pos.offset   56 u64 wal segment_bytes   64 u64 next_ino
 *    72 u64 high-water mark (pages ever allocated, = file size / 4096)
 *    80 u64 ns chain first page   88 u64 ns chain pages   96 u64 ns bytes
 *   104 u64 stored bytes   112 u64 logical bytes   120 u64 data pages
 *   128 u64 checkpoints
 *
 * DATA PAGES. Record frames exactly as store_apply received them, packed
 * back to back in a stream of DATA pages. A frame that does not fit
 * continues at offset 0 of the page named by the header's `next`. A page is
 * written once: when it fills, or (partly filled) at a checkpoint, which
 * SEALS it: later frames start a new page.
 *
 * PER-FILE INDEX. One entry per data record: (logical offset, data page,
 * raw length, frame length, offset in page). Entries accumulate in a tail;
 * when the tail holds 126 entries it is written as one INDEX page whose
 * `next` is the file's previous full index page (a chain from newest to
 * oldest), never rewritten. The tail lives inline in the namespace
 * checkpoint. The full entries are loaded lazily, on the first read that
 * needs them, so open does not depend on the amount of data.
 *
 * NAMESPACE CHECKPOINT. At each checkpoint the whole applied namespace
 * (inodes with rdev, symlink targets, extended attributes, entries, per-file
 * index state, free page list) is serialized into a chain of NEW NSMETA
 * pages (stream version 3; version 2, without the inodes' append_ns, and
 * version 1, also without rdev and attributes, are still read).
 * O(files) per checkpoint: a known cost.
 *
 * FREE SPACE. A page referenced by the durable superblock is never
 * overwritten. Pages released during an interval (the previous namespace
 * chain, index pages of deleted files) are "pending" and become free only
 * once the next superblock is durable. Data pages are never reclaimed (a
 * page holds records of several files): a known limitation.
 *
 * CHECKPOINT. (1) write the open data page (seal it), (2) release the old
 * namespace chain and dead index chains to pending, (3) write the new
 * namespace chain, (4) fsync store.db, (5) write superblock g+1 into page
 * (g+1)%2 naming checkpoint_lsn = last applied LSN and the WAL tail
 * position, (6) fsync store.db, (7) wal_recycle, pending -> free. Any
 * failure sets the sticky error: every later mutator returns -EIO. When
 * nothing changed since the last checkpoint, steps 1-4 are skipped (the
 * new superblock names the same chain: a "light" checkpoint).
 *
 * Full data pages wait in a run of up to 64 consecutive pages (one pwrite);
 * readers find them there; step 1 writes the run.
 *
 * RECOVERY. Read pages 0 and 1; take the valid superblock with the highest
 * generation (none valid: -EUCLEAN, never reinitialize). Load its namespace
 * chain. Allocation restarts at its high-water mark and free list, so pages
 * a crashed run wrote beyond them are simply reused. wal_replay from the
 * superblock's WAL position applies every committed batch with LSN >
 * checkpoint_lsn exactly like store_apply. Then (unless read-only) a
 * checkpoint. Replay applies each batch once onto the checkpointed state,
 * so a crash at any point of a checkpoint or of recovery recovers the same
 * logical state.
 *
 * THREADS AND LOCKS. Mutators run on the one commit thread. Lock order:
 *     s->lock (rwlock over ns, files, open data page, counters)
 *       -> pager cache_mu (leaf, inside pager.c)
 *       -> s->dctx_mu (leaf: the pool of readers' zstd contexts)
 * The commit thread never waits for a reader's CPU work: s->lock prefers
 * writers (a waiting apply goes before readers that arrive after it; never
 * take it shared twice in one thread), and store_read holds it shared only
 * to look up the index and COPY the frames it needs (from the open page,
 * the run, or pager pages) into its own buffer; it decodes, decompresses
 * and hash-checks them after dropping the lock. A read that needs a file's
 * full index reads the chain with no lock (index pages are immutable and a
 * live file's chain only grows at its head), then takes the lock exclusive
 * only to read the pages added meanwhile, install the entries and copy its
 * frames. Tools (store_file_records, store_check) still hold it for their
 * whole walk. The commit thread holds it exclusive while applying a batch
 * and while sealing the open page; shared while serializing a checkpoint;
 * not at all during fsyncs. Fields marked [commit] are touched only by the
 * commit thread (read with __atomic by store_stats); they need no lock.
 *
 * STATES. opening (recovery: replay, then checkpoint) -> ready -> closed;
 * any write-path failure -> error (sticky: mutators return -EIO, close does
 * not checkpoint). read_only stores stay in ready without ever writing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>
#include <zstd.h>

#include "log.h"
#include "pager.h"
#include "record.h"
#include "store.h"
#include "tsa.h"
#include "wal.h"

BZ_CAP_DECLARE(store_cap); /* s->lock (tsa.h: capability tokens) */
BZ_CAP_DECLARE(store_dctx_cap); /* s->dctx_mu */


#define SB_MAGIC 0x42535a42u /* "BZSB" */
#define SB_VERSION 1u
#define NS_MAGIC 0x534e5a42u /* "BZNS" */
#define NS_VERSION 3u /* 2: 'I' carries rdev; 'X' records. 3: 'I' carries append_ns. 1 and 2 are still read. */
#define IDX_ENTRY_SIZE 32u
#define IDX_PER_PAGE (PAGER_PAYLOAD / IDX_ENTRY_SIZE) /* 126 */
#define DCTX_POOL 8u   /* zstd decompression contexts kept for readers */
#define RUN_PAGES 64u /* full data pages written together (256 KiB) */
#define NS_GROWTH_OP 64u     /* stream bytes an ns op adds beyond its payload (bound) */
#define NS_GROWTH_RECORD 64u /* stream bytes a data record adds: a tail entry, 'F' record share */
#define DB_NAME "store.db"
#define DB_TMP_NAME "store.db.tmp"

/* One index entry: where one data record of a file lives. */
struct ient {
	uint64_t off;       /* logical offset of the record's first raw byte */
	uint64_t page;      /* data page holding the frame's first byte */
	uint32_t raw_len;   /* raw bytes of the record */
	uint32_t frame_len; /* header + stored payload */
	uint32_t pg_off;    /* payload offset of the frame in page */
};

/* Per-file index state (files that have data). */
struct sfile {
	uint64_t ino;
	uint64_t stored_bytes, raw_bytes;
	uint64_t last_full; /* newest full index page, 0 = none */
	uint64_t n_full;    /* entries in full index pages */
	struct ient *full;  /* [0, n_full) when loaded */
	bool loaded;
	uint32_t n_tail, cap_tail;
	struct ient *tail;
};

/* Open-addressing hash table ino -> sfile (linear probing, backward-shift
 * deletion). */
struct ftab {
	struct sfile **slot;
	size_t cap, n; /* cap: power of two or 0 */
};

struct u64vec {
	uint64_t *v;
	size_t n, cap;
};

struct store_sb {
	uint64_t gen, checkpoint_lsn;
	struct wal_pos wal_pos;
	struct wal_opts wal_o;
	uint64_t next_ino, hwm;
	uint64_t ns_first, ns_pages, ns_bytes;
	uint64_t stored_bytes, logical_bytes, data_pages, checkpoints;
};

struct store {
	/* set at open, then read-only */
	struct vfs *vfs;
	struct vfs_file *lock_f, *db_f;
	struct pager *pager;
	struct wal *wal;
	struct wal_opts wal_o;
	uint64_t checkpoint_bytes;
	bool read_only;

	bz_rwlock lock;
	struct ns *ns GUARDED_BY(store_cap);
	struct ftab files GUARDED_BY(store_cap);
	uint8_t *open_page GUARDED_BY(store_cap); /* PAGER_PAGE_SIZE buffer */
	uint8_t *run GUARDED_BY(store_cap);       /* full data pages not yet written: RUN_PAGES */
	uint64_t run_first GUARDED_BY(store_cap); /* page number of run[0] */
	uint32_t run_n GUARDED_BY(store_cap);     /* pages in run (consecutive numbers) */
	uint64_t open_pgno GUARDED_BY(store_cap); /* 0 = no open data page */
	uint32_t open_used GUARDED_BY(store_cap);
	uint64_t open_lsn GUARDED_BY(store_cap);
	uint64_t stored_bytes GUARDED_BY(store_cap), logical_bytes GUARDED_BY(store_cap);
	uint64_t loaded_entries GUARDED_BY(store_cap); /* full index entries held in memory */
	uint64_t index_budget;                      /* max loaded_entries (set at open) */

	/* [commit] */
	struct store_sb sb;        /* the durable superblock (newest) */
	uint64_t hwm;              /* next never-allocated page */
	uint64_t data_pages;       /* __atomic for store_stats */
	uint64_t last_appended;    /* __atomic */
	uint64_t last_applied;     /* __atomic */
	uint64_t checkpoints;      /* __atomic */
	uint64_t checkpoint_lsn;   /* __atomic */
	uint64_t replayed;         /* __atomic */
	uint64_t wal_used;         /* __atomic mirror of wal_used_since_checkpoint */
	uint64_t n_free;           /* __atomic mirror of free.n + pending.n */
	uint64_t n_reuse;          /* __atomic mirror of free.n (reusable now) */
	uint64_t ns_est;           /* __atomic: bound on the next namespace stream's bytes */
	struct u64vec free;        /* free pages (reusable now) */
	struct u64vec pending;     /* free once the next superblock is durable */
	struct u64vec chain;       /* pages of the durable namespace chain */
	struct u64vec dead;        /* index chain heads of deleted files */
	bz_mutex dctx_mu;          /* leaf lock: the readers' zstd contexts */
	ZSTD_DCtx *dctx_pool[DCTX_POOL] GUARDED_BY(store_dctx_cap);
	unsigned n_dctx GUARDED_BY(store_dctx_cap);
	bool dirty;                /* anything applied or allocated since the last checkpoint */
	int error;                 /* sticky, __atomic */
	int cause;                 /* the errno that set error (written once, by the setter) */
	uint64_t record_errors;    /* [any] __atomic: frames failing their checks */
	bool replaying;
};

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static int vec_push(struct u64vec *v, uint64_t x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		uint64_t *p = realloc(v->v, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		v->v = p;
		v->cap = cap;
	}
	v->v[v->n++] = x;
	return 0;
}

static void vec_free(struct u64vec *v)
{
	free(v->v);
	v->v = NULL;
	v->n = v->cap = 0;
}

static int load_error(const struct store *s) { return __atomic_load_n(&s->error, __ATOMIC_RELAXED); }

/* Enters the sticky error state (logs the first cause only). */
static int set_error(struct store *s, int r, const char *what)
{
	int expected = 0;
	if (r >= 0)
		r = -EIO;
	if (__atomic_compare_exchange_n(&s->error, &expected, -EIO, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		s->cause = r;
		bz_err("store: %s failed (%s); the store refuses further writes", what, strerror(-r));
	}
	return -EIO;
}

static void set_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static uint64_t get_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

/* A growable byte buffer; the first allocation failure sticks in err. */
struct bbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static uint8_t *bb_room(struct bbuf *b, size_t n)
{
	if (b->err)
		return NULL;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return NULL;
		}
		b->p = p;
		b->cap = cap;
	}
	return b->p + b->len;
}

static void bb_put(struct bbuf *b, const void *src, size_t n)
{
	uint8_t *d = bb_room(b, n);
	if (!d)
		return;
	if (n)
		memcpy(d, src, n);
	b->len += n;
}

static void bb_u8(struct bbuf *b, uint8_t v) { bb_put(b, &v, 1); }

static void bb_var(struct bbuf *b, uint64_t v)
{
	uint8_t *d = bb_room(b, 10);
	if (!d)
		return;
	int n = rec_varint_put(d, 10, v);
	if (NEVER(n <= 0)) {
		b->err = -EINVAL;
		return;
	}
	b->len += (size_t)n;
}

static void bb_le64(struct bbuf *b, uint64_t v)
{
	uint8_t t[8];
	bz_put_le64(t, v);
	bb_put(b, t, 8);
}

/* A bounds-checked reader over a byte buffer; the first error sticks. */
struct rd {
	const uint8_t *p;
	size_t len, pos;
	int err;
};

static uint64_t rd_var(struct rd *r)
{
	uint64_t v = 0;
	if (r->err)
		return 0;
	int n = rec_varint_get(r->p + r->pos, r->len - r->pos, &v);
	if (n <= 0) {
		r->err = -EBADMSG;
		return 0;
	}
	r->pos += (size_t)n;
	return v;
}

static uint32_t rd_var32(struct rd *r)
{
	uint64_t v = rd_var(r);
	if (v > UINT32_MAX) {
		r->err = -EBADMSG;
		return 0;
	}
	return (uint32_t)v;
}

static const uint8_t *rd_bytes(struct rd *r, size_t n)
{
	if (r->err || r->len - r->pos < n) {
		r->err = -EBADMSG;
		return NULL;
	}
	const uint8_t *p = r->p + r->pos;
	r->pos += n;
	return p;
}

static uint8_t rd_u8(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 1);
	return p ? *p : 0;
}

static uint64_t rd_le64(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 8);
	return p ? bz_get_le64(p) : 0;
}

/* ------------------------------------------------------------------ */
/* file table                                                          */

static size_t ino_hash(uint64_t ino, size_t cap)
{
	ino *= 0x9e3779b97f4a7c15ull;
	return (size_t)(ino >> 17) & (cap - 1);
}

static struct sfile *ftab_get(const struct ftab *t, uint64_t ino)
{
	if (!t->cap)
		return NULL;
	for (size_t i = ino_hash(ino, t->cap);; i = (i + 1) & (t->cap - 1)) {
		if (!t->slot[i])
			return NULL;
		if (t->slot[i]->ino == ino)
			return t->slot[i];
	}
}

static int ftab_put(struct ftab *t, struct sfile *f)
{
	if ((t->n + 1) * 4 > t->cap * 3) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct sfile **slot = calloc(cap, sizeof(*slot));
		if (!slot)
			return -ENOMEM;
		for (size_t j = 0; j < t->cap; j++) {
			if (!t->slot[j])
				continue;
			size_t i = ino_hash(t->slot[j]->ino, cap);
			while (slot[i])
				i = (i + 1) & (cap - 1);
			slot[i] = t->slot[j];
		}
		free(t->slot);
		t->slot = slot;
		t->cap = cap;
	}
	size_t i = ino_hash(f->ino, t->cap);
	while (t->slot[i])
		i = (i + 1) & (t->cap - 1);
	t->slot[i] = f;
	t->n++;
	return 0;
}

static void ftab_del(struct ftab *t, uint64_t ino)
{
	size_t i, j, k;

	if (!t->cap)
		return;
	for (i = ino_hash(ino, t->cap);; i = (i + 1) & (t->cap - 1)) {
		if (!t->slot[i])
			return;
		if (t->slot[i]->ino == ino)
			break;
	}
	t->slot[i] = NULL;
	t->n--;
	/* backward-shift the following cluster */
	for (j = (i + 1) & (t->cap - 1); t->slot[j]; j = (j + 1) & (t->cap - 1)) {
		k = ino_hash(t->slot[j]->ino, t->cap);
		/* move slot[j] to i if its home k is not in (i, j] cyclically */
		bool in = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
		if (!in) {
			t->slot[i] = t->slot[j];
			t->slot[j] = NULL;
			i = j;
		}
	}
}

static void sfile_free(struct sfile *f)
{
	if (!f)
		return;
	free(f->full);
	free(f->tail);
	free(f);
}

static void ftab_clear(struct ftab *t)
{
	for (size_t i = 0; i < t->cap; i++)
		sfile_free(t->slot[i]);
	free(t->slot);
	t->slot = NULL;
	t->cap = t->n = 0;
}

static int sfile_tail_push(struct sfile *f, const struct ient *e)
{
	if (f->n_tail == f->cap_tail) {
		uint32_t cap = f->cap_tail ? BZ_MIN(f->cap_tail * 2, IDX_PER_PAGE) : 4;
		struct ient *p = realloc(f->tail, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		f->tail = p;
		f->cap_tail = cap;
	}
	f->tail[f->n_tail++] = *e;
	return 0;
}

/* ------------------------------------------------------------------ */
/* page allocation [commit]                                            */

static uint64_t page_alloc(struct store *s)
{
	uint64_t pg;
	s->dirty = true;
	if (s->free.n) {
		pg = s->free.v[--s->free.n];
	} else {
		pg = s->hwm;
		set_u64(&s->hwm, pg + 1);
	}
	set_u64(&s->n_free, s->free.n + s->pending.n);
	set_u64(&s->n_reuse, s->free.n);
	return pg;
}

static void index_entry_encode(uint8_t *p, const struct ient *e)
{
	bz_put_le64(p + 0, e->off);
	bz_put_le64(p + 8, e->page);
	bz_put_le32(p + 16, e->raw_len);
	bz_put_le32(p + 20, e->frame_len);
	bz_put_le32(p + 24, e->pg_off);
	bz_put_le32(p + 28, 0);
}

static void index_entry_decode(const uint8_t *p, struct ient *e)
{
	e->off = bz_get_le64(p + 0);
	e->page = bz_get_le64(p + 8);
	e->raw_len = bz_get_le32(p + 16);
	e->frame_len = bz_get_le32(p + 20);
	e->pg_off = bz_get_le32(p + 24);
}

/* ------------------------------------------------------------------ */
/* superblock                                                          */

static void sb_encode(const struct store_sb *sb, uint8_t *page)
{
	uint8_t *p = page + PAGER_HDR_SIZE;
	struct pager_hdr h = {
		.type = PAGER_SUPER, .pgno = sb->gen % 2, .lsn = sb->checkpoint_lsn, .next = 0, .used = 136,
	};

	memset(page, 0, PAGER_PAGE_SIZE);
	bz_put_le32(p + 0, SB_MAGIC);
	bz_put_le32(p + 4, SB_VERSION);
	bz_put_le32(p + 8, PAGER_PAGE_SIZE);
	bz_put_le32(p + 12, sb->wal_o.segments);
	bz_put_le64(p + 16, sb->gen);
	bz_put_le64(p + 24, sb->checkpoint_lsn);
	bz_put_le32(p + 32, sb->wal_pos.segment);
	bz_put_le32(p + 36, 0);
	bz_put_le64(p + 40, sb->wal_pos.life);
	bz_put_le64(p + 48, sb->wal_pos.offset);
	bz_put_le64(p + 56, sb->wal_o.segment_bytes);
	bz_put_le64(p + 64, sb->next_ino);
	bz_put_le64(p + 72, sb->hwm);
	bz_put_le64(p + 80, sb->ns_first);
	bz_put_le64(p + 88, sb->ns_pages);
	bz_put_le64(p + 96, sb->ns_bytes);
	bz_put_le64(p + 104, sb->stored_bytes);
	bz_put_le64(p + 112, sb->logical_bytes);
	bz_put_le64(p + 120, sb->data_pages);
	bz_put_le64(p + 128, sb->checkpoints);
	pager_seal(page, &h);
}

/* 0 or -EBADMSG; *why names the failed check. */
static int sb_decode(const uint8_t *page, uint64_t pgno, struct store_sb *ret, const char **why)
{
	const uint8_t *p = page + PAGER_HDR_SIZE;
	struct store_sb sb;

	if (pager_check(page, pgno, PAGER_SUPER, NULL) < 0) {
		*why = "bad checksum or header";
		return -EBADMSG;
	}
	if (bz_get_le32(p) != SB_MAGIC) {
		*why = "bad superblock magic";
		return -EBADMSG;
	}
	if (bz_get_le32(p + 4) != SB_VERSION) {
		*why = "unsupported format version";
		return -EBADMSG;
	}
	if (bz_get_le32(p + 8) != PAGER_PAGE_SIZE) {
		*why = "unsupported page size";
		return -EBADMSG;
	}
	sb.wal_o.segments = bz_get_le32(p + 12);
	sb.gen = bz_get_le64(p + 16);
	sb.checkpoint_lsn = bz_get_le64(p + 24);
	sb.wal_pos.segment = bz_get_le32(p + 32);
	sb.wal_pos.life = bz_get_le64(p + 40);
	sb.wal_pos.offset = bz_get_le64(p + 48);
	sb.wal_o.segment_bytes = bz_get_le64(p + 56);
	sb.next_ino = bz_get_le64(p + 64);
	sb.hwm = bz_get_le64(p + 72);
	sb.ns_first = bz_get_le64(p + 80);
	sb.ns_pages = bz_get_le64(p + 88);
	sb.ns_bytes = bz_get_le64(p + 96);
	sb.stored_bytes = bz_get_le64(p + 104);
	sb.logical_bytes = bz_get_le64(p + 112);
	sb.data_pages = bz_get_le64(p + 120);
	sb.checkpoints = bz_get_le64(p + 128);
	if (sb.gen % 2 != pgno || sb.hwm < 2 || sb.ns_first >= sb.hwm || sb.ns_pages >= sb.hwm ||
	    sb.ns_bytes > sb.ns_pages * PAGER_PAYLOAD || (sb.ns_pages && sb.ns_first < 2)) {
		*why = "inconsistent superblock fields";
		return -EBADMSG;
	}
	*ret = sb;
	return 0;
}

/* ------------------------------------------------------------------ */
/* data stream [commit, s->lock exclusive]                              */

/* Writes the run of full data pages (one pwrite). */
static int run_flush(struct store *s) REQUIRES(store_cap)
{
	int r = 0;
	if (s->run_n) {
		r = pager_write_run(s->pager, s->run_first, s->run_n, s->run);
		if (r == 0)
			s->run_n = 0;
	}
	return r;
}

/* Seals the open data page and queues it in the run of pages to write
 * (consecutive page numbers, up to RUN_PAGES; written before any
 * checkpoint). Readers find queued pages in the run. */
static int data_page_flush(struct store *s, uint64_t next) REQUIRES(store_cap)
{
	struct pager_hdr h = {
		.type = PAGER_DATA, .pgno = s->open_pgno, .lsn = s->open_lsn, .next = next, .used = s->open_used,
	};
	int r = 0;

	pager_seal(s->open_page, &h);
	if (s->run_n && (s->run_n == RUN_PAGES || s->open_pgno != s->run_first + s->run_n))
		r = run_flush(s);
	if (r < 0)
		return r;
	if (!s->run_n)
		s->run_first = s->open_pgno;
	memcpy(s->run + (size_t)s->run_n * PAGER_PAGE_SIZE, s->open_page, PAGER_PAGE_SIZE);
	s->run_n++;
	set_u64(&s->data_pages, s->data_pages + 1);
	return 0;
}

/* Appends one frame to the data stream; returns where it starts. */
static int data_append(struct store *s, uint64_t lsn, const uint8_t *frame, size_t len, uint64_t *ret_pg,
		       uint32_t *ret_off) REQUIRES(store_cap)
{
	int r = 0;

	if (!s->open_pgno) {
		s->open_pgno = page_alloc(s);
		s->open_used = 0;
		memset(s->open_page, 0, PAGER_PAGE_SIZE);
	}
	*ret_pg = s->open_pgno;
	*ret_off = s->open_used;
	while (len) {
		size_t n = BZ_MIN(len, (size_t)(PAGER_PAYLOAD - s->open_used));
		memcpy(s->open_page + PAGER_HDR_SIZE + s->open_used, frame, n);
		s->open_used += (uint32_t)n;
		s->open_lsn = lsn;
		frame += n;
		len -= n;
		if (s->open_used < PAGER_PAYLOAD)
			continue;
		uint64_t next = len ? page_alloc(s) : 0;
		r = data_page_flush(s, next);
		if (r < 0)
			goto out;
		s->open_pgno = next;
		s->open_used = 0;
		memset(s->open_page, 0, PAGER_PAGE_SIZE);
	}
out:
	return r;
}

/* Drops a file's loaded full entries (they reload lazily from its chain). */
static void sfile_unload(struct store *s, struct sfile *f) REQUIRES(store_cap)
{
	if (!f->loaded || !f->n_full)
		return;
	s->loaded_entries -= BZ_MIN(s->loaded_entries, f->n_full);
	free(f->full);
	f->full = NULL;
	f->loaded = false;
}

/* Adds an index entry; writes a full INDEX page when the tail fills. */
static int index_add(struct store *s, struct sfile *f, uint64_t lsn, const struct ient *e) REQUIRES(store_cap)
{
	uint8_t page[PAGER_PAGE_SIZE];
	int r = sfile_tail_push(f, e);

	if (r < 0 || f->n_tail < IDX_PER_PAGE)
		goto out;
	uint64_t pg = page_alloc(s);
	memset(page, 0, sizeof(page));
	for (uint32_t i = 0; i < f->n_tail; i++)
		index_entry_encode(page + PAGER_HDR_SIZE + i * IDX_ENTRY_SIZE, &f->tail[i]);
	struct pager_hdr h = {
		.type = PAGER_INDEX, .pgno = pg, .lsn = lsn, .next = f->last_full, .used = f->n_tail * IDX_ENTRY_SIZE,
	};
	pager_seal(page, &h);
	r = pager_write(s->pager, pg, page);
	if (r < 0)
		goto out;
	if (f->loaded) {
		struct ient *full = realloc(f->full, (f->n_full + f->n_tail) * sizeof(*full));
		if (!full) {
			/* The page is written: keep going unloaded (reloads lazily). */
			sfile_unload(s, f);
			free(f->full);
			f->full = NULL;
			f->loaded = false;
		} else {
			memcpy(full + f->n_full, f->tail, f->n_tail * sizeof(*full));
			f->full = full;
			s->loaded_entries += f->n_tail;
		}
	}
	f->n_full += f->n_tail;
	if (f->loaded && s->loaded_entries > s->index_budget)
		sfile_unload(s, f); /* a writer needs no full index; readers reload it */
	f->last_full = pg;
	f->n_tail = 0;
out:
	return r;
}

/* ------------------------------------------------------------------ */
/* applying batches                                                    */

static void file_drop(struct store *s, uint64_t ino) REQUIRES(store_cap)
{
	struct sfile *f = ftab_get(&s->files, ino);
	if (!f)
		return;
	s->stored_bytes -= f->stored_bytes;
	s->logical_bytes -= f->raw_bytes;
	sfile_unload(s, f);
	if (f->last_full && vec_push(&s->dead, f->last_full) < 0)
		bz_warn("store: out of memory: index pages of inode %llu leak", (unsigned long long)ino);
	ftab_del(&s->files, ino);
	sfile_free(f);
}

static int apply_ns(struct store *s, const struct rec_hdr *h, const uint8_t *payload) REQUIRES(store_cap)
{
	uint8_t *raw = malloc(h->raw_len ? h->raw_len : 1);
	struct ns_op op;
	uint64_t victim = 0;
	int r = -ENOMEM;

	if (!raw)
		goto out;
	r = rec_payload_decode(h, payload, raw, NULL);
	if (r == 0)
		r = nsop_decode(raw, h->raw_len, &op);
	if (r < 0) {
		bz_err("store: malformed namespace record (%s)", strerror(-r));
		r = -EIO;
		goto out;
	}
	if (op.kind == NS_UNLINK)
		(void)ns_lookup(s->ns, op.parent, op.name, op.name_len, &victim);
	else if (op.kind == NS_RENAME && !(op.flags & NS_RENAME_EXCHANGE))
		(void)ns_lookup(s->ns, op.parent2, op.name2, op.name2_len, &victim);
	r = ns_apply(s->ns, &op);
	if (r < 0) {
		bz_warn("store: namespace op %u (ino %llu) skipped: %s", op.kind, (unsigned long long)op.ino,
			strerror(-r));
		r = 0;
		goto out;
	}
	struct ns_attr a;
	if (victim && ns_getattr(s->ns, victim, &a) == -ENOENT)
		file_drop(s, victim);
	/* The stream grows by at most one inode record and one entry per op,
	 * both shorter than the op's payload plus NS_GROWTH_OP (see
	 * store_space_need); removals are not subtracted until a checkpoint
	 * measures the stream again. */
	if (op.kind != NS_UNLINK && op.kind != NS_RMDIR && op.kind != NS_SETATTR)
		set_u64(&s->ns_est, get_u64(&s->ns_est) + h->raw_len + NS_GROWTH_OP);
out:
	free(raw);
	return r;
}

static int apply_data(struct store *s, uint64_t lsn, int64_t time_ns, const struct rec_hdr *h, const uint8_t *frame,
		      size_t frame_len) REQUIRES(store_cap)
{
	struct ns_attr a;
	struct sfile *f;
	struct ient e;
	int r;

	r = ns_getattr(s->ns, h->ino, &a);
	if (r < 0 || !S_ISREG(a.mode) || a.size != h->off || h->raw_len == 0) {
		bz_debug("store: data record ino %llu off %llu dropped (inode %s, size %llu)",
			 (unsigned long long)h->ino, (unsigned long long)h->off, r < 0 ? "gone" : "present",
			 (unsigned long long)(r < 0 ? 0 : a.size));
		return 0;
	}
	f = ftab_get(&s->files, h->ino);
	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f)
			return -ENOMEM;
		f->ino = h->ino;
		f->loaded = true;
		r = ftab_put(&s->files, f);
		if (r < 0) {
			sfile_free(f);
			return r;
		}
	}
	r = data_append(s, lsn, frame, frame_len, &e.page, &e.pg_off);
	if (r < 0)
		return r;
	e.off = h->off;
	e.raw_len = h->raw_len;
	e.frame_len = (uint32_t)frame_len;
	r = index_add(s, f, lsn, &e);
	if (r < 0)
		return r;
	f->stored_bytes += frame_len;
	f->raw_bytes += h->raw_len;
	set_u64(&s->ns_est, get_u64(&s->ns_est) + NS_GROWTH_RECORD);
	s->stored_bytes += frame_len;
	s->logical_bytes += h->raw_len;
	r = ns_set_size(s->ns, h->ino, h->off + h->raw_len, time_ns);
	if (NEVER(r < 0))
		return -EIO;
	return 0;
}

static int apply_batch(struct store *s, uint64_t lsn, int64_t time_ns, const uint8_t *frames, size_t len)
{
	size_t pos = 0;
	int r = 0;

	if (lsn != s->last_applied + 1) {
		bz_err("store: batch lsn %llu applied out of order (last applied %llu)", (unsigned long long)lsn,
		       (unsigned long long)s->last_applied);
		return s->replaying ? -EUCLEAN : -EINVAL;
	}
	s->dirty = true;
	bz_cap_wrlock(&s->lock, &store_cap);
	while (pos < len) {
		struct rec_hdr h;
		const uint8_t *payload;
		size_t flen;

		r = rec_decode(frames + pos, len - pos, &h, &payload, &flen);
		if (r < 0) {
			bz_err("store: batch lsn %llu: malformed record frame at byte %zu (%s)",
			       (unsigned long long)lsn, pos, strerror(-r));
			r = -EIO;
			break;
		}
		if (h.type == REC_NS)
			r = apply_ns(s, &h, payload);
		else if (h.type == REC_DATA)
			r = apply_data(s, lsn, time_ns, &h, frames + pos, flen);
		if (r < 0)
			break;
		pos += flen;
	}
	bz_cap_wrunlock(&s->lock, &store_cap);
	if (r < 0)
		return set_error(s, r, "apply");
	set_u64(&s->last_applied, lsn);
	return 0;
}

/* ------------------------------------------------------------------ */
/* namespace checkpoint stream                                         */

struct ser {
	struct bbuf ino, dir;
	uint64_t n_ino, n_dir;
};

static int ser_inode(void *arg, const struct ns_attr *a, const char *symlink, size_t symlink_len)
{
	struct ser *z = arg;
	bb_u8(&z->ino, 'I');
	bb_var(&z->ino, a->ino);
	bb_var(&z->ino, a->mode);
	bb_var(&z->ino, a->uid);
	bb_var(&z->ino, a->gid);
	bb_var(&z->ino, a->nlink);
	bb_var(&z->ino, a->size);
	bb_var(&z->ino, a->rdev);
	bb_le64(&z->ino, (uint64_t)a->atime_ns);
	bb_le64(&z->ino, (uint64_t)a->mtime_ns);
	bb_le64(&z->ino, (uint64_t)a->ctime_ns);
	bb_le64(&z->ino, (uint64_t)a->append_ns);
	bb_var(&z->ino, S_ISLNK(a->mode) ? symlink_len : 0);
	if (S_ISLNK(a->mode))
		bb_put(&z->ino, symlink, symlink_len);
	z->n_ino++;
	return z->ino.err;
}

static int ser_xattr(void *arg, uint64_t ino, const char *name, size_t name_len, const void *value,
		     size_t value_len)
{
	struct ser *z = arg;
	bb_u8(&z->ino, 'X');
	bb_var(&z->ino, ino);
	bb_var(&z->ino, name_len);
	bb_put(&z->ino, name, name_len);
	bb_var(&z->ino, value_len);
	bb_put(&z->ino, value, value_len);
	return z->ino.err;
}

static int ser_dirent(void *arg, uint64_t dir, const char *name, size_t name_len, uint64_t ino)
{
	struct ser *z = arg;
	bb_u8(&z->dir, 'D');
	bb_var(&z->dir, dir);
	bb_var(&z->dir, ino);
	bb_var(&z->dir, name_len);
	bb_put(&z->dir, name, name_len);
	z->n_dir++;
	return z->dir.err;
}

static void ser_file(struct bbuf *b, const struct sfile *f)
{
	bb_u8(b, 'F');
	bb_var(b, f->ino);
	bb_var(b, f->stored_bytes);
	bb_var(b, f->raw_bytes);
	bb_var(b, f->n_full);
	bb_var(b, f->last_full);
	bb_var(b, f->n_tail);
	for (uint32_t i = 0; i < f->n_tail; i++) {
		const struct ient *e = &f->tail[i];
		bb_var(b, e->off);
		bb_var(b, e->page);
		bb_var(b, e->raw_len);
		bb_var(b, e->frame_len);
		bb_var(b, e->pg_off);
	}
}

/* Serializes everything but the free list into *out (s->lock shared). */
static int ns_serialize(struct store *s, struct bbuf *out) REQUIRES_SHARED(store_cap)
{
	struct ser z = {0};
	struct ns_visit v = {.inode = ser_inode, .xattr = ser_xattr, .dirent = ser_dirent};
	int r;

	r = ns_walk(s->ns, &v, &z);
	if (r == 0)
		r = z.ino.err ? z.ino.err : z.dir.err;
	if (r < 0)
		goto out;
	uint8_t hdr[8];
	bz_put_le32(hdr, NS_MAGIC);
	bz_put_le32(hdr + 4, NS_VERSION);
	bb_put(out, hdr, 8);
	bb_var(out, ns_next_ino(s->ns));
	bb_var(out, s->stored_bytes);
	bb_var(out, s->logical_bytes);
	bb_put(out, z.ino.p, z.ino.len);
	for (size_t i = 0; i < s->files.cap; i++)
		if (s->files.slot[i])
			ser_file(out, s->files.slot[i]);
	bb_put(out, z.dir.p, z.dir.len);
	r = out->err;
out:
	free(z.ino.p);
	free(z.dir.p);
	return r;
}

static void ser_free(struct bbuf *b, const struct u64vec *a, const struct u64vec *c)
{
	bb_u8(b, 'P');
	bb_var(b, a->n + c->n);
	for (size_t i = 0; i < a->n; i++)
		bb_var(b, a->v[i]);
	for (size_t i = 0; i < c->n; i++)
		bb_var(b, c->v[i]);
}

/* Worst-case encoded size of the free list record. */
static size_t free_bytes_max(size_t n) { return 1 + 10 + 10 * n; }

/* Parses a namespace stream into s (at open, before any other thread). */
static int ns_parse(struct store *s, const uint8_t *p, size_t len) NO_TSA
{
	struct rd r = {.p = p, .len = len};
	int err = -EBADMSG;
	struct sfile *f = NULL;
	uint32_t version;

	if (len < 8 + 9 || bz_get_le32(p) != NS_MAGIC)
		goto out;
	version = bz_get_le32(p + 4);
	if (version < 1 || version > NS_VERSION)
		goto out;
	if (p[len - 9] != 'E')
		goto out;
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	if (XXH3_64bits(p, len - 8) != bz_get_le64(p + len - 8))
		goto out;
#endif
	r.len = len - 9;
	r.pos = 8;
	uint64_t next_ino = rd_var(&r);
	s->stored_bytes = rd_var(&r);
	s->logical_bytes = rd_var(&r);
	while (!r.err && r.pos < r.len) {
		uint8_t tag = rd_u8(&r);
		if (tag == 'I') {
			struct ns_attr a = {0};
			a.ino = rd_var(&r);
			a.mode = rd_var32(&r);
			a.uid = rd_var32(&r);
			a.gid = rd_var32(&r);
			a.nlink = rd_var32(&r);
			a.size = rd_var(&r);
			a.rdev = version >= 2 ? rd_var32(&r) : 0;
			a.atime_ns = (int64_t)rd_le64(&r);
			a.mtime_ns = (int64_t)rd_le64(&r);
			a.ctime_ns = (int64_t)rd_le64(&r);
			a.append_ns = version >= 3 ? (int64_t)rd_le64(&r) : a.mtime_ns;
			uint64_t sl = rd_var(&r);
			const uint8_t *t = rd_bytes(&r, sl > NS_SYMLINK_MAX ? SIZE_MAX : (size_t)sl);
			if (r.err)
				break;
			err = ns_load_inode(s->ns, &a, (const char *)t, (size_t)sl);
			if (err < 0) {
				bz_err("store.db: namespace checkpoint: inode %llu: %s", (unsigned long long)a.ino,
				       strerror(-err));
				goto out;
			}
		} else if (tag == 'X' && version >= 2) {
			uint64_t ino = rd_var(&r), nl = rd_var(&r);
			const uint8_t *name = rd_bytes(&r, nl > NS_XATTR_NAME_MAX ? SIZE_MAX : (size_t)nl);
			uint64_t vl = rd_var(&r);
			const uint8_t *val = rd_bytes(&r, vl > NS_XATTR_VALUE_MAX ? SIZE_MAX : (size_t)vl);
			if (r.err)
				break;
			err = ns_load_xattr(s->ns, ino, (const char *)name, (size_t)nl, val, (size_t)vl);
			if (err < 0) {
				bz_err("store.db: namespace checkpoint: attribute of inode %llu: %s",
				       (unsigned long long)ino, strerror(-err));
				goto out;
			}
		} else if (tag == 'D') {
			uint64_t dir = rd_var(&r), ino = rd_var(&r), nl = rd_var(&r);
			const uint8_t *name = rd_bytes(&r, nl > NS_NAME_MAX ? SIZE_MAX : (size_t)nl);
			if (r.err)
				break;
			err = ns_load_dirent(s->ns, dir, (const char *)name, (size_t)nl, ino);
			if (err < 0) {
				bz_err("store.db: namespace checkpoint: entry %.*s in %llu: %s", (int)nl,
				       (const char *)name, (unsigned long long)dir, strerror(-err));
				goto out;
			}
		} else if (tag == 'F') {
			f = calloc(1, sizeof(*f));
			if (!f) {
				err = -ENOMEM;
				goto out;
			}
			f->ino = rd_var(&r);
			f->stored_bytes = rd_var(&r);
			f->raw_bytes = rd_var(&r);
			f->n_full = rd_var(&r);
			f->last_full = rd_var(&r);
			uint64_t nt = rd_var(&r);
			if (r.err || nt >= IDX_PER_PAGE || (f->n_full % IDX_PER_PAGE) || (!f->n_full != !f->last_full) ||
			    f->last_full >= s->hwm || ftab_get(&s->files, f->ino)) {
				r.err = -EBADMSG;
				break;
			}
			f->loaded = f->n_full == 0;
			for (uint64_t i = 0; i < nt && !r.err; i++) {
				struct ient e;
				e.off = rd_var(&r);
				e.page = rd_var(&r);
				e.raw_len = rd_var32(&r);
				e.frame_len = rd_var32(&r);
				e.pg_off = rd_var32(&r);
				if (!r.err && sfile_tail_push(f, &e) < 0) {
					err = -ENOMEM;
					goto out;
				}
			}
			if (r.err)
				break;
			err = ftab_put(&s->files, f);
			if (err < 0)
				goto out;
			f = NULL;
		} else if (tag == 'P') {
			uint64_t n = rd_var(&r);
			if (n > len)
				r.err = -EBADMSG;
			for (uint64_t i = 0; i < n && !r.err; i++) {
				uint64_t pg = rd_var(&r);
				if (pg < 2 || pg >= s->hwm) {
					r.err = -EBADMSG;
					break;
				}
				if (vec_push(&s->free, pg) < 0) {
					err = -ENOMEM;
					goto out;
				}
			}
		} else {
			r.err = -EBADMSG;
		}
	}
	if (r.err)
		goto out;
	ns_set_next_ino(s->ns, next_ino);
	err = 0;
out:
	sfile_free(f);
	return err;
}

/* Reads the namespace chain named by sb (at open). */
static int ns_load_chain(struct store *s, const struct store_sb *sb) NO_TSA
{
	uint8_t page[PAGER_PAGE_SIZE];
	uint8_t *buf = NULL;
	uint64_t pg = sb->ns_first;
	size_t len = 0;
	uint64_t db_size = 0;
	int r = 0;

	/* The superblock passed its checksum, but never trust a length: every
	 * page below the high-water mark was written before the checkpoint that
	 * named it, so store.db holds at least that many pages, and the chain
	 * cannot be longer than store.db (both found by the fuzzers). */
	r = vfs_size(s->db_f, &db_size);
	if (r < 0)
		goto out;
	if (sb->hwm > db_size / PAGER_PAGE_SIZE) {
		bz_err("store.db: superblock names %llu pages in a file of %llu pages",
		       (unsigned long long)sb->hwm, (unsigned long long)(db_size / PAGER_PAGE_SIZE));
		r = -EUCLEAN;
		goto out;
	}
	if (!sb->ns_pages)
		goto out; /* a new store: the fresh namespace */
	if (sb->ns_pages > db_size / PAGER_PAGE_SIZE) {
		bz_err("store.db: superblock names a namespace chain of %llu pages in a file of %llu pages",
		       (unsigned long long)sb->ns_pages, (unsigned long long)(db_size / PAGER_PAGE_SIZE));
		r = -EUCLEAN;
		goto out;
	}
	buf = malloc(sb->ns_pages * PAGER_PAYLOAD);
	r = -ENOMEM;
	if (!buf)
		goto out;
	for (uint64_t i = 0; i < sb->ns_pages; i++) {
		struct pager_hdr h;
		r = pager_read(s->pager, pg, PAGER_NSMETA, page, &h);
		if (r < 0)
			goto out;
		r = vec_push(&s->chain, pg);
		if (r < 0)
			goto out;
		memcpy(buf + len, page + PAGER_HDR_SIZE, h.used);
		len += h.used;
		pg = h.next;
		if ((i + 1 < sb->ns_pages) != (pg != 0)) {
			r = -EBADMSG;
			break;
		}
	}
	if (r == 0 && len != sb->ns_bytes)
		r = -EBADMSG;
	if (r == 0)
		r = ns_parse(s, buf, len);
	if (r == -EBADMSG || r == -EIO) {
		bz_err("store.db: the namespace checkpoint (generation %llu) is corrupt",
		       (unsigned long long)sb->gen);
		r = -EUCLEAN;
	}
out:
	free(buf);
	return r;
}

/* ------------------------------------------------------------------ */
/* checkpoint                                                          */

/* Moves the pages of every deleted file's index chain to pending. */
static void release_dead_chains(struct store *s)
{
	uint8_t page[PAGER_PAGE_SIZE];

	for (size_t i = 0; i < s->dead.n; i++) {
		uint64_t pg = s->dead.v[i];
		uint64_t guard = 0;
		while (pg && guard++ < s->hwm) {
			struct pager_hdr h;
			if (pager_read(s->pager, pg, PAGER_INDEX, page, &h) < 0) {
				bz_warn("store.db: index chain of a deleted file unreadable at page %llu: pages leak",
					(unsigned long long)pg);
				break;
			}
			if (vec_push(&s->pending, pg) < 0)
				break;
			pg = h.next;
		}
	}
	s->dead.n = 0;
}

int store_checkpoint(struct store *s)
{
	struct bbuf b = {0};
	struct u64vec chain = {0};
	uint8_t page[PAGER_PAGE_SIZE];
	struct store_sb sb;
	int r;

	if (load_error(s))
		return -EIO;
	if (s->read_only)
		return -EROFS;
	if (s->last_applied != s->last_appended) {
		bz_err("store: checkpoint with unapplied batches (applied %llu, appended %llu)",
		       (unsigned long long)s->last_applied, (unsigned long long)s->last_appended);
		return -EINVAL;
	}
	uint64_t t0 = bz_now_ns();

	if (!s->dirty && !s->dead.n) {
		/* Nothing changed since the last checkpoint (a mount without
		 * replay, a close without writes): the durable namespace chain
		 * and free list stay valid; only the WAL position moves. */
		sb = s->sb;
		sb.gen = s->sb.gen + 1;
		sb.checkpoint_lsn = s->last_applied;
		wal_tail_pos(s->wal, &sb.wal_pos);
		sb.checkpoints = s->sb.checkpoints + 1;
		sb_encode(&sb, page);
		r = pager_write(s->pager, sb.gen % 2, page);
		if (r == 0)
			r = pager_sync(s->pager);
		if (r < 0)
			goto fail;
		wal_recycle(s->wal);
		s->sb = sb;
		goto done;
	}

	/* 1. seal the open data page */
	bz_cap_wrlock(&s->lock, &store_cap);
	r = 0;
	if (s->open_pgno && s->open_used)
		r = data_page_flush(s, 0);
	else if (s->open_pgno)
		r = vec_push(&s->free, s->open_pgno); /* allocated, never written */
	if (r == 0)
		s->open_pgno = 0;
	if (r == 0)
		r = run_flush(s);
	bz_cap_wrunlock(&s->lock, &store_cap);
	if (r < 0)
		goto fail;

	/* 2. release old chains */
	release_dead_chains(s);
	for (size_t i = 0; i < s->chain.n; i++) {
		r = vec_push(&s->pending, s->chain.v[i]);
		if (r < 0)
			goto fail;
	}

	/* 3. the new namespace chain */
	bz_cap_rdlock(&s->lock, &store_cap);
	r = ns_serialize(s, &b);
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (r < 0)
		goto fail;
	while (chain.n * (uint64_t)PAGER_PAYLOAD < b.len + free_bytes_max(s->free.n + s->pending.n) + 9) {
		r = vec_push(&chain, page_alloc(s));
		if (r < 0)
			goto fail;
	}
	ser_free(&b, &s->free, &s->pending);
	bb_u8(&b, 'E');
	bb_le64(&b, b.err ? 0 : XXH3_64bits(b.p, b.len));
	r = b.err;
	if (r < 0)
		goto fail;
	size_t done = 0;
	for (size_t i = 0; i < chain.n; i++) {
		size_t n = BZ_MIN(b.len - done, (size_t)PAGER_PAYLOAD);
		struct pager_hdr h = {
			.type = PAGER_NSMETA,
			.pgno = chain.v[i],
			.lsn = s->last_applied,
			.next = i + 1 < chain.n ? chain.v[i + 1] : 0,
			.used = (uint32_t)n,
		};
		memset(page, 0, sizeof(page));
		memcpy(page + PAGER_HDR_SIZE, b.p + done, n);
		done += n;
		pager_seal(page, &h);
		r = pager_write(s->pager, chain.v[i], page);
		if (r < 0)
			goto fail;
	}

	/* 4. everything the new superblock references is durable */
#ifndef BZ_MUTANT_STORE_NO_FSYNC /* mutation test: the crash tests must catch this */
	r = pager_sync(s->pager);
	if (r < 0)
		goto fail;
#endif

	/* 5. the other superblock */
	sb = s->sb;
	sb.gen = s->sb.gen + 1;
	sb.checkpoint_lsn = s->last_applied;
	wal_tail_pos(s->wal, &sb.wal_pos);
	sb.wal_o = s->wal_o;
	sb.hwm = s->hwm;
	sb.ns_first = chain.n ? chain.v[0] : 0;
	sb.ns_pages = chain.n;
	sb.ns_bytes = b.len;
	bz_cap_rdlock(&s->lock, &store_cap);
	sb.next_ino = ns_next_ino(s->ns);
	sb.stored_bytes = s->stored_bytes;
	sb.logical_bytes = s->logical_bytes;
	bz_cap_rdunlock(&s->lock, &store_cap);
	sb.data_pages = s->data_pages;
	sb.checkpoints = s->sb.checkpoints + 1;
	sb_encode(&sb, page);
	r = pager_write(s->pager, sb.gen % 2, page);
	if (r < 0)
		goto fail;
	r = pager_sync(s->pager);
	if (r < 0)
		goto fail;

	/* 6. the new checkpoint is durable */
	wal_recycle(s->wal);
	s->sb = sb;
	for (size_t i = 0; i < s->pending.n; i++)
		if (vec_push(&s->free, s->pending.v[i]) < 0)
			bz_warn("store: out of memory: a free page leaks");
	s->pending.n = 0;
	vec_free(&s->chain);
	s->chain = chain;
	chain = (struct u64vec){0};
	s->dirty = false;
	set_u64(&s->ns_est, b.len);
done:
	set_u64(&s->n_free, s->free.n);
	set_u64(&s->n_reuse, s->free.n);
	set_u64(&s->checkpoints, get_u64(&s->checkpoints) + 1);
	set_u64(&s->checkpoint_lsn, sb.checkpoint_lsn);
	set_u64(&s->wal_used, wal_used_since_checkpoint(s->wal));
	bz_info("store: checkpoint %llu at lsn %llu: %zu namespace pages, %llu pages, %llu us",
		(unsigned long long)sb.gen, (unsigned long long)sb.checkpoint_lsn, (size_t)sb.ns_pages,
		(unsigned long long)sb.hwm, (unsigned long long)((bz_now_ns() - t0) / 1000));
	r = 0;
	goto out;
fail:
	r = set_error(s, r, "checkpoint");
out:
	free(b.p);
	vec_free(&chain);
	return r;
}

/* ------------------------------------------------------------------ */
/* open / close                                                        */

void store_opts_default(struct store_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->wal_segment_bytes = 64ull << 20;
	o->wal_segments = 4;
	o->checkpoint_bytes = 0; /* 0: half of the log */
	o->cache_bytes = 32ull << 20;
	o->create = true;
}

static int store_create(const struct store_opts *o)
{
	struct wal_opts wo = {.segment_bytes = o->wal_segment_bytes, .segments = o->wal_segments};
	struct vfs_file *f = NULL;
	struct store_sb sb = {0};
	struct ns *ns = NULL;
	uint8_t page[PAGER_PAGE_SIZE];
	int r;

	if (!wo.segment_bytes)
		wo.segment_bytes = 64ull << 20;
	if (!wo.segments)
		wo.segments = 4;
	r = vfs_unlink(o->vfs, DB_TMP_NAME);
	if (r < 0 && r != -ENOENT)
		goto out;
	r = wal_create(o->vfs, &wo, &sb.wal_pos);
	if (r < 0) {
		bz_err("store: creating the WAL failed: %s", strerror(-r));
		goto out;
	}
	r = ns_new(&ns);
	if (r < 0)
		goto out;
	sb.wal_o = wo;
	sb.next_ino = ns_next_ino(ns);
	sb.hwm = 2;
	r = vfs_open(o->vfs, DB_TMP_NAME, VFS_O_RDWR | VFS_O_CREAT, &f);
	if (r < 0)
		goto out;
	for (sb.gen = 0; sb.gen < 2; sb.gen++) {
		sb_encode(&sb, page);
		r = vfs_pwrite(f, page, PAGER_PAGE_SIZE, sb.gen * PAGER_PAGE_SIZE);
		if (r < 0)
			goto out;
	}
	r = vfs_fsync(f);
	if (r < 0)
		goto out;
	vfs_close(f);
	f = NULL;
	r = vfs_rename(o->vfs, DB_TMP_NAME, DB_NAME);
	if (r < 0)
		goto out;
	r = vfs_sync_dir(o->vfs);
	if (r < 0)
		goto out;
	bz_info("store: created a new store (WAL %u x %llu bytes)", wo.segments,
		(unsigned long long)wo.segment_bytes);
out:
	if (r < 0)
		bz_err("store: creating the store failed: %s", strerror(-r));
	vfs_close(f);
	ns_free(ns);
	return r;
}

/* store.db is missing. A log whose segments carry a valid header has held
 * committed batches (a header is written with a segment's first batch), and
 * store.db is what names where they start and holds everything checkpointed
 * before them: creating a new store would zero that log. Refuse (-EUCLEAN)
 * and name the files. Segments without any valid header are what a creation
 * interrupted before store.db was renamed into place leaves: recreate. */
static int refuse_orphan_wal(struct vfs *v)
{
	struct wal_probe_info pi;
	int r = wal_probe_dir(v, &pi);

	if (r < 0) {
		bz_err("store: store.db is missing and the WAL segments cannot be inspected: %s", strerror(-r));
		goto out;
	}
	if (pi.with_header == 0) {
		if (pi.files)
			bz_warn("store: store.db is missing; the %u WAL segment(s) hold no batch (an interrupted "
				  "creation): creating a new store",
				  pi.files);
		goto out;
	}
	bz_err("store: store.db is missing but the WAL segments wal.%03u..wal.%03u (%u file(s), %u written) hold "
	       "committed batches: refusing to create a new store over them, which would destroy that data. "
	       "Restore store.db into the store directory, or move the wal.* files away to start an empty store",
	       pi.first, pi.last, pi.files, pi.with_header);
	r = -EUCLEAN;
out:
	return r;
}

static int replay_cb(void *arg, uint64_t lsn, int64_t time_ns, const uint8_t *payload, size_t len)
{
	struct store *s = arg;
	int r = apply_batch(s, lsn, time_ns, payload, len);
	if (r == 0) {
		s->last_appended = lsn;
		set_u64(&s->replayed, s->replayed + 1);
	}
	return r;
}

static void store_free(struct store *s) NO_TSA
{
	if (!s)
		return;
	wal_close(s->wal);
	pager_free(s->pager);
	vfs_close(s->db_f);
	vfs_close(s->lock_f);
	ns_free(s->ns);
	ftab_clear(&s->files);
	free(s->open_page);
	free(s->run);
	vec_free(&s->free);
	vec_free(&s->pending);
	vec_free(&s->chain);
	vec_free(&s->dead);
	for (unsigned i = 0; i < s->n_dctx; i++)
		ZSTD_freeDCtx(s->dctx_pool[i]);
	bz_mutex_destroy(&s->dctx_mu);
	bz_rwlock_destroy(&s->lock);
	free(s);
}

static int read_superblocks(struct store *s, struct store_sb *ret_sb)
{
	uint8_t page[PAGER_PAGE_SIZE];
	struct store_sb sb[2];
	bool ok[2] = {false, false};
	int r = 0;

	for (unsigned i = 0; i < 2; i++) {
		size_t n = 0;
		const char *why = "short file";
		r = vfs_pread(s->db_f, page, PAGER_PAGE_SIZE, i * PAGER_PAGE_SIZE, &n);
		if (r < 0) {
			bz_err("store.db: reading superblock %u failed: %s", i, strerror(-r));
			goto out;
		}
		if (n == PAGER_PAGE_SIZE && sb_decode(page, i, &sb[i], &why) == 0)
			ok[i] = true;
		else
			bz_warn("store.db: superblock %u is invalid (%s)", i, why);
	}
	if (!ok[0] && !ok[1]) {
		bz_err("store.db: no valid superblock: not a blazefs store, or corrupt; refusing to open "
		       "(it is never reinitialized)");
		r = -EUCLEAN;
		goto out;
	}
	int pick = !ok[0] ? 1 : !ok[1] ? 0 : (sb[1].gen > sb[0].gen ? 1 : 0);
	*ret_sb = sb[pick];
	r = 0;
out:
	return r;
}

int store_open(const struct store_opts *o, struct store **ret_store)
{
	struct store *s = NULL;
	struct store_sb sb;
	uint64_t last = 0;
	int r = -EINVAL;

	if (!o || !o->vfs)
		goto out;
	r = -ENOMEM;
	s = calloc(1, sizeof(*s));
	if (!s)
		goto out;
	bz_rwlock_init_writer_first(&s->lock);
	bz_mutex_init(&s->dctx_mu);
	s->vfs = o->vfs;
	s->read_only = o->read_only;

	/* Read-only opens do not create the lock file unless it is missing
	 * (a crash image, a fresh copy) and can still lock an unwritable one,
	 * with a shared lock: read-only users coexist, a writer is excluded.
	 * On read-only media where it is missing and cannot be created they go
	 * on without a lock: nobody can write that store either. */
	r = vfs_open(o->vfs, "lock", s->read_only ? VFS_O_RDONLY : VFS_O_RDWR | VFS_O_CREAT, &s->lock_f);
	if (r == -ENOENT && s->read_only) {
		r = vfs_open(o->vfs, "lock", VFS_O_RDWR | VFS_O_CREAT, &s->lock_f);
		if (r == -EROFS || r == -EACCES || r == -EPERM) {
			bz_info("store: no lock file and it cannot be created (%s): opening read-only without a lock",
				strerror(-r));
			s->lock_f = NULL;
			r = 0;
		}
	}
	if (r < 0) {
		bz_err("store: cannot open the lock file: %s", strerror(-r));
		goto out;
	}
	r = !s->lock_f ? 0 : s->read_only ? vfs_lock_shared(s->lock_f) : vfs_lock(s->lock_f);
	if (r == -EWOULDBLOCK || r == -EAGAIN) {
		bz_err("store: the store is in use by another process (its lock file is held)");
		r = -EBUSY;
		goto out;
	}
	if (r < 0)
		goto out;

	r = vfs_open(o->vfs, DB_NAME, s->read_only ? VFS_O_RDONLY : VFS_O_RDWR, &s->db_f);
	if (r == -ENOENT && o->create && !s->read_only) {
		r = refuse_orphan_wal(o->vfs);
		if (r == 0)
			r = store_create(o);
		if (r < 0)
			goto out;
		r = vfs_open(o->vfs, DB_NAME, VFS_O_RDWR, &s->db_f);
	}
	if (r < 0) {
		bz_err("store: cannot open store.db: %s", strerror(-r));
		goto out;
	}
	r = read_superblocks(s, &sb);
	if (r < 0)
		goto out;
	s->sb = sb;
	s->hwm = sb.hwm;
	s->wal_o = sb.wal_o;
	s->data_pages = sb.data_pages;
	s->checkpoint_lsn = sb.checkpoint_lsn;
	s->checkpoints = sb.checkpoints;
	s->last_applied = s->last_appended = sb.checkpoint_lsn;
	s->index_budget = BZ_MAX(o->cache_bytes / 2 / sizeof(struct ient), (uint64_t)1024);
	s->checkpoint_bytes = o->checkpoint_bytes ? o->checkpoint_bytes
						  : sb.wal_o.segment_bytes * sb.wal_o.segments / 2;

	r = pager_new(s->db_f, o->cache_bytes, &s->pager);
	if (r < 0)
		goto out;
	if (s->read_only)
		pager_set_volatile(s->pager);
	bz_cap_wrlock(&s->lock, &store_cap);
	r = ns_new(&s->ns);
	if (r == 0) {
		s->open_page = calloc(1, PAGER_PAGE_SIZE);
		s->run = malloc((size_t)RUN_PAGES * PAGER_PAGE_SIZE);
		if (!s->open_page || !s->run)
			r = -ENOMEM;
	}
	bz_cap_wrunlock(&s->lock, &store_cap);
	if (r < 0)
		goto out;
	r = ns_load_chain(s, &sb);
	if (r < 0)
		goto out;
	s->ns_est = sb.ns_bytes;
	set_u64(&s->n_free, s->free.n);
	set_u64(&s->n_reuse, s->free.n);

	r = s->read_only ? wal_open_ro(o->vfs, &s->wal_o, &s->wal) : wal_open(o->vfs, &s->wal_o, &s->wal);
	if (r < 0) {
		bz_err("store: opening the WAL failed: %s", strerror(-r));
		goto out;
	}
	s->replaying = true;
	r = wal_replay(s->wal, &sb.wal_pos, sb.checkpoint_lsn, replay_cb, s, &last);
	s->replaying = false;
	if (r < 0) {
		bz_err("store: WAL replay failed: %s", strerror(-r));
		goto out;
	}
	if (last > s->last_appended)
		s->last_appended = last;
	if (s->last_applied != s->last_appended) {
		/* batches the replay skipped cannot exist: wal_replay stops at gaps */
		bz_err("store: WAL replay ended at lsn %llu but applied %llu", (unsigned long long)last,
		       (unsigned long long)s->last_applied);
		r = -EUCLEAN;
		goto out;
	}
	set_u64(&s->wal_used, wal_used_since_checkpoint(s->wal));
	bz_info("store: opened at checkpoint %llu (lsn %llu), replayed %llu batches to lsn %llu",
		(unsigned long long)sb.gen, (unsigned long long)sb.checkpoint_lsn,
		(unsigned long long)s->replayed, (unsigned long long)s->last_applied);
	if (!s->read_only) {
		r = store_checkpoint(s);
		if (r < 0)
			goto out;
	}
	*ret_store = s;
	s = NULL;
	r = 0;
out:
	if (r < 0 && s && s->cause == -ENOSPC) {
		/* Recovery (replay, then a checkpoint) needs at most the reserve
		 * a mounted filesystem keeps free; something else filled the
		 * disk. Nothing was lost: the log and the durable checkpoint are
		 * untouched. Say so, and what to do. */
		uint64_t need = 0, spare = 0, free_b = 0, total_b = 0;
		store_space(s, &need, &spare);
		(void)vfs_space(s->vfs, &free_b, &total_b);
		bz_err("store: recovery ran out of disk space (%llu MiB free; its checkpoint needs about %llu MiB "
		       "more): the committed data is intact in the WAL; free space on the store's disk and open it "
		       "again (a read-only open needs no space)",
		       (unsigned long long)(free_b >> 20), (unsigned long long)(need >> 20) + 1);
		r = -ENOSPC;
	}
	store_free(s);
	return r;
}

int store_close(struct store *s)
{
	int r = 0;

	if (!s)
		return 0;
	if (!s->read_only && !load_error(s))
		r = store_checkpoint(s);
	store_free(s);
	return r;
}

/* ------------------------------------------------------------------ */
/* [commit] write path                                                 */

int store_wal_append(struct store *s, int64_t time_ns, const void *frames, size_t len, uint64_t *ret_lsn)
{
	uint64_t lsn = s->last_appended + 1;
	int r;

	if (load_error(s))
		return -EIO;
	if (s->read_only)
		return -EROFS;
	r = wal_append(s->wal, lsn, time_ns, frames, len);
	if (r < 0)
		return set_error(s, r, "WAL append");
	set_u64(&s->last_appended, lsn);
	set_u64(&s->wal_used, wal_used_since_checkpoint(s->wal));
	*ret_lsn = lsn;
	return 0;
}

bool store_wal_has_room(struct store *s, size_t len) { return wal_has_room(s->wal, len); }

uint64_t store_wal_max_payload(struct store *s) { return wal_max_payload(&s->wal_o); }

int store_wal_sync(struct store *s)
{
	int r;

	if (load_error(s))
		return -EIO;
	if (s->read_only)
		return -EROFS;
	r = wal_sync(s->wal);
	if (r < 0)
		return set_error(s, r, "WAL sync");
	return 0;
}

int store_apply(struct store *s, uint64_t lsn, int64_t time_ns, const void *frames, size_t len)
{
	if (load_error(s))
		return -EIO;
	if (s->read_only)
		return -EROFS;
	if (lsn > s->last_appended) {
		bz_err("store: apply of lsn %llu that was never appended", (unsigned long long)lsn);
		return -EINVAL;
	}
	return apply_batch(s, lsn, time_ns, frames, len);
}

bool store_read_only(const struct store *s) { return s->read_only; }

void store_space(struct store *s, uint64_t *ret_need, uint64_t *ret_spare)
{
	/* The next checkpoint writes the whole stream (namespace, index tails,
	 * free list: at most 10 bytes a page) into new pages while the durable
	 * chain stays allocated, after the run of full data pages, the open
	 * page and an index page. Recovery needs no more: its replay rewrites
	 * pages the crashed run had allocated (the file already covers them)
	 * except data that was never flushed, which the caller's in-flight
	 * reserve covers, then makes this same checkpoint.
	 * Free pages are taken before the file grows: they count against the
	 * checkpoint's pages first, and what is left over ("spare") takes new
	 * data without growing the file. Data that takes free pages leaves the
	 * disk's free space untouched and lowers n_reuse (raising need or
	 * lowering spare by as much), so the sum stays true. */
	uint64_t bytes = get_u64(&s->ns_est) + 10 * get_u64(&s->n_free) + 64;
	uint64_t pages = (bytes + PAGER_PAYLOAD - 1) / PAGER_PAYLOAD + RUN_PAGES + 2;
	uint64_t reuse = get_u64(&s->n_reuse);

	*ret_need = (pages > reuse ? pages - reuse : 0) * PAGER_PAGE_SIZE;
	*ret_spare = (reuse > pages ? reuse - pages : 0) * PAGER_PAGE_SIZE;
}

bool store_need_checkpoint(struct store *s)
{
	return !s->read_only && get_u64(&s->wal_used) >= s->checkpoint_bytes;
}

/* ------------------------------------------------------------------ */
/* [any] reads                                                         */

static const struct ient *sfile_ent(const struct sfile *f, uint64_t i)
{
	return i < f->n_full ? &f->full[i] : &f->tail[i - f->n_full];
}

struct rctx;
static int read_locked(struct store *s, uint64_t ino, uint64_t off, size_t len, size_t *ret_n, bool *need_load,
		       struct rctx *x) REQUIRES_SHARED(store_cap);

/* Reads the entries [stop, have) of a file's index chain into full[],
 * starting at page pg (the newest full index page: it holds the last
 * entries). Index pages are immutable once written and a file's chain only
 * grows at its head, so this needs no s->lock as long as the file lives. */
static int index_chain_read(struct store *s, uint64_t ino, uint64_t pg, uint64_t have, uint64_t stop,
			    struct ient *full)
{
	uint8_t page[PAGER_PAGE_SIZE];
	int r = 0;

	while (have > stop) {
		struct pager_hdr h;
		r = pg ? pager_read(s->pager, pg, PAGER_INDEX, page, &h) : -EIO;
		if (r < 0)
			goto out;
		uint32_t n = h.used / IDX_ENTRY_SIZE;
		if (n == 0 || n > have - stop || h.used % IDX_ENTRY_SIZE) {
			bz_err("store.db: page %llu: index page of inode %llu is inconsistent", (unsigned long long)pg,
			       (unsigned long long)ino);
			r = -EIO;
			goto out;
		}
		have -= n;
		for (uint32_t i = 0; i < n; i++)
			index_entry_decode(page + PAGER_HDR_SIZE + i * IDX_ENTRY_SIZE, &full[have + i]);
		pg = h.next;
	}
out:
	return r;
}

/* Makes full[0, f->n_full) the file's loaded entries (takes full). */
static void sfile_install(struct store *s, struct sfile *f, struct ient *full) REQUIRES(store_cap)
{
	f->full = full;
	f->loaded = true;
	s->loaded_entries += f->n_full;
	/* Over the memory budget: unload every other file's entries. */
	for (size_t i = 0; s->loaded_entries > s->index_budget && i < s->files.cap; i++)
		if (s->files.slot[i] && s->files.slot[i] != f)
			sfile_unload(s, s->files.slot[i]);
}

/* Loads a file's full index entries (s->lock exclusive; tools). */
static int sfile_load(struct store *s, struct sfile *f) REQUIRES(store_cap)
{
	struct ient *full = NULL;
	int r = 0;

	if (f->loaded)
		goto out;
	r = -ENOMEM;
	full = malloc(BZ_MAX(f->n_full, (uint64_t)1) * sizeof(*full));
	if (!full)
		goto out;
	r = index_chain_read(s, f->ino, f->last_full, f->n_full, 0, full);
	if (r < 0)
		goto out;
	sfile_install(s, f, full);
	full = NULL;
out:
	free(full);
	return r;
}

/* store_read's load of a file's full index: the chain as it is now is read
 * with no lock held (the slow part: one page per 126 records), then, under
 * the exclusive lock, only the pages the commit thread added meanwhile are
 * read and the entries installed, and the read's frames are collected. The
 * exclusive hold is thus bounded by what was appended during the load plus
 * the read's own frames, and never includes decompression. */
static int load_and_collect(struct store *s, uint64_t ino, uint64_t off, size_t len, size_t *ret_n, struct rctx *x)
{
	struct ient *full = NULL;
	uint64_t last = 0, n = 0;
	bool need_load = false, have = false;
	int r = 0;

	bz_cap_rdlock(&s->lock, &store_cap);
	struct sfile *f = ftab_get(&s->files, ino);
	if (f && !f->loaded) {
		last = f->last_full;
		n = f->n_full;
		have = true;
	}
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (have) {
		full = malloc(BZ_MAX(n, (uint64_t)1) * sizeof(*full));
		r = full ? index_chain_read(s, ino, last, n, 0, full) : -ENOMEM;
	}

	bz_cap_wrlock(&s->lock, &store_cap);
	f = ftab_get(&s->files, ino);
	if (f && !f->loaded) {
		if (r == 0 && have && f->n_full >= n) {
			struct ient *g = realloc(full, BZ_MAX(f->n_full, (uint64_t)1) * sizeof(*full));
			r = g ? 0 : -ENOMEM;
			if (g)
				full = g;
			if (r == 0)
				r = index_chain_read(s, ino, f->last_full, f->n_full, n, full);
			if (r == 0) {
				sfile_install(s, f, full);
				full = NULL;
			}
		} else if (r == 0) {
			r = sfile_load(s, f); /* cannot happen (inode numbers are never reused) */
		}
	}
	if (r == 0)
		r = read_locked(s, ino, off, len, ret_n, &need_load, x);
	if (r == 0 && NEVER(need_load))
		r = -EIO;
	bz_cap_wrunlock(&s->lock, &store_cap);
	free(full);
	return r;
}

/* Per-store_read scratch: the last data page read (consecutive small
 * records share pages), frame/raw buffers reused across records, and a
 * zstd decompression context borrowed from the store's pool. */
struct rpart {
	struct ient e;     /* copied: the index may change once the lock is dropped */
	uint64_t from, to; /* file bytes wanted from this record */
	size_t at;         /* its frame's offset in rctx.frame */
};

struct rctx {
	uint64_t pgno; /* page held in page[], 0 = none */
	struct pager_hdr h;
	uint8_t *frame, *raw;
	size_t frame_cap, raw_cap;
	size_t frame_len;        /* bytes of frames collected (store_read) */
	struct rpart *parts;     /* the records a store_read decodes, in order */
	size_t n_parts, cap_parts;
	ZSTD_DCtx *dctx;
	uint8_t page[PAGER_PAGE_SIZE];
};

static ZSTD_DCtx *dctx_get(struct store *s)
{
	ZSTD_DCtx *d = NULL;
	bz_cap_lock(&s->dctx_mu, &store_dctx_cap);
	if (s->n_dctx)
		d = s->dctx_pool[--s->n_dctx];
	bz_cap_unlock(&s->dctx_mu, &store_dctx_cap);
	return d ? d : ZSTD_createDCtx();
}

static void dctx_put(struct store *s, ZSTD_DCtx *d)
{
	if (!d)
		return;
	bz_cap_lock(&s->dctx_mu, &store_dctx_cap);
	if (s->n_dctx < DCTX_POOL) {
		s->dctx_pool[s->n_dctx++] = d;
		d = NULL;
	}
	bz_cap_unlock(&s->dctx_mu, &store_dctx_cap);
	ZSTD_freeDCtx(d);
}

static int grow(uint8_t **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t c = BZ_MAX(need, (size_t)8192);
	uint8_t *n = realloc(*p, c);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = c;
	return 0;
}

/* Where the bytes of data page pg are: the open page, the run of full pages
 * not yet written, or the reader's held copy x->page (read and verified
 * once; written data pages never change, so the copy stays valid). */
static int data_page_src(struct store *s, uint64_t pg, struct rctx *x, const uint8_t **ret_src,
			 struct pager_hdr *ret_h) REQUIRES_SHARED(store_cap)
{
	int r;

	if (pg == s->open_pgno) {
		*ret_src = s->open_page;
		ret_h->used = s->open_used;
		ret_h->next = 0;
		return 0;
	}
	if (s->run_n && pg >= s->run_first && pg < s->run_first + s->run_n) {
		const uint8_t *src = s->run + (size_t)(pg - s->run_first) * PAGER_PAGE_SIZE;
		*ret_src = src;
		ret_h->used = bz_get_le32(src + 32);
		ret_h->next = bz_get_le64(src + 24);
		return 0;
	}
	if (x->pgno != pg) {
		x->pgno = 0;
		r = pager_read(s->pager, pg, PAGER_DATA, x->page, &x->h);
		if (r < 0)
			return r;
		x->pgno = pg;
	}
	*ret_src = x->page;
	*ret_h = x->h;
	return 0;
}

/* Copies the frame of e into x->frame[dst, dst + e->frame_len). */
static int frame_copy(struct store *s, const struct ient *e, struct rctx *x, size_t dst) REQUIRES_SHARED(store_cap)
{
	uint64_t pg = e->page;
	uint32_t at = e->pg_off;
	size_t done = 0;
	int r;

	/* Never trust a length from the index (found by fuzz_page). */
	if (e->frame_len > REC_HDR_MAX + REC_MAX_RAW || e->raw_len > REC_MAX_RAW) {
		bz_err("store: index entry at offset %llu names a %u-byte frame: corrupt index",
		       (unsigned long long)e->off, e->frame_len);
		return -EIO;
	}
	r = grow(&x->frame, &x->frame_cap, dst + e->frame_len);

	while (r == 0 && done < e->frame_len) {
		const uint8_t *src;
		struct pager_hdr h;
		if (!pg) {
			bz_err("store: inode index names data page 0");
			r = -EIO;
			break;
		}
		r = data_page_src(s, pg, x, &src, &h);
		if (r < 0)
			break;
		size_t n = at < h.used ? BZ_MIN((size_t)(h.used - at), e->frame_len - done) : 0;
		memcpy(x->frame + dst + done, src + PAGER_HDR_SIZE + at, n);
		done += n;
		if (done < e->frame_len && (!h.next || h.used != PAGER_PAYLOAD)) {
			bz_err("store.db: page %llu: a record frame runs past the page's data", (unsigned long long)pg);
			r = -EIO;
			break;
		}
		pg = h.next;
		at = 0;
	}
	return r;
}

/* Reads the frame of e into x->frame[0, e->frame_len). */
static int frame_read(struct store *s, const struct ient *e, struct rctx *x) REQUIRES_SHARED(store_cap)
{
	return frame_copy(s, e, x, 0);
}

static struct store_test_hooks test_hooks; /* tests only: set before any store runs */

void store_set_test_hooks(const struct store_test_hooks *h)
{
	if (h)
		test_hooks = *h;
	else
		memset(&test_hooks, 0, sizeof(test_hooks));
}

/* Decodes part p (its frame already copied into x->frame) and copies the
 * wanted bytes into out. Needs no lock: the frame is the reader's copy. */
static int record_decode(struct store *s, uint64_t ino, const struct rpart *p, uint8_t *out, struct rctx *x)
{
	const struct ient *e = &p->e;
	struct rec_hdr h;
	const uint8_t *payload;
	size_t flen;
	int r;

	if (test_hooks.before_decode)
		test_hooks.before_decode(test_hooks.arg, ino, e->off);
	r = grow(&x->raw, &x->raw_cap, e->raw_len);
	if (r < 0)
		goto out;
	r = rec_decode(x->frame + p->at, e->frame_len, &h, &payload, &flen);
	if (r == 0 && (h.type != REC_DATA || h.ino != ino || h.off != e->off || h.raw_len != e->raw_len ||
		       flen != e->frame_len))
		r = -EBADMSG;
	if (r == 0 && h.codec == REC_ZSTD && !x->dctx)
		x->dctx = dctx_get(s);
	if (r == 0)
		r = rec_payload_decode(&h, payload, x->raw, x->dctx);
	if (r < 0) {
		__atomic_fetch_add(&s->record_errors, 1, __ATOMIC_RELAXED);
		bz_err("store.db: page %llu: record of inode %llu at offset %llu fails its checks (%s)",
		       (unsigned long long)e->page, (unsigned long long)ino, (unsigned long long)e->off,
		       strerror(-r));
		r = -EIO;
		goto out;
	}
	memcpy(out, x->raw + (p->from - e->off), (size_t)(p->to - p->from));
out:
	return r;
}

/* Copies the frame of e into the read's frame buffer and notes the part
 * [from, to) of it the read wants (s->lock held: only copies). */
static int record_collect(struct store *s, const struct ient *e, uint64_t from, uint64_t to, struct rctx *x)
	REQUIRES_SHARED(store_cap)
{
	int r = 0;

	if (x->n_parts == x->cap_parts) {
		size_t c = x->cap_parts ? x->cap_parts * 2 : 8;
		struct rpart *np = realloc(x->parts, c * sizeof(*np));
		if (!np)
			return -ENOMEM;
		x->parts = np;
		x->cap_parts = c;
	}
	r = frame_copy(s, e, x, x->frame_len);
	if (r < 0)
		return r;
	x->parts[x->n_parts++] = (struct rpart){.e = *e, .from = from, .to = to, .at = x->frame_len};
	x->frame_len += e->frame_len;
	return 0;
}

/* The locked half of store_read (s->lock shared or exclusive): finds the
 * records of the range and copies their frames into x (record_collect);
 * store_read decodes them after dropping the lock. Sets *need_load (and
 * returns 0 without collecting) when the range needs index entries that
 * are not loaded. */
static int read_locked(struct store *s, uint64_t ino, uint64_t off, size_t len, size_t *ret_n, bool *need_load,
		       struct rctx *x) REQUIRES_SHARED(store_cap)
{
	struct ns_attr a;
	struct sfile *f;
	size_t n = 0;
	int r;

	*need_load = false;
	r = ns_getattr(s->ns, ino, &a);
	if (r < 0)
		goto out;
	if (!S_ISREG(a.mode)) {
		r = S_ISDIR(a.mode) ? -EISDIR : -EINVAL;
		goto out;
	}
	if (off >= a.size || !len)
		goto done;
	uint64_t end = BZ_MIN(a.size, off + (uint64_t)len);
	f = ftab_get(&s->files, ino);
	if (!f) {
		bz_err("store: inode %llu has size %llu but no index", (unsigned long long)ino,
		       (unsigned long long)a.size);
		r = -EIO;
		goto out;
	}
	if (!f->loaded && (f->n_tail == 0 || off < f->tail[0].off)) {
		*need_load = true;
		r = 0;
		goto out;
	}
	/* binary search: the last entry with e.off <= off */
	uint64_t total = f->n_full + f->n_tail;
	uint64_t lo = f->loaded ? 0 : f->n_full, hi = total;
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (sfile_ent(f, mid)->off <= off)
			lo = mid;
		else
			hi = mid;
	}
	uint64_t pos = off;
	for (uint64_t i = lo; i < total && pos < end; i++) {
		const struct ient *e = sfile_ent(f, i);
		if (e->off > pos) {
			bz_err("store: inode %llu: index has a hole at offset %llu", (unsigned long long)ino,
			       (unsigned long long)pos);
			r = -EIO;
			goto out;
		}
		uint64_t to = BZ_MIN(end, e->off + e->raw_len);
		if (to <= pos)
			continue;
		r = record_collect(s, e, pos, to, x);
		if (r < 0)
			goto out;
		pos = to;
	}
	if (pos < end) {
		bz_err("store: inode %llu: index ends at %llu below its size %llu", (unsigned long long)ino,
		       (unsigned long long)pos, (unsigned long long)a.size);
		r = -EIO;
		goto out;
	}
	n = (size_t)(end - off);
done:
	*ret_n = n;
	r = 0;
out:
	return r;
}

int store_read(struct store *s, uint64_t ino, uint64_t off, void *buf, size_t len, size_t *ret_n)
{
	struct rctx *x = calloc(1, sizeof(*x));
	bool need_load = false;
	size_t n = 0;
	int r = -ENOMEM;

	if (!x)
		goto out;
	/* Under the lock only index lookups and frame copies; the commit
	 * thread never waits for a decompression. */
	bz_cap_rdlock(&s->lock, &store_cap);
	r = read_locked(s, ino, off, len, &n, &need_load, x);
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (r == 0 && need_load)
		r = load_and_collect(s, ino, off, len, &n, x);
	for (size_t i = 0; r == 0 && i < x->n_parts; i++)
		r = record_decode(s, ino, &x->parts[i], (uint8_t *)buf + (x->parts[i].from - off), x);
	if (r == 0)
		*ret_n = n;
out:
	if (x) {
		dctx_put(s, x->dctx);
		free(x->frame);
		free(x->raw);
		free(x->parts);
		free(x);
	}
	return r;
}

int store_ns_clone(struct store *s, struct ns **ret_ns)
{
	bz_cap_rdlock(&s->lock, &store_cap);
	int r = ns_clone(s->ns, ret_ns);
	bz_cap_rdunlock(&s->lock, &store_cap);
	return r;
}

int store_file_size(struct store *s, uint64_t ino, uint64_t *ret_size)
{
	struct ns_attr a;

	bz_cap_rdlock(&s->lock, &store_cap);
	int r = ns_getattr(s->ns, ino, &a);
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (r < 0)
		return r;
	*ret_size = a.size;
	return 0;
}

int store_file_info(struct store *s, uint64_t ino, struct store_file_info *ret_info)
{
	struct store_file_info fi = {0};
	struct ns_attr a;
	int r;

	bz_cap_rdlock(&s->lock, &store_cap);
	r = ns_getattr(s->ns, ino, &a);
	if (r == 0) {
		const struct sfile *f = ftab_get(&s->files, ino);
		if (f) {
			fi.records = f->n_full + f->n_tail;
			fi.raw_bytes = f->raw_bytes;
			fi.stored_bytes = f->stored_bytes;
		}
	}
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (r == 0)
		*ret_info = fi;
	return r;
}

void store_stats(struct store *s, struct store_stats *ret)
{
	struct pager_stats ps;

	memset(ret, 0, sizeof(*ret));
	ret->page_size = PAGER_PAGE_SIZE;
	pager_stats(s->pager, &ps);
	bz_cap_rdlock(&s->lock, &store_cap);
	ret->stored_bytes = s->stored_bytes;
	ret->logical_bytes = s->logical_bytes;
	bz_cap_rdunlock(&s->lock, &store_cap);
	ret->pages_total = __atomic_load_n(&s->hwm, __ATOMIC_RELAXED);
	ret->pages_free = get_u64(&s->n_free);
	ret->data_pages = get_u64(&s->data_pages);
	ret->wal_bytes_since_checkpoint = get_u64(&s->wal_used);
	ret->checkpoints = get_u64(&s->checkpoints);
	ret->checkpoint_lsn = get_u64(&s->checkpoint_lsn);
	ret->last_lsn = get_u64(&s->last_applied);
	ret->cache_hits = ps.hits;
	ret->cache_misses = ps.misses;
	ret->checksum_errors = ps.checksum_errors + get_u64(&s->record_errors);
	ret->replayed_batches = get_u64(&s->replayed);
	store_space(s, &ret->space_need, &ret->space_spare);
	ret->error = load_error(s);
}

/* ------------------------------------------------------------------ */
/* offline inspection and checking (blazectl fsck/dump)                */
/*
 * These run in single-threaded tools (blazectl) on a store nobody else
 * uses. store_check takes s->lock exclusive for the whole walk. What each
 * check verifies, and which findings are errors or warnings, is specified
 * in docs/BLAZECTL.md.
 */

/* Superblock fields as stored, without any validation (for dump). */
static void sb_raw(const uint8_t *page, struct store_sb_info *ret)
{
	const uint8_t *p = page + PAGER_HDR_SIZE;

	ret->wal_segments = bz_get_le32(p + 12);
	ret->generation = bz_get_le64(p + 16);
	ret->checkpoint_lsn = bz_get_le64(p + 24);
	ret->wal_segment = bz_get_le32(p + 32);
	ret->wal_life = bz_get_le64(p + 40);
	ret->wal_offset = bz_get_le64(p + 48);
	ret->wal_segment_bytes = bz_get_le64(p + 56);
	ret->next_ino = bz_get_le64(p + 64);
	ret->hwm = bz_get_le64(p + 72);
	ret->ns_first = bz_get_le64(p + 80);
	ret->ns_pages = bz_get_le64(p + 88);
	ret->ns_bytes = bz_get_le64(p + 96);
	ret->stored_bytes = bz_get_le64(p + 104);
	ret->logical_bytes = bz_get_le64(p + 112);
	ret->data_pages = bz_get_le64(p + 120);
	ret->checkpoints = bz_get_le64(p + 128);
}

int store_read_superblocks(struct vfs *v, struct store_sb_info ret_sb[2])
{
	struct store_sb_info out[2];
	struct vfs_file *f = NULL;
	uint8_t *page = malloc(PAGER_PAGE_SIZE);
	int r = -ENOMEM;

	if (!page)
		goto out;
	r = vfs_open(v, DB_NAME, VFS_O_RDONLY, &f);
	if (r < 0)
		goto out;
	memset(out, 0, sizeof(out));
	for (unsigned i = 0; i < 2; i++) {
		struct store_sb sb;
		const char *why = "missing (short file)";
		size_t n = 0;

		r = vfs_pread(f, page, PAGER_PAGE_SIZE, (uint64_t)i * PAGER_PAGE_SIZE, &n);
		if (r < 0)
			goto out;
		out[i].present = n == PAGER_PAGE_SIZE;
		if (!out[i].present) {
			out[i].why = why;
			continue;
		}
		sb_raw(page, &out[i]);
		out[i].valid = sb_decode(page, i, &sb, &why) == 0;
		out[i].why = out[i].valid ? NULL : why;
	}
	memcpy(ret_sb, out, sizeof(out));
	r = 0;
out:
	vfs_close(f);
	free(page);
	return r;
}

const char *store_page_type_name(uint8_t type)
{
	switch (type) {
	case PAGER_SUPER:
		return "super";
	case PAGER_DATA:
		return "data";
	case PAGER_INDEX:
		return "index";
	case PAGER_NSMETA:
		return "nsmeta";
	default:
		return "?";
	}
}

int store_scan_pages(struct vfs *v, store_page_fn fn, void *arg)
{
	const size_t chunk = 64;
	struct vfs_file *f = NULL;
	uint8_t *buf = malloc(chunk * PAGER_PAGE_SIZE);
	uint64_t size = 0, pgno = 0;
	int r = -ENOMEM;

	if (!buf)
		goto out;
	r = vfs_open(v, DB_NAME, VFS_O_RDONLY, &f);
	if (r == 0)
		r = vfs_size(f, &size);
	if (r < 0)
		goto out;
	while (pgno < size / PAGER_PAGE_SIZE) {
		size_t n = 0;
		r = vfs_pread(f, buf, chunk * PAGER_PAGE_SIZE, pgno * PAGER_PAGE_SIZE, &n);
		if (r < 0)
			goto out;
		if (n < PAGER_PAGE_SIZE)
			break;
		for (size_t i = 0; i < n / PAGER_PAGE_SIZE; i++, pgno++) {
			const uint8_t *p = buf + i * PAGER_PAGE_SIZE;
			struct store_page_info pi = {.pgno = pgno};
			pi.magic_ok = bz_get_le32(p) == PAGER_MAGIC;
			pi.ok = pager_check(p, pgno, 0, NULL) == 0;
			pi.type = p[4];
			pi.stored_pgno = bz_get_le64(p + 8);
			pi.lsn = bz_get_le64(p + 16);
			pi.next = bz_get_le64(p + 24);
			pi.used = bz_get_le32(p + 32);
			pi.zero = true;
			for (size_t k = 0; k < PAGER_PAGE_SIZE && pi.zero; k += 8)
				pi.zero = bz_get_le64(p + k) == 0;
			r = fn(arg, &pi);
			if (r != 0)
				goto out;
		}
	}
	r = 0;
out:
	vfs_close(f);
	free(buf);
	return r;
}

/* Verifies one record fully: frame header against the index entry, then
 * the payload (decompressed) against its xxh3. Fills stored_len/codec. */
static int record_verify(struct store *s, uint64_t ino, const struct ient *e, struct rctx *x, uint32_t *ret_stored,
			 uint8_t *ret_codec) REQUIRES_SHARED(store_cap)
{
	struct rec_hdr h;
	const uint8_t *payload;
	size_t flen;
	int r;

	r = frame_read(s, e, x);
	if (r < 0)
		return -EIO;
	r = rec_decode(x->frame, e->frame_len, &h, &payload, &flen);
	if (r < 0)
		return -EBADMSG;
	*ret_stored = h.stored_len;
	*ret_codec = h.codec;
	if (h.type != REC_DATA || h.ino != ino || h.off != e->off || h.raw_len != e->raw_len || flen != e->frame_len)
		return -EBADMSG;
	r = grow(&x->raw, &x->raw_cap, BZ_MAX(e->raw_len, 1u));
	if (r < 0)
		return r;
	if (h.codec == REC_ZSTD && !x->dctx)
		x->dctx = ZSTD_createDCtx();
	return rec_payload_decode(&h, payload, x->raw, x->dctx) < 0 ? -EBADMSG : 0;
}

static void rctx_free(struct rctx *x)
{
	if (!x)
		return;
	ZSTD_freeDCtx(x->dctx);
	free(x->frame);
	free(x->raw);
	free(x->parts);
	free(x);
}

int store_file_records(struct store *s, uint64_t ino, store_record_fn fn, void *arg)
{
	struct rctx *x = calloc(1, sizeof(*x));
	struct ns_attr a;
	int r = -ENOMEM;

	if (!x)
		return r;
	bz_cap_wrlock(&s->lock, &store_cap);
	r = ns_getattr(s->ns, ino, &a);
	struct sfile *f = r == 0 ? ftab_get(&s->files, ino) : NULL;
	if (f)
		r = sfile_load(s, f);
	for (uint64_t i = 0; f && r == 0 && i < f->n_full + f->n_tail; i++) {
		const struct ient *e = sfile_ent(f, i);
		struct store_record_info ri = {
			.off = e->off, .raw_len = e->raw_len, .frame_len = e->frame_len,
			.page = e->page, .pg_off = e->pg_off,
		};
		ri.status = record_verify(s, ino, e, x, &ri.stored_len, &ri.codec);
		r = fn(arg, &ri);
	}
	bz_cap_wrunlock(&s->lock, &store_cap);
	rctx_free(x);
	return r;
}

/* ---- store_check ---- */

enum {
	PG_USED = 1,    /* reachable from the newest checkpoint (or the replayed state) */
	PG_FREE = 2,    /* on the free list */
	PG_PENDING = 4, /* released, free at the next checkpoint */
	PG_BAD = 8,     /* failed its checks (reported once) */
	PG_DATA = 16,   /* counted as a data page */
};

struct chk_ino {
	uint64_t ino, size;
	uint32_t mode, nlink;
	uint32_t links, subdirs, entries; /* counted from the entries */
	bool reached;
};

struct chk_dent {
	uint64_t dir, ino;
};

struct chk {
	struct store *s;
	const struct store_check_ops *ops;
	void *arg;
	struct store_check_report rep;
	uint8_t *pg;   /* per-page state, n_pg entries */
	uint64_t n_pg; /* = s->hwm */
	uint64_t done, total;
	struct rctx *x;
	struct chk_ino *ino;
	size_t n_ino, cap_ino;
	struct chk_dent *dent;
	size_t n_dent, cap_dent;
	int err; /* allocation failure */
};

static void chk_say(struct chk *c, enum store_check_sev sev, const char *fmt, ...) BZ_PRINTF(3, 4);

static void chk_say(struct chk *c, enum store_check_sev sev, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (sev == STORE_CHECK_ERROR)
		c->rep.errors++;
	else if (sev == STORE_CHECK_WARN)
		c->rep.warnings++;
	if (!c->ops || !c->ops->problem)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->ops->problem(c->arg, sev, msg);
}

static void chk_progress(struct chk *c)
{
	if (c->ops && c->ops->progress)
		c->ops->progress(c->arg, BZ_MIN(c->done, c->total), c->total);
}

/* Marks a page reachable; false (after reporting) if it cannot be. */
static bool chk_use(struct chk *c, uint64_t pg, const char *what, uint64_t ino)
{
	if (pg < 2 || pg >= c->n_pg) {
		chk_say(c, STORE_CHECK_ERROR, "%s of inode %llu names page %llu, outside the allocated pages 2..%llu",
			what, (unsigned long long)ino, (unsigned long long)pg, (unsigned long long)c->n_pg - 1);
		return false;
	}
	c->pg[pg] |= PG_USED;
	return true;
}

static unsigned long long ull(uint64_t v) { return (unsigned long long)v; }

/* frame_read with reachability marking and per-page error reports. */
static int chk_frame_read(struct chk *c, uint64_t ino, const struct ient *e) REQUIRES_SHARED(store_cap)
{
	struct store *s = c->s;
	struct rctx *x = c->x;
	uint64_t pg = e->page;
	uint32_t at = e->pg_off;
	uint64_t guard = 0;
	size_t done = 0;
	int r;

	if (e->frame_len > REC_HDR_MAX + REC_MAX_RAW || e->raw_len > REC_MAX_RAW) {
		chk_say(c, STORE_CHECK_ERROR, "inode %llu: index entry at offset %llu names a %u-byte frame",
			ull(ino), ull(e->off), e->frame_len);
		return -EIO;
	}
	r = grow(&x->frame, &x->frame_cap, BZ_MAX(e->frame_len, 1u));

	while (r == 0 && done < e->frame_len) {
		const uint8_t *src;
		struct pager_hdr h;
		if (!chk_use(c, pg, "a record", ino) || guard++ > c->n_pg) {
			r = -EIO;
			break;
		}
		if (c->pg[pg] & PG_BAD) {
			r = -EIO; /* reported when first seen */
			break;
		}
		if (!(c->pg[pg] & PG_DATA)) {
			c->pg[pg] |= PG_DATA;
			c->rep.data_pages++;
		}
		if (data_page_src(s, pg, x, &src, &h) < 0) {
			c->pg[pg] |= PG_BAD;
			c->rep.bad_pages++;
			chk_say(c, STORE_CHECK_ERROR,
				"data page %llu fails its checksum or header (first seen by a record of "
				"inode %llu at offset %llu)", ull(pg), ull(ino), ull(e->off));
			r = -EIO;
			break;
		}
		size_t n = at < h.used ? BZ_MIN((size_t)(h.used - at), e->frame_len - done) : 0;
		memcpy(x->frame + done, src + PAGER_HDR_SIZE + at, n);
		done += n;
		if (done < e->frame_len && (!h.next || h.used != PAGER_PAYLOAD)) {
			chk_say(c, STORE_CHECK_ERROR,
				"data page %llu: the record of inode %llu at offset %llu runs past the page's data",
				ull(pg), ull(ino), ull(e->off));
			r = -EIO;
			break;
		}
		pg = h.next;
		at = 0;
	}
	return r;
}

/* One index entry, visited newest first: *end is where it must end. */
static void chk_entry(struct chk *c, uint64_t ino, const struct ient *e, uint64_t *end, bool *hole_said,
		      uint64_t *raw_sum, uint64_t *frame_sum) REQUIRES_SHARED(store_cap)
{
	struct rec_hdr h;
	const uint8_t *payload;
	size_t flen;
	int r;

	if (e->off + e->raw_len != *end && !*hole_said) {
		chk_say(c, STORE_CHECK_ERROR,
			"inode %llu: index entry at offset %llu (%u bytes) does not end where the next begins (%llu): "
			"a hole or an overlap", ull(ino), ull(e->off), e->raw_len, ull(*end));
		*hole_said = true;
	}
	*end = e->off;
	*raw_sum += e->raw_len;
	*frame_sum += e->frame_len;
	c->rep.records++;
	c->rep.raw_bytes += e->raw_len;
	c->rep.stored_bytes += e->frame_len;
	c->done += e->frame_len;
	r = chk_frame_read(c, ino, e);
	if (r < 0) {
		c->rep.bad_records++;
		goto out;
	}
	r = rec_decode(c->x->frame, e->frame_len, &h, &payload, &flen);
	if (r == 0 && (h.type != REC_DATA || h.ino != ino || h.off != e->off || h.raw_len != e->raw_len ||
		       flen != e->frame_len)) {
		c->rep.bad_records++;
		chk_say(c, STORE_CHECK_ERROR,
			"inode %llu offset %llu (page %llu+%u): the frame is a record of inode %llu at offset %llu, "
			"%u raw bytes, %zu frame bytes; the index says %u and %u", ull(ino), ull(e->off),
			ull(e->page), e->pg_off, ull(h.ino), ull(h.off), h.raw_len, flen, e->raw_len, e->frame_len);
		goto out;
	}
	if (r == 0)
		r = grow(&c->x->raw, &c->x->raw_cap, BZ_MAX(e->raw_len, 1u));
	if (r == 0 && h.codec == REC_ZSTD && !c->x->dctx)
		c->x->dctx = ZSTD_createDCtx();
	if (r == 0)
		r = rec_payload_decode(&h, payload, c->x->raw, c->x->dctx);
	if (r < 0) {
		c->rep.bad_records++;
		chk_say(c, STORE_CHECK_ERROR,
			"inode %llu offset %llu (page %llu+%u): the record fails its %s check", ull(ino), ull(e->off),
			ull(e->page), e->pg_off, r == -ENOMEM ? "(out of memory)" : "header or payload checksum");
	}
out:
	chk_progress(c);
}

static int chk_ino_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct chk_ino *)a)->ino, y = ((const struct chk_ino *)b)->ino;
	return x < y ? -1 : x > y;
}

static struct chk_ino *chk_find(struct chk *c, uint64_t ino)
{
	struct chk_ino key = {.ino = ino};
	return c->n_ino ? bsearch(&key, c->ino, c->n_ino, sizeof(key), chk_ino_cmp) : NULL;
}

/* The per-file walk: tail (newest) then the full index pages, newest to
 * oldest; entries must tile [0, size) exactly. */
static void chk_file(struct chk *c, const struct sfile *f) REQUIRES_SHARED(store_cap)
{
	struct chk_ino *in = chk_find(c, f->ino);
	uint64_t size = in ? in->size : f->raw_bytes;
	uint64_t end = size, raw_sum = 0, frame_sum = 0, left = f->n_full, pg = f->last_full;
	bool hole_said = false;
	uint8_t idx[PAGER_PAGE_SIZE];

	c->rep.files++;
	if (!in)
		chk_say(c, STORE_CHECK_ERROR, "index of inode %llu: no such inode in the namespace", ull(f->ino));
	else if (!S_ISREG(in->mode))
		chk_say(c, STORE_CHECK_ERROR, "index of inode %llu: the inode is not a regular file", ull(f->ino));
	for (uint32_t i = f->n_tail; i-- > 0;)
		chk_entry(c, f->ino, &f->tail[i], &end, &hole_said, &raw_sum, &frame_sum);
	while (left) {
		struct pager_hdr h;
		if (!pg || pg >= c->n_pg || pg < 2) {
			chk_say(c, STORE_CHECK_ERROR,
				"inode %llu: index chain ends early (link %llu) with %llu entries missing", ull(f->ino),
				ull(pg), ull(left));
			break;
		}
		if (c->pg[pg] & (PG_USED | PG_FREE | PG_PENDING)) {
			chk_say(c, STORE_CHECK_ERROR,
				"inode %llu: index page %llu is already in use or free (cross-linked or a cycle)",
				ull(f->ino), ull(pg));
			break;
		}
		c->pg[pg] |= PG_USED;
		c->rep.index_pages++;
		if (pager_read(c->s->pager, pg, PAGER_INDEX, idx, &h) < 0) {
			c->pg[pg] |= PG_BAD;
			c->rep.bad_pages++;
			chk_say(c, STORE_CHECK_ERROR,
				"index page %llu of inode %llu fails its checksum or header: %llu index entries and "
				"the pages they name are unverifiable", ull(pg), ull(f->ino), ull(left));
			break;
		}
		uint32_t n = h.used / IDX_ENTRY_SIZE;
		if (n == 0 || n > left || h.used % IDX_ENTRY_SIZE) {
			chk_say(c, STORE_CHECK_ERROR, "index page %llu of inode %llu holds %u bytes of entries, %llu expected",
				ull(pg), ull(f->ino), h.used, ull(left * IDX_ENTRY_SIZE));
			break;
		}
		left -= n;
		for (uint32_t j = n; j-- > 0;) {
			struct ient e;
			index_entry_decode(idx + PAGER_HDR_SIZE + j * IDX_ENTRY_SIZE, &e);
			chk_entry(c, f->ino, &e, &end, &hole_said, &raw_sum, &frame_sum);
		}
		pg = h.next;
		if (!left && pg)
			chk_say(c, STORE_CHECK_ERROR, "inode %llu: index chain continues past its %llu entries (page %llu)",
				ull(f->ino), ull(f->n_full), ull(pg));
	}
	if (left)
		return; /* reported above; the sums cannot match */
	if (end != 0 && !hole_said)
		chk_say(c, STORE_CHECK_ERROR, "inode %llu: the first record starts at offset %llu, not 0", ull(f->ino),
			ull(end));
	if (raw_sum != size)
		chk_say(c, STORE_CHECK_ERROR, "inode %llu: records hold %llu bytes but the file's size is %llu",
			ull(f->ino), ull(raw_sum), ull(size));
	if (raw_sum != f->raw_bytes || frame_sum != f->stored_bytes)
		chk_say(c, STORE_CHECK_ERROR,
			"inode %llu: index totals (%llu raw, %llu stored) differ from the records (%llu, %llu)",
			ull(f->ino), ull(f->raw_bytes), ull(f->stored_bytes), ull(raw_sum), ull(frame_sum));
}

static int chk_inode_cb(void *arg, const struct ns_attr *a, const char *symlink, size_t symlink_len)
{
	struct chk *c = arg;
	(void)symlink;
	(void)symlink_len;
	if (c->n_ino == c->cap_ino) {
		size_t cap = c->cap_ino ? c->cap_ino * 2 : 256;
		struct chk_ino *p = realloc(c->ino, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		c->ino = p;
		c->cap_ino = cap;
	}
	c->ino[c->n_ino++] = (struct chk_ino){.ino = a->ino, .size = a->size, .mode = a->mode, .nlink = a->nlink};
	return 0;
}

static int chk_dirent_cb(void *arg, uint64_t dir, const char *name, size_t name_len, uint64_t ino)
{
	struct chk *c = arg;
	struct chk_ino *d, *t;

	if (c->n_dent == 0 && c->n_ino)
		qsort(c->ino, c->n_ino, sizeof(*c->ino), chk_ino_cmp); /* all inodes come first */
	d = chk_find(c, dir);
	t = chk_find(c, ino);
	if (!d || !S_ISDIR(d->mode))
		chk_say(c, STORE_CHECK_ERROR, "entry '%.*s' lives in inode %llu, which is not a directory", (int)name_len,
			name, ull(dir));
	if (!t)
		chk_say(c, STORE_CHECK_ERROR, "entry '%.*s' in directory %llu names inode %llu, which does not exist",
			(int)name_len, name, ull(dir), ull(ino));
	if (d) {
		d->entries++;
		if (t && S_ISDIR(t->mode))
			d->subdirs++;
	}
	if (t)
		t->links++;
	if (c->n_dent == c->cap_dent) {
		size_t cap = c->cap_dent ? c->cap_dent * 2 : 256;
		struct chk_dent *p = realloc(c->dent, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		c->dent = p;
		c->cap_dent = cap;
	}
	c->dent[c->n_dent++] = (struct chk_dent){.dir = dir, .ino = ino};
	return 0;
}

static int chk_dent_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct chk_dent *)a)->dir, y = ((const struct chk_dent *)b)->dir;
	return x < y ? -1 : x > y;
}

/* Namespace: entries name existing inodes, link counts, orphans. */
static int chk_namespace(struct chk *c) REQUIRES_SHARED(store_cap)
{
	struct ns_visit v = {.inode = chk_inode_cb, .dirent = chk_dirent_cb};
	uint64_t *queue = NULL;
	size_t qh = 0, qt = 0;
	int r;

	r = ns_walk(c->s->ns, &v, c);
	if (r < 0)
		goto out;
	qsort(c->ino, c->n_ino, sizeof(*c->ino), chk_ino_cmp);
	qsort(c->dent, c->n_dent, sizeof(*c->dent), chk_dent_cmp);
	uint64_t next_ino = ns_next_ino(c->s->ns);
	for (size_t i = 0; i < c->n_ino; i++) {
		struct chk_ino *in = &c->ino[i];
		bool root = in->ino == NS_ROOT_INO;
		c->rep.inodes++;
		if (in->ino >= next_ino)
			chk_say(c, STORE_CHECK_ERROR, "inode %llu is not below the next inode number %llu", ull(in->ino),
				ull(next_ino));
		if (S_ISDIR(in->mode)) {
			c->rep.dirs++;
			if (in->links != (root ? 0u : 1u))
				chk_say(c, STORE_CHECK_ERROR, "directory %llu is named by %u entries", ull(in->ino),
					in->links);
			if (in->nlink != 2 + in->subdirs)
				chk_say(c, STORE_CHECK_ERROR,
					"directory %llu has link count %u, expected %u (2 + %u subdirectories)",
					ull(in->ino), in->nlink, 2 + in->subdirs, in->subdirs);
			if (in->size != in->entries)
				chk_say(c, STORE_CHECK_ERROR, "directory %llu says it has %llu entries but has %u",
					ull(in->ino), ull(in->size), in->entries);
		} else {
			if (S_ISLNK(in->mode))
				c->rep.symlinks++;
			if (in->nlink != in->links)
				chk_say(c, STORE_CHECK_ERROR, "inode %llu has link count %u but %u entries name it",
					ull(in->ino), in->nlink, in->links);
			if (root)
				chk_say(c, STORE_CHECK_ERROR, "the root inode is not a directory");
		}
	}
	/* orphans: breadth-first from the root */
	queue = malloc((c->n_ino + 1) * sizeof(*queue));
	r = -ENOMEM;
	if (!queue)
		goto out;
	struct chk_ino *root = chk_find(c, NS_ROOT_INO);
	if (!root) {
		chk_say(c, STORE_CHECK_ERROR, "the namespace has no root directory");
	} else {
		root->reached = true;
		queue[qt++] = NS_ROOT_INO;
	}
	while (qh < qt) {
		struct chk_dent key = {.dir = queue[qh++]};
		struct chk_dent *d = bsearch(&key, c->dent, c->n_dent, sizeof(key), chk_dent_cmp);
		if (!d)
			continue;
		while (d > c->dent && d[-1].dir == key.dir)
			d--;
		for (; d < c->dent + c->n_dent && d->dir == key.dir; d++) {
			struct chk_ino *t = chk_find(c, d->ino);
			if (t && !t->reached) {
				t->reached = true;
				queue[qt++] = t->ino;
			}
		}
	}
	for (size_t i = 0; i < c->n_ino; i++) {
		if (c->ino[i].reached)
			continue;
		c->rep.orphans++;
		chk_say(c, STORE_CHECK_ERROR, "inode %llu (mode %o, %llu bytes) is unreachable from the root (orphan)",
			ull(c->ino[i].ino), c->ino[i].mode, ull(c->ino[i].size));
	}
	r = 0;
out:
	free(queue);
	return r;
}

/* ---- WAL: follow the live log from the checkpoint's position ---- */

struct chk_wal {
	struct wal_entry_info *e;
	size_t n, cap;
	uint32_t segs;
	uint64_t *hdr_life; /* per segment, 0 = header invalid */
	int err;
};

static int chk_wal_cb(void *arg, const struct wal_entry_info *e)
{
	struct chk_wal *w = arg;
	if (e->kind == WAL_KIND_HEADER) {
		if (e->segment < w->segs)
			w->hdr_life[e->segment] = e->valid ? e->life : 0;
		return 0;
	}
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 1024;
		struct wal_entry_info *p = realloc(w->e, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		w->e = p;
		w->cap = cap;
	}
	w->e[w->n++] = *e;
	return 0;
}

static const struct wal_entry_info *chk_wal_at(const struct chk_wal *w, uint32_t seg, uint64_t off)
{
	/* entries arrive in (segment, offset) order */
	size_t lo = 0, hi = w->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct wal_entry_info *m = &w->e[mid];
		if (m->segment < seg || (m->segment == seg && m->offset < off))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < w->n && w->e[lo].segment == seg && w->e[lo].offset == off)
		return &w->e[lo];
	return NULL;
}

static int chk_wal(struct chk *c)
{
	struct store *s = c->s;
	struct chk_wal w = {.segs = s->wal_o.segments};
	struct wal_pos pos = s->sb.wal_pos;
	uint64_t valid_beyond = 0;
	int r = -ENOMEM;

	w.hdr_life = calloc(w.segs ? w.segs : 1, sizeof(*w.hdr_life));
	if (!w.hdr_life)
		goto out;
	r = wal_inspect(s->vfs, &s->wal_o, chk_wal_cb, &w);
	if (r < 0) {
		chk_say(c, STORE_CHECK_ERROR, "WAL: cannot be read (%s)", strerror(-r));
		r = 0;
		goto out;
	}
	uint32_t seg = pos.segment;
	uint64_t life = pos.life, off = pos.offset;
	if (seg < w.segs && w.hdr_life[seg] == life) {
		for (;;) {
			const struct wal_entry_info *e = chk_wal_at(&w, seg, off);
			if (!e || !e->valid)
				break;
			if (e->kind == WAL_KIND_BATCH) {
				uint64_t at = off + 48 + ((e->len + 7) & ~7ull);
				const struct wal_entry_info *cm = chk_wal_at(&w, seg, at);
				if (!cm || !cm->valid || cm->kind != WAL_KIND_COMMIT || cm->lsn != e->lsn)
					break;
				if (e->lsn > s->sb.checkpoint_lsn) {
					if (!c->rep.wal_batches)
						c->rep.wal_first_lsn = e->lsn;
					c->rep.wal_batches++;
					c->rep.wal_last_lsn = e->lsn;
				}
				off = at + 48 + 8;
			} else if (e->kind == WAL_KIND_END) {
				uint32_t nx = w.segs;
				for (uint32_t i = 0; i < w.segs; i++)
					if (w.hdr_life[i] == life + 1)
						nx = i;
				if (nx == w.segs) {
					/* a dangling END: the next header never became durable */
					off += 48 + ((e->len + 7) & ~7ull);
					break;
				}
				seg = nx;
				life++;
				off = 4096;
			} else {
				break;
			}
		}
	}
	for (size_t i = 0; i < w.n; i++) {
		const struct wal_entry_info *e = &w.e[i];
		if (e->life > life || (e->life == life && e->segment == seg && e->offset >= off)) {
			c->rep.wal_tail_entries++;
			valid_beyond += e->valid;
		}
	}
	c->rep.wal_torn = c->rep.wal_tail_entries > 0;
	chk_say(c, STORE_CHECK_INFO, "WAL: %llu committed batches after the checkpoint (lsn %llu), ending at segment "
		"%u offset %llu (life %llu)", ull(c->rep.wal_batches), ull(s->sb.checkpoint_lsn), seg, ull(off),
		ull(life));
	if (c->rep.wal_torn)
		chk_say(c, STORE_CHECK_ERROR,
			"WAL: %llu entries of the live log (%llu of them valid, unreachable for recovery) lie beyond its "
			"valid end at segment %u offset %llu: a torn or corrupt tail; recovery cuts it, --repair makes "
			"the cut permanent",
			ull(c->rep.wal_tail_entries), ull(valid_beyond), seg, ull(off));
	if (s->read_only && c->rep.wal_batches != get_u64(&s->replayed))
		chk_say(c, STORE_CHECK_ERROR, "WAL: %llu batches follow the checkpoint but recovery replayed %llu",
			ull(c->rep.wal_batches), ull(get_u64(&s->replayed)));
	r = 0;
out:
	free(w.e);
	free(w.hdr_life);
	return r;
}

/* Superblocks, as on disk. */
static int chk_superblocks(struct chk *c)
{
	struct store_sb_info sb[2];
	int r = store_read_superblocks(c->s->vfs, sb);

	if (r < 0)
		return r;
	for (unsigned i = 0; i < 2; i++) {
		if (sb[i].valid)
			chk_say(c, STORE_CHECK_INFO, "superblock %u: generation %llu, checkpoint lsn %llu", i,
				ull(sb[i].generation), ull(sb[i].checkpoint_lsn));
		else
			chk_say(c, STORE_CHECK_WARN,
				"superblock %u is invalid (%s)%s; the store uses the other one, and the next checkpoint "
				"(a mount, or --repair) rewrites it", i, sb[i].why,
				sb[!i].valid && sb[i].present && sb[i].generation == sb[!i].generation + 1
					? " and was the newer one (a torn checkpoint: recovery starts from the previous "
					  "checkpoint and the WAL after it)"
					: "");
	}
	if (!sb[0].valid && !sb[1].valid)
		chk_say(c, STORE_CHECK_ERROR, "no valid superblock");
	if (sb[0].valid && sb[1].valid && sb[0].generation + 1 != sb[1].generation &&
	    sb[1].generation + 1 != sb[0].generation)
		chk_say(c, STORE_CHECK_WARN, "the superblocks' generations (%llu, %llu) are not consecutive",
			ull(sb[0].generation), ull(sb[1].generation));
	return 0;
}

int store_check(struct store *s, unsigned flags, const struct store_check_ops *ops, void *arg,
		struct store_check_report *ret_report)
{
	struct chk c = {.s = s, .ops = ops, .arg = arg};
	uint8_t page[PAGER_PAGE_SIZE];
	uint64_t file_bytes = 0;
	int r = -ENOMEM;

	bz_cap_wrlock(&s->lock, &store_cap);
	c.n_pg = s->hwm;
	c.pg = calloc(c.n_pg ? c.n_pg : 1, 1);
	c.x = calloc(1, sizeof(*c.x));
	if (!c.pg || !c.x)
		goto out;
	c.total = s->stored_bytes;
	chk_progress(&c);

	/* 1. superblocks */
	r = chk_superblocks(&c);
	if (r < 0)
		goto out;
	c.pg[0] = c.pg[1] = PG_USED;
	c.rep.sb_pages = 2;

	/* 2. the namespace chain of the newest checkpoint (checked at open) */
	if (s->chain.n != s->sb.ns_pages)
		chk_say(&c, STORE_CHECK_ERROR, "the namespace chain has %zu pages, the superblock says %llu", s->chain.n,
			ull(s->sb.ns_pages));
	for (size_t i = 0; i < s->chain.n; i++) {
		uint64_t pg = s->chain.v[i];
		if (!chk_use(&c, pg, "the namespace chain", 0))
			continue;
		c.rep.ns_pages++;
		if (pager_read(s->pager, pg, PAGER_NSMETA, page, NULL) < 0) {
			c.pg[pg] |= PG_BAD;
			c.rep.bad_pages++;
			chk_say(&c, STORE_CHECK_ERROR, "namespace page %llu fails its checksum or header", ull(pg));
		}
	}

	/* 3. free and pending pages */
	for (int k = 0; k < 2; k++) {
		const struct u64vec *v = k ? &s->pending : &s->free;
		uint8_t bit = k ? PG_PENDING : PG_FREE;
		for (size_t i = 0; i < v->n; i++) {
			uint64_t pg = v->v[i];
			if (pg < 2 || pg >= c.n_pg) {
				chk_say(&c, STORE_CHECK_ERROR, "the free list names page %llu, outside 2..%llu", ull(pg),
					ull(c.n_pg - 1));
				continue;
			}
			if (c.pg[pg] & (PG_FREE | PG_PENDING))
				chk_say(&c, STORE_CHECK_ERROR, "page %llu is on the free list twice", ull(pg));
			c.pg[pg] |= bit;
		}
	}
	/* index chains of files deleted during replay: released at the next checkpoint */
	for (size_t i = 0; i < s->dead.n; i++) {
		uint64_t pg = s->dead.v[i], guard = 0;
		while (pg >= 2 && pg < c.n_pg && guard++ < c.n_pg && !(c.pg[pg] & PG_PENDING)) {
			struct pager_hdr h;
			c.pg[pg] |= PG_PENDING;
			if (pager_read(s->pager, pg, PAGER_INDEX, page, &h) < 0)
				break;
			pg = h.next;
		}
	}
	if (s->open_pgno && s->open_pgno < c.n_pg)
		c.pg[s->open_pgno] |= PG_USED;

	/* 4. the namespace */
	r = chk_namespace(&c);
	if (r < 0)
		goto out;

	/* 5. every file's index and records */
	uint64_t stored = 0, logical = 0;
	for (size_t i = 0; i < s->files.cap; i++) {
		const struct sfile *f = s->files.slot[i];
		if (!f)
			continue;
		stored += f->stored_bytes;
		logical += f->raw_bytes;
		chk_file(&c, f);
	}
	for (size_t i = 0; i < c.n_ino; i++)
		if (S_ISREG(c.ino[i].mode) && c.ino[i].size && !ftab_get(&s->files, c.ino[i].ino))
			chk_say(&c, STORE_CHECK_ERROR, "inode %llu has size %llu but no index", ull(c.ino[i].ino),
				ull(c.ino[i].size));
	if (stored != s->stored_bytes || logical != s->logical_bytes)
		chk_say(&c, STORE_CHECK_ERROR,
			"store totals (%llu stored, %llu logical bytes) differ from the files' (%llu, %llu)",
			ull(s->stored_bytes), ull(s->logical_bytes), ull(stored), ull(logical));

	/* 6. page accounting */
	uint64_t first_leak = 0;
	for (uint64_t pg = 2; pg < c.n_pg; pg++) {
		uint8_t st = c.pg[pg];
		if ((st & PG_USED) && (st & (PG_FREE | PG_PENDING)))
			chk_say(&c, STORE_CHECK_ERROR, "page %llu is in use and also on the free list", ull(pg));
		if ((st & PG_FREE) && (st & PG_PENDING))
			chk_say(&c, STORE_CHECK_ERROR, "page %llu is both free and pending", ull(pg));
		c.rep.free_pages += !!(st & PG_FREE);
		c.rep.pending_pages += !!(st & PG_PENDING) && !(st & PG_FREE);
		if (!(st & (PG_USED | PG_FREE | PG_PENDING))) {
			if (!c.rep.unreachable)
				first_leak = pg;
			c.rep.unreachable++;
		}
	}
	if (vfs_size(s->db_f, &file_bytes) == 0)
		c.rep.pages_file = file_bytes / PAGER_PAGE_SIZE;
	c.rep.pages_hwm = c.n_pg;
	c.rep.beyond = c.rep.pages_file > c.n_pg ? c.rep.pages_file - c.n_pg : 0;
	if (c.rep.unreachable)
		chk_say(&c, STORE_CHECK_WARN,
			"%llu pages below the high-water mark are neither in use nor free (leaked, the first is %llu); %s",
			ull(c.rep.unreachable), ull(first_leak),
			c.rep.errors ? "some may belong to the damaged structures above, so they are not freed"
				     : "--repair frees them");
	if (c.rep.beyond)
		chk_say(&c, STORE_CHECK_INFO, "%llu pages past the high-water mark are unused (reused by later writes)",
			ull(c.rep.beyond));

	/* 7. the WAL */
	r = chk_wal(&c);
	if (r < 0)
		goto out;

	/* repair: leaked pages become free at the next checkpoint */
	if ((flags & STORE_CHECK_FREE_UNREACHABLE) && c.rep.unreachable) {
		if (s->read_only || c.rep.errors) {
			chk_say(&c, STORE_CHECK_WARN, "leaked pages not freed: %s",
				s->read_only ? "the store is open read-only" : "the store has other errors");
		} else {
			for (uint64_t pg = 2; pg < c.n_pg; pg++) {
				if (c.pg[pg] & (PG_USED | PG_FREE | PG_PENDING))
					continue;
				r = vec_push(&s->pending, pg);
				if (r < 0)
					goto out;
				c.rep.freed++;
			}
			s->dirty = true;
			set_u64(&s->n_free, s->free.n + s->pending.n);
			set_u64(&s->n_reuse, s->free.n);
		}
	}
	c.done = c.total;
	chk_progress(&c);
	*ret_report = c.rep;
	r = 0;
out:
	bz_cap_wrunlock(&s->lock, &store_cap);
	if (r < 0 && r != -ENOMEM)
		bz_err("store: check failed: %s", strerror(-r));
	free(c.pg);
	rctx_free(c.x);
	free(c.ino);
	free(c.dent);
	return r;
}

int store_diagnose(struct vfs *v, const struct store_check_ops *ops, void *arg, uint64_t *ret_errors)
{
	struct chk c = {.ops = ops, .arg = arg};
	struct store_sb_info sb[2];
	struct vfs_file *f = NULL;
	uint8_t *page = malloc(PAGER_PAGE_SIZE);
	int r = -ENOMEM;

	if (!page)
		goto out;
	r = store_read_superblocks(v, sb);
	if (r < 0)
		goto out;
	for (unsigned i = 0; i < 2; i++)
		if (!sb[i].valid)
			chk_say(&c, STORE_CHECK_ERROR, "superblock %u is invalid (%s)", i, sb[i].why);
	if (!sb[0].valid && !sb[1].valid) {
		chk_say(&c, STORE_CHECK_ERROR, "no valid superblock: the store cannot be opened (it is never "
			"reinitialized)");
		goto done;
	}
	const struct store_sb_info *b = !sb[1].valid || (sb[0].valid && sb[0].generation > sb[1].generation) ? &sb[0]
														: &sb[1];
	r = vfs_open(v, DB_NAME, VFS_O_RDONLY, &f);
	if (r < 0)
		goto out;
	uint64_t pg = b->ns_first, bytes = 0;
	for (uint64_t i = 0; i < b->ns_pages; i++) {
		struct pager_hdr h;
		size_t n = 0;
		r = vfs_pread(f, page, PAGER_PAGE_SIZE, pg * PAGER_PAGE_SIZE, &n);
		if (r < 0)
			goto out;
		if (n != PAGER_PAGE_SIZE || pager_check(page, pg, PAGER_NSMETA, &h) < 0) {
			chk_say(&c, STORE_CHECK_ERROR, "namespace page %llu (%llu of %llu of the checkpoint of generation "
				"%llu) fails its checksum or header: the namespace cannot be loaded", ull(pg), ull(i + 1),
				ull(b->ns_pages), ull(b->generation));
			goto done;
		}
		bytes += h.used;
		pg = h.next;
		if ((i + 1 < b->ns_pages) != (pg != 0)) {
			chk_say(&c, STORE_CHECK_ERROR, "the namespace chain of generation %llu is %s than its %llu pages",
				ull(b->generation), pg ? "longer" : "shorter", ull(b->ns_pages));
			goto done;
		}
	}
	if (bytes != b->ns_bytes)
		chk_say(&c, STORE_CHECK_ERROR, "the namespace chain holds %llu bytes, the superblock says %llu",
			ull(bytes), ull(b->ns_bytes));
done:
	*ret_errors = c.rep.errors;
	r = 0;
out:
	vfs_close(f);
	free(page);
	return r;
}
