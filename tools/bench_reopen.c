/* bench_reopen.c — mount cost must not grow with data size.
 *
 * Builds three stores on the posix vfs in a temp dir (under $BENCH_DIR,
 * default /tmp): small (100 records, 10 files), many records (100,000
 * records, 10 files) and many records+files (100,000 records over 10,000
 * files), closes them, then times store_open several times each (the open
 * includes the recovery checkpoint) and a read-only open (no checkpoint),
 * and prints the medians, the preads issued at open and the ratios.
 *
 * usage: bench_reopen [records_big [files_big [runs]]]
 * env: BENCH_DIR (parent of the temp dir), BENCH_KEEP (keep the stores)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/log.h"
#include "storage/record.h"
#include "storage/store.h"

struct batch {
	uint8_t *p;
	size_t len, cap;
};

static int batch_put(struct batch *b, const void *src, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = (b->len + n) * 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
	return 0;
}

static int frame(struct batch *b, uint8_t type, uint64_t ino, uint64_t off, const void *raw, size_t len)
{
	uint8_t hdr[REC_HDR_MAX];
	struct rec_hdr h = {.type = type, .codec = REC_RAW, .ino = ino, .off = off, .raw_len = (uint32_t)len,
			    .stored_len = (uint32_t)len, .hash = rec_hash(raw, len)};
	int n = rec_hdr_encode(&h, hdr, sizeof(hdr));
	if (n < 0)
		return n;
	int r = batch_put(b, hdr, (size_t)n);
	return r < 0 ? r : batch_put(b, raw, len);
}

static int commit(struct store *s, struct batch *b, bool sync)
{
	uint64_t lsn;
	int64_t now = bz_wall_ns();
	int r;

	if (!store_wal_has_room(s, b->len) && (r = store_checkpoint(s)) < 0)
		return r;
	r = store_wal_append(s, now, b->p, b->len, &lsn);
	if (r == 0 && sync)
		r = store_wal_sync(s);
	if (r == 0)
		r = store_apply(s, lsn, now, b->p, b->len);
	if (r == 0 && store_need_checkpoint(s)) {
		r = store_wal_sync(s);
		if (r == 0)
			r = store_checkpoint(s);
	}
	b->len = 0;
	return r;
}

static int build(const char *dir, unsigned records, unsigned files)
{
	struct store_opts o;
	struct store *s = NULL;
	struct vfs *v = NULL;
	struct batch b = {0};
	uint64_t *size = calloc(files, sizeof(uint64_t)), first_ino = 0;
	char line[200];
	int r;

	if (!size)
		return -ENOMEM;
	r = vfs_posix_new(dir, &v);
	if (r < 0)
		goto out;
	store_opts_default(&o);
	o.vfs = v;
	o.wal_segment_bytes = 16 << 20;
	r = store_open(&o, &s);
	if (r < 0)
		goto out;
	struct ns *ns = NULL;
	r = store_ns_clone(s, &ns);
	if (r < 0)
		goto out;
	first_ino = ns_next_ino(ns);
	ns_free(ns);
	for (unsigned i = 0; i < files && r == 0; i++) {
		uint8_t enc[NSOP_MAX_LEN];
		char name[32];
		int nl = snprintf(name, sizeof(name), "file%06u.log", i);
		struct ns_op op = {.kind = NS_CREATE, .ino = first_ino + i, .parent = NS_ROOT_INO, .name = name,
				   .name_len = (uint32_t)nl, .mode = S_IFREG | 0644};
		op.atime_ns = op.mtime_ns = op.ctime_ns = bz_wall_ns();
		int n = nsop_encode(&op, enc, sizeof(enc));
		r = n < 0 ? n : frame(&b, REC_NS, 0, 0, enc, (size_t)n);
		if (r == 0 && (i % 64 == 63 || i == files - 1))
			r = commit(s, &b, false);
	}
	for (unsigned i = 0; i < records && r == 0; i++) {
		unsigned f = i % files;
		int n = snprintf(line, sizeof(line), "%010u 2026-11-25T12:00:00Z host app[%u]: request %u served in %u us\n",
				 i, f, i * 7, i % 997);
		r = frame(&b, REC_DATA, first_ino + f, size[f], line, (size_t)n);
		size[f] += (uint64_t)n;
		if (r == 0 && (i % 64 == 63 || i == records - 1))
			r = commit(s, &b, i % 4096 == 4095);
	}
	if (r == 0)
		r = store_wal_sync(s);
out:
	if (s) {
		int rc = store_close(s);
		if (r == 0)
			r = rc;
	}
	vfs_destroy(v);
	free(b.p);
	free(size);
	return r;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct result {
	uint64_t open_ns, ro_open_ns, preads, ro_preads;
};

static int measure(const char *dir, int runs, struct result *res)
{
	uint64_t t[64], t_ro[64];
	int r = 0;

	if (runs > 64)
		runs = 64;
	for (int i = 0; i < runs && r == 0; i++) {
		for (int ro = 0; ro < 2 && r == 0; ro++) {
			struct vfs *v = NULL;
			struct store *s = NULL;
			struct store_opts o;
			r = vfs_posix_new(dir, &v);
			if (r < 0)
				break;
			store_opts_default(&o);
			o.vfs = v;
			o.read_only = ro;
			uint64_t p0 = vfs_count(v, VFS_OP_PREAD);
			uint64_t t0 = bz_now_ns();
			r = store_open(&o, &s);
			uint64_t dt = bz_now_ns() - t0;
			uint64_t np = vfs_count(v, VFS_OP_PREAD) - p0;
			(ro ? t_ro : t)[i] = dt;
			if (ro)
				res->ro_preads = np;
			else
				res->preads = np;
			store_close(s);
			vfs_destroy(v);
		}
	}
	if (r < 0)
		return r;
	qsort(t, (size_t)runs, sizeof(t[0]), cmp_u64);
	qsort(t_ro, (size_t)runs, sizeof(t[0]), cmp_u64);
	res->open_ns = t[runs / 2];
	res->ro_open_ns = t_ro[runs / 2];
	return 0;
}

int main(int argc, char **argv)
{
	unsigned big_records = argc > 1 ? (unsigned)atoi(argv[1]) : 100000;
	unsigned big_files = argc > 2 ? (unsigned)atoi(argv[2]) : 10000;
	int runs = argc > 3 ? atoi(argv[3]) : 5;
	const char *base = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
	char tmpl[512], cmd[700];
	struct {
		const char *label;
		unsigned records, files;
		char dir[600];
		struct result res;
	} st[3] = {
		{"small", 100, 10, "", {0}},
		{"many records", big_records, 10, "", {0}},
		{"many records+files", big_records, big_files, "", {0}},
	};
	int r = 0;

	bz_log_set_level(BZ_LOG_WARN);
	if (runs < 1)
		runs = 1;
	snprintf(tmpl, sizeof(tmpl), "%s/bench_reopen.XXXXXX", base);
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		return 1;
	}
	for (int i = 0; i < 3 && r == 0; i++) {
		snprintf(st[i].dir, sizeof(st[i].dir), "%s/s%d", tmpl, i);
		mkdir(st[i].dir, 0755);
		uint64_t t0 = bz_now_ns();
		r = build(st[i].dir, st[i].records, st[i].files);
		if (r == 0)
			fprintf(stderr, "built %s (%u records, %u files) in %.2f s\n", st[i].label, st[i].records,
				st[i].files, (double)(bz_now_ns() - t0) / 1e9);
	}
	for (int i = 0; i < 3 && r == 0; i++)
		r = measure(st[i].dir, runs, &st[i].res);
	if (r < 0) {
		fprintf(stderr, "bench_reopen: %s\n", strerror(-r));
		goto out;
	}
	printf("%-20s %9s %7s %14s %7s  %12s %9s\n", "store (posix vfs)", "records", "files", "open median",
	       "preads", "ro-open med.", "ro-preads");
	for (int i = 0; i < 3; i++)
		printf("%-20s %9u %7u %11.3f ms %7llu  %9.3f ms %9llu\n", st[i].label, st[i].records, st[i].files,
		       (double)st[i].res.open_ns / 1e6, (unsigned long long)st[i].res.preads,
		       (double)st[i].res.ro_open_ns / 1e6, (unsigned long long)st[i].res.ro_preads);
	printf("ratio many records / small (same file count): open %.2fx, preads %.2fx\n",
	       (double)st[1].res.open_ns / (double)st[0].res.open_ns,
	       (double)st[1].res.preads / (double)(st[0].res.preads ? st[0].res.preads : 1));
	printf("ratio many records+files / small: open %.2fx, preads %.2fx (namespace chain is O(files))\n",
	       (double)st[2].res.open_ns / (double)st[0].res.open_ns,
	       (double)st[2].res.preads / (double)(st[0].res.preads ? st[0].res.preads : 1));
	printf("open = superblocks + namespace chain + WAL headers/tail + the recovery checkpoint; no data or "
	       "index page is read (bytes read ~= preads x 4 KiB, WAL windows excepted)\n");
out:
	if (getenv("BENCH_KEEP")) {
		fprintf(stderr, "kept the stores in %s\n", tmpl);
		return r < 0 ? 1 : 0;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_reopen: could not remove %s\n", tmpl);
	return r < 0 ? 1 : 0;
}
