/* test_blazectl.c — blazectl fsck and dump against real stores.
 *
 * Builds a small store with the engine API (posix vfs in a temp dir:
 * directories, a hard link, a symlink, a file with > 126 small zstd
 * records so it has a full index page, a file of records that span data
 * pages), then for each case copies it, damages the copy and runs the
 * blazectl binary (argv[1]) on it:
 *   clean (0), data page (4), record payload with a resealed page (4),
 *   index page (4), namespace page (4), one superblock (0 + warning;
 *   --repair 1, then 0), both superblocks (4), crash image with valid
 *   batches after the checkpoint (0), torn WAL tail (0 with a warning;
 *   --repair 1, then 0),
 *   leaked pages of a deleted file (0 + warning; --repair 1, then 0),
 *   a store held open by this process (8 "in use").
 * dump runs on each and must print its sections.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include "storage/log.h"
#include "storage/pager.h"
#include "storage/record.h"
#include "storage/store.h"
#include "storage/wal.h"
#include "tests/unit/store_model.h"
#include "tests/unit/t.h"

static const char *ctl;     /* the blazectl binary */
static char base[256];      /* temp dir */
static char out_path[512];  /* output of the last run */
static char *out;           /* its contents */

/* ---- building stores ---- */

struct bld {
	struct store *s;
	struct vfs *v;
	struct ns *ns; /* model: inode numbers and sizes */
	struct batch wal; /* the WAL batch being built (store_model.c) */
	uint64_t seed;
};

/* a record frame, zstd level 3 when zstd (store_model.c encodes it) */
static void frame(struct bld *b, uint8_t type, uint64_t ino, uint64_t off, const void *raw, size_t len, bool zstd)
{
	sm_frame_add_level(&b->wal, type, ino, off, raw, len, zstd ? 3 : 0);
}

static void commit(struct bld *b)
{
	uint64_t lsn;
	if (!b->wal.len)
		return;
	T_ASSERT(store_wal_append(b->s, 1, b->wal.p, b->wal.len, &lsn) == 0);
	T_ASSERT(store_apply(b->s, lsn, 1, b->wal.p, b->wal.len) == 0);
	b->wal.len = 0;
}

static uint64_t nsop(struct bld *b, struct ns_op *op)
{
	uint8_t buf[NSOP_MAX_LEN];
	if (op->kind == NS_CREATE || op->kind == NS_MKDIR || op->kind == NS_SYMLINK)
		op->ino = ns_alloc_ino(b->ns);
	op->ctime_ns = op->mtime_ns = op->atime_ns = 1000000000;
	int n = nsop_encode(op, buf, sizeof(buf));
	T_ASSERT(n > 0);
	frame(b, REC_NS, 0, 0, buf, (size_t)n, false);
	T_ASSERT(ns_apply(b->ns, op) == 0);
	return op->ino;
}

static uint64_t mk(struct bld *b, uint8_t kind, uint64_t parent, const char *name, const char *target)
{
	struct ns_op op = {.kind = kind, .parent = parent, .name = name, .name_len = (uint32_t)strlen(name),
			   .mode = kind == NS_MKDIR ? S_IFDIR | 0755 : kind == NS_SYMLINK ? S_IFLNK | 0777 : S_IFREG | 0644};
	if (target) {
		op.name2 = target;
		op.name2_len = (uint32_t)strlen(target);
	}
	return nsop(b, &op);
}

static void append(struct bld *b, uint64_t ino, size_t len, bool text)
{
	struct ns_attr a;
	uint8_t *p = malloc(len);
	T_ASSERT(p && ns_getattr(b->ns, ino, &a) == 0);
	for (size_t i = 0; i < len; i++) {
		b->seed = b->seed * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = text ? (uint8_t)("abcdefgh ij\n"[(a.size + i) % 12]) : (uint8_t)(b->seed >> 56);
	}
	frame(b, REC_DATA, ino, a.size, p, len, text);
	T_ASSERT(ns_set_size(b->ns, ino, a.size + len, 0) == 0);
	free(p);
}

static int bld_open(struct bld *b, const char *dir)
{
	struct store_opts o;
	memset(b, 0, sizeof(*b));
	b->seed = 42;
	T_ASSERT(vfs_posix_new(dir, &b->v) == 0);
	store_opts_default(&o);
	o.vfs = b->v;
	o.wal_segment_bytes = 256 << 10;
	o.wal_segments = 4;
	o.cache_bytes = 1 << 20;
	o.chunk_bytes = 4096; /* records of >= 2 KiB are chunks of their own */
	int r = store_open(&o, &b->s);
	if (r < 0) {
		vfs_destroy(b->v);
		return r;
	}
	T_ASSERT(store_ns_clone(b->s, &b->ns) == 0);
	return 0;
}

static void bld_close(struct bld *b)
{
	T_ASSERT(store_close(b->s) == 0);
	vfs_destroy(b->v);
	ns_free(b->ns);
	free(b->wal.p);
}

static void build_base(const char *dir)
{
	struct bld b;
	T_ASSERT(mkdir(dir, 0755) == 0);
	T_ASSERT(bld_open(&b, dir) == 0);
	uint64_t d = mk(&b, NS_MKDIR, NS_ROOT_INO, "d", NULL);
	uint64_t a = mk(&b, NS_CREATE, d, "a", NULL);
	mk(&b, NS_MKDIR, d, "e", NULL);
	uint64_t big = mk(&b, NS_CREATE, NS_ROOT_INO, "big", NULL);
	mk(&b, NS_SYMLINK, NS_ROOT_INO, "s", "d/a");
	struct ns_op ln = {.kind = NS_LINK, .ino = a, .parent2 = NS_ROOT_INO, .name2 = "a2", .name2_len = 2};
	nsop(&b, &ln);
	commit(&b);
	for (int i = 0; i < 200; i++) {
		append(&b, a, 2100, true);
		if (i % 20 == 19)
			commit(&b);
	}
	for (int i = 0; i < 6; i++)
		append(&b, big, 9000, false);
	commit(&b);
	bld_close(&b);
}

/* ---- helpers ---- */

static int sh(const char *fmt, ...) BZ_PRINTF(1, 2);
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	T_ASSERT(st != -1);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void copy(const char *name, char *ret_dir)
{
	sprintf(ret_dir, "%s/%s", base, name);
	T_ASSERT(sh("cp -r %s/base %s", base, ret_dir) == 0);
}

/* Runs blazectl with args; returns its exit code, output in `out`. */
static int run(const char *args)
{
	free(out);
	out = NULL;
	int rc = sh("%s %s >%s 2>&1 </dev/null", ctl, args, out_path);
	FILE *f = fopen(out_path, "r");
	T_ASSERT(f);
	out = calloc(1, 1 << 20);
	T_ASSERT(out);
	size_t n = fread(out, 1, (1 << 20) - 1, f);
	out[n] = 0;
	fclose(f);
	return rc;
}

/* Runs blazectl; checks its exit code and that its output holds needle. */
static void expect_at(int line, const char *args, int code, const char *needle)
{
	int rc = run(args);
	bool found = !needle || strstr(out, needle) != NULL;
	t_checks += 2;
	if (rc != code || !found) {
		t_failures++;
		fprintf(stderr, "line %d: blazectl %s: exit %d (expected %d)%s%s%s\n--- output:\n%s---\n", line, args,
			rc, code, found ? "" : ", no '", found ? "" : needle, found ? "" : "'", out);
	}
}
#define EXPECT(args, code, needle) expect_at(__LINE__, args, code, needle)

static void flip(const char *dir, const char *file, uint64_t off)
{
	char p[1024];
	uint8_t c;
	snprintf(p, sizeof(p), "%s/%s", dir, file);
	int fd = open(p, O_RDWR);
	T_ASSERT(fd >= 0);
	T_ASSERT(pread(fd, &c, 1, (off_t)off) == 1);
	c ^= 0x40;
	T_ASSERT(pwrite(fd, &c, 1, (off_t)off) == 1);
	close(fd);
}

struct find {
	uint8_t type;
	uint64_t skip, pgno;
};
static int find_cb(void *arg, const struct store_page_info *pi)
{
	struct find *f = arg;
	if (pi->ok && pi->type == f->type && pi->pgno >= 2) {
		if (f->skip-- == 0) {
			f->pgno = pi->pgno;
			return 1;
		}
	}
	return 0;
}

static uint64_t find_page(const char *dir, uint8_t type, uint64_t skip)
{
	struct vfs *v;
	struct find f = {.type = type, .skip = skip};
	T_ASSERT(vfs_posix_new(dir, &v) == 0);
	T_ASSERT(store_scan_pages(v, find_cb, &f) == 1);
	vfs_destroy(v);
	return f.pgno;
}

/* Damages the stored payload of the first record of /d/a and reseals its
 * page, so only the record's own checks (zstd, xxh3) can catch it. */
struct first_rec {
	struct store_record_info ri;
	bool found;
};
static int first_rec_cb(void *arg, const struct store_record_info *ri)
{
	struct first_rec *f = arg;
	if (!f->found && ri->pg_off + ri->frame_len <= PAGER_PAYLOAD) {
		f->ri = *ri;
		f->found = true;
	}
	return 0;
}

static void damage_record(const char *dir)
{
	char p[1024];
	uint8_t page[PAGER_PAGE_SIZE];
	struct first_rec fr = {0};
	struct pager_hdr h;
	struct bld b;
	uint64_t d, a;

	T_ASSERT(bld_open(&b, dir) == 0);
	T_ASSERT(ns_lookup(b.ns, NS_ROOT_INO, "d", 1, &d) == 0 && ns_lookup(b.ns, d, "a", 1, &a) == 0);
	T_ASSERT(store_file_records(b.s, a, first_rec_cb, &fr) == 0 && fr.found);
	bld_close(&b);
	uint64_t pg = fr.ri.page;
	snprintf(p, sizeof(p), "%s/store.db", dir);
	int fd = open(p, O_RDWR);
	T_ASSERT(fd >= 0);
	T_ASSERT(pread(fd, page, sizeof(page), (off_t)(pg * PAGER_PAGE_SIZE)) == (ssize_t)sizeof(page));
	T_ASSERT(pager_check(page, pg, fr.ri.npages ? PAGER_DATA : PAGER_PACK, &h) == 0);
	page[PAGER_HDR_SIZE + fr.ri.pg_off + fr.ri.frame_len - 2] ^= 0x01; /* inside the payload */
	pager_seal(page, &h);
	T_ASSERT(pwrite(fd, page, sizeof(page), (off_t)(pg * PAGER_PAGE_SIZE)) == (ssize_t)sizeof(page));
	close(fd);
}

/* ---- WAL crash images ---- */

/* In a child: opens the store, appends n batches (without checkpoint) and
 * dies, leaving a crash image whose WAL holds them. */
static void crash_with_batches(const char *dir, int n, size_t bytes)
{
	pid_t pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		struct bld b;
		bz_log_set_level(BZ_LOG_ERR);
		if (bld_open(&b, dir) < 0)
			_exit(3);
		uint64_t ino = 0;
		T_ASSERT(ns_lookup(b.ns, NS_ROOT_INO, "big", 3, &ino) == 0);
		for (int i = 0; i < n; i++) {
			append(&b, ino, bytes + 10 * (size_t)i, false);
			commit(&b);
		}
		T_ASSERT(store_wal_sync(b.s) == 0);
		_exit(0);
	}
	int st;
	T_ASSERT(waitpid(pid, &st, 0) == pid);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

struct last_ent {
	struct wal_entry_info e;
	bool found;
};
static int last_cb(void *arg, const struct wal_entry_info *e)
{
	struct last_ent *l = arg;
	if (e->kind != WAL_KIND_HEADER && e->valid && (!l->found || e->life > l->e.life ||
						       (e->life == l->e.life && e->offset > l->e.offset))) {
		l->e = *e;
		l->found = true;
	}
	return 0;
}

/* Flips a byte of the newest valid WAL entry (the last batch's COMMIT). */
static void tear_wal_tail(const char *dir)
{
	struct store_sb_info sb[2];
	struct vfs *v;
	struct last_ent l = {0};
	char name[32];

	T_ASSERT(vfs_posix_new(dir, &v) == 0);
	T_ASSERT(store_read_superblocks(v, sb) == 0);
	int k = sb[0].valid && (!sb[1].valid || sb[0].generation > sb[1].generation) ? 0 : 1;
	struct wal_opts o = {.segment_bytes = sb[k].wal_segment_bytes, .segments = sb[k].wal_segments};
	T_ASSERT(wal_inspect(v, &o, last_cb, &l) == 0);
	vfs_destroy(v);
	T_ASSERT(l.found);
	T_CHECK_EQ(l.e.kind, WAL_KIND_COMMIT);
	snprintf(name, sizeof(name), "wal.%03u", l.e.segment);
	flip(dir, name, l.e.offset + 48); /* its payload */
}

/* ---- cases ---- */

int main(int argc, char **argv)
{
	char dir[512], args[1024];

	if (argc < 2) {
		fprintf(stderr, "usage: test_blazectl BLAZECTL\n");
		return 2;
	}
	ctl = argv[1];
	bz_log_set_level(BZ_LOG_ERR);
	snprintf(base, sizeof(base), "%s/bzctl.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	T_ASSERT(mkdtemp(base));
	snprintf(out_path, sizeof(out_path), "%s/out.txt", base);
	snprintf(dir, sizeof(dir), "%s/base", base);
	build_base(dir);

	/* clean */
	copy("clean", dir);
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 0, ": clean");
	snprintf(args, sizeof(args), "fsck -v %s", dir);
	EXPECT(args, 0, "206 records");
	snprintf(args, sizeof(args), "dump %s", dir);
	EXPECT(args, 0, "superblock 1: valid");
	T_CHECK(strstr(out, "namespace: 6 inodes") != NULL);
	snprintf(args, sizeof(args), "dump %s superblocks", dir);
	EXPECT(args, 0, "high-water mark");
	snprintf(args, sizeof(args), "dump %s wal", dir);
	EXPECT(args, 0, "segment 0: life");
	snprintf(args, sizeof(args), "dump %s pages", dir);
	EXPECT(args, 0, "index ");
	T_CHECK(strstr(out, "data ") && strstr(out, "nsmeta") && strstr(out, "super") && !strstr(out, "BAD"));
	snprintf(args, sizeof(args), "dump %s files", dir);
	EXPECT(args, 0, "/d/a ");
	T_CHECK(strstr(out, "/a2 ") && strstr(out, "/s ") && strstr(out, "/d/e ") && strstr(out, "/big "));
	snprintf(args, sizeof(args), "dump %s file /d/a", dir);
	EXPECT(args, 0, "200 records, 420000 raw bytes");
	T_CHECK(strstr(out, "zstd") != NULL && strstr(out, " 0 bad") != NULL);
	snprintf(args, sizeof(args), "dump %s file /nope", dir);
	EXPECT(args, 8, NULL);

	/* a data page */
	copy("data", dir);
	flip(dir, "store.db", find_page(dir, PAGER_DATA, 1) * PAGER_PAGE_SIZE + 1000);
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 4, "data page");
	snprintf(args, sizeof(args), "fsck --repair %s", dir);
	EXPECT(args, 4, "errors left");
	snprintf(args, sizeof(args), "dump %s pages", dir);
	EXPECT(args, 0, "BAD");

	/* a record payload (page checksum resealed) */
	copy("record", dir);
	damage_record(dir);
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 4, "payload checksum");
	snprintf(args, sizeof(args), "dump %s file /d/a", dir);
	EXPECT(args, 0, "BAD RECORD");

	/* an index page */
	copy("index", dir);
	flip(dir, "store.db", find_page(dir, PAGER_INDEX, 0) * PAGER_PAGE_SIZE + 100);
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 4, "index page");

	/* a namespace page (the store does not open at all) */
	copy("ns", dir);
	{
		struct vfs *v;
		struct store_sb_info sb[2];
		T_ASSERT(vfs_posix_new(dir, &v) == 0);
		T_ASSERT(store_read_superblocks(v, sb) == 0);
		vfs_destroy(v);
		int k = sb[0].generation > sb[1].generation ? 0 : 1;
		flip(dir, "store.db", sb[k].ns_first * PAGER_PAGE_SIZE + 60);
	}
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 4, "namespace");
	snprintf(args, sizeof(args), "dump %s superblocks", dir);
	EXPECT(args, 0, "newest");

	/* one superblock: a warning; --repair rewrites it */
	copy("sb1", dir);
	flip(dir, "store.db", 0 * PAGER_PAGE_SIZE + 60);
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 0, "superblock 0 is invalid");
	snprintf(args, sizeof(args), "dump %s superblocks", dir);
	EXPECT(args, 0, "superblock 0: INVALID");
	snprintf(args, sizeof(args), "fsck --repair %s", dir);
	EXPECT(args, 1, "repaired");
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 0, "(0 errors, 0 warnings)");

	/* both superblocks */
	copy("sb2", dir);
	flip(dir, "store.db", 0 * PAGER_PAGE_SIZE + 60);
	flip(dir, "store.db", 1 * PAGER_PAGE_SIZE + 60);
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 4, "no valid superblock");
	snprintf(args, sizeof(args), "dump %s", dir);
	EXPECT(args, 8, "INVALID");
	snprintf(args, sizeof(args), "dump %s wal", dir);
	EXPECT(args, 0, "(from the files: no valid superblock)");
	snprintf(args, sizeof(args), "dump %s pages", dir);
	EXPECT(args, 0, "BAD");

	/* a crash image with valid batches after the checkpoint: clean */
	copy("crash", dir);
	crash_with_batches(dir, 3, 1000);
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 0, "3 committed batches after the checkpoint");
	T_CHECK(strstr(out, "tail clean") != NULL);
	snprintf(args, sizeof(args), "dump %s wal", dir);
	EXPECT(args, 0, "COMMIT");

	/* ... spanning WAL segments (END entries, several lives): clean */
	copy("crash2", dir);
	crash_with_batches(dir, 40, 12000);
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 0, "40 committed batches after the checkpoint");
	snprintf(args, sizeof(args), "dump %s wal", dir);
	EXPECT(args, 0, "END");

	/* ... whose last entry is torn: found (a warning: what a crash
	 * leaves, nothing valid behind it); --repair cuts it */
	copy("torn", dir);
	crash_with_batches(dir, 3, 1000);
	tear_wal_tail(dir);
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 0, "torn or stale tail");
	T_CHECK(strstr(out, "1 warnings") != NULL);
	T_CHECK(strstr(out, "2 committed batches after the checkpoint") != NULL);
	snprintf(args, sizeof(args), "dump %s wal", dir);
	EXPECT(args, 0, "INVALID");
	snprintf(args, sizeof(args), "fsck --repair %s", dir);
	EXPECT(args, 1, "WAL was cut");
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 0, ": clean");
	snprintf(args, sizeof(args), "dump %s file /big", dir);
	EXPECT(args, 0, "7 records, 56010 raw bytes"); /* 6 chunks + the 2 valid batches' open chunk */
	T_CHECK(strstr(out, "tail packed") != NULL);

	/* a deleted file's pack pages are reclaimed with it (their live bytes
	 * reach 0): nothing leaks, --repair has nothing to free */
	copy("leak", dir);
	{
		struct bld b;
		T_ASSERT(bld_open(&b, dir) == 0);
		uint64_t x = mk(&b, NS_CREATE, NS_ROOT_INO, "x", NULL);
		commit(&b);
		for (int i = 0; i < 60; i++)
			append(&b, x, 300, false);
		commit(&b);
		struct ns_op un = {.kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "x", .name_len = 1};
		nsop(&b, &un);
		commit(&b);
		bld_close(&b);
	}
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 0, "(0 errors, 0 warnings)");
	T_CHECK(strstr(out, " 0 leaked") != NULL);
	snprintf(args, sizeof(args), "fsck --repair %s", dir);
	EXPECT(args, 0, "(0 errors, 0 warnings)");
	T_CHECK(strstr(out, "leaked pages put on the free list") == NULL);

	/* in use */
	copy("busy", dir);
	{
		struct bld b;
		T_ASSERT(bld_open(&b, dir) == 0);
		snprintf(args, sizeof(args), "fsck %s", dir);
		EXPECT(args, 8, "in use");
		snprintf(args, sizeof(args), "fsck --repair %s", dir);
		EXPECT(args, 8, "in use");
		snprintf(args, sizeof(args), "dump %s files", dir);
		EXPECT(args, 8, "in use");
		bld_close(&b);
	}
	snprintf(args, sizeof(args), "fsck %s", dir);
	EXPECT(args, 0, ": clean");

	/* not a store */
	snprintf(args, sizeof(args), "fsck %s/nonexistent", base);
	EXPECT(args, 8, NULL);

	if (!t_failures && !getenv("BZCTL_KEEP"))
		sh("rm -rf %s", base);
	else
		fprintf(stderr, "left %s for inspection\n", base);
	free(out);
	T_DONE();
}
