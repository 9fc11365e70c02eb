/* test_store_v2.c — the PageStore's later structures against memory and
 * recording vfs backends: extents reclaimed and store.db given back, packed
 * pages cleaned, holes, format 1 refused, the online scrub of metadata,
 * relocation, checkpoints that write only what changed, the namespace and
 * pack table loaded on demand, and the upgrades from formats 2-4 (stores in
 * tests/fuzz/corpus: the source directory is argv[1]). The model is
 * store_model.c; the earlier contracts are in test_store.c. */
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

/* ---- format 2: reclaimed extents, store.db given back, holes, v1 refused ---- */

static uint64_t db_size(struct vfs *v)
{
	struct vfs_file *f = NULL;
	uint64_t n = 0;
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDONLY, &f) == 0);
	T_ASSERT(vfs_size(f, &n) == 0);
	vfs_close(f);
	return n;
}

/* Deleting a file frees its extents (frames of more than one page: here
 * 20000 incompressible bytes each, with full index pages), the space is
 * reused before store.db grows, and free space at its end is given back
 * to the disk after a checkpoint. */
static void test_reclaim(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_stats st0, st1, st2;

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	uint64_t keep = sm_mk_file(&m, &b, NS_ROOT_INO, "keep");
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	sm_append(&m, &b, sm_model_file(&m, keep), 3000, true);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	uint64_t base = db_size(v);
	for (int round = 0; round < 3; round++) {
		char name[16];
		snprintf(name, sizeof(name), "big%d", round);
		uint64_t x = sm_mk_file(&m, &b, NS_ROOT_INO, name);
		T_CHECK_EQ(sm_commit(s, &m, &b), 0);
		for (int i = 0; i < 150; i++) { /* 150 entries: a full index page and a tail */
			sm_append(&m, &b, sm_model_file(&m, x), 20000, false);
			if (i % 5 == 4) {
				T_CHECK_EQ(sm_commit(s, &m, &b), 0);
				T_CHECK_EQ(store_checkpoint(s), 0); /* the test's WAL is 1 MiB */
			}
		}
		T_CHECK_EQ(store_checkpoint(s), 0);
		store_stats(s, &st0);
		T_CHECK(st0.pages_total * 4096 >= 150u * 20000);
		T_CHECK_EQ(sm_verify(s, &m, 20), 0);
		T_CHECK_EQ(sm_rm_file(&m, &b, NS_ROOT_INO, name, x), 0);
		T_CHECK(!store_need_checkpoint(s));
		T_CHECK_EQ(sm_commit(s, &m, &b), 0);
		/* the deleted file holds most of store.db: a checkpoint is due
		 * (its space is reusable only after one) */
		T_CHECK(store_need_checkpoint(s));
		/* the checkpoint that drops the file releases its pages; they
		 * are free once it is durable; the next one gives them back */
		T_CHECK_EQ(store_checkpoint(s), 0);
		T_CHECK_EQ(store_checkpoint(s), 0);
		store_stats(s, &st1);
		T_CHECK(st1.pages_released >= 150u * 5);
		T_CHECK(db_size(v) <= base + 16 * 4096);
		T_CHECK(st1.pages_total * 4096 == db_size(v));
		T_CHECK_EQ(sm_verify(s, &m, 5), 0);
	}
	/* a free extent in the middle: with "late" written after "mid",
	 * deleting "mid" leaves a hole; relocation moves "late" (at the end)
	 * into it (store_reloc.c) and the end is cut; "again" then takes the
	 * rest of the hole before store.db grows */
	uint64_t mid = sm_mk_file(&m, &b, NS_ROOT_INO, "mid");
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	for (int i = 0; i < 20; i++) {
		sm_append(&m, &b, sm_model_file(&m, mid), 20000, false);
		if (i % 5 == 4) {
			T_CHECK_EQ(sm_commit(s, &m, &b), 0);
			T_CHECK_EQ(store_checkpoint(s), 0);
		}
	}
	uint64_t late = sm_mk_file(&m, &b, NS_ROOT_INO, "late");
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	sm_append(&m, &b, sm_model_file(&m, late), 9000, false);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(sm_rm_file(&m, &b, NS_ROOT_INO, "mid", mid), 0);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_stats(s, &st1);
	/* either "late" moved down into the hole, or first fit had already
	 * placed it below (the namespace trees' roots no longer pin the end,
	 * so the earlier rounds gave all their space back): either way the
	 * end is cut to what keep, late and the metadata need */
	T_CHECK(st1.pages_relocated >= 3 || st1.pages_total <= 16);
	T_CHECK(st1.pages_free <= 8);
	T_CHECK_EQ(sm_verify(s, &m, 5), 0);
	uint64_t again = sm_mk_file(&m, &b, NS_ROOT_INO, "again");
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	for (int i = 0; i < 15; i++) {
		sm_append(&m, &b, sm_model_file(&m, again), 20000, false);
		if (i % 5 == 4)
			T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	}
	store_stats(s, &st2);
	/* growth by at most what the free pages could not hold: when the
	 * hole is there, "again" (5-page chunks) fills it first; a few
	 * scattered free pages (old chain and tree pages) hold none of them */
	if (st1.pages_free >= 15)
		T_CHECK(st2.pages_total <= st1.pages_total + 15u * 5 - st1.pages_free / 5 * 5 + 1);
	else
		T_CHECK(st2.pages_total <= st1.pages_total + 15u * 5 + 1);
	T_CHECK_EQ(sm_verify(s, &m, 20), 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(sm_open_store(v, &s) == 0);
	T_CHECK_EQ(sm_verify(s, &m, 20), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}

static uint64_t check_errors(struct store *s, struct store_check_report *rep)
{
	memset(rep, 0, sizeof(*rep));
	if (store_check(s, 0, NULL, NULL, rep) != 0)
		return 1000;
	return rep->errors + rep->unreachable;
}

/* Pack pages: live bytes per page, kept across a checkpoint (the 'K'
 * record) and a crash (WAL replay); a deleted file's packed frames
 * (inline tail and full index pages) give their pages back once no other
 * file's frame is in them. */
static void test_pack_reclaim(void)
{
	struct vfs *v, *crash;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_stats st0, st1, st2;
	struct store_check_report rep;

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	uint64_t a = sm_mk_file(&m, &b, NS_ROOT_INO, "a");
	uint64_t c = sm_mk_file(&m, &b, NS_ROOT_INO, "c");
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	for (int i = 0; i < 150; i++) { /* a: a full index page of packed entries and a tail */
		/* compressible records of chunk/2 bytes and more: sealed chunks
		 * whose frames are small enough to be packed */
		sm_append_packable(&m, &b, sm_model_file(&m, a), 2100);
		if (i % 10 == 0)
			sm_append_packable(&m, &b, sm_model_file(&m, c), 2048);
		if (i % 50 == 49) {
			T_CHECK_EQ(sm_commit(s, &m, &b), 0);
			T_CHECK_EQ(store_checkpoint(s), 0);
		}
	}
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_stats(s, &st0);
	T_CHECK(st0.pack_pages >= 10);
	T_CHECK(st0.pack_live_bytes == st0.stored_bytes); /* every frame is packed */
	T_CHECK_EQ(check_errors(s, &rep), 0);
	/* reopened: the counts come back from the checkpoint (format 5 loads
	 * the pack table in the background: once that is done) */
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(sm_open_store(v, &s) == 0);
	while (store_ns_load_more(s) == 1)
		;
	store_stats(s, &st1);
	T_CHECK_EQ(st1.pack_pages, st0.pack_pages);
	T_CHECK_EQ(st1.pack_live_bytes, st0.pack_live_bytes);
	/* delete a; a crash before the checkpoint replays the unlink */
	T_CHECK_EQ(sm_rm_file(&m, &b, NS_ROOT_INO, "a", a), 0);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_ASSERT(vfs_mem_clone(v, &crash) == 0);
	T_CHECK_EQ(store_close(s), 0);
	for (int k = 0; k < 2; k++) {
		T_ASSERT(sm_open_store(k ? v : crash, &s) == 0);
		T_CHECK_EQ(check_errors(s, &rep), 0);
		T_CHECK_EQ(store_checkpoint(s), 0); /* releases a's full index page's frames */
		T_CHECK_EQ(store_checkpoint(s), 0);
		store_stats(s, &st2);
		T_CHECK_EQ(st2.pack_live_bytes, st2.stored_bytes);
		/* c's 15 frames were in 15 mostly dead pages: cleaning (the
		 * second checkpoint: the first released a's index page frames
		 * after cleaning) moved them into as few as they fit in */
		T_CHECK(st2.pack_pages <= st2.pack_live_bytes / 4048 + 2); /* as full as frames allow */
		T_CHECK(st2.pages_cleaned >= 10 || k == 1); /* k 1: cleaned before the close */
		/* the emptied pages are free or given back to the disk */
		T_CHECK(st2.pages_free + st0.pages_total >= st2.pages_total + st0.pack_pages - st2.pack_pages);
		T_CHECK_EQ(check_errors(s, &rep), 0);
		T_CHECK_EQ(sm_verify(s, &m, 5), 0);
		if (k == 0)
			T_CHECK_EQ(store_close(s), 0);
	}
	/* delete c too: no pack page is left */
	T_CHECK_EQ(sm_rm_file(&m, &b, NS_ROOT_INO, "c", c), 0);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_stats(s, &st2);
	T_CHECK_EQ(st2.pack_pages, 0);
	T_CHECK_EQ(st2.pack_live_bytes, 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(crash);
	vfs_destroy(v);
}

static void hole_add(struct batch *b, uint64_t ino, uint64_t off, uint64_t len)
{
	uint8_t hdr[REC_HDR_MAX];
	struct rec_hdr h = {.type = REC_DATA, .codec = REC_HOLE, .ino = ino, .off = off, .raw_len = len,
			    .hash = rec_hash("", 0)};
	int hl = rec_hdr_encode(&h, hdr, sizeof(hdr));
	T_ASSERT(hl > 0);
	sm_batch_put(b, hdr, (size_t)hl);
}

/* Reads [off, off+len) of ino and checks it against the pattern of a file
 * made of "head" (100 bytes at 0), a 1 MiB hole, "mid" (5000 bytes), then
 * a hole of 8 TiB. */
static int holes_check(struct store *s, uint64_t ino, uint64_t off, size_t len)
{
	static uint8_t want[70000], got[70000];
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		uint64_t at = off + i;
		uint8_t c = 0;
		if (at < 100)
			c = 'h';
		else if (at >= 100 + (1u << 20) && at < 100 + (1u << 20) + 5000)
			c = (uint8_t)('a' + at % 26);
		want[i] = c;
	}
	memset(got, 0xee, len);
	if (store_read(s, ino, off, got, len, &n) != 0 || n != len)
		return 1;
	return memcmp(want, got, len) != 0;
}

static void test_holes(void)
{
	struct vfs *v, *crash = NULL;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_stats st;
	static uint8_t mid[5000];
	const uint64_t h1 = 1u << 20, h2 = 8ull << 40;
	const uint64_t size = 100 + h1 + 5000 + h2;

	for (size_t i = 0; i < sizeof(mid); i++)
		mid[i] = (uint8_t)('a' + (100 + h1 + i) % 26);
	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	struct ns_op op = {.kind = NS_CREATE, .parent = NS_ROOT_INO, .name = "sparse", .name_len = 6,
			   .mode = S_IFREG | 0644};
	op.ino = ns_alloc_ino(m.ns);
	T_ASSERT(sm_nsop_add(&m, &b, &op) == 0);
	uint64_t ino = op.ino;
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	sm_frame_add(&b, REC_DATA, ino, 0, "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh",
		  100, false);
	hole_add(&b, ino, 100, h1);
	sm_frame_add(&b, REC_DATA, ino, 100 + h1, mid, sizeof(mid), true);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	hole_add(&b, ino, 100 + h1 + 5000, h2);
	hole_add(&b, ino + 100, 0, 10); /* no such inode: dropped */
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_ASSERT(ns_set_size(m.ns, ino, size, m.now - 1000) == 0);
	uint64_t got = 0;
	T_CHECK_EQ(store_file_size(s, ino, &got), 0);
	T_CHECK(got == size);
	store_stats(s, &st);
	T_CHECK(st.stored_bytes < 6000); /* the holes store nothing */
	T_CHECK(st.logical_bytes == 5100);
	T_CHECK(db_size(v) < (1u << 20)); /* nor does store.db grow by them */
	T_CHECK_EQ(holes_check(s, ino, 0, 4096), 0);
	T_CHECK_EQ(holes_check(s, ino, 90, 20), 0);
	T_CHECK_EQ(holes_check(s, ino, h1 - 1000, 70000), 0);  /* hole, "mid", hole */
	T_CHECK_EQ(holes_check(s, ino, 100 + h1 - 10, 5020), 0);
	T_CHECK_EQ(holes_check(s, ino, 5ull << 40, 65536), 0); /* deep in the 8 TiB hole */
	T_CHECK_EQ(holes_check(s, ino, size - 100, 100), 0);
	size_t n = 1;
	uint8_t x[16];
	T_CHECK_EQ(store_read(s, ino, size, x, sizeof(x), &n), 0);
	T_CHECK_EQ(n, 0);
	T_CHECK_EQ(sm_verify(s, &m, 0), 0); /* the namespace, sizes included */
	/* the WAL replays the holes (a crash image before any checkpoint) */
	T_ASSERT(vfs_mem_clone(v, &crash) == 0);
	T_CHECK_EQ(store_close(s), 0);
	for (int k = 0; k < 2; k++) {
		T_ASSERT(sm_open_store(k ? v : crash, &s) == 0);
		T_CHECK_EQ(store_file_size(s, ino, &got), 0);
		T_CHECK(got == size);
		T_CHECK_EQ(holes_check(s, ino, 0, 4096), 0);
		T_CHECK_EQ(holes_check(s, ino, h1 - 1000, 70000), 0);
		T_CHECK_EQ(holes_check(s, ino, size - 65536, 65536), 0);
		T_CHECK_EQ(sm_verify(s, &m, 0), 0);
		T_CHECK_EQ(store_close(s), 0);
	}
	vfs_destroy(crash);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}

/* A format 1 store (both superblocks version 1) is refused with -EPROTO
 * and left exactly as it was. */
static void test_format1_refused(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct vfs_file *f = NULL;
	static uint8_t before[3 * 4096], after[3 * 4096];
	size_t n = 0;

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	sm_workload(s, &m, 2, 5, 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDWR, &f) == 0);
	for (uint64_t pg = 0; pg < 2; pg++) {
		uint8_t page[PAGER_PAGE_SIZE];
		struct pager_hdr h;
		T_ASSERT(vfs_pread(f, page, sizeof(page), pg * 4096, &n) == 0 && n == sizeof(page));
		T_ASSERT(pager_check(page, pg, PAGER_SUPER, &h) == 0);
		T_CHECK_EQ(bz_get_le32(page + PAGER_HDR_SIZE + 4), 6);
		bz_put_le32(page + PAGER_HDR_SIZE + 4, 1);
		pager_seal(page, &h);
		T_ASSERT(vfs_pwrite(f, page, sizeof(page), pg * 4096) == 0);
	}
	T_ASSERT(vfs_pread(f, before, sizeof(before), 0, &n) == 0);
	vfs_close(f);
	T_CHECK_EQ(sm_open_store(v, &s), -EPROTO);
	struct store_opts o;
	sm_opts(&o, v);
	o.read_only = true;
	T_CHECK_EQ(store_open(&o, &s), -EPROTO);
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDONLY, &f) == 0);
	T_ASSERT(vfs_pread(f, after, sizeof(after), 0, &n) == 0);
	vfs_close(f);
	T_CHECK(memcmp(before, after, sizeof(before)) == 0);
	sm_model_free(&m);
	vfs_destroy(v);
}

/* Online metadata scrub (store_scrub_meta): the namespace walk covers both
 * superblocks and the whole chain, follows a checkpoint that replaced (and
 * freed, and reused) the chain it was walking by starting again, never
 * calling that damage; the index walk finds a damaged INDEX page, and stops
 * (-ENOENT) for a file deleted meanwhile. */
static int scrub_walk(struct store *s, unsigned what, uint64_t ino, struct store_scrub_meta *c, uint64_t *ret_pages,
		      unsigned *ret_bad)
{
	uint64_t pages = 0;
	int r = 0;

	*ret_bad = 0;
	for (int guard = 0; guard < 100000; guard++) {
		r = store_scrub_meta(s, what, ino, 1, c);
		if (r < 0)
			break;
		pages += c->done;
		if (c->bad && !*ret_bad)
			*ret_bad = c->bad;
		if (c->end)
			break;
	}
	*ret_pages = pages;
	return r;
}

static void test_scrub_meta(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_scrub_meta c;
	uint64_t pages;
	unsigned bad;

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	/* a namespace stream of several pages: format 4 keeps the names and
	 * the pack pages' live bytes in the trees, the stream holds the free
	 * extents ('P', about 3 bytes each): two files whose 2,100-byte
	 * chunks take a pack page each, alternately, 6,000 each; deleting
	 * one frees every other page */
	uint64_t pk = sm_mk_file(&m, &b, NS_ROOT_INO, "packs");
	uint64_t gone = sm_mk_file(&m, &b, NS_ROOT_INO, "gone");
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	for (int i = 0; i < 12000; i++) {
		sm_append(&m, &b, sm_model_file(&m, i % 2 ? gone : pk), 2100, false);
		T_CHECK_EQ(sm_commit(s, &m, &b), 0);
		if (i % 200 == 199)
			T_CHECK_EQ(store_checkpoint(s), 0); /* the test's WAL is 1 MiB */
	}
	T_CHECK_EQ(sm_rm_file(&m, &b, NS_ROOT_INO, "gone", gone), 0);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	uint64_t x = sm_mk_file(&m, &b, NS_ROOT_INO, "x");
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	for (int i = 0; i < 250; i++) { /* 250 records: 2 full index pages */
		sm_append(&m, &b, sm_model_file(&m, x), 2100, false); /* one chunk each (chunk_bytes 4096) */
		T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_checkpoint(s), 0);

	/* a whole clean namespace walk */
	memset(&c, 0, sizeof(c));
	T_CHECK_EQ(scrub_walk(s, STORE_SCRUB_NS, 0, &c, &pages, &bad), 0);
	T_CHECK_EQ(bad, 0);
	T_CHECK(c.end && !c.restarted);
	T_CHECK(c.total >= 2 + 3);
	T_CHECK_EQ(pages, c.total);

	/* halfway through the chain, a checkpoint replaces it (its pages are
	 * free after it), data overwrites them, another checkpoint follows:
	 * the walk must start again, not follow its stale link into data */
	memset(&c, 0, sizeof(c));
	for (int i = 0; i < 4; i++)
		T_CHECK_EQ(store_scrub_meta(s, STORE_SCRUB_NS, 0, 1, &c), 0);
	T_CHECK_EQ(c.pos, 4);
	uint64_t gen0 = c.gen;
	for (int k = 0; k < 2; k++) {
		char name[32];
		snprintf(name, sizeof(name), "late%d", k);
		sm_mk_file(&m, &b, NS_ROOT_INO, name);
		T_CHECK_EQ(sm_commit(s, &m, &b), 0);
		T_CHECK_EQ(store_checkpoint(s), 0);
		for (int i = 0; k == 0 && i < 8; i++) { /* a pack page each: first fit over the freed chain */
			sm_append(&m, &b, &m.f[0], 4000, false);
			T_CHECK_EQ(sm_commit(s, &m, &b), 0);
		}
	}
	T_CHECK_EQ(scrub_walk(s, STORE_SCRUB_NS, 0, &c, &pages, &bad), 0);
	T_CHECK_EQ(bad, 0);
	T_CHECK(c.end);
	T_CHECK_EQ(c.gen, gen0 + 2);
	T_CHECK_EQ(c.pos, c.total);

	/* the index walk: clean, then one page damaged on disk */
	memset(&c, 0, sizeof(c));
	T_CHECK_EQ(scrub_walk(s, STORE_SCRUB_INDEX, x, &c, &pages, &bad), 0);
	T_CHECK_EQ(bad, 0);
	T_CHECK_EQ(c.total, 2);
	T_CHECK_EQ(pages, 2);
	memset(&c, 0, sizeof(c));
	T_CHECK_EQ(store_scrub_meta(s, STORE_SCRUB_INDEX, x, 1, &c), 0); /* the newest page */
	uint64_t older = c.pgno;
	T_CHECK(older >= 2 && !c.bad && !c.end);
	{
		struct vfs_file *f;
		uint8_t byte;
		size_t n;
		T_ASSERT(vfs_open(v, "store.db", VFS_O_RDWR, &f) == 0);
		T_ASSERT(vfs_pread(f, &byte, 1, older * PAGER_PAGE_SIZE + 100, &n) == 0 && n == 1);
		byte ^= 0x10;
		T_ASSERT(vfs_pwrite(f, &byte, 1, older * PAGER_PAGE_SIZE + 100) == 0);
		vfs_close(f);
	}
	T_CHECK_EQ(store_scrub_meta(s, STORE_SCRUB_INDEX, x, 1, &c), 0);
	T_CHECK_EQ(c.bad, STORE_SCRUB_BAD_PAGE);
	T_CHECK_EQ(c.bad_pgno, older);
	T_CHECK(c.end);

	/* a file deleted (and its pages freed) during its index walk */
	memset(&c, 0, sizeof(c));
	T_CHECK_EQ(store_scrub_meta(s, STORE_SCRUB_INDEX, x, 1, &c), 0);
	T_CHECK_EQ(sm_rm_file(&m, &b, NS_ROOT_INO, "x", x), 0);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(store_scrub_meta(s, STORE_SCRUB_INDEX, x, 1, &c), -ENOENT);

	store_close(s);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}

/* Split chunks (format 6): a frame whose extent's last page would be
 * mostly empty keeps only full pages, and its fragment is packed. Three
 * files of 4600-byte incompressible records (frames of about 4.6 KB: one
 * full page and a fragment of about 600 bytes) take about 1.15 pages per
 * chunk, not 2; the fragments count in their pack pages' live bytes;
 * deleting two files leaves the pages of the third's fragments under half
 * live, and cleaning moves
 * those fragments (inline tail entries) so the pages come back; everything
 * reads back and checks clean, reopened and after a crash image. */
static void test_split_chunks(void)
{
	struct vfs *v, *crash = NULL;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_stats st0, st1;
	struct store_check_report rep;

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	uint64_t a = sm_mk_file(&m, &b, NS_ROOT_INO, "a");
	uint64_t c = sm_mk_file(&m, &b, NS_ROOT_INO, "c");
	uint64_t d = sm_mk_file(&m, &b, NS_ROOT_INO, "d");
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	for (int i = 0; i < 40; i++) { /* interleaved: their fragments share pack pages */
		sm_append(&m, &b, sm_model_file(&m, a), 4600, false);
		sm_append(&m, &b, sm_model_file(&m, c), 4600, false);
		sm_append(&m, &b, sm_model_file(&m, d), 4600, false);
		if (i % 10 == 9)
			T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_stats(s, &st0);
	T_CHECK_EQ(st0.chunks_split, 120u);
	/* 120 one-page extents and 120 fragments of ~600 bytes in ~18 pack
	 * pages (unsplit: 240 extent pages) */
	T_CHECK(st0.data_pages < 145);
	T_CHECK(st0.pack_live_bytes > 120 * 500 && st0.pack_live_bytes < 120 * 700);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(sm_verify(s, &m, 50), 0);
	/* c and d go: a's fragments are left a third of each page */
	T_CHECK_EQ(sm_rm_file(&m, &b, NS_ROOT_INO, "c", c), 0);
	T_CHECK_EQ(sm_rm_file(&m, &b, NS_ROOT_INO, "d", d), 0);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_ASSERT(vfs_mem_clone(v, &crash) == 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_stats(s, &st1);
	T_CHECK(st1.pages_cleaned > 0); /* a's fragments moved */
	T_CHECK(st1.pack_live_bytes > 40 * 500 && st1.pack_live_bytes < 40 * 700);
	T_CHECK(st1.pack_pages * 2 < st0.pack_pages);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(sm_verify(s, &m, 50), 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(sm_open_store(v, &s) == 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(sm_verify(s, &m, 50), 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(sm_open_store(crash, &s) == 0); /* taken between the two checkpoints */
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(sm_verify(s, &m, 50), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(crash);
	vfs_destroy(v);
}

/* The rotation case: the live file sits at the end of store.db above the
 * space of a deleted one; checkpoints move its extents down (rewriting its
 * index chain) and store.db is cut to about one file. A crash image taken
 * between the relocating checkpoint's writes recovers either placement. */
static void test_relocate(void)
{
	struct vfs *v, *crash = NULL;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_check_report rep;
	struct store_stats st;

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	uint64_t a = sm_mk_file(&m, &b, NS_ROOT_INO, "a");
	uint64_t c = sm_mk_file(&m, &b, NS_ROOT_INO, "c");
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	for (int i = 0; i < 150; i++) { /* a: 150 chunks of 5000 bytes (split: a 1-page extent and a packed fragment), a full index page */
		sm_append(&m, &b, sm_model_file(&m, a), 5000, false);
		if (i % 10 == 9)
			T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_checkpoint(s), 0);
	for (int i = 0; i < 150; i++) { /* c: the same, after a: at the end of store.db */
		sm_append(&m, &b, sm_model_file(&m, c), 5000, false);
		if (i % 10 == 9)
			T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_checkpoint(s), 0);
	uint64_t two = db_size(v);
	T_CHECK_EQ(sm_rm_file(&m, &b, NS_ROOT_INO, "a", a), 0);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0); /* a's pages pending, then free */
	T_CHECK_EQ(sm_verify(s, &m, 20), 0);   /* c's full index loaded by readers */
	T_CHECK_EQ(store_checkpoint(s), 0); /* moves c down, rewrites its chain */
	T_ASSERT(vfs_mem_clone(v, &crash) == 0);
	T_CHECK_EQ(store_checkpoint(s), 0); /* the old placement's pages are free: the end is cut */
	store_stats(s, &st);
	T_CHECK(st.pages_relocated >= 125);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(sm_verify(s, &m, 50), 0);
	T_CHECK_EQ(store_close(s), 0);
	T_CHECK(db_size(v) * 10 < two * 6); /* about one file of two */
	/* reopened: the moved chunks and the new chain are what the checkpoint names */
	T_ASSERT(sm_open_store(v, &s) == 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(sm_verify(s, &m, 50), 0);
	T_CHECK_EQ(store_close(s), 0);
	/* the image taken after the relocating checkpoint */
	T_ASSERT(sm_open_store(crash, &s) == 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(sm_verify(s, &m, 50), 0);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(crash);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}

/* readdir of the root as "name cookie" lines. */
static int ls_cb(void *arg, const char *name, size_t len, uint64_t ino, uint32_t mode, uint64_t cookie)
{
	struct dump *d = arg;
	char line[300];
	(void)ino;
	(void)mode;
	int n = snprintf(line, sizeof(line), "%.*s %llu\n", (int)len, name, (unsigned long long)cookie);
	sm_dump_put(d, line, (size_t)n);
	return 0;
}

static char *ls_root(struct store *s)
{
	struct dump d = {0};
	struct ns *ns = NULL;
	T_ASSERT(store_ns_clone(s, &ns) == 0);
	T_CHECK_EQ(ns_readdir(ns, NS_ROOT_INO, 0, ls_cb, &d), 0);
	sm_dump_put(&d, "", 1);
	ns_free(ns);
	return d.p;
}

/* Pages of store.db that differ between two images. */
static uint64_t pages_changed(struct vfs *a, struct vfs *b)
{
	struct vfs_file *fa, *fb;
	uint8_t pa[PAGER_PAGE_SIZE], pb[PAGER_PAGE_SIZE];
	uint64_t n = 0;
	T_ASSERT(vfs_open(a, "store.db", VFS_O_RDONLY, &fa) == 0);
	T_ASSERT(vfs_open(b, "store.db", VFS_O_RDONLY, &fb) == 0);
	for (uint64_t pg = 0;; pg++) {
		size_t na = 0, nb = 0;
		memset(pa, 0, sizeof(pa));
		memset(pb, 0, sizeof(pb));
		T_ASSERT(vfs_pread(fa, pa, sizeof(pa), pg * PAGER_PAGE_SIZE, &na) == 0);
		T_ASSERT(vfs_pread(fb, pb, sizeof(pb), pg * PAGER_PAGE_SIZE, &nb) == 0);
		if (!na && !nb)
			break;
		n += memcmp(pa, pb, sizeof(pa)) != 0;
	}
	vfs_close(fa);
	vfs_close(fb);
	return n;
}

/* Checkpoints cost what changed (format 3, the namespace in B+trees): with
 * 3,000 inodes and entries, the checkpoint after one file's append writes a
 * handful of pages (the trees' paths to it, the short stream, the pack
 * page, the superblock) where the whole namespace is ~50 pages; a rename
 * and an unlink cost the same; the store reopens to the same namespace
 * with the same readdir cookies, and fsck finds it clean. */
static void test_incremental_checkpoint(void)
{
	struct vfs *v, *before = NULL, *after = NULL;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_check_report rep;
	char name[64];

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	for (int i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "a-file-with-a-long-name-%04d", i);
		(void)sm_mk_node(&m, &b, NS_ROOT_INO, name, S_IFREG | 0644);
		if (i % 250 == 249) {
			T_CHECK_EQ(sm_commit(s, &m, &b), 0);
			T_CHECK_EQ(store_checkpoint(s), 0);
		}
	}
	uint64_t x = sm_mk_file(&m, &b, NS_ROOT_INO, "x");
	sm_append(&m, &b, sm_model_file(&m, x), 100, false);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(store_checkpoint(s), 0); /* pending pages free */
	for (int k = 0; k < 3; k++) {
		T_ASSERT(vfs_mem_clone(v, &before) == 0);
		if (k == 0) {
			sm_append(&m, &b, sm_model_file(&m, x), 100, false);
		} else if (k == 1) {
			struct ns_op op = {.kind = NS_RENAME, .parent = NS_ROOT_INO, .name = "a-file-with-a-long-name-1234",
					   .name_len = 28, .parent2 = NS_ROOT_INO, .name2 = "renamed", .name2_len = 7};
			T_ASSERT(sm_nsop_add(&m, &b, &op) == 0);
		} else {
			struct ns_op op = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "a-file-with-a-long-name-0042",
					   .name_len = 28};
			T_ASSERT(sm_nsop_add(&m, &b, &op) == 0);
		}
		T_CHECK_EQ(sm_commit(s, &m, &b), 0);
		T_CHECK_EQ(store_checkpoint(s), 0);
		T_ASSERT(vfs_mem_clone(v, &after) == 0);
		uint64_t n = pages_changed(before, after);
		if (n > 16 || n < 2)
			fprintf(stderr, "checkpoint %d changed %llu pages\n", k, (unsigned long long)n);
		T_CHECK(n >= 2 && n <= 16);
		vfs_destroy(before);
		vfs_destroy(after);
	}
	char *ls1 = ls_root(s);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK(rep.tree_pages > 10);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(sm_open_store(v, &s) == 0);
	char *ls2 = ls_root(s);
	T_CHECK(strcmp(ls1, ls2) == 0);
	T_CHECK(strstr(ls2, "renamed ") != NULL);
	T_CHECK_EQ(sm_verify(s, &m, 0), 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	free(ls1);
	free(ls2);
	store_close(s);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}

/* Format 5: the namespace loads on demand. After a reopen nothing but the
 * root is loaded; ops on inodes and directories never loaded since (an
 * unlink of a last link and of one of two links, a directory renamed into
 * another, a rename into its own subtree that both must refuse, an
 * append, a setattr) give the model's state, the background load steps
 * interleaved with ops end complete, and fsck finds nothing. */
static void test_lazy_namespace(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_check_report rep;
	uint64_t dirs[8], files[8];
	char name[32];

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	for (int d = 0; d < 8; d++) {
		snprintf(name, sizeof(name), "d%d", d);
		dirs[d] = sm_mk_node(&m, &b, NS_ROOT_INO, name, S_IFDIR | 0755);
		for (int i = 0; i < 40; i++) {
			snprintf(name, sizeof(name), "f%02d", i);
			(void)sm_mk_node(&m, &b, dirs[d], name, S_IFREG | 0644);
		}
		files[d] = sm_mk_file(&m, &b, dirs[d], "data");
		sm_append(&m, &b, sm_model_file(&m, files[d]), 3000 + 100 * (size_t)d, d & 1);
	}
	uint64_t sub = sm_mk_node(&m, &b, dirs[5], "sub", S_IFDIR | 0700);
	struct ns_op op = {.kind = NS_LINK, .ino = files[2], .parent2 = dirs[3], .name2 = "twin", .name2_len = 4};
	T_ASSERT(sm_nsop_add(&m, &b, &op) == 0);
	(void)sm_mk_node(&m, &b, dirs[4], "empty", S_IFDIR | 0755);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_close(s), 0);

	T_ASSERT(sm_open_store(v, &s) == 0);
	T_CHECK(!store_ns_loaded(s)); /* nothing but the root yet */
	{ /* a read of a file no op loaded (store_read loads its inode) */
		struct mfile *f = sm_model_file(&m, files[6]);
		uint8_t buf[64];
		size_t n = 0;
		T_CHECK_EQ(store_read(s, files[6], 100, buf, sizeof(buf), &n), 0);
		T_CHECK(n == sizeof(buf) && memcmp(buf, f->data + 100, n) == 0);
	}
	T_CHECK_EQ(sm_rm_file(&m, &b, dirs[1], "data", files[1]), 0);
	op = (struct ns_op){.kind = NS_UNLINK, .parent = dirs[3], .name = "twin", .name_len = 4};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0); /* files[2] keeps one link */
	op = (struct ns_op){.kind = NS_RENAME, .parent = NS_ROOT_INO, .name = "d6", .name_len = 2, .parent2 = sub,
			    .name2 = "d6", .name2_len = 2};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_RENAME, .parent = NS_ROOT_INO, .name = "d5", .name_len = 2, .parent2 = dirs[6],
			    .name2 = "loop", .name2_len = 4};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), -EINVAL); /* d6 is inside d5 now: refused by both */
	m.now += 1000;
	op = (struct ns_op){.kind = NS_RMDIR, .parent = dirs[4], .name = "empty", .name_len = 5};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_RENAME, .parent = dirs[2], .name = "f05", .name_len = 3, .parent2 = dirs[0],
			    .name2 = "moved", .name2_len = 5};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	sm_append(&m, &b, sm_model_file(&m, files[7]), 500, false);
	op = (struct ns_op){.kind = NS_SETATTR, .ino = files[4], .flags = NS_SET_MODE, .mode = S_IFREG | 0600};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(store_close(s), 0);

	/* the parents written: the refusal holds after a reopen too */
	T_ASSERT(sm_open_store(v, &s) == 0);
	op = (struct ns_op){.kind = NS_RENAME, .parent = NS_ROOT_INO, .name = "d5", .name_len = 2, .parent2 = dirs[6],
			    .name2 = "loop", .name2_len = 4};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), -EINVAL);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	/* the rest loads a step at a time between ops */
	int steps = 0, r;
	while ((r = store_ns_load_more(s)) == 1) {
		snprintf(name, sizeof(name), "n%d", steps++);
		(void)sm_mk_file(&m, &b, dirs[steps % 2 ? 0 : 7], name);
		T_ASSERT(sm_commit(s, &m, &b) == 0);
		T_ASSERT(steps < MAX_FILES - 12);
	}
	T_CHECK_EQ(r, 0);
	T_CHECK(steps >= 1);
	T_CHECK(store_ns_loaded(s));
	T_CHECK_EQ(sm_verify(s, &m, 5), 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(sm_open_store(v, &s) == 0);
	T_CHECK_EQ(sm_verify(s, &m, 5), 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}

/* The whole visible state of a store: namespace dump, then every regular
 * file's bytes (hex of an xxh3 each) and the root's readdir cookies. */
static int state_file(void *arg, const struct ns_attr *a, const char *sl, size_t sl_len)
{
	void **ctx = arg;
	struct dump *d = ctx[0];
	struct store *s = ctx[1];
	char line[96];
	(void)sl;
	(void)sl_len;
	if (!S_ISREG(a->mode))
		return 0;
	/* the first 4 MiB (a sparse file may be 1 TiB), 64 KiB at a time */
	static uint8_t buf[64 << 10];
	uint64_t h = 0, off = 0;
	int r = 0;
	while (off < a->size && off < (4u << 20) && r == 0) {
		size_t n = 0;
		r = store_read(s, a->ino, off, buf, sizeof(buf), &n);
		if (n == 0)
			break;
		h = rec_hash_seeded(buf, n, h);
		off += n;
	}
	int k = snprintf(line, sizeof(line), "F %llu size=%llu r=%d read=%llu h=%016llx\n", (unsigned long long)a->ino,
			 (unsigned long long)a->size, r, (unsigned long long)off, (unsigned long long)h);
	sm_dump_put(d, line, (size_t)k);
	return 0;
}

static char *store_state(struct store *s)
{
	struct ns *ns = NULL;
	T_ASSERT(store_ns_clone(s, &ns) == 0);
	char *a = sm_ns_dump(ns);
	struct dump d = {0};
	sm_dump_put(&d, a, strlen(a));
	free(a);
	void *ctx[2] = {&d, s};
	struct ns_visit v = {.inode = state_file};
	T_CHECK_EQ(ns_walk(ns, &v, ctx), 0);
	ns_free(ns);
	char *ls = ls_root(s);
	sm_dump_put(&d, ls, strlen(ls));
	free(ls);
	return d.p;
}

static struct store_sb_info sb_newest(struct vfs *v)
{
	struct store_sb_info sb[2];
	T_ASSERT(store_read_superblocks(v, sb) == 0);
	int k = sb[0].valid && (!sb[1].valid || sb[0].generation > sb[1].generation) ? 0 : 1;
	return sb[k];
}

static uint32_t sb_format(struct vfs *v) { return sb_newest(v).format; }

/* Upgrade in place (docs/FORMAT.md §6a): a format 2 store (the fuzz seed
 * chunks-format2.bin: store.db with a version-4 stream and a WAL segment
 * with batches to replay) or a format 3 store (chunks-format3.bin: the
 * namespace trees, the pack pages' live bytes in the stream) opens
 * read-only as it is, unchanged; opened read-write it shows the same
 * state, and its checkpoint writes format 4 (three trees); reopened, the
 * same state again, fsck clean. */
static void test_upgrade(const char *src, const char *seed, uint32_t format)
{
	char path[1024];
	struct vfs *v, *ro_before = NULL;
	struct store *s = NULL;
	struct store_opts o;
	struct store_check_report rep;
	FILE *f;

	snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/recover/%s", src, seed);
	f = fopen(path, "rb");
	T_ASSERT(f);
	static uint8_t in[1 << 20];
	size_t len = fread(in, 1, sizeof(in), f);
	fclose(f);
	T_ASSERT(len > 5);
	size_t ndb = (size_t)bz_get_le32(in);
	T_ASSERT(ndb + 5 <= len);
	char seg[16];
	snprintf(seg, sizeof(seg), "wal.%03u", (unsigned)(in[4] % 3));

	/* a store of the seeds' geometry, then the seed's store.db and segment */
	T_ASSERT(vfs_mem_new(&v) == 0);
	store_opts_default(&o);
	o.vfs = v;
	o.wal_segment_bytes = 64 << 10;
	o.wal_segments = 3;
	o.checkpoint_bytes = 64 << 10;
	o.cache_bytes = 256 << 10;
	T_ASSERT(store_open(&o, &s) == 0);
	T_CHECK_EQ(store_close(s), 0);
	struct vfs_file *vf;
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDWR, &vf) == 0);
	T_ASSERT(vfs_ftruncate(vf, 0) == 0 && vfs_pwrite(vf, in + 5, ndb, 0) == 0);
	vfs_close(vf);
	T_ASSERT(vfs_open(v, seg, VFS_O_RDWR, &vf) == 0);
	T_ASSERT(vfs_ftruncate(vf, 0) == 0 && vfs_pwrite(vf, in + 5 + ndb, len - 5 - ndb, 0) == 0 &&
		 vfs_ftruncate(vf, 64 << 10) == 0);
	vfs_close(vf);
	T_CHECK_EQ(sb_format(v), format);

	o.read_only = true;
	T_ASSERT(vfs_mem_clone(v, &ro_before) == 0);
	T_ASSERT(store_open(&o, &s) == 0);
	char *a = store_state(s);
	T_CHECK(strstr(a, "hot.log") != NULL);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	store_close(s);
	T_CHECK_EQ(pages_changed(ro_before, v), 0); /* read-only: nothing written */
	T_CHECK_EQ(sb_format(v), format);
	vfs_destroy(ro_before);

	o.read_only = false;
	T_ASSERT(store_open(&o, &s) == 0); /* replay + checkpoint: upgraded */
	T_CHECK_EQ(sb_format(v), 6);
	while (store_ns_load_more(s) == 1) /* format 5: the pack table loads in the background */
		;
	struct store_stats st;
	store_stats(s, &st);
	T_CHECK(st.pack_pages > 0);
	T_CHECK_EQ(sb_newest(v).pack_count, st.pack_pages); /* every pack page has its key */
	char *b = store_state(s);
	T_CHECK(strcmp(a, b) == 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK(rep.tree_pages >= 2);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(store_open(&o, &s) == 0);
	char *c = store_state(s);
	T_CHECK(strcmp(a, c) == 0);
	T_CHECK_EQ(check_errors(s, &rep), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(a);
	free(b);
	free(c);
	vfs_destroy(v);
}

int main(int argc, char **argv)
{
	bz_log_set_level(BZ_LOG_ERR);
	if (getenv("T_VERBOSE"))
		bz_log_set_level(BZ_LOG_DEBUG);
	test_reclaim();
	test_pack_reclaim();
	test_holes();
	test_format1_refused();
	test_scrub_meta();
	test_relocate();
	test_split_chunks();
	test_incremental_checkpoint();
	test_lazy_namespace();
	if (argc > 1) { /* the source tree: tests/fuzz/corpus holds format 2 and 3 stores */
		test_upgrade(argv[1], "chunks-format2.bin", 2);
		test_upgrade(argv[1], "chunks-format3.bin", 3);
		test_upgrade(argv[1], "chunks-format4.bin", 4);
		test_upgrade(argv[1], "chunks-format5.bin", 5);
	} else
		fprintf(stderr, "test_upgrade: skipped (no source directory argument)\n");
	T_DONE();
}
