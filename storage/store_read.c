/* store_read.c — the PageStore's read path: store_read, loading a file's
 * full index lazily, the pool of readers' zstd contexts, the [any]
 * queries store_ns_clone, store_file_size and store_file_info, and the
 * loads of the filesystem's backed namespace (store_ns_backed: each copies
 * from the applied namespace with s->lock shared). Format read:
 * docs/FORMAT.md ("The PageStore and recovery" sections 4, 5 and 11; the
 * frames themselves: "Record frames and namespace operations").
 *
 * A read looks up the file's index entries covering [off, off + len),
 * copies their frames (packed: from the open pack page, the run of full
 * pack pages not yet written, or the pager; extent: through its consecutive
 * pages, next = pgno+1) after checking each entry's placement
 * (st_entry_ok), then decodes, decompresses and checks each record's xxh3.
 * A frame whose checks fail is -EIO and counted in record_errors; bytes are
 * never returned from it. Gaps between the entries, and past the last one
 * up to the file's size, are holes: zeros.
 *
 * LOCKS. [any] thread. store_read holds s->lock shared only to look up the
 * index and COPY the frames it needs into its rctx; it decodes after
 * dropping the lock, so the commit thread never waits for a reader's CPU
 * work. When the file's full index is not loaded, load_and_collect reads
 * the chain with no lock (index pages are immutable and a live file's chain
 * only grows at its head), then takes s->lock exclusive only to read the
 * pages added meanwhile, install the entries and copy the read's frames.
 * s->dctx_mu is a leaf taken only by dctx_get/dctx_put. The order is in
 * store_int.h.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include "bufpool.h"
#include "store_int.h"

/* ------------------------------------------------------------------ */
/* [any] reads                                                         */

const struct ient *st_sfile_ent(const struct sfile *f, uint64_t i)
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
			st_index_entry_decode(page + PAGER_HDR_SIZE + i * IDX_ENTRY_SIZE, &full[have + i]);
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
			st_sfile_unload(s, s->files.slot[i]);
}

/* Loads a file's full index entries (s->lock exclusive; tools). */
int st_sfile_load(struct store *s, struct sfile *f) REQUIRES(store_cap)
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
	uint32_t gen = 0;
	bool need_load = false, have = false;
	int r = 0;

	bz_cap_rdlock(&s->lock, &store_cap);
	struct sfile *f = st_ftab_get(&s->files, ino);
	if (f && !f->loaded) {
		last = f->last_full;
		n = f->n_full;
		gen = f->chain_gen;
		have = true;
	}
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (have) {
		full = malloc(BZ_MAX(n, (uint64_t)1) * sizeof(*full));
		r = full ? index_chain_read(s, ino, last, n, 0, full) : -ENOMEM;
	}

	bz_cap_wrlock(&s->lock, &store_cap);
	f = st_ftab_get(&s->files, ino);
	if (f && !f->loaded) {
		if (have && f->chain_gen != gen) {
			r = st_sfile_load(s, f); /* the chain was rewritten meanwhile (store_reloc.c) */
		} else if (r == 0 && have && f->n_full >= n) {
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
			r = st_sfile_load(s, f); /* cannot happen (inode numbers are never reused) */
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

/* Grows a reader's buffer to at least need bytes, keeping its contents.
 * From BP_MIN up the buffers come from the pool (storage/bufpool.c): with
 * glibc's mmap threshold fixed at 128 KiB, a fresh 256 KiB chunk buffer per
 * read was mapped, faulted in and unmapped every time (perf of the logger
 * bench: a third of the daemon's CPU in those page faults, under the
 * writeback cache's comparisons of pages written back with what the
 * catch-up had fetched). Free with bp_put (the capacity it set). */
int st_grow(uint8_t **p, size_t *cap, size_t need)
{
	size_t c;
	uint8_t *n;

	if (need <= *cap)
		return 0;
	c = BZ_MAX(need, (size_t)8192);
	if (c < BP_MIN) {
		n = realloc(*p, c);
		if (!n)
			return -ENOMEM;
	} else {
		n = bp_get(c, &c);
		if (!n)
			return -ENOMEM;
		if (*p)
			memcpy(n, *p, *cap);
		bp_put(*p, *cap);
	}
	*p = n;
	*cap = c;
	return 0;
}

/* Where the bytes of page pg (type PAGER_PACK or PAGER_DATA) are: the open
 * pack page, the run of full pack pages not yet written, or the reader's
 * held copy x->page (read and verified once; a page named by a live index
 * entry never changes while the entry lives, so the copy stays valid). */
int st_data_page_src(struct store *s, uint64_t pg, uint8_t type, struct rctx *x, const uint8_t **ret_src,
		     struct pager_hdr *ret_h) REQUIRES_SHARED(store_cap)
{
	int r;

	if (type == PAGER_PACK && pg == s->open_pgno) {
		*ret_src = s->open_page;
		ret_h->used = s->open_used;
		ret_h->next = 0;
		return 0;
	}
	if (type == PAGER_PACK && s->run_n && pg >= s->run_first && pg < s->run_first + s->run_n) {
		const uint8_t *src = s->run + (size_t)(pg - s->run_first) * PAGER_PAGE_SIZE;
		*ret_src = src;
		ret_h->used = bz_get_le32(src + 32);
		ret_h->next = bz_get_le64(src + 24);
		return 0;
	}
	if (x->pgno != pg || x->h.type != type) {
		x->pgno = 0;
		r = pager_read(s->pager, pg, type, x->page, &x->h);
		if (r < 0)
			return r;
		x->pgno = pg;
	}
	*ret_src = x->page;
	*ret_h = x->h;
	return 0;
}

/* Whether an index entry's placement fields are consistent (never trust
 * the index: found by fuzz_page). */
bool st_entry_ok(const struct ient *e)
{
	if (e->frame_len > REC_HDR_MAX + REC_MAX_RAW || e->raw_len > REC_MAX_RAW || e->frame_len == 0 || e->page < 2)
		return false;
	if (e->npages == 0)
		return !e->tpage && e->frame_len <= PAGER_PAYLOAD && e->pg_off <= PAGER_PAYLOAD - e->frame_len;
	if (e->page + e->npages <= e->page)
		return false;
	if (e->tpage) /* split: full pages, then a fragment of 1..SPLIT_MAX bytes */
		return e->tpage >= 2 && e->npages == e->frame_len / PAGER_PAYLOAD && e->frame_len % PAGER_PAYLOAD &&
		       e->frame_len % PAGER_PAYLOAD <= SPLIT_MAX && e->pg_off <= PAGER_PAYLOAD - ient_frag_len(e);
	return e->pg_off == 0 && e->npages == (e->frame_len + PAGER_PAYLOAD - 1) / PAGER_PAYLOAD;
}

/* Copies the frame of e into x->frame[dst, dst + e->frame_len): from its
 * pack page, or through the pages of its extent (next = pgno+1 while the
 * frame continues, each page verified), then a split chunk's fragment from
 * its pack page. */
static int frame_copy(struct store *s, const struct ient *e, struct rctx *x, size_t dst) REQUIRES_SHARED(store_cap)
{
	uint8_t type = e->npages ? PAGER_DATA : PAGER_PACK;
	uint64_t pg = e->page;
	uint32_t at = e->npages ? 0 : e->pg_off, len = ient_ext_len(e);
	size_t done = 0;
	int r;

	if (!st_entry_ok(e)) {
		bz_err("store: index entry at offset %llu names a %u-byte frame in %u pages at %llu+%u (fragment page "
		       "%llu): corrupt index",
		       (unsigned long long)e->off, e->frame_len, e->npages, (unsigned long long)e->page, e->pg_off,
		       (unsigned long long)e->tpage);
		return -EIO;
	}
	r = st_grow(&x->frame, &x->frame_cap, dst + e->frame_len);

	while (r == 0 && done < len) {
		const uint8_t *src;
		struct pager_hdr h;
		r = st_data_page_src(s, pg, type, x, &src, &h);
		if (r < 0)
			break;
		size_t n = at < h.used ? BZ_MIN((size_t)(h.used - at), len - done) : 0;
		memcpy(x->frame + dst + done, src + PAGER_HDR_SIZE + at, n);
		done += n;
		if (done < len && (h.next != pg + 1 || h.used != PAGER_PAYLOAD)) {
			bz_err("store.db: page %llu: a record frame runs past the page's data", (unsigned long long)pg);
			r = -EIO;
			break;
		}
		pg = h.next;
		at = 0;
	}
	if (r == 0 && e->tpage) {
		const uint8_t *src;
		struct pager_hdr h;
		uint32_t n = ient_frag_len(e);
		r = st_data_page_src(s, e->tpage, PAGER_PACK, x, &src, &h);
		if (r == 0 && e->pg_off + n > h.used) {
			bz_err("store.db: page %llu: a chunk's fragment runs past the page's data",
			       (unsigned long long)e->tpage);
			r = -EIO;
		}
		if (r == 0)
			memcpy(x->frame + dst + len, src + PAGER_HDR_SIZE + e->pg_off, n);
	}
	return r;
}

/* Reads the frame of e into x->frame[0, e->frame_len). */
int st_frame_read(struct store *s, const struct ient *e, struct rctx *x) REQUIRES_SHARED(store_cap)
{
	return frame_copy(s, e, x, 0);
}

int st_frame_read_checked(struct store *s, uint64_t ino, const struct ient *e, struct rctx *x, struct rec_hdr *ret_h,
			  const uint8_t **ret_payload) REQUIRES_SHARED(store_cap)
{
	size_t flen;
	int r = st_frame_read(s, e, x);

	if (r == 0)
		r = rec_decode(x->frame, e->frame_len, ret_h, ret_payload, &flen);
	if (r == 0 && (ret_h->type != REC_DATA || ret_h->codec == REC_HOLE || ret_h->ino != ino ||
		       ret_h->off != e->off || ret_h->raw_len != e->raw_len || flen != e->frame_len))
		r = -EBADMSG;
	return r;
}

void st_rctx_free(struct rctx *x)
{
	if (!x)
		return;
	bp_put(x->frame, x->frame_cap);
	bp_put(x->raw, x->raw_cap);
	free(x->parts);
	free(x);
}

/* Makes room for one more part in x. */
static int rpart_room(struct rctx *x)
{
	if (x->n_parts < x->cap_parts)
		return 0;
	size_t c = x->cap_parts ? x->cap_parts * 2 : 8;
	struct rpart *np = realloc(x->parts, c * sizeof(*np));
	if (!np)
		return -ENOMEM;
	x->parts = np;
	x->cap_parts = c;
	return 0;
}

static struct store_test_hooks test_hooks; /* tests only: set before any store runs */

void store_set_test_hooks(const struct store_test_hooks *h)
{
	if (h)
		test_hooks = *h;
	else
		memset(&test_hooks, 0, sizeof(test_hooks));
}

int st_mutant(void) { return test_hooks.mutant; }

/* Decodes part p (its frame already copied into x->frame) and copies the
 * wanted bytes into out. Needs no lock: the frame is the reader's copy. */
static int record_decode(struct store *s, uint64_t ino, const struct rpart *p, uint8_t *out, struct rctx *x)
{
	const struct ient *e = &p->e;
	struct rec_hdr h;
	const uint8_t *payload;
	size_t flen;
	int r;

	if (p->raw) { /* bytes copied from an open chunk's buffer */
		memcpy(out, x->frame + p->at, (size_t)(p->to - p->from));
		r = 0;
		goto out;
	}
	if (test_hooks.before_decode)
		test_hooks.before_decode(test_hooks.arg, ino, e->off);
	r = st_grow(&x->raw, &x->raw_cap, e->raw_len);
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
	int r = rpart_room(x);

	if (r < 0)
		return r;
	r = frame_copy(s, e, x, x->frame_len);
	if (r < 0)
		return r;
	x->parts[x->n_parts++] = (struct rpart){.e = *e, .from = from, .to = to, .at = x->frame_len};
	x->frame_len += e->frame_len;
	return 0;
}

/* Collects [from, to) of the file's open chunk: from its buffer (a copy of
 * the raw bytes), else from its tail frame. */
static int open_collect(struct store *s, const struct sfile *f, uint64_t from, uint64_t to, struct rctx *x)
	REQUIRES_SHARED(store_cap)
{
	int r = 0;

	if (from < f->ostart || to > f->ostart + f->olen) {
		bz_err("store: inode %llu: bytes %llu..%llu are past its open chunk (%llu + %u)",
		       (unsigned long long)f->ino, (unsigned long long)from, (unsigned long long)to,
		       (unsigned long long)f->ostart, f->olen);
		r = -EIO;
		goto out;
	}
	if (!f->obuf) {
		r = f->has_otail ? record_collect(s, &f->otail, from, to, x) : -EIO;
		goto out;
	}
	r = rpart_room(x);
	if (r < 0)
		goto out;
	size_t n = (size_t)(to - from);
	r = st_grow(&x->frame, &x->frame_cap, x->frame_len + n);
	if (r < 0)
		goto out;
	memcpy(x->frame + x->frame_len, f->obuf + (from - f->ostart), n);
	x->parts[x->n_parts++] = (struct rpart){.from = from, .to = to, .at = x->frame_len, .raw = true};
	x->frame_len += n;
out:
	return r;
}

/* Binary search over the entries a reader may use (all when loaded, else
 * the tail): the last one with e.off <= off, or the first one. */
static uint64_t entry_at(const struct sfile *f, uint64_t off) REQUIRES_SHARED(store_cap)
{
	uint64_t lo = f->loaded ? 0 : f->n_full, hi = f->n_full + f->n_tail;

	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (st_sfile_ent(f, mid)->off <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
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
	r = st_ns_getattr(s, ino, &a);
	if (r < 0)
		goto out;
	if (!S_ISREG(a.mode)) {
		r = S_ISDIR(a.mode) ? -EISDIR : -EINVAL;
		goto out;
	}
	if (off >= a.size || !len)
		goto done;
	uint64_t end = BZ_MIN(a.size, off + (uint64_t)len);
	f = st_ftab_get(&s->files, ino);
	if (!f) {
		bz_err("store: inode %llu has size %llu but no index", (unsigned long long)ino,
		       (unsigned long long)a.size);
		r = -EIO;
		goto out;
	}
	if (off < f->ostart && !f->loaded && (f->n_tail == 0 || off < f->tail[0].off)) {
		*need_load = true;
		r = 0;
		goto out;
	}
	uint64_t total = f->n_full + f->n_tail;
	uint64_t lo = entry_at(f, off), send = BZ_MIN(end, f->ostart);
	/* Gaps before, between and after the entries are holes: store_read
	 * zero-fills the range before decoding the parts into it. The open
	 * chunk [ostart, size) follows the sealed ones. */
	uint64_t pos = off;
	for (uint64_t i = lo; i < total && pos < send; i++) {
		const struct ient *e = st_sfile_ent(f, i);
		if (e->off >= send)
			break;
		if (e->off > pos)
			pos = e->off;
		uint64_t to = BZ_MIN(send, e->off + e->raw_len);
		if (to <= pos)
			continue;
		r = record_collect(s, e, pos, to, x);
		if (r < 0)
			goto out;
		pos = to;
	}
	if (end > f->ostart) {
		r = open_collect(s, f, BZ_MAX(off, f->ostart), end, x);
		if (r < 0)
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
	r = st_ns_ensure(s, ino);
	if (r < 0)
		goto out;
	bz_cap_rdlock(&s->lock, &store_cap);
	r = read_locked(s, ino, off, len, &n, &need_load, x);
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (r == 0 && need_load)
		r = load_and_collect(s, ino, off, len, &n, x);
	if (r == 0 && n)
		memset(buf, 0, n); /* holes */
	for (size_t i = 0; r == 0 && i < x->n_parts; i++)
		r = record_decode(s, ino, &x->parts[i], (uint8_t *)buf + (x->parts[i].from - off), x);
	if (r == 0)
		*ret_n = n;
out:
	if (x)
		dctx_put(s, x->dctx);
	st_rctx_free(x);
	return r;
}

/* The locked half of store_seek. *need_load as read_locked's. */
static int seek_locked(struct store *s, uint64_t ino, uint64_t off, int whence, uint64_t *ret, bool *need_load)
	REQUIRES_SHARED(store_cap)
{
	struct ns_attr a;
	struct sfile *f;
	int r;

	*need_load = false;
	r = st_ns_getattr(s, ino, &a);
	if (r < 0)
		goto out;
	if (!S_ISREG(a.mode)) {
		r = S_ISDIR(a.mode) ? -EISDIR : -EINVAL;
		goto out;
	}
	if (off >= a.size) {
		r = -ENXIO;
		goto out;
	}
	f = st_ftab_get(&s->files, ino);
	uint64_t total = f ? f->n_full + f->n_tail : 0;
	if (f && f->olen && off >= f->ostart) { /* the open chunk is data up to the size */
		*ret = whence == SEEK_DATA ? off : a.size;
		r = 0;
		goto out;
	}
	if (f && !f->loaded && f->n_full && (f->n_tail == 0 || off < f->tail[0].off)) {
		*need_load = true;
		r = 0;
		goto out;
	}
	uint64_t lo = f ? entry_at(f, off) : 0;
	uint64_t pos = off;
	r = whence == SEEK_DATA ? -ENXIO : 0;
	for (uint64_t i = lo; i < total; i++) {
		const struct ient *e = st_sfile_ent(f, i);
		uint64_t end = e->off + e->raw_len;
		if (end <= pos)
			continue;
		if (whence == SEEK_DATA) {
			*ret = BZ_MAX(pos, e->off);
			r = 0;
			goto out;
		}
		if (e->off > pos)
			break; /* a gap: the hole starts at pos */
		pos = end;
	}
	if (f && f->olen && whence == SEEK_DATA && r == -ENXIO) {
		*ret = BZ_MAX(pos, f->ostart); /* SEEK_DATA: no sealed chunk left, the open one */
		r = 0;
		goto out;
	}
	if (whence == SEEK_HOLE)
		*ret = BZ_MIN(f && f->olen && pos >= f->ostart ? a.size : pos, a.size);
out:
	return r;
}

int store_seek(struct store *s, uint64_t ino, uint64_t off, int whence, uint64_t *ret)
{
	bool need_load = false;
	int r = -EINVAL;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		goto out;
	r = st_ns_ensure(s, ino);
	if (r < 0)
		goto out;
	/* A file's full index may be unloaded by the memory budget between the
	 * load and the lookup: try a few times. */
	for (int attempt = 0; attempt < 4; attempt++) {
		bz_cap_rdlock(&s->lock, &store_cap);
		r = seek_locked(s, ino, off, whence, ret, &need_load);
		bz_cap_rdunlock(&s->lock, &store_cap);
		if (r < 0 || !need_load)
			goto out;
		struct rctx *x = calloc(1, sizeof(*x));
		size_t n = 0;
		r = x ? load_and_collect(s, ino, off, 0, &n, x) : -ENOMEM; /* len 0: loads, collects nothing */
		st_rctx_free(x);
		if (r < 0)
			goto out;
	}
	r = -EAGAIN;
out:
	return r;
}

int store_ns_clone(struct store *s, struct ns **ret_ns)
{
	bz_cap_wrlock(&s->lock, &store_cap);
	int r = st_ns_load_all(s); /* a copy of everything: everything loaded first */
	if (r == 0)
		r = ns_clone(s->ns, ret_ns);
	bz_cap_wrunlock(&s->lock, &store_cap);
	return r;
}

/* ---- the filesystem's backed namespace (store_ns_backed) ---- */

/* The store's namespace may itself be loading from its trees (format 5,
 * store_nstree.c): what it has loaded is copied under s->lock shared;
 * what it has not is loaded and copied under s->lock exclusive. */
static int copy_one(struct store *s, struct ns *ns, uint64_t ino, bool entries) REQUIRES_SHARED(store_cap)
{
	return entries ? ns_copy_dir(ns, s->ns, ino) : ns_copy_inode(ns, s->ns, ino);
}

/* Inode ino (entries: a directory's entries) from the store's namespace
 * into the live view ns. */
static int copy_from_store(struct store *s, struct ns *ns, uint64_t ino, bool entries)
{
	int r;

	bz_cap_rdlock(&s->lock, &store_cap);
	r = entries ? ns_dir_state(s->ns, ino) : ns_state(s->ns, ino);
	if (r != -EAGAIN)
		r = copy_one(s, ns, ino, entries); /* loaded (or not there: -ENOENT) */
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (r == -EAGAIN) {
		st_ns_wrlock(s);
		r = ns_fetch(s->ns, ino, entries);
		if (r == 0)
			r = copy_one(s, ns, ino, entries);
		bz_cap_wrunlock(&s->lock, &store_cap);
	}
	return r;
}

static int bk_inode(void *arg, struct ns *ns, uint64_t ino) { return copy_from_store(arg, ns, ino, false); }

static int bk_dir(void *arg, struct ns *ns, uint64_t dir)
{
	int r = copy_from_store(arg, ns, dir, true);

	if (r < 0)
		bz_err("store: loading directory %llu into the live namespace: %s", (unsigned long long)dir,
		       strerror(-r));
	return r;
}

static int bk_rest(void *arg, struct ns *ns)
{
	struct store *s = arg;
	bz_cap_wrlock(&s->lock, &store_cap);
	int r = st_ns_load_all(s); /* the store's own first (O(files), once) */
	if (r == 0)
		r = ns_copy_rest(ns, s->ns);
	bz_cap_wrunlock(&s->lock, &store_cap);
	if (r < 0)
		bz_err("store: loading the whole live namespace: %s", strerror(-r));
	return r;
}

static int bk_has(void *arg, uint64_t ino)
{
	struct store *s = arg;
	bz_cap_rdlock(&s->lock, &store_cap);
	int r = ns_state(s->ns, ino);
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (r == -EAGAIN) {
		r = st_ns_need(s, ino, false);
		r = r == 0 ? 1 : r == -ENOENT ? 0 : r;
	}
	return r;
}

static const struct ns_backing store_backing = {
	.inode = bk_inode, .dir = bk_dir, .rest = bk_rest, .has = bk_has};

int store_ns_backed(struct store *s, struct ns **ret_ns)
{
	bz_cap_rdlock(&s->lock, &store_cap);
	int r = ns_new_backed(s->ns, &store_backing, s, ret_ns);
	bz_cap_rdunlock(&s->lock, &store_cap);
	return r;
}

int store_file_size(struct store *s, uint64_t ino, uint64_t *ret_size)
{
	struct ns_attr a;
	int r = st_ns_ensure(s, ino);

	if (r < 0)
		return r;
	bz_cap_rdlock(&s->lock, &store_cap);
	r = st_ns_getattr(s, ino, &a);
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
	int r = st_ns_ensure(s, ino);

	if (r < 0)
		return r;
	bz_cap_rdlock(&s->lock, &store_cap);
	r = st_ns_getattr(s, ino, &a);
	if (r == 0) {
		const struct sfile *f = st_ftab_get(&s->files, ino);
		fi.size = a.size;
		if (f) {
			fi.records = f->n_full + f->n_tail + (f->olen ? 1 : 0);
			fi.raw_bytes = f->raw_bytes;
			/* bytes of the open chunk no tail holds yet count raw */
			fi.stored_bytes = f->stored_bytes +
					  (f->odirty ? f->olen - (f->has_otail ? f->otail.raw_len : 0) : 0);
		}
	}
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (r == 0)
		*ret_info = fi;
	return r;
}
