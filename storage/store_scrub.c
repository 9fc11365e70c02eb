/* store_scrub.c — what an online scrub needs from the store.
 *
 * A scrub (fs/scrub.c, `blazectl scrub`) verifies what is stored on disk
 * while the store is in use.
 *
 * DATA. The bytes of files are read through the ordinary read path
 * (store_read: the index, every page checksum, every record's xxh3), so a
 * scrub checks exactly what a reader relies on, with one difference: the
 * scrubbing thread's page reads bypass the pager's cache (pager.c, "SCRUB
 * READS"), so a page damaged on disk after it was cached is found, and the
 * readers' hot pages are not evicted. No lock is added: the flag is
 * thread-local, and store_read's locking is unchanged.
 *
 * METADATA (store_scrub_meta). Two resumable walks, a few pages per call,
 * each page read from the file (cache bypassed) and checked like recovery
 * and fsck check it -- checksum, magic, type, page number, `used` -- plus
 * the chain links (docs/FORMAT.md §2, §3, §5, §6):
 *   NS     superblocks 0 and 1 (both must be valid on a writable store: the
 *          checkpoint at open rewrote the older one; on a read-only store an
 *          invalid older one is a torn checkpoint, reported as STALE like
 *          fsck's warning), then the namespace checkpoint chain named by the
 *          newest valid superblock: ns_pages NSMETA pages, `next` non-zero
 *          on all but the last, no page empty (format 4; older writers
 *          filled all but the last), ns_bytes in
 *          all, every link inside [2, H).
 *          On a format 3 (4) store the walk's last position is the two
 *          (three: the pack tree) namespace trees that superblock names (store_nstree.c), verified
 *          whole in one call by btree_verify (every page's checksum and
 *          header, levels, key bounds and order, overflow chains, no page
 *          reached twice, the key counts); a damaged page is reported as
 *          the last page the verification read.
 *   INDEX  one file's chain of full INDEX pages from its last_full, as many
 *          pages as n_full / 101 when the walk began (a live chain only
 *          grows at its head, so the pages below the head the walk started
 *          from stay the same), each with 4040 bytes of entries that pass
 *          st_entry_ok, `next` non-zero on all but the last.
 *
 * SAFETY WITHOUT LOCKS. Neither walk holds s->lock across I/O: INDEX takes
 * it shared only to look up the file's chain head (no I/O), NS not at all
 * (it reads the superblocks from the file instead of s->sb, a [commit]
 * field). What could go wrong is reading a page the commit thread frees and
 * reuses meanwhile, or a superblock it is rewriting (a torn read): both
 * would look like damage. Every call therefore samples the pager's
 * superblock write sequence (pager_super_seq, a seqlock: odd while a
 * superblock is being written) before it looks anything up and after its
 * last read; if it changed, nothing of the call counts (-EAGAIN, cursor
 * unchanged). That is enough because a checkpoint frees pages only after
 * writing its superblock (FORMAT.md §8: the previous namespace chain and
 * deleted files' index pages go pending in step 2 and free in step 7, after
 * step 5): a page the walk found named (by the newest superblock, read in
 * this call, or by a file present in s->files in this call) cannot be
 * rewritten within the call's window unless a superblock write began in
 * it. Between calls the cursor is re-validated: NS restarts when the newest
 * superblock's generation is not the cursor's (the chain it followed may
 * be gone); INDEX stops (-ENOENT) when the file has no index any more.
 */
#include <errno.h>
#include <string.h>

#include "store_int.h"

void store_scrub_thread(bool on) { pager_scrub_thread(on); }

/* Superblock i as on disk: 0 valid (*ret filled), -EBADMSG invalid or
 * unreadable, other negative errnos. */
static int sb_read(struct store *s, unsigned i, uint8_t *page, struct store_sb *ret)
{
	const char *why = NULL;
	size_t n = 0;
	int r = vfs_pread(s->db_f, page, PAGER_PAGE_SIZE, (uint64_t)i * PAGER_PAGE_SIZE, &n);

	if (r == -EIO || (r == 0 && n != PAGER_PAGE_SIZE))
		return -EBADMSG;
	if (r < 0)
		return r;
	return st_sb_decode(page, i, ret, &why) < 0 ? -EBADMSG : 0;
}

static void bad(struct store_scrub_meta *w, unsigned what, uint64_t pgno, bool end)
{
	w->bad = what;
	w->bad_pgno = pgno;
	w->end = w->end || end;
}

/* The trees' page reads for btree_verify: straight from the file (the
 * scrubbing thread bypasses the cache), remembering the last page read. */
struct tree_scrub {
	struct store *s;
	uint64_t hwm, last, pages;
};

static int ts_read(void *arg, uint64_t pgno, uint8_t *buf)
{
	struct tree_scrub *t = arg;

	t->last = pgno;
	t->pages++;
	return pager_read(t->s->pager, pgno, 0, buf, NULL);
}

static int ts_alloc(void *arg, uint64_t *ret)
{
	(void)arg;
	*ret = 0;
	return -EROFS; /* never called: verification does not write */
}

static void ts_free(void *arg, uint64_t pgno) { (void)arg, (void)pgno; }

static int ts_write(void *arg, uint64_t pgno, const uint8_t *page)
{
	(void)arg, (void)pgno, (void)page;
	return -EROFS;
}

static uint64_t ts_hw(void *arg) { return ((struct tree_scrub *)arg)->hwm; }

/* Verifies the trees superblock d names (format 3: two, 4: three); damage
 * goes into *w, the pages read into *ret_pages. */
static int scrub_trees(struct store *s, const struct store_sb *d, struct store_scrub_meta *w, uint64_t *ret_pages)
{
	struct tree_scrub t = {.s = s, .hwm = d->hwm};
	struct btree_io io = {.read_page = ts_read, .alloc_page = ts_alloc, .free_page = ts_free,
			      .write_page = ts_write, .high_water = ts_hw, .arg = &t};
	int r = 0;

	const uint64_t root[3] = {d->ino_root, d->dent_root, d->pack_root};
	const uint64_t keys[3] = {d->ino_count, d->dent_count, d->pack_count};

	for (int k = 0; k < (d->format >= SB_VERSION_4 ? 3 : 2) && !w->bad; k++) {
		t.last = root[k];
		r = btree_verify(&io, root[k], keys[k], NULL, NULL);
		if (r == -EIO || r == -EUCLEAN || r == -EBADMSG) {
			bad(w, r == -EIO ? STORE_SCRUB_BAD_PAGE : STORE_SCRUB_BAD_BODY, t.last, true);
			r = 0;
		}
		if (r < 0)
			break;
	}
	*ret_pages = t.pages;
	return r;
}

static int scrub_ns(struct store *s, uint64_t max, struct store_scrub_meta *w)
{
	uint8_t page[PAGER_PAGE_SIZE];
	struct store_sb sb[2];
	bool ok[2];
	int newest = -1, r = 0;

	for (unsigned i = 0; i < 2; i++) {
		r = sb_read(s, i, page, &sb[i]);
		if (r < 0 && r != -EBADMSG)
			goto out;
		ok[i] = r == 0;
	}
	r = 0;
	if (ok[0] && (!ok[1] || sb[0].gen > sb[1].gen))
		newest = 0;
	else if (ok[1])
		newest = 1;
	uint64_t gen = newest >= 0 ? sb[newest].gen : 0;
	if (w->pos && w->gen != gen) {
		/* a checkpoint since the last call: follow the new chain */
		w->pos = w->pgno = w->bytes = 0;
		w->restarted = true;
	}
	w->gen = gen;
	w->total = 2 + (newest >= 0 ? sb[newest].ns_pages : 0);
	/* format 3: one more position, the namespace trees (counted as one
	 * page until they are verified, then as the pages they have) */
	bool trees = newest >= 0 && sb[newest].format >= SB_VERSION_3;
	w->total += trees;
	while (w->done < max && w->pos < w->total && !w->bad) {
		struct pager_hdr h;

		if (w->pos < 2) {
			unsigned i = (unsigned)w->pos;
			if (!ok[i])
				bad(w, s->read_only && newest >= 0 ? STORE_SCRUB_BAD_STALE : STORE_SCRUB_BAD_PAGE, i,
				    newest < 0 && i == 1);
			w->pos++;
			w->done++;
			continue;
		}
		const struct store_sb *d = &sb[newest];
		uint64_t idx = w->pos - 2, pg = idx == 0 ? d->ns_first : w->pgno;
		if (trees && w->pos + 1 == w->total) {
			/* the trees' size is known once read: the walk's total
			 * becomes the pages it really verified */
			uint64_t pages = 0;
			r = scrub_trees(s, d, w, &pages);
			if (r < 0)
				goto out;
			pages = BZ_MAX(pages, 1);
			w->done += pages;
			w->pos = w->total = w->pos + pages;
			w->end = true;
			break;
		}
		if (pg < 2 || pg >= d->hwm) {
			bad(w, STORE_SCRUB_BAD_LINK, pg, true);
			break;
		}
		r = pager_read(s->pager, pg, PAGER_NSMETA, page, &h);
		if (r == -EIO) {
			r = 0;
			bad(w, STORE_SCRUB_BAD_PAGE, pg, true); /* its link cannot be followed */
			w->done++;
			break;
		}
		if (r < 0)
			goto out;
		bool last = idx + 1 == d->ns_pages;
		w->bytes += h.used;
		w->pgno = h.next;
		w->pos++;
		w->done++;
		if (last != (h.next == 0))
			bad(w, STORE_SCRUB_BAD_LINK, pg, true);
		else if ((d->format >= SB_VERSION_4 ? h.used == 0 : !last && h.used != PAGER_PAYLOAD) ||
			 (last && w->bytes != d->ns_bytes))
			bad(w, STORE_SCRUB_BAD_BODY, pg, last);
	}
	if (w->pos >= w->total)
		w->end = true;
out:
	return r;
}

static int scrub_index(struct store *s, uint64_t ino, uint64_t max, struct store_scrub_meta *w)
{
	uint8_t page[PAGER_PAGE_SIZE];
	uint64_t head = 0, pages = 0;
	bool found;
	int r = 0;

	r = st_ns_ensure(s, ino); /* its index state comes with its inode */
	if (r < 0)
		return r;
	bz_cap_rdlock(&s->lock, &store_cap);
	const struct sfile *f = st_ftab_get(&s->files, ino);
	found = f != NULL;
	if (f) {
		head = f->last_full;
		pages = f->n_full / IDX_PER_PAGE;
	}
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (w->pos == 0) { /* a new walk (or one that verified nothing yet) */
		w->gen = pages;
		w->pgno = head;
	} else if (!found) {
		r = -ENOENT; /* deleted meanwhile: its pages may be free by now */
		goto out;
	}
	w->total = w->gen;
	uint64_t hwm = st_get_u64(&s->hwm);
	while (w->done < max && w->pos < w->total && !w->bad) {
		struct pager_hdr h;
		uint64_t pg = w->pgno;

		if (pg < 2 || pg >= hwm) {
			bad(w, STORE_SCRUB_BAD_LINK, pg, true);
			break;
		}
		r = pager_read(s->pager, pg, PAGER_INDEX, page, &h);
		if (r == -EIO) {
			r = 0;
			bad(w, STORE_SCRUB_BAD_PAGE, pg, true);
			w->done++;
			break;
		}
		if (r < 0)
			goto out;
		bool last = w->pos + 1 == w->total, body_ok = h.used == IDX_PER_PAGE * IDX_ENTRY_SIZE;
		for (uint32_t k = 0; body_ok && k < IDX_PER_PAGE; k++) {
			struct ient e;
			st_index_entry_decode(page + PAGER_HDR_SIZE + k * IDX_ENTRY_SIZE, &e);
			body_ok = st_entry_ok(&e);
		}
		w->pgno = h.next;
		w->pos++;
		w->done++;
		if (last != (h.next == 0))
			bad(w, STORE_SCRUB_BAD_LINK, pg, true);
		else if (!body_ok)
			bad(w, STORE_SCRUB_BAD_BODY, pg, false);
	}
	if (w->pos >= w->total)
		w->end = true;
out:
	return r;
}

int store_scrub_meta(struct store *s, unsigned what, uint64_t ino, uint64_t max_pages, struct store_scrub_meta *c)
{
	struct store_scrub_meta w = *c;
	uint64_t seq = pager_super_seq(s->pager);
	int r;

	if (what != STORE_SCRUB_NS && what != STORE_SCRUB_INDEX)
		return -EINVAL;
	if (seq & 1)
		return -EAGAIN; /* a superblock is being written right now */
	w.total = w.done = w.bad_pgno = 0;
	w.bad = STORE_SCRUB_OK;
	w.end = w.restarted = false;
	store_scrub_thread(true);
	r = what == STORE_SCRUB_NS ? scrub_ns(s, max_pages, &w) : scrub_index(s, ino, max_pages, &w);
	store_scrub_thread(false);
	if (r == 0 && pager_super_seq(s->pager) != seq)
		r = -EAGAIN; /* a checkpoint ran meanwhile: what was read may be stale */
	if (r == 0)
		*c = w;
	return r;
}

uint64_t store_index_bytes(struct store *s)
{
	uint64_t pages = 0;
	size_t i = 0, cap;

	do { /* 4096 slots per hold: the commit thread never waits long */
		bz_cap_rdlock(&s->lock, &store_cap);
		cap = s->files.cap;
		for (size_t end = BZ_MIN(cap, i + 4096); i < end; i++)
			if (s->files.slot[i])
				pages += s->files.slot[i]->n_full / IDX_PER_PAGE;
		bz_cap_rdunlock(&s->lock, &store_cap);
	} while (i < cap);
	return pages * PAGER_PAGE_SIZE;
}
