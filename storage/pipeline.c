/* pipeline.c — the batcher, the worker pool and the ONE commit thread:
 * "parallel at the edges, serial at the core".
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
 * Commit thread (the only caller of store_wal_append, store_wal_sync,
 * store_apply and store_checkpoint), one loop:
 *   1. take completions into the reorder list (sorted by seq);
 *   2. append every batch whose seq is the next one (if the WAL has no room:
 *      sync, apply, checkpoint first); fire PIPE_WRITTEN waiters;
 *   3. if a PIPE_DURABLE waiter's target is appended, or sync_interval_ms
 *      passed with unsynced data, or we are draining: ONE store_wal_sync for
 *      every appended-unsynced batch (group commit); fire PIPE_DURABLE
 *      waiters (before the apply: the ack does not wait for page work);
 *   4. store_apply every appended batch in seq order, then drop its records
 *      from the per-file pending lists and release its in-flight bytes;
 *   5. store_checkpoint when store_need_checkpoint() (after a sync).
 *   While the commit thread syncs, writers and workers keep forming and
 *   encoding the next group. Callbacks run on the commit thread with no
 *   pipeline lock held; they must not block on the pipeline.
 *
 * Failure: a failed WAL append or sync (or apply, checkpoint, encode) moves
 * the pipeline into a sticky FAILED state: the cause is logged once, every
 * pending and future waiter gets -EIO, pipe_append/pipe_nsop return -EROFS,
 * and the commit thread never touches the store again but keeps receiving
 * (and freeing) batches and answering barriers. A sync is never retried.
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
 *   commit   (1)           commit_main
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../workers/encode.h"
#include "../workers/pool.h"
#include "log.h"
#include "pipeline.h"
#include "record.h"
#include "tsa.h"

BZ_CAP_DECLARE(pipe_cap);    /* p->mu (tsa.h: capability tokens) */
BZ_CAP_DECLARE(pipe_bw_cap); /* a blocking barrier's bw.mu */


#define PIPE_POOL_QUEUE 256
/* Batches of at most this many raw bytes are encoded by the commit thread
 * itself instead of a worker (see seal_locked). */
#define PIPE_INLINE_MAX (32u << 10)
/* While batches keep coming (the last one less than PIPE_TICK_ACTIVE_NS
 * ago), an idle commit thread sleeps at most linger_us instead of until
 * signalled, so the first record of the next batch need not wake it to arm
 * its linger timer (see ob_add). Not with a linger below PIPE_TICK_MIN_US
 * (too many ticks): then that record signals as before. */
#define PIPE_TICK_ACTIVE_NS 1000000000ull
#define PIPE_TICK_MIN_US 200u
/* In-flight bytes charged per appended byte until it is encoded: the raw
 * copy plus a reserve for the encoded one (see charge_encoded). */
#define INFLIGHT_PER_BYTE 2u
#define PREC_MIN_CAP 512

/* A record not yet applied. Data records sit on their file's pending list
 * (offset order) from the append until the commit thread applied them. */
struct prec {
	struct prec *fnext; /* next pending record of the same file (mu) */
	uint8_t type;
	uint64_t ino, off;
	uint32_t len, cap;  /* grows (mu) while the record is open; frozen at seal */
	uint8_t *data;
	uint64_t hole;      /* REC_DATA: a hole of this many zero bytes (len 0, no data) */
	int8_t level;       /* data: zstd level, or PIPE_LEVEL_DEFAULT (immutable) */
};

struct pfile {
	struct pfile *hnext;
	uint64_t ino;
	struct prec *head, *tail; /* pending data records, offset order */
	struct prec *open;        /* the open record, valid iff open_gen == p->open_gen */
	uint64_t open_gen;
};

struct pbatch {
	struct batch b;       /* b.recs built at seal; b.out written by the encoder */
	struct pipeline *p;   /* immutable */
	struct prec **precs;  /* nprec entries, the batch's records in order */
	uint32_t nprec, cap;
	uint32_t ndata;       /* data records among them */
	bool encoded;         /* set by the worker before the completion push */
	uint64_t charged;     /* encoded bytes counted in p->inflight (pipe_cap) */
	uint64_t start_ns, done_ns; /* encode started / finished */
	uint64_t take_ns, wal_ns, apply_ns;
	uint64_t lsn;
};

struct waiter {
	struct waiter *next;
	uint64_t target;
	pipe_cb cb;
	void *arg;
	uint64_t submit_ns;
	int err;
};

struct wlist {
	struct waiter *head, *tail;
	uint32_t n; /* waiters on the list */
};

struct pipeline {
	struct store *s;
	bool read_only;                /* immutable: store_read_only(s) (-o ro): nothing is ever logged */
	struct pipe_opts o;            /* immutable */
	struct pipe_test_hooks hooks;  /* immutable */
	struct pool *pool;             /* NULL with workers=0 */
	pthread_t commit_tid;

	bz_mutex mu;
	pthread_cond_t commit_cv; /* completions, seals, barriers, stop */
	pthread_cond_t room_cv;   /* in-flight room, failure, stop */

	/* batcher */
	struct pbatch *ob GUARDED_BY(pipe_cap); /* open batch, NULL or nprec > 0 */
	uint64_t open_gen GUARDED_BY(pipe_cap);
	uint64_t sealed_seq GUARDED_BY(pipe_cap);
	struct pfile **ftab GUARDED_BY(pipe_cap);
	size_t fbuckets GUARDED_BY(pipe_cap), nfiles GUARDED_BY(pipe_cap);
	uint64_t pending_recs;  /* written under mu with __atomic; read lock-free */
	uint64_t inflight GUARDED_BY(pipe_cap), inflight_max GUARDED_BY(pipe_cap);

	/* completions: encoded (or, workers=0, sealed) batches in any order */
	struct batch *done GUARDED_BY(pipe_cap);
	size_t ndone GUARDED_BY(pipe_cap);

	/* waiters: [0] PIPE_WRITTEN, [1] PIPE_DURABLE; targets nondecreasing */
	struct wlist wait[2] GUARDED_BY(pipe_cap);
	uint64_t appended_seq GUARDED_BY(pipe_cap), synced_seq GUARDED_BY(pipe_cap);
	int error GUARDED_BY(pipe_cap); /* first cause, negative errno */
	bool failed GUARDED_BY(pipe_cap), stopping GUARDED_BY(pipe_cap);
	uint64_t received GUARDED_BY(pipe_cap); /* batches the commit thread took */
	/* When the commit thread wakes by itself: 0 while it runs (it looks at
	 * the open batch before it sleeps again), UINT64_MAX while it sleeps
	 * until signalled, else the deadline of its timed sleep. */
	uint64_t c_wake_ns GUARDED_BY(pipe_cap);
	uint32_t c_group GUARDED_BY(pipe_cap); /* durable waiters when the last fdatasync ended */

	/* commit */
	struct batch *reorder;      /* sorted by seq */
	struct pbatch *app_head, *app_tail; /* appended, not applied, seq order */
	uint64_t next_seq;
	uint64_t c_appended, c_synced;
	uint32_t c_unsynced;        /* batches appended since the last sync */
	uint64_t unsynced_since_ns;
	uint64_t c_work_ns;         /* the last loop that found work (linger ticks) */
	uint64_t c_sync_end_ns, c_sync_ns; /* when the last fdatasync ended, how long it took */
	bool c_failed;
	struct enc_ctx *ienc;       /* commit thread's encoder: workers=0, and small batches */

	/* stats (relaxed atomics) */
	struct bz_hist hist[PIPE_ST_COUNT];
	struct bz_hist group;
	uint64_t n_batches, n_records, n_ns, bytes_in, bytes_stored, n_syncs, n_ckpts;
	uint64_t n_blocked, n_errors, reorder_depth;
	uint64_t n_wakeups, n_arms;
};

static const char *const stage_names[PIPE_ST_COUNT] = {
	[PIPE_ST_BATCH_WAIT] = "batch_wait", [PIPE_ST_QUEUE] = "queue",
	[PIPE_ST_ENCODE] = "encode",         [PIPE_ST_COMPRESS] = "compress",
	[PIPE_ST_HASH] = "hash",             [PIPE_ST_REORDER] = "reorder",
	[PIPE_ST_WAL_WRITE] = "wal_write",   [PIPE_ST_FDATASYNC] = "fdatasync",
	[PIPE_ST_APPLY] = "apply",           [PIPE_ST_CHECKPOINT] = "checkpoint",
	[PIPE_ST_ACK] = "ack",
};

const char *pipe_stage_name(enum pipe_stage st)
{
	return (unsigned)st < PIPE_ST_COUNT ? stage_names[st] : "?";
}

static void st_add(uint64_t *c, uint64_t v) { __atomic_fetch_add(c, v, __ATOMIC_RELAXED); }
static uint64_t st_get(const uint64_t *c) { return __atomic_load_n(c, __ATOMIC_RELAXED); }
static uint64_t ns_since(uint64_t t0, uint64_t t1) { return t1 > t0 ? t1 - t0 : 0; }

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
	o->zstd_level = 1;
	o->record_bytes = 64 << 10;
	o->batch_bytes = 1 << 20;
	o->batch_records = 64;
	o->linger_us = 2000;
	o->sync_interval_ms = 1000;
	o->max_inflight_bytes = 64 << 20;
	o->group_hold_us = 2000;
}

/* ---- records and the per-file table (mu) ---- */

static void prec_free(struct prec *r)
{
	if (!r)
		return;
	free(r->data);
	free(r);
}

static size_t ftab_slot(const struct pipeline *p, uint64_t ino) REQUIRES(pipe_cap)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 20) & (p->fbuckets - 1);
}

static struct pfile *pfile_find(struct pipeline *p, uint64_t ino) REQUIRES(pipe_cap)
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
	struct pfile *f = pfile_find(p, ino);
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

static void pfile_remove(struct pipeline *p, struct pfile *f) REQUIRES(pipe_cap)
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

static void pbatch_free(struct pbatch *pb)
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

static void ob_add(struct pipeline *p, struct prec *r) REQUIRES(pipe_cap)
{
	struct pbatch *pb = p->ob;

	if (pb->nprec == 0) {
		pb->b.first_ns = bz_now_ns();
		/* Arm the linger timer -- unless the commit thread wakes by then
		 * anyway (it runs, or its timed sleep ends first): a signal here
		 * costs a context switch per write-then-fsync or per file of cp. */
		if (pb->b.first_ns + p->o.linger_us * 1000ull < p->c_wake_ns) {
			st_add(&p->n_arms, 1);
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
static void seal_locked(struct pipeline *p, struct batch **disp) REQUIRES(pipe_cap)
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
			.own_level = r->type == REC_DATA && !r->hole && r->level != PIPE_LEVEL_DEFAULT};
	}
	pb->b.time_ns = bz_wall_ns();
	pb->b.sealed_ns = bz_now_ns();
	bz_hist_add(&p->hist[PIPE_ST_BATCH_WAIT], ns_since(pb->b.first_ns, pb->b.sealed_ns));
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

static void encode_one(struct pipeline *p, struct pbatch *pb, struct enc_ctx *ctx)
{
	pb->start_ns = bz_now_ns();
	bz_hist_add(&p->hist[PIPE_ST_QUEUE], ns_since(pb->b.sealed_ns, pb->start_ns));
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
static void charge_encoded(struct pipeline *p, struct pbatch *pb) REQUIRES(pipe_cap)
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

	encode_one(p, pb, ctx);
	bz_cap_lock(&p->mu, &pipe_cap);
	charge_encoded(p, pb);
	pb->b.next = p->done;
	p->done = &pb->b;
	p->ndone++;
	pthread_cond_signal(&p->commit_cv);
	bz_cap_unlock(&p->mu, &pipe_cap);
}

/* Gives sealed batches to the pool. Called with mu NOT held. */
static void dispatch(struct pipeline *p, struct batch *list)
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

/* ---- waiters ---- */

static void wlist_push(struct wlist *l, struct waiter *w)
{
	w->next = NULL;
	if (l->tail)
		l->tail->next = w;
	else
		l->head = w;
	l->tail = w;
	l->n++;
}

/* Moves the waiters of l with target <= reached onto *out; returns how
 * many. */
static uint32_t wlist_take(struct wlist *l, uint64_t reached, struct waiter **out, int err)
{
	uint32_t n = 0;

	while (l->head && l->head->target <= reached) {
		struct waiter *w = l->head;
		l->head = w->next;
		if (!l->head)
			l->tail = NULL;
		w->err = err;
		w->next = *out;
		*out = w;
		l->n--;
		n++;
	}
	return n;
}

/* Calls and frees the waiters (no lock held). The list is newest-first; call
 * in submission order. */
static void waiters_call(struct pipeline *p, struct waiter *list)
{
	struct waiter *rev = NULL;

	while (list) {
		struct waiter *w = list;
		list = w->next;
		w->next = rev;
		rev = w;
	}
	while (rev) {
		struct waiter *w = rev;
		rev = w->next;
		bz_hist_add(&p->hist[PIPE_ST_ACK], ns_since(w->submit_ns, bz_now_ns()));
		w->cb(w->arg, w->err);
		free(w);
	}
}

/* Publishes what the commit thread reached and fires the waiters it
 * satisfied. */
static void commit_fire(struct pipeline *p)
{
	struct waiter *fire = NULL;
	uint32_t n;

	bz_cap_lock(&p->mu, &pipe_cap);
	p->appended_seq = p->c_appended;
#ifdef BZ_MUTANT_ACK_BEFORE_SYNC
	/* deliberately broken: "durable" as soon as the WAL write returned */
	p->synced_seq = p->c_appended;
#else
	p->synced_seq = p->c_synced;
#endif
	wlist_take(&p->wait[0], p->appended_seq, &fire, 0);
	n = wlist_take(&p->wait[1], p->synced_seq, &fire, 0);
	if (n)
		p->c_group = n + p->wait[1].n; /* released + already back */
	bz_cap_unlock(&p->mu, &pipe_cap);
	waiters_call(p, fire);
}

/* ---- commit thread ---- */

/* The appended list is intrusive (b.next is free once a batch left the
 * reorder list), so appending never allocates. */
static void app_push(struct pipeline *p, struct pbatch *pb)
{
	pb->b.next = NULL;
	if (p->app_tail)
		p->app_tail->b.next = &pb->b;
	else
		p->app_head = pb;
	p->app_tail = pb;
}

static struct pbatch *app_pop(struct pipeline *p)
{
	struct pbatch *pb = p->app_head;

	if (!pb)
		return NULL;
	p->app_head = pb->b.next ? pb->b.next->owner_data : NULL;
	if (!p->app_head)
		p->app_tail = NULL;
	pb->b.next = NULL;
	return pb;
}

/* Frees a batch that will never be applied (failure). Its data records stay
 * on their files' pending lists (reads stay consistent; freed by pipe_stop);
 * namespace records are freed here. */
static void batch_discard(struct pbatch *pb)
{
	for (uint32_t i = 0; i < pb->nprec; i++)
		if (pb->precs[i]->type != REC_DATA)
			prec_free(pb->precs[i]);
	pbatch_free(pb);
}

/* The sticky failure: log once, fail every waiter, wake every writer, drop
 * every batch the commit thread holds. */
static void commit_fail(struct pipeline *p, const char *what, int err)
{
	struct waiter *fire = NULL;
	struct pbatch *pb;

	if (p->c_failed)
		return;
	p->c_failed = true;
	st_add(&p->n_errors, 1);
	bz_err("pipeline: %s failed: %s; every waiter gets EIO, writes are refused (EROFS) from now on",
	       what, strerror(-err));
	commit_fire(p); /* what was reached before the failure still succeeds */
	bz_cap_lock(&p->mu, &pipe_cap);
	p->failed = true;
	if (!p->error)
		p->error = err;
	wlist_take(&p->wait[0], UINT64_MAX, &fire, -EIO);
	wlist_take(&p->wait[1], UINT64_MAX, &fire, -EIO);
	pthread_cond_broadcast(&p->room_cv);
	bz_cap_unlock(&p->mu, &pipe_cap);
	waiters_call(p, fire);
	while ((pb = app_pop(p)))
		batch_discard(pb);
	while (p->reorder) {
		struct batch *b = p->reorder;
		p->reorder = b->next;
		batch_discard(b->owner_data);
	}
	__atomic_store_n(&p->reorder_depth, 0, __ATOMIC_RELAXED);
}

static int commit_sync(struct pipeline *p)
{
	uint64_t t0, t1;
	int r;

	if (!p->c_unsynced)
		return 0;
	t0 = bz_now_ns();
	r = store_wal_sync(p->s);
	t1 = bz_now_ns();
	bz_hist_add(&p->hist[PIPE_ST_FDATASYNC], t1 - t0);
	st_add(&p->n_syncs, 1);
	if (r < 0)
		return r;
	p->c_sync_end_ns = t1;
	p->c_sync_ns = t1 - t0;
	bz_hist_add(&p->group, p->c_unsynced);
	p->c_synced = p->c_appended;
	p->c_unsynced = 0;
	return 0;
}

/* Drops an applied batch's records from the pending lists and releases its
 * in-flight bytes. */
static void batch_retire(struct pipeline *p, struct pbatch *pb)
{
	bz_cap_lock(&p->mu, &pipe_cap);
	for (uint32_t i = 0; i < pb->nprec; i++) {
		struct prec *r = pb->precs[i];
		if (r->type == REC_DATA) {
			struct pfile *f = pfile_find(p, r->ino);
			if (ALWAYS(f && f->head == r)) {
				f->head = r->fnext;
				if (!f->head) {
					f->tail = NULL;
					pfile_remove(p, f);
				}
			}
		}
		prec_free(r);
	}
	__atomic_fetch_sub(&p->pending_recs, pb->ndata, __ATOMIC_RELEASE);
	p->inflight -= BZ_MIN(p->inflight, pb->b.raw_bytes + pb->charged);
	pthread_cond_broadcast(&p->room_cv);
	bz_cap_unlock(&p->mu, &pipe_cap);
}

static int commit_apply_all(struct pipeline *p)
{
	struct pbatch *pb;

	while ((pb = app_pop(p))) {
		uint64_t t0 = bz_now_ns();
		int r = store_apply(p->s, pb->lsn, pb->b.time_ns, pb->b.out.frames, pb->b.out.len);
		pb->apply_ns = bz_now_ns() - t0;
		bz_hist_add(&p->hist[PIPE_ST_APPLY], pb->apply_ns);
		if (r < 0) {
			batch_discard(pb);
			return r;
		}
		enc_result_free(&pb->b.out);
		batch_retire(p, pb);
		bz_debug("batch %llu: %u records, %llu raw bytes, wait %llu us, queue %llu us, hash %llu us, "
			 "compress %llu us, encode %llu us, reorder %llu us, wal %llu us, apply %llu us",
			 (unsigned long long)pb->b.seq, pb->b.nrec, (unsigned long long)pb->b.raw_bytes,
			 (unsigned long long)ns_since(pb->b.first_ns, pb->b.sealed_ns) / 1000,
			 (unsigned long long)ns_since(pb->b.sealed_ns, pb->start_ns) / 1000,
			 (unsigned long long)pb->b.out.hash_ns / 1000, (unsigned long long)pb->b.out.compress_ns / 1000,
			 (unsigned long long)pb->b.out.encode_ns / 1000,
			 (unsigned long long)ns_since(pb->done_ns, pb->take_ns) / 1000,
			 (unsigned long long)pb->wal_ns / 1000, (unsigned long long)pb->apply_ns / 1000);
		free(pb->b.recs);
		free(pb->precs);
		free(pb);
	}
	return 0;
}

static int commit_checkpoint(struct pipeline *p)
{
	uint64_t t0 = bz_now_ns();
	int r = store_checkpoint(p->s);

	bz_hist_add(&p->hist[PIPE_ST_CHECKPOINT], bz_now_ns() - t0);
	st_add(&p->n_ckpts, 1);
	return r;
}

/* Sync, ack, apply everything appended; then checkpoint if asked. */
static int commit_flush(struct pipeline *p, bool checkpoint, const char **what)
{
	int r;

	*what = "WAL fdatasync";
	r = commit_sync(p);
	if (r < 0)
		return r;
	commit_fire(p);
	*what = "apply";
	r = commit_apply_all(p);
	if (r < 0 || !checkpoint || p->read_only)
		return r; /* a read-only store (-o ro) is never written */
	*what = "checkpoint";
	return commit_checkpoint(p);
}

/* Appends every batch whose turn it is. */
static int commit_append_ready(struct pipeline *p, const char **what)
{
	int r = 0;

	while (p->reorder && p->reorder->seq == p->next_seq) {
		struct batch *b = p->reorder;
		struct pbatch *pb = b->owner_data;
		uint64_t t0;

		p->reorder = b->next;
		b->next = NULL;
		__atomic_fetch_sub(&p->reorder_depth, 1, __ATOMIC_RELAXED);
		if (!pb->encoded) {
			encode_one(p, pb, p->ienc); /* workers=0 or a small batch: the same code, inline */
			bz_cap_lock(&p->mu, &pipe_cap);
			charge_encoded(p, pb);
			bz_cap_unlock(&p->mu, &pipe_cap);
		}
		pb->take_ns = bz_now_ns();
		bz_hist_add(&p->hist[PIPE_ST_REORDER], ns_since(pb->done_ns, pb->take_ns));
		if (b->out.err) {
			*what = "encode";
			r = b->out.err;
			batch_discard(pb);
			goto out;
		}
		if (!store_wal_has_room(p->s, b->out.len)) {
			r = commit_flush(p, true, what);
			if (r == 0 && !store_wal_has_room(p->s, b->out.len)) {
				*what = "WAL append (batch larger than the WAL)";
				r = -ENOSPC;
			}
			if (r < 0) {
				batch_discard(pb);
				goto out;
			}
		}
		t0 = bz_now_ns();
		r = store_wal_append(p->s, b->time_ns, b->out.frames, b->out.len, &pb->lsn);
		pb->wal_ns = bz_now_ns() - t0;
		bz_hist_add(&p->hist[PIPE_ST_WAL_WRITE], pb->wal_ns);
		if (r < 0) {
			*what = "WAL append";
			batch_discard(pb);
			goto out;
		}
		st_add(&p->n_batches, 1);
		st_add(&p->n_records, b->nrec);
		st_add(&p->n_ns, b->nrec - pb->ndata);
		st_add(&p->bytes_in, b->raw_bytes);
		st_add(&p->bytes_stored, b->out.len);
		if (!p->c_unsynced)
			p->unsynced_since_ns = pb->take_ns;
		p->c_unsynced++;
		p->c_appended = b->seq;
		p->next_seq++;
		app_push(p, pb);
		if (p->hooks.wal_appended)
			p->hooks.wal_appended(p->hooks.arg, b->seq, pb->lsn);
	}
out:
	return r;
}

/* Moves completions into the reorder list; when failed, frees them. */
static void commit_take(struct pipeline *p) REQUIRES(pipe_cap)
{
	while (p->done) {
		struct batch *b = p->done, **pp;
		p->done = b->next;
		p->ndone--;
		p->received++;
		if (p->c_failed) {
			batch_discard(b->owner_data);
			continue;
		}
		for (pp = &p->reorder; *pp && (*pp)->seq < b->seq; pp = &(*pp)->next)
			;
		b->next = *pp;
		*pp = b;
		__atomic_fetch_add(&p->reorder_depth, 1, __ATOMIC_RELAXED);
	}
}

/* Group commit. An fdatasync that starts as soon as the first durable
 * waiter is in the WAL catches only the writers that were already waiting:
 * those it just released are still on their way back (reply, the next
 * write, the next fsync) and must wait for the whole next fdatasync. So when
 * K > 1 waiters were there as the last fdatasync ended (those it released
 * plus those already queued for the next), the next one holds until K
 * waiters have their data in the WAL again, or at most half that fdatasync's time after it
 * ended (group_hold_us at most, 2 ms by default): a single writer never waits, and a
 * writer that stopped costs one hold, after which K is smaller. Returns the
 * end of the hold, or 0 when there is none now. (jbd2 does the same with
 * its batch time.) */
static uint64_t commit_hold_until(struct pipeline *p, uint64_t now) REQUIRES(pipe_cap)
{
	uint64_t until;
	uint32_t n = 0;

	if (p->c_group < 2 || p->wait[1].n < 1 || p->stopping)
		return 0;
	until = p->c_sync_end_ns + BZ_MIN(p->c_sync_ns / 2, p->o.group_hold_us * 1000ull);
	if (now >= until)
		return 0;
	/* waiters whose data is in the WAL (targets are nondecreasing) */
	for (const struct waiter *w = p->wait[1].head; w && w->target <= p->c_appended && n < p->c_group; w = w->next)
		n++;
	return n >= p->c_group ? 0 : until;
}

static bool commit_sync_due(struct pipeline *p, uint64_t now) REQUIRES(pipe_cap)
{
	if (!p->c_unsynced || p->c_failed)
		return false;
	if (p->wait[1].head && p->wait[1].head->target <= p->c_appended)
		return commit_hold_until(p, now) == 0;
	if (p->stopping)
		return true;
	return now >= p->unsynced_since_ns + (uint64_t)p->o.sync_interval_ms * 1000000ull;
}

static void *commit_main(void *arg)
{
	struct pipeline *p = arg;
	const char *what = "";
	bool final = false;
	int r;

	pthread_setname_np(pthread_self(), "bz-commit"); /* top -H, perf; best effort */
	while (!final) {
		struct batch *disp = NULL;
		bool ready, need_sync;

		bz_cap_lock(&p->mu, &pipe_cap);
		for (bool woken = true;;) {
			uint64_t now = bz_now_ns(), deadline = UINT64_MAX;

			if (p->ob && (p->stopping || now >= p->ob->b.first_ns + p->o.linger_us * 1000ull))
				seal_locked(p, &disp);
			commit_take(p);
			ready = p->reorder && p->reorder->seq == p->next_seq;
			need_sync = commit_sync_due(p, now);
			final = p->stopping && !p->ob && p->received == p->sealed_seq && !p->reorder;
			if (disp || ready || need_sync || final)
				break;
			if (p->ob)
				deadline = p->ob->b.first_ns + p->o.linger_us * 1000ull;
			if (p->c_unsynced && !p->c_failed) {
				uint64_t hold = commit_hold_until(p, now);
				deadline = BZ_MIN(deadline, p->unsynced_since_ns + p->o.sync_interval_ms * 1000000ull);
				if (hold)
					deadline = BZ_MIN(deadline, hold);
			}
			/* Batches keep coming: sleep one linger at most, so that
			 * the next batch's first record need not signal. */
			if (!p->ob && p->o.linger_us >= PIPE_TICK_MIN_US && now < p->c_work_ns + PIPE_TICK_ACTIVE_NS)
				deadline = BZ_MIN(deadline, now + p->o.linger_us * 1000ull);
			p->c_wake_ns = deadline;
			if (deadline == UINT64_MAX)
				bz_cap_cond_wait(&p->commit_cv, &p->mu, &pipe_cap);
			else if (bz_cap_cond_timedwait(&p->commit_cv, &p->mu, &pipe_cap, deadline) != 0)
				woken = false; /* its own timer: not counted */
			p->c_wake_ns = 0;
			if (woken)
				st_add(&p->n_wakeups, 1);
			woken = true;
		}
		p->c_work_ns = bz_now_ns();
		bz_cap_unlock(&p->mu, &pipe_cap);
		if (disp)
			dispatch(p, disp);
		if (p->c_failed)
			continue;

		r = commit_append_ready(p, &what);
		if (r < 0) {
			commit_fail(p, what, r);
			continue;
		}
		commit_fire(p); /* PIPE_WRITTEN waiters */
		bz_cap_lock(&p->mu, &pipe_cap);
		need_sync = commit_sync_due(p, bz_now_ns());
		bz_cap_unlock(&p->mu, &pipe_cap);
		if (need_sync) {
			r = commit_sync(p);
			if (r < 0) {
				commit_fail(p, "WAL fdatasync", r);
				continue;
			}
			commit_fire(p); /* PIPE_DURABLE waiters */
		}
		r = commit_apply_all(p);
		if (r < 0) {
			commit_fail(p, "apply", r);
			continue;
		}
		if (store_need_checkpoint(p->s)) {
			r = commit_flush(p, true, &what);
			if (r < 0) {
				commit_fail(p, what, r);
				continue;
			}
		}
	}

	/* drained: every sealed batch was received and appended (or dropped) */
	if (!p->c_failed) {
		r = commit_flush(p, true, &what);
		if (r < 0)
			commit_fail(p, what, r);
	}
	{
		struct waiter *fire = NULL;
		bz_cap_lock(&p->mu, &pipe_cap);
		wlist_take(&p->wait[0], UINT64_MAX, &fire, -ESHUTDOWN);
		wlist_take(&p->wait[1], UINT64_MAX, &fire, -ESHUTDOWN);
		bz_cap_unlock(&p->mu, &pipe_cap);
		waiters_call(p, fire);
	}
	return NULL;
}

/* ---- public API ---- */

static void pipe_free(struct pipeline *p) NO_TSA
{
	if (!p)
		return;
	if (p->ob) {
		for (uint32_t i = 0; i < p->ob->nprec; i++)
			if (p->ob->precs[i]->type != REC_DATA)
				prec_free(p->ob->precs[i]);
		pbatch_free(p->ob);
	}
	for (size_t i = 0; p->ftab && i < p->fbuckets; i++) {
		struct pfile *f = p->ftab[i], *fn;
		for (; f; f = fn) {
			struct prec *r = f->head, *rn;
			for (; r; r = rn) {
				rn = r->fnext;
				prec_free(r);
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
	r = -pthread_create(&p->commit_tid, NULL, commit_main, p);
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
	seal_locked(p, &disp);
	pthread_cond_signal(&p->commit_cv);
	pthread_cond_broadcast(&p->room_cv);
	bz_cap_unlock(&p->mu, &pipe_cap);
	if (disp)
		dispatch(p, disp);
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
			st_add(&p->n_blocked, 1);
		}
		if (p->ob) {
			seal_locked(p, &disp);
			if (disp) {
				bz_cap_unlock(&p->mu, &pipe_cap);
				dispatch(p, disp);
				bz_cap_lock(&p->mu, &pipe_cap);
				continue;
			}
		}
		bz_cap_cond_wait(&p->room_cv, &p->mu, &pipe_cap);
	}
}

/* Adds up to one record's worth of buf to file f; returns bytes taken. */
static int add_data(struct pipeline *p, struct pfile *f, uint64_t off, const uint8_t *buf, size_t len,
		    int8_t level, size_t *ret_n) REQUIRES(pipe_cap)
{
	struct prec *o = (f->open && f->open_gen == p->open_gen) ? f->open : NULL;
	size_t n;
	int r;

	if (o && o->off + o->len == off && o->len < p->o.record_bytes && o->level == level) {
		n = BZ_MIN(len, p->o.record_bytes - o->len);
		if (o->len + n > o->cap) {
			size_t nc = BZ_MIN(p->o.record_bytes, BZ_MAX((size_t)o->cap * 2, o->len + n));
			uint8_t *d = realloc(o->data, nc);
			if (!d)
				return -ENOMEM;
			o->data = d;
			o->cap = (uint32_t)nc;
		}
		memcpy(o->data + o->len, buf, n);
		o->len += (uint32_t)n;
		p->ob->b.raw_bytes += n;
		goto out;
	}
	n = BZ_MIN(len, p->o.record_bytes);
	r = ob_reserve(p);
	if (r < 0)
		return r;
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->cap = (uint32_t)BZ_MIN(p->o.record_bytes, BZ_MAX(n, (size_t)PREC_MIN_CAP));
	o->data = malloc(o->cap);
	if (!o->data) {
		free(o);
		return -ENOMEM;
	}
	o->type = REC_DATA;
	o->level = level;
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

int pipe_append(struct pipeline *p, uint64_t ino, uint64_t off, const void *buf, size_t len)
{
	return pipe_append_level(p, ino, off, buf, len, PIPE_LEVEL_DEFAULT);
}

int pipe_append_level(struct pipeline *p, uint64_t ino, uint64_t off, const void *buf, size_t len, int level)
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
	{
		struct pfile *f = NULL;
		r = pfile_get(p, ino, &f);
		if (r < 0)
			goto out;
		while (done < len) {
			size_t n = 0;
			r = add_data(p, f, off + done, src + done, len - done, (int8_t)level, &n);
			if (r < 0)
				break;
			done += n;
			p->inflight += INFLIGHT_PER_BYTE * n;
			if (ob_full(p))
				seal_locked(p, &disp);
		}
		if (!f->head)
			pfile_remove(p, f);
	}
	p->inflight_max = BZ_MAX(p->inflight_max, p->inflight);
out:
	bz_cap_unlock(&p->mu, &pipe_cap);
	if (disp)
		dispatch(p, disp);
	return r;
}

/* A hole record: one pending record (no bytes) in the file's list, so
 * reads see zeros there until it is applied, and appends continue behind
 * it in a new record. */
int pipe_hole(struct pipeline *p, uint64_t ino, uint64_t off, uint64_t len)
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
	if (r == 0)
		r = pfile_get(p, ino, &f);
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
	if (ob_full(p))
		seal_locked(p, &disp);
out:
	if (r < 0 && f && !f->head)
		pfile_remove(p, f);
	bz_cap_unlock(&p->mu, &pipe_cap);
	if (disp)
		dispatch(p, disp);
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
		seal_locked(p, &disp);
	bz_cap_unlock(&p->mu, &pipe_cap);
	if (disp)
		dispatch(p, disp);
	return 0;
out_free:
	prec_free(rec);
	return r;
}

int pipe_barrier(struct pipeline *p, enum pipe_level level, pipe_cb cb, void *arg)
{
	struct waiter *w;
	struct batch *disp = NULL;
	int now_err = 1; /* 1: queued; else call cb(now_err) at once */

	if (level != PIPE_WRITTEN && level != PIPE_DURABLE)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->cb = cb;
	w->arg = arg;
	w->submit_ns = bz_now_ns();

	bz_cap_lock(&p->mu, &pipe_cap);
	if (p->failed) {
		now_err = -EIO;
	} else if (p->stopping) {
		now_err = -ESHUTDOWN;
	} else {
		seal_locked(p, &disp);
		w->target = p->sealed_seq;
		if (w->target <= (level == PIPE_WRITTEN ? p->appended_seq : p->synced_seq)) {
			now_err = 0;
		} else {
			wlist_push(&p->wait[level == PIPE_WRITTEN ? 0 : 1], w);
			pthread_cond_signal(&p->commit_cv);
		}
	}
	bz_cap_unlock(&p->mu, &pipe_cap);
	if (disp)
		dispatch(p, disp);
	if (now_err != 1) {
		bz_hist_add(&p->hist[PIPE_ST_ACK], ns_since(w->submit_ns, bz_now_ns()));
		free(w);
		cb(arg, now_err);
	}
	return 0;
}

void pipe_seal(struct pipeline *p)
{
	struct batch *disp = NULL;

	bz_cap_lock(&p->mu, &pipe_cap);
	if (!p->failed && !p->stopping)
		seal_locked(p, &disp);
	bz_cap_unlock(&p->mu, &pipe_cap);
	if (disp)
		dispatch(p, disp);
}

struct bwait {
	bz_mutex mu;
	pthread_cond_t cv;
	bool done GUARDED_BY(pipe_bw_cap);
	int err GUARDED_BY(pipe_bw_cap);
};

static void bwait_cb(void *arg, int err)
{
	struct bwait *bw = arg;

	bz_cap_lock(&bw->mu, &pipe_bw_cap);
	bw->done = true;
	bw->err = err;
	pthread_cond_signal(&bw->cv);
	bz_cap_unlock(&bw->mu, &pipe_bw_cap);
}

int pipe_barrier_wait(struct pipeline *p, enum pipe_level level) NO_TSA
{
	struct bwait bw = {.done = false};
	int r;

	bz_mutex_init(&bw.mu);
	pthread_cond_init(&bw.cv, NULL);
	r = pipe_barrier(p, level, bwait_cb, &bw);
	if (r == 0) {
		bz_cap_lock(&bw.mu, &pipe_bw_cap);
		while (!bw.done)
			bz_cap_cond_wait(&bw.cv, &bw.mu, &pipe_bw_cap);
		r = bw.err;
		bz_cap_unlock(&bw.mu, &pipe_bw_cap);
	}
	pthread_cond_destroy(&bw.cv);
	bz_mutex_destroy(&bw.mu);
	return r;
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
		f = pfile_find(p, ino);
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

void pipe_stats(struct pipeline *p, struct pipe_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	for (int i = 0; i < PIPE_ST_COUNT; i++)
		bz_hist_snapshot(&p->hist[i], &ret->stage[i]);
	bz_hist_snapshot(&p->group, &ret->group_size);
	ret->batches = st_get(&p->n_batches);
	ret->records = st_get(&p->n_records);
	ret->ns_records = st_get(&p->n_ns);
	ret->bytes_in = st_get(&p->bytes_in);
	ret->bytes_stored = st_get(&p->bytes_stored);
	ret->fdatasyncs = st_get(&p->n_syncs);
	ret->checkpoints = st_get(&p->n_ckpts);
	ret->writer_blocked = st_get(&p->n_blocked);
	ret->commit_wakeups = st_get(&p->n_wakeups);
	ret->linger_arms = st_get(&p->n_arms);
	ret->errors = st_get(&p->n_errors);
	ret->reorder_depth = st_get(&p->reorder_depth);
	ret->workers = p->o.workers;
	bz_cap_lock(&p->mu, &pipe_cap);
	ret->inflight_bytes = p->inflight;
	ret->inflight_max = p->inflight_max;
	ret->error = p->error;
	ret->sealed_seq = p->sealed_seq;
	ret->written_seq = p->appended_seq;
	ret->durable_seq = p->synced_seq;
	ret->queue_depth = p->pool ? 0 : p->ndone;
	bz_cap_unlock(&p->mu, &pipe_cap);
	if (p->pool)
		ret->queue_depth = pool_queued(p->pool);
	store_stats(p->s, &ret->store);
}

struct jbuf {
	char *b;
	size_t cap, len;
	bool over;
};

static void BZ_PRINTF(2, 3) jp(struct jbuf *j, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (j->over)
		return;
	va_start(ap, fmt);
	n = vsnprintf(j->b + j->len, j->cap - j->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= j->cap - j->len)
		j->over = true;
	else
		j->len += (size_t)n;
}

int pipe_stats_json(struct pipeline *p, char *buf, size_t cap)
{
	struct pipe_stats *st;
	struct jbuf j = {.b = buf, .cap = cap};
	const struct store_stats *ss;
	int r;

	if (!buf || cap == 0)
		return -ENOSPC;
	st = malloc(sizeof(*st));
	if (!st)
		return -ENOMEM;
	pipe_stats(p, st);
	ss = &st->store;
	jp(&j, "{\"workers\":%u,\"error\":%d,\"errors\":%llu,", st->workers, st->error,
	   (unsigned long long)st->errors);
	jp(&j,
	   "\"batches\":%llu,\"records\":%llu,\"ns_records\":%llu,\"bytes_in\":%llu,\"bytes_stored\":%llu,"
	   "\"fdatasyncs\":%llu,\"checkpoints\":%llu,\"queue_depth\":%llu,\"reorder_depth\":%llu,"
	   "\"inflight_bytes\":%llu,\"inflight_max\":%llu,\"writer_blocked\":%llu,"
	   "\"commit_wakeups\":%llu,\"linger_arms\":%llu,"
	   "\"sealed_seq\":%llu,\"written_seq\":%llu,\"durable_seq\":%llu,",
	   (unsigned long long)st->batches, (unsigned long long)st->records, (unsigned long long)st->ns_records,
	   (unsigned long long)st->bytes_in, (unsigned long long)st->bytes_stored,
	   (unsigned long long)st->fdatasyncs, (unsigned long long)st->checkpoints,
	   (unsigned long long)st->queue_depth, (unsigned long long)st->reorder_depth,
	   (unsigned long long)st->inflight_bytes, (unsigned long long)st->inflight_max,
	   (unsigned long long)st->writer_blocked, (unsigned long long)st->commit_wakeups,
	   (unsigned long long)st->linger_arms, (unsigned long long)st->sealed_seq,
	   (unsigned long long)st->written_seq, (unsigned long long)st->durable_seq);
	jp(&j, "\"stages_us\":{");
	for (int i = 0; i < PIPE_ST_COUNT; i++) {
		const struct bz_hist *h = &st->stage[i];
		jp(&j, "%s\"%s\":{\"count\":%llu,\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f,\"sum\":%.1f}", i ? "," : "",
		   stage_names[i], (unsigned long long)h->count, bz_hist_quantile(h, 0.5) / 1e3,
		   bz_hist_quantile(h, 0.99) / 1e3, h->max / 1e3, h->sum / 1e3);
	}
	jp(&j, "},\"group_size\":{\"count\":%llu,\"p50\":%llu,\"p99\":%llu,\"max\":%llu,\"mean\":%.2f},",
	   (unsigned long long)st->group_size.count, (unsigned long long)bz_hist_quantile(&st->group_size, 0.5),
	   (unsigned long long)bz_hist_quantile(&st->group_size, 0.99), (unsigned long long)st->group_size.max,
	   st->group_size.count ? (double)st->group_size.sum / (double)st->group_size.count : 0.0);
	jp(&j,
	   "\"store\":{\"page_size\":%llu,\"pages_total\":%llu,\"pages_free\":%llu,\"data_pages\":%llu,"
	   "\"stored_bytes\":%llu,\"logical_bytes\":%llu,\"wal_bytes_since_checkpoint\":%llu,"
	   "\"checkpoints\":%llu,\"checkpoint_lsn\":%llu,\"last_lsn\":%llu,\"cache_hits\":%llu,"
	   "\"cache_misses\":%llu,\"checksum_errors\":%llu,\"replayed_batches\":%llu,\"space_need\":%llu,\"space_spare\":%llu,"
	   "\"free_extents\":%llu,\"pages_released\":%llu,\"store_db_truncations\":%llu,\"pack_pages\":%llu,"
	   "\"pack_live_bytes\":%llu,\"pages_cleaned\":%llu,\"error\":%d}}",
	   (unsigned long long)ss->page_size, (unsigned long long)ss->pages_total,
	   (unsigned long long)ss->pages_free, (unsigned long long)ss->data_pages,
	   (unsigned long long)ss->stored_bytes, (unsigned long long)ss->logical_bytes,
	   (unsigned long long)ss->wal_bytes_since_checkpoint, (unsigned long long)ss->checkpoints,
	   (unsigned long long)ss->checkpoint_lsn, (unsigned long long)ss->last_lsn,
	   (unsigned long long)ss->cache_hits, (unsigned long long)ss->cache_misses,
	   (unsigned long long)ss->checksum_errors, (unsigned long long)ss->replayed_batches,
	   (unsigned long long)ss->space_need, (unsigned long long)ss->space_spare,
	   (unsigned long long)ss->free_extents, (unsigned long long)ss->pages_released,
	   (unsigned long long)ss->store_db_truncations, (unsigned long long)ss->pack_pages,
	   (unsigned long long)ss->pack_live_bytes, (unsigned long long)ss->pages_cleaned, ss->error);
	r = j.over ? -ENOSPC : (int)j.len;
	if (r < 0)
		buf[0] = '\0';
	free(st);
	return r;
}
