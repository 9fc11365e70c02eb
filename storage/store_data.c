/* store_data.c — the PageStore's write side: the file table (ftab), page
 * allocation, the data page stream, the per-file index, and applying a
 * committed batch (store_apply and replay both end in st_apply_batch).
 * Format: docs/FORMAT.md ("The PageStore and recovery" sections 4, 5, 7 and
 * 10); page header: pager.c.
 *
 * CHUNKS. Each stored data record is one chunk: its frame exactly as
 * store_apply received it (checksums end to end). A frame of at most one
 * page payload (4048 bytes) is PACKED into the open PACK page (frames never
 * cross pages; a frame that does not fit closes the page); a larger one is
 * written at once as an EXTENT of its own: consecutive pages from a first
 * fit (or the high-water mark), the frame from payload offset 0, next =
 * pgno+1 while it continues. When the extent's last page would hold at most
 * SPLIT_MAX bytes, the chunk is SPLIT (format 6): the extent keeps the full
 * pages and that FRAGMENT is packed like a small frame (ient.tpage, pg_off);
 * its bytes count in the pack page's live bytes, and cleaning moves it like
 * a packed frame. Full pack pages wait in a run of up to
 * RUN_PAGES consecutive pages (one pwrite); readers find them there; the
 * checkpoint writes the run (st_run_flush) and seals the open pack page
 * (st_data_page_flush). A HOLE record stores nothing: the file grows and
 * the gap between entries reads as zeros.
 *
 * PER-FILE INDEX. One 40-byte entry per chunk: (logical offset, page, raw
 * length, frame length, extent pages or 0 = packed, offset in pack page).
 * Entries accumulate in a tail; when the tail holds IDX_PER_PAGE (101)
 * entries it is written as one INDEX page whose `next` is the file's
 * previous full index page (a chain from newest to oldest), never
 * rewritten. The tail lives inline in the namespace checkpoint. The full
 * entries are loaded lazily (store_read.c), on the first read that needs
 * them, so open does not depend on the amount of data; when more than
 * index_budget entries are loaded, other files' entries are unloaded.
 *
 * FREE SPACE. Extents (storage/freemap.c): st_extent_alloc takes a first
 * fit from s->free, else the high-water mark. Pages that stop being
 * referenced (st_release) go to s->pending and become free only once the
 * next superblock is durable (store_ckpt.c). When the last link of a file
 * goes, the extents of its tail entries are released at once and its
 * index chain is queued (s->dead) for the checkpoint, which reads it and
 * releases its pages and the extents they name. Pack pages hold chunks of
 * several files: s->packs counts each one's live frame bytes (saved in the
 * pack tree, store_nstree.c: a checkpoint puts the pages in s->kdirty,
 * those whose count changed); releasing a packed entry subtracts its frame
 * and a page reaching 0 is released, except the open pack page, released
 * when sealed (st_pack_closed) if nothing names it (docs/FORMAT.md §7).
 * Every release (extent, pack page) goes through the free_early mutant
 * hook. Releasing a page
 * that is already free is refused (-EIO, sticky): a page is never handed
 * out twice.
 *
 * LOCKS. Everything here runs on the commit thread ([commit] fields need no
 * lock); the functions that touch the data stream, the file table or the
 * namespace hold s->lock exclusive (REQUIRES(store_cap)): st_apply_batch
 * takes it around a batch, store_checkpoint around sealing. The ftab_*
 * and sfile_* helpers take the table or file as argument and leave locking
 * to their callers. See store_int.h for the lock order.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bufpool.h"
#include "store_int.h"

/* ------------------------------------------------------------------ */
/* file table                                                          */

static size_t ino_hash(uint64_t ino, size_t cap)
{
	ino *= 0x9e3779b97f4a7c15ull;
	return (size_t)(ino >> 17) & (cap - 1);
}

struct sfile *st_ftab_get(const struct ftab *t, uint64_t ino)
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

int st_ftab_put(struct ftab *t, struct sfile *f)
{
	int r = st_ftab_reserve(t, t->n + 1);

	if (r < 0)
		return r;
	size_t i = ino_hash(f->ino, t->cap);
	while (t->slot[i])
		i = (i + 1) & (t->cap - 1);
	t->slot[i] = f;
	t->n++;
	return 0;
}

int st_ftab_reserve(struct ftab *t, size_t n)
{
	if (n * 4 > t->cap * 3) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		while (n * 4 > cap * 3)
			cap *= 2;
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

void st_sfile_free(struct sfile *f)
{
	if (!f)
		return;
	free(f->full);
	free(f->tail);
	free(f->obuf);
	free(f);
}

void st_ftab_clear(struct ftab *t)
{
	for (size_t i = 0; i < t->cap; i++)
		st_sfile_free(t->slot[i]);
	free(t->slot);
	t->slot = NULL;
	t->cap = t->n = 0;
}

int st_sfile_tail_push(struct sfile *f, const struct ient *e)
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

/* Publishes the free-space figures store_space/store_stats read. */
void st_free_mirror(struct store *s)
{
	st_set_u64(&s->n_free, s->free.pages + s->pending.pages);
	st_set_u64(&s->n_reuse, s->free.pages);
	st_set_u64(&s->n_free_ext, s->free.n + s->pending.n);
}

/* n consecutive pages: first fit among the free extents, else at the
 * high-water mark. */
uint64_t st_extent_alloc(struct store *s, uint64_t n)
{
	uint64_t pg;
	s->dirty = true;
	if (!fm_alloc(&s->free, n, &pg)) {
		pg = s->hwm;
		st_set_u64(&s->hwm, pg + n);
	}
	st_free_mirror(s);
	return pg;
}

uint64_t st_page_alloc(struct store *s) { return st_extent_alloc(s, 1); }

/* Pages [start, start+n) stop being referenced: free once the next
 * superblock is durable. A page already free or pending is a bug (a double
 * release): refused, logged, and the store fails rather than hand the page
 * out twice. */
int st_release(struct store *s, uint64_t start, uint64_t n)
{
	int r = -EINVAL;
	if (start >= 2 && n && start + n <= s->hwm) {
		for (uint64_t pg = start; pg < start + n; pg++)
			if (fm_contains(&s->free, pg)) {
				r = -EEXIST;
				goto out;
			}
		r = fm_add(&s->pending, start, n);
	}
out:
	if (r == -ENOMEM) {
		bz_warn("store: out of memory: %llu pages at %llu leak", (unsigned long long)n,
			(unsigned long long)start);
		r = 0;
	} else if (r < 0) {
		bz_err("store: releasing pages %llu..%llu, which are %s: refusing", (unsigned long long)start,
		       (unsigned long long)(start + n - 1), r == -EEXIST ? "already free" : "outside the store");
		r = -EIO;
	} else {
		st_set_u64(&s->pages_released, s->pages_released + n);
	}
	st_free_mirror(s);
	return r;
}

/* ------------------------------------------------------------------ */
/* pack page live bytes [commit]                                       */

static size_t pg_hash(uint64_t pg, size_t cap)
{
	pg *= 0x9e3779b97f4a7c15ull;
	return (size_t)(pg >> 17) & (cap - 1);
}

/* The slot of pg, or the empty slot where it would go (cap > 0). */
static size_t ptab_slot(const struct ptab *t, uint64_t pg)
{
	size_t i = pg_hash(pg, t->cap);
	while (t->pg[i] && t->pg[i] != pg)
		i = (i + 1) & (t->cap - 1);
	return i;
}

void st_ptab_free(struct ptab *t)
{
	free(t->pg);
	free(t->live);
	t->pg = NULL;
	t->live = NULL;
	t->cap = t->n = 0;
}

static int ptab_grow(struct ptab *t)
{
	size_t cap = t->cap ? t->cap * 2 : 64;
	struct ptab nt = {.pg = calloc(cap, sizeof(uint64_t)), .live = calloc(cap, sizeof(uint32_t)), .cap = cap};
	if (!nt.pg || !nt.live) {
		st_ptab_free(&nt);
		return -ENOMEM;
	}
	for (size_t j = 0; j < t->cap; j++) {
		if (!t->pg[j])
			continue;
		size_t i = ptab_slot(&nt, t->pg[j]);
		nt.pg[i] = t->pg[j];
		nt.live[i] = t->live[j];
		nt.n++;
	}
	st_ptab_free(t);
	*t = nt;
	return 0;
}

static void ptab_del(struct ptab *t, size_t i)
{
	size_t j, k;
	t->pg[i] = 0;
	t->live[i] = 0;
	t->n--;
	for (j = (i + 1) & (t->cap - 1); t->pg[j]; j = (j + 1) & (t->cap - 1)) {
		k = pg_hash(t->pg[j], t->cap);
		bool in = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
		if (!in) {
			t->pg[i] = t->pg[j];
			t->live[i] = t->live[j];
			t->pg[j] = 0;
			t->live[j] = 0;
			i = j;
		}
	}
}

static void pack_mirror(struct store *s)
{
	st_set_u64(&s->pack_pages, s->packs.n);
}

/* Pack page pg's live count changed: the next checkpoint puts (or
 * deletes) its key in the pack tree. Without memory for the mark, the
 * next checkpoint writes the whole tree instead. */
static void pack_dirty(struct store *s, uint64_t pg)
{
	struct ptab *t = &s->kdirty;

	if (s->kdirty_all)
		return;
	if ((t->n + 1) * 4 > t->cap * 3 && ptab_grow(t) < 0) {
		s->kdirty_all = true;
		return;
	}
	size_t i = ptab_slot(t, pg);
	if (!t->pg[i]) {
		t->pg[i] = pg;
		t->n++;
	}
}

void st_pack_dirty_clear(struct store *s)
{
	st_ptab_free(&s->kdirty);
	s->kdirty_all = false;
}

/* Calls fn for every pack page marked since the last checkpoint (in no
 * particular order); stops at the first non-zero return. */
int st_pack_dirty_each(struct store *s, int (*fn)(void *arg, uint64_t pg), void *arg)
{
	int r = 0;
	for (size_t i = 0; i < s->kdirty.cap && r == 0; i++)
		if (s->kdirty.pg[i])
			r = fn(arg, s->kdirty.pg[i]);
	return r;
}

/* FORMAT 5 loads the pack table in the background (store_nstree.c
 * "DEMAND LOADS"): before a page's count changes it is read from the pack
 * tree if the table does not know it. The tree holds the last checkpoint's
 * counts; a page whose count changed since is in kdirty, and the table
 * (where it is, or is not any more: 0) is right about it. Counts only
 * read (st_pack_live_get) wait for the load: cleaning and the stranded
 * pages' search use them once it is complete. */
bool st_pack_known(const struct store *s, uint64_t pg)
{
	if (s->packs.cap && s->packs.pg[ptab_slot(&s->packs, pg)])
		return true;
	return s->kdirty.cap && s->kdirty.pg[ptab_slot(&s->kdirty, pg)];
}

int st_pack_fetch(struct store *s, uint64_t pg)
{
	if (s->pk_done || !pg || st_pack_known(s, pg))
		return 0;
	if (s->kdirty_all)
		return -ENOMEM; /* the marks overflowed: which pages changed is not known */
	return st_pack_tree_get(s, pg);
}

/* n more live bytes of pack page pg in the table (inserted if missing;
 * -EEXIST if it must be new and is not). Marks nothing. */
static int packs_add(struct store *s, uint64_t pg, uint32_t n, bool must_be_new)
{
	if ((s->packs.n + 1) * 4 > s->packs.cap * 3 && ptab_grow(&s->packs) < 0)
		return -ENOMEM;
	size_t i = ptab_slot(&s->packs, pg);
	if (!s->packs.pg[i]) {
		s->packs.pg[i] = pg;
		s->packs.n++;
	} else if (must_be_new) {
		return -EEXIST;
	}
	s->packs.live[i] += n;
	st_set_u64(&s->pack_live, s->pack_live + n);
	pack_mirror(s);
	return 0;
}

int st_pack_put_loaded(struct store *s, uint64_t pg, uint32_t live) { return packs_add(s, pg, live, true); }

uint32_t st_pack_live_get(const struct store *s, uint64_t pg)
{
	if (!s->packs.cap || !pg)
		return 0;
	size_t i = ptab_slot(&s->packs, pg);
	return s->packs.pg[i] ? s->packs.live[i] : 0;
}

/* n more frame bytes of pack page pg are named by an index entry. */
int st_pack_live_add(struct store *s, uint64_t pg, uint32_t n)
{
	int r = st_pack_fetch(s, pg);
	if (r == 0)
		r = packs_add(s, pg, n, false);
	if (r == 0)
		pack_dirty(s, pg);
	return r;
}

/* Pack page pg stops being referenced: pending (mutant free_early: free
 * at once, like a chunk's extent; the crash tests must catch it). */
static int pack_release(struct store *s, uint64_t pg)
{
	if (st_mutant() == STORE_MUTANT_FREE_EARLY)
		return fm_add(&s->free, pg, 1);
	return st_release(s, pg, 1);
}

/* The commit thread is the only writer of open_pgno; it reads it here
 * from paths that may not hold s->lock (release_dead_chains). */
static uint64_t open_pack_page(const struct store *s) NO_TSA { return s->open_pgno; }

/* A packed frame of frame_len bytes in pg is no longer named: its live
 * bytes drop; a page reaching 0 that is not the open pack page is
 * released (the open one is, when it closes: st_pack_closed). */
static int pack_live_sub(struct store *s, uint64_t pg, uint32_t n)
{
	int r = st_pack_fetch(s, pg);
	if (r < 0)
		return r;
	size_t i = s->packs.cap ? ptab_slot(&s->packs, pg) : 0;

	if (!s->packs.cap || !s->packs.pg[i] || s->packs.live[i] < n) {
		bz_err("store: pack page %llu: releasing %u live bytes it does not hold", (unsigned long long)pg, n);
		r = -EIO;
		goto out;
	}
	s->packs.live[i] -= n;
	st_set_u64(&s->pack_live, s->pack_live - n);
	pack_dirty(s, pg);
	if (s->packs.live[i] && s->packs.live[i] < PAGER_PAYLOAD / 2)
		s->clean_due = true;
	if (s->packs.live[i] || pg == open_pack_page(s))
		goto out;
	ptab_del(&s->packs, i);
	r = pack_release(s, pg);
out:
	pack_mirror(s);
	return r;
}

/* The pack page pg was closed (sealed): released if nothing names it. */
int st_pack_closed(struct store *s, uint64_t pg)
{
	int r = st_pack_fetch(s, pg);
	if (r < 0)
		return r;
	if (st_pack_live_get(s, pg))
		goto out;
	if (s->packs.cap) {
		size_t i = ptab_slot(&s->packs, pg);
		if (s->packs.pg[i]) {
			ptab_del(&s->packs, i);
			pack_dirty(s, pg);
		}
	}
	r = pack_release(s, pg);
out:
	pack_mirror(s);
	return r;
}

/* Releases what one index entry owns: its extent, its share of a pack
 * page (the page goes when no entry names it any more), or both (split). */
int st_release_entry(struct store *s, const struct ient *e)
{
	int r = 0;

	if (!e->npages) {
		r = pack_live_sub(s, e->page, e->frame_len);
		goto out;
	}
	if (!st_entry_ok(e)) {
		bz_err("store: index entry at offset %llu names %u pages at %llu (+%u bytes in %llu) for a %u-byte frame: "
		       "not released",
		       (unsigned long long)e->off, e->npages, (unsigned long long)e->page, ient_frag_len(e),
		       (unsigned long long)e->tpage, e->frame_len);
		r = -EIO;
		goto out;
	}
	if (e->tpage)
		r = pack_live_sub(s, e->tpage, ient_frag_len(e));
	if (r < 0)
		goto out;
	/* mutant free_early: a chunk's extent is free at once, not pending
	 * until the next superblock is durable (the crash tests must catch it) */
	if (st_mutant() == STORE_MUTANT_FREE_EARLY)
		r = fm_add(&s->free, e->page, e->npages);
	else
		r = st_release(s, e->page, e->npages);
out:
	return r;
}

static void index_entry_encode(uint8_t *p, const struct ient *e)
{
	bz_put_le64(p + 0, e->off);
	bz_put_le64(p + 8, e->page);
	bz_put_le32(p + 16, e->raw_len);
	bz_put_le32(p + 20, e->frame_len);
	bz_put_le32(p + 24, e->npages);
	bz_put_le32(p + 28, e->pg_off);
	bz_put_le64(p + 32, e->tpage);
}

void st_index_entry_decode(const uint8_t *p, struct ient *e)
{
	e->off = bz_get_le64(p + 0);
	e->page = bz_get_le64(p + 8);
	e->raw_len = bz_get_le32(p + 16);
	e->frame_len = bz_get_le32(p + 20);
	e->npages = bz_get_le32(p + 24);
	e->pg_off = bz_get_le32(p + 28);
	e->tpage = bz_get_le64(p + 32);
}

/* ------------------------------------------------------------------ */
/* data stream [commit, s->lock exclusive]                              */

/* Writes the run of full pack pages (one pwrite). */
int st_run_flush(struct store *s) REQUIRES(store_cap)
{
	int r = 0;
	if (s->run_n) {
		r = pager_write_run(s->pager, s->run_first, s->run_n, s->run);
		if (r == 0)
			s->run_n = 0;
	}
	return r;
}

/* Seals the open pack page and queues it in the run of pages to write
 * (consecutive page numbers, up to RUN_PAGES; written before any
 * checkpoint). Readers find queued pages in the run. */
int st_data_page_flush(struct store *s, uint64_t next) REQUIRES(store_cap)
{
	struct pager_hdr h = {
		.type = PAGER_PACK, .pgno = s->open_pgno, .lsn = s->open_lsn, .next = next, .used = s->open_used,
	};
	int r = 0;

	pager_seal(s->open_page, &h);
	if (s->run_n && (s->run_n == RUN_PAGES || s->open_pgno != s->run_first + s->run_n))
		r = st_run_flush(s);
	if (r < 0)
		return r;
	if (!s->run_n)
		s->run_first = s->open_pgno;
	memcpy(s->run + (size_t)s->run_n * PAGER_PAGE_SIZE, s->open_page, PAGER_PAGE_SIZE);
	s->run_n++;
	st_set_u64(&s->data_pages, s->data_pages + 1);
	return 0;
}

/* Packs one frame of at most PAGER_PAYLOAD bytes (or a split chunk's
 * fragment: split) into the open pack page (closing it first if it does not
 * fit in its room); fills in where it went (page, pg_off). */
static int pack_append(struct store *s, uint64_t lsn, const uint8_t *frame, size_t len, struct ient *e, bool split)
	REQUIRES(store_cap)
{
	int r = 0;

	if (s->open_pgno && s->open_used + len > PAGER_PAYLOAD) {
		uint64_t pg = s->open_pgno;
		r = st_data_page_flush(s, 0);
		s->open_pgno = 0;
		if (r == 0)
			r = st_pack_closed(s, pg);
		if (r < 0)
			goto out;
	}
	if (!s->open_pgno) {
		s->open_pgno = st_page_alloc(s);
		s->open_used = 0;
		memset(s->open_page, 0, PAGER_PAGE_SIZE);
	}
	e->page = s->open_pgno;
	e->pg_off = s->open_used;
	e->npages = 0;
	e->tpage = 0;
	memcpy(s->open_page + PAGER_HDR_SIZE + s->open_used, frame, len);
	s->open_used += (uint32_t)len;
	s->open_lsn = lsn;
	/* mutant split_uncounted: a split chunk's fragment is packed but not
	 * counted in its page's live bytes (the page can go while named) */
	if (st_mutant() == STORE_MUTANT_SPLIT_UNCOUNTED && split)
		goto flush;
	r = st_pack_live_add(s, e->page, (uint32_t)len);
	if (r < 0)
		goto out;
flush:
	if (s->open_used == PAGER_PAYLOAD) {
		r = st_data_page_flush(s, 0);
		s->open_pgno = 0;
	}
out:
	return r;
}

/* Writes len bytes of a frame (all of it, or a split chunk's full pages)
 * as an extent of its own: consecutive pages, the bytes from payload offset
 * 0, next = pgno+1 while they continue; one pwrite. Fills in e->page and
 * e->npages only. The page run is built in a pooled buffer
 * (bufpool.c): a fresh calloc of each chunk's pages was mapped and faulted
 * in on the commit thread (perf of fio's 1 MiB random writer: 28 % of the
 * daemon's samples in those faults). Every byte of it is written: the
 * headers by pager_seal, the payload, and zeros after the last page's. */
int st_extent_write(struct store *s, uint64_t lsn, const uint8_t *frame, size_t len, struct ient *e)
{
	uint32_t n = (uint32_t)((len + PAGER_PAYLOAD - 1) / PAGER_PAYLOAD);
	size_t cap = 0;
	uint8_t *buf = bp_get((size_t)n * PAGER_PAGE_SIZE, &cap);
	int r = -ENOMEM;

	if (!buf)
		goto out;
	uint64_t first = st_extent_alloc(s, n);
	for (uint32_t i = 0; i < n; i++) {
		size_t at = (size_t)i * PAGER_PAYLOAD, k = BZ_MIN(len - at, (size_t)PAGER_PAYLOAD);
		uint8_t *pg = buf + (size_t)i * PAGER_PAGE_SIZE;
		struct pager_hdr h = {
			.type = PAGER_DATA, .pgno = first + i, .lsn = lsn, .next = i + 1 < n ? first + i + 1 : 0,
			.used = (uint32_t)k,
		};
		memcpy(pg + PAGER_HDR_SIZE, frame + at, k);
		memset(pg + PAGER_HDR_SIZE + k, 0, PAGER_PAYLOAD - k);
		pager_seal(pg, &h);
	}
	r = pager_write_run(s->pager, first, n, buf);
	if (r < 0)
		goto out;
	st_set_u64(&s->data_pages, s->data_pages + n);
	e->page = first;
	e->npages = n;
out:
	bp_put(buf, cap);
	return r;
}

/* Stores one chunk frame: packed (at most PAGER_PAYLOAD bytes), as its own
 * extent, or SPLIT (format 6): when the extent's last page would hold at
 * most SPLIT_MAX bytes, that fragment is packed instead and the extent
 * keeps only full pages. A 6 KB small file takes one page and a share of
 * another, not two. The fragment is split off only when that wastes less:
 * it fits in the open pack page's room, or closing the open page leaves
 * less room unused than the extent's last page would. Incompressible
 * 256 KiB chunks (3,094 bytes left over) stay whole extents and read with
 * no second page. */
int st_chunk_store(struct store *s, uint64_t lsn, const uint8_t *frame, size_t len, struct ient *e)
	REQUIRES(store_cap)
{
	size_t frag = len % PAGER_PAYLOAD, room = s->open_pgno ? PAGER_PAYLOAD - s->open_used : 0;
	struct ient t;
	int r;

	if (len <= PAGER_PAYLOAD)
		return pack_append(s, lsn, frame, len, e, false);
	e->pg_off = 0;
	e->tpage = 0;
	if (!frag || frag > SPLIT_MAX || (frag > room && room >= PAGER_PAYLOAD - frag))
		return st_extent_write(s, lsn, frame, len, e);
	r = st_extent_write(s, lsn, frame, len - frag, e);
	if (r < 0)
		goto out;
	r = pack_append(s, lsn, frame + len - frag, frag, &t, true);
	if (r < 0) {
		st_release(s, e->page, e->npages); /* named by nothing: pending, as if never written */
		goto out;
	}
	e->tpage = t.page;
	e->pg_off = t.pg_off;
	st_set_u64(&s->chunks_split, s->chunks_split + 1);
out:
	return r;
}

/* ------------------------------------------------------------------ */
/* pack page cleaning [commit, s->lock exclusive, at a checkpoint]     */

/* Packs split chunk e's fragment (its bytes: frag) again into the open pack
 * page; the old page loses them. e is updated (tpage, pg_off). */
int st_frag_move(struct store *s, uint64_t lsn, struct ient *e, const uint8_t *frag) REQUIRES(store_cap)
{
	struct ient t;
	int r = pack_append(s, lsn, frag, ient_frag_len(e), &t, true);

	if (r == 0)
		r = pack_live_sub(s, e->tpage, ient_frag_len(e));
	if (r == 0) {
		e->tpage = t.page;
		e->pg_off = t.pg_off;
	}
	return r;
}

/* Moves one inline-tail entry's packed frame, or a split chunk's fragment,
 * into the open pack page (the same bytes; the entry is updated); its old
 * page loses the bytes. */
int st_clean_move(struct store *s, uint64_t lsn, uint64_t ino, struct ient *e, struct rctx *x)
	REQUIRES(store_cap)
{
	ns_dirty_mark(s->ns, ino); /* its checkpointed state changes (ns_dirty) */
	struct rec_hdr h;
	const uint8_t *payload;
	struct ient ne = *e;
	int r = st_frame_read_checked(s, ino, e, x, &h, &payload);

	if (r < 0) {
		bz_err("store: cleaning pack page %llu: the frame of inode %llu at offset %llu is unreadable (%s)",
		       (unsigned long long)(e->tpage ? e->tpage : e->page), (unsigned long long)ino, (unsigned long long)e->off, strerror(-r));
		r = -EIO;
		goto out;
	}
	if (e->tpage) {
		r = st_frag_move(s, lsn, &ne, x->frame + ient_ext_len(e));
	} else {
		r = pack_append(s, lsn, x->frame, e->frame_len, &ne, false);
		if (r == 0)
			r = pack_live_sub(s, e->page, e->frame_len);
	}
	if (r < 0)
		goto out;
	*e = ne;
out:
	return r;
}

static bool in_vec(const struct u64vec *v, uint64_t x)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->v[i] == x)
			return true;
	return false;
}

/* STRANDED pack pages: the live pack pages just below the space at the end
 * of store.db that is free, pending, the durable namespace chain or a
 * namespace tree's root (which the checkpoint rewrites lower), from the top down, while free space lies
 * below them: moving their frames lower lets a checkpoint give the end of
 * store.db back (a small file's tail written after a large file that was
 * then deleted). Stops at any other page, and at the page cleaning last
 * found it could not move (s->strand_stuck). [commit] */
size_t st_pack_stranded(const struct store *s, uint64_t *ret, size_t max) NO_TSA
{
	uint64_t c = fm_union_tail(&s->free, &s->pending, s->hwm);
	size_t n = 0;

	while (n < max && c > 2) {
		uint64_t p = c - 1;
		if (in_vec(&s->chain, p) || p == s->sb.ino_root || p == s->sb.dent_root || p == s->sb.pack_root ||
		    fm_contains(&s->free, p) ||
		    fm_contains(&s->pending, p)) {
			c = p;
			continue;
		}
		if (p == s->open_pgno || p == s->strand_stuck || !st_pack_live_get(s, p) || !s->free.n ||
		    s->free.v[0].start >= p)
			break;
		ret[n++] = p;
		c = p;
	}
	return n;
}

static bool in_list(const uint64_t *v, size_t n, uint64_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

/* Whether some pack page other than the open one has live bytes under
 * half a page payload: a pass over the pack table, not over the files. */
static bool any_under_half(const struct store *s) NO_TSA
{
	for (size_t i = 0; i < s->packs.cap; i++)
		if (s->packs.pg[i] && s->packs.pg[i] != s->open_pgno && s->packs.live[i] < PAGER_PAYLOAD / 2)
			return true;
	return false;
}

/* CLEANING: up to PACK_CLEAN_MAX pack pages whose live bytes are under half
 * a page payload and whose live frames are all named by inline tail entries
 * (entries of full index pages are write-once and cannot move) have those
 * frames copied into the open pack page; the old pages reach 0 live bytes
 * and go to pending. Called before the checkpoint seals the open page, so
 * the copies are durable before the superblock that stops naming the old
 * pages. Costs one pass over every file's tail entries, only when
 * cleaning is due (a page fell under half live, or the last cleaning hit
 * its bound) or a page is stranded. */
int st_pack_clean(struct store *s, uint64_t lsn) REQUIRES(store_cap)
{
	struct ptab tb = {0};
	uint64_t pick[PACK_CLEAN_MAX], strand[PACK_CLEAN_MAX];
	size_t n_pick = 0, n_strand = st_pack_stranded(s, strand, PACK_CLEAN_MAX);
	struct rctx *x = NULL;
	int r = 0;

	/* The pass below must see every file naming a page (a page is picked
	 * only when the tails seen account for all its live bytes, so a part
	 * would be safe, but a part finds nothing and would clear clean_due):
	 * not before the namespace is loaded whole (format 5: in the
	 * background after open); clean_due waits meanwhile. */
	if (!store_ns_loaded(s))
		goto out;
	if (!s->packs.n) {
		s->clean_due = false;
		goto out;
	}
	/* Nothing fell under half live since the last cleaning, which did not
	 * hit its bound, and nothing is stranded: no page can qualify, and
	 * the pass over every file's tail entries below is skipped (a
	 * checkpoint costs what changed, FORMAT.md §8). */
	if (!s->clean_due && !n_strand)
		goto out;
	/* No page is under half live (the first checkpoint after open, when
	 * nothing was deleted): skip the pass over every file's tails too. */
	if (!n_strand && !any_under_half(s)) {
		s->clean_due = false;
		goto out;
	}
	/* tail bytes per candidate page */
	for (size_t i = 0; i < s->files.cap && r == 0; i++) {
		const struct sfile *f = s->files.slot[i];
		for (uint32_t k = 0; f && k <= f->n_tail && r == 0; k++) {
			const struct ient *e = k < f->n_tail ? &f->tail[k] : f->has_otail ? &f->otail : NULL;
			uint64_t pg = e ? ient_pack_page(e) : 0;
			if (!pg || pg == s->open_pgno ||
			    (st_pack_live_get(s, pg) >= PAGER_PAYLOAD / 2 && !in_list(strand, n_strand, pg)))
				continue;
			if ((tb.n + 1) * 4 > tb.cap * 3 && ptab_grow(&tb) < 0) {
				r = -ENOMEM;
				break;
			}
			size_t j = ptab_slot(&tb, pg);
			if (!tb.pg[j]) {
				tb.pg[j] = pg;
				tb.n++;
			}
			tb.live[j] += ient_pack_len(e);
		}
	}
	if (r == 0 && !tb.n)
		s->clean_due = false;
	if (r < 0 || !tb.n)
		goto out;
	x = calloc(1, sizeof(*x));
	if (!x) {
		r = -ENOMEM;
		goto out;
	}
	/* the pages whose live frames are all in tails and under half of
	 * the page's used bytes (a page just filled is never moved again),
	 * or stranded at the end of store.db */
	for (size_t j = 0; j < tb.cap && n_pick < PACK_CLEAN_MAX; j++) {
		const uint8_t *src;
		struct pager_hdr h;
		if (!tb.pg[j] || tb.live[j] != st_pack_live_get(s, tb.pg[j]))
			continue;
		bool stranded = in_list(strand, n_strand, tb.pg[j]);
		if (st_data_page_src(s, tb.pg[j], PAGER_PACK, x, &src, &h) < 0 || (tb.live[j] * 2 >= h.used && !stranded))
			continue; /* unreadable: its frames stay (a read reports them) */
		pick[n_pick++] = tb.pg[j];
	}
	/* a stranded page whose frames are not all inline (named by a full
	 * index page) cannot move: not again until the store changes */
	for (size_t q = 0; q < n_strand; q++)
		if (!in_list(pick, n_pick, strand[q]))
			s->strand_stuck = strand[q];
	for (size_t i = 0; i < s->files.cap && r == 0; i++) {
		struct sfile *f = s->files.slot[i];
		for (uint32_t k = 0; f && k <= f->n_tail && r == 0; k++) {
			struct ient *e = k < f->n_tail ? &f->tail[k] : f->has_otail ? &f->otail : NULL;
			bool moved = false;
			uint64_t pg = e ? ient_pack_page(e) : 0;
			for (size_t q = 0; pg && q < n_pick && !moved; q++)
				if (pg == pick[q]) {
					r = st_clean_move(s, lsn, f->ino, e, x);
					moved = true;
				}
		}
	}
	if (r == 0)
		st_set_u64(&s->pages_cleaned, s->pages_cleaned + n_pick);
	/* more may wait (the bound was reached): the next checkpoint goes on */
	s->clean_due = r == 0 && n_pick == PACK_CLEAN_MAX;
out:
	st_rctx_free(x);
	st_ptab_free(&tb);
	return r;
}

/* Drops a file's loaded full entries (they reload lazily from its chain). */
void st_sfile_unload(struct store *s, struct sfile *f) REQUIRES(store_cap)
{
	if (!f->loaded || !f->n_full)
		return;
	s->loaded_entries -= BZ_MIN(s->loaded_entries, f->n_full);
	free(f->full);
	f->full = NULL;
	f->loaded = false;
}

/* Writes n (<= IDX_PER_PAGE) entries as a new INDEX page whose next is
 * `next`; returns its number in *ret_pg. */
int st_index_page_write(struct store *s, uint64_t lsn, const struct ient *e, uint32_t n, uint64_t next,
			uint64_t *ret_pg)
{
	uint8_t page[PAGER_PAGE_SIZE];
	uint64_t pg = st_page_alloc(s);
	int r;

	memset(page, 0, sizeof(page));
	for (uint32_t i = 0; i < n; i++)
		index_entry_encode(page + PAGER_HDR_SIZE + i * IDX_ENTRY_SIZE, &e[i]);
	struct pager_hdr h = {
		.type = PAGER_INDEX, .pgno = pg, .lsn = lsn, .next = next, .used = n * IDX_ENTRY_SIZE,
	};
	pager_seal(page, &h);
	r = pager_write(s->pager, pg, page);
	if (r == 0)
		*ret_pg = pg;
	return r;
}

/* Adds an index entry; writes a full INDEX page when the tail fills. */
int st_index_add(struct store *s, struct sfile *f, uint64_t lsn, const struct ient *e) REQUIRES(store_cap)
{
	uint64_t pg = 0;
	int r = st_sfile_tail_push(f, e);

	if (r < 0 || f->n_tail < IDX_PER_PAGE)
		goto out;
	r = st_index_page_write(s, lsn, f->tail, f->n_tail, f->last_full, &pg);
	if (r < 0)
		goto out;
	if (f->loaded) {
		struct ient *full = realloc(f->full, (f->n_full + f->n_tail) * sizeof(*full));
		if (!full) {
			/* The page is written: keep going unloaded (reloads lazily). */
			st_sfile_unload(s, f);
			free(f->full);
			f->full = NULL;
			f->loaded = false;
		} else {
			if (f->n_tail) /* memcpy from a NULL tail is undefined even for 0 bytes */
				memcpy(full + f->n_full, f->tail, f->n_tail * sizeof(*full));
			f->full = full;
			s->loaded_entries += f->n_tail;
		}
	}
	f->n_full += f->n_tail;
	if (f->loaded && s->loaded_entries > s->index_budget)
		st_sfile_unload(s, f); /* a writer needs no full index; readers reload it */
	f->last_full = pg;
	f->n_tail = 0;
out:
	return r;
}

/* ------------------------------------------------------------------ */
/* applying batches                                                    */

/* The last link of a file went: its tail entries' extents are released
 * now, its index chain (and the extents its pages name) at the next
 * checkpoint (store_ckpt.c: reading pages does not belong in an apply). */
static int file_drop(struct store *s, uint64_t ino) REQUIRES(store_cap)
{
	struct sfile *f = st_ftab_get(&s->files, ino);
	int r = 0;

	if (!f)
		goto out;
	s->drops++;
	s->stored_bytes -= f->stored_bytes;
	s->logical_bytes -= f->raw_bytes;
	st_set_u64(&s->dead_bytes, s->dead_bytes + f->stored_bytes);
	st_sfile_unload(s, f);
	for (uint32_t i = 0; i < f->n_tail && r == 0; i++)
		r = st_release_entry(s, &f->tail[i]);
	if (r == 0)
		r = st_oc_drop(s, f);
	if (f->last_full && st_vec_push(&s->dead, f->last_full) < 0)
		bz_warn("store: out of memory: index pages of inode %llu leak", (unsigned long long)ino);
	ftab_del(&s->files, ino);
	st_sfile_free(f);
out:
	return r;
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
		r = file_drop(s, victim);
	/* The stream grows by at most one inode record and one entry per op,
	 * both shorter than the op's payload plus NS_GROWTH_OP (see
	 * store_space_need); removals are not subtracted until a checkpoint
	 * measures the stream again. */
	if (op.kind != NS_UNLINK && op.kind != NS_RMDIR && op.kind != NS_SETATTR)
		st_set_u64(&s->ns_est, st_get_u64(&s->ns_est) + h->raw_len + NS_GROWTH_OP);
out:
	free(raw);
	return r;
}

static int apply_data(struct store *s, uint64_t lsn, int64_t time_ns, const struct rec_hdr *h, const uint8_t *frame,
		      size_t frame_len, const uint8_t *payload) REQUIRES(store_cap)
{
	struct ns_attr a;
	struct sfile *f;
	int r;

	r = ns_getattr(s->ns, h->ino, &a);
	if (r < 0 || !S_ISREG(a.mode) || a.size != h->off || h->raw_len == 0 || h->off + h->raw_len < h->off) {
		bz_debug("store: data record ino %llu off %llu dropped (inode %s, size %llu)",
			 (unsigned long long)h->ino, (unsigned long long)h->off, r < 0 ? "gone" : "present",
			 (unsigned long long)(r < 0 ? 0 : a.size));
		return 0;
	}
	/* its 'F' state and size change: the file is marked dirty once, by
	 * the ns_set_size every applied record ends with (ns.c); st_oc_append,
	 * st_oc_seal, st_index_add and the helpers they call mark nothing */
	f = st_ftab_get(&s->files, h->ino);
	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f)
			return -ENOMEM;
		f->ino = h->ino;
		f->loaded = true;
		f->ostart = h->off;
		r = st_ftab_put(&s->files, f);
		if (r < 0) {
			st_sfile_free(f);
			return r;
		}
	}
	if (h->codec == REC_HOLE) {
		/* a gap: the open chunk is sealed, nothing stored, no entry */
		r = st_oc_seal(s, f, lsn);
		if (r < 0)
			return r;
		f->ostart = h->off + h->raw_len;
		goto size;
	}
	r = st_oc_append(s, f, lsn, h, frame, frame_len, payload);
	if (r < 0)
		return r;
	f->raw_bytes += h->raw_len;
	st_set_u64(&s->ns_est, st_get_u64(&s->ns_est) + NS_GROWTH_RECORD);
	s->logical_bytes += h->raw_len;
size:
	r = ns_set_size(s->ns, h->ino, h->off + h->raw_len, time_ns);
	if (NEVER(r < 0))
		return -EIO;
	return 0;
}

int st_apply_batch(struct store *s, uint64_t lsn, int64_t time_ns, const uint8_t *frames, size_t len)
{
	size_t pos = 0;
	int r = 0;

	if (lsn != s->last_applied + 1) {
		bz_err("store: batch lsn %llu applied out of order (last applied %llu)", (unsigned long long)lsn,
		       (unsigned long long)s->last_applied);
		return s->replaying ? -EUCLEAN : -EINVAL;
	}
	s->dirty = true;
	s->strand_stuck = 0; /* the store changes: a stuck page may move now */
	s->reloc_stuck = false; /* and so may a file's chunks (store_reloc.c) */
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
			r = apply_data(s, lsn, time_ns, &h, frames + pos, flen, payload);
		if (r < 0)
			break;
		pos += flen;
	}
	st_nst_estimate(s);
	bz_cap_wrunlock(&s->lock, &store_cap);
	if (r < 0)
		return st_set_error(s, r, "apply");
	st_set_u64(&s->last_applied, lsn);
	return 0;
}
