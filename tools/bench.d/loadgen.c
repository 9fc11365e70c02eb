/*
 * tools/bench.d/loadgen.c — the line and file workloads of tools/bench.
 *
 * tools/bench compiles this at bench time (cc -O2 -pthread) into its scratch
 * directory; it is not part of the meson build and links only libc. Python
 * cannot issue one write() per 128-byte line fast enough to load ext4, so the
 * writers live here; every result is one JSON object on stdout.
 *
 *   loadgen lines DIR WRITERS SECONDS MAXLINES FSYNC [READERS READFILE]
 *       WRITERS threads, each appending synthetic access-log lines (~128 B,
 *       combined log format, deterministic per writer) to its own file
 *       DIR/log.W (O_WRONLY|O_CREAT|O_APPEND), one write() per line, and with
 *       FSYNC=1 an fsync() after every line. Stops after SECONDS (0 = no
 *       limit) or MAXLINES lines in total (0 = no limit), whichever first.
 *       The lines are generated before the clock starts (a pool of 16 MiB
 *       per writer, reused from the start when exhausted), so the timed loop
 *       is write()/fsync() only. With READERS > 0, that many threads read
 *       READFILE sequentially in 1 MiB reads, dropping its cached pages
 *       (posix_fadvise DONTNEED) after each pass so every pass reaches the
 *       filesystem, until the writers stop.
 *       Output: lines, bytes, seconds, lines_per_s, per-line latency
 *       (write [+ fsync]) p50/p99/max in µs, reader passes and bytes.
 *   loadgen files DIR COUNT SIZE [SECONDS]
 *       COUNT files of SIZE bytes of text (one write each, then close) in
 *       subdirectories of 1000; with SECONDS > 0 it stops early when that
 *       budget is spent. Output: files (made), seconds.
 *   loadgen gen FILE BYTES
 *       writes BYTES of access-log lines to FILE (for cp sources and
 *       compression references). Output: bytes, lines.
 *
 * Errors: a failing system call prints "loadgen: <call>: <strerror>" on
 * stderr and exits 1; partial JSON is never printed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POOL_BYTES (16u << 20)
#define MAX_SAMPLES (1u << 21)

static atomic_int stop_flag;
static atomic_long lines_left;
static int limited;   /* MAXLINES given: lines_left counts down */

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static const char *const paths[] = {
	"/api/v1/items/%u", "/api/v1/users/%u/orders", "/static/app.%u.js",
	"/search?q=item%u", "/healthz", "/api/v1/carts/%u/checkout",
	"/img/p/%u.jpg", "/index.html",
};
static const char *const agents[] = {
	"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "curl/7.88.1",
	"Mozilla/5.0 (Windows NT 10.0) Chrome/119.0", "Googlebot/2.1",
	"python-requests/2.31", "Mozilla/5.0 (iPhone) Safari/604.1",
};
static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
				   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* One combined-log-format line (~110-150 bytes, mean ~128) into buf. */
static int gen_line(char *buf, size_t cap, uint64_t *s, time_t *t)
{
	uint64_t r = rnd(s);
	if (r % 4 == 0)
		(*t)++;
	struct tm tm;
	gmtime_r(t, &tm);
	unsigned client = (unsigned)(rnd(s) % 400);
	char path[64];
	snprintf(path, sizeof(path), paths[rnd(s) % 8], (unsigned)(rnd(s) % 100000));
	static const int st[] = { 200, 200, 200, 200, 200, 200, 200, 200, 304, 404, 201, 500 };
	const char *method = rnd(s) % 10 < 8 ? "GET" : "POST";
	return snprintf(buf, cap,
			"10.%u.%u.%u - - [%02d/%s/%04d:%02d:%02d:%02d +0000] \"%s %s HTTP/1.1\" %d %u \"-\" \"%s\"\n",
			client / 100, (client * 7) % 250, client % 250 + 1, tm.tm_mday,
			mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
			method, path, st[rnd(s) % 12], (unsigned)(rnd(s) % 60000 + 200),
			agents[rnd(s) % 6]);
}

struct pool {
	char *buf;
	size_t len;
	uint32_t *off;   /* line i is buf[off[i] .. off[i+1]) */
	size_t nlines;
};

static void make_pool(struct pool *p, uint64_t seed, size_t bytes)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
	time_t t = 1796000000;
	p->buf = malloc(bytes + 512);
	p->off = malloc((bytes / 64 + 2) * sizeof(*p->off));
	if (!p->buf || !p->off)
		die("malloc");
	p->len = 0;
	p->nlines = 0;
	while (p->len + 256 < bytes) {
		p->off[p->nlines++] = (uint32_t)p->len;
		p->len += gen_line(p->buf + p->len, 512, &s, &t);
	}
	p->off[p->nlines] = (uint32_t)p->len;
}

struct writer {
	pthread_t th;
	int fd;
	int fsync_each;
	struct pool pool;
	long lines;
	long bytes;
	uint32_t *lat_ns;   /* per-line latency samples (first MAX_SAMPLES/writers) */
	size_t nlat, caplat;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	size_t i = 0;
	while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
		if (limited && atomic_fetch_sub(&lines_left, 1) <= 0)
			break;
		if (i == w->pool.nlines)
			i = 0;
		const char *l = w->pool.buf + w->pool.off[i];
		size_t n = w->pool.off[i + 1] - w->pool.off[i];
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		ssize_t k = write(w->fd, l, n);
		if (k != (ssize_t)n)
			die(k < 0 ? "write" : "short write");
		if (w->fsync_each && fsync(w->fd) != 0)
			die("fsync");
		clock_gettime(CLOCK_MONOTONIC, &b);
		if (w->nlat < w->caplat)
			w->lat_ns[w->nlat++] = (uint32_t)((b.tv_sec - a.tv_sec) * 1000000000L +
							  (b.tv_nsec - a.tv_nsec));
		w->lines++;
		w->bytes += n;
		i++;
	}
	return NULL;
}

struct reader {
	pthread_t th;
	const char *path;
	long passes;
	long bytes;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	char *buf = malloc(1 << 20);
	if (!buf)
		die("malloc");
	while (!atomic_load(&stop_flag)) {
		int fd = open(r->path, O_RDONLY);
		if (fd < 0)
			die("open read file");
		ssize_t k;
		while (!atomic_load(&stop_flag) && (k = read(fd, buf, 1 << 20)) > 0)
			r->bytes += k;
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
		r->passes++;
	}
	free(buf);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int cmd_lines(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: loadgen lines DIR WRITERS SECONDS MAXLINES FSYNC [READERS FILE]\n");
		return 2;
	}
	const char *dir = argv[2];
	int nw = atoi(argv[3]);
	double secs = atof(argv[4]);
	long maxl = atol(argv[5]);
	int fs = atoi(argv[6]);
	int nr = argc > 8 ? atoi(argv[7]) : 0;
	const char *rf = argc > 8 ? argv[8] : NULL;
	if (nw < 1 || nw > 64 || nr < 0 || nr > 64)
		return 2;
	limited = maxl > 0;
	atomic_store(&lines_left, maxl);
	struct writer *w = calloc(nw, sizeof(*w));
	struct reader *r = calloc(nr ? nr : 1, sizeof(*r));
	if (!w || !r)
		die("calloc");
	size_t pool = POOL_BYTES;
	if (maxl > 0 && (size_t)maxl * 160 / nw + 4096 < pool)
		pool = (size_t)maxl * 160 / nw + 4096;
	for (int i = 0; i < nw; i++) {
		char p[4096];
		snprintf(p, sizeof(p), "%s/log.%d", dir, i);
		w[i].fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (w[i].fd < 0)
			die("open log");
		w[i].fsync_each = fs;
		make_pool(&w[i].pool, (uint64_t)i + 1, pool);
		w[i].caplat = MAX_SAMPLES / nw;
		w[i].lat_ns = malloc(w[i].caplat * sizeof(uint32_t));
		if (!w[i].lat_ns)
			die("malloc");
	}
	for (int i = 0; i < nr; i++) {
		r[i].path = rf;
		if (pthread_create(&r[i].th, NULL, reader_main, &r[i]))
			die("pthread_create");
	}
	if (nr)
		usleep(200000);   /* readers running before the writers start */
	double t0 = now_s();
	for (int i = 0; i < nw; i++)
		if (pthread_create(&w[i].th, NULL, writer_main, &w[i]))
			die("pthread_create");
	if (secs > 0) {
		/* sleep in slices; the writers may finish MAXLINES first */
		while (now_s() - t0 < secs && (!limited || atomic_load(&lines_left) > 0))
			usleep(2000);
		atomic_store(&stop_flag, 1);
	}
	for (int i = 0; i < nw; i++)
		pthread_join(w[i].th, NULL);
	double dt = now_s() - t0;
	atomic_store(&stop_flag, 1);
	for (int i = 0; i < nr; i++)
		pthread_join(r[i].th, NULL);
	long lines = 0, bytes = 0, rpass = 0, rbytes = 0;
	size_t nlat = 0;
	for (int i = 0; i < nw; i++) {
		lines += w[i].lines;
		bytes += w[i].bytes;
		nlat += w[i].nlat;
		if (close(w[i].fd) != 0)
			die("close");
	}
	for (int i = 0; i < nr; i++) {
		rpass += r[i].passes;
		rbytes += r[i].bytes;
	}
	uint32_t *all = malloc((nlat ? nlat : 1) * sizeof(uint32_t));
	if (!all)
		die("malloc");
	size_t k = 0;
	for (int i = 0; i < nw; i++) {
		memcpy(all + k, w[i].lat_ns, w[i].nlat * sizeof(uint32_t));
		k += w[i].nlat;
	}
	qsort(all, nlat, sizeof(uint32_t), cmp_u32);
	double p50 = nlat ? all[nlat / 2] / 1e3 : 0;
	double p99 = nlat ? all[(size_t)(nlat * 0.99)] / 1e3 : 0;
	double mx = nlat ? all[nlat - 1] / 1e3 : 0;
	printf("{\"lines\": %ld, \"bytes\": %ld, \"seconds\": %.6f, \"lines_per_s\": %.1f, "
	       "\"lat_samples\": %zu, \"lat_p50_us\": %.1f, \"lat_p99_us\": %.1f, \"lat_max_us\": %.1f, "
	       "\"readers\": %d, \"reader_passes\": %ld, \"reader_bytes\": %ld}\n",
	       lines, bytes, dt, lines / dt, nlat, p50, p99, mx, nr, rpass, rbytes);
	return 0;
}

static int cmd_files(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	const char *dir = argv[2];
	long n = atol(argv[3]);
	int size = atoi(argv[4]);
	double budget = argc > 5 ? atof(argv[5]) : 0;
	char data[4096];
	uint64_t s = 7;
	time_t t = 1796000000;
	if (size < 1 || size > (int)sizeof(data))
		return 2;
	double t0 = now_s();
	long i;
	for (i = 0; i < n; i++) {
		char p[4096];
		if (budget > 0 && i % 1000 == 0 && now_s() - t0 > budget)
			break;
		if (i % 1000 == 0) {
			snprintf(p, sizeof(p), "%s/d%05ld", dir, i / 1000);
			if (mkdir(p, 0755) != 0 && errno != EEXIST)
				die("mkdir");
		}
		int len = 0;
		while (len < size)
			len += gen_line(data + len, sizeof(data) - len, &s, &t);
		snprintf(p, sizeof(p), "%s/d%05ld/f%07ld", dir, i / 1000, i);
		int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			die("open");
		if (write(fd, data, size) != size)
			die("write");
		if (close(fd) != 0)
			die("close");
	}
	double dt = now_s() - t0;
	printf("{\"files\": %ld, \"size\": %d, \"seconds\": %.6f}\n", i, size, dt);
	return 0;
}

static int cmd_gen(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	long want = atol(argv[3]);
	FILE *f = fopen(argv[2], "w");
	if (!f)
		die("fopen");
	uint64_t s = 99;
	time_t t = 1796000000;
	long have = 0, lines = 0;
	char buf[512];
	while (have < want) {
		int n = gen_line(buf, sizeof(buf), &s, &t);
		if (fwrite(buf, 1, n, f) != (size_t)n)
			die("fwrite");
		have += n;
		lines++;
	}
	if (fclose(f) != 0)
		die("fclose");
	printf("{\"bytes\": %ld, \"lines\": %ld}\n", have, lines);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "lines") == 0)
		return cmd_lines(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "files") == 0)
		return cmd_files(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "gen") == 0)
		return cmd_gen(argc, argv);
	fprintf(stderr, "usage: loadgen lines|files|gen ...\n");
	return 2;
}
