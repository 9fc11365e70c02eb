/* store_chunk.c — the OPEN CHUNK of each file: where small appends
 * accumulate until they make a chunk worth compressing. Format:
 * docs/FORMAT.md ("The PageStore and recovery" §4a, the 'F' record's open
 * chunk fields in §6).
 *
 * A file's bytes [0, size) are its SEALED chunks (index entries, offset
 * order, gaps = holes) followed by its open chunk [ostart, size). The open
 * chunk is durable through the WAL between checkpoints; at each checkpoint
 * (and when its buffer is spilled) it is written as the file's TAIL: one
 * record frame (REC_DATA, ino, off = ostart, raw_len = size - ostart,
 * compressed as one unit at the file's level), packed if it is at most a
 * page payload, else an extent of its own, named by the 'F' record. The
 * previous tail's space is released (pending until the next durable
 * superblock, like every release).
 *
 * APPLYING a data record of raw_len bytes at the file's size (commit
 * thread, s->lock exclusive), with chunk = the file's chunk_bytes:
 *   - raw_len >= chunk / 2 (a record the pipeline cut at the file's chunk
 *     size, compressed by a worker): the open chunk is sealed first if it
 *     holds anything (a short chunk), then the frame is stored AS IS as a
 *     sealed chunk. Bulk writes never cost the commit thread a
 *     recompression.
 *   - else (the pipeline logged it raw: pipeline.c gather_below) its raw
 *     bytes are appended to the open chunk's buffer (loaded
 *     first from the tail frame if the file has one and no buffer); each
 *     time the buffer holds chunk bytes, its first chunk bytes are
 *     compressed here and stored as a sealed chunk (one entry) and the
 *     tail, now covered by it, is released. The per-append cost on disk is
 *     thus the WAL frame only, until a checkpoint.
 *   - a HOLE seals the open chunk (short) and moves ostart past the hole.
 * Compressing on the commit thread happens only for data that arrived in
 * small records (fsync'd appends, short writes without the writeback
 * cache): at most one chunk per chunk_bytes of such data.
 *
 * MEMORY. Buffers are counted in s->open_bytes (their capacity); past
 * s->open_budget the least recently appended files' buffers are spilled:
 * their tail is written and the buffer freed (reloaded from the tail on
 * the next append). A file's chunk_bytes and zstd level are read once from
 * its user.blazefs.* attributes (fixed at creation: fs/retain.c), else the
 * store's defaults.
 *
 * INVARIANTS. ostart + olen == the file's size once its first record is
 * applied. Without a buffer: olen == otail.raw_len if has_otail, else 0.
 * odirty iff the buffer holds bytes the tail frame does not. The tail is
 * never an entry of the index (it is not sealed).
 *
 * DIRTY MARKS (incremental checkpoints, ns_dirty.c). A file whose index
 * state changes is marked at the entry points only: an applied record's
 * file by its ns_set_size (st_apply_data, after st_oc_append / st_oc_seal
 * ran; a failure before it leaves the store in its sticky error), oc_write_tail (the
 * checkpoint's tails and a spill's, which may write other files' tails)
 * and st_oc_drop mark theirs; the helpers under them (tail_release,
 * oc_seal_n, st_index_add) do not mark again on every record.
 *
 * LOCKS. Everything here runs on the commit thread with s->lock exclusive
 * (REQUIRES(store_cap)); cctx, odctx and cbuf are the commit thread's.
 * Readers copy a buffer's bytes under s->lock shared (store_read.c).
 */
#include <stdlib.h>
#include <string.h>

#include "bufpool.h"
#include "store_int.h"

#define OC_MIN_CAP 4096u

int st_oc_init(struct store *s)
{
	s->cctx = ZSTD_createCCtx();
	s->odctx = ZSTD_createDCtx();
	return s->cctx && s->odctx ? 0 : -ENOMEM;
}

void st_oc_fini(struct store *s)
{
	ZSTD_freeCCtx(s->cctx);
	ZSTD_freeDCtx(s->odctx);
	bp_put(s->cbuf, s->cbuf_cap);
	s->cctx = NULL;
	s->odctx = NULL;
	s->cbuf = NULL;
	s->cbuf_cap = 0;
}

static bool parse_int(const char *v, int len, long long lo, long long hi, long long *ret)
{
	char buf[24];
	char *end;

	if (len <= 0 || len >= (int)sizeof(buf))
		return false;
	memcpy(buf, v, (size_t)len);
	buf[len] = 0;
	long long x = strtoll(buf, &end, 10);
	if (*end || x < lo || x > hi)
		return false;
	*ret = x;
	return true;
}

void st_oc_resolve(struct store *s, struct sfile *f) REQUIRES(store_cap)
{
	char v[24];
	long long x;
	int n;

	if (f->chunk)
		return;
	f->chunk = s->chunk_bytes;
	f->level = s->zstd_level;
	n = ns_getxattr(s->ns, f->ino, NS_XA_CHUNK_BYTES, strlen(NS_XA_CHUNK_BYTES), v, sizeof(v));
	if (parse_int(v, n, 4096, 1 << 20, &x))
		f->chunk = (uint32_t)x;
	n = ns_getxattr(s->ns, f->ino, NS_XA_ZSTD_LEVEL, strlen(NS_XA_ZSTD_LEVEL), v, sizeof(v));
	if (parse_int(v, n, ZSTD_minCLevel(), ZSTD_maxCLevel(), &x))
		f->level = (int)x;
}

static void lru_unlink(struct store *s, struct sfile *f) REQUIRES(store_cap)
{
	if (f->lru_prev)
		f->lru_prev->lru_next = f->lru_next;
	else if (s->lru_head == f)
		s->lru_head = f->lru_next;
	if (f->lru_next)
		f->lru_next->lru_prev = f->lru_prev;
	else if (s->lru_tail == f)
		s->lru_tail = f->lru_prev;
	f->lru_prev = f->lru_next = NULL;
}

static void lru_front(struct store *s, struct sfile *f) REQUIRES(store_cap)
{
	if (s->lru_head == f)
		return;
	lru_unlink(s, f);
	f->lru_next = s->lru_head;
	if (s->lru_head)
		s->lru_head->lru_prev = f;
	s->lru_head = f;
	if (!s->lru_tail)
		s->lru_tail = f;
}

/* What the next checkpoint may write for f's open chunk (store_space): a
 * dirty buffer becomes a tail frame of at most olen raw bytes and a header
 * (chunk_encode stores raw what zstd does not shrink), in a page of its own
 * at worst; a clean one (its tail written, or sealed) is not written again.
 * Called wherever odirty, olen or obuf change. */
static void oc_recount(struct store *s, struct sfile *f) REQUIRES(store_cap)
{
	uint32_t want = f->odirty && f->obuf ? f->olen + REC_HDR_MAX + PAGER_PAGE_SIZE : 0;

	st_set_u64(&s->open_need, s->open_need + want - f->oneed);
	f->oneed = want;
}

static void obuf_free(struct store *s, struct sfile *f) REQUIRES(store_cap)
{
	if (!f->obuf)
		return;
	lru_unlink(s, f);
	st_set_u64(&s->open_bytes, s->open_bytes - f->ocap);
	st_set_u64(&s->open_files, s->open_files - 1);
	free(f->obuf);
	f->obuf = NULL;
	f->ocap = 0;
	oc_recount(s, f);
}

static int obuf_reserve(struct store *s, struct sfile *f, uint64_t need) REQUIRES(store_cap)
{
	uint64_t cap = f->ocap ? f->ocap : OC_MIN_CAP;
	int r = 0;

	if (need <= f->ocap && f->obuf)
		goto out;
	while (cap < need)
		cap *= 2;
	if (cap > REC_MAX_RAW) {
		r = -EFBIG;
		goto out;
	}
	uint8_t *b = realloc(f->obuf, cap);
	if (!b) {
		r = -ENOMEM;
		goto out;
	}
	st_set_u64(&s->open_bytes, s->open_bytes + cap - f->ocap);
	if (!f->obuf)
		st_set_u64(&s->open_files, s->open_files + 1);
	f->obuf = b;
	f->ocap = (uint32_t)cap;
	lru_front(s, f);
out:
	return r;
}

/* Encodes raw[0, len), the file's bytes at off, as one record frame in
 * s->cbuf (zstd at the file's level unless that does not shrink it by 3 %,
 * as the workers do). */
static int chunk_encode(struct store *s, const struct sfile *f, const uint8_t *raw, uint32_t len, uint64_t off,
			size_t *ret_len)
{
	struct rec_hdr h = {
		.type = REC_DATA, .codec = REC_RAW, .ino = f->ino, .off = off, .raw_len = len, .stored_len = len,
	};
	uint8_t hdr[REC_HDR_MAX];
	size_t limit = len ? ((size_t)len * 97 - 1) / 100 : 0, z = 0;
	int r = st_grow(&s->cbuf, &s->cbuf_cap, REC_HDR_MAX + (size_t)len);

	if (r < 0)
		goto out;
	h.hash = rec_hash(raw, len);
	if (limit)
		z = ZSTD_compressCCtx(s->cctx, s->cbuf + REC_HDR_MAX, limit, raw, len, f->level);
	if (limit && !ZSTD_isError(z) && z <= limit) {
		h.codec = REC_ZSTD;
		h.stored_len = (uint32_t)z;
	} else {
		memcpy(s->cbuf + REC_HDR_MAX, raw, len);
	}
	r = rec_hdr_encode(&h, hdr, sizeof(hdr));
	if (r < 0)
		goto out;
	memmove(s->cbuf + r, s->cbuf + REC_HDR_MAX, h.stored_len);
	memcpy(s->cbuf, hdr, (size_t)r);
	*ret_len = (size_t)r + h.stored_len;
	r = 0;
out:
	return r;
}

/* Loads the open chunk's buffer from the tail frame (if not loaded). */
static int oc_load(struct store *s, struct sfile *f) REQUIRES(store_cap)
{
	struct rctx *x = NULL;
	struct rec_hdr h;
	const uint8_t *payload;
	int r = 0;

	if (f->obuf || !f->olen)
		goto out;
	if (!f->has_otail || f->otail.raw_len != f->olen || f->otail.off != f->ostart) {
		r = -EIO;
		goto bad;
	}
	x = calloc(1, sizeof(*x));
	r = x ? st_frame_read_checked(s, f->ino, &f->otail, x, &h, &payload) : -ENOMEM;
	if (r == -ENOMEM)
		goto out;
	if (r == 0) {
		r = obuf_reserve(s, f, f->olen);
		if (r < 0)
			goto out;
		r = rec_payload_decode(&h, payload, f->obuf, s->odctx);
	}
	if (r == 0)
		goto out;
bad:
	__atomic_fetch_add(&s->record_errors, 1, __ATOMIC_RELAXED);
	bz_err("store.db: the open chunk of inode %llu at offset %llu (tail frame in page %llu) is unreadable (%s)",
	       (unsigned long long)f->ino, (unsigned long long)f->ostart, (unsigned long long)f->otail.page,
	       strerror(-r));
	obuf_free(s, f);
	r = -EIO;
out:
	st_rctx_free(x);
	return r;
}

/* The tail frame is superseded (by a newer tail or a sealed chunk). */
static int tail_release(struct store *s, struct sfile *f) REQUIRES(store_cap)
{
	int r = 0;

	if (!f->has_otail)
		goto out;
	f->stored_bytes -= f->otail.frame_len;
	s->stored_bytes -= f->otail.frame_len;
	f->has_otail = false;
	r = st_release_entry(s, &f->otail);
out:
	return r;
}

/* Writes the open chunk [ostart, ostart + olen) as the file's new tail. */
static int oc_write_tail(struct store *s, struct sfile *f, uint64_t lsn) REQUIRES(store_cap)
{
	ns_dirty_mark(s->ns, f->ino); /* its checkpointed state changes (ns_dirty) */
	struct ient e = {.off = f->ostart, .raw_len = f->olen};
	size_t flen = 0;
	int r = 0;

	if (!f->odirty || !f->obuf)
		goto out;
	r = tail_release(s, f);
	if (r == 0 && f->olen)
		r = chunk_encode(s, f, f->obuf, f->olen, f->ostart, &flen);
	if (r == 0 && f->olen)
		r = st_chunk_store(s, lsn, s->cbuf, flen, &e);
	if (r < 0)
		goto out;
	if (f->olen) {
		e.frame_len = (uint32_t)flen;
		f->otail = e;
		f->has_otail = true;
		f->stored_bytes += flen;
		s->stored_bytes += flen;
		st_set_u64(&s->tails_written, s->tails_written + 1);
	}
	f->odirty = false;
	oc_recount(s, f);
out:
	return r;
}

/* Seals the first n bytes of the loaded open chunk as a chunk. */
static int oc_seal_n(struct store *s, struct sfile *f, uint64_t lsn, uint32_t n) REQUIRES(store_cap)
{
	struct ient e = {.off = f->ostart, .raw_len = n};
	size_t flen = 0;
	int r = chunk_encode(s, f, f->obuf, n, f->ostart, &flen);

	if (r == 0)
		r = st_chunk_store(s, lsn, s->cbuf, flen, &e);
	if (r < 0)
		goto out;
	e.frame_len = (uint32_t)flen;
	r = st_index_add(s, f, lsn, &e);
	if (r < 0)
		goto out;
	f->stored_bytes += flen;
	s->stored_bytes += flen;
	r = tail_release(s, f); /* its bytes are in the sealed chunk now */
	memmove(f->obuf, f->obuf + n, f->olen - n);
	f->olen -= n;
	f->ostart += n;
	f->odirty = f->olen > 0;
	oc_recount(s, f);
	st_set_u64(&s->chunks_sealed, s->chunks_sealed + 1);
out:
	return r;
}

int st_oc_seal(struct store *s, struct sfile *f, uint64_t lsn) REQUIRES(store_cap)
{
	int r = 0;

	if (!f->olen)
		goto out;
	if (!f->odirty && f->has_otail && f->otail.off == f->ostart && f->otail.raw_len == f->olen) {
		/* the tail frame is exactly this chunk: it becomes an index
		 * entry as it is (no recompression, nothing released) */
		r = st_index_add(s, f, lsn, &f->otail);
		if (r < 0)
			goto out;
		f->has_otail = false;
		f->ostart += f->olen;
		f->olen = 0;
		st_set_u64(&s->chunks_sealed, s->chunks_sealed + 1);
		goto out;
	}
	st_oc_resolve(s, f);
	r = oc_load(s, f);
	if (r == 0)
		r = oc_seal_n(s, f, lsn, f->olen);
out:
	if (r == 0)
		obuf_free(s, f);
	return r;
}

/* Spills the least recently appended buffers (not f's) while over budget. */
static int oc_spill(struct store *s, struct sfile *keep, uint64_t lsn) REQUIRES(store_cap)
{
	int r = 0;

	while (r == 0 && s->open_bytes > s->open_budget && s->lru_tail && s->lru_tail != keep) {
		struct sfile *v = s->lru_tail;
		r = oc_write_tail(s, v, lsn);
		if (r == 0)
			obuf_free(s, v);
	}
	return r;
}

int st_oc_append(struct store *s, struct sfile *f, uint64_t lsn, const struct rec_hdr *h, const uint8_t *frame,
		 size_t frame_len, const uint8_t *payload) REQUIRES(store_cap)
{
	int r;

	st_oc_resolve(s, f);
	if (h->raw_len >= f->chunk / 2) {
		/* a full record: seal what is open, store the frame as is */
		struct ient e = {.off = h->off, .raw_len = (uint32_t)h->raw_len, .frame_len = (uint32_t)frame_len};
		r = st_oc_seal(s, f, lsn);
		if (r == 0)
			r = st_chunk_store(s, lsn, frame, frame_len, &e);
		if (r == 0)
			r = st_index_add(s, f, lsn, &e);
		if (r < 0)
			goto out;
		f->stored_bytes += frame_len;
		s->stored_bytes += frame_len;
		f->ostart = h->off + h->raw_len;
		goto out;
	}
	r = oc_load(s, f);
	if (r == 0)
		r = obuf_reserve(s, f, (uint64_t)f->olen + h->raw_len);
	if (r == 0)
		r = rec_payload_decode(h, payload, f->obuf + f->olen, s->odctx);
	if (r < 0) {
		if (r != -ENOMEM && r != -EIO)
			r = -EIO;
		goto out;
	}
	f->olen += (uint32_t)h->raw_len;
	f->odirty = true;
	oc_recount(s, f);
	lru_front(s, f);
	while (r == 0 && f->olen >= f->chunk)
		r = oc_seal_n(s, f, lsn, f->chunk);
	if (r == 0 && !f->olen)
		obuf_free(s, f);
	if (r == 0)
		r = oc_spill(s, f, lsn);
out:
	return r;
}

int st_oc_write_tails(struct store *s, uint64_t lsn) REQUIRES(store_cap)
{
	int r = 0;

	for (struct sfile *f = s->lru_head; f && r == 0; f = f->lru_next) {
		if (st_mutant() == STORE_MUTANT_TAIL_SKIP) { /* the crash tests must catch it */
			f->odirty = false;
			oc_recount(s, f);
			continue;
		}
		r = oc_write_tail(s, f, lsn);
	}
	if (r == 0)
		r = oc_spill(s, NULL, lsn);
	return r;
}

/* The file is deleted: its tail's space goes (its stored bytes were
 * already taken off the store's count by the caller). */
int st_oc_drop(struct store *s, struct sfile *f) REQUIRES(store_cap)
{
	ns_dirty_mark(s->ns, f->ino); /* its checkpointed state changes (ns_dirty) */
	int r = f->has_otail ? st_release_entry(s, &f->otail) : 0;

	f->has_otail = false;
	obuf_free(s, f);
	return r;
}
