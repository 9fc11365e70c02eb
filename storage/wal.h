/* wal.h — the write-ahead log: preallocated, recycled segment files.
 * Used only by the store (store*.c) on the commit thread (and by recovery/fsck tools).
 * Format and recovery algorithm: docs/FORMAT.md ("The write-ahead log") and the comment atop wal.c.
 * Not thread-safe: one thread (the commit thread) makes every call on a wal.
 *
 * A batch is appended as one BATCH entry (the concatenated record frames)
 * followed by its COMMIT entry; entries are checksummed with the segment's
 * salt and carry the segment's life number and the batch LSN, so stale
 * entries from an earlier life of a recycled segment never validate.
 * wal_append only writes; wal_sync makes everything appended durable.
 */
#ifndef BZ_WAL_H
#define BZ_WAL_H

#include "vfs.h"

struct wal;

/* A place in the log: where replay starts (named by the superblock). */
struct wal_pos {
	uint32_t segment; /* segment file index */
	uint64_t life;    /* the life number the segment must carry */
	uint64_t offset;  /* byte offset of the first entry to read */
};

struct wal_opts {
	uint64_t segment_bytes; /* size of each segment file (>= 64 KiB) */
	uint32_t segments;      /* number of segment files (>= 3) */
};

/* Creates and zero-fills (by writing) every segment of a new store, fsyncs
 * them and the directory. Returns the initial position in *ret_start.
 * ret_created (NULL, or o->segments flags): set for each segment file this
 * call created, success or not (a segment file already present, without a
 * header: an interrupted creation, is overwritten, not flagged). */
int wal_create(struct vfs *v, const struct wal_opts *o, struct wal_pos *ret_start, bool *ret_created);
/* Removes the segment files flagged in created (what a failed creation
 * made; a missing one is fine). Returns the first error, after trying
 * all. The caller syncs the directory. */
int wal_unlink_created(struct vfs *v, uint32_t segments, const bool *created);

/* What a directory holds of a log, without knowing its options (store.db
 * names them): the segment files "wal.000".."wal.999" present, and how many
 * carry a valid header (a segment gets one with the first batch written
 * into it; a freshly created log has none, so a log with no valid header
 * holds no committed data). first/last: lowest and highest index present. */
struct wal_probe_info {
	uint32_t files, with_header;
	uint32_t first, last;
	uint64_t bytes; /* their sizes, summed */
};
int wal_probe_dir(struct vfs *v, struct wal_probe_info *ret_info);

/* Opens the segments of an existing store (reads their headers only). */
int wal_open(struct vfs *v, const struct wal_opts *o, struct wal **ret_wal);
/* The same with the segments opened read-only (a read-only store: replay
 * only; wal_append, wal_sync and wal_recycle must not be called). */
int wal_open_ro(struct vfs *v, const struct wal_opts *o, struct wal **ret_wal);
void wal_close(struct wal *w); /* NULL ok */
/* Tests only (the daemon never calls it; its salts come from getrandom):
 * every salt w draws from now on comes from a reproducible sequence seeded
 * by seed (non-zero), so a test checks the same checksums on every run. */
void wal_seed_salts(struct wal *w, uint64_t seed);

/* Called once for each committed batch, in LSN order. A non-zero return
 * stops the replay and is returned by wal_replay. */
typedef int (*wal_batch_fn)(void *arg, uint64_t lsn, int64_t time_ns, const uint8_t *payload, size_t len);

/* Scans from start: calls fn for every batch that has a valid COMMIT entry
 * and lsn > after_lsn, stops at the first invalid entry (the torn tail is
 * cut: it will never be replayed or overwritten-in-place with the same salt).
 * LSNs must be consecutive; the first committed batch must have
 * lsn <= after_lsn + 1 (a hole ends the log).
 * Afterwards the writer is positioned at the start of a fresh segment with a
 * new life, and *ret_last_lsn is the last LSN seen (after_lsn if none).
 * The segments the scan read stay busy until wal_recycle (if they were all
 * of them, wal_has_room is false until then).
 * Must be called exactly once after wal_open, before any append. */
int wal_replay(struct wal *w, const struct wal_pos *start, uint64_t after_lsn, wal_batch_fn fn, void *arg,
	       uint64_t *ret_last_lsn);

/* Entry kinds (wal_entry_info.kind); WAL_KIND_HEADER reports a segment
 * header in wal_inspect. */
enum { WAL_KIND_HEADER = 0, WAL_KIND_BATCH = 1, WAL_KIND_COMMIT = 2, WAL_KIND_END = 3 };

/* Largest batch payload a log with these options accepts (0 if the options
 * are invalid); larger batches get -EFBIG from wal_append. */
uint64_t wal_max_payload(const struct wal_opts *o);

/* Bytes a batch of payload_len needs in the log (entries + padding). */
uint64_t wal_entry_bytes(size_t payload_len);
/* Whether a batch of payload_len fits before the log runs out of free
 * segments (if not, the caller must checkpoint first). */
bool wal_has_room(const struct wal *w, size_t payload_len);
/* Appends BATCH+COMMIT for lsn (must be last lsn + 1). Write only.
 * -EFBIG: payload larger than wal_max_payload; -ENOSPC: no room (see
 * wal_has_room; nothing changed, not sticky); -EINVAL: wrong lsn or called
 * before wal_replay. A failed write puts the wal in the sticky error state.
 * After wal_replay the caller must make a checkpoint naming wal_tail_pos()
 * durable before it acknowledges any newly appended batch. */
int wal_append(struct wal *w, uint64_t lsn, int64_t time_ns, const void *payload, size_t len);
/* fdatasync every segment written since the last sync. After a failure the
 * wal is in a sticky error state: every later call returns -EIO. */
int wal_sync(struct wal *w);
/* Bytes written (entries, END entries, segment headers) since the last
 * wal_recycle or wal_replay: the checkpoint trigger. */
uint64_t wal_used_since_checkpoint(const struct wal *w);
/* Position right after the last appended entry: a checkpoint that covers
 * every appended batch names this as its replay start. */
void wal_tail_pos(const struct wal *w, struct wal_pos *ret_pos);
/* After the superblock naming wal_tail_pos() is durable: every segment
 * other than the current one becomes free for reuse. */
void wal_recycle(struct wal *w);

/* Inspection for blazectl dump/fsck: iterate every entry (valid or not) of
 * every segment. Per segment: one WAL_KIND_HEADER report (life, valid),
 * then everything that looks like an entry (magic and a sane length; the
 * scan steps 8 bytes past anything else, so stale entries of earlier lives
 * show up too); valid = checksum/life/salt match the segment's current
 * header. Read-only. */
struct wal_entry_info {
	uint32_t segment;
	uint64_t offset;
	uint64_t life;
	uint8_t kind; /* 1 BATCH, 2 COMMIT, 3 END */
	uint64_t lsn;
	uint64_t len;
	bool valid;
};
typedef int (*wal_entry_fn)(void *arg, const struct wal_entry_info *e);
int wal_inspect(struct vfs *v, const struct wal_opts *o, wal_entry_fn fn, void *arg);

#endif
