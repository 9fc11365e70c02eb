/* test_pipeline.c — the batcher, the pool and the commit thread against the
 * real store on a memory (or fault-wrapped) vfs:
 *   - model: 4 writer threads, thousands of appends over 8 files with
 *     read-your-writes checks after every append, barriers, renames; workers
 *     finish in random order (before_encode hook delays) and the WAL order
 *     must equal the seal order (wal_appended hook); after pipe_stop and a
 *     reopen every file equals the model byte for byte; workers=0,1,2,4;
 *   - read-your-writes across the open record / applied boundary;
 *   - group commit: 8 threads appending + waiting PIPE_DURABLE are released
 *     by fewer fdatasyncs than waiters;
 *   - group hold: 8 lockstep writers on a slow disk get ~1 fdatasync per
 *     round, not 2 (the next sync waits for the last group to come back);
 *   - backpressure: slowed vfs, 1 GiB (PIPE_TEST_BP_MB) through an 8 MiB
 *     in-flight limit: inflight_max stays <= limit + one record;
 *   - wake-ups: append+barrier cycles do not signal the commit thread to
 *     arm the linger timer (stats linger_arms); linger still seals alone;
 *   - failure: a failed fdatasync / WAL write gives every waiter EIO, later
 *     appends EROFS, no hang; what was durable before survives a reopen.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/ns.h"
#include "storage/pipeline.h"
#include "storage/record.h"
#include "storage/store.h"
#include "storage/vfs.h"
#include "t.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static uint64_t xs(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static int open_store(struct vfs *v, struct store **ret)
{
	struct store_opts so;

	store_opts_default(&so);
	so.vfs = v;
	so.wal_segment_bytes = 1 << 20; /* small WAL: checkpoints and recycling happen */
	so.wal_segments = 4;
	so.cache_bytes = 4 << 20;
	return store_open(&so, ret);
}

static uint64_t next_ino(struct store *s)
{
	struct ns *ns = NULL;
	uint64_t ino;

	T_ASSERT(store_ns_clone(s, &ns) == 0);
	ino = ns_next_ino(ns);
	ns_free(ns);
	return ino;
}

/* A memory vfs, a store on it, the next inode number and the default
 * pipeline options with `workers` workers: every test's start. */
static void setup(struct vfs **v, struct store **s, uint64_t *ino, struct pipe_opts *o, unsigned workers)
{
	T_ASSERT(vfs_mem_new(v) == 0);
	T_ASSERT(open_store(*v, s) == 0);
	*ino = next_ino(*s);
	pipe_opts_default(o);
	o->workers = workers;
}

static int mk_file(struct pipeline *p, uint64_t ino, const char *name)
{
	struct ns_op op = {.kind = NS_CREATE, .ino = ino, .parent = NS_ROOT_INO, .name = name,
			   .name_len = (uint32_t)strlen(name), .mode = S_IFREG | 0644, .uid = 1, .gid = 1,
			   .atime_ns = 1, .mtime_ns = 1, .ctime_ns = 1};
	return pipe_nsop(p, &op);
}

static int rename_file(struct pipeline *p, const char *from, const char *to)
{
	struct ns_op op = {.kind = NS_RENAME, .parent = NS_ROOT_INO, .name = from, .name_len = (uint32_t)strlen(from),
			   .parent2 = NS_ROOT_INO, .name2 = to, .name2_len = (uint32_t)strlen(to), .ctime_ns = 2};
	return pipe_nsop(p, &op);
}

static void fill_text(uint8_t *b, size_t n, uint64_t *rs)
{
	static const char *w[] = {"GET", "/index.html", "200", "user=42", "latency_ms=3", "INFO", "WARN",
				  "connection", "closed", "\n", "request", "id=9f3a"};
	size_t i = 0;
	while (i < n) {
		const char *s = w[xs(rs) % BZ_ARRAY_SIZE(w)];
		while (*s && i < n)
			b[i++] = (uint8_t)*s++;
		if (i < n)
			b[i++] = ' ';
	}
}

/* ---------------------------------------------------------------- */
/* test hooks: out-of-order workers, WAL order                       */

static uint64_t hook_last_seq;   /* commit thread only; read after pipe_stop */
static uint64_t hook_bad_order;
static uint64_t hook_appends;
static int hook_delay;           /* set before pipe_start */

static void hook_before_encode(void *arg, uint64_t seq)
{
	uint64_t s = seq * 0x9e3779b97f4a7c15ull + 1;
	(void)arg;
	if (hook_delay && xs(&s) % 3 == 0)
		usleep((useconds_t)(xs(&s) % 1500));
}

static uint64_t hook_max_encoded, hook_inversions; /* __atomic */

static void hook_after_encode(void *arg, uint64_t seq)
{
	uint64_t m = __atomic_load_n(&hook_max_encoded, __ATOMIC_RELAXED);
	(void)arg;
	if (seq < m)
		__atomic_fetch_add(&hook_inversions, 1, __ATOMIC_RELAXED);
	while (seq > m && !__atomic_compare_exchange_n(&hook_max_encoded, &m, seq, true, __ATOMIC_RELAXED,
						       __ATOMIC_RELAXED))
		;
}

static void hook_wal_appended(void *arg, uint64_t seq, uint64_t lsn)
{
	(void)arg;
	(void)lsn;
	if (seq != hook_last_seq + 1)
		hook_bad_order++;
	hook_last_seq = seq;
	hook_appends++;
}

static void hooks_on(int delay)
{
	struct pipe_test_hooks h = {.before_encode = hook_before_encode,
				    .after_encode = hook_after_encode,
				    .wal_appended = hook_wal_appended};
	hook_last_seq = hook_bad_order = hook_appends = 0;
	hook_max_encoded = hook_inversions = 0;
	hook_delay = delay;
	pipe_set_test_hooks(&h);
}

/* ---------------------------------------------------------------- */
/* the model test                                                     */

#define MODEL_THREADS 4
#define FILES_PER_THREAD 2

struct mfile {
	uint64_t ino;
	char name[32];
	uint8_t *data;
	size_t len, cap;
};

struct mthread {
	struct pipeline *p;
	int id;
	unsigned appends;
	struct mfile f[FILES_PER_THREAD];
	int errors;
	int read_mismatch;
	int barrier_err;
};

static void mfile_put(struct mfile *f, const uint8_t *b, size_t n)
{
	if (f->len + n > f->cap) {
		f->cap = (f->len + n) * 2;
		f->data = realloc(f->data, f->cap);
		T_ASSERT(f->data);
	}
	memcpy(f->data + f->len, b, n);
	f->len += n;
}

static void *model_writer(void *arg)
{
	struct mthread *t = arg;
	uint64_t rs = 0x1234567ull + (uint64_t)t->id * 7919;
	uint8_t *buf = malloc(100000), *rb = malloc(100000);

	T_ASSERT(buf && rb);
	for (unsigned i = 0; i < t->appends; i++) {
		struct mfile *f = &t->f[xs(&rs) % FILES_PER_THREAD];
		unsigned k = (unsigned)(xs(&rs) % 10);
		size_t n = k < 5 ? 1 + xs(&rs) % 300 : k < 9 ? 300 + xs(&rs) % 8000 : 8000 + xs(&rs) % 90000;
		size_t got = 0;

		if (k == 3)
			for (size_t j = 0; j < n; j++)
				buf[j] = (uint8_t)xs(&rs); /* some incompressible records */
		else
			fill_text(buf, n, &rs);
		if (pipe_append(t->p, f->ino, f->len, buf, n) != 0) {
			t->errors++;
			continue;
		}
		mfile_put(f, buf, n);
		/* read-your-writes: the bytes just appended */
		if (pipe_read(t->p, f->ino, f->len - n, rb, n, &got) != 0 || got != n || memcmp(rb, buf, n) != 0)
			t->read_mismatch++;
		/* and a random range of the file, possibly past its end */
		if (i % 7 == 0) {
			uint64_t off = xs(&rs) % f->len;
			size_t want = 1 + xs(&rs) % 70000, expect = BZ_MIN(want, f->len - off);
			if (pipe_read(t->p, f->ino, off, rb, want, &got) != 0 || got != expect ||
			    memcmp(rb, f->data + off, expect) != 0)
				t->read_mismatch++;
		}
		if (i % 61 == 0 && pipe_barrier_wait(t->p, (i / 61) % 2 ? PIPE_DURABLE : PIPE_WRITTEN) != 0)
			t->barrier_err++;
		if (i == t->appends / 2) {
			char to[sizeof(f->name)];
			snprintf(to, sizeof(to), "%.20s.r", f->name);
			if (rename_file(t->p, f->name, to) != 0)
				t->errors++;
			else
				memcpy(f->name, to, sizeof(to));
		}
	}
	free(buf);
	free(rb);
	return NULL;
}

static void test_model(unsigned workers)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct mthread th[MODEL_THREADS];
	pthread_t tid[MODEL_THREADS];
	struct pipe_stats st;
	uint64_t ino;
	char json[8192];
	unsigned appends = 700;

	setup(&v, &s, &ino, &o, workers);
	o.record_bytes = 16 << 10;
	o.batch_bytes = 256 << 10;
	o.batch_records = 16;
	o.linger_us = 300;
	o.sync_interval_ms = 20;
	o.max_inflight_bytes = 4 << 20;
	hooks_on(workers > 0);
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	pipe_set_test_hooks(NULL); /* the pipeline keeps its copy */

	memset(th, 0, sizeof(th));
	for (int i = 0; i < MODEL_THREADS; i++) {
		th[i].p = p;
		th[i].id = i;
		th[i].appends = appends;
		for (int j = 0; j < FILES_PER_THREAD; j++) {
			struct mfile *f = &th[i].f[j];
			f->ino = ino++;
			snprintf(f->name, sizeof(f->name), "t%df%d", i, j);
			T_CHECK_EQ(mk_file(p, f->ino, f->name), 0);
		}
	}
	for (int i = 0; i < MODEL_THREADS; i++)
		T_ASSERT(pthread_create(&tid[i], NULL, model_writer, &th[i]) == 0);
	for (int i = 0; i < MODEL_THREADS; i++)
		pthread_join(tid[i], NULL);
	for (int i = 0; i < MODEL_THREADS; i++) {
		T_CHECK_EQ(th[i].errors, 0);
		T_CHECK_EQ(th[i].read_mismatch, 0);
		T_CHECK_EQ(th[i].barrier_err, 0);
	}
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_DURABLE), 0);
	pipe_stats(p, &st);
	T_CHECK(st.records >= 1000);
	T_CHECK_EQ(st.error, 0);
	T_CHECK_EQ(st.workers, workers);
	T_CHECK(st.batches > 10);
	T_CHECK(st.fdatasyncs >= 1);
	T_CHECK(st.inflight_max <= o.max_inflight_bytes + 100000);
	{
		int n = pipe_stats_json(p, json, sizeof(json));
		int depth = 0, bad = 0;
		bool str = false;
		T_CHECK(n > 0);
		for (int i = 0; n > 0 && i < n; i++) {
			char c = json[i];
			if (c == '"')
				str = !str;
			else if (!str && c == '{')
				depth++;
			else if (!str && c == '}' && --depth == 0 && i != n - 1)
				bad = 1;
		}
		T_CHECK(n > 0 && json[0] == '{' && json[n - 1] == '}' && depth == 0 && !bad && !str);
		T_CHECK(strstr(json, "\"fdatasync\":{\"count\":") != NULL);
		T_CHECK(strstr(json, "\"group_size\"") != NULL);
		if (getenv("PIPE_TEST_JSON"))
			fprintf(stderr, "%s\n", json);
		T_CHECK_EQ(pipe_stats_json(p, json, 10), -ENOSPC);
		T_CHECK_EQ(json[0], 0);
	}
	T_CHECK_EQ(pipe_stop(p), 0);
	T_CHECK_EQ(hook_bad_order, 0);
	T_CHECK_EQ(hook_appends, st.batches);
	T_CHECK_EQ(store_close(s), 0);

	/* reopen and compare with the model */
	s = NULL;
	T_ASSERT(open_store(v, &s) == 0);
	{
		struct ns *ns = NULL;
		uint8_t *rb = malloc(1 << 20);
		T_ASSERT(rb);
		T_ASSERT(store_ns_clone(s, &ns) == 0);
		for (int i = 0; i < MODEL_THREADS; i++)
			for (int j = 0; j < FILES_PER_THREAD; j++) {
				struct mfile *f = &th[i].f[j];
				uint64_t size = 0, found = 0;
				size_t pos = 0;
				T_CHECK_EQ(store_file_size(s, f->ino, &size), 0);
				T_CHECK_EQ(size, f->len);
				T_CHECK_EQ(ns_lookup(ns, NS_ROOT_INO, f->name, strlen(f->name), &found), 0);
				T_CHECK_EQ(found, f->ino);
				while (pos < f->len) {
					size_t got = 0, want = BZ_MIN((size_t)(1 << 20), f->len - pos);
					int r = store_read(s, f->ino, pos, rb, want, &got);
					T_CHECK_EQ(r, 0);
					T_CHECK_EQ(got, want);
					if (r || got != want)
						break;
					T_CHECK(memcmp(rb, f->data + pos, want) == 0);
					pos += want;
				}
				free(f->data);
			}
		ns_free(ns);
		free(rb);
	}
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
	/* The reorder buffer was really exercised: with delays injected, some
	 * batches finished encoding after a later one. */
	T_CHECK(workers < 2 || hook_inversions > 0);
	fprintf(stderr,
		"model workers=%u: %llu batches (%llu encoded out of order, WAL in seal order), %llu records, "
		"%llu fdatasyncs, %llu checkpoints ok\n",
		workers, (unsigned long long)st.batches, (unsigned long long)hook_inversions,
		(unsigned long long)st.records, (unsigned long long)st.fdatasyncs, (unsigned long long)st.checkpoints);
}

/* ---------------------------------------------------------------- */
/* read-your-writes across the open record and the applied boundary   */

static int cb_calls, cb_err = 1;
static void count_cb(void *arg, int err)
{
	(void)arg;
	cb_calls++;
	cb_err = err;
}

static void test_read_your_writes(void)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	uint8_t rb[64];
	size_t got = 0;
	uint64_t ino;

	setup(&v, &s, &ino, &o, 2);
	o.linger_us = 30u * 1000 * 1000; /* nothing seals by itself */
	T_ASSERT(pipe_start(s, &o, &p) == 0);

	{
		struct pipeline *bad = NULL;
		struct pipe_opts b = o;
		b.zstd_level = 1000;
		T_CHECK_EQ(pipe_start(s, &b, &bad), -EINVAL);
		b.workers = 0;
		T_CHECK_EQ(pipe_start(s, &b, &bad), -EINVAL);
		b = o;
		b.record_bytes = 0;
		T_CHECK_EQ(pipe_start(s, &b, &bad), -EINVAL);
		T_CHECK(bad == NULL);
		T_CHECK_EQ(pipe_stop(NULL), 0);
	}
	/* nothing pending: the barrier fires at once, on this thread */
	T_CHECK_EQ(pipe_barrier(p, PIPE_DURABLE, count_cb, NULL), 0);
	T_CHECK_EQ(cb_calls, 1);
	T_CHECK_EQ(cb_err, 0);
	T_CHECK_EQ(pipe_read(p, 999999, 0, rb, 10, &got), 0);
	T_CHECK_EQ(got, 0);

	T_CHECK_EQ(mk_file(p, ino, "ryw"), 0);
	T_CHECK_EQ(pipe_append(p, ino, 0, "hello", 5), 0);
	T_CHECK_EQ(pipe_read(p, ino, 0, rb, sizeof(rb), &got), 0);
	T_CHECK_EQ(got, 5);
	T_CHECK(memcmp(rb, "hello", 5) == 0);
	T_CHECK_EQ(pipe_append(p, ino, 5, " world", 6), 0);
	T_CHECK_EQ(pipe_read(p, ino, 3, rb, 5, &got), 0);
	T_CHECK_EQ(got, 5);
	T_CHECK(memcmp(rb, "lo wo", 5) == 0);
	T_CHECK_EQ(pipe_read(p, ino, 11, rb, 5, &got), 0);
	T_CHECK_EQ(got, 0);
	T_CHECK_EQ(pipe_append(p, ino, 11, "", 0), 0);

	/* durable and applied, then more pending on top */
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_DURABLE), 0);
	T_CHECK_EQ(pipe_append(p, ino, 11, "!!", 2), 0);
	T_CHECK_EQ(pipe_read(p, ino, 0, rb, sizeof(rb), &got), 0);
	T_CHECK_EQ(got, 13);
	T_CHECK(memcmp(rb, "hello world!!", 13) == 0);
	T_CHECK_EQ(pipe_read(p, ino, 9, rb, 3, &got), 0); /* straddles applied / pending */
	T_CHECK_EQ(got, 3);
	T_CHECK(memcmp(rb, "ld!", 3) == 0);

	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_WRITTEN), 0);
	T_CHECK_EQ(pipe_read(p, ino, 0, rb, sizeof(rb), &got), 0);
	T_CHECK_EQ(got, 13);
	T_CHECK_EQ(pipe_stop(p), 0);
	T_CHECK_EQ(store_read(s, ino, 0, rb, sizeof(rb), &got), 0);
	T_CHECK_EQ(got, 13);
	T_CHECK(memcmp(rb, "hello world!!", 13) == 0);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
}

/* ---------------------------------------------------------------- */
/* coalescing: small appends to one file become one record; never     */
/* across a namespace op; a record never exceeds record_bytes         */

/* A clock that never ticks: the records counted below must not be cut by
 * a batch sealed at a clock tick (seal_stale). */
static int64_t frozen_clock(void *arg)
{
	(void)arg;
	return 1000000000;
}

static void test_coalesce(void)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct store_file_info fi;
	struct pipe_test_hooks h = {.wall_ns = frozen_clock};
	uint64_t ino, off = 0;
	char line[16];

	setup(&v, &s, &ino, &o, 1);
	o.linger_us = 30u * 1000 * 1000;
	o.record_bytes = 1000;
	pipe_set_test_hooks(&h);
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	pipe_set_test_hooks(NULL); /* (pipe_start copied them) */
	T_CHECK_EQ(mk_file(p, ino, "c"), 0);
	T_CHECK_EQ(mk_file(p, ino + 1, "d"), 0);
	for (int i = 0; i < 50; i++) { /* 500 bytes: one record, even interleaved with file d */
		snprintf(line, sizeof(line), "line %03d\n", i);
		T_CHECK_EQ(pipe_append(p, ino, off, line, 10), 0);
		T_CHECK_EQ(pipe_append(p, ino + 1, off, line, 10), 0);
		off += 10;
	}
	T_CHECK_EQ(rename_file(p, "d", "d2"), 0);
	for (int i = 50; i < 145; i++) { /* 950 more: a new record after the rename */
		snprintf(line, sizeof(line), "line %03d\n", i);
		T_CHECK_EQ(pipe_append(p, ino, off, line, 10), 0);
		off += 10;
	}
	/* 60 bytes: 50 fill the second record to record_bytes, 10 start a third */
	T_CHECK_EQ(pipe_append(p, ino, off, "0123456789abcdefghij0123456789abcdefghij0123456789abcdefghij", 60), 0);
	off += 60;
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_DURABLE), 0);
	struct pipe_stats *ps = calloc(1, sizeof(*ps));
	T_ASSERT(ps);
	pipe_stats(p, ps);
	/* file c: 3 records, file d: 1 (the store then gathers these small
	 * records into each file's open chunk: storage/store_chunk.c) */
	T_CHECK_EQ(ps->records - ps->ns_records, 4);
	free(ps);
	T_CHECK_EQ(pipe_stop(p), 0);
	T_CHECK_EQ(store_file_info(s, ino, &fi), 0);
	T_CHECK_EQ(fi.records, 1);
	T_CHECK_EQ(fi.raw_bytes, off);
	T_CHECK_EQ(store_file_info(s, ino + 1, &fi), 0);
	T_CHECK_EQ(fi.records, 1);
	T_CHECK_EQ(fi.raw_bytes, 500);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
}

/* ---------------------------------------------------------------- */
/* wake-ups: while batches keep coming, the first record of a batch    */
/* does not signal the commit thread to arm its linger timer (one       */
/* context switch per write+fsync or per file of cp); the linger timer */
/* still seals a batch nobody waits for, busy or idle.                  */

static uint64_t written_after(struct pipeline *p, uint64_t sealed)
{
	struct pipe_stats st;

	/* liveness only: generous, never a measured time */
	for (int i = 0; i < 60000; i++) {
		pipe_stats(p, &st);
		if (st.written_seq >= sealed)
			break;
		usleep(1000);
	}
	return st.written_seq;
}

static void test_wakeups(unsigned workers)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct pipe_stats st;
	uint64_t ino, off = 0;
	const int n = 200;
	char line[32];

	setup(&v, &s, &ino, &o, workers);
	T_ASSERT(o.linger_us >= 1000);
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	T_CHECK_EQ(mk_file(p, ino, "w"), 0);
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_WRITTEN), 0);
	for (int i = 0; i < n; i++) { /* what close() after a write does */
		snprintf(line, sizeof(line), "line %05d\n", i);
		T_CHECK_EQ(pipe_append(p, ino, off, line, 11), 0);
		off += 11;
		T_CHECK_EQ(pipe_barrier_wait(p, PIPE_WRITTEN), 0);
	}
	pipe_stats(p, &st);
	fprintf(stderr, "wakeups (workers=%u): %d append+barrier cycles, %llu commit wake-ups, %llu linger arms\n",
		workers, n, (unsigned long long)st.commit_wakeups, (unsigned long long)st.linger_arms);
	/* every cycle signalled before; now only a stall of the test thread
	 * longer than the active window (1 s) could cause one */
	T_CHECK(st.linger_arms < (uint64_t)n / 10);
	/* no barrier: linger seals it, while active ... */
	T_CHECK_EQ(pipe_append(p, ino, off, "tail 1\n", 7), 0);
	off += 7;
	pipe_stats(p, &st);
	T_CHECK_EQ(written_after(p, st.sealed_seq + 1), st.sealed_seq + 1);
	/* ... and after the commit thread went idle (sleeps until signalled) */
	usleep(1300 * 1000);
	T_CHECK_EQ(pipe_append(p, ino, off, "tail 2\n", 7), 0);
	off += 7;
	pipe_stats(p, &st);
	T_CHECK_EQ(written_after(p, st.sealed_seq + 1), st.sealed_seq + 1);
	T_CHECK_EQ(pipe_stop(p), 0);
	{
		struct store_file_info fi;
		T_CHECK_EQ(store_file_info(s, ino, &fi), 0);
		T_CHECK_EQ(fi.raw_bytes, off);
	}
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
}

/* ---------------------------------------------------------------- */
/* pipe_seal: the open batch is sealed and logged with nobody waiting   */
/* (fs/ops.c calls it after the kernel's writeback of a closing file, */
/* so the flush that follows finds its batch on its way); with linger  */
/* set far away, nothing else could seal it                            */

static void test_seal(unsigned workers)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct pipe_stats st, st2;
	uint64_t ino;

	setup(&v, &s, &ino, &o, workers);
	o.linger_us = 1000000; /* 1 s: the seal, not linger, must log it */
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	T_CHECK_EQ(mk_file(p, ino, "s"), 0);
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_WRITTEN), 0);
	pipe_stats(p, &st);
	T_CHECK_EQ(pipe_append(p, ino, 0, "sealed line\n", 12), 0);
	pipe_seal(p);
	pipe_stats(p, &st2);
	T_CHECK_EQ(st2.sealed_seq, st.sealed_seq + 1);
	T_CHECK_EQ(written_after(p, st2.sealed_seq), st2.sealed_seq);
	pipe_seal(p); /* nothing open: no empty batch */
	pipe_stats(p, &st);
	T_CHECK_EQ(st.sealed_seq, st2.sealed_seq);
	T_CHECK_EQ(pipe_stop(p), 0);
	{
		struct store_file_info fi;
		T_CHECK_EQ(store_file_info(s, ino, &fi), 0);
		T_CHECK_EQ(fi.raw_bytes, 12);
	}
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
}

/* ---------------------------------------------------------------- */
/* pipe_reclaim: a checkpoint on demand, for a writer short of space;  */
/* store_checkpoint_would_free says when one gives room back           */

static void test_reclaim(unsigned workers)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct store_stats a, b;
	uint64_t ino;
	char name[32];

	setup(&v, &s, &ino, &o, workers);
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	T_CHECK(!store_checkpoint_would_free(s, 256 << 10)); /* just opened: nothing to give back */
	/* namespace changes raise the room reserved for the next checkpoint */
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "f%03d", i);
		T_CHECK_EQ(mk_file(p, ino + (uint64_t)i, name), 0);
	}
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_DURABLE), 0);
	T_CHECK_EQ(pipe_reclaim(p), 0); /* applied before it returns: the checkpoint covers them */
	T_CHECK(!store_checkpoint_would_free(s, 1)); /* that checkpoint wrote them */
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "g%03d", i);
		T_CHECK_EQ(mk_file(p, ino + 200 + (uint64_t)i, name), 0);
	}
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_WRITTEN), 0);
	/* the commit thread may still be applying: wait for the apply via a
	 * second reclaim's checkpoint and look at the estimate before it */
	store_stats(s, &a);
	T_CHECK_EQ(pipe_reclaim(p), 0);
	store_stats(s, &b);
	T_CHECK_EQ(b.checkpoints, a.checkpoints + 1);
	T_CHECK(b.space_need <= a.space_need);
	T_CHECK(!store_checkpoint_would_free(s, 1));
	T_CHECK_EQ(pipe_stop(p), 0);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
}

/* ---------------------------------------------------------------- */
/* batch options larger than a WAL entry are clamped: incompressible   */
/* data never builds a batch the log cannot take (it used to fail the  */
/* pipeline: fsync EIO, read-only)                                     */

static void test_batch_fits_wal(unsigned workers)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct store_file_info fi;
	const size_t total = 6u << 20, piece = 48u << 10;
	uint8_t *data = malloc(total), *back = malloc(total);
	uint64_t ino, seed = 99;
	size_t n = 0;

	T_ASSERT(data && back);
	for (size_t i = 0; i + 8 <= total; i += 8) {
		uint64_t x = xs(&seed);
		memcpy(data + i, &x, 8);
	}
	setup(&v, &s, &ino, &o, workers); /* 1 MiB WAL segments */
	T_CHECK(store_wal_max_payload(s) < (1u << 20));
	o.linger_us = 30u * 1000 * 1000;
	o.batch_bytes = 4u << 20; /* four times what one entry holds */
	o.record_bytes = 512u << 10;
	o.batch_records = 4096;
	o.max_inflight_bytes = 256u << 20;
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	T_CHECK_EQ(mk_file(p, ino, "big"), 0);
	for (size_t off = 0; off < total; off += piece)
		T_CHECK_EQ(pipe_append(p, ino, off, data + off, BZ_MIN(piece, total - off)), 0);
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_DURABLE), 0);
	T_CHECK_EQ(pipe_read(p, ino, 0, back, total, &n), 0);
	T_CHECK(n == total && memcmp(back, data, total) == 0);
	T_CHECK_EQ(pipe_stop(p), 0);
	T_CHECK_EQ(store_file_info(s, ino, &fi), 0);
	T_CHECK_EQ(fi.raw_bytes, total);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
	free(data);
	free(back);
}

/* ---------------------------------------------------------------- */
/* pipe_stop drains what no barrier asked for; an append larger than  */
/* the in-flight limit goes through when nothing else is in flight    */

static void test_stop_drains(unsigned workers)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct mfile f[3];
	uint64_t ino, rs = 77 + workers;
	uint8_t *buf = malloc(3 << 20), *rb = malloc(8 << 20);
	size_t got = 0;

	T_ASSERT(buf && rb);
	memset(f, 0, sizeof(f));
	setup(&v, &s, &ino, &o, workers);
	o.linger_us = 30u * 1000 * 1000;     /* only size, count and stop seal */
	o.sync_interval_ms = 60 * 1000;
	o.max_inflight_bytes = 1 << 20;
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	for (int i = 0; i < 3; i++) {
		f[i].ino = ino + (uint64_t)i;
		snprintf(f[i].name, sizeof(f[i].name), "drain%d", i);
		T_CHECK_EQ(mk_file(p, f[i].ino, f[i].name), 0);
	}
	/* one oversized append while nothing else is in flight */
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_WRITTEN), 0);
	fill_text(buf, 3 << 20, &rs);
	T_CHECK_EQ(pipe_append(p, f[0].ino, 0, buf, 3 << 20), 0);
	mfile_put(&f[0], buf, 3 << 20);
	T_CHECK_EQ(pipe_read(p, f[0].ino, 0, rb, 3 << 20, &got), 0);
	T_CHECK_EQ(got, 3 << 20);
	T_CHECK(memcmp(rb, buf, 3 << 20) == 0);
	for (int i = 0; i < 300; i++) {
		struct mfile *m = &f[xs(&rs) % 3];
		size_t n = 1 + xs(&rs) % 5000;
		fill_text(buf, n, &rs);
		T_CHECK_EQ(pipe_append(p, m->ino, m->len, buf, n), 0);
		mfile_put(m, buf, n);
	}
	T_CHECK_EQ(pipe_stop(p), 0); /* no barrier: stop seals, syncs, applies, checkpoints */
	T_CHECK_EQ(store_close(s), 0);
	s = NULL;
	T_ASSERT(open_store(v, &s) == 0);
	for (int i = 0; i < 3; i++) {
		uint64_t size = 0;
		T_CHECK_EQ(store_file_size(s, f[i].ino, &size), 0);
		T_CHECK_EQ(size, f[i].len);
		T_ASSERT(f[i].len <= (8u << 20));
		T_CHECK_EQ(store_read(s, f[i].ino, 0, rb, f[i].len, &got), 0);
		T_CHECK_EQ(got, f[i].len);
		T_CHECK(got == f[i].len && memcmp(rb, f[i].data, got) == 0);
		free(f[i].data);
	}
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
	free(buf);
	free(rb);
}

/* ---------------------------------------------------------------- */
/* PIPE_DURABLE means "in the durable image": on a recording vfs whose  */
/* fdatasync is slow, the power-cut image taken right after the ack    */
/* must hold the bytes (the ack_before_sync mutant fails this)         */

static void test_durable_image(void)
{
	struct vfs *rec = NULL, *v = NULL, *crash = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct vfs_crash c = {.keep = NULL, .torn_op = -1};
	uint8_t buf[3000], rb[3000];
	uint64_t ino, rs = 99;
	size_t got = 0;
	int bad = 0;

	T_ASSERT(vfs_rec_new(&rec) == 0);
	T_ASSERT(vfs_fault_new(rec, &v) == 0);
	T_ASSERT(open_store(v, &s) == 0);
	ino = next_ino(s);
	pipe_opts_default(&o);
	o.workers = 1;
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	T_CHECK_EQ(mk_file(p, ino, "durable"), 0);
	vfs_fault_set_delay(v, VFS_MASK(VFS_OP_FDATASYNC), 30000);
	for (int i = 0; i < 3; i++) {
		fill_text(buf, sizeof(buf), &rs);
		T_CHECK_EQ(pipe_append(p, ino, (uint64_t)i * sizeof(buf), buf, sizeof(buf)), 0);
		T_CHECK_EQ(pipe_barrier_wait(p, PIPE_DURABLE), 0);
		/* power cut now */
		T_ASSERT(vfs_rec_crash(rec, &c, &crash) == 0);
		{
			struct store *cs = NULL;
			int r = open_store(crash, &cs);
			T_CHECK_EQ(r, 0);
			if (r == 0) {
				if (store_read(cs, ino, (uint64_t)i * sizeof(buf), rb, sizeof(rb), &got) != 0 ||
				    got != sizeof(rb) || memcmp(rb, buf, sizeof(buf)) != 0)
					bad++;
				(void)store_close(cs);
			}
		}
		vfs_destroy(crash);
		crash = NULL;
	}
	T_CHECK_EQ(bad, 0);
	vfs_fault_set_delay(v, 0, 0);
	T_CHECK_EQ(pipe_stop(p), 0);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
	vfs_destroy(rec);
}

/* ---------------------------------------------------------------- */
/* group commit                                                       */

#define GC_THREADS 8

struct gthread {
	struct pipeline *p;
	uint64_t ino;
	int iters;
	unsigned pause_us; /* between an fsync's return and the next append */
	size_t len;        /* bytes per append (0: 4096) */
	int errs;
};

static void *gc_writer(void *arg)
{
	struct gthread *g = arg;
	uint8_t buf[4096];
	uint64_t rs = g->ino * 31 + 7;

	size_t len = g->len ? g->len : sizeof(buf);

	for (int i = 0; i < g->iters; i++) {
		fill_text(buf, len, &rs);
		if (pipe_append(g->p, g->ino, (uint64_t)i * len, buf, len) != 0 ||
		    pipe_barrier_wait(g->p, PIPE_DURABLE) != 0)
			g->errs++;
		if (g->pause_us)
			usleep(g->pause_us);
	}
	return NULL;
}

static void test_group_commit(void)
{
	struct vfs *mem = NULL, *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct gthread g[GC_THREADS];
	pthread_t tid[GC_THREADS];
	struct pipe_stats st;
	uint64_t ino, syncs0, syncs1;
	int iters = 25;

	T_ASSERT(vfs_mem_new(&mem) == 0);
	T_ASSERT(vfs_fault_new(mem, &v) == 0);
	T_ASSERT(open_store(v, &s) == 0);
	ino = next_ino(s);
	pipe_opts_default(&o);
	o.workers = 2;
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	for (int i = 0; i < GC_THREADS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "g%d", i);
		g[i] = (struct gthread){.p = p, .ino = ino + (uint64_t)i, .iters = iters};
		T_CHECK_EQ(mk_file(p, g[i].ino, name), 0);
	}
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_DURABLE), 0);
	/* a disk whose fdatasync takes 2 ms, so waiters pile up behind it */
	vfs_fault_set_delay(v, VFS_MASK(VFS_OP_FDATASYNC), 2000);
	syncs0 = vfs_count(v, VFS_OP_FDATASYNC);
	for (int i = 0; i < GC_THREADS; i++)
		T_ASSERT(pthread_create(&tid[i], NULL, gc_writer, &g[i]) == 0);
	for (int i = 0; i < GC_THREADS; i++)
		pthread_join(tid[i], NULL);
	syncs1 = vfs_count(v, VFS_OP_FDATASYNC);
	pipe_stats(p, &st);
	for (int i = 0; i < GC_THREADS; i++)
		T_CHECK_EQ(g[i].errs, 0);
	fprintf(stderr, "group commit: %d durable waiters released by %llu fdatasyncs (group max %llu)\n",
		GC_THREADS * iters, (unsigned long long)(syncs1 - syncs0), (unsigned long long)st.group_size.max);
	T_CHECK(syncs1 - syncs0 < (uint64_t)(GC_THREADS * iters));
	T_CHECK(st.group_size.max >= 2);
	vfs_fault_set_delay(v, 0, 0);
	T_CHECK_EQ(pipe_stop(p), 0);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
	vfs_destroy(mem);
}

/* Group hold: 8 writers with a slow disk (200 ms fdatasyncs), each taking
 * a little while (0.3 ms, like a FUSE reply, the next write and the next
 * fsync) before it is back with its next fsync. An fdatasync that starts as
 * soon as the first released writer is back catches only it; the others
 * wait for the next one (groups of 1, 7, 1, 7...: ~2 fdatasyncs per round).
 * Holding the next fdatasync until the last group is back makes it 1 per
 * round (+2: the first round has no group to wait for). Small appends, so
 * that no checkpoint (which syncs whatever is waiting) comes in between. The hold is
 * half the fdatasync time at most (100 ms here: group_hold_us raised from
 * its 2 ms default), far more than a writer needs even on a busy machine,
 * so the count does not depend on timing. */
static void test_group_hold(void)
{
	struct vfs *mem = NULL, *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct gthread g[GC_THREADS];
	pthread_t tid[GC_THREADS];
	uint64_t ino, syncs0, syncs1;
	int iters = 12;

	T_ASSERT(vfs_mem_new(&mem) == 0);
	T_ASSERT(vfs_fault_new(mem, &v) == 0);
	T_ASSERT(open_store(v, &s) == 0);
	ino = next_ino(s);
	pipe_opts_default(&o);
	o.workers = 2;
	o.group_hold_us = 1000000;
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	for (int i = 0; i < GC_THREADS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "h%d", i);
		g[i] = (struct gthread){.p = p, .ino = ino + (uint64_t)i, .iters = iters, .pause_us = 300, .len = 128};
		T_CHECK_EQ(mk_file(p, g[i].ino, name), 0);
	}
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_DURABLE), 0);
	vfs_fault_set_delay(v, VFS_MASK(VFS_OP_FDATASYNC), 200000);
	syncs0 = vfs_count(v, VFS_OP_FDATASYNC);
	for (int i = 0; i < GC_THREADS; i++)
		T_ASSERT(pthread_create(&tid[i], NULL, gc_writer, &g[i]) == 0);
	for (int i = 0; i < GC_THREADS; i++)
		pthread_join(tid[i], NULL);
	syncs1 = vfs_count(v, VFS_OP_FDATASYNC);
	for (int i = 0; i < GC_THREADS; i++)
		T_CHECK_EQ(g[i].errs, 0);
	fprintf(stderr, "group hold: %d writers x %d rounds: %llu fdatasyncs\n", GC_THREADS, iters,
		(unsigned long long)(syncs1 - syncs0));
	T_CHECK(syncs1 - syncs0 <= (uint64_t)iters + 2);
	vfs_fault_set_delay(v, 0, 0);
	T_CHECK_EQ(pipe_stop(p), 0);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
	vfs_destroy(mem);
}

/* ---------------------------------------------------------------- */
/* backpressure                                                       */

struct bthread {
	struct pipeline *p;
	uint64_t ino;
	uint64_t bytes;
	int errs;
};

static void *bp_writer(void *arg)
{
	struct bthread *b = arg;
	size_t chunk = 64 << 10;
	uint8_t *buf = malloc(chunk);
	uint64_t rs = b->ino;

	T_ASSERT(buf);
	fill_text(buf, chunk, &rs);
	for (uint64_t off = 0; off < b->bytes; off += chunk) {
		memcpy(buf, &off, sizeof(off)); /* every chunk a little different */
		if (pipe_append(b->p, b->ino, off, buf, chunk) != 0) {
			b->errs++;
			break;
		}
	}
	free(buf);
	return NULL;
}

static void test_backpressure(void)
{
	struct vfs *mem = NULL, *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct bthread b[2];
	pthread_t tid[2];
	struct pipe_stats st;
	const char *env = getenv("PIPE_TEST_BP_MB");
	uint64_t mb = env ? strtoull(env, NULL, 10) : SANITIZED ? 128 : 1024;
	uint64_t ino;

	if (mb < 4)
		mb = 4;
	T_ASSERT(vfs_mem_new(&mem) == 0);
	T_ASSERT(vfs_fault_new(mem, &v) == 0);
	T_ASSERT(open_store(v, &s) == 0);
	ino = next_ino(s);
	pipe_opts_default(&o);
	o.workers = 2;
	o.max_inflight_bytes = 8 << 20;
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	for (int i = 0; i < 2; i++) {
		char name[16];
		snprintf(name, sizeof(name), "bp%d", i);
		b[i] = (struct bthread){.p = p, .ino = ino + (uint64_t)i, .bytes = (mb << 20) / 2};
		T_CHECK_EQ(mk_file(p, b[i].ino, name), 0);
	}
	/* a slow disk: every write and sync sleeps */
	vfs_fault_set_delay(v, VFS_MASK(VFS_OP_PWRITE) | VFS_MASK(VFS_OP_FDATASYNC), 100);
	for (int i = 0; i < 2; i++)
		T_ASSERT(pthread_create(&tid[i], NULL, bp_writer, &b[i]) == 0);
	for (int i = 0; i < 2; i++)
		pthread_join(tid[i], NULL);
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_DURABLE), 0);
	pipe_stats(p, &st);
	fprintf(stderr, "backpressure: %llu MiB, inflight_max %llu (limit %zu), writer_blocked %llu, stored %llu of %llu\n",
		(unsigned long long)mb, (unsigned long long)st.inflight_max, o.max_inflight_bytes,
		(unsigned long long)st.writer_blocked, (unsigned long long)st.bytes_stored,
		(unsigned long long)st.bytes_in);
	T_CHECK(st.inflight_max <= o.max_inflight_bytes + o.record_bytes);
	T_CHECK(st.writer_blocked > 0);
	T_CHECK(st.bytes_in >= (mb << 20));
	vfs_fault_set_delay(v, 0, 0);
	T_CHECK_EQ(pipe_stop(p), 0);
	/* compressible data got compressed: in the store, chunk by chunk.
	 * (The WAL's bytes say nothing: a record the batch sealed short of
	 * half a chunk is logged raw, pipeline.c gather_below, and how many
	 * are depends on the timing.) */
	struct store_stats ss;
	store_stats(s, &ss);
	T_CHECK(ss.logical_bytes >= (mb << 20));
	T_CHECK(ss.stored_bytes * 4 < ss.logical_bytes);
	for (int i = 0; i < 2; i++) {
		uint64_t size = 0;
		uint8_t rb[64];
		size_t got = 0;
		uint64_t off = b[i].bytes - (64 << 10);
		T_CHECK_EQ(b[i].errs, 0);
		T_CHECK_EQ(store_file_size(s, b[i].ino, &size), 0);
		T_CHECK_EQ(size, b[i].bytes);
		T_CHECK_EQ(store_read(s, b[i].ino, off, rb, sizeof(rb), &got), 0);
		T_CHECK_EQ(got, sizeof(rb));
		T_CHECK(memcmp(rb, &off, sizeof(off)) == 0);
	}
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
	vfs_destroy(mem);
}

/* ---------------------------------------------------------------- */
/* failure                                                            */

struct fthread {
	struct pipeline *p;
	uint64_t ino;
	uint64_t off;
	int append_r, barrier_r;
};

static void *fail_writer(void *arg)
{
	struct fthread *f = arg;
	uint8_t buf[4096];

	memset(buf, 'x', sizeof(buf));
	if (f->off != UINT64_MAX)
		f->append_r = pipe_append(f->p, f->ino, f->off, buf, sizeof(buf));
	f->barrier_r = pipe_barrier_wait(f->p, PIPE_DURABLE);
	return NULL;
}

static void test_failure(unsigned op_mask, const char *what)
{
	struct vfs *mem = NULL, *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct fthread f[4];
	pthread_t tid[4];
	uint8_t pre[10000], rb[10000];
	uint64_t ino, rs = 5;
	size_t got = 0;
	struct vfs_fault_spec spec = {.fail_at = 1, .mode = VFS_FAULT_EIO, .persistent = true, .op_mask = op_mask};

	T_ASSERT(vfs_mem_new(&mem) == 0);
	T_ASSERT(vfs_fault_new(mem, &v) == 0);
	T_ASSERT(open_store(v, &s) == 0);
	ino = next_ino(s);
	pipe_opts_default(&o);
	o.workers = 2;
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	T_CHECK_EQ(mk_file(p, ino, "fail"), 0);
	fill_text(pre, sizeof(pre), &rs);
	T_CHECK_EQ(pipe_append(p, ino, 0, pre, sizeof(pre)), 0);
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_DURABLE), 0); /* acknowledged: must survive */

	vfs_fault_arm(v, &spec);
	for (int i = 0; i < 4; i++) {
		f[i] = (struct fthread){.p = p, .ino = ino, .off = sizeof(pre) + (uint64_t)i * 4096};
	}
	/* one file, so appends must be serialized: append all, then wait in parallel */
	for (int i = 0; i < 4; i++) {
		uint8_t buf[4096];
		memset(buf, 'y', sizeof(buf));
		T_CHECK_EQ(pipe_append(p, ino, f[i].off, buf, sizeof(buf)), 0);
	}
	for (int i = 0; i < 4; i++) {
		f[i].off = UINT64_MAX; /* the writer threads only wait */
		T_ASSERT(pthread_create(&tid[i], NULL, fail_writer, &f[i]) == 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(tid[i], NULL);
	for (int i = 0; i < 4; i++)
		T_CHECK_EQ(f[i].barrier_r, -EIO);
	T_CHECK(vfs_fault_injected(v) >= 1);
	/* sticky: writes refused, barriers fail at once, reads still work */
	T_CHECK_EQ(pipe_append(p, ino, 1ull << 41, "z", 1), -EROFS);
	T_CHECK_EQ(mk_file(p, ino + 1, "later"), -EROFS);
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_WRITTEN), -EIO);
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_DURABLE), -EIO);
	T_CHECK_EQ(pipe_read(p, ino, 0, rb, sizeof(rb), &got), 0);
	T_CHECK_EQ(got, sizeof(rb));
	T_CHECK(memcmp(rb, pre, sizeof(pre)) == 0);
	{
		struct pipe_stats st;
		pipe_stats(p, &st);
		T_CHECK(st.error < 0);
		T_CHECK(st.errors >= 1);
	}
	T_CHECK(pipe_stop(p) < 0);
	(void)store_close(s);
	vfs_destroy(v);

	/* what was acknowledged durable before the failure is still there */
	s = NULL;
	T_ASSERT(open_store(mem, &s) == 0);
	T_CHECK_EQ(store_read(s, ino, 0, rb, sizeof(rb), &got), 0);
	T_CHECK_EQ(got, sizeof(rb));
	T_CHECK(memcmp(rb, pre, sizeof(pre)) == 0);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(mem);
	fprintf(stderr, "failure (%s): waiters EIO, appends EROFS ok\n", what);
}


/* ---------------------------------------------------------------- */
/* holes: pipe_hole appends a record that stores nothing; reads see   */
/* zeros there while it is pending and once it is applied             */

static void test_holes(unsigned workers)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	static uint8_t rb[70000];
	size_t got = 0;
	uint64_t ino;
	const uint64_t big = 8ull << 40;

	setup(&v, &s, &ino, &o, workers);
	o.linger_us = 30u * 1000 * 1000; /* nothing seals by itself */
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	T_CHECK_EQ(mk_file(p, ino, "sparse"), 0);
	T_CHECK_EQ(pipe_append(p, ino, 0, "head", 4), 0);
	T_CHECK_EQ(pipe_hole(p, ino, 4, 65536, NULL), 0);
	T_CHECK_EQ(pipe_append(p, ino, 65540, "mid", 3), 0);
	T_CHECK_EQ(pipe_hole(p, ino, 65543, big, NULL), 0);
	T_CHECK_EQ(pipe_hole(p, ino, 65543 + big, REC_MAX_HOLE + 1, NULL), -EFBIG);
	for (int round = 0; round < 2; round++) {
		/* round 0: all pending; round 1: applied */
		memset(rb, 0xee, sizeof(rb));
		T_CHECK_EQ(pipe_read(p, ino, 0, rb, sizeof(rb), &got), 0);
		T_CHECK_EQ(got, sizeof(rb));
		T_CHECK(memcmp(rb, "head", 4) == 0);
		size_t zeros = 0;
		for (size_t i = 4; i < 65540; i++)
			zeros += rb[i] == 0;
		T_CHECK_EQ(zeros, 65536);
		T_CHECK(memcmp(rb + 65540, "mid", 3) == 0);
		T_CHECK(rb[65543] == 0 && rb[sizeof(rb) - 1] == 0);
		memset(rb, 0xee, 100);
		T_CHECK_EQ(pipe_read(p, ino, 65543 + big - 50, rb, 100, &got), 0);
		T_CHECK_EQ(got, 50);
		T_CHECK(rb[0] == 0 && rb[49] == 0);
		T_CHECK_EQ(pipe_barrier_wait(p, PIPE_DURABLE), 0);
		T_CHECK_EQ(pipe_barrier_wait(p, PIPE_WRITTEN), 0);
	}
	/* appending continues behind the hole */
	T_CHECK_EQ(pipe_append(p, ino, 65543 + big, "tail", 4), 0);
	T_CHECK_EQ(pipe_stop(p), 0);
	uint64_t size = 0;
	T_CHECK_EQ(store_file_size(s, ino, &size), 0);
	T_CHECK(size == 65547 + big);
	T_CHECK_EQ(store_read(s, ino, 65543 + big - 2, rb, 10, &got), 0);
	T_CHECK_EQ(got, 6);
	T_CHECK(memcmp(rb, "\0\0tail", 6) == 0);
	struct store_stats st;
	store_stats(s, &st);
	T_CHECK(st.logical_bytes == 11);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
}

/* ---------------------------------------------------------------- */
/* records the store will gather into an open chunk (shorter than half */
/* the file's chunk_bytes) are logged raw: no zstd pass on a worker or */
/* the commit thread that the apply would undo; full records are still */
/* compressed by the workers and stored as they come; the store then   */
/* compresses the gathered chunk, so nothing is lost on disk.          */

static void test_small_records_logged_raw(void)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct pipe_stats st0, st1, st2;
	struct store_file_info fi;
	uint64_t ino, rs = 7;
	size_t small = 40 << 10, full = 256 << 10;
	uint8_t *b = malloc(full);

	T_ASSERT(b);
	setup(&v, &s, &ino, &o, 1); /* chunk_bytes 256 KiB (the default) */
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	T_CHECK_EQ(mk_file(p, ino, "small"), 0);
	T_CHECK_EQ(mk_file(p, ino + 1, "full"), 0);
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_WRITTEN), 0);
	pipe_stats(p, &st0);
	fill_text(b, small, &rs);
	T_CHECK_EQ(pipe_append(p, ino, 0, b, small), 0); /* < 128 KiB: gathered */
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_WRITTEN), 0);
	pipe_stats(p, &st1);
	T_CHECK_EQ(st1.bytes_in - st0.bytes_in, small);
	/* logged as is: the payload and one frame header */
	T_CHECK(st1.bytes_stored - st0.bytes_stored >= small && st1.bytes_stored - st0.bytes_stored <= small + 64);
	fill_text(b, full, &rs);
	T_CHECK_EQ(pipe_append_level(p, ino + 1, 0, b, full, PIPE_LEVEL_DEFAULT, 0, NULL), 0); /* one full record */
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_WRITTEN), 0);
	pipe_stats(p, &st2);
	T_CHECK_EQ(st2.bytes_in - st1.bytes_in, full);
	T_CHECK(st2.bytes_stored - st1.bytes_stored < full / 2); /* compressed by the worker */
	T_CHECK_EQ(pipe_stop(p), 0);
	/* the store compressed the small file's open chunk when it wrote its tail */
	T_CHECK_EQ(store_checkpoint(s), 0);
	T_CHECK_EQ(store_file_info(s, ino, &fi), 0);
	T_CHECK_EQ(fi.raw_bytes, small);
	T_CHECK_EQ(fi.size, small);
	T_CHECK(fi.stored_bytes < small / 2);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
	free(b);
}

/* A batch's time is the coarse clock when its first record came, and data
 * joins the open batch only while the clock still shows it: the time
 * pipe_append_level reports is the one the store gives the file (its mtime
 * and ctime after the apply), and never a tick older than the append. The
 * test waits for the clock to move instead of assuming how long a tick is. */
static void test_batch_time(unsigned workers)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts o;
	struct pipe_stats st0, st1;
	struct ns *ns = NULL;
	struct ns_attr a;
	uint64_t ino;
	int64_t t1 = 0, t2 = 0, t3 = 0, before;

	setup(&v, &s, &ino, &o, workers);
	o.linger_us = 10000000; /* 10 s: only the clock, a barrier or the stop seal */
	T_ASSERT(pipe_start(s, &o, &p) == 0);
	T_CHECK_EQ(mk_file(p, ino, "t"), 0);
	T_CHECK_EQ(mk_file(p, ino + 1, "u"), 0);
	T_CHECK_EQ(pipe_barrier_wait(p, PIPE_WRITTEN), 0);

	before = bz_wall_coarse_ns();
	T_CHECK_EQ(pipe_append_level(p, ino, 0, "one\n", 4, PIPE_LEVEL_DEFAULT, 0, &t1), 0);
	T_CHECK(t1 >= before && t1 <= bz_wall_coarse_ns());
	pipe_stats(p, &st0);
	while (bz_wall_coarse_ns() == t1) /* the next tick */
		(void)usleep(200);
	T_CHECK_EQ(pipe_append_level(p, ino + 1, 0, "two\n", 4, PIPE_LEVEL_DEFAULT, 0, &t2), 0);
	pipe_stats(p, &st1);
	T_CHECK(t2 > t1);
	T_CHECK_EQ(st1.sealed_seq, st0.sealed_seq + 1); /* the first batch was sealed before it */
	T_CHECK_EQ(pipe_hole(p, ino, 4, 100, &t3), 0);
	T_CHECK(t3 >= t2);
	T_CHECK_EQ(pipe_stop(p), 0); /* drains and applies */

	T_ASSERT(store_ns_clone(s, &ns) == 0);
	T_CHECK_EQ(ns_getattr(ns, ino, &a), 0);
	T_CHECK_EQ(a.mtime_ns, t3);
	T_CHECK_EQ(a.ctime_ns, t3);
	T_CHECK_EQ(a.size, 104u);
	T_CHECK_EQ(ns_getattr(ns, ino + 1, &a), 0);
	T_CHECK_EQ(a.mtime_ns, t2);
	ns_free(ns);
	T_CHECK_EQ(store_close(s), 0);
	vfs_destroy(v);
}

static void test_failure_sync(void) { test_failure(VFS_MASK(VFS_OP_FDATASYNC), "fdatasync"); }
static void test_failure_write(void) { test_failure(VFS_MASK(VFS_OP_PWRITE), "WAL write"); }

/* The tests in the order they run: `once` runs once, `each` once per
 * worker count. PIPE_TEST_ONLY=NAMES runs those whose name NAMES contains
 * (e.g. "seal,time"). */
static const struct pipe_test {
	const char *name;
	void (*once)(void);
	void (*each)(unsigned workers);
	unsigned n, workers[4];
} tests[] = {
	{"ryw", test_read_your_writes, NULL, 0, {0}},
	{"holes", NULL, test_holes, 2, {0, 2}},
	{"model", NULL, test_model, 4, {0, 1, 2, 4}},
	{"coalesce", test_coalesce, NULL, 0, {0}},
	{"raw", test_small_records_logged_raw, NULL, 0, {0}},
	{"wake", NULL, test_wakeups, 2, {0, 2}},
	{"seal", NULL, test_seal, 2, {0, 2}},
	{"reclaim", NULL, test_reclaim, 2, {0, 2}},
	{"drain", NULL, test_stop_drains, 2, {0, 2}},
	{"durable", test_durable_image, NULL, 0, {0}},
	{"group", test_group_commit, NULL, 0, {0}},
	{"hold", test_group_hold, NULL, 0, {0}},
	{"fail", test_failure_sync, NULL, 0, {0}},
	{"fail", test_failure_write, NULL, 0, {0}},
	{"bp", test_backpressure, NULL, 0, {0}},
	{"fit", NULL, test_batch_fits_wal, 2, {0, 2}},
	{"time", NULL, test_batch_time, 2, {0, 2}},
};

int main(void)
{
	const char *only = getenv("PIPE_TEST_ONLY");

	for (size_t i = 0; i < BZ_ARRAY_SIZE(tests); i++) {
		const struct pipe_test *t = &tests[i];

		if (only && !strstr(only, t->name))
			continue;
		if (t->once)
			t->once();
		for (unsigned k = 0; k < t->n; k++)
			t->each(t->workers[k]);
	}
	T_DONE();
}
