/* store.h — the storage engine (public API, opaque).
 *
 * A store is a directory holding "lock", "store.db" (the PageStore) and the
 * WAL segments "wal.NNN". Format and recovery: docs/FORMAT.md.
 *
 * Threads: the functions marked [commit] are called only by the one commit
 * thread (storage/pipeline.c), or by a single-threaded test/tool. The
 * functions marked [any] may be called from any thread at any time between
 * store_open and store_close.
 */
#ifndef BZ_STORE_H
#define BZ_STORE_H

#include "ns.h"
#include "vfs.h"

struct store;

struct store_opts {
	struct vfs *vfs;            /* the store directory (not owned) */
	uint64_t wal_segment_bytes; /* for a new store; default 64 MiB */
	uint32_t wal_segments;      /* for a new store; default 4 */
	uint64_t checkpoint_bytes;  /* checkpoint when this much WAL is used; default 1/2 of the log */
	uint64_t cache_bytes;       /* page cache for reads; default 32 MiB */
	bool create;                /* create the store if the directory is empty (default true) */
	bool read_only;             /* fsck/dump: no lock-file write, no replay checkpoint */
};
void store_opts_default(struct store_opts *o);

/* Opens (creating if empty and o->create) the store: takes the lock file
 * (-EBUSY with a log line naming the holder if another process has it),
 * picks the newest valid superblock, loads the roots, replays the WAL after
 * the checkpoint LSN and, unless read_only, writes a checkpoint. Cost does
 * not grow with the amount of data stored. */
int store_open(const struct store_opts *o, struct store **ret_store);
/* Checkpoints (unless read_only or failed) and releases everything. Returns
 * the checkpoint's error, if any. NULL ok. */
int store_close(struct store *s);

/* ---- [commit] the write path ---- */
/* Appends one encoded batch (concatenated record frames) to the WAL and
 * returns its LSN. Write only. */
int store_wal_append(struct store *s, int64_t time_ns, const void *frames, size_t len, uint64_t *ret_lsn);
/* Whether a batch of len bytes fits in the WAL without a checkpoint first. */
bool store_wal_has_room(struct store *s, size_t len);
/* Makes every appended batch durable (one fdatasync per touched segment). */
int store_wal_sync(struct store *s);
/* Applies an appended batch to the PageStore: data records into data pages
 * and per-file indexes, namespace records into the namespace. Data records
 * for inodes that no longer exist are dropped. */
int store_apply(struct store *s, uint64_t lsn, int64_t time_ns, const void *frames, size_t len);
/* Whether the WAL has grown past the checkpoint threshold. */
bool store_need_checkpoint(struct store *s);
/* Checkpoint: requires every appended batch to be applied. Writes pending
 * pages, fsyncs the store, writes the other superblock, fsyncs, recycles the
 * WAL. After any failure of the write path the store is in a sticky error
 * state: every later mutating call returns -EIO. */
int store_checkpoint(struct store *s);

/* ---- [any] reads ---- */
/* Reads up to len bytes of file ino at off from the applied state;
 * *ret_n < len at the applied end. Every page and record checksum is
 * verified: a mismatch returns -EIO and logs the page number. */
int store_read(struct store *s, uint64_t ino, uint64_t off, void *buf, size_t len, size_t *ret_n);
/* Deep copy of the applied namespace (the filesystem's starting live view). */
int store_ns_clone(struct store *s, struct ns **ret_ns);
/* Applied size of a file (-ENOENT if unknown). */
int store_file_size(struct store *s, uint64_t ino, uint64_t *ret_size);

struct store_file_info {
	uint64_t records;      /* data records in the file's index */
	uint64_t raw_bytes;    /* logical bytes */
	uint64_t stored_bytes; /* bytes of the records' frames as stored */
};
int store_file_info(struct store *s, uint64_t ino, struct store_file_info *ret_info);

struct store_stats {
	uint64_t page_size;
	uint64_t pages_total;      /* store.db size in pages */
	uint64_t pages_free;
	uint64_t data_pages;
	uint64_t stored_bytes;     /* frame bytes of all live data records */
	uint64_t logical_bytes;    /* raw bytes of all live files */
	uint64_t wal_bytes_since_checkpoint;
	uint64_t checkpoints;
	uint64_t checkpoint_lsn;
	uint64_t last_lsn;
	uint64_t cache_hits, cache_misses;
	uint64_t checksum_errors;
	uint64_t replayed_batches; /* at open */
	int error;                 /* sticky error (negative errno) or 0 */
};
void store_stats(struct store *s, struct store_stats *ret_stats);

#endif
