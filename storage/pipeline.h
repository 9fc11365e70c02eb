/* pipeline.h — batcher + worker pool + the one commit thread.
 *
 *   pipe_append/pipe_nsop (any thread) -> open record per file -> open batch
 *   --seal (size, count, linger, barrier)--> pool job: enc_batch
 *   --completion--> commit thread: reorder by seq -> store_wal_append ->
 *   store_wal_sync (one for the whole group) -> store_apply -> callbacks ->
 *   store_checkpoint when needed.
 *
 * Only the commit thread calls store_* mutators. Threads, queues and lock
 * order: docs/ARCHITECTURE.md.
 */
#ifndef BZ_PIPELINE_H
#define BZ_PIPELINE_H

#include "hist.h"
#include "nsop.h"
#include "store.h"

struct pipeline;

struct pipe_opts {
	unsigned workers;          /* 0 = encode inline on the commit thread; default min(cores, 4) */
	int zstd_level;            /* default BZ_ZSTD_LEVEL_DEFAULT */
	size_t record_bytes;       /* max raw bytes of one record; default 256 KiB */
	size_t batch_bytes;        /* seal at this many raw bytes; default 1 MiB */
	unsigned batch_records;    /* seal at this many records; default 64 */
	unsigned linger_us;        /* seal this long after the first record; default 2000 */
	unsigned sync_interval_ms; /* fdatasync at least this often when unsynced; default 1000 */
	size_t max_inflight_bytes; /* writers block above this; default 64 MiB */
	unsigned group_hold_us;    /* longest group-commit hold (commit_hold_until); default 2000 */
};
void pipe_opts_default(struct pipe_opts *o);

/* Starts the workers and the commit thread on an open store (not owned). */
int pipe_start(struct store *s, const struct pipe_opts *o, struct pipeline **ret_pipe);
/* Drains every submitted byte to the WAL, syncs, applies, checkpoints, joins
 * every thread and frees. Returns the first error the pipeline met (the
 * store is then left as the failure left it). NULL ok. No other call on p
 * may run concurrently with pipe_stop or after it. */
int pipe_stop(struct pipeline *p);

/* Appends len bytes at logical offset off of file ino (the caller, fs/,
 * has checked the append-only rules and that off is the file's current
 * end). Copies buf. Blocks while in-flight bytes exceed max_inflight_bytes.
 * Returns 0, -EROFS after a WAL failure, -ESHUTDOWN after pipe_stop. */
int pipe_append(struct pipeline *p, uint64_t ino, uint64_t off, const void *buf, size_t len);
/* Appends a hole of len zero bytes at off (the file's current end): one
 * record, nothing stored; reads return zeros (docs/FORMAT.md "Hole
 * records"). len <= 2^44 (-EFBIG). Same errors as pipe_append.
 * ret_time_ns (may be NULL): as for pipe_append_level. */
int pipe_hole(struct pipeline *p, uint64_t ino, uint64_t off, uint64_t len, int64_t *ret_time_ns);
/* The same, the records compressed at zstd level (-7..22, zstd's meaning:
 * negative = fast levels, 0 = zstd's default; -EINVAL outside) instead of
 * the pipeline's zstd_level: a file with its own user.blazefs.zstd_level;
 * and cut at chunk raw bytes (0 = record_bytes; never more than
 * record_bytes): the file's user.blazefs.chunk_bytes, so a full record is
 * one of the file's chunks (storage/store_chunk.c). A record holds bytes
 * of one level only. ret_time_ns (may be NULL) receives the time of the
 * batch that holds the last bytes taken: the store gives the file that
 * mtime and ctime when it applies the batch, so the caller's live view
 * shows the same (a batch's time is the coarse wall clock when its first
 * record came; data joins it only while that clock shows the same). */
int pipe_append_level(struct pipeline *p, uint64_t ino, uint64_t off, const void *buf, size_t len, int level,
		      size_t chunk, int64_t *ret_time_ns);
#define PIPE_LEVEL_DEFAULT INT8_MIN /* pipe_append_level: the pipeline's zstd_level */
/* Submits a namespace change (already validated by the caller), ordered
 * with data like any record. Same errors as pipe_append. */
int pipe_nsop(struct pipeline *p, const struct ns_op *op);

enum pipe_level {
	PIPE_WRITTEN = 1, /* in the WAL file (survives a daemon crash) */
	PIPE_DURABLE = 2, /* in the WAL and fdatasync'd (survives power loss) */
};
/* cb(arg, err) is called exactly once, from the commit thread (or from the
 * calling thread before pipe_barrier returns, if the condition already
 * holds), when everything submitted before this call has reached level.
 * err is 0, -EIO (the WAL write or sync failed) or -ESHUTDOWN. The call
 * seals the open batch if it holds anything the barrier needs. */
typedef void (*pipe_cb)(void *arg, int err);
int pipe_barrier(struct pipeline *p, enum pipe_level level, pipe_cb cb, void *arg);
/* Seals the open batch now (if it holds anything), as a barrier would, but
 * waits for nothing: the caller expects a barrier soon (a flush follows the
 * kernel's writeback of a closing file) and lets the commit thread start on
 * the batch meanwhile. */
void pipe_seal(struct pipeline *p);
/* Blocking form (tests, tools). */
int pipe_barrier_wait(struct pipeline *p, enum pipe_level level);

/* Reads file bytes [off, off+len): the applied part from the store, the
 * rest from data still in the pipeline. *ret_n < len only at the end of
 * what has been appended. */
int pipe_read(struct pipeline *p, uint64_t ino, uint64_t off, void *buf, size_t len, size_t *ret_n);

enum pipe_stage {
	PIPE_ST_BATCH_WAIT, /* first record -> seal */
	PIPE_ST_QUEUE,      /* seal -> a worker starts */
	PIPE_ST_ENCODE,
	PIPE_ST_COMPRESS,
	PIPE_ST_HASH,
	PIPE_ST_REORDER,    /* encoded -> commit thread takes it */
	PIPE_ST_WAL_WRITE,
	PIPE_ST_FDATASYNC,
	PIPE_ST_APPLY,
	PIPE_ST_CHECKPOINT,
	PIPE_ST_ACK,        /* submit of a barrier -> its callback */
	PIPE_ST_COUNT
};
const char *pipe_stage_name(enum pipe_stage st);

struct pipe_stats {
	struct bz_hist stage[PIPE_ST_COUNT];
	struct bz_hist group_size; /* batches per fdatasync (values, not ns) */
	uint64_t batches, records, ns_records;
	uint64_t bytes_in, bytes_stored;
	uint64_t fdatasyncs, checkpoints;
	uint64_t queue_depth;     /* jobs waiting for a worker now */
	uint64_t reorder_depth;   /* encoded batches waiting for an earlier seq now */
	uint64_t inflight_bytes;  /* now */
	uint64_t inflight_max;    /* high-water mark */
	uint64_t writer_blocked;  /* times a writer waited for room */
	uint64_t commit_wakeups;  /* times the commit thread was signalled awake (not its timer) */
	uint64_t linger_arms;     /* first records that had to wake it to arm linger */
	uint64_t errors;
	/* batch sequence numbers (global order): the last sealed, the last
	 * appended to the WAL, the last covered by an fdatasync */
	uint64_t sealed_seq, written_seq, durable_seq;
	int error;                /* sticky pipeline error (negative errno) or 0 */
	unsigned workers;
	struct store_stats store;
};
void pipe_stats(struct pipeline *p, struct pipe_stats *ret_stats);
/* A bound on the bytes accepted but not yet applied to store.db (raw bytes
 * of records not yet encoded, encoded bytes of batches not yet applied):
 * what they will still take on disk, less page overhead. Any thread. */
uint64_t pipe_unapplied_bytes(struct pipeline *p);
/* The filesystem refuses writes for lack of space (reclaim_min > 0) or no
 * longer (0). While short, the commit thread checkpoints as soon as one
 * gives room back (store_checkpoint_would_free(reclaim_min): deleted files,
 * or that much of the reserve held for namespace changes -- the threshold
 * the filesystem's own reclaim uses, fs/space.c), instead of waiting for
 * the WAL or the dead-space threshold of store_need_checkpoint: on a full
 * disk nothing else would bring their room back until unmount. Any
 * thread. */
void pipe_set_space_short(struct pipeline *p, uint64_t reclaim_min);
/* Asks the commit thread for a checkpoint and waits until one that began
 * after this call has ended: for a caller short of space when the store
 * says a checkpoint would give room back (store_checkpoint_would_free), as
 * ext4 commits its journal and retries an allocation that found the disk
 * full. 0, or -EIO (the pipeline failed) or -ESHUTDOWN (stopping). Never
 * from the commit thread or a callback. Any other thread. */
int pipe_reclaim(struct pipeline *p);
/* The stats as one JSON object (documented in docs/ARCHITECTURE.md). Returns
 * the length written (excluding NUL) or -ENOSPC. */
int pipe_stats_json(struct pipeline *p, char *buf, size_t cap);

/* Test hooks (tests only). pipe_start copies the current hooks; set them
 * before it, with no pipeline running. NULL clears. */
struct pipe_test_hooks {
	void *arg;
	/* In the encoding thread (a worker, or the commit thread with
	 * workers=0) before enc_batch of batch seq: e.g. a random delay so
	 * workers finish out of order. */
	void (*before_encode)(void *arg, uint64_t seq);
	/* In the encoding thread right after enc_batch of batch seq. */
	void (*after_encode)(void *arg, uint64_t seq);
	/* On the commit thread right after batch seq was appended at lsn. */
	void (*wal_appended)(void *arg, uint64_t seq, uint64_t lsn);
	/* The clock batches take their time from (default bz_wall_coarse_ns):
	 * a test that counts records or batches freezes it, since a tick
	 * seals the open batch before the next append (pipeline.c
	 * seal_stale). Called with the pipeline's lock held. */
	int64_t (*wall_ns)(void *arg);
};
void pipe_set_test_hooks(const struct pipe_test_hooks *h);

#endif
