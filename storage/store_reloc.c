/* store_reloc.c — moving live chunks off the end of store.db, so that the
 * space deleted files leave below them can be given back to the disk.
 * Format: nothing new (docs/FORMAT.md §7 "Relocation"): a moved chunk is
 * the same frame in new pages; a rewritten index chain is new INDEX pages.
 *
 * WHY. A rotating log writes file k+1 while file k still exists, then
 * deletes file k-1: the new file fills the hole of the old one (first fit)
 * or, when there is none, the end of store.db; after the delete the live
 * file can sit at the end with the free space below it, and store.db stays
 * at two files' size. Each checkpoint (step 1, s->lock exclusive, commit
 * thread) therefore moves the extents of the file that reaches highest in
 * store.db into free space lower down, when there is such space for them.
 *
 * WHAT MOVES. One file per checkpoint, at most RELOC_MAX_BYTES of frames
 * (a split chunk moves its full pages; its packed fragment stays):
 * the file whose in-memory index (tail entries, open chunk's tail, newest
 * index page, and full entries if loaded) names the highest EXTENT or index
 * page at or above the first free page (packed chunks do not count: they
 * move only by cleaning). Its full entries are loaded (index pages read under
 * the lock: one per 101 chunks), each EXTENT chunk whose pages lie above a
 * free extent that first fit would give it is read (every page checked, and
 * the frame's header against the entry) and written there; the old pages
 * are released (pending until the next durable superblock, like every
 * release). Packed chunks are cleaning's business (store_data.c). If any
 * entry of a full index page moved, or its newest index page stands above a
 * free page, the whole chain is rewritten: new INDEX
 * pages in first-fit order, the old ones released; sfile.chain_gen tells a
 * reader that loaded the old chain without the lock to load it again.
 *
 * CRASH. The new pages are written before the checkpoint's fsync (step 4)
 * and named only by the stream of the superblock written after it; the old
 * ones stay untouched until that superblock is durable. A crash anywhere
 * recovers the old placement or the new one, never a mix.
 *
 * COST. Bounded per checkpoint (RELOC_MAX_BYTES read and written under the
 * exclusive lock). When nothing could move, s->reloc_stuck stops the
 * checks until the store changes (st_apply_batch clears it) or pages
 * become free (checkpoint step 6).
 */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

#define RELOC_MAX_BYTES (16u << 20)

/* The highest page of entry e that relocation can move (an extent's last
 * page, or a split chunk's fragment page if higher), else 0: a packed chunk
 * shares its page with other files' and moves only by cleaning
 * (store_data.c). */
static uint64_t ent_top(const struct ient *e)
{
	return e->npages ? BZ_MAX(e->page + e->npages - 1, e->tpage) : 0;
}

/* The highest page f's in-memory index names that relocation could move:
 * its extents and its index chain (0 = none). A file of packed tails only
 * (every small file) is never a candidate: picking it would move nothing,
 * every checkpoint, and keep store_close checkpointing. */
static uint64_t file_top(const struct sfile *f) NO_TSA
{
	uint64_t top = f->last_full;

	for (uint32_t i = 0; i < f->n_tail; i++)
		top = BZ_MAX(top, ent_top(&f->tail[i]));
	if (f->has_otail)
		top = BZ_MAX(top, ent_top(&f->otail));
	for (uint64_t i = 0; f->loaded && i < f->n_full; i++)
		top = BZ_MAX(top, ent_top(&f->full[i]));
	return top;
}

/* Whether first fit gives n pages that start below `below`. */
static bool fits_below(const struct freemap *m, uint64_t n, uint64_t below)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].len >= n)
			return m->v[i].start < below;
	return false;
}

/* THE CANDIDATE HEAP. Finding the file with the highest top means a pass
 * over every file; a checkpoint must cost what changed (FORMAT.md §8), so
 * pick() keeps a max-heap of (top, inode) (s->rheap) fed from the
 * namespace's dirty inodes, which include every file whose placement
 * changed since the last checkpoint (the store marks them: ns_dirty_mark
 * in the index, tail, cleaning and relocation paths; a deleted file's inode
 * is marked by its unlink). Entries go stale (a file moved, went away, or
 * was pushed again); the heap's head is checked against the file's current
 * top and re-pushed or dropped until it is current. st_reloc_fold runs
 * just before a checkpoint clears the dirty sets. The load at open seeds
 * the heap (st_reloc_seed, st_reloc_note); a full pass rebuilds it at the
 * first pick of a store opened without the trees (format 2), when the
 * dirty sets overflowed, and when stale entries outnumber the files. A reader that loads a file's full entries
 * changes that file's top without a mark: the heap sees it when the entry
 * surfaces or at the next rebuild (the choice of what to move is a
 * heuristic; a move checks everything it moves). [commit] */
static int rheap_push(struct store *s, uint64_t top, uint64_t ino)
{
	if (s->rheap_n == s->rheap_cap) {
		size_t cap = s->rheap_cap ? s->rheap_cap * 2 : 64;
		struct rheap_ent *v = realloc(s->rheap, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->rheap = v;
		s->rheap_cap = cap;
	}
	size_t i = s->rheap_n++;
	while (i > 0 && s->rheap[(i - 1) / 2].top < top) {
		s->rheap[i] = s->rheap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->rheap[i] = (struct rheap_ent){top, ino};
	return 0;
}

static void rheap_pop(struct store *s)
{
	struct rheap_ent last = s->rheap[--s->rheap_n];
	size_t i = 0, n = s->rheap_n;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && s->rheap[c + 1].top > s->rheap[c].top)
			c++;
		if (s->rheap[c].top <= last.top)
			break;
		s->rheap[i] = s->rheap[c];
		i = c;
	}
	if (n)
		s->rheap[i] = last;
}

static int fold_cb(void *arg, uint64_t ino) NO_TSA
{
	struct store *s = arg;
	const struct sfile *f = st_ftab_get(&s->files, ino);
	uint64_t t = f ? file_top(f) : 0;

	if (t && rheap_push(s, t, ino) < 0)
		s->reloc_valid = false; /* rebuilt at the next pick */
	return 0;
}

void st_reloc_fold(struct store *s) NO_TSA
{
	if (s->reloc_valid && (ns_dirty_all(s->ns) || s->rheap_n > 2 * s->files.n + 1024))
		s->reloc_valid = false;
	if (s->reloc_valid)
		(void)ns_dirty_each_ino(s->ns, fold_cb, s);
}

/* The file to move: the highest top, if at or above the first free page. */
static struct sfile *pick(const struct store *cs) NO_TSA
{
	struct store *s = (struct store *)cs; /* the heap is [commit] state */
	struct sfile *f = NULL;

	/* the highest file among all of them: not before the namespace is
	 * loaded whole (format 5 loads it in the background after open) */
	if (!s->free.n || !store_ns_loaded(s))
		return NULL;
	st_reloc_fold(s);
	if (!s->reloc_valid) {
		s->rheap_n = 0;
		s->reloc_valid = true;
		for (size_t i = 0; i < s->files.cap && s->reloc_valid; i++) {
			f = s->files.slot[i];
			uint64_t top = f ? file_top(f) : 0;
			if (top && rheap_push(s, top, f->ino) < 0)
				s->reloc_valid = false;
		}
		if (!s->reloc_valid)
			return NULL; /* out of memory: nothing moves this time */
	}
	while (s->rheap_n) {
		struct rheap_ent h = s->rheap[0];
		f = st_ftab_get(&s->files, h.ino);
		uint64_t cur = f ? file_top(f) : 0;
		if (cur == h.top)
			return h.top >= s->free.v[0].start ? f : NULL;
		rheap_pop(s); /* stale: the file went away or moved */
		if (cur && rheap_push(s, cur, h.ino) < 0) {
			s->reloc_valid = false;
			return NULL;
		}
	}
	return NULL;
}

/* Open (st_nst_load, before any other thread): the heap is built as the
 * load meets each file (st_reloc_note), so the first pick after open needs
 * no pass over every file of its own (a store of 1 M small files: 180 ms
 * of the checkpoint at open). st_reloc_seed starts it, empty and valid. */
void st_reloc_seed(struct store *s) NO_TSA
{
	s->rheap_n = 0;
	s->reloc_valid = true;
}

void st_reloc_note(struct store *s, const struct sfile *f) NO_TSA
{
	uint64_t t = file_top(f);

	if (t && s->reloc_valid && rheap_push(s, t, f->ino) < 0)
		s->reloc_valid = false; /* out of memory: the first pick rebuilds it */
}

bool st_reloc_due(const struct store *s) NO_TSA
{
	return !s->reloc_stuck && !s->read_only && pick(s) != NULL;
}

/* Whether split chunk e's fragment would land lower if packed again: in
 * the open pack page if it fits there, else in the free page first fit
 * gives (never at the high-water mark: relocation writes into free pages
 * only, FORMAT.md §7). */
static bool frag_lower(const struct store *s, const struct ient *e) NO_TSA
{
	if (!e->tpage)
		return false;
	if (s->open_pgno && ient_frag_len(e) <= PAGER_PAYLOAD - s->open_used)
		return s->open_pgno < e->tpage;
	return fits_below(&s->free, 1, e->tpage);
}

/* Moves one extent chunk to a lower first fit, and a split chunk's
 * fragment to the open pack page when that is lower; *moved when either
 * did. */
static int move_extent(struct store *s, uint64_t lsn, uint64_t ino, struct ient *e, struct rctx *x, bool *moved)
	REQUIRES(store_cap)
{
	ns_dirty_mark(s->ns, ino); /* its checkpointed state changes (ns_dirty) */
	struct rec_hdr h;
	const uint8_t *payload;
	struct ient ne = *e;
	bool ext = e->npages && fits_below(&s->free, e->npages, e->page);
	bool frag = e->npages && frag_lower(s, e);
	int r = 0;

	*moved = false;
	if (!ext && !frag)
		goto out;
	r = st_frame_read_checked(s, ino, e, x, &h, &payload);
	if (r < 0) {
		/* leave it where it is: a read reports it, fsck names it */
		bz_warn("store: relocation: chunk of inode %llu at offset %llu (page %llu) is unreadable (%s): not moved",
			(unsigned long long)ino, (unsigned long long)e->off, (unsigned long long)e->page, strerror(-r));
		r = 0;
		goto out;
	}
	if (ext) {
		r = st_extent_write(s, lsn, x->frame, ient_ext_len(e), &ne);
		if (r == 0)
			r = st_release(s, e->page, e->npages);
		if (r < 0)
			goto out;
		st_set_u64(&s->pages_relocated, s->pages_relocated + e->npages);
	}
	if (frag && (!ext || frag_lower(s, &ne))) { /* the extent may have taken that free page */
		r = st_frag_move(s, lsn, &ne, x->frame + ient_ext_len(e));
		if (r < 0)
			goto out;
	}
	*e = ne;
	*moved = true;
out:
	return r;
}

/* Writes f's full entries as a new chain and releases the old one. */
static int chain_rewrite(struct store *s, struct sfile *f, uint64_t lsn) REQUIRES(store_cap)
{
	ns_dirty_mark(s->ns, f->ino); /* its checkpointed state changes (ns_dirty) */
	uint64_t old = f->last_full, next = 0, left = f->n_full;
	uint8_t page[PAGER_PAGE_SIZE];
	int r = 0;

	for (uint64_t i = 0; i < f->n_full && r == 0; i += IDX_PER_PAGE)
		r = st_index_page_write(s, lsn, f->full + i, IDX_PER_PAGE, next, &next);
	if (r < 0)
		goto out;
	f->last_full = next;
	f->chain_gen++;
	/* the old chain's pages, newest first, through their next links */
	while (old && left && r == 0) {
		struct pager_hdr h;
		r = pager_read(s->pager, old, PAGER_INDEX, page, &h);
		if (r == 0)
			r = st_release(s, old, 1);
		left -= BZ_MIN(left, (uint64_t)IDX_PER_PAGE);
		old = h.next;
	}
out:
	return r;
}

int st_relocate(struct store *s, uint64_t lsn) REQUIRES(store_cap)
{
	struct sfile *f = s->reloc_stuck ? NULL : pick(s);
	struct rctx *x = NULL;
	uint64_t budget = RELOC_MAX_BYTES, n_moved = 0;
	bool moved_full = false;
	int r = 0;

	if (!f)
		goto out;
	r = st_sfile_load(s, f);
	if (r < 0) {
		bz_warn("store: relocation: index of inode %llu unreadable (%s)", (unsigned long long)f->ino,
			strerror(-r));
		r = 0;
		goto stuck;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		r = -ENOMEM;
		goto out;
	}
	/* the highest first: what stands between the free space and the end */
	for (uint64_t i = f->n_full + f->n_tail + 1; i-- > 0 && budget && r == 0;) {
		struct ient *e = i < f->n_full ? &f->full[i] : i < f->n_full + f->n_tail ? &f->tail[i - f->n_full]
						 : f->has_otail ? &f->otail : NULL;
		bool moved = false;
		if (!e || e->frame_len > budget)
			continue;
		r = move_extent(s, lsn, f->ino, e, x, &moved);
		if (moved) {
			budget -= e->frame_len;
			n_moved++;
			moved_full |= i < f->n_full;
		}
	}
	/* the chain too when its newest page stands above free space (the
	 * rewrite of an earlier relocation may have had to go to the end) */
	bool chain_high = f->last_full && fits_below(&s->free, 1, f->last_full);
	if (r == 0 && (moved_full || chain_high)) {
		r = chain_rewrite(s, f, lsn);
		n_moved += !moved_full;
	}
	if (r < 0)
		goto out;
	if (n_moved) {
		bz_info("store: relocation: moved %llu chunks of inode %llu down", (unsigned long long)n_moved,
			(unsigned long long)f->ino);
		goto out;
	}
stuck:
	s->reloc_stuck = true;
out:
	st_rctx_free(x);
	return r;
}
