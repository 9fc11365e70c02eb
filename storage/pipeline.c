/* pipeline.c — the batcher, the worker pool and the ONE commit thread:
 * "parallel at the edges, serial at the core". This comment is the map of
 * the pipeline; each file says what it owns.
 *
 * Files
 *   pipeline_int.h  the private structures (prec, pfile, pbatch, waiter,
 *                   struct pipeline and what guards each field) and the
 *                   pi_* functions the files share.
 *   pipeline.c      (this file) options, start/stop, the per-file table
 *                   and pending lists, the open batch and sealing, handing
 *                   sealed batches to the workers, the writers' entry points
 *                   (pipe_append, pipe_hole, pipe_nsop) with their in-flight
 *                   admission, and pipe_read.
 *   pipe_commit.c   the commit thread: reorder, WAL append, group commit,
 *                   apply, checkpoint, the sticky failure.
 *   pipe_wait.c     barriers: the waiter lists, pipe_barrier[_wait], firing
 *                   waiters as the commit thread advances.
 *   pipe_stats.c    pipe_stats and pipe_stats_json.
 *
 * Data path
 *   pipe_append copies the caller's bytes into the file's open record
 *   (consecutive appends to one file coalesce up to record_bytes; a record is
 *   a contiguous run of the file). Records enter the open batch in
 *   submission order. A namespace op (pipe_nsop) becomes a REC_NS record and
 *   closes every open record, so data never moves across a namespace change.
 *   The open batch is sealed when it holds batch_bytes raw bytes or
 *   batch_records records, when a barrier needs it, when a writer waits for
 *   room, or linger_us after its first record (the commit thread's timer).
 *   Sealing assigns seq 1,2,3... (the global order = the WAL order) and makes
 *   the batch immutable (workers/batch.h). A sealed batch goes to the pool
 *   (job: enc_batch, then push onto the completion list and wake the commit
 *   thread); with workers=0 it goes straight onto the completion list and
 *   the commit thread runs the same enc_batch inline.
 *
 * Commit thread (pipe_commit.c; the only caller of store_wal_append,
 * store_wal_sync, store_apply and store_checkpoint): reorder by seq -> WAL
 * append -> ONE fdatasync per group -> ack -> apply -> checkpoint when
 * needed. A failure there is sticky: every waiter gets -EIO and writers
 * -EROFS from then on.
 *
 * Reads (pipe_read): the applied prefix of a file comes from store_read;
 * every record not yet applied (open record, open batch, sealed, encoding,
 * awaiting commit, appended) stays in the file's pending list with its raw
 * bytes until the commit thread has applied it; only then is it dropped
 * (store first, pending list second), so a reader sees every byte in at
 * least one of the two. When nothing at all is pending (an atomic count)
 * pipe_read is a plain store_read without taking the lock.
 *
 * Threads
 *   writers  (any thread)  pipe_append, pipe_nsop, pipe_barrier, pipe_read
 *   workers  (pool, N)     pipe_job: enc_batch on an immutable sealed batch
 *   commit   (1)           pi_commit_main
 * All are joined in pipe_stop (pool_destroy, pthread_join); none detached.
 *
 * Queues, all bounded: the pool's job queue (pool_add blocks a writer when
 * full); the completion list and the reorder list hold at most the sealed
 * batches, which in-flight bytes bound: a writer blocks (room_cv) while
 * inflight + len > max_inflight_bytes (unless nothing is in flight), and
 * in-flight bytes are released only when a batch is applied and freed.
 *
 * Locks and ownership
 *   p->mu guards the open batch, open_gen, sealed_seq, the per-file table and
 *     pending lists, inflight, the completion list, the waiter lists,
 *     appended_seq/synced_seq, error/failed/stopping. One lock; the pool's
 *     own mutex is only ever taken (by pool_add) with p->mu NOT held, so the
 *     order is simply: never hold p->mu while calling pool_*, store_* or a
 *     callback.
 *   A sealed batch's recs[] and record bytes are immutable: written by the
 *     sealer under p->mu, read by a worker after pool_add (the pool mutex
 *     orders them) => no further barrier. b.out is written by the worker and
 *     read by the commit thread after it took the batch from the completion
 *     list under p->mu => no barrier. Record bytes are also read by
 *     pipe_read under p->mu; they are freed only by the commit thread under
 *     p->mu after the apply.
 *   Fields marked "commit" are touched by the commit thread only (and by
 *     pipe_start/pipe_stop before it starts / after it is joined).
 *   Counters and histograms are relaxed atomics (bz_hist) => any thread.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bufpool.h"
#include "pipeline_int.h"

#define PIPE_POOL_QUEUE 256
/* Batches of at most this many raw bytes are encoded by the commit thread
 * itself instead of a worker (see pi_seal_locked). */
#define PIPE_INLINE_MAX (32u << 10)
/* In-flight bytes charged per appended byte until it is encoded: the raw
 * copy plus a reserve for the encoded one (see pi_charge_encoded). */
#define INFLIGHT_PER_BYTE 2u
#define PREC_MIN_CAP 512

static struct pipe_test_hooks test_hooks;

void pipe_set_test_hooks(const struct pipe_test_hooks *h)
{
	if (h)
		test_hooks = *h;
	else
		memset(&test_hooks, 0, sizeof(test_hooks));
}

void pipe_opts_default(struct pipe_opts *o)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	memset(o, 0, sizeof(*o));
	o->workers = n < 1 ? 1 : (unsigned)BZ_MIN(n, 4);
	o->zstd_level = BZ_ZSTD_LEVEL_DEFAULT;
	o->record_bytes = 256 << 10; /* = the store's default chunk_bytes: full records are stored as chunks */
	o->batch_bytes = 1 << 20;
	o->batch_records = 64;
	o->linger_us = 2000;
	o->sync_interval_ms = 1000;
	/* 32 MiB: streaming 4 GiB peaked at 113 MiB RSS with 64 (in flight,
	 * plus the writeback pages held, half of it, plus the FUSE buffers),
	 * 81-85 MiB with 32 at the same throughput (tools/bench "daemon RSS
	 * streaming", DESIGN §4: <= 64 MiB + cache_mb) */
	o->max_inflight_bytes = 32 << 20;
	o->group_hold_us = 2000;
}

/* ---- records and the per-file table (mu) ---- */

void pi_prec_free(struct prec *r)
{
	if (!r)
		return;
	bp_put(r->data, r->cap);
	free(r);
}

static size_t ftab_slot(const struct pipeline *p, uint64_t ino) REQUIRES(pipe_cap)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 20) & (p->fbuckets - 1);
}

struct pfile *pi_pfile_find(struct pipeline *p, uint64_t ino) REQUIRES(pipe_cap)
{
	struct pfile *f = p->ftab[ftab_slot(p, ino)];

	while (f && f->ino != ino)
		f = f->hnext;
	return f;
}

static int ftab_grow(struct pipeline *p) REQUIRES(pipe_cap)
{
	size_t nb = p->fbuckets * 2;
	struct pfile **t = calloc(nb, sizeof(*t));
	struct pfile **old = p->ftab;
	size_t ob = p->fbuckets;

	if (!t)
		return -ENOMEM;
	p->ftab = t;
	p->fbuckets = nb;
	for (size_t i = 0; i < ob; i++) {
		struct pfile *f = old[i], *n;
		for (; f; f = n) {
			size_t s = ftab_slot(p, f->ino);
			n = f->hnext;
			f->hnext = t[s];
			t[s] = f;
		}
	}
	free(old);
	return 0;
}

static int pfile_get(struct pipeline *p, uint64_t ino, struct pfile **ret_f) REQUIRES(pipe_cap)
{
	struct pfile *f = pi_pfile_find(p, ino);
	size_t s;

	if (f)
		goto out;
	if (p->nfiles >= 2 * p->fbuckets)
		(void)ftab_grow(p); /* a failed grow only makes chains longer */
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->ino = ino;
	s = ftab_slot(p, ino);
	f->hnext = p->ftab[s];
	p->ftab[s] = f;
	p->nfiles++;
out:
	*ret_f = f;
	return 0;
}

void pi_pfile_remove(struct pipeline *p, struct pfile *f) REQUIRES(pipe_cap)
{
	struct pfile **pp = &p->ftab[ftab_slot(p, f->ino)];

	while (*pp && *pp != f)
		pp = &(*pp)->hnext;
	if (ALWAYS(*pp))
		*pp = f->hnext;
	p->nfiles--;
	free(f);
}

/* ---- the open batch (mu) ---- */

void pi_pbatch_free(struct pbatch *pb)
{
	if (!pb)
		return;
	enc_result_free(&pb->b.out);
	free(pb->b.recs);
	free(pb->precs);
	free(pb);
}

/* Makes room for one more record in the open batch (creating it). */
static int ob_reserve(struct pipeline *p) REQUIRES(pipe_cap)
{
	struct pbatch *pb = p->ob;

	if (!pb) {
		pb = calloc(1, sizeof(*pb));
		if (!pb)
			return -ENOMEM;
		pb->b.owner_data = pb;
		pb->p = p;
		p->ob = pb;
	}
	if (pb->nprec == pb->cap) {
		uint32_t nc = pb->cap ? pb->cap * 2 : 16;
		struct prec **np = realloc(pb->precs, nc * sizeof(*np));
		struct batch_rec *nr;

		if (!np)
			return -ENOMEM;
		pb->precs = np;
		nr = realloc(pb->b.recs, nc * sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		pb->b.recs = nr;
		pb->cap = nc;
	}
	return 0;
}

/* The clock a batch's time comes from (test hook, or the coarse clock). */
static int64_t batch_clock(const struct pipeline *p)
{
	return p->hooks.wall_ns ? p->hooks.wall_ns(p->hooks.arg) : bz_wall_coarse_ns();
}

static void ob_add(struct pipeline *p, struct prec *r) REQUIRES(pipe_cap)
{
	struct pbatch *pb = p->ob;

	if (pb->nprec == 0) {
		pb->b.first_ns = bz_now_ns();
		/* The batch's time: every file appended in it gets it as mtime
		 * and ctime, in the live view (pipe_append_level's *ret_time_ns)
		 * as in the store (the apply), so a remount shows the times stat
		 * showed. */
		pb->b.time_ns = batch_clock(p);
		/* Arm the linger timer -- unless the commit thread wakes by then
		 * anyway (it runs, or its timed sleep ends first): a signal here
		 * costs a context switch per write-then-fsync or per file of cp. */
		if (pb->b.first_ns + p->o.linger_us * 1000ull < p->c_wake_ns) {
			pi_add(&p->n_arms, 1);
			pthread_cond_signal(&p->commit_cv);
		}
	}
	pb->precs[pb->nprec++] = r;
	pb->b.raw_bytes += r->len;
	if (r->type == REC_DATA)
		pb->ndata++;
}

static void list_append(struct batch **head, struct batch *b)
{
	while (*head)
		head = &(*head)->next;
	b->next = NULL;
	*head = b;
}

/* Seals the open batch (if any): seq, immutable recs[], then either onto
 * *disp (to be given to the pool once mu is dropped) or, with workers=0,
 * straight onto the completion list. */
void pi_seal_locked(struct pipeline *p, struct batch **disp) REQUIRES(pipe_cap)
{
	struct pbatch *pb = p->ob;

	if (!pb || pb->nprec == 0)
		return;
	p->ob = NULL;
	p->open_gen++; /* every open record is closed */
	pb->b.seq = ++p->sealed_seq;
	pb->b.nrec = pb->nprec;
	for (uint32_t i = 0; i < pb->nprec; i++) {
		const struct prec *r = pb->precs[i];
		pb->b.recs[i] = (struct batch_rec){
			.type = r->type, .ino = r->ino, .off = r->off, .len = r->len, .data = r->data, .hole = r->hole,
			.level = r->level == PIPE_LEVEL_DEFAULT ? 0 : r->level,
			.own_level = r->type == REC_DATA && !r->hole && r->level != PIPE_LEVEL_DEFAULT,
			.raw = r->type == REC_DATA && !r->hole && r->len < r->gather};
	}
	pb->b.sealed_ns = bz_now_ns();
	bz_hist_add(&p->hist[PIPE_ST_BATCH_WAIT], pi_since(pb->b.first_ns, pb->b.sealed_ns));
	if (p->pool && pb->b.raw_bytes > PIPE_INLINE_MAX) {
		list_append(disp, &pb->b);
	} else {
		/* workers=0, or a small batch (typically sealed by an fsync or by
		 * linger): the commit thread encodes it itself — the same code —
		 * because two thread hops cost more than compressing it. */
		pb->b.next = p->done;
		p->done = &pb->b;
		p->ndone++;
		pthread_cond_signal(&p->commit_cv);
	}
}

static bool ob_full(const struct pipeline *p) REQUIRES(pipe_cap)
{
	return p->ob && (p->ob->b.raw_bytes >= p->o.batch_bytes || p->ob->nprec >= p->o.batch_records);
}

/* ---- workers ---- */

void pi_encode_one(struct pipeline *p, struct pbatch *pb, struct enc_ctx *ctx)
{
	pb->start_ns = bz_now_ns();
	bz_hist_add(&p->hist[PIPE_ST_QUEUE], pi_since(pb->b.sealed_ns, pb->start_ns));
	if (p->hooks.before_encode)
		p->hooks.before_encode(p->hooks.arg, pb->b.seq);
	if (ctx)
		(void)enc_batch(ctx, &pb->b, &pb->b.out); /* the error is in out.err */
	else
		pb->b.out.err = -EINVAL;
	if (p->hooks.after_encode)
		p->hooks.after_encode(p->hooks.arg, pb->b.seq);
	bz_hist_add(&p->hist[PIPE_ST_ENCODE], pb->b.out.encode_ns);
	bz_hist_add(&p->hist[PIPE_ST_COMPRESS], pb->b.out.compress_ns);
	bz_hist_add(&p->hist[PIPE_ST_HASH], pb->b.out.hash_ns);
	pb->encoded = true;
	pb->done_ns = bz_now_ns();
}

/* The encoded copy of a batch lives until the batch is applied: it counts
 * in the in-flight bytes too, so max_inflight_bytes bounds the pipeline's
 * memory (raw + encoded), not only the raw half. A writer is admitted for
 * INFLIGHT_PER_BYTE x its bytes (raw + a worst-case reserve for the encoded
 * copy); encoding replaces the reserve with the real size. */
void pi_charge_encoded(struct pipeline *p, struct pbatch *pb) REQUIRES(pipe_cap)
{
	/* Writers reserved raw_bytes for the encoded copy when they were
	 * admitted (INFLIGHT_PER_BYTE); now the real size replaces it. */
	pb->charged = pb->b.out.err ? 0 : pb->b.out.len;
	p->inflight += pb->charged;
	p->inflight -= BZ_MIN(p->inflight, pb->b.raw_bytes);
	p->inflight_max = BZ_MAX(p->inflight_max, p->inflight);
}

static void pipe_job(void *arg, void *ctx)
{
	struct pbatch *pb = arg;
	struct pipeline *p = pb->p;

	pi_encode_one(p, pb, ctx);
	bz_cap_lock(&p->mu, &pipe_cap);
	pi_charge_encoded(p, pb);
	pb->b.next = p->done;
	p->done = &pb->b;
	p->ndone++;
	pthread_cond_signal(&p->commit_cv);
	bz_cap_unlock(&p->mu, &pipe_cap);
}

/* Gives sealed batches to the pool. Called with mu NOT held. */
void pi_dispatch(struct pipeline *p, struct batch *list)
{
	while (list) {
		struct batch *b = list;
		struct pbatch *pb = b->owner_data;
		list = b->next;
		b->next = NULL;
		if (NEVER(pool_add(p->pool, pipe_job, pb) < 0))
			pipe_job(pb, NULL); /* fails the batch (no ctx): the pipeline fails */
	}
}

static void *pipe_enc_new(void *arg)
{
	const struct pipeline *p = arg;
	struct enc_ctx *c = NULL;

	return enc_ctx_new(p->o.zstd_level, &c) < 0 ? NULL : c;
}

static void pipe_enc_free(void *c) { enc_ctx_free(c); }

/* ---- public API ---- */

static void pipe_free(struct pipeline *p) NO_TSA
{
	if (!p)
		return;
	if (p->ob) {
		for (uint32_t i = 0; i < p->ob->nprec; i++)
			if (p->ob->precs[i]->type != REC_DATA)
				pi_prec_free(p->ob->precs[i]);
		pi_pbatch_free(p->ob);
	}
	for (size_t i = 0; p->ftab && i < p->fbuckets; i++) {
		struct pfile *f = p->ftab[i], *fn;
		for (; f; f = fn) {
			struct prec *r = f->head, *rn;
			for (; r; r = rn) {
				rn = r->fnext;
				pi_prec_free(r);
			}
			fn = f->hnext;
			free(f);
		}
	}
	free(p->ftab);
	enc_ctx_free(p->ienc);
	pthread_cond_destroy(&p->commit_cv);
	pthread_cond_destroy(&p->room_cv);
	bz_mutex_destroy(&p->mu);
	free(p);
}

/* A sealed batch must fit one WAL entry, or its append fails (-EFBIG) and
 * the pipeline with it. A batch is sealed as soon as it holds batch_bytes
 * raw bytes or batch_records records, so at most it holds batch_bytes - 1
 * raw bytes plus the one add that crossed the line (a data record of at
 * most record_bytes, or a namespace record of at most NSOP_MAX_LEN), and
 * each of its records is framed as at most REC_HDR_MAX + raw bytes (the
 * encoder stores a record raw unless compression shrinks it). Options that
 * could build a larger batch are clamped here, with a notice. */
static void fit_wal_entry(struct pipe_opts *o, uint64_t max_payload)
{
	const struct pipe_opts was = *o;
	uint64_t largest, hdrs;

	if (max_payload < 4 * (uint64_t)NSOP_MAX_LEN)
		return; /* no usable log: the store refuses the appends itself */
	if ((uint64_t)o->batch_records * REC_HDR_MAX > max_payload / 4)
		o->batch_records = (unsigned)BZ_MAX(max_payload / 4 / REC_HDR_MAX, (uint64_t)1);
	if (o->record_bytes > max_payload / 4)
		o->record_bytes = (size_t)(max_payload / 4);
	largest = BZ_MAX((uint64_t)o->record_bytes, (uint64_t)NSOP_MAX_LEN);
	hdrs = (uint64_t)o->batch_records * REC_HDR_MAX;
	if ((uint64_t)o->batch_bytes - 1 + largest + hdrs > max_payload)
		o->batch_bytes = (size_t)(max_payload + 1 - largest - hdrs);
	if (o->batch_bytes != was.batch_bytes || o->record_bytes != was.record_bytes ||
	    o->batch_records != was.batch_records)
		bz_warn("pipeline: a batch must fit one WAL entry (%llu bytes with headers): batch_bytes %zu -> %zu, "
			"record_bytes %zu -> %zu, batch_records %u -> %u",
			(unsigned long long)max_payload, was.batch_bytes, o->batch_bytes, was.record_bytes,
			o->record_bytes, was.batch_records, o->batch_records);
}

int pipe_start(struct store *s, const struct pipe_opts *o, struct pipeline **ret_pipe) NO_TSA
{
	struct pipeline *p = NULL;
	int r = 0;

	if (!s || !o || o->record_bytes < 1 || o->record_bytes > REC_MAX_RAW || o->batch_bytes < 1 ||
	    o->batch_records < 1 || o->max_inflight_bytes < 1 || o->workers > 1024)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->s = s;
	p->read_only = store_read_only(s);
	p->o = *o;
	fit_wal_entry(&p->o, store_wal_max_payload(s));
	p->hooks = test_hooks;
	p->next_seq = 1;
	bz_mutex_init(&p->mu);
	bz_cond_init(&p->commit_cv);
	bz_cond_init(&p->room_cv);
	p->fbuckets = 64;
	p->ftab = calloc(p->fbuckets, sizeof(*p->ftab));
	if (!p->ftab) {
		r = -ENOMEM;
		goto fail;
	}
	/* validates zstd_level (-EINVAL) before any thread exists; kept as the
	 * commit thread's encoder with workers=0 */
	r = enc_ctx_new(o->zstd_level, &p->ienc);
	if (r < 0)
		goto fail;
	if (o->workers) {
		struct pool_opts po = {
			.threads = o->workers,
			.queue_cap = PIPE_POOL_QUEUE,
			.ctx_new = pipe_enc_new,
			.ctx_free = pipe_enc_free,
			.ctx_arg = p,
		};
		r = pool_create(&po, &p->pool);
	}
	if (r < 0)
		goto fail;
	r = -pthread_create(&p->commit_tid, NULL, pi_commit_main, p);
	if (r < 0) {
		bz_err("pipeline: cannot start the commit thread: %s", strerror(-r));
		goto fail;
	}
	*ret_pipe = p;
	return 0;
fail:
	pool_destroy(p->pool);
	pipe_free(p);
	return r;
}

int pipe_stop(struct pipeline *p)
{
	struct batch *disp = NULL;
	int r;

	if (!p)
		return 0;
	bz_cap_lock(&p->mu, &pipe_cap);
	p->stopping = true;
	pi_seal_locked(p, &disp);
	pthread_cond_signal(&p->commit_cv);
	pthread_cond_broadcast(&p->room_cv);
	bz_cap_unlock(&p->mu, &pipe_cap);
	if (disp)
		pi_dispatch(p, disp);
	pthread_join(p->commit_tid, NULL);
	pool_destroy(p->pool); /* idle: every batch came back */
	p->pool = NULL;
	bz_cap_lock(&p->mu, &pipe_cap);
	r = p->error;
	bz_cap_unlock(&p->mu, &pipe_cap);
	pipe_free(p);
	return r;
}

/* Waits for in-flight room (sealing the open batch so room can come). */
static int wait_room(struct pipeline *p, size_t len) REQUIRES(pipe_cap)
{
	bool blocked = false;

	for (;;) {
		struct batch *disp = NULL;

		if (p->failed || p->read_only)
			return -EROFS;
		if (p->stopping)
			return -ESHUTDOWN;
		if (p->inflight == 0 || p->inflight + INFLIGHT_PER_BYTE * len <= p->o.max_inflight_bytes)
			return 0;
		if (!blocked) {
			blocked = true;
			pi_add(&p->n_blocked, 1);
		}
		if (p->ob) {
			pi_seal_locked(p, &disp);
			if (disp) {
				bz_cap_unlock(&p->mu, &pipe_cap);
				pi_dispatch(p, disp);
				bz_cap_lock(&p->mu, &pipe_cap);
				continue;
			}
		}
		bz_cap_cond_wait(&p->room_cv, &p->mu, &pipe_cap);
	}
}

/* The store gathers a data record shorter than half its file's chunk_bytes
 * into the file's open chunk and compresses the chunk when it fills or is
 * written as the tail (store_chunk.c); it stores a longer one as it comes.
 * So a record shorter than that is logged raw (batch_rec.raw): compressing
 * it would cost a worker -- or the commit thread, for a small batch -- a
 * zstd pass that the commit thread's apply then undoes. chunk is the file's
 * chunk_bytes (user.blazefs.chunk_bytes), 0 = the store's default: the
 * same threshold the store applies. */
static uint32_t gather_below(const struct pipeline *p, size_t chunk)
{
	return (uint32_t)((chunk ? chunk : store_chunk_bytes(p->s)) / 2);
}

/* Adds up to one record's worth of buf to file f; returns bytes taken. */
static int add_data(struct pipeline *p, struct pfile *f, uint64_t off, const uint8_t *buf, size_t len,
		    int8_t level, size_t chunk, size_t *ret_n) REQUIRES(pipe_cap)
{
	struct prec *o = (f->open && f->open_gen == p->open_gen) ? f->open : NULL;
	size_t n, cut = chunk ? BZ_MIN(chunk, p->o.record_bytes) : p->o.record_bytes;
	int r;

	if (o && o->off + o->len == off && o->len < cut && o->level == level) {
		n = BZ_MIN(len, cut - o->len);
		if (o->len + n > o->cap) {
			size_t nc = BZ_MIN(cut, BZ_MAX((size_t)o->cap * 2, o->len + n));
			uint8_t *d;

			if (nc >= BP_MIN) {
				/* a record this long is a bulk write on its way to
				 * cut bytes: take a pooled buffer of that size now
				 * rather than mapping and faulting in a new one at
				 * each doubling */
				size_t pc = 0;
				d = bp_get(cut, &pc);
				if (!d)
					return -ENOMEM;
				memcpy(d, o->data, o->len);
				bp_put(o->data, o->cap);
				nc = pc;
			} else {
				d = realloc(o->data, nc);
				if (!d)
					return -ENOMEM;
			}
			o->data = d;
			o->cap = (uint32_t)nc;
		}
		memcpy(o->data + o->len, buf, n);
		o->len += (uint32_t)n;
		p->ob->b.raw_bytes += n;
		goto out;
	}
	n = BZ_MIN(len, cut);
	r = ob_reserve(p);
	if (r < 0)
		return r;
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	{
		/* a bulk write's record (>= BP_MIN) comes from the buffer pool:
		 * the commit thread gives it back after the apply */
		size_t cap = 0;
		o->data = bp_get(BZ_MIN(cut, BZ_MAX(n, (size_t)PREC_MIN_CAP)), &cap);
		if (!o->data) {
			free(o);
			return -ENOMEM;
		}
		o->cap = (uint32_t)cap;
	}
	o->type = REC_DATA;
	o->level = level;
	o->gather = gather_below(p, chunk);
	o->ino = f->ino;
	o->off = off;
	o->len = (uint32_t)n;
	memcpy(o->data, buf, n);
	if (f->tail)
		f->tail->fnext = o;
	else
		f->head = o;
	f->tail = o;
	f->open = o;
	f->open_gen = p->open_gen;
	__atomic_fetch_add(&p->pending_recs, 1, __ATOMIC_RELEASE);
	ob_add(p, o);
out:
	*ret_n = n;
	return 0;
}

/* Data joins the open batch only while the coarse clock still shows the
 * batch's time: the batch's time is the mtime of the files appended in it,
 * so it is always the clock's value at the append (what ext4 stamps), never
 * earlier than a namespace change made before it. Once the clock ticked
 * (4 ms at HZ=250; linger_us, 2 ms, usually seals it before), the open
 * batch is sealed first. */
static void seal_stale(struct pipeline *p, struct batch **disp) REQUIRES(pipe_cap)
{
	if (p->ob && p->ob->nprec && batch_clock(p) != p->ob->b.time_ns)
		pi_seal_locked(p, disp);
}

int pipe_append(struct pipeline *p, uint64_t ino, uint64_t off, const void *buf, size_t len)
{
	return pipe_append_level(p, ino, off, buf, len, PIPE_LEVEL_DEFAULT, 0, NULL);
}

int pipe_append_level(struct pipeline *p, uint64_t ino, uint64_t off, const void *buf, size_t len, int level,
		      size_t chunk, int64_t *ret_time_ns)
{
	const uint8_t *src = buf;
	struct batch *disp = NULL;
	size_t done = 0;
	int r;

	if (len == 0)
		return 0;
	if (level != PIPE_LEVEL_DEFAULT && (level < -7 || level > 22))
		return -EINVAL; /* never let a bad level fail a whole batch in the encoder */
	bz_cap_lock(&p->mu, &pipe_cap);
	r = wait_room(p, len);
	if (r < 0)
		goto out;
	seal_stale(p, &disp);
	{
		struct pfile *f = NULL;
		r = pfile_get(p, ino, &f);
		if (r < 0)
			goto out;
		while (done < len) {
			size_t n = 0;
			r = add_data(p, f, off + done, src + done, len - done, (int8_t)level, chunk, &n);
			if (r < 0)
				break;
			if (ret_time_ns)
				*ret_time_ns = p->ob->b.time_ns; /* the batch holding these bytes */
			done += n;
			p->inflight += INFLIGHT_PER_BYTE * n;
			if (ob_full(p))
				pi_seal_locked(p, &disp);
		}
		if (!f->head)
			pi_pfile_remove(p, f);
	}
	p->inflight_max = BZ_MAX(p->inflight_max, p->inflight);
out:
	bz_cap_unlock(&p->mu, &pipe_cap);
	if (disp)
		pi_dispatch(p, disp);
	return r;
}

/* A hole record: one pending record (no bytes) in the file's list, so
 * reads see zeros there until it is applied, and appends continue behind
 * it in a new record. */
int pipe_hole(struct pipeline *p, uint64_t ino, uint64_t off, uint64_t len, int64_t *ret_time_ns)
{
	struct batch *disp = NULL;
	struct pfile *f = NULL;
	struct prec *o = NULL;
	int r;

	if (len == 0)
		return 0;
	if (len > REC_MAX_HOLE)
		return -EFBIG;
	bz_cap_lock(&p->mu, &pipe_cap);
	r = wait_room(p, REC_HDR_MAX);
	if (r == 0) {
		seal_stale(p, &disp);
		r = pfile_get(p, ino, &f);
	}
	if (r == 0)
		r = ob_reserve(p);
	if (r < 0)
		goto out;
	o = calloc(1, sizeof(*o));
	if (!o) {
		r = -ENOMEM;
		goto out;
	}
	o->type = REC_DATA;
	o->ino = ino;
	o->off = off;
	o->hole = len;
	o->level = PIPE_LEVEL_DEFAULT; /* a hole is not compressed */
	if (f->tail)
		f->tail->fnext = o;
	else
		f->head = o;
	f->tail = o;
	f->open = NULL; /* the next append starts a new record behind the hole */
	__atomic_fetch_add(&p->pending_recs, 1, __ATOMIC_RELEASE);
	ob_add(p, o); /* no raw bytes: its encoded frame is charged once encoded */
	if (ret_time_ns)
		*ret_time_ns = p->ob->b.time_ns;
	if (ob_full(p))
		pi_seal_locked(p, &disp);
out:
	if (r < 0 && f && !f->head)
		pi_pfile_remove(p, f);
	bz_cap_unlock(&p->mu, &pipe_cap);
	if (disp)
		pi_dispatch(p, disp);
	return r;
}

int pipe_nsop(struct pipeline *p, const struct ns_op *op)
{
	uint8_t tmp[NSOP_MAX_LEN];
	struct batch *disp = NULL;
	struct prec *rec = NULL;
	int n, r = 0;

	n = nsop_encode(op, tmp, sizeof(tmp));
	if (n < 0)
		return n;
	rec = calloc(1, sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	rec->data = malloc((size_t)n);
	if (!rec->data) {
		r = -ENOMEM;
		goto out_free;
	}
	memcpy(rec->data, tmp, (size_t)n);
	rec->type = REC_NS;
	rec->level = PIPE_LEVEL_DEFAULT;
	rec->len = rec->cap = (uint32_t)n;

	bz_cap_lock(&p->mu, &pipe_cap);
	r = p->failed || p->read_only ? -EROFS : p->stopping ? -ESHUTDOWN : ob_reserve(p);
	if (r < 0) {
		bz_cap_unlock(&p->mu, &pipe_cap);
		goto out_free;
	}
	p->open_gen++; /* data never coalesces across a namespace change */
	ob_add(p, rec);
	p->inflight += INFLIGHT_PER_BYTE * rec->len;
	p->inflight_max = BZ_MAX(p->inflight_max, p->inflight);
	if (ob_full(p))
		pi_seal_locked(p, &disp);
	bz_cap_unlock(&p->mu, &pipe_cap);
	if (disp)
		pi_dispatch(p, disp);
	return 0;
out_free:
	pi_prec_free(rec);
	return r;
}

uint64_t pipe_unapplied_bytes(struct pipeline *p)
{
	uint64_t n;

	/* inflight counts a record's raw bytes twice until its batch is
	 * encoded (INFLIGHT_PER_BYTE), then raw + encoded until applied: half
	 * of it bounds the encoded bytes to come whenever encoded <= raw; an
	 * encoding larger than its input (incompressible data stored raw is
	 * never larger) is covered by the caller's reserve */
	bz_cap_lock(&p->mu, &pipe_cap);
	n = p->inflight;
	bz_cap_unlock(&p->mu, &pipe_cap);
	return n / INFLIGHT_PER_BYTE;
}

void pipe_set_space_short(struct pipeline *p, uint64_t reclaim_min)
{
	bz_cap_lock(&p->mu, &pipe_cap);
	if (reclaim_min && !p->space_short) {
		p->space_poke = true;
		pthread_cond_signal(&p->commit_cv);
	}
	p->space_short = reclaim_min;
	bz_cap_unlock(&p->mu, &pipe_cap);
}

int pipe_reclaim(struct pipeline *p)
{
	uint64_t ticket;
	int r = 0;

	bz_cap_lock(&p->mu, &pipe_cap);
	if (p->failed || p->stopping) {
		r = p->failed ? -EIO : -ESHUTDOWN;
		goto out;
	}
	ticket = ++p->reclaim_want;
	pthread_cond_signal(&p->commit_cv);
	while (p->reclaim_done < ticket && !p->failed && !p->stopping)
		bz_cap_cond_wait(&p->room_cv, &p->mu, &pipe_cap);
	if (p->reclaim_done < ticket)
		r = p->failed ? -EIO : -ESHUTDOWN;
out:
	bz_cap_unlock(&p->mu, &pipe_cap);
	return r;
}

void pipe_seal(struct pipeline *p)
{
	struct batch *disp = NULL;

	bz_cap_lock(&p->mu, &pipe_cap);
	if (!p->failed && !p->stopping)
		pi_seal_locked(p, &disp);
	bz_cap_unlock(&p->mu, &pipe_cap);
	if (disp)
		pi_dispatch(p, disp);
}

int pipe_read(struct pipeline *p, uint64_t ino, uint64_t off, void *buf, size_t len, size_t *ret_n)
{
	uint64_t hi = off + len, pstart = UINT64_MAX, mem_hi = 0;
	uint8_t *dst = buf;
	size_t n = 0, ns = 0;
	int r = 0;

	if (len == 0) {
		*ret_n = 0;
		return 0;
	}
	if (hi < off)
		return -EINVAL;
	if (__atomic_load_n(&p->pending_recs, __ATOMIC_ACQUIRE) != 0) {
		struct pfile *f;

		bz_cap_lock(&p->mu, &pipe_cap);
		f = pi_pfile_find(p, ino);
		if (f && f->head) {
			uint64_t pend = f->tail->off + f->tail->len + f->tail->hole;
			pstart = f->head->off;
			mem_hi = BZ_MIN(hi, pend);
			for (const struct prec *rc = f->head; rc; rc = rc->fnext) {
				uint64_t lo = BZ_MAX(off, rc->off), rhi = BZ_MIN(mem_hi, rc->off + rc->len + rc->hole);
				if (lo < rhi && rc->hole)
					memset(dst + (lo - off), 0, rhi - lo);
				else if (lo < rhi)
					memcpy(dst + (lo - off), rc->data + (lo - rc->off), rhi - lo);
			}
		}
		bz_cap_unlock(&p->mu, &pipe_cap);
	}
	if (off < pstart) {
		/* the applied part: everything below the first pending record */
		size_t want = (size_t)(BZ_MIN(hi, pstart) - off);
		r = store_read(p->s, ino, off, dst, want, &ns);
		if (r == -ENOENT) {
			r = 0;
			ns = 0;
		}
		if (r < 0)
			goto out;
		n = ns;
		if (ns == want && mem_hi > pstart)
			n = (size_t)(mem_hi - off);
	} else {
		n = mem_hi > off ? (size_t)(mem_hi - off) : 0;
	}
	*ret_n = n;
out:
	return r;
}
