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
	uint64_t wal_segment_bytes; /* for a new store; default 0: sized from the free space of the
				     * store's disk, a power of two from 4 to 64 MiB, the whole log at
				     * most 1/8 of it (docs/FORMAT.md §1). An existing store keeps the
				     * size recorded in its superblock whatever this says */
	uint32_t wal_segments;      /* for a new store; default 4 */
	uint64_t checkpoint_bytes;  /* checkpoint when this much WAL is used; default 1/2 of the log */
	uint64_t cache_bytes;       /* page cache for reads; default 32 MiB */
	uint32_t chunk_bytes;       /* raw bytes of a chunk (power of two, 512..1 MiB; the daemon and
				     * the attribute take 4 KiB and up, tests less); default 256 KiB;
				     * a file's user.blazefs.chunk_bytes overrides it */
	int zstd_level;             /* level open chunks are compressed at; default BZ_ZSTD_LEVEL_DEFAULT; a file's
				     * user.blazefs.zstd_level overrides it */
	uint64_t open_chunk_budget; /* memory for open chunks' buffers before the least recently
				     * appended are spilled; 0 = max(cache_bytes / 4, 16 MiB) */
	bool create;                /* create the store if the directory is empty (default true) */
	bool read_only;             /* fsck/dump, -o ro: nothing is ever written (shared lock, WAL
				     * replayed into memory, no checkpoint); mutators -EROFS */
};
void store_opts_default(struct store_opts *o);

/* Opens (creating if empty and o->create) the store: takes the lock file
 * (-EBUSY with a log line naming the holder if another process has it),
 * picks the newest valid superblock, loads the roots, replays the WAL after
 * the checkpoint LSN and, unless read_only, writes a checkpoint. Cost does
 * not grow with the amount of data stored. A creation that fails
 * (-ENOSPC: the WAL does not fit, checked before anything is written, or
 * the disk filled while zero-filling it) removes the files it made, never
 * one that was there before, and logs why and how much it needed; store.db
 * is then still missing (store_read_superblocks: -ENOENT), which tells a
 * failed creation from a recovery that ran out of space. */
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
/* Largest batch (concatenated frames) one WAL entry holds: a larger one
 * fails store_wal_append with -EFBIG. Fixed once the store is open. */
uint64_t store_wal_max_payload(struct store *s);
/* The store's default chunk_bytes (store_opts.chunk_bytes, fixed at open):
 * a file without user.blazefs.chunk_bytes is cut into chunks of this size. */
uint32_t store_chunk_bytes(const struct store *s);
/* Makes every appended batch durable (one fdatasync per touched segment). */
int store_wal_sync(struct store *s);
/* Applies an appended batch to the PageStore: data records into data pages
 * and per-file indexes, namespace records into the namespace. Data records
 * for inodes that no longer exist are dropped. */
int store_apply(struct store *s, uint64_t lsn, int64_t time_ns, const void *frames, size_t len);
/* Opened with read_only (nothing may be appended, synced or checkpointed). */
bool store_read_only(const struct store *s);
/* Space accounting for the out-of-space reserve. *ret_need: disk bytes
 * store.db may still need to grow by for the next checkpoint (and for a
 * recovery from a crash now), beyond the data still to be applied: an
 * upper bound that grows with the namespace (symlink targets, names,
 * per-file index tails, the free list). *ret_spare: bytes of free pages
 * inside store.db beyond what that checkpoint may take, which new data
 * fills before the file grows. A caller that keeps disk free + spare >=
 * need + what it has in flight can always checkpoint and recover. Any
 * thread. */
void store_space(struct store *s, uint64_t *ret_need, uint64_t *ret_spare);
/* Whether a checkpoint is due: the WAL has grown past the checkpoint
 * threshold, or files deleted since the last one hold a quarter of
 * store.db (their space comes back only after a checkpoint). */
bool store_need_checkpoint(struct store *s);
/* Whether a checkpoint now would give space back: files deleted since the
 * last one hold space, or the namespace changes since then have raised
 * the room reserved for the next checkpoint (store_space's need) by at
 * least min_bytes -- a checkpoint writes them and the reserve falls back.
 * [any] */
bool store_checkpoint_would_free(struct store *s, uint64_t min_bytes);
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
/* lseek's SEEK_DATA / SEEK_HOLE (whence) over the APPLIED state of ino:
 * *ret = the first offset >= off that is data / in a hole (the applied size
 * counts as a hole). Holes are the gaps between a file's chunks (and a file
 * with no chunks is one hole). -ENXIO: off >= the applied size, or
 * (SEEK_DATA) no data at or after off; -EINVAL: another whence. */
int store_seek(struct store *s, uint64_t ino, uint64_t off, int whence, uint64_t *ret);
/* While on, the calling thread's store_read calls read every page from
 * store.db itself, bypassing (and not filling) the page cache: an online
 * scrub verifies the disk, not a copy verified earlier (store_scrub.c). */
void store_scrub_thread(bool on);

/* Online scrub of the metadata pages (store_scrub.c): a resumable walk,
 * verified a few pages per call with no store lock held across any I/O and
 * the page cache bypassed. STORE_SCRUB_NS walks both superblocks, then the
 * namespace checkpoint chain named by the newest valid one; STORE_SCRUB_INDEX
 * walks one file's chain of full INDEX pages. Each page: checksum, type,
 * page number, `used`, chain link (and INDEX entries: st_entry_ok). */
enum store_scrub_walk { STORE_SCRUB_NS = 1, STORE_SCRUB_INDEX = 2 };
enum store_scrub_bad {
	STORE_SCRUB_OK = 0,
	STORE_SCRUB_BAD_PAGE,  /* bad_pgno fails its checksum or header (magic, type, page number) */
	STORE_SCRUB_BAD_LINK,  /* the chain ends early, runs on, or links outside store.db (bad_pgno: the page holding the link) */
	STORE_SCRUB_BAD_BODY,  /* a valid page whose content is wrong (used bytes, index entries, stream length) */
	STORE_SCRUB_BAD_STALE, /* (superblocks, read-only stores only) the older superblock is invalid: a torn checkpoint; fsck's warning */
};
struct store_scrub_meta {
	/* the cursor, in/out; all 0 to start a walk */
	uint64_t gen;   /* NS: generation of the superblock walked; INDEX: chain pages when the walk began */
	uint64_t pos;   /* pages of the walk verified (NS: superblocks 0 and 1 are positions 0 and 1) */
	uint64_t pgno;  /* the next chain page (the link of the last one verified) */
	uint64_t bytes; /* NS: stream bytes of the pages verified so far */
	/* out */
	uint64_t total;    /* pages of the whole walk */
	uint64_t done;     /* pages verified by this call */
	uint64_t bad_pgno; /* with bad */
	unsigned bad;      /* enum store_scrub_bad: the walk stopped at damage (or, STALE, noted it) */
	bool end;          /* the walk is complete (or cannot go on past the damage) */
	bool restarted;    /* NS: a checkpoint replaced the chain: the walk began again */
};
/* Verifies up to max_pages pages of the walk `what` (ino: INDEX only) from
 * the cursor *c. Returns 0; -EAGAIN when a superblock was written meanwhile
 * (a checkpoint: nothing of this call counts, the cursor is unchanged: call
 * again); -ENOENT (INDEX) when the file has no index any more; other
 * negative errnos (-ENOMEM, -EINVAL). A page read that fails is damage. */
int store_scrub_meta(struct store *s, unsigned what, uint64_t ino, uint64_t max_pages, struct store_scrub_meta *c);
/* Bytes of every file's INDEX pages (an estimate for progress: counted in
 * slices without holding the store lock for long). */
uint64_t store_index_bytes(struct store *s);
/* Deep copy of the applied namespace (tools, tests). */
int store_ns_clone(struct store *s, struct ns **ret_ns);
/* The filesystem's live view: a namespace backed by the applied one
 * (ns.h, ns_new_backed), which loads each inode and each directory's
 * entries from it, under the store lock, the first time it needs them.
 * Every namespace op must be applied to it before the store applies it
 * (the pipeline's order); the store must outlive it. */
int store_ns_backed(struct store *s, struct ns **ret_ns);
/* A format 5 store loads its namespace from its trees on demand (FORMAT.md
 * §6a): the rest is loaded a step at a time, each under the store lock
 * exclusive, by whoever calls this (the commit thread when idle). Returns
 * 1 while more remains, 0 once everything is loaded, or -errno. */
int store_ns_load_more(struct store *s);
/* The same with a budget of keys (store_ns_load_more: 512, about 1 ms):
 * a busy commit thread takes small steps between its rounds. */
int store_ns_load_some(struct store *s, unsigned keys);
bool store_ns_loaded(const struct store *s);
/* A thread waits to load what it needs: the background load steps aside. */
bool store_ns_load_waiting(const struct store *s);
/* Applied size of a file (-ENOENT if unknown). */
int store_file_size(struct store *s, uint64_t ino, uint64_t *ret_size);

struct store_file_info {
	uint64_t records;      /* data records in the file's index */
	uint64_t raw_bytes;    /* logical bytes */
	uint64_t stored_bytes; /* bytes of the records' frames as stored */
	uint64_t size;         /* applied size (data and holes) */
};
int store_file_info(struct store *s, uint64_t ino, struct store_file_info *ret_info);

struct store_stats {
	uint64_t page_size;
	uint64_t pages_total;      /* store.db size in pages */
	uint64_t pages_free;       /* free and pending pages below the high-water mark */
	uint64_t free_extents;     /* extents they form */
	uint64_t pages_released;   /* pages of deleted files and old chains released (since open) */
	uint64_t store_db_truncations; /* times store.db was cut to give space back (since open) */
	uint64_t data_pages;       /* extent and pack pages written */
	uint64_t pack_pages;       /* pack pages holding live frames */
	uint64_t pack_live_bytes;  /* frame bytes still named in those pages */
	uint64_t pages_cleaned;    /* pack pages emptied by cleaning (since open) */
	uint64_t chunks_sealed;    /* chunks sealed from open chunks (since open) */
	uint64_t tails_written;    /* open chunks written as tail frames (since open) */
	uint64_t chunks_split;     /* chunks stored split: full pages + a packed fragment (since open) */
	uint64_t open_chunk_bytes; /* memory held by open chunks' buffers */
	uint64_t pages_relocated;  /* extent pages moved down to give the end of store.db back (since open) */
	uint64_t stored_bytes;     /* frame bytes of all live data records */
	uint64_t logical_bytes;    /* raw bytes of all live files */
	uint64_t wal_bytes_since_checkpoint;
	uint64_t checkpoints;
	uint64_t checkpoint_lsn;
	uint64_t last_lsn;
	uint64_t cache_hits, cache_misses;
	uint64_t checksum_errors;
	uint64_t replayed_batches; /* at open */
	uint64_t space_need, space_spare; /* store_space */
	int error;                 /* sticky error (negative errno) or 0 */
};
void store_stats(struct store *s, struct store_stats *ret_stats);

/* Test hooks (tests only): set before any store is used, NULL clears. */
struct store_test_hooks {
	void *arg;
	/* In store_read, before decoding (decompressing, hash-checking) each
	 * record, with no store lock held: e.g. block there to prove that the
	 * commit thread never waits for a reader's decompression. */
	void (*before_decode)(void *arg, uint64_t ino, uint64_t off);
	/* A deliberate bug (enum store_mutant, 0 = none) that the crash
	 * enumeration must catch: crash_enum --mutant NAME, tools/test's
	 * mutant stage. Tests only; no option of the daemon reaches it. */
	int mutant;
};
enum store_mutant {
	STORE_MUTANT_NONE = 0,
	/* a chunk's extent, when released (a deleted file's, a superseded
	 * tail's), is free at once instead of pending until the next
	 * superblock is durable */
	STORE_MUTANT_FREE_EARLY = 1,
	/* the previous namespace chain, still named by the durable superblock,
	 * is free at once: the new chain may overwrite it before the new
	 * superblock is durable */
	STORE_MUTANT_REUSE_DURABLE = 2,
	/* store.db is cut to a smaller high-water mark before the superblock
	 * naming it is durable */
	STORE_MUTANT_TRUNCATE_EARLY = 3,
	/* a checkpoint does not write the changed open chunks as tails: the
	 * bytes appended since the last tail are in neither the new
	 * checkpoint nor the WAL it lets go */
	STORE_MUTANT_TAIL_SKIP = 4,
	/* a checkpoint leaves one dirty inode (not the root) out of the
	 * namespace trees: its change is in neither the new checkpoint nor
	 * the WAL it lets go */
	STORE_MUTANT_FORGET_DIRTY = 5,
	/* a checkpoint leaves one pack page whose live bytes changed out of
	 * the pack tree: after a crash the store counts that page's bytes as
	 * the checkpoint before (fsck: the index names other live bytes) */
	STORE_MUTANT_FORGET_PACK = 6,
	/* format 5's namespace loaded on demand: an op does not load its
	 * directories before the namespace notes what their names held
	 * (ns_test_no_preload), so an inode it unlinks is not marked dirty:
	 * the checkpoint keeps its old record (a link count too high, or an
	 * inode no entry names) */
	STORE_MUTANT_NO_PRELOAD = 7,
	/* a split chunk's fragment (format 6) is packed without counting its
	 * bytes in the pack page's live bytes: the page is released while the
	 * chunk still names it, and reused */
	STORE_MUTANT_SPLIT_UNCOUNTED = 8,
};
void store_set_test_hooks(const struct store_test_hooks *h);

/* ---- offline inspection and checking (blazectl fsck/dump) ----
 * Single-threaded tools only: nothing else may use the store meanwhile.
 * Format of what is checked: docs/BLAZECTL.md. */

/* One superblock as found on disk (no store needs to be open: works on a
 * store whose superblocks are both bad, and takes no lock). */
struct store_sb_info {
	bool present;        /* the page exists in store.db */
	bool valid;          /* header, checksum and fields check out */
	const char *why;     /* when !valid: the failed check (static string) */
	uint64_t generation, checkpoint_lsn;
	uint32_t wal_segment, wal_segments;
	uint64_t wal_life, wal_offset, wal_segment_bytes;
	uint64_t next_ino, hwm;
	uint64_t ns_first, ns_pages, ns_bytes;
	uint64_t stored_bytes, logical_bytes, data_pages, checkpoints;
	uint32_t format;                /* format version as stored */
	uint64_t ino_root, ino_count;   /* format >= 3: the namespace trees (0 otherwise) */
	uint64_t dent_root, dent_count;
	uint64_t pack_root, pack_count; /* format 4: the pack tree (0 otherwise) */
};
/* Reads pages 0 and 1 of store.db in the store directory v.
 * -ENOENT: no store.db. */
int store_read_superblocks(struct vfs *v, struct store_sb_info ret_sb[2]);

/* One page of store.db as found on disk (header fields as stored). */
struct store_page_info {
	uint64_t pgno;
	bool magic_ok, ok;   /* ok: magic, checksum, pgno and used all check out */
	uint8_t type;        /* 1 SUPER, 2 DATA, 3 INDEX, 4 NSMETA, 5 PACK (as stored) */
	uint64_t stored_pgno, lsn, next;
	uint32_t used;
	bool zero;           /* the page is all zero bytes */
};
typedef int (*store_page_fn)(void *arg, const struct store_page_info *pi);
/* Calls fn for every page of store.db (raw scan, no store needs to be
 * open); a non-zero return stops the scan and is returned. */
int store_scan_pages(struct vfs *v, store_page_fn fn, void *arg);
const char *store_page_type_name(uint8_t type);

/* One data record of a file, in index order. */
struct store_record_info {
	uint64_t off;        /* logical offset */
	uint32_t raw_len, frame_len;
	uint64_t page;       /* the extent's first page, or the pack page */
	uint32_t npages;     /* extent pages; 0 = packed */
	uint32_t pg_off;     /* packed: payload offset of the frame in its page; split: of the fragment */
	uint64_t tpage;      /* split (format 6): the pack page of the frame's last bytes; 0 = not split */
	uint32_t stored_len; /* from the frame header (0 if unreadable) */
	uint8_t codec;       /* enum rec_codec (from the frame header) */
	int status;          /* 0, or why the frame fails (-EIO page, -EBADMSG record) */
	uint8_t kind;        /* STORE_REC_CHUNK, _TAIL (the open chunk as last written),
			      * _OPEN (open-chunk bytes only in the WAL: no frame) */
};
enum { STORE_REC_CHUNK = 0, STORE_REC_TAIL = 1, STORE_REC_OPEN = 2 };
typedef int (*store_record_fn)(void *arg, const struct store_record_info *ri);
/* Calls fn for each record of file ino in ascending offset order, verifying
 * each frame fully (header and payload hash). -ENOENT: no such inode. */
int store_file_records(struct store *s, uint64_t ino, store_record_fn fn, void *arg);

/* Full consistency check of an open store (read-only open for fsck; the
 * state checked is the one a mount would see: the newest checkpoint plus
 * the replayed WAL). See docs/BLAZECTL.md for every check. */
enum store_check_sev { STORE_CHECK_INFO = 0, STORE_CHECK_WARN = 1, STORE_CHECK_ERROR = 2 };
struct store_check_ops {
	/* A finding (one line, no newline). May be NULL. */
	void (*problem)(void *arg, enum store_check_sev sev, const char *msg);
	/* Progress in bytes verified; called often. May be NULL. */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
};
/* Flags for store_check. */
#define STORE_CHECK_FREE_UNREACHABLE 1u /* repair: put leaked pages on the free
					 * list (needs a read-write store; the
					 * caller checkpoints afterwards) */
struct store_check_report {
	uint64_t errors, warnings;
	/* pages */
	uint64_t pages_file;     /* store.db size in pages */
	uint64_t pages_hwm;      /* pages allocated (high-water mark) */
	uint64_t sb_pages, data_pages, index_pages, ns_pages;
	uint64_t tree_pages;     /* pages of the namespace trees (format 3) */
	uint64_t free_pages, pending_pages;
	uint64_t bad_pages;      /* reachable pages failing their checks */
	uint64_t unreachable;    /* below the high-water mark, neither used nor free (leaked) */
	uint64_t beyond;         /* pages of the file at or past the high-water mark */
	uint64_t freed;          /* STORE_CHECK_FREE_UNREACHABLE: leaked pages freed */
	/* records and files */
	uint64_t inodes, dirs, files, symlinks, orphans;
	uint64_t records, bad_records, raw_bytes, stored_bytes;
	/* WAL */
	uint64_t wal_batches;    /* valid committed batches after the checkpoint */
	uint64_t wal_first_lsn, wal_last_lsn;
	uint64_t wal_tail_entries; /* entries of the live log beyond its valid end */
	bool wal_torn;           /* wal_tail_entries > 0: a torn or corrupt tail */
};
/* For a store that store_open refuses (-EUCLEAN, -EIO): reports through
 * ops->problem what is wrong with its superblocks and with the newest
 * checkpoint's namespace chain, without opening it (no lock taken).
 * *ret_errors = number of errors found (0: the cause is elsewhere, e.g. an
 * I/O error or a WAL that does not replay). */
int store_diagnose(struct vfs *v, const struct store_check_ops *ops, void *arg, uint64_t *ret_errors);
int store_check(struct store *s, unsigned flags, const struct store_check_ops *ops, void *arg,
		struct store_check_report *ret_report);

#endif
