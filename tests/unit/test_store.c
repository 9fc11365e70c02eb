/* test_store.c — the PageStore and engine API against memory, recording and
 * fault vfs backends: data and namespace survive close/reopen and crashes
 * at every mutating call of a checkpoint (plus torn writes), corruption is
 * detected (-EIO, never wrong bytes), the lock, refusing to reinitialize,
 * that open does not read data pages, and that a reader never blocks the
 * commit thread. The later formats' structures (reclaimed space, packing,
 * holes, relocation, incremental checkpoints, the namespace on demand,
 * upgrades) are in test_store_v2.c; the model both check against is
 * store_model.c. */
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

/* ---- tests ---- */

static void test_roundtrip(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	sm_workload(s, &m, 6, 150, 40);
	T_CHECK_EQ(sm_verify(s, &m, 20), 0);
	T_CHECK_EQ(store_close(s), 0);
	for (int i = 0; i < 2; i++) {
		T_ASSERT(sm_open_store(v, &s) == 0);
		T_CHECK_EQ(sm_verify(s, &m, 20), 0);
		if (i == 0) {
			sm_workload(s, &m, 3, 40, 0); /* more data, closed by close's checkpoint */
			T_CHECK_EQ(sm_verify(s, &m, 5), 0);
		}
		struct store_file_info fi;
		T_CHECK_EQ(store_file_info(s, m.f[0].ino, &fi), 0);
		T_CHECK_EQ(fi.raw_bytes, m.f[0].len);
		T_CHECK(fi.records > 0 && fi.stored_bytes > 0);
		T_CHECK_EQ(store_close(s), 0);
	}
	sm_model_free(&m);
	vfs_destroy(v);
}

/* Replay: the WAL is synced but never checkpointed; the durable image of a
 * recording vfs (a power cut) must recover everything. */
static void test_replay(void)
{
	struct vfs *rec, *crash;
	struct store *s = NULL;
	struct model m;

	T_ASSERT(vfs_rec_new(&rec) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(rec, &s) == 0);
	sm_workload(s, &m, 4, 60, 25);
	struct vfs_crash c = {.keep = NULL, .torn_op = -1};
	T_ASSERT(vfs_rec_crash(rec, &c, &crash) == 0);
	store_close(s);
	vfs_destroy(rec);

	struct store_opts o;
	sm_opts(&o, crash);
	o.read_only = true; /* replays into memory, never writes */
	T_ASSERT(store_open(&o, &s) == 0);
	struct store_stats st;
	store_stats(s, &st);
	T_CHECK(st.replayed_batches > 0);
	T_CHECK_EQ(sm_verify(s, &m, 10), 0);
	T_CHECK_EQ(store_close(s), 0);
	for (int i = 0; i < 3; i++) { /* recovery, then recovery of the recovered store */
		T_ASSERT(sm_open_store(crash, &s) == 0);
		T_CHECK_EQ(sm_verify(s, &m, 10), 0);
		store_close(s);
	}
	sm_model_free(&m);
	vfs_destroy(crash);
}

static void test_namespace(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	struct ns_op op = {.kind = NS_MKDIR, .parent = NS_ROOT_INO, .name = "dir", .name_len = 3,
			   .mode = S_IFDIR | 0750, .uid = 5, .gid = 6};
	op.ino = ns_alloc_ino(m.ns);
	uint64_t dir = op.ino;
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	uint64_t a = sm_mk_file(&m, &b, dir, "a");
	uint64_t bb = sm_mk_file(&m, &b, dir, "b");
	uint64_t c = sm_mk_file(&m, &b, NS_ROOT_INO, "c");
	sm_append(&m, &b, sm_model_file(&m, a), 5000, false);
	sm_append(&m, &b, sm_model_file(&m, bb), 300, true);
	sm_append(&m, &b, sm_model_file(&m, c), 10, false);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	op = (struct ns_op){.kind = NS_SYMLINK, .parent = dir, .name = "ln", .name_len = 2, .name2 = "../c", .mode = S_IFLNK | 0777,
			    .name2_len = 4, .uid = 7, .gid = 8};
	op.ino = ns_alloc_ino(m.ns);
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_LINK, .ino = a, .parent2 = NS_ROOT_INO, .name2 = "hard", .name2_len = 4};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_RENAME, .parent = dir, .name = "b", .name_len = 1, .parent2 = NS_ROOT_INO,
			    .name2 = "b2", .name2_len = 2};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_SETATTR, .ino = c, .flags = NS_SET_MODE | NS_SET_UID | NS_SET_MTIME,
			    .mode = S_IFREG | 0600, .uid = 42, .mtime_ns = 777};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_SETATTR, .ino = NS_ROOT_INO, .flags = NS_SET_MODE, .mode = S_IFDIR | 0711};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	/* touch -d of a file with data: mtime moves, the append clock (append_ns,
	 * stream version 3) does not, in the store as in the model */
	op = (struct ns_op){.kind = NS_SETATTR, .ino = bb, .flags = NS_SET_MTIME, .mtime_ns = 555};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	/* a setting of dir is inherited by a file created in it, in both */
	op = (struct ns_op){.kind = NS_SETXATTR, .ino = dir, .name = NS_XA_ZSTD_LEVEL,
			    .name_len = sizeof(NS_XA_ZSTD_LEVEL) - 1, .name2 = "19", .name2_len = 2};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	(void)sm_mk_file(&m, &b, dir, "inherits");
	/* special files (rdev kept) and extended attributes (binary values) */
	op = (struct ns_op){.kind = NS_MKNOD, .parent = dir, .name = "fifo", .name_len = 4, .mode = S_IFIFO | 0640};
	op.ino = ns_alloc_ino(m.ns);
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_MKNOD, .parent = dir, .name = "dev", .name_len = 3, .mode = S_IFBLK | 0600,
			    .rdev = 0x80301};
	op.ino = ns_alloc_ino(m.ns);
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_SETXATTR, .ino = a, .name = "user.k", .name_len = 6, .name2 = "v\0\xff",
			    .name2_len = 3};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_SETXATTR, .ino = dir, .name = "trusted.t", .name_len = 9};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_SETXATTR, .ino = a, .name = "user.gone", .name_len = 9, .name2 = "x",
			    .name2_len = 1};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_REMOVEXATTR, .ino = a, .name = "user.gone", .name_len = 9};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	op = (struct ns_op){.kind = NS_SETXATTR, .ino = a, .name = "user.k", .name_len = 6, .name2 = "new",
			    .name2_len = 3, .flags = NS_XATTR_CREATE};
	T_CHECK(sm_nsop_add(&m, &b, &op) < 0); /* refused by both */
	/* unlink c: its data goes; a later data record for it is dropped */
	op = (struct ns_op){.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "c", .name_len = 1};
	T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0);
	sm_model_file(&m, c)->live = false;
	sm_frame_add(&b, REC_DATA, c, 10, "late", 4, false);
	/* an op that fails is skipped by the store too */
	op = (struct ns_op){.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "nope", .name_len = 4};
	T_CHECK(sm_nsop_add(&m, &b, &op) < 0);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	sm_append(&m, &b, sm_model_file(&m, a), 100, false);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(sm_verify(s, &m, 5), 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(sm_open_store(v, &s) == 0);
	T_CHECK_EQ(sm_verify(s, &m, 5), 0);
	/* the new store allocates inode numbers after the old ones */
	struct ns *clone = NULL;
	T_ASSERT(store_ns_clone(s, &clone) == 0);
	T_CHECK_EQ(ns_next_ino(clone), ns_next_ino(m.ns));
	ns_free(clone);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}

/* Deleting files with full index pages frees those pages (after the next
 * checkpoint) and they get reused. */
static void test_free_pages(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_stats st;

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	uint64_t x = sm_mk_file(&m, &b, NS_ROOT_INO, "x");
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	for (int i = 0; i < 400; i++) {
		sm_append(&m, &b, sm_model_file(&m, x), 2100, false); /* one chunk each */
		if (i % 20 == 19)
			T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_close(s);
	T_ASSERT(sm_open_store(v, &s) == 0);
	T_CHECK_EQ(sm_verify(s, &m, 30), 0); /* lazily loads 3 index pages */
	T_CHECK_EQ(sm_rm_file(&m, &b, NS_ROOT_INO, "x", x), 0);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_stats(s, &st);
	T_CHECK(st.pages_free >= 3);
	uint64_t total = st.pages_total;
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(sm_verify(s, &m, 0), 0);
	store_stats(s, &st);
	T_CHECK(st.pages_total <= total + 1); /* chains reuse freed pages */
	store_close(s);
	T_ASSERT(sm_open_store(v, &s) == 0);
	T_CHECK_EQ(sm_verify(s, &m, 0), 0);
	store_close(s);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}

/* Crash at every mutating call of a checkpoint; plus torn writes. */
static int recover_check(struct vfs *crash, struct model *m, const char *what, uint64_t k)
{
	struct store *s = NULL;
	int bad = 0;
	int r = sm_open_store(crash, &s);
	if (r != 0) {
		fprintf(stderr, "crash %s k=%llu: open failed %d\n", what, (unsigned long long)k, r);
		return 1;
	}
	bad += sm_verify(s, m, 2);
	bad += store_close(s) != 0;
	T_ASSERT(sm_open_store(crash, &s) == 0); /* recovery is idempotent */
	bad += sm_verify(s, m, 0);
	store_close(s);
	if (bad)
		fprintf(stderr, "crash %s k=%llu: %d mismatches\n", what, (unsigned long long)k, bad);
	return bad;
}

static void test_crash_checkpoint(void)
{
	uint64_t states = 0;
	bool finished = false;

	for (uint64_t k = 1; !finished && k < 200; k++) {
		struct vfs *rec, *fault, *crash;
		struct store *s = NULL;
		struct model m;

		sm_rng_state = 777;
		sm_model_init(&m);
		T_ASSERT(vfs_rec_new(&rec) == 0);
		T_ASSERT(vfs_fault_new(rec, &fault) == 0);
		T_ASSERT(sm_open_store(fault, &s) == 0);
		sm_workload(s, &m, 3, 12, 5); /* a checkpointed base plus a WAL tail */
		sm_workload(s, &m, 30, 20, 0); /* many files: a multi-page namespace chain */
		struct batch b = {0};
		struct ns_op op = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "f0", .name_len = 2};
		T_CHECK_EQ(sm_nsop_add(&m, &b, &op), 0); /* a dead index chain to release */
		m.f[0].live = false;
		sm_append(&m, &b, &m.f[1], 100, false);
		T_CHECK_EQ(sm_commit(s, &m, &b), 0);
		free(b.p);
		struct vfs_fault_spec spec = {.fail_at = k, .mode = VFS_FAULT_EIO, .persistent = true};
		vfs_fault_arm(fault, &spec);
		int r = store_checkpoint(s);
		finished = r == 0;
		store_close(s);

		size_t np = vfs_rec_pending(rec);
		uint8_t *keep = calloc(np + 1, 1);
		struct vfs_crash c = {.keep = NULL, .torn_op = -1};
		T_ASSERT(vfs_rec_crash(rec, &c, &crash) == 0);
		T_CHECK_EQ(recover_check(crash, &m, "durable", k), 0);
		vfs_destroy(crash);
		states++;
		/* every pending op reached the disk */
		memset(keep, 1, np);
		c = (struct vfs_crash){.keep = keep, .n_keep = np, .torn_op = -1};
		T_ASSERT(vfs_rec_crash(rec, &c, &crash) == 0);
		T_CHECK_EQ(recover_check(crash, &m, "all", k), 0);
		vfs_destroy(crash);
		states++;
		/* any single pending op alone, and all but one (reordering) */
		for (size_t i = 0; i < np; i++) {
			for (int mode = 0; mode < 2; mode++) {
				for (size_t j = 0; j < np; j++)
					keep[j] = mode ? (j != i) : (j == i);
				c = (struct vfs_crash){.keep = keep, .n_keep = np, .torn_op = -1};
				T_ASSERT(vfs_rec_crash(rec, &c, &crash) == 0);
				T_CHECK_EQ(recover_check(crash, &m, mode ? "all but one" : "only one", k), 0);
				vfs_destroy(crash);
				states++;
			}
		}
		/* prefixes ending in a torn write to store.db */
		for (size_t i = 0; i < np; i++) {
			struct vfs_rec_op op;
			T_ASSERT(vfs_rec_op_get(rec, i, &op) == 0);
			if (op.kind != VFS_REC_WRITE || strcmp(op.name, "store.db") != 0 || op.len < 1024)
				continue;
			for (size_t j = 0; j < np; j++)
				keep[j] = j <= i;
			c = (struct vfs_crash){.keep = keep, .n_keep = np, .torn_op = (long)i,
					       .torn_at = 512 * (1 + (k + i) % 7), .torn_fill = (k + i) % 3,
					       .seed = k * 1000 + i};
			T_ASSERT(vfs_rec_crash(rec, &c, &crash) == 0);
			T_CHECK_EQ(recover_check(crash, &m, "torn", k), 0);
			vfs_destroy(crash);
			states++;
		}
		free(keep);
		vfs_destroy(fault);
		vfs_destroy(rec);
		sm_model_free(&m);
	}
	T_CHECK(finished);
	fprintf(stderr, "crash states checked: %llu\n", (unsigned long long)states);
}

static int flip_byte_at_marker(struct vfs *v, const uint8_t *marker, size_t mlen)
{
	struct vfs_file *f;
	uint64_t size;
	int found = 0;
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDWR, &f) == 0);
	T_ASSERT(vfs_size(f, &size) == 0);
	uint8_t *img = malloc(size);
	size_t n;
	T_ASSERT(vfs_pread(f, img, size, 0, &n) == 0 && n == size);
	for (size_t i = 0; i + mlen <= size; i++) {
		if (memcmp(img + i, marker, mlen) == 0) {
			img[i + mlen / 2] ^= 0x20;
			T_ASSERT(vfs_pwrite(f, img + i + mlen / 2, 1, i + mlen / 2) == 0);
			found = 1;
			break;
		}
	}
	free(img);
	vfs_close(f);
	return found;
}

static void test_corruption(void)
{
	struct vfs *v;
	struct store *s = NULL, *s2 = NULL;
	struct model m;
	struct batch b = {0};

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	/* a second open of the same store is refused */
	T_CHECK_EQ(sm_open_store(v, &s2), -EBUSY);
	uint64_t a = sm_mk_file(&m, &b, NS_ROOT_INO, "a");
	uint64_t c = sm_mk_file(&m, &b, NS_ROOT_INO, "c");
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	sm_append(&m, &b, sm_model_file(&m, a), 12000, false); /* raw: findable in the image */
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	sm_append(&m, &b, sm_model_file(&m, c), 6000, false);
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	T_CHECK_EQ(store_close(s), 0);

	T_CHECK(flip_byte_at_marker(v, sm_model_file(&m, a)->data + 5000, 64));
	T_ASSERT(sm_open_store(v, &s) == 0);
	uint8_t *buf = malloc(20000);
	size_t n;
	T_CHECK_EQ(store_read(s, a, 0, buf, 20000, &n), -EIO);
	T_CHECK_EQ(store_read(s, a, 4900, buf, 200, &n), -EIO);
	T_CHECK_EQ(store_read(s, c, 0, buf, 20000, &n), 0);
	T_CHECK_EQ(n, 6000);
	T_CHECK(memcmp(buf, sm_model_file(&m, c)->data, 6000) == 0);
	struct store_stats st;
	store_stats(s, &st);
	T_CHECK(st.checksum_errors > 0);
	store_close(s);
	free(buf);

	/* both superblocks corrupt: refused, not reinitialized */
	struct vfs_file *f;
	uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDWR, &f) == 0);
	T_ASSERT(vfs_pwrite(f, junk, 8, 100) == 0);
	T_ASSERT(vfs_pwrite(f, junk, 8, 4096 + 100) == 0);
	uint64_t size_before, size_after;
	T_ASSERT(vfs_size(f, &size_before) == 0);
	T_CHECK_EQ(sm_open_store(v, &s), -EUCLEAN);
	T_ASSERT(vfs_size(f, &size_after) == 0);
	T_CHECK_EQ(size_before, size_after);
	uint8_t chk[8];
	T_ASSERT(vfs_pread(f, chk, 8, 100, &n) == 0);
	T_CHECK(memcmp(chk, junk, 8) == 0);
	vfs_close(f);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}

/* Open must not read data: preads at open are about the same for a store
 * with few and with many records. */
static uint64_t open_preads(int records)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		sm_mk_file(&m, &b, NS_ROOT_INO, name);
	}
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	for (int i = 0; i < records; i++) {
		sm_append(&m, &b, &m.f[i % 4], 100, true);
		if (i % 64 == 63 || i == records - 1) {
			T_CHECK_EQ(sm_commit(s, &m, &b), 0);
			if (store_need_checkpoint(s))
				T_CHECK_EQ(store_checkpoint(s), 0);
		}
	}
	T_CHECK_EQ(store_close(s), 0);
	uint64_t before = vfs_count(v, VFS_OP_PREAD);
	T_ASSERT(sm_open_store(v, &s) == 0);
	uint64_t preads = vfs_count(v, VFS_OP_PREAD) - before;
	T_CHECK_EQ(sm_verify(s, &m, 3), 0);
	store_close(s);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
	return preads;
}

static void test_open_cost(void)
{
	uint64_t small = open_preads(100), big = open_preads(20000);
	fprintf(stderr, "preads at open: 100 records %llu, 20000 records %llu\n", (unsigned long long)small,
		(unsigned long long)big);
	T_CHECK(big <= small + 4);
}

/* A crash at every mutating call of recovery itself (replay + its
 * checkpoint) recovers to the same state. */
static void test_crash_recovery(void)
{
	struct vfs *rec, *base;
	struct store *s = NULL;
	struct model m;
	uint64_t states = 0;
	bool finished = false;

	sm_rng_state = 4242;
	sm_model_init(&m);
	T_ASSERT(vfs_rec_new(&rec) == 0);
	T_ASSERT(sm_open_store(rec, &s) == 0);
	sm_workload(s, &m, 3, 37, 10); /* checkpoints, then a WAL tail of 7 batches */
	struct vfs_crash c = {.keep = NULL, .torn_op = -1};
	T_ASSERT(vfs_rec_crash(rec, &c, &base) == 0);
	store_close(s);
	vfs_destroy(rec);
	for (uint64_t k = 1; !finished && k < 400; k++) {
		struct vfs *rec2, *fault, *crash;
		T_ASSERT(vfs_rec_from(base, &rec2) == 0);
		T_ASSERT(vfs_fault_new(rec2, &fault) == 0);
		struct vfs_fault_spec spec = {.fail_at = k, .mode = VFS_FAULT_EIO, .persistent = true};
		vfs_fault_arm(fault, &spec);
		s = NULL;
		int r = sm_open_store(fault, &s);
		finished = r == 0;
		if (r == 0) {
			T_CHECK_EQ(sm_verify(s, &m, 0), 0);
			store_close(s);
		}
		T_ASSERT(vfs_rec_crash(rec2, &c, &crash) == 0);
		T_CHECK_EQ(recover_check(crash, &m, "in recovery", k), 0);
		vfs_destroy(crash);
		states++;
		size_t np = vfs_rec_pending(rec2);
		uint8_t *keep = malloc(np + 1);
		memset(keep, 1, np + 1);
		struct vfs_crash all = {.keep = keep, .n_keep = np, .torn_op = -1};
		T_ASSERT(vfs_rec_crash(rec2, &all, &crash) == 0);
		T_CHECK_EQ(recover_check(crash, &m, "in recovery, all", k), 0);
		vfs_destroy(crash);
		states++;
		free(keep);
		vfs_destroy(fault);
		vfs_destroy(rec2);
	}
	T_CHECK(finished);
	fprintf(stderr, "crash-in-recovery states checked: %llu\n", (unsigned long long)states);
	vfs_destroy(base);
	sm_model_free(&m);
}

/* Readers on other threads while the commit path appends and checkpoints:
 * every byte read equals what was appended (content is a function of the
 * position). */
struct reader_arg {
	struct store *s;
	uint64_t ino[3];
	int stop; /* __atomic */
	int errors;
	uint64_t reads;
};

static void *reader_main(void *p)
{
	struct reader_arg *a = p;
	uint64_t seed = (uint64_t)(uintptr_t)p | 1;
	uint8_t *buf = malloc(10000), *want = malloc(10000);
	while (!__atomic_load_n(&a->stop, __ATOMIC_RELAXED)) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		uint64_t ino = a->ino[seed % 3], size = 0;
		size_t n = 0;
		if (store_file_size(a->s, ino, &size) != 0) {
			a->errors++;
			continue;
		}
		if (!size)
			continue;
		uint64_t off = (seed >> 8) % size;
		size_t len = (size_t)((seed >> 40) % 10000) + 1;
		if (store_read(a->s, ino, off, buf, len, &n) != 0 || n == 0 || n > len) {
			a->errors++;
			continue;
		}
		sm_fill(want, n, ino, off, false);
		if (memcmp(buf, want, n) != 0)
			a->errors++;
		a->reads++;
	}
	free(buf);
	free(want);
	return NULL;
}

static void test_concurrent_reads(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	pthread_t th[2];

	sm_rng_state = 99;
	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	struct reader_arg a = {.s = s};
	for (int i = 0; i < 3; i++) {
		char name[8] = {'c', (char)('0' + i), 0};
		a.ino[i] = sm_mk_file(&m, &b, NS_ROOT_INO, name);
	}
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	for (int r = 0; r < 1200; r++) { /* > 1024 records per file: over the index budget */
		sm_append(&m, &b, &m.f[r % 3], 1 + (size_t)(sm_rnd() % 100), false);
		if (r % 16 == 15)
			T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(sm_open_store(v, &s) == 0); /* readers now load indexes lazily */
	a.s = s;
	struct reader_arg args[2] = {a, a};
	for (int i = 0; i < 2; i++)
		T_ASSERT(pthread_create(&th[i], NULL, reader_main, &args[i]) == 0);
	for (int r = 0; r < 400; r++) {
		for (int k = 0; k < 3; k++)
			sm_append(&m, &b, &m.f[sm_rnd() % 3], 1 + (size_t)(sm_rnd() % 6000), false);
		T_CHECK_EQ(sm_commit(s, &m, &b), 0);
		if (r % 50 == 49)
			T_CHECK_EQ(store_checkpoint(s), 0);
	}
	for (int i = 0; i < 2; i++) {
		__atomic_store_n(&args[i].stop, 1, __ATOMIC_RELAXED);
		pthread_join(th[i], NULL);
		T_CHECK_EQ(args[i].errors, 0);
	}
	fprintf(stderr, "concurrent reads: %llu + %llu\n", (unsigned long long)args[0].reads,
		(unsigned long long)args[1].reads);
	T_CHECK_EQ(sm_verify(s, &m, 10), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}

/* Random byte flips in store.db: open fails cleanly or every read returns
 * -EIO or bytes equal to a prefix of what was written — never wrong bytes. */
static void test_random_corruption(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	int opened = 0, eio = 0;

	sm_rng_state = 31337;
	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	sm_workload(s, &m, 4, 40, 15);
	T_CHECK_EQ(store_close(s), 0);
	struct vfs_file *f;
	uint64_t size;
	T_ASSERT(vfs_open(v, "store.db", VFS_O_RDONLY, &f) == 0);
	T_ASSERT(vfs_size(f, &size) == 0);
	vfs_close(f);
	enum bz_log_level saved = bz_log_get_level();
	bz_log_set_level((enum bz_log_level)-1); /* hundreds of expected checksum errors */
	for (int it = 0; it < 300; it++) {
		struct vfs *c;
		T_ASSERT(vfs_mem_clone(v, &c) == 0);
		T_ASSERT(vfs_open(c, "store.db", VFS_O_RDWR, &f) == 0);
		for (int k = 0; k < 1 + it % 3; k++) {
			uint64_t off = sm_rnd() % size;
			uint8_t byte;
			size_t n;
			T_ASSERT(vfs_pread(f, &byte, 1, off, &n) == 0 && n == 1);
			byte ^= (uint8_t)(1u << (sm_rnd() % 8));
			T_ASSERT(vfs_pwrite(f, &byte, 1, off) == 0);
		}
		vfs_close(f);
		struct store_opts o;
		sm_opts(&o, c);
		o.read_only = true;
		s = NULL;
		if (store_open(&o, &s) == 0) {
			opened++;
			for (int i = 0; i < m.n; i++) {
				struct mfile *mf = &m.f[i];
				uint8_t *buf = malloc(mf->len + 1);
				size_t n = 0;
				int r = store_read(s, mf->ino, 0, buf, mf->len + 1, &n);
				if (r == -EIO || r == -ENOENT)
					eio++;
				else
					T_CHECK(r == 0 && n <= mf->len && (!n || memcmp(buf, mf->data, n) == 0));
				free(buf);
			}
			store_close(s);
		}
		vfs_destroy(c);
	}
	bz_log_set_level(saved);
	fprintf(stderr, "random corruption: %d of 300 opened, %d reads refused\n", opened, eio);
	T_CHECK(opened > 0);
	sm_model_free(&m);
	vfs_destroy(v);
}

/* One failing I/O call (EIO, ENOSPC, short write) at every mutating call k
 * of a workload: the failure is reported, the store stays failed (-EIO),
 * close does not hang, and a reopen of what is on disk yields files that
 * are prefixes of what was written. */
static int fault_workload(struct store *s, struct model *m)
{
	struct batch b = {0};
	int r = 0;
	for (int i = 0; i < 3 && r == 0; i++) {
		char name[8] = {'q', (char)('0' + i), 0};
		sm_mk_file(m, &b, NS_ROOT_INO, name);
	}
	r = sm_commit(s, m, &b);
	for (int round = 0; round < 20 && r == 0; round++) {
		for (int k = 0; k < 3; k++)
			sm_append(m, &b, &m->f[sm_rnd() % 3], 1 + (size_t)(sm_rnd() % 9000), sm_rnd() % 2);
		r = sm_commit(s, m, &b);
		if (r == 0 && round % 7 == 6)
			r = store_checkpoint(s);
	}
	free(b.p);
	return r;
}

static void test_faults(void)
{
	uint64_t total = 0;
	int cases = 0;

	for (int mode = VFS_FAULT_EIO; mode <= VFS_FAULT_SHORT; mode++) {
		for (uint64_t k = 1;; k++) {
			struct vfs *mem, *fault;
			struct store *s = NULL;
			struct model m;
			sm_rng_state = 555;
			sm_model_init(&m);
			T_ASSERT(vfs_mem_new(&mem) == 0);
			T_ASSERT(vfs_fault_new(mem, &fault) == 0);
			T_ASSERT(sm_open_store(fault, &s) == 0);
			struct vfs_fault_spec spec = {.fail_at = k, .mode = (enum vfs_fault_mode)mode};
			vfs_fault_arm(fault, &spec);
			int r = fault_workload(s, &m);
			bool hit = vfs_fault_injected(fault) > 0;
			if (!hit)
				total = vfs_fault_calls(fault);
			if (hit) {
				T_CHECK(r < 0);
				uint64_t lsn;
				T_CHECK_EQ(store_wal_append(s, 0, "x", 1, &lsn), -EIO);
				T_CHECK_EQ(store_checkpoint(s), -EIO);
				struct store_stats st;
				store_stats(s, &st);
				T_CHECK(st.error < 0);
			} else {
				T_CHECK_EQ(r, 0);
			}
			store_close(s);
			vfs_destroy(fault);
			/* what is on the disk now recovers to prefixes */
			T_ASSERT(sm_open_store(mem, &s) == 0);
			for (int i = 0; i < m.n; i++) {
				struct mfile *f = &m.f[i];
				uint8_t *buf = malloc(f->len + 1);
				size_t n = 0;
				int rr = store_read(s, f->ino, 0, buf, f->len + 1, &n);
				T_CHECK(rr == -ENOENT || (rr == 0 && n <= f->len && (!n || memcmp(buf, f->data, n) == 0)));
				free(buf);
			}
			store_close(s);
			vfs_destroy(mem);
			sm_model_free(&m);
			cases++;
			if (!hit)
				break;
		}
	}
	fprintf(stderr, "fault cases: %d (workload makes %llu mutating calls)\n", cases, (unsigned long long)total);
}

/* A store directory with WAL segments that hold committed batches but no
 * store.db (an operator deleted or moved it) is refused, and the log is
 * left as it was; segments without any written header (a creation
 * interrupted before store.db was renamed into place) are recreated. */
static void test_missing_db(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct wal_probe_info pi;

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	sm_workload(s, &m, 2, 20, 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(vfs_unlink(v, "store.db") == 0);
	s = NULL;
	T_CHECK_EQ(sm_open_store(v, &s), -EUCLEAN);
	T_CHECK(s == NULL);
	T_ASSERT(wal_probe_dir(v, &pi) == 0);
	T_CHECK_EQ(pi.files, 4);
	T_CHECK(pi.with_header > 0); /* not zeroed */
	T_CHECK_EQ(vfs_open(v, "store.db", VFS_O_RDONLY, &(struct vfs_file *){NULL}), -ENOENT);
	sm_model_free(&m);
	vfs_destroy(v);

	/* an interrupted creation: segments written, no header, no store.db */
	struct wal_opts wo = {.segment_bytes = 256 << 10, .segments = 4};
	struct wal_pos pos;
	T_ASSERT(vfs_mem_new(&v) == 0);
	T_ASSERT(wal_create(v, &wo, &pos, NULL) == 0);
	T_ASSERT(wal_probe_dir(v, &pi) == 0);
	T_CHECK_EQ(pi.files, 4);
	T_CHECK_EQ(pi.with_header, 0);
	T_CHECK_EQ(sm_open_store(v, &s), 0);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
}

/* store_space: the disk growth a checkpoint can need is bounded before it
 * happens (namespace growth included: symlink targets, names, index tails),
 * and free pages left over count as spare once the namespace shrinks. */
static void test_space_bound(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_stats st0, st1;
	uint64_t need = 0, spare = 0;
	char target[4000], name[32];

	memset(target, 'x', sizeof(target));
	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	sm_workload(s, &m, 3, 30, 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	for (int round = 0; round < 3; round++) {
		uint64_t need0;
		store_space(s, &need0, &spare);
		for (int i = 0; i < 20; i++) {
			for (int k = 0; k < 6; k++) {
				snprintf(name, sizeof(name), "sym%d.%d.%d", round, i, k);
				struct ns_op op = {.kind = NS_SYMLINK, .parent = NS_ROOT_INO, .name = name,
						   .name_len = (uint32_t)strlen(name), .name2 = target,
						   .name2_len = (uint32_t)(sizeof(target) - (size_t)k),
						   .mode = S_IFLNK | 0777, .uid = 1, .gid = 2};
				op.ino = ns_alloc_ino(m.ns);
				op.atime_ns = op.mtime_ns = op.ctime_ns = m.now;
				T_ASSERT(sm_nsop_add(&m, &b, &op) == 0);
			}
			T_ASSERT(sm_commit(s, &m, &b) == 0);
		}
		store_space(s, &need, &spare);
		store_stats(s, &st0);
		T_CHECK(need >= need0 + 120u * 4000); /* grows with the namespace before any checkpoint */
		T_CHECK_EQ(store_checkpoint(s), 0);
		store_stats(s, &st1);
		/* what the checkpoint really grew store.db by is within the bound */
		T_CHECK((st1.pages_total - st0.pages_total) * st0.page_size <= need);
	}
	/* remove most of it: after two checkpoints the old chains' pages are
	 * free, more than the next checkpoint needs: spare space inside
	 * store.db or space given back to the disk (format 2), no need */
	struct store_stats before;
	store_stats(s, &before);
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 20; i++)
			for (int k = 0; k < 6; k++) {
				snprintf(name, sizeof(name), "sym%d.%d.%d", round, i, k);
				struct ns_op op = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = name,
						   .name_len = (uint32_t)strlen(name)};
				T_ASSERT(sm_nsop_add(&m, &b, &op) == 0);
				if (b.len > 8000)
					T_ASSERT(sm_commit(s, &m, &b) == 0);
			}
	T_ASSERT(sm_commit(s, &m, &b) == 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_space(s, &need, &spare);
	store_stats(s, &st1);
	/* what is given back is no longer spare: the next checkpoint may grow
	 * store.db again by its own bound (the run, the open page, a small
	 * chain), never by what was freed */
	T_CHECK(need <= 80u * 4096);
	T_CHECK(spare + (before.pages_total - st1.pages_total) * st1.page_size > 240u * 4000);
	T_CHECK(st1.store_db_truncations > 0);
	T_CHECK(!store_need_checkpoint(s));
	T_CHECK_EQ(sm_verify(s, &m, 5), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}

/* The commit thread never waits for a reader's decompression: with a
 * reader parked inside the decode of a record (test hook, no lock held),
 * store_apply of new batches, a checkpoint and a first read of another
 * file's whole index all complete. */
struct park {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int parked, release, applied;
};
static struct park g_park = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

static void park_hook(void *arg, uint64_t ino, uint64_t off)
{
	struct park *k = arg;
	(void)ino;
	(void)off;
	pthread_mutex_lock(&k->mu);
	k->parked = 1;
	pthread_cond_broadcast(&k->cv);
	while (!k->release)
		pthread_cond_wait(&k->cv, &k->mu);
	pthread_mutex_unlock(&k->mu);
}

struct parked_reader {
	struct store *s;
	uint64_t ino;
	size_t len;
	uint8_t *buf;
	int r;
};

static void *parked_reader_main(void *arg)
{
	struct parked_reader *pr = arg;
	size_t n = 0;
	pr->r = store_read(pr->s, pr->ino, 0, pr->buf, pr->len, &n);
	if (pr->r == 0 && n != pr->len)
		pr->r = -EIO;
	return NULL;
}

struct applier {
	struct store *s;
	struct model *m;
	struct batch *b;
	int r;
};

static void *applier_main(void *arg)
{
	struct applier *ap = arg;
	for (int i = 0; i < 20 && ap->r == 0; i++) {
		sm_append(ap->m, ap->b, &ap->m->f[1], 3000, true);
		ap->r = sm_commit(ap->s, ap->m, ap->b);
	}
	if (ap->r == 0)
		ap->r = store_checkpoint(ap->s);
	pthread_mutex_lock(&g_park.mu);
	g_park.applied = 1;
	pthread_cond_broadcast(&g_park.cv);
	pthread_mutex_unlock(&g_park.mu);
	return NULL;
}

/* The open chunks' part of the bound: a dirty buffer counts (its bytes, a
 * header and a page) until a checkpoint writes its tail, and the growth of
 * that checkpoint stays within the bound; a clean buffer counts nothing,
 * so a checkpoint gives the reserve back (every buffer's capacity was
 * counted before: 21 MiB after cp -r of 8,000 files and a checkpoint). */
static void test_space_open_chunks(void)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	struct store_stats st0, st1;
	uint64_t need0 = 0, need1 = 0, need2 = 0, need3 = 0, spare = 0, ino[60];
	const int nf = 60; /* (the model holds 64 files) */
	char name[32];

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	for (int i = 0; i < nf; i++) {
		snprintf(name, sizeof(name), "small%d", i);
		ino[i] = sm_mk_file(&m, &b, NS_ROOT_INO, name);
	}
	T_ASSERT(sm_commit(s, &m, &b) == 0);
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_space(s, &need0, &spare);
	for (int k = 0; k < 3; k++) /* records below chunk/2 (2 KiB here) gather in open chunks */
		for (int i = 0; i < nf; i++) {
			sm_append(&m, &b, sm_model_file(&m, ino[i]), 1000, false);
			if (b.len > 64000)
				T_ASSERT(sm_commit(s, &m, &b) == 0);
		}
	T_ASSERT(sm_commit(s, &m, &b) == 0);
	store_space(s, &need1, &spare);
	store_stats(s, &st0);
	T_CHECK(need1 >= need0 + (uint64_t)nf * (3000 + 4096)); /* every dirty buffer counts */
	T_CHECK_EQ(store_checkpoint(s), 0);
	store_stats(s, &st1);
	T_CHECK((st1.pages_total - st0.pages_total) * st0.page_size <= need1); /* within the bound */
	store_space(s, &need2, &spare);
	T_CHECK(need2 < need0 + 64u * 4096); /* the tails are written: clean buffers count nothing */
	sm_append(&m, &b, sm_model_file(&m, ino[7]), 100, false); /* one file dirty again (3,100 bytes) */
	T_ASSERT(sm_commit(s, &m, &b) == 0);
	store_space(s, &need3, &spare);
	T_CHECK(need3 >= need2 + 3100 + 4096 && need3 < need2 + 3100 + 4096 + 64u * 4096);
	T_CHECK_EQ(sm_verify(s, &m, 5), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}

static void test_reader_never_blocks_commit(void)
{
	struct vfs *v;
	struct store *s = NULL;
	struct model m;
	struct batch b = {0};
	pthread_t rt, at;

	T_ASSERT(vfs_mem_new(&v) == 0);
	sm_model_init(&m);
	T_ASSERT(sm_open_store(v, &s) == 0);
	sm_mk_file(&m, &b, NS_ROOT_INO, "big");
	sm_mk_file(&m, &b, NS_ROOT_INO, "other");
	T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	for (int i = 0; i < 300; i++) { /* > 126 records: index pages, loaded lazily after reopen */
		sm_append(&m, &b, &m.f[i % 2], 2000, true);
		T_CHECK_EQ(sm_commit(s, &m, &b), 0);
	}
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(sm_open_store(v, &s) == 0);

	struct store_test_hooks h = {.arg = &g_park, .before_decode = park_hook};
	store_set_test_hooks(&h);
	struct parked_reader pr = {.s = s, .ino = m.f[0].ino, .len = m.f[0].len};
	pr.buf = malloc(pr.len);
	T_ASSERT(pr.buf && pthread_create(&rt, NULL, parked_reader_main, &pr) == 0);
	pthread_mutex_lock(&g_park.mu);
	while (!g_park.parked)
		pthread_cond_wait(&g_park.cv, &g_park.mu);
	pthread_mutex_unlock(&g_park.mu);
	store_set_test_hooks(NULL); /* only the first reader parks (set before it ran; it copied nothing) */

	struct applier ap = {.s = s, .m = &m, .b = &b};
	T_ASSERT(pthread_create(&at, NULL, applier_main, &ap) == 0);
	/* A generous bound only to turn a deadlock into a failure, not a timing
	 * check: the applier needs no reader to make progress. */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 120;
	pthread_mutex_lock(&g_park.mu);
	while (!g_park.applied && pthread_cond_timedwait(&g_park.cv, &g_park.mu, &until) == 0)
		;
	int applied = g_park.applied;
	g_park.release = 1; /* let the reader go either way */
	pthread_cond_broadcast(&g_park.cv);
	pthread_mutex_unlock(&g_park.mu);
	T_CHECK(applied); /* store_apply + checkpoint completed while the reader was parked */
	pthread_join(at, NULL);
	pthread_join(rt, NULL);
	T_CHECK_EQ(ap.r, 0);
	T_CHECK_EQ(pr.r, 0);
	T_CHECK(memcmp(pr.buf, m.f[0].data, pr.len) == 0);
	T_CHECK_EQ(sm_verify(s, &m, 5), 0);
	T_CHECK_EQ(store_close(s), 0);
	free(pr.buf);
	free(b.p);
	sm_model_free(&m);
	vfs_destroy(v);
}


int main(void)
{
	bz_log_set_level(BZ_LOG_ERR);
	if (getenv("T_VERBOSE"))
		bz_log_set_level(BZ_LOG_DEBUG);
	test_roundtrip();
	test_replay();
	test_namespace();
	test_free_pages();
	test_corruption();
	test_open_cost();
	test_crash_checkpoint();
	test_crash_recovery();
	test_concurrent_reads();
	test_random_corruption();
	test_faults();
	test_missing_db();
	test_space_bound();
	test_space_open_chunks();
	test_reader_never_blocks_commit();
	T_DONE();
}
