/* store_ckpt.c — the PageStore's durable roots: superblock encode/decode,
 * the namespace checkpoint stream (serialize, parse, load its page chain),
 * the free list, and store_checkpoint. Format: docs/FORMAT.md ("The
 * PageStore and recovery" sections 3, 6, 7 and 8).
 *
 * SUPERBLOCKS. Pages 0 and 1. The superblock of generation g lives in page
 * g % 2 (LMDB style: a checkpoint overwrites the OLDER one). A new store is
 * written as generation 0 in page 0 and generation 1 in page 1, identical
 * otherwise. Payload (little endian, after the page header):
 *     0 u32 "BZSB"   4 u32 format version (4)   8 u32 page_size (4096)
 *    12 u32 wal segments   16 u64 generation   24 u64 checkpoint_lsn
 *    32 u32 wal_pos.segment   36 u32 0   40 u64 wal_pos.life
 *    48 u64 wal_pos.offset   56 u64 wal segment_bytes   64 u64 next_ino
 *    72 u64 high-water mark H (store.db holds at least H pages)
 *    80 u64 ns chain first page   88 u64 ns chain pages   96 u64 ns bytes
 *   104 u64 stored bytes   112 u64 logical bytes   120 u64 data pages
 *   128 u64 checkpoints   136 u64 inode tree root   144 u64 its keys
 *   152 u64 entry tree root   160 u64 its keys   168 u64 pack tree root
 *   176 u64 its keys (format 4; format 3 stops at 168, format 2 at 136:
 *   both are read, then upgraded by the next checkpoint)
 *
 * NAMESPACE CHECKPOINT. Format 4: inodes (with rdev, symlink targets,
 * extended attributes, per-file index state), entries and the pack pages'
 * live bytes live in three B+trees (store_nstree.c) that each checkpoint
 * updates with what changed; the chain of NEW NSMETA pages holds a short
 * stream (version 6): next_ino, the byte counters, the flags (cleaning
 * due) and the free extents 'P'. Format 3 streams (version 5) also held every pack page's live bytes
 * ('K'), so each checkpoint wrote and sorted them all: 35 pages and 20-30 ms
 * at 1 M small files. Format 2 stores wrote everything into the stream (versions 3 and 4,
 * read once at open; the records of one inode in that encoding are also
 * the inode tree's values: st_ns_ser_one / st_ns_parse_one). The parser
 * (st_ns_load_chain -> ns_parse -> parse_recs) treats the stream as
 * untrusted: every read is bounds checked (struct rd); tests/fuzz
 * (fuzz_page, fuzz_recover) feed it arbitrary store.db bytes.
 *
 * FREE SPACE. A page referenced by the durable superblock is never
 * overwritten. Pages released during an interval (the previous namespace
 * chain, index pages and extents of deleted files) are "pending" and become
 * free only once the next superblock is durable. Free space at the end of
 * store.db is given back: the free set's last extent, if it ends at H,
 * lowers H in the next full checkpoint, and store.db is cut to H pages only
 * after the superblock naming the lower H is durable (give_back).
 *
 * CHECKPOINT. (1) write the open pack page (seal it) and the run, (2)
 * release the old namespace chain and deleted files' index chains and
 * extents to pending, (3) put the dirty inodes, entries and pack
 * pages into the trees and flush them (replaced pages -> pending), lower H over
 * a free extent that ends at it, write the new namespace chain, (4) fsync store.db, (5) write superblock g+1
 * into page (g+1)%2 naming checkpoint_lsn = last applied LSN, the WAL tail
 * position, H and the trees' roots, (6) fsync store.db, (7) wal_recycle,
 * pending -> free, clear the dirty sets (namespace and pack pages), cut
 * store.db to H pages. Any failure sets the sticky error: every later
 * mutator returns -EIO. When nothing changed since the last checkpoint and
 * there is nothing to give back, steps 1-4 are skipped (the new superblock
 * names the same chain: a "light" checkpoint).
 *
 * LOCKS. store_checkpoint runs on the commit thread (or in store_open /
 * store_close, before or after any other thread uses the store). It holds
 * s->lock exclusive while sealing the open page, shared while serializing
 * the namespace (st_nst_update, ns_serialize: REQUIRES_SHARED) and while reading the
 * counters the new superblock names, and not at all during writes of the
 * new chain, fsyncs and the superblock. ns_parse and st_ns_load_chain run
 * only during open, before any other thread can see the store (NO_TSA).
 * st_sb_encode/st_sb_decode are pure.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "store_int.h"

/* ------------------------------------------------------------------ */
/* byte buffers (stream encoding and parsing)                          */

/* A growable byte buffer; the first allocation failure sticks in err. */
struct bbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

/* A bounds-checked reader over a byte buffer; the first error sticks. */
struct rd {
	const uint8_t *p;
	size_t len, pos;
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
/* superblock                                                          */

void st_sb_encode(const struct store_sb *sb, uint8_t *page)
{
	uint8_t *p = page + PAGER_HDR_SIZE;
	struct pager_hdr h = {
		.type = PAGER_SUPER, .pgno = sb->gen % 2, .lsn = sb->checkpoint_lsn, .next = 0, .used = 184,
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
	bz_put_le64(p + 136, sb->ino_root);
	bz_put_le64(p + 144, sb->ino_count);
	bz_put_le64(p + 152, sb->dent_root);
	bz_put_le64(p + 160, sb->dent_count);
	bz_put_le64(p + 168, sb->pack_root);
	bz_put_le64(p + 176, sb->pack_count);
	pager_seal(page, &h);
}

/* 0 or -EBADMSG; *why names the failed check. */
int st_sb_decode(const uint8_t *page, uint64_t pgno, struct store_sb *ret, const char **why)
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
	if (bz_get_le32(p + 4) == 1) {
		*why = "format 1 (blazefs <= session 2)";
		return -EPROTO;
	}
	sb.format = bz_get_le32(p + 4);
	if (sb.format != SB_VERSION && sb.format != SB_VERSION_5 && sb.format != SB_VERSION_4 && sb.format != SB_VERSION_3 &&
	    sb.format != SB_VERSION_2) {
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
	sb.ino_root = sb.ino_count = sb.dent_root = sb.dent_count = sb.pack_root = sb.pack_count = 0;
	if (sb.format >= SB_VERSION_3) {
		sb.ino_root = bz_get_le64(p + 136);
		sb.ino_count = bz_get_le64(p + 144);
		sb.dent_root = bz_get_le64(p + 152);
		sb.dent_count = bz_get_le64(p + 160);
	}
	if (sb.format >= SB_VERSION_4) {
		sb.pack_root = bz_get_le64(p + 168);
		sb.pack_count = bz_get_le64(p + 176);
	}
	if (sb.ino_root >= sb.hwm || sb.dent_root >= sb.hwm || sb.pack_root >= sb.hwm || (sb.ino_root && sb.ino_root < 2) ||
	    (sb.dent_root && sb.dent_root < 2) || (sb.pack_root && sb.pack_root < 2) || !sb.ino_root != !sb.ino_count ||
	    !sb.dent_root != !sb.dent_count || !sb.pack_root != !sb.pack_count) {
		*why = "inconsistent namespace tree roots";
		return -EBADMSG;
	}
	if (sb.gen % 2 != pgno || sb.hwm < 2 || sb.ns_first >= sb.hwm || sb.ns_pages >= sb.hwm ||
	    sb.ns_bytes > sb.ns_pages * PAGER_PAYLOAD || (sb.ns_pages && sb.ns_first < 2)) {
		*why = "inconsistent superblock fields";
		return -EBADMSG;
	}
	*ret = sb;
	return 0;
}

/* ------------------------------------------------------------------ */
/* namespace checkpoint stream                                         */

struct ser {
	struct bbuf ino;
	uint64_t n_ino;
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
	if (S_ISDIR(a->mode)) /* format 5: a directory names its parent (the root: 0) */
		bb_var(&z->ino, a->ino == NS_ROOT_INO ? 0 : a->parent);
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

/* A file's index state: 'F', or 'G' (format 6) when an entry is split:
 * then every entry, and the tail, end with tpage (0 = not split). */
static void ser_file(struct bbuf *b, const struct sfile *f)
{
	bool g = f->has_otail && f->otail.tpage;

	for (uint32_t i = 0; i < f->n_tail && !g; i++)
		g = f->tail[i].tpage != 0;
	bb_u8(b, g ? 'G' : 'F');
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
		bb_var(b, e->npages);
		bb_var(b, e->pg_off);
		if (g)
			bb_var(b, e->tpage);
	}
	/* stream version 4: the open chunk (store_chunk.c) */
	bb_var(b, f->ostart);
	bb_u8(b, f->has_otail);
	if (f->has_otail) {
		bb_var(b, f->otail.page);
		bb_var(b, f->otail.raw_len);
		bb_var(b, f->otail.frame_len);
		bb_var(b, f->otail.npages);
		bb_var(b, f->otail.pg_off);
		if (g)
			bb_var(b, f->otail.tpage);
	}
}

/* Parses the 'K' record into s->packs: pages increasing inside [2, H),
 * live bytes in (0, page payload]. */
static int parse_packs(struct store *s, struct rd *r, size_t len) NO_TSA
{
	uint64_t n = rd_var(r), prev = 1;
	int err = 0;

	if (n > len || s->packs.n)
		r->err = -EBADMSG;
	for (uint64_t i = 0; i < n && !r->err; i++) {
		uint64_t pg = rd_var(r), live = rd_var(r);
		if (r->err || pg <= prev || pg >= s->hwm || live == 0 || live > PAGER_PAYLOAD) {
			r->err = -EBADMSG;
			break;
		}
		err = st_pack_live_add(s, pg, (uint32_t)live);
		if (err < 0)
			break;
		if (live < PAGER_PAYLOAD / 2)
			s->clean_due = true; /* the first checkpoint looks for pages to clean */
		prev = pg;
	}
	return err;
}

/* Serializes the stream's head into *out (s->lock shared): format 4
 * keeps only the counters here (the free extents follow); inodes,
 * attributes, index states, entries and the pack pages' live bytes are in
 * the trees (store_nstree.c), so the stream does not grow with the store. */
static int ns_serialize(struct store *s, struct bbuf *out) REQUIRES_SHARED(store_cap)
{
	uint8_t hdr[8];

	bz_put_le32(hdr, NS_MAGIC);
	bz_put_le32(hdr + 4, NS_VERSION);
	bb_put(out, hdr, 8);
	bb_var(out, ns_next_ino(s->ns));
	bb_var(out, s->stored_bytes);
	bb_var(out, s->logical_bytes);
	bb_var(out, s->clean_due ? NS_FLAG_CLEAN_DUE : 0);
	return out->err;
}

int st_ns_ser_one(struct store *s, uint64_t ino, uint8_t **ret_p, size_t *ret_len) REQUIRES_SHARED(store_cap)
{
	struct ser z = {0};
	struct ns_visit v = {.inode = ser_inode, .xattr = ser_xattr};
	const struct sfile *f;
	int r = ns_walk_inode(s->ns, ino, &v, &z);

	if (r == 0)
		r = z.ino.err;
	if (r < 0)
		goto out;
	f = st_ftab_get(&s->files, ino);
	if (f)
		ser_file(&z.ino, f);
	r = z.ino.err;
	if (r < 0)
		goto out;
	*ret_p = z.ino.p;
	*ret_len = z.ino.len;
	z.ino.p = NULL;
out:
	free(z.ino.p);
	return r;
}

/* The 'P' record: free ∪ pending as sorted, coalesced extents (stream
 * version 3). The two sets are disjoint (st_release refuses a page that is
 * free), so their union is well defined. */
static int ser_free(struct bbuf *b, const struct freemap *a, const struct freemap *c)
{
	struct freemap u = {0};
	int r = fm_merge(&u, a);
	if (r == 0)
		r = fm_merge(&u, c);
	if (r < 0)
		goto out;
	bb_u8(b, 'P');
	bb_var(b, u.n);
	for (size_t i = 0; i < u.n; i++) {
		bb_var(b, u.v[i].start);
		bb_var(b, u.v[i].len);
	}
	r = b->err;
out:
	fm_free(&u);
	return r == -EEXIST ? -EIO : r;
}

/* Worst-case encoded size of the free extents record of n extents inside
 * [2, hwm): two varints of values <= hwm each. */
static size_t free_bytes_max(size_t n, uint64_t hwm)
{
	size_t v = 1;
	for (uint64_t x = hwm; x >= 128; x >>= 7)
		v++;
	return 1 + 10 + n * 2 * v;
}

/* Parses a 'P' record into s->free: extents sorted, non-empty, neither
 * overlapping nor touching, inside [2, H). */
static int parse_free(struct store *s, struct rd *r, size_t len) NO_TSA
{
	uint64_t n = rd_var(r), prev_end = 0;
	int err = 0;

	if (n > len || s->free.n)
		r->err = -EBADMSG;
	for (uint64_t i = 0; i < n && !r->err; i++) {
		uint64_t start = rd_var(r), cnt = rd_var(r);
		if (r->err || cnt == 0 || start < 2 || start <= prev_end || start >= s->hwm || cnt > s->hwm - start) {
			r->err = -EBADMSG;
			break;
		}
		err = fm_add(&s->free, start, cnt);
		if (err < 0)
			break;
		prev_end = start + cnt;
	}
	return err == -EEXIST ? -EBADMSG : err;
}

/* Parses records until the end of r (or an error: r->err for a malformed
 * one, the return value for others). only != 0: the value of inode only in
 * the inode tree (its I first, then its X and F records, all naming it);
 * else a stream of the given version (format 3's holds K and P only). */
static int parse_recs(struct store *s, struct rd *r, uint32_t version, uint64_t only, unsigned *seen_k) NO_TSA
{
	int err = 0;
	struct sfile *f = NULL;
	uint64_t nrec = 0;

	while (!r->err && r->pos < r->len) {
		uint8_t tag = rd_u8(r);
		/* a tree value: one inode's I, X, F or G; a format 4 stream: P; a
		 * format 3 stream: K, P */
		if ((only && (strchr("IXFG", tag) == NULL || (nrec == 0) != (tag == 'I'))) ||
		    (!only && version == NS_VERSION && tag != 'P') ||
		    (!only && version == NS_VERSION_3 && tag != 'K' && tag != 'P') || tag == 0) {
			r->err = -EBADMSG;
			break;
		}
		nrec++;
		if (tag == 'I') {
			struct ns_attr a = {0};
			a.ino = rd_var(r);
			a.mode = rd_var32(r);
			a.uid = rd_var32(r);
			a.gid = rd_var32(r);
			a.nlink = rd_var32(r);
			a.size = rd_var(r);
			a.rdev = rd_var32(r);
			a.atime_ns = (int64_t)rd_le64(r);
			a.mtime_ns = (int64_t)rd_le64(r);
			a.ctime_ns = (int64_t)rd_le64(r);
			a.append_ns = (int64_t)rd_le64(r);
			if (only && a.ino != only)
				r->err = -EBADMSG;
			uint64_t sl = rd_var(r);
			const uint8_t *t = rd_bytes(r, sl > NS_SYMLINK_MAX ? SIZE_MAX : (size_t)sl);
			if (only && s->sb.format >= SB_VERSION_5 && S_ISDIR(a.mode)) {
				a.parent = rd_var(r); /* format 5; the root's is 0, every other one's not */
				if ((a.ino == NS_ROOT_INO) != (a.parent == 0) || a.parent == a.ino)
					r->err = -EBADMSG;
			}
			if (r->err)
				break;
			err = ns_load_inode(s->ns, &a, (const char *)t, (size_t)sl);
			if (err < 0) {
				bz_err("store.db: namespace checkpoint: inode %llu: %s", (unsigned long long)a.ino,
				       strerror(-err));
				goto out;
			}
		} else if (tag == 'X') {
			uint64_t ino = rd_var(r), nl = rd_var(r);
			if (only && ino != only)
				r->err = -EBADMSG;
			const uint8_t *name = rd_bytes(r, nl > NS_XATTR_NAME_MAX ? SIZE_MAX : (size_t)nl);
			uint64_t vl = rd_var(r);
			const uint8_t *val = rd_bytes(r, vl > NS_XATTR_VALUE_MAX ? SIZE_MAX : (size_t)vl);
			if (r->err)
				break;
			err = ns_load_xattr(s->ns, ino, (const char *)name, (size_t)nl, val, (size_t)vl);
			if (err < 0) {
				bz_err("store.db: namespace checkpoint: attribute of inode %llu: %s",
				       (unsigned long long)ino, strerror(-err));
				goto out;
			}
		} else if (tag == 'D') {
			uint64_t dir = rd_var(r), ino = rd_var(r), nl = rd_var(r);
			const uint8_t *name = rd_bytes(r, nl > NS_NAME_MAX ? SIZE_MAX : (size_t)nl);
			if (r->err)
				break;
			err = ns_load_dirent(s->ns, dir, (const char *)name, (size_t)nl, ino);
			if (err < 0) {
				bz_err("store.db: namespace checkpoint: entry %.*s in %llu: %s", (int)nl,
				       (const char *)name, (unsigned long long)dir, strerror(-err));
				goto out;
			}
		} else if (tag == 'F' || (tag == 'G' && only)) {
			bool g = tag == 'G'; /* format 6: entries end with tpage */
			f = calloc(1, sizeof(*f));
			if (!f) {
				err = -ENOMEM;
				goto out;
			}
			f->ino = rd_var(r);
			f->stored_bytes = rd_var(r);
			f->raw_bytes = rd_var(r);
			f->n_full = rd_var(r);
			f->last_full = rd_var(r);
			uint64_t nt = rd_var(r);
			if (r->err || (only && f->ino != only) || nt >= IDX_PER_PAGE || (f->n_full % IDX_PER_PAGE) || (!f->n_full != !f->last_full) ||
			    f->last_full >= s->hwm || st_ftab_get(&s->files, f->ino)) {
				r->err = -EBADMSG;
				break;
			}
			f->loaded = f->n_full == 0;
			for (uint64_t i = 0; i < nt && !r->err; i++) {
				struct ient e;
				e.off = rd_var(r);
				e.page = rd_var(r);
				e.raw_len = rd_var32(r);
				e.frame_len = rd_var32(r);
				e.npages = rd_var32(r);
				e.pg_off = rd_var32(r);
				e.tpage = g ? rd_var(r) : 0;
				if (!r->err && st_sfile_tail_push(f, &e) < 0) {
					err = -ENOMEM;
					goto out;
				}
			}
			if (r->err)
				break;
			struct ns_attr fa;
			if (ns_getattr(s->ns, f->ino, &fa) < 0) {
				r->err = -EBADMSG;
				break;
			}
			if (version == 3) {
				f->ostart = fa.size; /* every record was a sealed chunk */
			} else {
				f->ostart = rd_var(r);
				uint8_t has = rd_u8(r);
				if (has) {
					f->otail.off = f->ostart;
					f->otail.page = rd_var(r);
					f->otail.raw_len = rd_var32(r);
					f->otail.frame_len = rd_var32(r);
					f->otail.npages = rd_var32(r);
					f->otail.pg_off = rd_var32(r);
					f->otail.tpage = g ? rd_var(r) : 0;
					f->has_otail = true;
				}
				if (!r->err && (has > 1 || f->ostart > fa.size ||
					       (has ? f->ostart + f->otail.raw_len != fa.size || !f->otail.raw_len
						    : f->ostart != fa.size)))
					r->err = -EBADMSG;
			}
			if (r->err)
				break;
			f->olen = (uint32_t)(fa.size - f->ostart);
			st_reloc_note(s, f); /* relocation's candidates, while the file is at hand (a tree load) */
			err = st_ftab_put(&s->files, f);
			if (err < 0)
				goto out;
			f = NULL;
		} else if (tag == 'K') {
			if ((*seen_k)++)
				r->err = -EBADMSG;
			else
				err = parse_packs(s, r, r->len);
			if (err < 0)
				goto out;
		} else if (tag == 'P') {
			err = parse_free(s, r, r->len);
			if (err < 0 && err != -EBADMSG)
				goto out;
			if (err < 0)
				r->err = err;
		} else {
			r->err = -EBADMSG;
		}
	}
out:
	st_sfile_free(f);
	return err;
}

int st_ns_parse_one(struct store *s, uint64_t ino, const uint8_t *p, size_t len) NO_TSA
{
	struct rd r = {.p = p, .len = len};
	unsigned seen_k = 0;
	int err = parse_recs(s, &r, NS_VERSION_2, ino, &seen_k);

	if (err == 0 && (r.err || len == 0))
		err = -EBADMSG;
	return err;
}

/* Parses a namespace stream into s (at open, before any other thread). */
static int ns_parse(struct store *s, const uint8_t *p, size_t len) NO_TSA
{
	struct rd r = {.p = p, .len = len};
	int err = -EBADMSG;
	uint32_t version;
	unsigned seen_k = 0;

	if (len < 8 + 9 || bz_get_le32(p) != NS_MAGIC)
		goto out;
	version = bz_get_le32(p + 4);
	if (s->sb.format >= SB_VERSION_4  ? version != NS_VERSION
	    : s->sb.format == SB_VERSION_3 ? version != NS_VERSION_3
					   : version != NS_VERSION_2 && version != 3)
		goto out; /* 3: before open chunks ('F' without them); 5 goes with format 3, 6 with 4 */
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
	if (version == NS_VERSION) {
		uint64_t flags = rd_var(&r);
		if (flags & ~(uint64_t)NS_FLAG_CLEAN_DUE)
			r.err = -EBADMSG;
		s->clean_due = flags & NS_FLAG_CLEAN_DUE;
	}
	err = parse_recs(s, &r, version, 0, &seen_k);
	if (err < 0)
		goto out;
	err = -EBADMSG;
	if (!seen_k && version != NS_VERSION)
		r.err = -EBADMSG; /* every stream of versions 3-5 has its 'K' record */
	if (r.err)
		goto out;
	ns_set_next_ino(s->ns, next_ino);
	err = 0;
out:
	return err;
}

/* Reads the namespace chain named by sb (at open). */
int st_ns_load_chain(struct store *s, const struct store_sb *sb) NO_TSA
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
		r = st_vec_push(&s->chain, pg);
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

/* Releases every deleted file's index chain: each page and the extents
 * its entries name (the tails' extents went at file_drop). An unreadable
 * page leaks what it names (logged); a double release fails the
 * checkpoint. */
static int release_dead_chains(struct store *s)
{
	uint8_t page[PAGER_PAGE_SIZE];
	int r = 0;

	for (size_t i = 0; i < s->dead.n && r == 0; i++) {
		uint64_t pg = s->dead.v[i];
		uint64_t guard = 0;
		while (pg && guard++ < s->hwm && r == 0) {
			struct pager_hdr h;
			if (pager_read(s->pager, pg, PAGER_INDEX, page, &h) < 0 || h.used % IDX_ENTRY_SIZE) {
				bz_warn("store.db: index chain of a deleted file unreadable at page %llu: pages leak",
					(unsigned long long)pg);
				break;
			}
			for (uint32_t k = 0; k < h.used / IDX_ENTRY_SIZE && r == 0; k++) {
				struct ient e;
				st_index_entry_decode(page + PAGER_HDR_SIZE + k * IDX_ENTRY_SIZE, &e);
				r = st_release_entry(s, &e);
			}
			if (r == 0)
				r = st_release(s, pg, 1);
			pg = h.next;
		}
	}
	s->dead.n = 0;
	return r;
}

/* Whether a checkpoint now could give space at the end of store.db back:
 * free pages end at the high-water mark, or they end right below the
 * durable namespace chain and the trees' root pages, which this checkpoint
 * moves down (a chain written while nothing was free lands at the end), or below stranded
 * pack pages, which its cleaning moves down (st_pack_stranded). */
bool st_tail_free(const struct store *s)
{
	uint64_t strand;

	if (!s->free.n)
		return false;
	if (st_pack_stranded(s, &strand, 1))
		return true; /* cleaning moves it lower, then the end is free */
	if (st_reloc_due(s))
		return true; /* relocation moves a file's chunks lower (store_reloc.c) */
	uint64_t end = s->free.v[s->free.n - 1].start + s->free.v[s->free.n - 1].len, above = 0;
	for (size_t i = 0; i < s->chain.n; i++)
		above += s->chain.v[i] >= end;
	/* the trees' roots move down too (store_nstree.c touch_ends: a root
	 * above free space is rewritten by first fit) */
	above += s->sb.ino_root >= end;
	above += s->sb.dent_root >= end;
	above += s->sb.pack_root >= end;
	return end + above == s->hwm;
}

/* After the superblock naming s->hwm is durable: store.db is cut to H
 * pages. Never below what a durable superblock names (the caller's
 * superblock is the durable one). A failing ftruncate is an I/O error like
 * any other (the caller enters the sticky error state); the checkpoint
 * itself is durable and the pages past H are unused either way. */
static int give_back(struct store *s)
{
	uint64_t size = 0, want = s->sb.hwm * (uint64_t)PAGER_PAGE_SIZE;
	int r = vfs_size(s->db_f, &size);

	if (r < 0 || size <= want)
		goto out;
	r = vfs_ftruncate(s->db_f, want);
	if (r < 0)
		goto out;
	st_set_u64(&s->truncations, s->truncations + 1);
	bz_info("store.db: gave %llu unused bytes back (now %llu pages)", (unsigned long long)(size - want),
		(unsigned long long)s->sb.hwm);
out:
	return r;
}

int store_checkpoint(struct store *s)
{
	struct bbuf b = {0};
	struct u64vec chain = {0};
	uint8_t page[PAGER_PAGE_SIZE];
	struct store_sb sb, tsb = {0};
	int r;

	if (st_load_error(s))
		return -EIO;
	if (s->read_only)
		return -EROFS;
	if (s->last_applied != s->last_appended) {
		bz_err("store: checkpoint with unapplied batches (applied %llu, appended %llu)",
		       (unsigned long long)s->last_applied, (unsigned long long)s->last_appended);
		return -EINVAL;
	}
	uint64_t t0 = bz_now_ns();

	if (!s->dirty && !s->dead.n && !s->clean_due && !st_tail_free(s) && s->sb.format == SB_VERSION) {
		/* Nothing changed since the last checkpoint (a mount without
		 * replay, a close without writes): the durable namespace chain
		 * and free list stay valid; only the WAL position moves. */
		sb = s->sb;
		sb.gen = s->sb.gen + 1;
		sb.checkpoint_lsn = s->last_applied;
		wal_tail_pos(s->wal, &sb.wal_pos);
		sb.checkpoints = s->sb.checkpoints + 1;
		st_sb_encode(&sb, page);
		r = pager_write(s->pager, sb.gen % 2, page);
		if (r == 0)
			r = pager_sync(s->pager);
		if (r < 0)
			goto fail;
		wal_recycle(s->wal);
		s->sb = sb;
		goto done;
	}

	/* 1. write the changed open chunks as tails, clean, seal the open
	 * pack page */
	bz_cap_wrlock(&s->lock, &store_cap);
	/* the trees written whole (step 3) walk the whole namespace: what a
	 * format 5 store has not loaded yet is loaded now, from the old ones */
	r = ns_dirty_all(s->ns) || s->kdirty_all ? st_ns_load_all(s) : 0;
	if (r == 0)
		r = st_oc_write_tails(s, s->last_applied);
	if (r == 0)
		r = st_pack_clean(s, s->last_applied);
	if (r == 0)
		r = st_relocate(s, s->last_applied);
	uint64_t sealed = s->open_used ? s->open_pgno : 0;
	if (r < 0)
		; /* failed below */
	else if (s->open_pgno && s->open_used)
		r = st_data_page_flush(s, 0);
	else if (s->open_pgno)
		r = fm_add(&s->free, s->open_pgno, 1); /* allocated, never written */
	if (r == 0)
		s->open_pgno = 0;
	if (r == 0 && sealed)
		r = st_pack_closed(s, sealed); /* every frame in it was deleted meanwhile */
	if (r == 0)
		r = st_run_flush(s);
	bz_cap_wrunlock(&s->lock, &store_cap);
	if (r < 0)
		goto fail;

	/* 2. release deleted files' index chains and extents, the old chain
	 * (mutant reuse_durable: the old chain is free at once; the crash
	 * tests must catch it) */
	r = release_dead_chains(s);
	for (size_t i = 0; r == 0 && i < s->chain.n; i++)
		r = st_mutant() == STORE_MUTANT_REUSE_DURABLE ? fm_add(&s->free, s->chain.v[i], 1) :
								st_release(s, s->chain.v[i], 1);
	if (r < 0)
		goto fail;

	/* 3. the namespace trees take what changed (store_nstree.c), then
	 * the new namespace chain */
	bz_cap_rdlock(&s->lock, &store_cap);
	r = st_nst_update(s, s->last_applied, &tsb);
	if (r == 0)
		r = ns_serialize(s, &b);
	bz_cap_rdunlock(&s->lock, &store_cap);
	if (r < 0)
		goto fail;
	while (chain.n * (uint64_t)PAGER_PAYLOAD < b.len + free_bytes_max(s->free.n + s->pending.n, s->hwm) + 9) {
		r = st_vec_push(&chain, st_page_alloc(s));
		if (r < 0)
			goto fail;
	}
	/* Give back the pages at the end of store.db that are free or pending
	 * (pending ones are named by the durable superblock, but nothing
	 * writes them before the next superblock, which no longer names
	 * them, is durable: store.db is cut only after that, in step 7). */
	uint64_t cut = fm_union_tail(&s->free, &s->pending, s->hwm);
	if (cut < s->hwm) {
		fm_cut(&s->free, cut);
		fm_cut(&s->pending, cut);
		st_set_u64(&s->hwm, cut);
		/* mutant truncate_early: cut store.db now, before the superblock
		 * naming the lower H is durable (the crash tests must catch it) */
		if (st_mutant() == STORE_MUTANT_TRUNCATE_EARLY)
			(void)vfs_ftruncate(s->db_f, cut * (uint64_t)PAGER_PAGE_SIZE);
	}
	r = ser_free(&b, &s->free, &s->pending);
	if (r < 0)
		goto fail;
	bb_u8(&b, 'E');
	bb_le64(&b, b.err ? 0 : XXH3_64bits(b.p, b.len));
	r = b.err;
	if (r < 0)
		goto fail;
	/* The chain was sized for the worst-case free list: the stream is
	 * spread evenly over its pages (each holds at least one byte; none
	 * is left empty, docs/FORMAT.md §6). */
	size_t done = 0, per = chain.n ? b.len / chain.n : 0, extra = chain.n ? b.len % chain.n : 0;
	for (size_t i = 0; i < chain.n; i++) {
		size_t n = per + (i < extra);
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
	sb.format = SB_VERSION;
	sb.ino_root = tsb.ino_root;
	sb.ino_count = tsb.ino_count;
	sb.dent_root = tsb.dent_root;
	sb.dent_count = tsb.dent_count;
	sb.pack_root = tsb.pack_root;
	sb.pack_count = tsb.pack_count;
	bz_cap_rdlock(&s->lock, &store_cap);
	sb.next_ino = ns_next_ino(s->ns);
	sb.stored_bytes = s->stored_bytes;
	sb.logical_bytes = s->logical_bytes;
	bz_cap_rdunlock(&s->lock, &store_cap);
	sb.data_pages = s->data_pages;
	sb.checkpoints = s->sb.checkpoints + 1;
	st_sb_encode(&sb, page);
	r = pager_write(s->pager, sb.gen % 2, page);
	if (r < 0)
		goto fail;
	r = pager_sync(s->pager);
	if (r < 0)
		goto fail;

	/* 6. the new checkpoint is durable. Only now do pages the previous
	 * superblock named become free: the online scrub (store_scrub.c,
	 * SAFETY WITHOUT LOCKS) relies on frees following a superblock write. */
	wal_recycle(s->wal);
	s->sb = sb;
	if (s->pending.n)
		s->reloc_stuck = false; /* more free space: a file may move down now */
	if (fm_merge(&s->free, &s->pending) < 0)
		bz_warn("store: out of memory: free pages leak");
	fm_clear(&s->pending);
	st_vec_free(&s->chain);
	s->chain = chain;
	chain = (struct u64vec){0};
	s->dirty = false;
	bz_cap_wrlock(&s->lock, &store_cap);
	st_reloc_fold(s); /* the relocation candidate cache reads the sets */
	ns_dirty_clear(s->ns); /* written: the sets start again (kept if anything failed) */
	st_pack_dirty_clear(s);
	st_nst_estimate(s);
	bz_cap_wrunlock(&s->lock, &store_cap);
	st_set_u64(&s->dead_bytes, 0);
	st_set_u64(&s->ns_est, b.len);
	st_set_u64(&s->ns_est_base, b.len);
	st_set_u64(&s->tree_est_base, st_get_u64(&s->tree_est));
	r = give_back(s);
	if (r < 0) {
		bz_err("store.db: giving unused space back failed: %s", strerror(-r));
		goto fail;
	}
done:
	st_free_mirror(s);
	st_set_u64(&s->checkpoints, st_get_u64(&s->checkpoints) + 1);
	st_set_u64(&s->checkpoint_lsn, sb.checkpoint_lsn);
	st_set_u64(&s->wal_used, wal_used_since_checkpoint(s->wal));
	bz_info("store: checkpoint %llu at lsn %llu: %zu namespace pages, %llu pages, %llu us",
		(unsigned long long)sb.gen, (unsigned long long)sb.checkpoint_lsn, (size_t)sb.ns_pages,
		(unsigned long long)sb.hwm, (unsigned long long)((bz_now_ns() - t0) / 1000));
	r = 0;
	goto out;
fail:
	r = st_set_error(s, r, "checkpoint");
out:
	free(b.p);
	st_vec_free(&chain);
	return r;
}
