/* bench_readers.c — does a crowd of readers slow the commit thread?
 * (issue 11.4: "the commit thread never waits for a reader").
 *
 * A real store (posix vfs in a fresh directory under /var/tmp, removed
 * afterwards) gets one large compressible file written in 1 MiB records
 * (the largest record_bytes allows: every read decompresses a whole 1 MiB
 * record). Then, with R reader threads doing random 64 KiB pipe_reads of it
 * (R = 0 first, then each -r value), one writer does N rounds of
 * "append 4 KiB to another file, PIPE_DURABLE barrier" (what fsync does)
 * and the bench prints the barrier latency p50/p99/max and the readers'
 * throughput. A durable barrier waits for the commit thread, which applies
 * each batch under the store's exclusive lock after acking it: if readers
 * hold the lock through decompression, or a reader-preferring lock lets
 * them overtake it, the next barrier waits.
 *
 *   bench_readers [-m file MiB (256)] [-n rounds (400)] [-r readers,... (0,3,6)] [-d parent_dir]
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/log.h"
#include "storage/ns.h"
#include "storage/pipeline.h"
#include "storage/store.h"
#include "storage/vfs.h"

struct reader {
	struct pipeline *p;
	uint64_t ino, size, seed, reads;
	volatile int *stop;
	int err;
};

static uint64_t xs(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	uint8_t *buf = malloc(64 << 10);

	while (buf && !__atomic_load_n(rd->stop, __ATOMIC_RELAXED)) {
		uint64_t off = xs(&rd->seed) % (rd->size - (64 << 10));
		size_t n = 0;
		int r = pipe_read(rd->p, rd->ino, off, buf, 64 << 10, &n);
		if (r < 0 || n != (64u << 10)) {
			rd->err = r < 0 ? r : -EIO;
			break;
		}
		rd->reads++;
	}
	free(buf);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int mk(struct pipeline *p, uint64_t ino, const char *name)
{
	struct ns_op op = {.kind = NS_CREATE, .parent = NS_ROOT_INO, .mode = S_IFREG | 0644, .ino = ino};
	op.name = name;
	op.name_len = (uint32_t)strlen(name);
	op.atime_ns = op.mtime_ns = op.ctime_ns = bz_wall_ns();
	return pipe_nsop(p, &op);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(int argc, char **argv)
{
	const char *parent = "/var/tmp";
	uint64_t mib = 256, rounds = 400;
	unsigned readers[8] = {0, 3, 6}, nr = 3;
	struct store_opts so;
	struct pipe_opts o;
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct ns *ns = NULL;
	char dir[4096];
	uint64_t big, small, small_size = 0;
	int c, r;

	while ((c = getopt(argc, argv, "m:n:r:d:")) != -1) {
		if (c == 'm')
			mib = strtoull(optarg, NULL, 0);
		else if (c == 'n')
			rounds = strtoull(optarg, NULL, 0);
		else if (c == 'd')
			parent = optarg;
		else if (c == 'r') {
			char *t = optarg;
			nr = 0;
			while (*t && nr < 8) {
				readers[nr++] = (unsigned)strtoul(t, &t, 0);
				if (*t == ',')
					t++;
			}
		} else {
			fprintf(stderr, "usage: bench_readers [-m MiB] [-n rounds] [-r 0,3,6] [-d dir]\n");
			return 2;
		}
	}
	bz_log_set_level(BZ_LOG_WARN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(dir, sizeof(dir), "%.4000s/bzreaders.XXXXXX", parent);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	r = vfs_posix_new(dir, &v);
	store_opts_default(&so);
	so.vfs = v;
	if (r == 0)
		r = store_open(&so, &s);
	if (r == 0)
		r = store_ns_clone(s, &ns);
	if (r < 0)
		goto out;
	big = ns_next_ino(ns);
	small = big + 1;
	ns_free(ns);
	pipe_opts_default(&o);
	o.record_bytes = 1u << 20;
	o.batch_bytes = 8u << 20;
	r = pipe_start(s, &o, &p);
	if (r == 0)
		r = mk(p, big, "big");
	if (r == 0)
		r = mk(p, small, "small");
	/* text-like data: compresses ~5x with zstd 1 */
	uint8_t *chunk = malloc(1u << 20), line[128];
	uint64_t seed = 42;
	for (size_t i = 0; chunk && i < (1u << 20);) {
		int n = snprintf((char *)line, sizeof(line), "2026-11-30T06:%02u:%02u.%03u INFO worker-%u request %llu done in %u ms\n",
				 (unsigned)(xs(&seed) % 60), (unsigned)(xs(&seed) % 60), (unsigned)(xs(&seed) % 1000),
				 (unsigned)(xs(&seed) % 8), (unsigned long long)(xs(&seed) % 100000),
				 (unsigned)(xs(&seed) % 500));
		size_t k = BZ_MIN((size_t)n, (1u << 20) - i);
		memcpy(chunk + i, line, k);
		i += k;
	}
	for (uint64_t i = 0; r == 0 && i < mib; i++)
		r = pipe_append(p, big, i << 20, chunk, 1u << 20);
	if (r == 0)
		r = pipe_barrier_wait(p, PIPE_DURABLE);
	if (r < 0)
		goto out;
	printf("readers  fsync_p50_us  fsync_p99_us  fsync_max_us  apply_p99_us  apply_max_us  reads/s\n");
	uint64_t *lat = calloc(rounds, sizeof(*lat));
	for (unsigned k = 0; k < nr && lat; k++) {
		volatile int stop = 0;
		struct reader rd[64];
		pthread_t tid[64];
		unsigned R = BZ_MIN(readers[k], 64u);
		uint64_t reads = 0;

		/* a fresh pipeline per row: its apply-stage histogram is the row's */
		if (k > 0) {
			r = pipe_stop(p);
			p = NULL;
			if (r == 0)
				r = pipe_start(s, &o, &p);
			if (r < 0)
				break;
		}

		for (unsigned i = 0; i < R; i++) {
			rd[i] = (struct reader){.p = p, .ino = big, .size = mib << 20, .seed = 7 + i, .stop = &stop};
			pthread_create(&tid[i], NULL, reader_main, &rd[i]);
		}
		usleep(100000);
		uint64_t t0 = bz_now_ns();
		for (uint64_t i = 0; r == 0 && i < rounds; i++) {
			uint64_t a = bz_now_ns();
			r = pipe_append(p, small, small_size, chunk, 4096);
			small_size += 4096;
			if (r == 0)
				r = pipe_barrier_wait(p, PIPE_DURABLE);
			lat[i] = bz_now_ns() - a;
		}
		double secs = (double)(bz_now_ns() - t0) / 1e9;
		stop = 1;
		for (unsigned i = 0; i < R; i++) {
			pthread_join(tid[i], NULL);
			reads += rd[i].reads;
			if (rd[i].err && r == 0)
				r = rd[i].err;
		}
		qsort(lat, rounds, sizeof(*lat), cmp_u64);
		struct pipe_stats *st = calloc(1, sizeof(*st));
		if (st)
			pipe_stats(p, st);
		printf("%7u  %12.0f  %12.0f  %12.0f  %12.0f  %12.0f  %7.0f\n", R, lat[rounds / 2] / 1e3,
		       lat[rounds * 99 / 100] / 1e3, lat[rounds - 1] / 1e3,
		       st ? bz_hist_quantile(&st->stage[PIPE_ST_APPLY], 0.99) / 1e3 : 0.0,
		       st ? st->stage[PIPE_ST_APPLY].max / 1e3 : 0.0, reads / secs);
		free(st);
	}
	free(lat);
	free(chunk);
out:
	if (r < 0)
		fprintf(stderr, "bench_readers: %s\n", strerror(-r));
	if (p && pipe_stop(p) < 0 && r == 0)
		r = -EIO;
	store_close(s);
	vfs_destroy(v);
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return r < 0;
}
