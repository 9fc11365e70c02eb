/* test_vfs.c — the vfs backends: posix, memory, recording (durability rules,
 * crash states, torn writes), fault injection. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/vfs.h"
#include "t.h"

/* ---- helpers ---- */

static int put(struct vfs *v, const char *name, const void *buf, size_t len, uint64_t off)
{
	struct vfs_file *f = NULL;
	int r = vfs_open(v, name, VFS_O_RDWR | VFS_O_CREAT, &f);
	if (r == 0)
		r = vfs_pwrite(f, buf, len, off);
	vfs_close(f);
	return r;
}

/* Reads a whole file into a malloc'd buffer; returns its size or -errno.
 * Thread-safe (no T_ macros: their counters are not). */
static long slurp(struct vfs *v, const char *name, uint8_t **ret)
{
	struct vfs_file *f = NULL;
	uint64_t size = 0;
	size_t n = 0;
	uint8_t *b = NULL;
	long r = vfs_open(v, name, VFS_O_RDONLY, &f);
	if (r < 0)
		goto out;
	r = vfs_size(f, &size);
	if (r < 0)
		goto out;
	b = malloc(size + 1);
	if (!b) {
		r = -ENOMEM;
		goto out;
	}
	r = vfs_pread(f, b, size + 1, 0, &n);
	if (r == 0 && n != size)
		r = -EIO;
	if (r < 0)
		goto out;
	*ret = b;
	b = NULL;
	r = (long)size;
out:
	free(b);
	vfs_close(f);
	return r;
}

static bool exists(struct vfs *v, const char *name)
{
	struct vfs_file *f = NULL;
	int r = vfs_open(v, name, VFS_O_RDONLY, &f);
	vfs_close(f);
	return r == 0;
}

/* File equals len bytes of byte c? */
static bool file_is(struct vfs *v, const char *name, const uint8_t *want, size_t len)
{
	uint8_t *b = NULL;
	long n = slurp(v, name, &b);
	bool ok = n == (long)len && (len == 0 || memcmp(b, want, len) == 0);
	free(b);
	return ok;
}

/* ---- behaviour common to every backend ---- */

static void test_common(struct vfs *v)
{
	struct vfs_file *f = NULL, *g = NULL;
	uint8_t buf[256], rd[512];
	uint64_t size = 0, fr = 0, tot = 0;
	size_t n = 0;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	T_CHECK_EQ(vfs_open(v, "nope", VFS_O_RDONLY, &f), -ENOENT);
	T_CHECK(f == NULL);
	T_CHECK_EQ(vfs_open(v, "a/b", VFS_O_RDWR | VFS_O_CREAT, &f), -EINVAL);
	T_ASSERT(vfs_open(v, "f1", VFS_O_RDWR | VFS_O_CREAT | VFS_O_EXCL, &f) == 0);
	T_CHECK_EQ(vfs_open(v, "f1", VFS_O_RDWR | VFS_O_CREAT | VFS_O_EXCL, &g), -EEXIST);
	T_CHECK_EQ(vfs_size(f, &size), 0);
	T_CHECK_EQ(size, 0);
	T_CHECK_EQ(vfs_pwrite(f, buf, 100, 0), 0);
	/* write past EOF zero-fills the gap */
	T_CHECK_EQ(vfs_pwrite(f, buf, 100, 200), 0);
	T_CHECK_EQ(vfs_size(f, &size), 0);
	T_CHECK_EQ(size, 300);
	T_CHECK_EQ(vfs_pread(f, rd, sizeof(rd), 0, &n), 0);
	T_CHECK_EQ(n, 300);
	T_CHECK(memcmp(rd, buf, 100) == 0);
	{
		bool zero = true;
		for (int i = 100; i < 200; i++)
			zero &= rd[i] == 0;
		T_CHECK(zero);
	}
	T_CHECK(memcmp(rd + 200, buf, 100) == 0);
	/* short read at EOF, empty read past it */
	T_CHECK_EQ(vfs_pread(f, rd, 100, 250, &n), 0);
	T_CHECK_EQ(n, 50);
	T_CHECK_EQ(vfs_pread(f, rd, 100, 1000, &n), 0);
	T_CHECK_EQ(n, 0);
	T_CHECK_EQ(vfs_fdatasync(f), 0);
	T_CHECK_EQ(vfs_fsync(f), 0);
	/* shrink then grow: the regrown bytes are zero */
	T_CHECK_EQ(vfs_ftruncate(f, 50), 0);
	T_CHECK_EQ(vfs_ftruncate(f, 80), 0);
	T_CHECK_EQ(vfs_pread(f, rd, sizeof(rd), 0, &n), 0);
	T_CHECK_EQ(n, 80);
	T_CHECK(memcmp(rd, buf, 50) == 0);
	T_CHECK(rd[50] == 0 && rd[79] == 0);
	{
		int r = vfs_fallocate(f, 0, 4096);
		T_CHECK(r == 0 || r == -EOPNOTSUPP);
		if (r == 0) {
			T_CHECK_EQ(vfs_size(f, &size), 0);
			T_CHECK_EQ(size, 4096);
		}
	}
	/* second handle sees the same file; lock conflicts between handles */
	T_ASSERT(vfs_open(v, "f1", VFS_O_RDONLY, &g) == 0);
	T_CHECK_EQ(vfs_pread(g, rd, 10, 0, &n), 0);
	T_CHECK(n == 10 && memcmp(rd, buf, 10) == 0);
	T_CHECK_EQ(vfs_lock(f), 0);
	T_CHECK_EQ(vfs_lock(g), -EWOULDBLOCK);
	vfs_close(f);
	f = NULL;
	T_CHECK_EQ(vfs_lock(g), 0);
	vfs_close(g);
	g = NULL;
	/* shared locks: many holders, never together with an exclusive one */
	{
		struct vfs_file *h = NULL;
		T_ASSERT(vfs_open(v, "f1", VFS_O_RDONLY, &f) == 0);
		T_ASSERT(vfs_open(v, "f1", VFS_O_RDONLY, &g) == 0);
		T_ASSERT(vfs_open(v, "f1", VFS_O_RDWR, &h) == 0);
		T_CHECK_EQ(vfs_lock_shared(f), 0);
		T_CHECK_EQ(vfs_lock_shared(g), 0);
		T_CHECK_EQ(vfs_lock(h), -EWOULDBLOCK);
		vfs_close(f);
		T_CHECK_EQ(vfs_lock(h), -EWOULDBLOCK);
		vfs_close(g);
		T_CHECK_EQ(vfs_lock(h), 0);
		T_ASSERT(vfs_open(v, "f1", VFS_O_RDONLY, &f) == 0);
		T_CHECK_EQ(vfs_lock_shared(f), -EWOULDBLOCK);
		vfs_close(h);
		T_CHECK_EQ(vfs_lock_shared(f), 0);
		vfs_close(f);
		f = g = NULL;
	}
	/* read-only handle refuses writes */
	T_ASSERT(vfs_open(v, "f1", VFS_O_RDONLY, &g) == 0);
	T_CHECK(vfs_pwrite(g, buf, 1, 0) < 0);
	vfs_close(g);
	g = NULL;
	/* rename, replace, unlink */
	T_CHECK_EQ(put(v, "f2", "xyz", 3, 0), 0);
	T_CHECK_EQ(vfs_rename(v, "f1", "f3"), 0);
	T_CHECK(!exists(v, "f1"));
	T_CHECK(exists(v, "f3"));
	T_CHECK_EQ(vfs_rename(v, "f2", "f3"), 0);
	T_CHECK(file_is(v, "f3", (const uint8_t *)"xyz", 3));
	T_CHECK(!exists(v, "f2"));
	T_CHECK_EQ(vfs_rename(v, "missing", "f4"), -ENOENT);
	T_CHECK_EQ(vfs_sync_dir(v), 0);
	T_CHECK_EQ(vfs_unlink(v, "f3"), 0);
	T_CHECK_EQ(vfs_unlink(v, "f3"), -ENOENT);
	T_CHECK(!exists(v, "f3"));
	/* an open file survives unlink */
	T_ASSERT(vfs_open(v, "f5", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
	T_CHECK_EQ(vfs_pwrite(f, "hello", 5, 0), 0);
	T_CHECK_EQ(vfs_unlink(v, "f5"), 0);
	T_CHECK_EQ(vfs_pread(f, rd, 10, 0, &n), 0);
	T_CHECK(n == 5 && memcmp(rd, "hello", 5) == 0);
	vfs_close(f);
	f = NULL;
	T_CHECK_EQ(vfs_space(v, &fr, &tot), 0);
	T_CHECK(tot > 0 && fr <= tot);
	vfs_close(NULL);
	T_CHECK(vfs_count(v, VFS_OP_OPEN) >= 10);
	T_CHECK(vfs_count(v, VFS_OP_PWRITE) >= 4);
	T_CHECK(vfs_count(v, VFS_OP_SYNC_DIR) >= 1);
}

static void test_posix(void)
{
	char dir[] = "/tmp/bz_test_vfs.XXXXXX";
	struct vfs *v = NULL;
	DIR *d;
	struct dirent *de;

	T_ASSERT(mkdtemp(dir));
	T_CHECK_EQ(vfs_posix_new("/nonexistent/dir/x", &v), -ENOENT);
	T_ASSERT(vfs_posix_new(dir, &v) == 0);
	test_common(v);
	/* counts: the dispatcher counts through the posix backend too */
	{
		uint64_t before = vfs_count(v, VFS_OP_FDATASYNC);
		struct vfs_file *f = NULL;
		T_ASSERT(vfs_open(v, "c", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
		T_CHECK_EQ(vfs_fdatasync(f), 0);
		vfs_close(f);
		T_CHECK_EQ(vfs_count(v, VFS_OP_FDATASYNC), before + 1);
	}
	vfs_destroy(v);
	vfs_destroy(NULL);
	d = opendir(dir);
	T_ASSERT(d);
	while ((de = readdir(d))) {
		char p[512];
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
	T_CHECK_EQ(rmdir(dir), 0);
}

static void test_mem(void)
{
	struct vfs *v = NULL, *c = NULL;
	uint64_t fr = 0, tot = 0;

	T_ASSERT(vfs_mem_new(&v) == 0);
	test_common(v);
	T_CHECK_EQ(vfs_space(v, &fr, &tot), 0);
	T_CHECK_EQ(tot, 1ull << 40);
	T_CHECK_EQ(put(v, "big", "x", 1, 999999), 0);
	T_CHECK_EQ(vfs_space(v, &fr, &tot), 0);
	T_CHECK(fr <= tot - 1000000);
	/* clone is a copy */
	T_ASSERT(vfs_mem_clone(v, &c) == 0);
	T_CHECK_EQ(put(v, "big", "y", 1, 0), 0);
	{
		uint8_t *b = NULL;
		T_CHECK_EQ(slurp(c, "big", &b), 1000000);
		T_CHECK(b && b[0] == 0 && b[999999] == 'x');
		free(b);
	}
	vfs_destroy(c);
	vfs_destroy(v);
}

/* ---- concurrency: readers and writers on one file ---- */

#define CONC_CHUNK 4096
#define CONC_ITERS 300

struct conc {
	struct vfs *v;
	int id;
	int errors;
};

static void *conc_writer(void *arg)
{
	struct conc *c = arg;
	struct vfs_file *f = NULL;
	uint8_t buf[CONC_CHUNK];

	memset(buf, c->id + 1, sizeof(buf));
	if (vfs_open(c->v, "shared", VFS_O_RDWR, &f) < 0) {
		c->errors++;
		return NULL;
	}
	for (int i = 0; i < CONC_ITERS; i++) {
		/* writer k owns chunks k, k+2, k+4, ... */
		uint64_t off = (uint64_t)(i * 2 + c->id) * CONC_CHUNK;
		if (vfs_pwrite(f, buf, sizeof(buf), off) < 0)
			c->errors++;
		if (i % 16 == 0 && vfs_fdatasync(f) < 0)
			c->errors++;
	}
	vfs_close(f);
	return NULL;
}

static void *conc_reader(void *arg)
{
	struct conc *c = arg;
	struct vfs_file *f = NULL;
	uint8_t buf[CONC_CHUNK];

	if (vfs_open(c->v, "shared", VFS_O_RDONLY, &f) < 0) {
		c->errors++;
		return NULL;
	}
	for (int i = 0; i < CONC_ITERS * 2; i++) {
		size_t n = 0;
		uint64_t chunk = (uint64_t)(i * 7919) % (CONC_ITERS * 2);
		if (vfs_pread(f, buf, sizeof(buf), chunk * CONC_CHUNK, &n) < 0) {
			c->errors++;
			continue;
		}
		/* a chunk is absent, zero (gap), or entirely its writer's byte */
		for (size_t k = 0; k < n; k++) {
			if (buf[k] != 0 && buf[k] != (uint8_t)(chunk % 2 + 1)) {
				c->errors++;
				break;
			}
		}
	}
	vfs_close(f);
	return NULL;
}

static void test_concurrent(struct vfs *v)
{
	pthread_t th[4];
	struct conc cs[4];
	uint8_t *b = NULL;
	long n;

	T_ASSERT(put(v, "shared", "", 0, 0) == 0);
	for (int i = 0; i < 4; i++) {
		cs[i] = (struct conc){.v = v, .id = i % 2};
		T_ASSERT(pthread_create(&th[i], NULL, i < 2 ? conc_writer : conc_reader, &cs[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		T_CHECK_EQ(cs[i].errors, 0);
	}
	n = slurp(v, "shared", &b);
	T_CHECK_EQ(n, (long)CONC_ITERS * 2 * CONC_CHUNK);
	for (long i = 0; n > 0 && i < n; i += CONC_CHUNK)
		if (b[i] != (uint8_t)((i / CONC_CHUNK) % 2 + 1) || b[i + CONC_CHUNK - 1] != b[i]) {
			T_CHECK(!"chunk content");
			break;
		}
	free(b);
}

/* ---- recording: durability rules ---- */

static struct vfs *crash_none(struct vfs *rec)
{
	struct vfs *m = NULL;
	struct vfs_crash c = {.keep = NULL, .torn_op = -1};
	T_ASSERT(vfs_rec_crash(rec, &c, &m) == 0);
	return m;
}

static struct vfs *crash_all(struct vfs *rec)
{
	struct vfs *m = NULL;
	size_t n = vfs_rec_pending(rec);
	uint8_t *keep = malloc(n + 1);
	T_ASSERT(keep);
	memset(keep, 1, n + 1);
	struct vfs_crash c = {.keep = keep, .n_keep = n, .torn_op = -1};
	T_ASSERT(vfs_rec_crash(rec, &c, &m) == 0);
	free(keep);
	return m;
}

static void test_rec_rules(void)
{
	struct vfs *r = NULL, *m;
	struct vfs_file *f = NULL;
	struct vfs_rec_op op;

	T_ASSERT(vfs_rec_new(&r) == 0);
	T_CHECK_EQ(vfs_rec_pending(r), 0);
	T_ASSERT(vfs_open(r, "a", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
	T_CHECK_EQ(vfs_rec_pending(r), 1);
	T_CHECK_EQ(vfs_rec_op_get(r, 0, &op), 0);
	T_CHECK(op.kind == VFS_REC_CREATE && strcmp(op.name, "a") == 0 && op.name2 == NULL);
	T_CHECK_EQ(vfs_pwrite(f, "data1", 5, 0), 0);
	T_CHECK_EQ(vfs_rec_pending(r), 2);
	T_CHECK_EQ(vfs_rec_op_get(r, 1, &op), 0);
	T_CHECK(op.kind == VFS_REC_WRITE && strcmp(op.name, "a") == 0 && op.off == 0 && op.len == 5);
	T_CHECK_EQ(vfs_rec_op_get(r, 2, &op), -ERANGE);

	/* create without sync_dir: lost, even when fsynced (strict model) */
	T_CHECK_EQ(vfs_fsync(f), 0);
	T_CHECK_EQ(vfs_rec_pending(r), 1); /* only the CREATE is left */
	m = crash_none(r);
	T_CHECK(!exists(m, "a"));
	vfs_destroy(m);
	/* keeping the create brings the fsynced data with it */
	m = crash_all(r);
	T_CHECK(file_is(m, "a", (const uint8_t *)"data1", 5));
	vfs_destroy(m);

	T_CHECK_EQ(vfs_sync_dir(r), 0);
	T_CHECK_EQ(vfs_rec_pending(r), 0);
	m = crash_none(r);
	T_CHECK(file_is(m, "a", (const uint8_t *)"data1", 5));
	vfs_destroy(m);

	/* write without sync: lost; fdatasync keeps it */
	T_CHECK_EQ(vfs_pwrite(f, "XY", 2, 5), 0);
	m = crash_none(r);
	T_CHECK(file_is(m, "a", (const uint8_t *)"data1", 5));
	vfs_destroy(m);
	m = crash_all(r);
	T_CHECK(file_is(m, "a", (const uint8_t *)"data1XY", 7));
	vfs_destroy(m);
	T_CHECK_EQ(vfs_fdatasync(f), 0);
	T_CHECK_EQ(vfs_rec_pending(r), 0);
	m = crash_none(r);
	T_CHECK(file_is(m, "a", (const uint8_t *)"data1XY", 7));
	vfs_destroy(m);

	/* truncate is a data op too */
	T_CHECK_EQ(vfs_ftruncate(f, 3), 0);
	T_CHECK_EQ(vfs_rec_op_get(r, 0, &op), 0);
	T_CHECK(op.kind == VFS_REC_TRUNCATE && op.len == 3);
	m = crash_none(r);
	T_CHECK(file_is(m, "a", (const uint8_t *)"data1XY", 7));
	vfs_destroy(m);
	T_CHECK_EQ(vfs_fdatasync(f), 0);
	m = crash_none(r);
	T_CHECK(file_is(m, "a", (const uint8_t *)"dat", 3));
	vfs_destroy(m);

	/* syncing one file does not make another file's writes durable */
	{
		struct vfs_file *g = NULL;
		T_ASSERT(vfs_open(r, "b", VFS_O_RDWR | VFS_O_CREAT, &g) == 0);
		T_CHECK_EQ(vfs_sync_dir(r), 0);
		T_CHECK_EQ(vfs_pwrite(g, "bbb", 3, 0), 0);
		T_CHECK_EQ(vfs_pwrite(f, "!", 1, 3), 0);
		T_CHECK_EQ(vfs_fdatasync(f), 0);
		T_CHECK_EQ(vfs_rec_pending(r), 1);
		m = crash_none(r);
		T_CHECK(file_is(m, "a", (const uint8_t *)"dat!", 4));
		T_CHECK(file_is(m, "b", (const uint8_t *)"", 0));
		vfs_destroy(m);
		T_CHECK_EQ(vfs_fdatasync(g), 0);
		vfs_close(g);
	}

	/* rename visible only after sync_dir */
	T_CHECK_EQ(vfs_rename(r, "a", "c"), 0);
	T_CHECK_EQ(vfs_rec_op_get(r, 0, &op), 0);
	T_CHECK(op.kind == VFS_REC_RENAME && strcmp(op.name, "a") == 0 && strcmp(op.name2, "c") == 0);
	T_CHECK(exists(r, "c") && !exists(r, "a"));
	m = crash_none(r);
	T_CHECK(exists(m, "a") && !exists(m, "c"));
	vfs_destroy(m);
	/* a write after the rename lands in the file under whichever name it has */
	T_CHECK_EQ(vfs_pwrite(f, "?", 1, 4), 0);
	{
		uint8_t keep[2] = {0, 1};
		struct vfs_crash c = {.keep = keep, .n_keep = 2, .torn_op = -1};
		T_ASSERT(vfs_rec_crash(r, &c, &m) == 0);
		T_CHECK(file_is(m, "a", (const uint8_t *)"dat!?", 5));
		T_CHECK(!exists(m, "c"));
		vfs_destroy(m);
		keep[0] = 1;
		T_ASSERT(vfs_rec_crash(r, &c, &m) == 0);
		T_CHECK(file_is(m, "c", (const uint8_t *)"dat!?", 5));
		T_CHECK(!exists(m, "a"));
		vfs_destroy(m);
	}
	T_CHECK_EQ(vfs_fdatasync(f), 0);
	T_CHECK_EQ(vfs_sync_dir(r), 0);
	m = crash_none(r);
	T_CHECK(file_is(m, "c", (const uint8_t *)"dat!?", 5) && !exists(m, "a"));
	vfs_destroy(m);

	/* rename over an existing file; unlink visible only after sync_dir */
	T_CHECK_EQ(vfs_rename(r, "b", "c"), 0);
	T_CHECK_EQ(vfs_unlink(r, "c"), 0);
	m = crash_none(r);
	T_CHECK(file_is(m, "c", (const uint8_t *)"dat!?", 5) && file_is(m, "b", (const uint8_t *)"bbb", 3));
	vfs_destroy(m);
	m = crash_all(r);
	T_CHECK(!exists(m, "b") && !exists(m, "c"));
	vfs_destroy(m);
	{
		/* rename kept, unlink not: b's contents under c */
		uint8_t keep[2] = {1, 0};
		struct vfs_crash c = {.keep = keep, .n_keep = 2, .torn_op = -1};
		T_ASSERT(vfs_rec_crash(r, &c, &m) == 0);
		T_CHECK(file_is(m, "c", (const uint8_t *)"bbb", 3) && !exists(m, "b"));
		vfs_destroy(m);
	}
	/* the unlinked file is still open: writes to it are skipped in crashes */
	T_CHECK_EQ(vfs_pwrite(f, "zz", 2, 0), 0);
	m = crash_all(r);
	T_CHECK(!exists(m, "b") && !exists(m, "c"));
	vfs_destroy(m);
	T_CHECK_EQ(vfs_sync_dir(r), 0);
	T_CHECK_EQ(vfs_rec_pending(r), 1);
	vfs_close(f);
	/* the write's node stays alive until it is synced or the backend dies */
	m = crash_all(r);
	T_CHECK(!exists(m, "b") && !exists(m, "c"));
	vfs_destroy(m);

	/* bad crash specs */
	{
		uint8_t keep[1] = {1};
		struct vfs_crash c = {.keep = keep, .n_keep = 2, .torn_op = -1};
		T_CHECK_EQ(vfs_rec_crash(r, &c, &m), -EINVAL);
		c.n_keep = 1;
		c.torn_op = 0;
		c.torn_at = 2; /* == len */
		T_CHECK_EQ(vfs_rec_crash(r, &c, &m), -EINVAL);
		keep[0] = 0;
		c.torn_at = 1; /* not kept */
		T_CHECK_EQ(vfs_rec_crash(r, &c, &m), -EINVAL);
		struct vfs *mem = NULL;
		T_ASSERT(vfs_mem_new(&mem) == 0);
		T_CHECK_EQ(vfs_rec_crash(mem, &c, &m), -EINVAL);
		T_CHECK_EQ(vfs_rec_pending(mem), 0);
		vfs_destroy(mem);
	}
	vfs_destroy(r);
}

/* Every subset of pending writes, in order, on one file. */
static void test_rec_subsets(void)
{
	struct vfs *r = NULL, *m;
	struct vfs_file *f = NULL;
	const char *w[4] = {"AAAA", "BB", "CCCC", "D"};
	const uint64_t off[4] = {0, 2, 6, 1};

	T_ASSERT(vfs_rec_new(&r) == 0);
	T_ASSERT(vfs_open(r, "s", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
	T_CHECK_EQ(vfs_pwrite(f, "--------", 8, 0), 0);
	T_CHECK_EQ(vfs_fdatasync(f), 0);
	T_CHECK_EQ(vfs_sync_dir(r), 0);
	for (int i = 0; i < 4; i++)
		T_CHECK_EQ(vfs_pwrite(f, w[i], strlen(w[i]), off[i]), 0);
	T_ASSERT(vfs_rec_pending(r) == 4);
	for (unsigned mask = 0; mask < 16; mask++) {
		uint8_t keep[4];
		char want[16];
		size_t wl = 8;
		memcpy(want, "--------", 8);
		for (int i = 0; i < 4; i++) {
			keep[i] = (mask >> i) & 1;
			if (keep[i]) {
				memcpy(want + off[i], w[i], strlen(w[i]));
				wl = BZ_MAX(wl, off[i] + strlen(w[i]));
			}
		}
		struct vfs_crash c = {.keep = keep, .n_keep = 4, .torn_op = -1};
		T_ASSERT(vfs_rec_crash(r, &c, &m) == 0);
		T_CHECK(file_is(m, "s", (const uint8_t *)want, wl));
		vfs_destroy(m);
	}
	/* the crash backend is independent: writing to it leaves rec alone */
	m = crash_none(r);
	T_CHECK_EQ(put(m, "s", "!!", 2, 0), 0);
	T_CHECK_EQ(vfs_rec_pending(r), 4);
	vfs_destroy(m);
	/* and writing to rec leaves an existing crash backend alone */
	m = crash_none(r);
	T_CHECK_EQ(vfs_pwrite(f, "##", 2, 0), 0);
	T_CHECK_EQ(vfs_fdatasync(f), 0);
	T_CHECK(file_is(m, "s", (const uint8_t *)"--------", 8));
	vfs_destroy(m);
	vfs_close(f);
	vfs_destroy(r);
}

/* Torn writes at every 512-byte boundary, each fill mode. */
static void test_rec_torn(void)
{
	enum { OLD = 2048, WOFF = 300, WLEN = 1500 };
	struct vfs *r = NULL, *m;
	struct vfs_file *f = NULL;
	uint8_t old[OLD], neu[WLEN];

	memset(old, 0xAA, sizeof(old));
	memset(neu, 0xBB, sizeof(neu));
	T_ASSERT(vfs_rec_new(&r) == 0);
	T_ASSERT(vfs_open(r, "t", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
	T_CHECK_EQ(vfs_pwrite(f, old, OLD, 0), 0);
	T_CHECK_EQ(vfs_fdatasync(f), 0);
	T_CHECK_EQ(vfs_sync_dir(r), 0);
	T_CHECK_EQ(vfs_pwrite(f, neu, WLEN, WOFF), 0); /* [300, 1800), ends past sector 1536 */
	T_ASSERT(vfs_rec_pending(r) == 1);
	uint64_t cuts[] = {0, 100, 212, 300, 724, 1236, 1400, 1499};
	for (size_t ci = 0; ci < BZ_ARRAY_SIZE(cuts); ci++) {
		for (int fill = VFS_TEAR_OLD; fill <= VFS_TEAR_GARBAGE; fill++) {
			uint8_t keep[1] = {1};
			struct vfs_crash c = {.keep = keep, .n_keep = 1, .torn_op = 0, .torn_at = cuts[ci],
					      .torn_fill = (enum vfs_tear_fill)fill, .seed = 42};
			uint64_t p = WOFF + cuts[ci];
			/* the fill runs to the sector's end, past the write's end (inside the file) */
			uint64_t fend = p % 512 ? (p / 512 + 1) * 512 : p;
			uint8_t *b = NULL;
			long n;
			bool ok = true;
			int garbage_non_pattern = 0;

			T_ASSERT(vfs_rec_crash(r, &c, &m) == 0);
			n = slurp(m, "t", &b);
			T_CHECK_EQ(n, OLD);
			for (uint64_t i = 0; n == OLD && i < OLD; i++) {
				uint8_t want;
				if (i >= WOFF && i < p)
					want = 0xBB;
				else if (i >= p && i < fend)
					want = fill == VFS_TEAR_OLD ? 0xAA : 0;
				else
					want = 0xAA;
				if (fill == VFS_TEAR_GARBAGE && i >= p && i < fend) {
					garbage_non_pattern += b[i] != 0xAA && b[i] != 0xBB;
					continue;
				}
				if (b[i] != want) {
					ok = false;
					fprintf(stderr, "torn cut %llu fill %d: byte %llu = %#x want %#x\n",
						(unsigned long long)cuts[ci], fill, (unsigned long long)i, b[i], want);
					break;
				}
			}
			T_CHECK(ok);
			if (fill == VFS_TEAR_GARBAGE && fend > p)
				T_CHECK(garbage_non_pattern > 0);
			/* same seed: same garbage; other seed: different */
			if (fill == VFS_TEAR_GARBAGE && fend - p >= 16) {
				struct vfs *m2 = NULL, *m3 = NULL;
				uint8_t *b2 = NULL, *b3 = NULL;
				T_ASSERT(vfs_rec_crash(r, &c, &m2) == 0);
				c.seed = 43;
				T_ASSERT(vfs_rec_crash(r, &c, &m3) == 0);
				T_CHECK_EQ(slurp(m2, "t", &b2), OLD);
				T_CHECK_EQ(slurp(m3, "t", &b3), OLD);
				T_CHECK(b2 && b3 && memcmp(b, b2, OLD) == 0 && memcmp(b, b3, OLD) != 0);
				free(b2);
				free(b3);
				vfs_destroy(m2);
				vfs_destroy(m3);
			}
			free(b);
			vfs_destroy(m);
		}
	}
	vfs_close(f);
	vfs_destroy(r);
}

/* A torn append past EOF: never grows the file past the write's end. */
static void test_rec_torn_append(void)
{
	struct vfs *r = NULL, *m;
	struct vfs_file *f = NULL;
	uint8_t neu[300];

	memset(neu, 0xCC, sizeof(neu));
	T_ASSERT(vfs_rec_new(&r) == 0);
	T_ASSERT(vfs_open(r, "w", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
	T_CHECK_EQ(vfs_pwrite(f, neu, 100, 0), 0);
	T_CHECK_EQ(vfs_fdatasync(f), 0);
	T_CHECK_EQ(vfs_sync_dir(r), 0);
	T_CHECK_EQ(vfs_pwrite(f, neu, 300, 100), 0); /* [100, 400) */
	for (int fill = VFS_TEAR_OLD; fill <= VFS_TEAR_GARBAGE; fill++) {
		uint8_t keep[1] = {1};
		struct vfs_crash c = {.keep = keep, .n_keep = 1, .torn_op = 0, .torn_at = 50,
				      .torn_fill = (enum vfs_tear_fill)fill, .seed = 7};
		uint8_t *b = NULL;
		T_ASSERT(vfs_rec_crash(r, &c, &m) == 0);
		T_CHECK_EQ(slurp(m, "w", &b), 400);
		if (b && fill != VFS_TEAR_GARBAGE)
			T_CHECK(b[149] == 0xCC && b[150] == 0 && b[399] == 0);
		free(b);
		vfs_destroy(m);
	}
	/* aligned cut: the file is the prefix */
	{
		uint8_t keep[1] = {1};
		struct vfs_crash c = {.keep = keep, .n_keep = 1, .torn_op = 0, .torn_at = 0,
				      .torn_fill = VFS_TEAR_GARBAGE};
		uint8_t *b = NULL;
		T_CHECK_EQ(vfs_pwrite(f, neu, 24, 488), 0); /* 488 + 24 = 512 */
		T_CHECK_EQ(vfs_fdatasync(f), 0);
		T_CHECK_EQ(vfs_pwrite(f, neu, 100, 512), 0);
		T_ASSERT(vfs_rec_crash(r, &c, &m) == 0);
		T_CHECK_EQ(slurp(m, "w", &b), 512);
		free(b);
		vfs_destroy(m);
	}
	vfs_close(f);
	vfs_destroy(r);
}

static void test_rec_from(void)
{
	struct vfs *r = NULL, *r2 = NULL, *m = NULL;
	struct vfs_file *f = NULL;

	T_ASSERT(vfs_rec_new(&r) == 0);
	T_CHECK_EQ(put(r, "x", "unsynced", 8, 0), 0);
	/* clone of a recording backend: the current contents */
	T_ASSERT(vfs_mem_clone(r, &m) == 0);
	T_CHECK(file_is(m, "x", (const uint8_t *)"unsynced", 8));
	T_CHECK_EQ(vfs_rec_pending(m), 0);
	/* restart: current == durable, nothing pending */
	T_ASSERT(vfs_rec_from(m, &r2) == 0);
	T_CHECK_EQ(vfs_rec_pending(r2), 0);
	vfs_destroy(m);
	m = crash_none(r2);
	T_CHECK(file_is(m, "x", (const uint8_t *)"unsynced", 8));
	vfs_destroy(m);
	T_ASSERT(vfs_open(r2, "x", VFS_O_RDWR, &f) == 0);
	T_CHECK_EQ(vfs_pwrite(f, "S", 1, 0), 0);
	m = crash_none(r2);
	T_CHECK(file_is(m, "x", (const uint8_t *)"unsynced", 8));
	vfs_destroy(m);
	vfs_close(f);
	/* rec_from a recording backend takes its current contents */
	{
		struct vfs *r3 = NULL;
		T_ASSERT(vfs_rec_from(r2, &r3) == 0);
		m = crash_none(r3);
		T_CHECK(file_is(m, "x", (const uint8_t *)"Snsynced", 8));
		vfs_destroy(m);
		vfs_destroy(r3);
	}
	vfs_destroy(r2);
	vfs_destroy(r);
}

/* Many crash states of a store-sized image: linear cost, no leaks. */
static void test_rec_many(void)
{
	struct vfs *r = NULL, *m;
	struct vfs_file *f = NULL;
	uint8_t page[4096];
	size_t n;

	T_ASSERT(vfs_rec_new(&r) == 0);
	T_ASSERT(vfs_open(r, "store.db", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
	for (int i = 0; i < 64; i++) {
		memset(page, i, sizeof(page));
		T_CHECK_EQ(vfs_pwrite(f, page, sizeof(page), (uint64_t)i * sizeof(page)), 0);
	}
	T_CHECK_EQ(vfs_fdatasync(f), 0);
	T_CHECK_EQ(vfs_sync_dir(r), 0);
	for (int i = 0; i < 200; i++) {
		memset(page, 0x80 + i % 64, 64);
		T_CHECK_EQ(vfs_pwrite(f, page, 64, (uint64_t)(i * 997) % (256 * 1024)), 0);
	}
	n = vfs_rec_pending(r);
	T_ASSERT(n == 200);
	uint8_t *keep = calloc(n, 1);
	T_ASSERT(keep);
	for (size_t s = 0; s < 500; s++) {
		for (size_t i = 0; i < n; i++)
			keep[i] = i < s % (n + 1);
		struct vfs_crash c = {.keep = keep, .n_keep = n, .torn_op = -1};
		T_ASSERT(vfs_rec_crash(r, &c, &m) == 0);
		vfs_destroy(m);
	}
	free(keep);
	vfs_close(f);
	vfs_destroy(r);
}

/* Crash states built by several threads while the commit thread writes. */
struct crash_thr {
	struct vfs *rec;
	int errors;
};

static void *crash_worker(void *arg)
{
	struct crash_thr *t = arg;
	for (int i = 0; i < 200; i++) {
		struct vfs *m = NULL;
		struct vfs_crash c = {.keep = NULL, .torn_op = -1};
		uint8_t *b = NULL;
		if (vfs_rec_crash(t->rec, &c, &m) < 0) {
			t->errors++;
			continue;
		}
		/* the durable file is always a whole number of 64-byte syncs of one byte value each */
		long n = slurp(m, "log", &b);
		if (n < 0 || n % 64)
			t->errors++;
		for (long k = 0; k < n; k++)
			if (b[k] != (uint8_t)(k / 64)) {
				t->errors++;
				break;
			}
		free(b);
		vfs_destroy(m);
	}
	return NULL;
}

static void test_rec_concurrent_crash(void)
{
	struct vfs *r = NULL;
	struct vfs_file *f = NULL;
	pthread_t th[2];
	struct crash_thr ts[2];
	uint8_t rec[64];

	T_ASSERT(vfs_rec_new(&r) == 0);
	T_ASSERT(vfs_open(r, "log", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
	T_CHECK_EQ(vfs_sync_dir(r), 0);
	for (int i = 0; i < 2; i++) {
		ts[i] = (struct crash_thr){.rec = r};
		T_ASSERT(pthread_create(&th[i], NULL, crash_worker, &ts[i]) == 0);
	}
	for (int i = 0; i < 200; i++) {
		memset(rec, i, sizeof(rec));
		/* two half writes, then a sync: a crash never sees half a record durable */
		T_CHECK_EQ(vfs_pwrite(f, rec, 32, (uint64_t)i * 64), 0);
		T_CHECK_EQ(vfs_pwrite(f, rec + 32, 32, (uint64_t)i * 64 + 32), 0);
		T_CHECK_EQ(vfs_fdatasync(f), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		T_CHECK_EQ(ts[i].errors, 0);
	}
	vfs_close(f);
	vfs_destroy(r);
}

/* fallocate is recorded as a size change */
static void test_rec_fallocate(void)
{
	struct vfs *r = NULL, *m;
	struct vfs_file *f = NULL;
	struct vfs_rec_op op;
	uint8_t z[100] = {0};

	T_ASSERT(vfs_rec_new(&r) == 0);
	T_ASSERT(vfs_open(r, "p", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
	T_CHECK_EQ(vfs_sync_dir(r), 0);
	T_CHECK_EQ(vfs_fallocate(f, 0, 100), 0);
	T_CHECK_EQ(vfs_fallocate(f, 0, 50), 0); /* inside the file: nothing to record */
	T_CHECK_EQ(vfs_rec_pending(r), 1);
	T_CHECK_EQ(vfs_rec_op_get(r, 0, &op), 0);
	T_CHECK(op.kind == VFS_REC_TRUNCATE && op.len == 100);
	m = crash_none(r);
	T_CHECK(file_is(m, "p", z, 0));
	vfs_destroy(m);
	m = crash_all(r);
	T_CHECK(file_is(m, "p", z, 100));
	vfs_destroy(m);
	vfs_close(f);
	vfs_destroy(r);
}

/* ---- fault ---- */

static void test_fault(void)
{
	struct vfs *mem = NULL, *fv = NULL;
	struct vfs_file *f = NULL;
	uint8_t buf[100], rd[100];
	size_t n = 0;

	memset(buf, 0x5A, sizeof(buf));
	T_ASSERT(vfs_mem_new(&mem) == 0);
	T_ASSERT(vfs_fault_new(mem, &fv) == 0);
	/* disarmed: passes through, counts mutating calls */
	T_ASSERT(vfs_open(fv, "f", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
	T_CHECK_EQ(vfs_pwrite(f, buf, 10, 0), 0);
	T_CHECK_EQ(vfs_pread(f, rd, 10, 0, &n), 0);
	T_CHECK_EQ(vfs_fault_calls(fv), 1);
	T_CHECK_EQ(vfs_fault_injected(fv), 0);
	T_CHECK_EQ(vfs_count(mem, VFS_OP_PWRITE), 1);
	T_CHECK_EQ(vfs_count(fv, VFS_OP_PWRITE), 1);

	/* each mode, once */
	const int modes[3] = {VFS_FAULT_EIO, VFS_FAULT_ENOSPC, VFS_FAULT_SHORT};
	const int errs[3] = {-EIO, -ENOSPC, -EIO};
	for (int mi = 0; mi < 3; mi++) {
		struct vfs_fault_spec s = {.fail_at = 2, .mode = (enum vfs_fault_mode)modes[mi]};
		uint64_t size = 0;
		T_CHECK_EQ(vfs_ftruncate(f, 0), 0);
		vfs_fault_arm(fv, &s);
		T_CHECK_EQ(vfs_fault_calls(fv), 0);
		T_CHECK_EQ(vfs_pwrite(f, buf, 10, 0), 0);   /* call 1 */
		T_CHECK_EQ(vfs_pwrite(f, buf, 100, 10), errs[mi]); /* call 2 fails */
		T_CHECK_EQ(vfs_size(f, &size), 0);
		T_CHECK_EQ(size, modes[mi] == VFS_FAULT_SHORT ? 60 : 10); /* short: half reached the file */
		T_CHECK_EQ(vfs_fdatasync(f), 0);              /* call 3: once only */
		T_CHECK_EQ(vfs_fault_calls(fv), 3);
		T_CHECK_EQ(vfs_fault_injected(fv), 1);
		/* SHORT on a non-write op acts as EIO */
		s.fail_at = 1;
		vfs_fault_arm(fv, &s);
		T_CHECK_EQ(vfs_fdatasync(f), errs[mi]);
		T_CHECK_EQ(vfs_fault_injected(fv), 1);
	}
	/* persistent */
	{
		struct vfs_fault_spec s = {.fail_at = 2, .mode = VFS_FAULT_EIO, .persistent = true};
		vfs_fault_arm(fv, &s);
		T_CHECK_EQ(vfs_fsync(f), 0);
		T_CHECK_EQ(vfs_fsync(f), -EIO);
		T_CHECK_EQ(vfs_pwrite(f, buf, 1, 0), -EIO);
		T_CHECK_EQ(vfs_sync_dir(fv), -EIO);
		T_CHECK_EQ(vfs_rename(fv, "f", "g"), -EIO);
		T_CHECK_EQ(vfs_unlink(fv, "f"), -EIO);
		T_CHECK_EQ(vfs_fallocate(f, 0, 10), -EIO);
		T_CHECK_EQ(vfs_ftruncate(f, 0), -EIO);
		/* not counted ops pass */
		T_CHECK_EQ(vfs_pread(f, rd, 1, 0, &n), 0);
		T_CHECK_EQ(vfs_fault_calls(fv), 8);
		T_CHECK_EQ(vfs_fault_injected(fv), 7);
		T_CHECK(exists(mem, "f"));
	}
	/* op_mask: reads and opens */
	{
		struct vfs_fault_spec s = {.fail_at = 1, .mode = VFS_FAULT_EIO,
					   .op_mask = VFS_MASK(VFS_OP_PREAD) | VFS_MASK(VFS_OP_OPEN)};
		struct vfs_file *g = NULL;
		vfs_fault_arm(fv, &s);
		T_CHECK_EQ(vfs_pwrite(f, buf, 1, 0), 0); /* not counted */
		T_CHECK_EQ(vfs_pread(f, rd, 1, 0, &n), -EIO);
		T_CHECK_EQ(vfs_open(fv, "f", VFS_O_RDONLY, &g), 0);
		vfs_close(g);
		g = NULL;
		s.fail_at = 1;
		vfs_fault_arm(fv, &s);
		T_CHECK_EQ(vfs_open(fv, "f", VFS_O_RDONLY, &g), -EIO);
		T_CHECK(g == NULL);
		T_CHECK_EQ(vfs_fault_calls(fv), 1);
	}
	/* disarm, delay (no timing assertion), lock and space pass through */
	{
		struct vfs_fault_spec s = {0};
		uint64_t fr = 0, tot = 0;
		struct vfs_file *g = NULL;
		vfs_fault_arm(fv, &s);
		vfs_fault_set_delay(fv, VFS_MASK(VFS_OP_FDATASYNC), 100);
		T_CHECK_EQ(vfs_fdatasync(f), 0);
		vfs_fault_set_delay(fv, 0, 0);
		T_CHECK_EQ(vfs_space(fv, &fr, &tot), 0);
		T_CHECK_EQ(tot, 1ull << 40);
		T_CHECK_EQ(vfs_lock(f), 0);
		T_ASSERT(vfs_open(fv, "f", VFS_O_RDONLY, &g) == 0);
		T_CHECK_EQ(vfs_lock(g), -EWOULDBLOCK);
		vfs_close(g);
		T_CHECK_EQ(vfs_fault_injected(fv), 0);
	}
	vfs_close(f);
	/* a short write of one byte writes nothing and still fails */
	{
		struct vfs_fault_spec s = {.fail_at = 1, .mode = VFS_FAULT_SHORT};
		uint64_t size = 1;
		T_ASSERT(vfs_open(fv, "h", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
		vfs_fault_arm(fv, &s);
		T_CHECK_EQ(vfs_pwrite(f, buf, 1, 0), -EIO);
		T_CHECK_EQ(vfs_size(f, &size), 0);
		T_CHECK_EQ(size, 0);
		vfs_close(f);
	}
	vfs_destroy(fv);
	vfs_destroy(mem);
}

/* Fault over recording: a failed fdatasync makes nothing durable. */
static void test_fault_over_rec(void)
{
	struct vfs *r = NULL, *fv = NULL, *m;
	struct vfs_file *f = NULL;
	struct vfs_fault_spec s = {.fail_at = 2, .mode = VFS_FAULT_EIO};

	T_ASSERT(vfs_rec_new(&r) == 0);
	T_ASSERT(vfs_fault_new(r, &fv) == 0);
	T_ASSERT(vfs_open(fv, "w", VFS_O_RDWR | VFS_O_CREAT, &f) == 0);
	T_CHECK_EQ(vfs_sync_dir(fv), 0);
	vfs_fault_arm(fv, &s);
	T_CHECK_EQ(vfs_pwrite(f, "abc", 3, 0), 0);
	T_CHECK_EQ(vfs_fdatasync(f), -EIO);
	m = crash_none(r);
	T_CHECK(file_is(m, "w", (const uint8_t *)"", 0));
	vfs_destroy(m);
	vfs_close(f);
	vfs_destroy(fv);
	vfs_destroy(r);
}

int main(void)
{
	test_posix();
	test_mem();
	{
		struct vfs *v = NULL;
		T_ASSERT(vfs_mem_new(&v) == 0);
		test_concurrent(v);
		vfs_destroy(v);
		T_ASSERT(vfs_rec_new(&v) == 0);
		test_concurrent(v);
		vfs_destroy(v);
	}
	{
		/* recording backend passes the common behaviour too */
		struct vfs *v = NULL;
		T_ASSERT(vfs_rec_new(&v) == 0);
		test_common(v);
		vfs_destroy(v);
	}
	test_rec_rules();
	test_rec_subsets();
	test_rec_torn();
	test_rec_torn_append();
	test_rec_from();
	test_rec_many();
	test_rec_concurrent_crash();
	test_rec_fallocate();
	test_fault();
	test_fault_over_rec();
	T_DONE();
}
