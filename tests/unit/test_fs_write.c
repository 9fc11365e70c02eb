/* test_fs_write.c — the daemon's append-only write path (fs/inode.c, fs/wb.c)
 * driven directly, without a kernel: the page writes of the writeback cache
 * in orders and with delays the kernel may produce but a mount cannot
 * reproduce on demand.
 *
 * Each case builds a struct fs the way main.c does (memory vfs, store,
 * pipeline, live namespace) with writeback_cache on and no session (so no
 * kernel notifications: invalidations are skipped, retrieve finds nothing),
 * creates a file, and calls fs_file_write(..., writepage = true) like
 * op_write does for FUSE_WRITE_CACHE requests, then fs_file_settle like
 * flush/fsync, and checks the live size and the stored bytes.
 */
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "fs/fs.h"
#include "t.h"

struct env {
	struct vfs *v;
	struct fs fs;
};

/* fs_interrupted lives in fs/ops.c (it asks libfuse about the request in
 * hand); these writes come from no FUSE request, so nothing interrupts them. */
bool fs_interrupted(void) { return false; }

/* po: the pipeline's options (NULL: the defaults, one worker). */
static void env_up_opts(struct env *e, uint64_t held_cap, const struct pipe_opts *opts)
{
	struct store_opts so;
	struct pipe_opts po;

	memset(e, 0, sizeof(*e));
	T_ASSERT(vfs_mem_new(&e->v) == 0);
	store_opts_default(&so);
	so.vfs = e->v;
	so.wal_segment_bytes = 1 << 20;
	so.wal_segments = 4;
	T_ASSERT(store_open(&so, &e->fs.store) == 0);
	bz_mutex_lock(&fs_ns_lock);
	T_ASSERT(store_ns_clone(e->fs.store, &e->fs.ns) == 0);
	bz_mutex_unlock(&fs_ns_lock);
	pipe_opts_default(&po);
	po.workers = 1;
	if (opts)
		po = *opts;
	T_ASSERT(pipe_start(e->fs.store, &po, &e->fs.pipe) == 0);
	e->fs.vfs = e->v;
	e->fs.store_dir = "mem";
	e->fs.opts.writeback_cache = true;
	e->fs.held_cap = held_cap;
	e->fs.space_reserve = 0;
	e->fs.space_free = UINT64_MAX / 2;
	e->fs.space_at_ns = bz_now_ns() + (1ull << 60); /* never sample the memory vfs */
}

static void env_up(struct env *e, uint64_t held_cap) { env_up_opts(e, held_cap, NULL); }

static void env_down(struct env *e)
{
	T_CHECK_EQ(pipe_stop(e->fs.pipe), 0);
	bz_mutex_lock(&fs_ns_lock);
	fs_inode_table_free(&e->fs);
	ns_free(e->fs.ns);
	e->fs.ns = NULL;
	bz_mutex_unlock(&fs_ns_lock);
	T_CHECK_EQ(store_close(e->fs.store), 0);
	vfs_destroy(e->v);
}

/* Creates a file; *of is an open descriptor on it (fresh or not). */
static uint64_t mk(struct env *e, const char *name, struct fs_open *of, bool fresh)
{
	struct ns_op op = {.kind = NS_CREATE, .parent = NS_ROOT_INO, .name = name,
			   .name_len = (uint32_t)strlen(name), .mode = S_IFREG | 0644,
			   .atime_ns = 1, .mtime_ns = 1, .ctime_ns = 1};

	memset(of, 0, sizeof(*of));
	bz_mutex_lock(&fs_ns_lock);
	op.ino = ns_alloc_ino(e->fs.ns);
	T_ASSERT(fs_submit(&e->fs, &op) == 0);
	T_ASSERT(fs_inode_get(&e->fs, op.ino, &of->inode) == 0);
	of->flags = O_WRONLY;
	of->fresh = fresh;
	fs_open_link(&e->fs, of); /* as the daemon's open does: a writer the truncate sees */
	bz_mutex_unlock(&fs_ns_lock);
	return op.ino;
}

static void put(struct env *e, struct fs_open *of)
{
	bz_mutex_lock(&fs_ns_lock);
	fs_open_unlink(&e->fs, of);
	fs_inode_put(&e->fs, of->inode);
	bz_mutex_unlock(&fs_ns_lock);
}

static uint64_t live(struct env *e, uint64_t ino)
{
	uint64_t size = 0;

	T_ASSERT(fs_live_size(&e->fs, ino, &size) == 0);
	return size;
}

static bool stored_equals(struct env *e, uint64_t ino, const char *want, size_t len)
{
	char *got = malloc(len + 1);
	size_t n = 0;
	bool ok;

	T_ASSERT(got);
	T_ASSERT(pipe_read(e->fs.pipe, ino, 0, got, len + 1, &n) == 0);
	ok = n == len && memcmp(got, want, len) == 0;
	free(got);
	return ok;
}

/* Every page arrived: the live size is len, nothing is held, and the
 * stored bytes are data. */
static void all_stored(struct env *e, uint64_t ino, const char *data, size_t len)
{
	T_CHECK_EQ(live(e, ino), len);
	T_CHECK(e->fs.held_total == 0);
	T_CHECK(stored_equals(e, ino, data, len));
}

static void fill(char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (char)('a' + (i * 7 + seed + i / 4096) % 26);
}

#define PG 4096

/* The kernel writes pages back in any order and after any delay: every
 * order is accepted and stored in file order. */
static void out_of_order(void)
{
	struct env e;
	struct fs_open of;
	enum { N = 64 };
	static char data[N * PG + 100];
	uint64_t ino;

	env_up(&e, 64 << 20);
	fill(data, sizeof(data), 1);
	ino = mk(&e, "ooo", &of, false);
	/* the last (partial) page first, then the others backwards */
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data + N * PG, 100, N * PG, true), 100);
	for (int i = N - 1; i >= 1; i--)
		T_CHECK_EQ(fs_file_write(&e.fs, &of, data + i * PG, PG, (uint64_t)i * PG, true), PG);
	T_CHECK_EQ(live(&e, ino), 0); /* all held: page 0 has not come */
	T_CHECK(e.fs.held_total == (uint64_t)(N - 1) * PG + 100);
	/* a reader past the stored end sees the held bytes */
	{
		char buf[PG];
		size_t n = 0;
		fs_file_read_held(&e.fs, ino, PG, buf, PG, &n);
		T_CHECK_EQ(n, PG);
		T_CHECK(memcmp(buf, data + PG, PG) == 0);
	}
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data, PG, 0, true), PG);
	all_stored(&e, ino, data, sizeof(data));
	/* the tail page rewritten with more bytes (identical prefix), early */
	T_CHECK_EQ(fs_file_settle(&e.fs, &of), 0);
	put(&e, &of);
	env_down(&e);
}

/* Interleaved: pages arrive as two interleaved streams, with a page sent
 * twice (once partial, once whole) the way a re-dirtied tail page is. */
static void interleaved_and_resent(void)
{
	struct env e;
	struct fs_open of;
	static char data[16 * PG];
	uint64_t ino;
	static const int order[] = {1, 3, 0, 5, 2, 7, 4, 6, 9, 11, 8, 13, 10, 15, 12, 14};

	env_up(&e, 64 << 20);
	fill(data, sizeof(data), 2);
	ino = mk(&e, "il", &of, false);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data + 5 * PG, 10, 5 * PG, true), 10); /* partial, held */
	for (size_t k = 0; k < BZ_ARRAY_SIZE(order); k++) {
		int i = order[k];
		T_CHECK_EQ(fs_file_write(&e.fs, &of, data + i * PG, PG, (uint64_t)i * PG, true), PG);
	}
	T_CHECK_EQ(live(&e, ino), sizeof(data));
	T_CHECK(stored_equals(&e, ino, data, sizeof(data)));
	T_CHECK_EQ(fs_file_settle(&e.fs, &of), 0);
	put(&e, &of);
	env_down(&e);
}

/* Real overwrites are still refused, held or not. */
static void overwrites_refused(void)
{
	struct env e;
	struct fs_open of;
	static char data[4 * PG], evil[PG];
	uint64_t ino;

	env_up(&e, 64 << 20);
	fill(data, sizeof(data), 3);
	memset(evil, 'X', sizeof(evil));
	ino = mk(&e, "ow", &of, false);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data + 2 * PG, PG, 2 * PG, true), PG); /* held */
	/* the same page with different bytes: refused at once */
	T_CHECK_EQ(fs_file_write(&e.fs, &of, evil, PG, 2 * PG, true), -EPERM);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data, 2 * PG, 0, true), 2 * PG);
	T_CHECK_EQ(live(&e, ino), 3 * PG);
	/* below the end: identical accepted, different refused */
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data + PG, PG, PG, true), PG);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, evil, 10, 5, true), -EPERM);
	T_CHECK_EQ(live(&e, ino), 3 * PG);
	T_CHECK(stored_equals(&e, ino, data, 3 * PG));
	put(&e, &of);
	env_down(&e);
}

/* A page beyond a hole nobody wrote (pwrite past the end): held until the
 * flush, then refused; the kernel keeps that size, so a later append at it
 * stores zeros for the gap (what readers of the kernel cache see). On a
 * fresh file (cp of a sparse file) the hole becomes zeros instead. */
static void holes(void)
{
	struct env e;
	struct fs_open of, of2;
	static char data[PG], want[3 * PG + 20];
	uint64_t ino;

	env_up(&e, 64 << 20);
	fill(data, sizeof(data), 4);
	ino = mk(&e, "hole", &of, false);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data, 100, 0, true), 100);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data, 10, 3 * PG, true), 10); /* held */
	T_CHECK_EQ(fs_file_settle(&e.fs, &of), -EPERM);
	T_CHECK_EQ(live(&e, ino), 100);
	T_CHECK(e.fs.held_total == 0);
	T_CHECK_EQ(fs_file_settle(&e.fs, &of), 0); /* reported once */
	/* the next appender writes at the kernel's size, 3 pages + 10 */
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data + 200, 10, 3 * PG + 10, true), 10);
	memcpy(want, data, 100);
	memset(want + 100, 0, 3 * PG + 10 - 100);
	memcpy(want + 3 * PG + 10, data + 200, 10);
	T_CHECK_EQ(live(&e, ino), 3 * PG + 20);
	T_CHECK(stored_equals(&e, ino, want, 3 * PG + 20));
	put(&e, &of);

	ino = mk(&e, "sparse", &of2, true);
	T_CHECK_EQ(fs_file_write(&e.fs, &of2, data, 100, 0, true), 100);
	T_CHECK_EQ(fs_file_write(&e.fs, &of2, data, 10, 3 * PG, true), 10);
	T_CHECK_EQ(fs_file_settle(&e.fs, &of2), 0);
	memset(want, 0, sizeof(want));
	memcpy(want, data, 100);
	memcpy(want + 3 * PG, data, 10);
	T_CHECK_EQ(live(&e, ino), 3 * PG + 10);
	T_CHECK(stored_equals(&e, ino, want, 3 * PG + 10));
	put(&e, &of2);
	env_down(&e);
}

/* A truncate below what is held is a shrink of bytes the kernel has:
 * refused; above it, the hole and the rest become zeros on a fresh file. */
static void truncate_and_held(void)
{
	struct env e;
	struct fs_open of;
	static char data[2 * PG];
	uint64_t ino;

	env_up(&e, 64 << 20);
	fill(data, sizeof(data), 5);
	ino = mk(&e, "tr", &of, true);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data, PG, PG, true), PG); /* held */
	T_CHECK_EQ(fs_file_truncate(&e.fs, of.inode, PG + 10), -EPERM);
	T_CHECK_EQ(fs_file_truncate(&e.fs, of.inode, 3 * PG), 0);
	/* the zeros wait: pages below may still be dirty in the kernel */
	T_CHECK_EQ(fs_file_truncate(&e.fs, of.inode, 3 * PG - 1), -EPERM);
	T_CHECK_EQ(fs_file_settle(&e.fs, &of), 0);
	T_CHECK_EQ(live(&e, ino), 3 * PG);
	T_CHECK_EQ(fs_file_truncate(&e.fs, of.inode, PG), -EPERM);
	{
		static char want[3 * PG];
		memcpy(want + PG, data, PG);
		T_CHECK(stored_equals(&e, ino, want, sizeof(want)));
	}
	put(&e, &of);
	env_down(&e);
}

/* Appenders racing a growing truncate (issue 12.3): the truncate's zeros
 * wait while the pages below the kernel's size at the truncate arrive late
 * and out of order; the appends made after it (at its size) are held. Every
 * byte ends up where the kernel had it. */
static void truncate_racing_appends(void)
{
	struct env e;
	struct fs_open of;
	static char data[4 * PG], want[8 * PG];
	uint64_t ino;

	env_up(&e, 64 << 20);
	fill(data, sizeof(data), 7);
	ino = mk(&e, "race", &of, false);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data, 100, 0, true), 100);
	/* the kernel had 2 pages + 50 dirty when it grew the file to 5 pages */
	T_CHECK_EQ(fs_file_truncate(&e.fs, of.inode, 5 * PG), 0);
	/* an appender writes at 5 pages: arrives first */
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data + 3 * PG, 300, 5 * PG, true), 300);
	/* then the older dirty pages, the second before the first */
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data + PG, PG, PG, true), PG);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data + 2 * PG, 50, 2 * PG, true), 50);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data, PG, 0, true), PG);
	T_CHECK_EQ(live(&e, ino), 2 * PG + 50);
	/* a shrink below the kernel's size is refused */
	T_CHECK_EQ(fs_file_truncate(&e.fs, of.inode, 5 * PG + 10), -EPERM);
	T_CHECK_EQ(fs_file_settle(&e.fs, &of), 0);
	memcpy(want, data, 2 * PG + 50);
	memcpy(want + 5 * PG, data + 3 * PG, 300);
	T_CHECK_EQ(live(&e, ino), 5 * PG + 300);
	T_CHECK(stored_equals(&e, ino, want, 5 * PG + 300));
	/* a second growing truncate, then the next append, no settle between:
	 * the next truncate pays the first one's zeros */
	T_CHECK_EQ(fs_file_truncate(&e.fs, of.inode, 6 * PG), 0);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data, 10, 6 * PG, true), 10);
	T_CHECK_EQ(fs_file_truncate(&e.fs, of.inode, 7 * PG), 0);
	T_CHECK_EQ(live(&e, ino), 6 * PG + 10);
	T_CHECK_EQ(fs_file_settle(&e.fs, &of), 0);
	memcpy(want + 6 * PG, data, 10);
	T_CHECK_EQ(live(&e, ino), 7 * PG);
	T_CHECK(stored_equals(&e, ino, want, 7 * PG));
	put(&e, &of);
	env_down(&e);
}

/* With no room to hold (held_cap 0) a page past the end is judged at once:
 * the behaviour the kernel's reordering used to meet. */
static void no_room(void)
{
	struct env e;
	struct fs_open of;
	static char data[2 * PG];

	env_up(&e, 0);
	fill(data, sizeof(data), 6);
	(void)mk(&e, "nr", &of, false);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data + PG, PG, PG, true), -EPERM);
	put(&e, &of);
	env_down(&e);
}

/* df (fs_space_avail) and the reserve check count data accepted but not
 * yet applied to store.db as used: once applied, the room df reported is
 * still there. The pipeline holds 4 MiB unsealed (linger and batch limits
 * far away), so nothing is applied until the barrier. */
static void space_counts_unapplied(void)
{
	struct env e;
	struct fs_open of;
	struct pipe_opts po;
	const size_t len = 4u << 20;
	uint64_t a0, a1, a2, spare;
	uint64_t *data = malloc(len);
	struct rng {
		uint64_t s;
	} r = { 0x5eed };

	T_ASSERT(data);
	for (size_t i = 0; i < len / 8; i++) { /* incompressible: stored ~ raw */
		r.s = r.s * 6364136223846793005ull + 1442695040888963407ull;
		data[i] = r.s ^ (r.s >> 29);
	}
	pipe_opts_default(&po);
	po.workers = 1;
	po.linger_us = UINT32_MAX;
	po.batch_bytes = 64u << 20;
	po.batch_records = 65536;
	po.sync_interval_ms = 3600000;
	env_up_opts(&e, 0, &po);
	e.fs.space_at_ns = 0; /* sample the memory vfs (1 TiB less what it holds) */
	uint64_t ino = mk(&e, "u", &of, true);
	a0 = fs_space_avail(&e.fs, &spare);
	T_ASSERT(pipe_append(e.fs.pipe, ino, 0, data, len) == 0);
	a1 = fs_space_avail(&e.fs, &spare);
	T_CHECK(a1 + len <= a0 + (64u << 10)); /* the 4 MiB in flight are not available */
	T_ASSERT(pipe_barrier_wait(e.fs.pipe, PIPE_DURABLE) == 0);
	T_CHECK_EQ(pipe_stop(e.fs.pipe), 0); /* everything applied */
	e.fs.pipe = NULL;
	a2 = fs_space_avail(&e.fs, &spare);
	/* what df said was available still is, less the pages' overhead */
	T_CHECK(a2 + (256u << 10) >= a1);
	/* and the applied 4 MiB take their stored size (~raw: incompressible)
	 * plus at most the 1/16 page overhead the estimate charges; measured
	 * against a0, not a1: a1 also counts the WAL copy when the commit
	 * thread logged the batch before a1 was sampled (a busy machine) */
	T_CHECK(a2 + len <= a0 + (64u << 10));
	T_CHECK(a2 + len + len / 16 + (256u << 10) >= a0);
	if (t_failures)
		fprintf(stderr, "space_counts_unapplied: a0 %llu a1 %llu a2 %llu (a0-a1 %lld, a2-a1 %lld)\n",
			(unsigned long long)a0, (unsigned long long)a1, (unsigned long long)a2,
			(long long)(a0 - a1), (long long)(a2 - a1));
	put(&e, &of);
	env_down(&e);
	free(data);
}

/* Runs of page writes in random orders (what several session threads
 * taking a writeback's requests produce): extents that grow at their end,
 * merge with the next, and drain; every order stores the file in order. */
static void random_orders(void)
{
	enum { N = 512, RUNS = 40 };
	static char data[N * PG];
	uint64_t seed = 0x9e3779b97f4a7c15ull;

	fill(data, sizeof(data), 7);
	for (int run = 0; run < RUNS; run++) {
		struct env e;
		struct fs_open of;
		uint64_t ino, offs[N], lens[N];
		int n = 0;
		char name[16];

		env_up(&e, 64 << 20);
		snprintf(name, sizeof(name), "r%d", run);
		ino = mk(&e, name, &of, false);
		/* cut the file into requests of 1..16 pages */
		for (uint64_t off = 0; off < sizeof(data); n++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			lens[n] = BZ_MIN((uint64_t)((seed >> 33) % 16 + 1) * PG, sizeof(data) - off);
			offs[n] = off;
			off += lens[n];
		}
		/* shuffle locally: each request moves up to 4 places */
		for (int i = 0; i < n; i++) {
			int j;
			uint64_t t;
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			j = BZ_MIN(n - 1, i + (int)((seed >> 33) % 5));
			t = offs[i], offs[i] = offs[j], offs[j] = t;
			t = lens[i], lens[i] = lens[j], lens[j] = t;
		}
		for (int i = 0; i < n; i++)
			T_CHECK_EQ(fs_file_write(&e.fs, &of, data + offs[i], (size_t)lens[i], offs[i], true),
				   (ssize_t)lens[i]);
		all_stored(&e, ino, data, sizeof(data));
		T_CHECK_EQ(fs_file_settle(&e.fs, &of), 0);
		put(&e, &of);
		env_down(&e);
	}
}

/* ---- the order of page writes (wb.c "Order") ---- */

struct bg_write {
	struct env *e;
	struct fs_open *of;
	const char *buf;
	size_t len;
	uint64_t off;
	ssize_t ret;
	int done; /* __atomic */
};

static void *bg_write_main(void *arg)
{
	struct bg_write *w = arg;

	w->ret = fs_file_write(&w->e->fs, w->of, w->buf, w->len, w->off, true);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Polls (no time limit but the test's own) until the write in w waits or
 * has returned (without waiting: the checks after this fail). */
static void until_waiting(struct env *e, const struct bg_write *w, uint64_t waits)
{
	while (FS_READ(&e->fs, order_waits) < waits && !__atomic_load_n(&w->done, __ATOMIC_ACQUIRE))
		usleep(1000);
}

/* What leaving does for a write that never came (the daemon's leave runs in
 * fs_file_write under the inode lock). */
static void fake_leave(struct env *e, struct fs_inode *ip, int slot)
{
	bz_cap_lock(&ip->lock, &fs_inode_cap);
	fs_wb_order_leave(&e->fs, slot);
	pthread_cond_broadcast(&ip->grown);
	bz_cap_unlock(&ip->lock, &fs_inode_cap);
}

/* A page write past the end while a write of the page below it is in the
 * daemon (registered, as a session thread does before it takes the inode
 * lock) waits for it and is appended, not held; with none below it, or
 * once the one below it is gone without appending, it is held as before. */
static void page_waits_for_below(void)
{
	struct env e;
	struct fs_open of;
	static char data[4 * PG];
	struct bg_write w;
	pthread_t th;
	uint64_t ino;
	int below;

	env_up(&e, 64 << 20);
	T_ASSERT(fs_wb_start(&e.fs) == 0);
	fill(data, sizeof(data), 9);
	ino = mk(&e, "ord", &of, false);

	/* page 0 "in flight": page 1 waits, then follows it without being held */
	below = fs_wb_order_enter(&e.fs, ino, 0);
	T_ASSERT(below >= 0);
	w = (struct bg_write){.e = &e, .of = &of, .buf = data + PG, .len = PG, .off = PG};
	T_ASSERT(pthread_create(&th, NULL, bg_write_main, &w) == 0);
	until_waiting(&e, &w, 1);
	T_CHECK(!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE));
	T_CHECK(e.fs.held_total == 0);
	T_CHECK_EQ(live(&e, ino), 0);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data, PG, 0, true), PG);
	T_ASSERT(pthread_join(th, NULL) == 0);
	T_CHECK_EQ(w.ret, PG);
	fake_leave(&e, of.inode, below);
	T_CHECK_EQ(FS_READ(&e.fs, held_writes), 0);
	T_CHECK_EQ(live(&e, ino), 2 * PG);

	/* nothing below in flight: page 3 is held at once, no wait */
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data + 3 * PG, PG, 3 * PG, true), PG);
	T_CHECK_EQ(FS_READ(&e.fs, order_waits), 1);
	T_CHECK_EQ(FS_READ(&e.fs, held_writes), 1);

	/* the write below leaves without appending (refused, failed): the
	 * waiter stops waiting and holds its page */
	below = fs_wb_order_enter(&e.fs, ino, 2 * PG);
	w = (struct bg_write){.e = &e, .of = &of, .buf = data + 3 * PG, .len = PG, .off = 3 * PG};
	T_ASSERT(pthread_create(&th, NULL, bg_write_main, &w) == 0);
	until_waiting(&e, &w, 2);
	fake_leave(&e, of.inode, below);
	T_ASSERT(pthread_join(th, NULL) == 0);
	T_CHECK_EQ(w.ret, PG); /* the same bytes again: merged with the held page */
	T_CHECK_EQ(live(&e, ino), 2 * PG);
	T_CHECK_EQ(fs_file_write(&e.fs, &of, data + 2 * PG, PG, 2 * PG, true), PG);
	all_stored(&e, ino, data, sizeof(data));
	T_CHECK_EQ(fs_file_settle(&e.fs, &of), 0);
	put(&e, &of);
	fs_wb_stop(&e.fs);
	env_down(&e);
}

int main(void)
{
	bz_log_set_level(BZ_LOG_ERR);
	out_of_order();
	interleaved_and_resent();
	overwrites_refused();
	holes();
	truncate_and_held();
	truncate_racing_appends();
	no_room();
	space_counts_unapplied();
	random_orders();
	page_waits_for_below();
	T_DONE();
}
