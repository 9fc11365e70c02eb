/* wal.c — the write-ahead log.
 *
 * FILES. The log is `segments` preallocated files "wal.000", "wal.001", ...
 * (three decimal digits), each exactly `segment_bytes` long. wal_create makes
 * them by WRITING zeros (no fallocate/ftruncate: an fdatasync after
 * overwriting written blocks need not journal a size change or an
 * unwritten-extent conversion), fsyncs each and then the directory. Segments
 * are never created, grown or deleted afterwards: they are recycled. A
 * creation that fails midway (ENOSPC while zero-filling) reports which
 * files it made, so the store removes exactly those (wal_unlink_created):
 * none of them carries a header, so a crash before the removal leaves what
 * the next open takes for an interrupted creation and creates over.
 *
 * All integers are little-endian. docs/FORMAT.md ("The write-ahead log") has the same layout in
 * tables, precise enough for a second implementation.
 *
 * SEGMENT HEADER. The first 4096 bytes of a segment are its header block:
 *
 *     0  u32 magic "BZWS" (0x53575a42)     16 u64 life (>= 1)
 *     4  u32 format version (1)            24 u64 salt (random, per life)
 *     8  u32 segment index                 32 u64 segment_bytes
 *    12  u32 header block size (4096)      40 u64 checksum
 *
 * checksum = XXH3_64bits_withSeed(bytes 0..39, 0). Bytes 48..4095 are zero
 * and not checked. A segment whose header does not validate (or whose index
 * or segment_bytes disagree with the file) carries no life: it is unused.
 * Every time the writer starts (re)using a segment it gives it a new life,
 * (largest life ever seen) + 1, and a fresh random salt (getrandom), so life
 * numbers identify segment incarnations uniquely and increase in log order.
 *
 * ENTRIES follow the header block, 8-byte aligned, back to back:
 *
 *     0  u32 magic "BZWE" (0x45575a42)     16 u64 lsn
 *     4  u8  kind (1 BATCH, 2 COMMIT,      24 u64 life (= the segment's)
 *        3 END), u8[3] zero                32 i64 time_ns (BATCH; else 0)
 *     8  u32 len (payload bytes)           40 u64 checksum
 *    12  u32 segment index                 48 payload[len], zero padding to 8
 *
 * checksum = XXH3_64bits_withSeed(bytes 0..39 || payload[len], salt of the
 * segment's current life); the padding must be zero. Payloads:
 *   BATCH   the batch (concatenated record frames), 0 .. wal_max_payload;
 *   COMMIT  len 8: u64 checksum of the BATCH entry it commits (same lsn);
 *   END     len 16: u32 next segment index, u32 zero, u64 next salt; lsn =
 *           the last lsn appended before it (0 if none yet).
 * A batch is written as BATCH immediately followed by its COMMIT in ONE
 * vfs_pwrite. When the next batch does not fit (an END entry must always
 * still fit), the writer writes END in the current segment, picks a free
 * segment and continues there with life + 1. The new segment's header is
 * written lazily: in the same pwrite as the first batch of that segment
 * (header block + entries are contiguous at offset 0).
 *
 * VALIDITY. An entry is valid when its magic, kind, zero bytes, segment
 * index, life (= header life) and checksum (with the header's salt) match
 * and it lies inside the segment. Stale entries of an earlier life of a
 * recycled segment carry another salt and life, so they never validate.
 * A BATCH counts only when the entry right behind it is a valid COMMIT with
 * the same lsn whose payload equals the BATCH's checksum.
 *
 * RECOVERY (wal_replay). The superblock names a start (segment, life,
 * offset). If that segment's header does not validate with that life, the
 * log is empty after the checkpoint. Otherwise scan entries from offset:
 *   - BATCH+COMMIT valid: lsns must be strictly consecutive from the first
 *     one seen (a jump or repeat ends the scan; the first one must be
 *     <= after_lsn + 1); deliver it if lsn > after_lsn;
 *   - END valid (lsn = last lsn seen, if any): continue at offset 4096 of the
 *     segment whose header validates with life + 1 (all headers are
 *     searched) AND the index and salt named by the END; none: the log ends
 *     here (a "dangling" END: the next header never became durable);
 *   - anything else (torn write, zeros, garbage, stale entry, no room for a
 *     header): the log ends here (the torn tail is cut).
 * Then the writer moves to the START of a fresh segment with a brand-new
 * life = 1 + max(every header's life, start's life, the dangling END's
 * life + 1): it never continues in the cut segment, where a stale-but-valid
 * entry of the same life and salt may lie behind the cut. The segments the
 * scan visited keep the replayed batches until the caller's next checkpoint
 * is durable, so they stay busy until wal_recycle; the fresh segment is one
 * the scan did not visit (if the chain covered every segment, the writer
 * waits — wal_has_room false — until wal_recycle). Its header is written lazily, so a checkpoint
 * naming wal_tail_pos() = (fresh, new life, 4096) finds "header life !=
 * expected" = nothing after the checkpoint, which is right.
 *
 * STATES. open (after wal_open; only wal_replay allowed) -> ready (after
 * wal_replay) -> error (a pwrite or fdatasync failed: sticky, every later
 * append/sync returns -EIO; a failed fdatasync is never retried and trusted).
 * Not thread-safe: the commit thread makes every call.
 */
#define XXH_STATIC_LINKING_ONLY
#include "wal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <xxhash.h>

#include "log.h"

#define WAL_SEG_MAGIC 0x53575a42u /* "BZWS" */
#define WAL_ENT_MAGIC 0x45575a42u /* "BZWE" */
#define WAL_VERSION 1u
#define WAL_HDR_BLOCK 4096u
#define WAL_HDR_LEN 48u
#define WAL_ENT_HDR 48u
#define WAL_COMMIT_BYTES (WAL_ENT_HDR + 8u)
#define WAL_END_BYTES (WAL_ENT_HDR + 16u)
#define WAL_MAX_SEGMENTS 1000u
#define WAL_MIN_SEGMENT (64u * 1024u)
#define WAL_WINDOW (1u << 20)

#if defined(FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION)
#define CHECK_ENTRY_SUM 0
#define CHECK_HEADER_SUM 0
#elif defined(BZ_MUTANT_SKIP_WAL_CHECKSUM)
#define CHECK_ENTRY_SUM 0
#define CHECK_HEADER_SUM 1
#else
#define CHECK_ENTRY_SUM 1
#define CHECK_HEADER_SUM 1
#endif

struct wal_seg {
	struct vfs_file *f;
	bool hdr_valid; /* the on-disk header validated (as of open / our writes) */
	uint64_t life, salt;
	bool busy;  /* may hold entries not yet covered by a durable checkpoint */
	bool dirty; /* written since the last wal_sync */
};

enum wal_state { WAL_OPEN, WAL_READY, WAL_ERROR };

struct wal {
	struct vfs *v;
	uint64_t seg_bytes;
	uint32_t n;
	struct wal_seg *segs;
	enum wal_state state;

	/* writer position (READY) */
	uint32_t cur;
	uint64_t cur_life, cur_salt;
	uint64_t off;      /* offset after the last entry of cur */
	bool hdr_pending;  /* cur's header is written with its first batch */
	bool cur_blocked;  /* cur is busy too: wait for wal_recycle */
	uint64_t max_life; /* largest life seen or handed out */
	uint64_t last_lsn;
	uint64_t used; /* bytes written since the last recycle */

	uint64_t salt_seed; /* 0 = getrandom; else wal_seed_salts (tests) */

	uint8_t *buf; /* append buffer */
	size_t buf_cap;
};

/* A parsed entry header. */
struct ent {
	uint32_t magic, len, segment;
	uint8_t kind;
	uint64_t lsn, life, sum;
	int64_t time_ns;
	bool zero_ok; /* reserved bytes are zero */
};

/* A read window over one segment (replay/inspect). */
struct window {
	struct vfs_file *f;
	uint64_t seg_bytes;
	uint8_t *p;
	size_t cap;
	uint64_t start; /* file offset of p[0] */
	size_t n;       /* valid bytes */
};

static uint64_t align8(uint64_t x) { return (x + 7) & ~(uint64_t)7; }

static bool opts_ok(const struct wal_opts *o)
{
	return o && o->segment_bytes >= WAL_MIN_SEGMENT && o->segment_bytes % 4096 == 0 && o->segments >= 3 &&
	       o->segments <= WAL_MAX_SEGMENTS;
}

uint64_t wal_entry_bytes(size_t payload_len)
{
	return WAL_ENT_HDR + align8(payload_len) + WAL_COMMIT_BYTES;
}

uint64_t wal_max_payload(const struct wal_opts *o)
{
	if (!opts_ok(o))
		return 0;
	return BZ_MIN((uint64_t)UINT32_MAX,
		      o->segment_bytes - WAL_HDR_BLOCK - WAL_END_BYTES - WAL_COMMIT_BYTES - WAL_ENT_HDR) &
	       ~(uint64_t)7;
}

static void seg_name(uint32_t i, char name[16]) { snprintf(name, 16, "wal.%03u", (unsigned)i); }

static uint64_t new_salt(struct wal *w)
{
	uint64_t s = 0;
	if (w->salt_seed) {
		/* splitmix64: a reproducible sequence for tests */
		uint64_t z = (w->salt_seed += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		s = z ^ (z >> 31);
	} else if (getrandom(&s, sizeof(s), 0) != (ssize_t)sizeof(s)) {
		static uint64_t ctr;
		s = bz_now_ns() ^ ((uint64_t)bz_wall_ns() << 17) ^ (++ctr * 0x9e3779b97f4a7c15ull);
	}
	return s ? s : 1;
}

void wal_seed_salts(struct wal *w, uint64_t seed)
{
	if (w)
		w->salt_seed = seed;
}

/* ---- segment header ---- */

static void hdr_encode(uint8_t *p, uint32_t index, uint64_t life, uint64_t salt, uint64_t seg_bytes)
{
	memset(p, 0, WAL_HDR_BLOCK);
	bz_put_le32(p + 0, WAL_SEG_MAGIC);
	bz_put_le32(p + 4, WAL_VERSION);
	bz_put_le32(p + 8, index);
	bz_put_le32(p + 12, WAL_HDR_BLOCK);
	bz_put_le64(p + 16, life);
	bz_put_le64(p + 24, salt);
	bz_put_le64(p + 32, seg_bytes);
	bz_put_le64(p + 40, XXH3_64bits_withSeed(p, 40, 0));
}

static bool hdr_decode(const uint8_t *p, uint32_t index, uint64_t seg_bytes, uint64_t *life, uint64_t *salt)
{
	if (bz_get_le32(p) != WAL_SEG_MAGIC || bz_get_le32(p + 4) != WAL_VERSION || bz_get_le32(p + 8) != index ||
	    bz_get_le32(p + 12) != WAL_HDR_BLOCK || bz_get_le64(p + 32) != seg_bytes || bz_get_le64(p + 16) == 0)
		return false;
	if (CHECK_HEADER_SUM && bz_get_le64(p + 40) != XXH3_64bits_withSeed(p, 40, 0))
		return false;
	*life = bz_get_le64(p + 16);
	*salt = bz_get_le64(p + 24);
	return true;
}

/* ---- entries ---- */

static uint64_t ent_sum(const uint8_t *hdr, const void *payload, size_t len, uint64_t salt)
{
	XXH3_state_t st;

	/* a stack state must be initialized: reset_withSeed keeps the derived
	 * secret when the stale seed field happens to equal the salt */
	XXH3_INITSTATE(&st);
	XXH3_64bits_reset_withSeed(&st, salt);
	XXH3_64bits_update(&st, hdr, 40);
	if (len)
		XXH3_64bits_update(&st, payload, len);
	return XXH3_64bits_digest(&st);
}

/* Writes one entry (header, payload, zero padding) at p; returns its size. */
static uint64_t ent_encode(uint8_t *p, uint8_t kind, uint32_t segment, uint64_t lsn, uint64_t life, int64_t time_ns,
			   const void *payload, size_t len, uint64_t salt, uint64_t *ret_sum)
{
	uint64_t sz = WAL_ENT_HDR + align8(len);
	uint64_t sum;

	memset(p, 0, WAL_ENT_HDR);
	bz_put_le32(p + 0, WAL_ENT_MAGIC);
	p[4] = kind;
	bz_put_le32(p + 8, (uint32_t)len);
	bz_put_le32(p + 12, segment);
	bz_put_le64(p + 16, lsn);
	bz_put_le64(p + 24, life);
	bz_put_le64(p + 32, (uint64_t)time_ns);
	if (len)
		memcpy(p + WAL_ENT_HDR, payload, len);
	memset(p + WAL_ENT_HDR + len, 0, (size_t)(sz - WAL_ENT_HDR - len));
	sum = ent_sum(p, p + WAL_ENT_HDR, len, salt);
	bz_put_le64(p + 40, sum);
	if (ret_sum)
		*ret_sum = sum;
	return sz;
}

static void ent_parse(const uint8_t *p, struct ent *e)
{
	e->magic = bz_get_le32(p);
	e->kind = p[4];
	e->zero_ok = p[5] == 0 && p[6] == 0 && p[7] == 0;
	e->len = bz_get_le32(p + 8);
	e->segment = bz_get_le32(p + 12);
	e->lsn = bz_get_le64(p + 16);
	e->life = bz_get_le64(p + 24);
	e->time_ns = (int64_t)bz_get_le64(p + 32);
	e->sum = bz_get_le64(p + 40);
}

/* Whether the entry at p (whole entry, padding included, in memory) is
 * valid for segment index/life/salt. */
static bool ent_valid(const uint8_t *p, const struct ent *e, uint32_t index, uint64_t life, uint64_t salt)
{
	const uint8_t *pay = p + WAL_ENT_HDR;
	uint64_t pad = align8(e->len) - e->len;

	if (e->magic != WAL_ENT_MAGIC || !e->zero_ok || e->segment != index || e->life != life ||
	    e->kind < WAL_KIND_BATCH || e->kind > WAL_KIND_END)
		return false;
	for (uint64_t i = 0; i < pad; i++)
		if (pay[e->len + i] != 0)
			return false;
	if (CHECK_ENTRY_SUM && e->sum != ent_sum(p, pay, e->len, salt))
		return false;
	return true;
}

/* ---- read window ---- */

static void win_init(struct window *wn, struct vfs_file *f, uint64_t seg_bytes)
{
	wn->f = f;
	wn->seg_bytes = seg_bytes;
	wn->start = 0;
	wn->n = 0;
}

/* Points *ret_p at [off, off+len) of the segment (len <= seg_bytes - off).
 * -ENODATA if the file is shorter. */
static int win_get(struct window *wn, uint64_t off, size_t len, const uint8_t **ret_p)
{
	size_t want, got = 0;
	int r = 0;

	if (off >= wn->start && off + len <= wn->start + wn->n) {
		*ret_p = wn->p + (off - wn->start);
		goto out;
	}
	want = (size_t)BZ_MIN(BZ_MAX((uint64_t)len, (uint64_t)WAL_WINDOW), wn->seg_bytes - off);
	if (want > wn->cap) {
		uint8_t *np = realloc(wn->p, want);
		if (!np) {
			r = -ENOMEM;
			goto out;
		}
		wn->p = np;
		wn->cap = want;
	}
	wn->n = 0;
	r = vfs_pread(wn->f, wn->p, want, off, &got);
	if (r < 0)
		goto out;
	wn->start = off;
	wn->n = got;
	if (got < len) {
		r = -ENODATA;
		goto out;
	}
	*ret_p = wn->p;
out:
	return r;
}

/* ---- create / open ---- */

static int seg_load_header(struct vfs_file *f, uint32_t i, uint64_t seg_bytes, struct wal_seg *s);

int wal_create(struct vfs *v, const struct wal_opts *o, struct wal_pos *ret_start, bool *ret_created)
{
	struct vfs_file *f = NULL;
	uint8_t *zero = NULL;
	const size_t chunk = 1u << 20;
	int r = 0;

	if (!v || !opts_ok(o) || !ret_start) {
		r = -EINVAL;
		goto out;
	}
	zero = calloc(1, chunk);
	if (!zero) {
		r = -ENOMEM;
		goto out;
	}
	if (ret_created)
		memset(ret_created, 0, o->segments * sizeof(*ret_created));
	for (uint32_t i = 0; i < o->segments; i++) {
		char name[16];
		uint64_t size = 0;

		seg_name(i, name);
		/* exclusive first: the caller must know which files this
		 * creation made (it removes exactly those if it fails) */
		r = vfs_open(v, name, VFS_O_RDWR | VFS_O_CREAT | VFS_O_EXCL, &f);
		if (r == 0 && ret_created)
			ret_created[i] = true;
		if (r == -EEXIST)
			r = vfs_open(v, name, VFS_O_RDWR, &f);
		if (r < 0) {
			bz_err("wal: create %s: %s", name, strerror(-r));
			goto out;
		}
		for (uint64_t off = 0; off < o->segment_bytes; off += chunk) {
			r = vfs_pwrite(f, zero, (size_t)BZ_MIN((uint64_t)chunk, o->segment_bytes - off), off);
			if (r < 0)
				goto fail_io;
		}
		r = vfs_size(f, &size);
		if (r < 0)
			goto fail_io;
		if (size > o->segment_bytes) {
			r = vfs_ftruncate(f, o->segment_bytes);
			if (r < 0)
				goto fail_io;
		}
		r = vfs_fsync(f);
		if (r < 0)
			goto fail_io;
		vfs_close(f);
		f = NULL;
		continue;
	fail_io:
		bz_err("wal: zero-filling %s: %s", name, strerror(-r));
		goto out;
	}
	r = vfs_sync_dir(v);
	if (r < 0) {
		bz_err("wal: sync dir: %s", strerror(-r));
		goto out;
	}
	/* life 0 is never carried by a header: the log starts empty */
	ret_start->segment = 0;
	ret_start->life = 0;
	ret_start->offset = WAL_HDR_BLOCK;
out:
	vfs_close(f);
	free(zero);
	return r;
}

int wal_unlink_created(struct vfs *v, uint32_t segments, const bool *created)
{
	int r = 0;

	for (uint32_t i = 0; i < segments; i++) {
		char name[16];
		int u;

		if (!created[i])
			continue;
		seg_name(i, name);
		u = vfs_unlink(v, name);
		if (u < 0 && u != -ENOENT) {
			bz_err("wal: removing %s: %s", name, strerror(-u));
			if (r == 0)
				r = u;
		}
	}
	return r;
}

int wal_probe_dir(struct vfs *v, struct wal_probe_info *ret_info)
{
	struct wal_probe_info pi = {0};
	int r = 0;

	for (uint32_t i = 0; i < WAL_MAX_SEGMENTS; i++) {
		struct vfs_file *f = NULL;
		struct wal_seg sg;
		uint64_t size = 0;
		char name[16];

		seg_name(i, name);
		r = vfs_open(v, name, VFS_O_RDONLY, &f);
		if (r == -ENOENT) {
			r = 0;
			continue;
		}
		if (r == 0)
			r = vfs_size(f, &size);
		if (r == 0)
			r = seg_load_header(f, i, size, &sg);
		vfs_close(f);
		if (r < 0)
			goto out;
		pi.bytes += size;
		if (!pi.files++)
			pi.first = i;
		pi.last = i;
		if (sg.hdr_valid)
			pi.with_header++;
	}
	*ret_info = pi;
out:
	return r;
}

void wal_close(struct wal *w)
{
	if (!w)
		return;
	if (w->segs)
		for (uint32_t i = 0; i < w->n; i++)
			vfs_close(w->segs[i].f);
	free(w->segs);
	free(w->buf);
	free(w);
}

/* Reads and validates the header of segment i into s. */
static int seg_load_header(struct vfs_file *f, uint32_t i, uint64_t seg_bytes, struct wal_seg *s)
{
	uint8_t h[WAL_HDR_LEN];
	size_t got = 0;
	int r;

	s->hdr_valid = false;
	s->life = s->salt = 0;
	r = vfs_pread(f, h, sizeof(h), 0, &got);
	if (r < 0)
		return r;
	if (got == sizeof(h))
		s->hdr_valid = hdr_decode(h, i, seg_bytes, &s->life, &s->salt);
	return 0;
}

static int open_segs(struct vfs *v, const struct wal_opts *o, int flags, struct wal_seg **ret_segs)
{
	struct wal_seg *segs = calloc(o->segments, sizeof(*segs));
	int r = 0;

	if (!segs)
		return -ENOMEM;
	for (uint32_t i = 0; i < o->segments; i++) {
		char name[16];
		uint64_t size = 0;

		seg_name(i, name);
		r = vfs_open(v, name, flags, &segs[i].f);
		if (r < 0) {
			bz_err("wal: open %s: %s", name, strerror(-r));
			goto out;
		}
		r = vfs_size(segs[i].f, &size);
		if (r < 0)
			goto out;
		if (size != o->segment_bytes) {
			bz_err("wal: %s is %llu bytes, expected %llu", name, (unsigned long long)size,
			       (unsigned long long)o->segment_bytes);
			r = -EINVAL;
			goto out;
		}
		r = seg_load_header(segs[i].f, i, o->segment_bytes, &segs[i]);
		if (r < 0) {
			bz_err("wal: read header of %s: %s", name, strerror(-r));
			goto out;
		}
	}
	*ret_segs = segs;
	segs = NULL;
out:
	if (segs) {
		for (uint32_t i = 0; i < o->segments; i++)
			vfs_close(segs[i].f);
		free(segs);
	}
	return r;
}

static int wal_open_flags(struct vfs *v, const struct wal_opts *o, int flags, struct wal **ret_wal)
{
	struct wal *w = NULL;
	int r;

	if (!v || !opts_ok(o) || !ret_wal) {
		r = -EINVAL;
		goto out;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		r = -ENOMEM;
		goto out;
	}
	w->v = v;
	w->seg_bytes = o->segment_bytes;
	w->n = o->segments;
	w->state = WAL_OPEN;
	r = open_segs(v, o, flags, &w->segs);
	if (r < 0)
		goto out;
	for (uint32_t i = 0; i < w->n; i++)
		if (w->segs[i].hdr_valid)
			w->max_life = BZ_MAX(w->max_life, w->segs[i].life);
	*ret_wal = w;
	w = NULL;
out:
	wal_close(w);
	return r;
}

int wal_open(struct vfs *v, const struct wal_opts *o, struct wal **ret_wal)
{
	return wal_open_flags(v, o, VFS_O_RDWR, ret_wal);
}

int wal_open_ro(struct vfs *v, const struct wal_opts *o, struct wal **ret_wal)
{
	return wal_open_flags(v, o, VFS_O_RDONLY, ret_wal);
}

/* ---- replay ---- */

/* The segment `index` if its header carries life and salt, else -1. */
static long find_life(const struct wal *w, uint64_t life, uint64_t salt, uint32_t index)
{
	for (uint32_t i = 0; i < w->n; i++)
		if (w->segs[i].hdr_valid && w->segs[i].life == life && w->segs[i].salt == salt && i == index)
			return (long)i;
	return -1;
}

int wal_replay(struct wal *w, const struct wal_pos *start, uint64_t after_lsn, wal_batch_fn fn, void *arg,
	       uint64_t *ret_last_lsn)
{
	struct window wn = {0};
	uint64_t last = after_lsn, prev = 0, off = 0, top_life;
	bool have_prev = false, dangling = false;
	uint64_t dangling_life = 0;
	uint64_t nbatches = 0;
	uint32_t seg, lastseg;
	int r = 0;

	if (!w || !start || w->state != WAL_OPEN) {
		r = -EINVAL;
		goto out;
	}
	seg = lastseg = start->segment;
	if (seg >= w->n || !w->segs[seg].hdr_valid || w->segs[seg].life != start->life) {
		bz_info("wal: nothing logged after the checkpoint (segment %u life %llu)", (unsigned)seg,
			(unsigned long long)start->life);
		if (seg >= w->n)
			lastseg = 0;
		goto position;
	}
	off = start->offset;
	if (off < WAL_HDR_BLOCK || off % 8 || off > w->seg_bytes) {
		bz_err("wal: bad replay start offset %llu", (unsigned long long)off);
		r = -EINVAL;
		goto out;
	}
	w->segs[seg].busy = true;
	win_init(&wn, w->segs[seg].f, w->seg_bytes);
	for (;;) {
		const struct wal_seg *s = &w->segs[seg];
		const uint8_t *p;
		struct ent e, c;
		uint64_t need;

		if (off + WAL_ENT_HDR > w->seg_bytes)
			break;
		r = win_get(&wn, off, WAL_ENT_HDR, &p);
		if (r < 0)
			goto out;
		ent_parse(p, &e);
		if (e.magic != WAL_ENT_MAGIC || e.len > w->seg_bytes)
			break;
		need = WAL_ENT_HDR + align8(e.len);
		if (e.kind == WAL_KIND_BATCH)
			need += WAL_COMMIT_BYTES;
		if (off + need > w->seg_bytes)
			break;
		r = win_get(&wn, off, (size_t)need, &p);
		if (r < 0)
			goto out;
		if (!ent_valid(p, &e, seg, s->life, s->salt))
			break;
		if (e.kind == WAL_KIND_BATCH) {
			const uint8_t *cp = p + WAL_ENT_HDR + align8(e.len);
			ent_parse(cp, &c);
			if (c.kind != WAL_KIND_COMMIT || c.len != 8 || !ent_valid(cp, &c, seg, s->life, s->salt) ||
			    c.lsn != e.lsn || bz_get_le64(cp + WAL_ENT_HDR) != e.sum)
				break;
			if (have_prev ? e.lsn != prev + 1 : e.lsn > after_lsn + 1) {
				bz_warn("wal: lsn %llu after %llu ends the log", (unsigned long long)e.lsn,
					(unsigned long long)(have_prev ? prev : after_lsn));
				break;
			}
			if (e.lsn > after_lsn) {
				r = fn(arg, e.lsn, e.time_ns, p + WAL_ENT_HDR, e.len);
				if (r != 0)
					goto out;
				last = e.lsn;
				nbatches++;
			}
			prev = e.lsn;
			have_prev = true;
			off += need;
		} else if (e.kind == WAL_KIND_END) {
			long next;
			if (e.len != 16 || (have_prev && e.lsn != prev))
				break;
			next = find_life(w, s->life + 1, bz_get_le64(p + WAL_ENT_HDR + 8), bz_get_le32(p + WAL_ENT_HDR));
			if (next < 0 || w->segs[next].busy) {
				dangling = true;
				dangling_life = s->life;
				break;
			}
			seg = lastseg = (uint32_t)next;
			w->segs[seg].busy = true;
			off = WAL_HDR_BLOCK;
			win_init(&wn, w->segs[seg].f, w->seg_bytes);
		} else {
			break; /* a COMMIT without its BATCH */
		}
	}
	bz_info("wal: replayed %llu batches, last lsn %llu, log ends in segment %u at %llu", (unsigned long long)nbatches,
		(unsigned long long)last, (unsigned)seg, (unsigned long long)off);

position:
	/* a fresh segment with a brand-new life, never the cut one */
	top_life = BZ_MAX(w->max_life, start->life); /* even if that life never reached the disk */
	if (dangling)
		top_life = BZ_MAX(top_life, dangling_life + 1);
	w->cur = (lastseg + 1) % w->n;
	for (uint32_t k = 1; k <= w->n; k++) {
		uint32_t j = (lastseg + k) % w->n;
		if (!w->segs[j].busy) {
			w->cur = j;
			break;
		}
	}
	w->cur_blocked = w->segs[w->cur].busy;
	w->cur_life = w->max_life = top_life + 1;
	w->cur_salt = new_salt(w);
	w->off = WAL_HDR_BLOCK;
	w->hdr_pending = true;
	w->last_lsn = last;
	w->used = 0;
	w->state = WAL_READY;
	*ret_last_lsn = last;
out:
	free(wn.p);
	return r;
}

/* ---- append / sync ---- */

bool wal_has_room(const struct wal *w, size_t payload_len)
{
	uint64_t need = wal_entry_bytes(payload_len);

	if (!w || w->state == WAL_OPEN || payload_len > wal_max_payload(&(struct wal_opts){.segment_bytes = w->seg_bytes, .segments = w->n}))
		return false;
	if (w->cur_blocked)
		return false;
	if (w->off + need + WAL_END_BYTES <= w->seg_bytes)
		return true;
	for (uint32_t j = 0; j < w->n; j++)
		if (j != w->cur && !w->segs[j].busy)
			return true;
	return false;
}

static int buf_reserve(struct wal *w, size_t n)
{
	uint8_t *p;

	if (n <= w->buf_cap)
		return 0;
	p = realloc(w->buf, n);
	if (!p)
		return -ENOMEM;
	w->buf = p;
	w->buf_cap = n;
	return 0;
}

static int fail(struct wal *w, int r, const char *what)
{
	bz_err("wal: %s failed (%s): the log is now in the error state", what, strerror(-r));
	w->state = WAL_ERROR;
	return r;
}

/* Writes END in cur and moves the writer to free segment j with a new life. */
static int rotate(struct wal *w, uint32_t j)
{
	uint8_t end[WAL_END_BYTES], pay[16];
	uint64_t salt = new_salt(w);
	int r;

	bz_put_le32(pay, j);
	bz_put_le32(pay + 4, 0);
	bz_put_le64(pay + 8, salt);
	ent_encode(end, WAL_KIND_END, w->cur, w->last_lsn, w->cur_life, 0, pay, sizeof(pay), w->cur_salt, NULL);
	if (NEVER(w->hdr_pending)) {
		/* a fresh segment takes any batch that passes the -EFBIG check */
		r = -EIO;
		goto out;
	}
	r = vfs_pwrite(w->segs[w->cur].f, end, sizeof(end), w->off);
	if (r < 0) {
		fail(w, r, "END write");
		goto out;
	}
	w->segs[w->cur].dirty = true;
	w->segs[w->cur].busy = true;
	w->used += sizeof(end);
	bz_debug("wal: segment %u full at %llu, continuing in %u", (unsigned)w->cur, (unsigned long long)w->off,
		 (unsigned)j);
	w->cur = j;
	w->cur_life = ++w->max_life;
	w->cur_salt = salt;
	w->off = WAL_HDR_BLOCK;
	w->hdr_pending = true;
out:
	return r;
}

int wal_append(struct wal *w, uint64_t lsn, int64_t time_ns, const void *payload, size_t len)
{
	uint64_t need = wal_entry_bytes(len), at, sum, n = 0;
	int r = 0;

	if (!w || (len && !payload)) {
		r = -EINVAL;
		goto out;
	}
	if (w->state == WAL_ERROR) {
		r = -EIO;
		goto out;
	}
	if (w->state != WAL_READY || lsn != w->last_lsn + 1) {
		bz_err("wal: append of lsn %llu refused (last %llu)", (unsigned long long)lsn,
		       (unsigned long long)w->last_lsn);
		r = -EINVAL;
		goto out;
	}
	if (len > wal_max_payload(&(struct wal_opts){.segment_bytes = w->seg_bytes, .segments = w->n})) {
		r = -EFBIG;
		goto out;
	}
	if (w->cur_blocked) {
		r = -ENOSPC;
		goto out;
	}
	if (w->off + need + WAL_END_BYTES > w->seg_bytes) {
		uint32_t j = w->n;
		for (uint32_t k = 1; k < w->n; k++) {
			uint32_t c = (w->cur + k) % w->n;
			if (!w->segs[c].busy) {
				j = c;
				break;
			}
		}
		if (j == w->n) {
			r = -ENOSPC;
			goto out;
		}
		r = rotate(w, j);
		if (r < 0)
			goto out;
	}
	r = buf_reserve(w, (size_t)(need + WAL_HDR_BLOCK));
	if (r < 0)
		goto out;
	if (w->hdr_pending) {
		hdr_encode(w->buf, w->cur, w->cur_life, w->cur_salt, w->seg_bytes);
		n = WAL_HDR_BLOCK;
	}
	at = w->hdr_pending ? 0 : w->off;
	n += ent_encode(w->buf + n, WAL_KIND_BATCH, w->cur, lsn, w->cur_life, time_ns, payload, len, w->cur_salt, &sum);
	{
		uint8_t sp[8];
		bz_put_le64(sp, sum);
		n += ent_encode(w->buf + n, WAL_KIND_COMMIT, w->cur, lsn, w->cur_life, 0, sp, 8, w->cur_salt, NULL);
	}
	r = vfs_pwrite(w->segs[w->cur].f, w->buf, (size_t)n, at);
	if (r < 0) {
		fail(w, r, "batch write");
		goto out;
	}
	if (w->hdr_pending) {
		struct wal_seg *s = &w->segs[w->cur];
		s->hdr_valid = true;
		s->life = w->cur_life;
		s->salt = w->cur_salt;
		w->hdr_pending = false;
	}
	w->segs[w->cur].dirty = true;
	w->off += need;
	w->used += n;
	w->last_lsn = lsn;
out:
	return r;
}

int wal_sync(struct wal *w)
{
	int r = 0;

	if (!w) {
		r = -EINVAL;
		goto out;
	}
	if (w->state == WAL_ERROR) {
		r = -EIO;
		goto out;
	}
	/* the current segment last: the older ones hold the END that leads to
	 * it, so that no crash between two of these syncs leaves synced
	 * batches that the log cannot reach (fsck would call them damage) */
	for (uint32_t k = 1; k <= w->n; k++) {
		uint32_t i = (w->cur + k) % w->n;
		if (!w->segs[i].dirty)
			continue;
		r = vfs_fdatasync(w->segs[i].f);
		if (r < 0) {
			fail(w, r, "fdatasync");
			r = -EIO;
			goto out;
		}
		w->segs[i].dirty = false;
	}
out:
	return r;
}

uint64_t wal_used_since_checkpoint(const struct wal *w) { return w ? w->used : 0; }

void wal_tail_pos(const struct wal *w, struct wal_pos *ret_pos)
{
	if (!w || !ret_pos)
		return;
	ret_pos->segment = w->cur;
	ret_pos->life = w->cur_life;
	ret_pos->offset = w->off;
}

void wal_recycle(struct wal *w)
{
	if (!w)
		return;
	/* cur itself is never picked while it is cur; it turns busy when the
	 * writer leaves it */
	for (uint32_t i = 0; i < w->n; i++)
		w->segs[i].busy = false;
	w->cur_blocked = false;
	w->used = 0;
}

/* ---- inspection ---- */

static int inspect_seg(const struct wal_seg *s, uint32_t i, uint64_t seg_bytes, wal_entry_fn fn, void *arg)
{
	struct window wn = {0};
	struct wal_entry_info info = {.segment = i, .offset = 0, .life = s->life, .kind = WAL_KIND_HEADER,
				      .len = seg_bytes, .valid = s->hdr_valid};
	uint64_t off = WAL_HDR_BLOCK;
	int r;

	r = fn(arg, &info);
	if (r != 0)
		goto out;
	win_init(&wn, s->f, seg_bytes);
	while (off + WAL_ENT_HDR <= seg_bytes) {
		const uint8_t *p;
		struct ent e;
		uint64_t sz;

		r = win_get(&wn, off, WAL_ENT_HDR, &p);
		if (r < 0)
			goto out;
		ent_parse(p, &e);
		sz = WAL_ENT_HDR + align8(e.len);
		if (e.magic != WAL_ENT_MAGIC || e.len > seg_bytes || off + sz > seg_bytes) {
			off += 8; /* resynchronize: look for the next entry magic */
			continue;
		}
		r = win_get(&wn, off, (size_t)sz, &p);
		if (r < 0)
			goto out;
		info = (struct wal_entry_info){.segment = i, .offset = off, .life = e.life, .kind = e.kind,
					       .lsn = e.lsn, .len = e.len,
					       .valid = s->hdr_valid && ent_valid(p, &e, i, s->life, s->salt)};
		r = fn(arg, &info);
		if (r != 0)
			goto out;
		off += sz;
	}
	r = 0;
out:
	free(wn.p);
	return r;
}

int wal_inspect(struct vfs *v, const struct wal_opts *o, wal_entry_fn fn, void *arg)
{
	struct wal_seg *segs = NULL;
	int r;

	if (!v || !opts_ok(o) || !fn) {
		r = -EINVAL;
		goto out;
	}
	r = open_segs(v, o, VFS_O_RDONLY, &segs);
	if (r < 0)
		goto out;
	for (uint32_t i = 0; i < o->segments; i++) {
		r = inspect_seg(&segs[i], i, o->segment_bytes, fn, arg);
		if (r != 0)
			goto out;
	}
out:
	if (segs) {
		for (uint32_t i = 0; i < o->segments; i++)
			vfs_close(segs[i].f);
		free(segs);
	}
	return r;
}
