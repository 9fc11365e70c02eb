/* test_store_create.c — creating a store on a small disk (storage/store.c
 * store_create, docs/FORMAT.md §1 "Creating a store").
 *
 * The disk is the memory backend with a capacity (vfs_mem_set_capacity):
 * vfs_space reports it, and writes past it fail with ENOSPC. Checked:
 *   - a new store's WAL is sized from the free space when the caller
 *     leaves wal_segment_bytes 0 (4 segments, a power of two from 4 to
 *     64 MiB, the whole log at most 1/8 of the free space), and the
 *     largest batch follows the real segment size (store_wal_max_payload);
 *   - an explicit segment size is kept, and an existing store keeps the
 *     size recorded in its superblock whatever the options say;
 *   - a creation that fails (the WAL does not fit; ENOSPC injected while
 *     zero-filling a segment, writing store.db.tmp, renaming it, syncing
 *     the directory) leaves none of the files it made, and keeps the files
 *     that were there before;
 *   - the next open of the same directory creates a store cleanly.
 */
#include <string.h>

#include "storage/log.h"
#include "storage/store.h"
#include "storage/wal.h"
#include "t.h"

#define MiB (1ull << 20)

static bool exists(struct vfs *v, const char *name)
{
	struct vfs_file *f = NULL;
	int r = vfs_open(v, name, VFS_O_RDONLY, &f);

	vfs_close(f);
	return r == 0;
}

static uint64_t free_bytes(struct vfs *v)
{
	uint64_t free_b = 0, total_b = 0;

	T_ASSERT(vfs_space(v, &free_b, &total_b) == 0);
	return free_b;
}

/* Opens (creating) a store on v with the default options, except a
 * segment size seg (0: automatic); *ret_seg: its recorded segment size. */
static int open_store(struct vfs *v, uint64_t seg, struct store **ret_s, uint64_t *ret_seg)
{
	struct store_opts o;
	struct store_sb_info sb[2];
	int r;

	store_opts_default(&o);
	o.vfs = v;
	o.cache_bytes = 1 * MiB;
	if (seg)
		o.wal_segment_bytes = seg;
	r = store_open(&o, ret_s);
	if (r == 0 && ret_seg) {
		T_ASSERT(store_read_superblocks(v, sb) == 0);
		T_CHECK(sb[0].valid);
		T_CHECK_EQ(sb[0].wal_segments, 4);
		*ret_seg = sb[0].wal_segment_bytes;
	}
	return r;
}

/* No file of a store but the lock (and what the test put there itself). */
static void check_no_store_files(struct vfs *v)
{
	struct wal_probe_info pi;

	T_CHECK(!exists(v, "store.db"));
	T_CHECK(!exists(v, "store.db.tmp"));
	T_ASSERT(wal_probe_dir(v, &pi) == 0);
	T_CHECK_EQ(pi.files, 0);
	T_CHECK_EQ(pi.bytes, 0);
}

/* The WAL of a new store on disks of several sizes. */
static void test_auto_size(void)
{
	static const struct {
		uint64_t disk, seg;
	} cases[] = {
		{0, 64 * MiB},          /* the default 1 TiB: as before */
		{4096 * MiB, 64 * MiB}, /* 4 x 64 = 256 MiB <= 512 MiB */
		{1024 * MiB, 32 * MiB}, /* 128 MiB: 4 x 32 */
		{300 * MiB, 8 * MiB},   /* 37.5 MiB: 4 x 8 (the tester's 300 MB disk) */
		{64 * MiB, 4 * MiB},    /* 8 MiB: below the minimum, 4 x 4 */
		{40 * MiB, 4 * MiB},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vfs *v;
		struct store *s = NULL;
		uint64_t seg = 0;

		T_ASSERT(vfs_mem_new(&v) == 0);
		T_ASSERT(vfs_mem_set_capacity(v, cases[i].disk) == 0);
		T_CHECK_EQ(open_store(v, 0, &s, &seg), 0);
		T_CHECK_EQ(seg, cases[i].seg);
		/* the largest batch is the real segment's, not a default's */
		if (s)
			T_CHECK_EQ(store_wal_max_payload(s),
				   wal_max_payload(&(struct wal_opts){.segment_bytes = seg, .segments = 4}));
		T_CHECK_EQ(store_close(s), 0);
		/* reopened with other options: the recorded size stays */
		s = NULL;
		seg = 0;
		T_CHECK_EQ(open_store(v, 16 * MiB, &s, &seg), 0);
		T_CHECK_EQ(seg, cases[i].seg);
		if (s)
			T_CHECK(store_wal_max_payload(s) < cases[i].seg);
		T_CHECK_EQ(store_close(s), 0);
		vfs_destroy(v);
	}
}

/* A segment size the caller sets is kept, even where the automatic one
 * would differ. */
static void test_explicit_size(void)
{
	struct vfs *v;
	struct store *s = NULL;
	uint64_t seg = 0;

	T_ASSERT(vfs_mem_new(&v) == 0);
	T_ASSERT(vfs_mem_set_capacity(v, 300 * MiB) == 0);
	T_CHECK_EQ(open_store(v, 1 * MiB, &s, &seg), 0);
	T_CHECK_EQ(seg, 1 * MiB);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);

	T_ASSERT(vfs_mem_new(&v) == 0);
	T_ASSERT(vfs_mem_set_capacity(v, 1024 * MiB) == 0);
	s = NULL;
	T_CHECK_EQ(open_store(v, 64 * MiB, &s, &seg), 0);
	T_CHECK_EQ(seg, 64 * MiB);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
}

/* An explicit WAL larger than the disk: refused before anything is
 * written, nothing left; the next open with the automatic size creates. */
static void test_too_large(void)
{
	struct vfs *v;
	struct store *s = NULL;
	uint64_t seg = 0, free0;

	T_ASSERT(vfs_mem_new(&v) == 0);
	T_ASSERT(vfs_mem_set_capacity(v, 64 * MiB) == 0);
	free0 = free_bytes(v);
	T_CHECK_EQ(open_store(v, 64 * MiB, &s, NULL), -ENOSPC);
	T_CHECK(s == NULL);
	check_no_store_files(v);
	T_CHECK_EQ(free_bytes(v), free0);
	T_CHECK_EQ(open_store(v, 0, &s, &seg), 0);
	T_CHECK_EQ(seg, 4 * MiB);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
}

/* The counted call k of kind op of a creation fails with ENOSPC (a disk
 * that fills meanwhile). A pre-existing file "keep" and a header-less
 * wal.000 (an interrupted creation's) must survive; everything the
 * creation made must be gone; then a clean open creates the store. */
static void fail_case(enum vfs_op op, uint64_t k, bool preexisting, const char *what)
{
	struct vfs *mem, *fv;
	struct store *s = NULL;
	struct vfs_file *f = NULL;
	struct wal_probe_info pi;
	uint64_t seg = 0, free0;
	struct vfs_fault_spec spec = {.fail_at = k, .mode = VFS_FAULT_ENOSPC, .op_mask = VFS_MASK(op)};

	fprintf(stderr, "  failed creation: %s\n", what);
	T_ASSERT(vfs_mem_new(&mem) == 0);
	T_ASSERT(vfs_mem_set_capacity(mem, 300 * MiB) == 0);
	if (preexisting) {
		static const uint8_t zero[4096];
		T_ASSERT(vfs_open(mem, "keep", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
		T_ASSERT(vfs_pwrite(f, "x", 1, 0) == 0);
		vfs_close(f);
		T_ASSERT(vfs_open(mem, "wal.000", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
		T_ASSERT(vfs_pwrite(f, zero, sizeof(zero), 0) == 0);
		vfs_close(f);
		f = NULL;
	}
	free0 = free_bytes(mem);
	T_ASSERT(vfs_fault_new(mem, &fv) == 0);
	vfs_fault_arm(fv, &spec);
	T_CHECK_EQ(open_store(fv, 0, &s, NULL), -ENOSPC);
	T_CHECK(s == NULL);
	T_CHECK_EQ(vfs_fault_injected(fv), 1);
	T_CHECK(!exists(mem, "store.db"));
	T_CHECK(!exists(mem, "store.db.tmp"));
	T_ASSERT(wal_probe_dir(mem, &pi) == 0);
	if (preexisting) {
		/* the interrupted creation's segment stays (overwritten whole:
		 * it is a segment of the size this creation chose) */
		T_CHECK(exists(mem, "keep"));
		T_CHECK_EQ(pi.files, 1);
		T_CHECK_EQ(pi.first, 0);
		T_CHECK_EQ(pi.with_header, 0);
		T_CHECK(free_bytes(mem) >= free0 - 8 * MiB);
	} else {
		T_CHECK_EQ(pi.files, 0);
		T_CHECK_EQ(free_bytes(mem), free0);
	}
	/* the next open of the same directory creates cleanly */
	vfs_fault_arm(fv, &(struct vfs_fault_spec){0});
	T_CHECK_EQ(open_store(fv, 0, &s, &seg), 0);
	T_CHECK_EQ(seg, 8 * MiB);
	T_CHECK_EQ(store_close(s), 0);
	s = NULL;
	T_CHECK_EQ(open_store(fv, 0, &s, &seg), 0);
	T_CHECK_EQ(store_close(s), 0);
	T_ASSERT(wal_probe_dir(mem, &pi) == 0);
	T_CHECK_EQ(pi.files, 4);
	vfs_destroy(fv);
	vfs_destroy(mem);
}

static void test_failed_creation(void)
{
	/* 300 MiB: 8 MiB segments zero-filled in 1 MiB writes, 8 each */
	fail_case(VFS_OP_PWRITE, 1, false, "first write of wal.000");
	fail_case(VFS_OP_PWRITE, 12, false, "zero-filling wal.001");
	fail_case(VFS_OP_PWRITE, 32, false, "last write of wal.003");
	fail_case(VFS_OP_PWRITE, 33, false, "writing store.db.tmp");
	fail_case(VFS_OP_RENAME, 1, false, "renaming store.db.tmp");
	fail_case(VFS_OP_SYNC_DIR, 2, false, "syncing the directory after the rename");
	fail_case(VFS_OP_PWRITE, 20, true, "zero-filling wal.002, wal.000 pre-existing");
	fail_case(VFS_OP_SYNC_DIR, 2, true, "the last step, wal.000 pre-existing");
}

int main(void)
{
	bz_log_set_level(BZ_LOG_ERR);
	if (getenv("T_VERBOSE"))
		bz_log_set_level(BZ_LOG_DEBUG);
	test_auto_size();
	test_explicit_size();
	test_too_large();
	test_failed_creation();
	T_DONE();
}
