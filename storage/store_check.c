/* store_check.c — offline inspection and checking (blazectl fsck/dump):
 * store_read_superblocks (raw superblock fields), store_page_type_name,
 * store_scan_pages (every page's header), store_file_records (one file's
 * records, each verified), store_check (the whole store: superblocks, page
 * ownership, every index entry and frame, the namespace, the WAL) and
 * store_diagnose (what can be said about a store that does not open).
 * Formats read: docs/FORMAT.md ("The PageStore and recovery", "The WAL");
 * what each check verifies, and which findings are errors or warnings:
 * docs/BLAZECTL.md.
 *
 * LOCKS. These run in single-threaded tools on a store nobody else uses.
 * store_file_records and store_check take s->lock exclusive for their whole
 * walk; store_read_superblocks, store_scan_pages
 * and store_diagnose work on a vfs without an open store.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>
#include <zstd.h>

#include "bufpool.h"
#include "store_int.h"

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
	ret->format = bz_get_le32(p + 4);
	if (ret->format >= SB_VERSION_4) {
		ret->pack_root = bz_get_le64(p + 168);
		ret->pack_count = bz_get_le64(p + 176);
	}
	if (ret->format >= SB_VERSION_3) {
		ret->ino_root = bz_get_le64(p + 136);
		ret->ino_count = bz_get_le64(p + 144);
		ret->dent_root = bz_get_le64(p + 152);
		ret->dent_count = bz_get_le64(p + 160);
	}
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
		out[i].valid = st_sb_decode(page, i, &sb, &why) == 0;
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
	case PAGER_PACK:
		return "pack";
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

	r = st_frame_read(s, e, x);
	if (r < 0)
		return -EIO;
	r = rec_decode(x->frame, e->frame_len, &h, &payload, &flen);
	if (r < 0)
		return -EBADMSG;
	*ret_stored = h.stored_len;
	*ret_codec = h.codec;
	if (h.type != REC_DATA || h.ino != ino || h.off != e->off || h.raw_len != e->raw_len || flen != e->frame_len)
		return -EBADMSG;
	r = st_grow(&x->raw, &x->raw_cap, BZ_MAX(e->raw_len, 1u));
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
	bp_put(x->frame, x->frame_cap);
	bp_put(x->raw, x->raw_cap);
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
	struct sfile *f = r == 0 ? st_ftab_get(&s->files, ino) : NULL;
	if (f)
		r = st_sfile_load(s, f);
	for (uint64_t i = 0; f && r == 0 && i < f->n_full + f->n_tail; i++) {
		const struct ient *e = st_sfile_ent(f, i);
		struct store_record_info ri = {
			.off = e->off, .raw_len = e->raw_len, .frame_len = e->frame_len,
			.page = e->page, .npages = e->npages, .pg_off = e->pg_off, .tpage = e->tpage,
		};
		ri.status = record_verify(s, ino, e, x, &ri.stored_len, &ri.codec);
		r = fn(arg, &ri);
	}
	if (f && r == 0 && f->has_otail) {
		const struct ient *e = &f->otail;
		struct store_record_info ri = {
			.off = e->off, .raw_len = e->raw_len, .frame_len = e->frame_len,
			.page = e->page, .npages = e->npages, .pg_off = e->pg_off, .tpage = e->tpage,
			.kind = STORE_REC_TAIL,
		};
		ri.status = record_verify(s, ino, e, x, &ri.stored_len, &ri.codec);
		r = fn(arg, &ri);
	}
	if (f && r == 0 && f->odirty) {
		uint32_t t = f->has_otail ? f->otail.raw_len : 0;
		struct store_record_info ri = {.off = f->ostart + t, .raw_len = f->olen - t, .kind = STORE_REC_OPEN};
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
	PG_DATA = 16,   /* counted as a data page (extent or pack) */
	PG_PACK = 32,   /* a pack page (may be named by several chunks) */
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
	uint64_t *live; /* per page: packed frame bytes named by entries */
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

/* btree_verify's page callback: a tree page is referenced once. */
static void chk_tree_page(void *arg, uint64_t pg, uint8_t type)
{
	struct chk *c = arg;
	(void)type;
	if (pg < 2 || pg >= c->n_pg) {
		chk_say(c, STORE_CHECK_ERROR, "a namespace tree names page %llu, outside 2..%llu", ull(pg),
			ull(c->n_pg - 1));
		return;
	}
	if (c->pg[pg] & PG_USED)
		chk_say(c, STORE_CHECK_ERROR, "page %llu of a namespace tree is referenced twice", ull(pg));
	c->pg[pg] |= PG_USED;
	c->rep.tree_pages++;
}

/* Copies len bytes of e's frame into x->frame[dst, ...) from page pg at
 * payload offset at on (through next = pgno+1), marking the pages reached
 * and reporting each page's errors. */
static int chk_piece(struct chk *c, uint64_t ino, const struct ient *e, uint8_t type, uint64_t pg, uint32_t at,
		     size_t len, size_t dst) REQUIRES_SHARED(store_cap)
{
	struct store *s = c->s;
	struct rctx *x = c->x;
	size_t done = 0;
	int r = 0;

	while (r == 0 && done < len) {
		const uint8_t *src;
		struct pager_hdr h;
		bool shared = (c->pg[pg < c->n_pg ? pg : 0] & PG_PACK) && type == PAGER_PACK;
		if (pg < 2 || pg >= c->n_pg) {
			chk_use(c, pg, "a record", ino);
			r = -EIO;
			break;
		}
		if ((c->pg[pg] & PG_USED) && !shared) {
			chk_say(c, STORE_CHECK_ERROR,
				"page %llu is referenced twice (again by the record of inode %llu at offset %llu)",
				ull(pg), ull(ino), ull(e->off));
			r = -EIO;
			break;
		}
		c->pg[pg] |= PG_USED;
		if (c->pg[pg] & PG_BAD) {
			r = -EIO; /* reported when first seen */
			break;
		}
		if (!(c->pg[pg] & PG_DATA)) {
			c->pg[pg] |= PG_DATA | (type == PAGER_PACK ? PG_PACK : 0);
			c->rep.data_pages++;
		}
		if (st_data_page_src(s, pg, type, x, &src, &h) < 0) {
			c->pg[pg] |= PG_BAD;
			c->rep.bad_pages++;
			chk_say(c, STORE_CHECK_ERROR,
				"data page %llu (%s) fails its checksum or header (first seen by a record of "
				"inode %llu at offset %llu)", ull(pg), type == PAGER_PACK ? "pack" : "extent", ull(ino),
				ull(e->off));
			r = -EIO;
			break;
		}
		size_t n = at < h.used ? BZ_MIN((size_t)(h.used - at), len - done) : 0;
		memcpy(x->frame + dst + done, src + PAGER_HDR_SIZE + at, n);
		done += n;
		if (done < len && (type == PAGER_PACK || h.next != pg + 1 || h.used != PAGER_PAYLOAD)) {
			chk_say(c, STORE_CHECK_ERROR,
				"page %llu: the record of inode %llu at offset %llu runs past the page's data",
				ull(pg), ull(ino), ull(e->off));
			r = -EIO;
			break;
		}
		pg = h.next;
		at = 0;
	}
	return r;
}

/* frame_read with reachability marking and per-page error reports. An
 * extent's pages belong to its chunk alone: a page named twice (by two
 * extents, by an extent and a pack entry, an index or namespace page) is an
 * error; a pack page may be named by many packed chunks and fragments. */
static int chk_frame_read(struct chk *c, uint64_t ino, const struct ient *e) REQUIRES_SHARED(store_cap)
{
	struct rctx *x = c->x;
	int r;

	if (!st_entry_ok(e)) {
		chk_say(c, STORE_CHECK_ERROR,
			"inode %llu: index entry at offset %llu names a %u-byte frame in %u pages at %llu+%u "
			"(fragment page %llu: inconsistent placement)", ull(ino), ull(e->off), e->frame_len, e->npages,
			ull(e->page), e->pg_off, ull(e->tpage));
		return -EIO;
	}
	uint64_t pp = ient_pack_page(e);
	if (pp && pp < c->n_pg)
		c->live[pp] += ient_pack_len(e);
	r = st_grow(&x->frame, &x->frame_cap, BZ_MAX(e->frame_len, 1u));
	if (r == 0)
		r = chk_piece(c, ino, e, e->npages ? PAGER_DATA : PAGER_PACK, e->page, e->npages ? 0 : e->pg_off,
			      ient_ext_len(e), 0);
	if (r == 0 && e->tpage)
		r = chk_piece(c, ino, e, PAGER_PACK, e->tpage, e->pg_off, ient_frag_len(e), ient_ext_len(e));
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

	/* entries are in offset order and do not overlap; gaps are holes */
	if ((e->off + e->raw_len > *end || e->raw_len == 0) && !*hole_said) {
		chk_say(c, STORE_CHECK_ERROR,
			"inode %llu: index entry at offset %llu (%u bytes) overlaps the next (at %llu) or the file's end",
			ull(ino), ull(e->off), e->raw_len, ull(*end));
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
	if (r == 0 && (h.type != REC_DATA || h.codec == REC_HOLE || h.ino != ino || h.off != e->off || h.raw_len != e->raw_len ||
		       flen != e->frame_len)) {
		c->rep.bad_records++;
		chk_say(c, STORE_CHECK_ERROR,
			"inode %llu offset %llu (page %llu+%u): the frame is a record of inode %llu at offset %llu, "
			"%llu raw bytes, %zu frame bytes; the index says %u and %u", ull(ino), ull(e->off),
			ull(e->page), e->pg_off, ull(h.ino), ull(h.off), ull(h.raw_len), flen, e->raw_len, e->frame_len);
		goto out;
	}
	if (r == 0)
		r = st_grow(&c->x->raw, &c->x->raw_cap, BZ_MAX(e->raw_len, 1u));
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
	/* the open chunk [ostart, size): its tail frame, and bytes replayed
	 * from the WAL into its buffer that no tail holds yet */
	if (f->ostart > size || (uint64_t)f->ostart + f->olen != size) {
		chk_say(c, STORE_CHECK_ERROR, "inode %llu: open chunk at %llu (%u bytes) does not end at the size %llu",
			ull(f->ino), ull(f->ostart), f->olen, ull(size));
	} else if (f->has_otail) {
		uint64_t tend = (f->obuf && f->odirty) ? f->ostart + f->otail.raw_len : size;
		bool said = false;
		chk_entry(c, f->ino, &f->otail, &tend, &said, &raw_sum, &frame_sum);
	}
	if (f->odirty)
		raw_sum += f->olen - (f->has_otail ? f->otail.raw_len : 0);
	end = BZ_MIN(end, f->ostart);
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
			st_index_entry_decode(idx + PAGER_HDR_SIZE + j * IDX_ENTRY_SIZE, &e);
			chk_entry(c, f->ino, &e, &end, &hole_said, &raw_sum, &frame_sum);
		}
		pg = h.next;
		if (!left && pg)
			chk_say(c, STORE_CHECK_ERROR, "inode %llu: index chain continues past its %llu entries (page %llu)",
				ull(f->ino), ull(f->n_full), ull(pg));
	}
	if (left)
		return; /* reported above; the sums cannot match */
	(void)size; /* gaps between the chunks and past the last are holes */
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
	if (c->n_ino) /* qsort's base must not be NULL, even for 0 elements */
		qsort(c->ino, c->n_ino, sizeof(*c->ino), chk_ino_cmp);
	if (c->n_dent)
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
		struct chk_dent *d = c->n_dent ? bsearch(&key, c->dent, c->n_dent, sizeof(key), chk_dent_cmp) : NULL;
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
	uint64_t valid_beyond = 0, committed_beyond = 0;
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
			if (e->valid && e->kind == WAL_KIND_BATCH) { /* with its COMMIT: a whole batch */
				const struct wal_entry_info *cm =
					chk_wal_at(&w, e->segment, e->offset + 48 + ((e->len + 7) & ~7ull));
				committed_beyond += cm && cm->valid && cm->kind == WAL_KIND_COMMIT && cm->lsn == e->lsn;
			}
		}
	}
	c->rep.wal_torn = c->rep.wal_tail_entries > 0;
	chk_say(c, STORE_CHECK_INFO, "WAL: %llu committed batches after the checkpoint (lsn %llu), ending at segment "
		"%u offset %llu (life %llu)", ull(c->rep.wal_batches), ull(s->sb.checkpoint_lsn), seg, ull(off),
		ull(life));
	/* A whole committed batch behind the end: damage in the middle of the
	 * log (it is unreachable for recovery). Else a torn tail (a crash
	 * during a write never acknowledged: a batch's pages, its COMMIT among
	 * them, reach the disk in any order) or stale entries of a life whose
	 * header a crash lost (the number is given again): what every power
	 * cut may leave, cut by recovery as it must be. */
	if (committed_beyond)
		chk_say(c, STORE_CHECK_ERROR,
			"WAL: %llu entries of the live log (%llu of them valid, %llu whole committed batches, unreachable "
			"for recovery) lie beyond its valid end at segment %u offset %llu: damage inside the log; "
			"recovery cuts it there, --repair makes the cut permanent",
			ull(c->rep.wal_tail_entries), ull(valid_beyond), ull(committed_beyond), seg, ull(off));
	else if (c->rep.wal_torn)
		chk_say(c, STORE_CHECK_WARN,
			"WAL: %llu entries (%llu valid, no whole batch) lie beyond the live log's valid end at segment %u "
			"offset %llu: a torn or stale tail (what a crash leaves); recovery cuts it, --repair makes the "
			"cut permanent",
			ull(c->rep.wal_tail_entries), ull(valid_beyond), seg, ull(off));
	if (s->read_only && c->rep.wal_batches != st_get_u64(&s->replayed))
		chk_say(c, STORE_CHECK_ERROR, "WAL: %llu batches follow the checkpoint but recovery replayed %llu",
			ull(c->rep.wal_batches), ull(st_get_u64(&s->replayed)));
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
	/* everything this walks: a format 5 store loads the rest of its
	 * namespace first (its trees' damage is reported by the load) */
	r = st_ns_load_all(s);
	if (r < 0)
		goto out;
	r = -ENOMEM;
	c.n_pg = s->hwm;
	c.pg = calloc(c.n_pg ? c.n_pg : 1, 1);
	c.live = calloc(c.n_pg ? c.n_pg : 1, sizeof(*c.live));
	c.x = calloc(1, sizeof(*c.x));
	if (!c.pg || !c.live || !c.x)
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

	/* 2a. the namespace trees (format 3: two; format 4: three): every
	 * page verified, each referenced once (a page named twice is an
	 * error), all counted. The pack tree's values are checked against
	 * the index in 5b (they are what the store counts). */
	if (s->sb.format >= SB_VERSION_3) {
		static const char *const tname[3] = {"inode", "directory entry", "pack"};
		const uint64_t root[3] = {s->sb.ino_root, s->sb.dent_root, s->sb.pack_root};
		const uint64_t keys[3] = {s->sb.ino_count, s->sb.dent_count, s->sb.pack_count};
		struct btree_io io;
		st_nst_io(s, &io);
		for (int k = 0; k < (s->sb.format >= SB_VERSION_4 ? 3 : 2); k++) {
			int tr = btree_verify(&io, root[k], keys[k], chk_tree_page, &c);
			if (tr < 0)
				chk_say(&c, STORE_CHECK_ERROR, "the %s tree (root %llu, %llu keys) is corrupt: %s",
					tname[k], ull(root[k]), ull(keys[k]), strerror(-tr));
		}
	}

	/* 3. free and pending extents */
	for (int k = 0; k < 2; k++) {
		const struct freemap *v = k ? &s->pending : &s->free;
		uint8_t bit = k ? PG_PENDING : PG_FREE;
		for (size_t i = 0; i < v->n; i++) {
			for (uint64_t pg = v->v[i].start; pg - v->v[i].start < v->v[i].len; pg++) {
				if (pg < 2 || pg >= c.n_pg) {
					chk_say(&c, STORE_CHECK_ERROR, "the free space names page %llu, outside 2..%llu",
						ull(pg), ull(c.n_pg - 1));
					break;
				}
				if (c.pg[pg] & (PG_FREE | PG_PENDING))
					chk_say(&c, STORE_CHECK_ERROR, "page %llu is free twice", ull(pg));
				c.pg[pg] |= bit;
			}
		}
	}
	/* index chains of files deleted during replay, and the extents they
	 * name: released at the next checkpoint */
	for (size_t i = 0; i < s->dead.n; i++) {
		uint64_t pg = s->dead.v[i], guard = 0;
		while (pg >= 2 && pg < c.n_pg && guard++ < c.n_pg && !(c.pg[pg] & PG_PENDING)) {
			struct pager_hdr h;
			c.pg[pg] |= PG_PENDING;
			if (pager_read(s->pager, pg, PAGER_INDEX, page, &h) < 0)
				break;
			for (uint32_t k = 0; k < h.used / IDX_ENTRY_SIZE; k++) {
				struct ient e;
				st_index_entry_decode(page + PAGER_HDR_SIZE + k * IDX_ENTRY_SIZE, &e);
				for (uint64_t p = e.page; e.npages && p - e.page < e.npages && p < c.n_pg; p++)
					c.pg[p] |= PG_PENDING;
				/* a packed frame or a fragment keeps its share of
				 * the pack page until that checkpoint */
				uint64_t pp = ient_pack_page(&e);
				if (pp >= 2 && pp < c.n_pg && (!e.tpage || st_entry_ok(&e))) {
					c.live[pp] += ient_pack_len(&e);
					c.pg[pp] |= PG_USED | PG_PACK;
				}
			}
			pg = h.next;
		}
	}
	if (s->open_pgno && s->open_pgno < c.n_pg)
		c.pg[s->open_pgno] |= PG_USED | PG_PACK;

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
		if (S_ISREG(c.ino[i].mode) && c.ino[i].size && !st_ftab_get(&s->files, c.ino[i].ino))
			chk_say(&c, STORE_CHECK_ERROR, "inode %llu has size %llu but no index", ull(c.ino[i].ino),
				ull(c.ino[i].size));
	if (stored != s->stored_bytes || logical != s->logical_bytes)
		chk_say(&c, STORE_CHECK_ERROR,
			"store totals (%llu stored, %llu logical bytes) differ from the files' (%llu, %llu)",
			ull(s->stored_bytes), ull(s->logical_bytes), ull(stored), ull(logical));

	/* 5b. pack pages' live bytes: what the entries name, as the store
	 * counts it (a page is released when its count reaches 0) */
	for (uint64_t pg = 2; pg < c.n_pg; pg++) {
		uint32_t have = st_pack_live_get(s, pg);
		if (c.live[pg] != have)
			chk_say(&c, STORE_CHECK_ERROR, "pack page %llu: the index names %llu live bytes, the store counts %u",
				ull(pg), ull(c.live[pg]), have);
	}

	/* 6. page accounting */
	uint64_t first_leak = 0, pack_leaks = 0;
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
			/* a pack page is released when its last frame goes: a
			 * leaked one is a bug in that accounting */
			size_t n = 0;
			if (vfs_pread(s->db_f, page, PAGER_PAGE_SIZE, pg * PAGER_PAGE_SIZE, &n) == 0 &&
			    n == PAGER_PAGE_SIZE && pager_check(page, pg, PAGER_PACK, NULL) == 0 && !pack_leaks++)
				chk_say(&c, STORE_CHECK_ERROR, "pack page %llu is leaked: no entry names it and it is "
					"not free", ull(pg));
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
				r = st_release(s, pg, 1);
				if (r < 0)
					goto out;
				c.rep.freed++;
			}
			s->dirty = true;
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
	free(c.live);
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
