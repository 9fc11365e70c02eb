/* pipeline_int.h — private to storage/pipeline.c and storage/pipe_*.c: the
 * structures of the pipeline, its constants and the functions its files
 * share. Nothing else includes this header (the public API is pipeline.h).
 * Shared internal functions carry the pi_ prefix; everything else in these
 * files is static or a public pipe_* function.
 *
 * STRUCTURES.
 *   struct prec      one record not yet applied (data, hole or namespace op).
 *   struct pfile     one file with pending data records (the per-file table,
 *                    a chained hash ino -> pfile, grown by doubling).
 *   struct pbatch    one batch: open, then sealed (immutable, workers/batch.h),
 *                    encoded, appended, applied, freed.
 *   struct waiter    one barrier (pipe_barrier) waiting for a seq.
 *   struct wlist     a FIFO of waiters, targets nondecreasing.
 *   struct pipeline  the whole pipeline; each field says what guards it.
 *
 * LOCKS. p->mu (Clang token pipe_cap, declared here so every file names the
 * same capability) guards every GUARDED_BY field below; it is never held
 * across pool_*, store_*, enc_* or a callback, and nothing nests inside it.
 * Fields under "commit" belong to the commit thread (pipe_commit.c) alone,
 * and to pipe_start/pipe_stop before it starts / after it is joined. The
 * stats are relaxed atomics (pi_add/pi_get, bz_hist).
 */
#ifndef BZ_PIPELINE_INT_H
#define BZ_PIPELINE_INT_H

#include <pthread.h>

#include "../workers/encode.h"
#include "../workers/pool.h"
#include "log.h"
#include "pipeline.h"
#include "record.h"
#include "tsa.h"

BZ_CAP_DECLARE(pipe_cap); /* p->mu (tsa.h: capability tokens) */

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
	uint32_t gather;    /* data: sealed shorter than this, it is logged raw (immutable; see add_data) */
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
	pthread_cond_t room_cv;   /* in-flight room, failure, stop, reclaim served */

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
	/* pipe_set_space_short: the disk is short (checkpoint when deleted
	 * files hold space, or this much of the reserve); poke: it just became
	 * so (wake the commit thread) */
	uint64_t space_short GUARDED_BY(pipe_cap); /* 0, or the reclaim threshold (bytes) */
	bool space_poke GUARDED_BY(pipe_cap);
	/* pipe_reclaim: checkpoints asked for by writers that met a short
	 * disk; a ticket is served (reclaim_done >= it) by a checkpoint that
	 * began after it was taken. Waiters sleep on room_cv. */
	uint64_t reclaim_want GUARDED_BY(pipe_cap), reclaim_done GUARDED_BY(pipe_cap);

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

/* ---- relaxed counters (any thread) ---- */

static inline void pi_add(uint64_t *c, uint64_t v) { __atomic_fetch_add(c, v, __ATOMIC_RELAXED); }
static inline uint64_t pi_get(const uint64_t *c) { return __atomic_load_n(c, __ATOMIC_RELAXED); }
static inline uint64_t pi_since(uint64_t t0, uint64_t t1) { return t1 > t0 ? t1 - t0 : 0; }

/* ---- pipeline.c: records, the per-file table, the open batch, workers ---- */

void pi_prec_free(struct prec *r);
struct pfile *pi_pfile_find(struct pipeline *p, uint64_t ino) REQUIRES(pipe_cap);
/* Unlinks and frees f (its pending list must be empty). */
void pi_pfile_remove(struct pipeline *p, struct pfile *f) REQUIRES(pipe_cap);
void pi_pbatch_free(struct pbatch *pb);
/* Seals the open batch (if any): seq, immutable recs[], then either onto
 * *disp (to be given to the pool by pi_dispatch once mu is dropped) or
 * straight onto the completion list (workers=0, or a small batch). */
void pi_seal_locked(struct pipeline *p, struct batch **disp) REQUIRES(pipe_cap);
/* Gives sealed batches to the pool. Called with mu NOT held. */
void pi_dispatch(struct pipeline *p, struct batch *list);
/* Encodes one sealed batch (a worker, or the commit thread inline). */
void pi_encode_one(struct pipeline *p, struct pbatch *pb, struct enc_ctx *ctx);
/* Replaces an encoded batch's reserve in the in-flight bytes by its real
 * encoded size. */
void pi_charge_encoded(struct pipeline *p, struct pbatch *pb) REQUIRES(pipe_cap);

/* ---- pipe_wait.c: waiters ---- */

/* Moves the waiters of l with target <= reached onto *out (newest first),
 * each with err; returns how many. Caller holds mu. */
uint32_t pi_wlist_take(struct wlist *l, uint64_t reached, struct waiter **out, int err);
/* Calls and frees the waiters taken by pi_wlist_take, in submission order
 * (no lock held). */
void pi_waiters_call(struct pipeline *p, struct waiter *list);
/* Commit thread: publishes what it reached (appended_seq, synced_seq) and
 * fires the waiters it satisfied. Takes mu. */
void pi_commit_fire(struct pipeline *p);

/* ---- pipe_commit.c: the commit thread ---- */

void *pi_commit_main(void *arg);

#endif
