/* stats.c — the control files in MOUNTPOINT/.blazefs: "stats" (JSON) and
 * "metrics" (the Prometheus text exposition format, version 0.0.4). Both are
 * generated when the file is opened (the control files are direct_io, so
 * cat/read see the snapshot whatever st_size says), from the same counters:
 * pipe_stats() of the pipeline and the store, and struct fs_counters.
 *
 * stats: one JSON object: every field of pipe_stats_json() (the pipeline and
 * the store: stage histograms, batches, records, bytes, queue depths,
 * errors; see docs/ARCHITECTURE.md) plus an "fs" object with the daemon's
 * own counters:
 *
 *   "fs": {
 *     "store": "/var/lib/blazefs/default",
 *     "mounted_at_ns": <wall clock>,
 *     "options": {"workers": N, "zstd_level": N, "worm": bool,
 *                 "retain": "30d" ("" without retain=),
 *                 "writeback_cache": bool, "sync_close": bool},
 *     "live_inodes": N,          inodes in the live namespace
 *     "kernel_inodes": N,        inodes the kernel holds references to
 *     "open_files": N,
 *     "writes": N, "write_bytes": N,   accepted write requests, bytes appended
 *     "overlap_bytes": N,        identical bytes below the end accepted
 *     "zero_extend_bytes": N,    zeros appended by growing truncates
 *     "holes_filled": N, "hole_bytes": N,  sparse writes on fresh files
 *     "held_writes": N,          writeback cache: page writes held past the end
 *     "order_waits": N,          writeback cache: page writes that waited for the ones below them
 *     "held_bytes": N, "held_bytes_max": N,  bytes held now / at most
 *     "retrieved_bytes": N,      dirty bytes fetched from the kernel (truncates, sync, catch-up)
 *     "invalidations": N,        kernel cache ranges dropped after refusals
 *     "nospc_pages": N,          writeback cache: pages refused after one refused for lack of space
 *     "scrub_bytes": N, "scrub_damaged": N,  online scrub (scrub.c): bytes verified, damage found
 *     "nsops": N, "flushes": N, "fsyncs": N,
 *     "errors": N,               EIO/EROFS/ENOSPC replies
 *     "space_reclaims": N,       checkpoints made for an operation short of space (space.c)
 *     "failed": bool,            the pipeline failed: read-only until remount
 *     "refusals": {"total": N, "overwrite": N, "past_eof": N, "shrink": N,
 *                  "o_trunc": N, "worm": N, "fallocate": N, "control": N}
 *   }
 *
 * metrics: one sample per JSON number (the table mapping the two is in
 * docs/FILESYSTEM.md), every sample labelled store="STORE_DIR" so several
 * mounts can share one node_exporter textfile directory or one scrape. Names
 * follow the Prometheus conventions: prefix blazefs_, counters end in
 * _total, units in the name (_bytes, _seconds), base units (seconds, not
 * microseconds). The stage latencies are one histogram,
 * blazefs_stage_duration_seconds{stage=...}, built from the log2 buckets of
 * struct bz_hist: bucket i holds integer nanosecond values in [2^i, 2^(i+1)),
 * i.e. <= 2^(i+1) - 1 ns, which is its exact cumulative upper bound "le"
 * ((2^(i+1) - 1) * 1e-9 s). Buckets from about 1 us to 69 s are emitted,
 * then +Inf; observations above 69 s are in +Inf only. No timestamps (the
 * textfile collector refuses them).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs.h"

struct sbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void BZ_PRINTF(2, 3) sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err)
		return;
	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap); /* p is NULL until the first grow */
		va_end(ap);
		if (n < 0) {
			b->err = -EINVAL;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap * 2 + (size_t)n;
		char *np = realloc(b->p, ncap);
		if (!np) {
			b->err = -ENOMEM;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

/* Minimal JSON string escaping (paths). */
static void sb_json_str(struct sbuf *b, const char *s)
{
	sb_printf(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			sb_printf(b, "\\%c", c);
		else if (c < 0x20)
			sb_printf(b, "\\u%04x", c);
		else
			sb_printf(b, "%c", c);
	}
	sb_printf(b, "\"");
}

/* -o retain=: its period ("30d"), "" without one. */
static void retain_opt(const struct fs *fs, char *buf, size_t cap)
{
	buf[0] = 0;
	if (fs->opts.has_retain)
		fs_duration_format(fs->opts.retain_s, buf, cap);
}

static void fs_object(struct fs *fs, struct sbuf *b) EXCLUDES(fs_ns_lock)
{
	uint64_t live, kernel, total = 0;
	char retain[32];

	bz_mutex_lock(&fs_ns_lock);
	live = ns_count(fs->ns);
	kernel = fs->itab_count;
	bz_mutex_unlock(&fs_ns_lock);

	sb_printf(b, "\"fs\":{\"store\":");
	sb_json_str(b, fs->store_dir ? fs->store_dir : "");
	sb_printf(b, ",\"mounted_at_ns\":%lld", (long long)fs->mount_time_ns);
	retain_opt(fs, retain, sizeof(retain));
	sb_printf(b,
		  ",\"options\":{\"workers\":%u,\"zstd_level\":%d,\"worm\":%s,\"retain\":\"%s\","
		  "\"writeback_cache\":%s,\"sync_close\":%s}",
		  fs->opts.pipe.workers, fs->opts.pipe.zstd_level, fs->opts.worm ? "true" : "false", retain,
		  fs->opts.writeback_cache ? "true" : "false", fs->opts.sync_close ? "true" : "false");
	sb_printf(b, ",\"live_inodes\":%llu,\"kernel_inodes\":%llu", (unsigned long long)live,
		  (unsigned long long)kernel);
#define F(name) sb_printf(b, ",\"" #name "\":%llu", (unsigned long long)FS_READ(fs, name))
	F(open_files);
	F(writes);
	F(write_bytes);
	F(overlap_bytes);
	F(zero_extend_bytes);
	F(holes_filled);
	F(hole_bytes);
	F(held_writes);
	F(order_waits);
	F(nospc_pages);
	sb_printf(b, ",\"held_bytes\":%llu", (unsigned long long)__atomic_load_n(&fs->held_total, __ATOMIC_RELAXED));
	F(held_bytes_max);
	F(retrieved_bytes);
	F(invalidations);
	F(scrub_bytes);
	F(scrub_damaged);
	F(nsops);
	F(flushes);
	F(fsyncs);
	F(errors);
	F(space_reclaims);
#undef F
	sb_printf(b, ",\"failed\":%s", __atomic_load_n(&fs->failed, __ATOMIC_RELAXED) ? "true" : "false");
	for (int i = 0; i < FS_REF_COUNT; i++)
		total += FS_READ(fs, refusals[i]);
	sb_printf(b, ",\"refusals\":{\"total\":%llu", (unsigned long long)total);
	for (int i = 0; i < FS_REF_COUNT; i++)
		sb_printf(b, ",\"%s\":%llu", fs_refusal_name((enum fs_refusal)i),
			  (unsigned long long)FS_READ(fs, refusals[i]));
	sb_printf(b, "}}");
}

int fs_stats_json(struct fs *fs, char **ret_buf, size_t *ret_len)
{
	struct sbuf b = {0};
	size_t cap = 64 << 10;
	int n = -ENOSPC, r = 0;

	/* The pipeline's object, grown until it fits. */
	while (cap <= (16u << 20)) {
		char *np = realloc(b.p, cap);
		if (!np) {
			r = -ENOMEM;
			goto out;
		}
		b.p = np;
		b.cap = cap;
		n = pipe_stats_json(fs->pipe, b.p, cap);
		if (n != -ENOSPC)
			break;
		cap *= 2;
	}
	if (n < 0) {
		/* No pipeline object: report ours alone. */
		bz_warn("pipe_stats_json: %s", strerror(-n));
		n = snprintf(b.p, b.cap, "{}");
	}
	b.len = (size_t)n;
	/* Reopen the object: drop the closing brace (and trailing space). */
	while (b.len > 0 && b.p[b.len - 1] != '}')
		b.len--;
	if (b.len == 0) {
		b.len = 0;
		sb_printf(&b, "{");
	} else {
		size_t i;
		b.len--; /* the '}' */
		for (i = b.len; i > 0 && strchr(" \t\r\n", b.p[i - 1]); i--)
			;
		b.len = i;
		if (i > 0 && b.p[i - 1] != '{')
			sb_printf(&b, ",");
	}
	fs_object(fs, &b);
	sb_printf(&b, "}\n");
	r = b.err;
out:
	if (r < 0) {
		free(b.p);
		return r;
	}
	*ret_buf = b.p;
	*ret_len = b.len;
	return 0;
}

/* ---- metrics: the Prometheus text exposition format 0.0.4 ---- */

#define PROM_VERSION "0.1.0"
/* Emitted buckets of the nanosecond histograms: i = 9 (le 1.023 us) to
 * i = 35 (le 68.7 s). */
#define PROM_NS_FIRST 9
#define PROM_NS_LAST 35
/* Of the group-size histogram (batches per fdatasync): le 1, 3, 7 .. 4095. */
#define PROM_GROUP_LAST 11

struct prom {
	struct sbuf *b;
	const char *lbl; /* store="..." */
};

/* A label value: backslash, double quote and newline escaped. */
static void sb_label_value(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			sb_printf(b, "\\%c", *s);
		else if (*s == '\n')
			sb_printf(b, "\\n");
		else
			sb_printf(b, "%c", *s);
	}
}

static void prom_head(struct prom *p, const char *name, const char *type, const char *help)
{
	sb_printf(p->b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_u64(struct prom *p, const char *name, const char *type, const char *help, uint64_t v)
{
	prom_head(p, name, type, help);
	sb_printf(p->b, "%s{%s} %llu\n", name, p->lbl, (unsigned long long)v);
}

static void prom_i64(struct prom *p, const char *name, const char *type, const char *help, int64_t v)
{
	prom_head(p, name, type, help);
	sb_printf(p->b, "%s{%s} %lld\n", name, p->lbl, (long long)v);
}

/* Nanoseconds as decimal seconds, exactly. */
static void sb_ns_as_seconds(struct sbuf *b, uint64_t ns)
{
	sb_printf(b, "%llu.%09llu", (unsigned long long)(ns / 1000000000u), (unsigned long long)(ns % 1000000000u));
}

/* The samples of one histogram series (HELP/TYPE printed by the caller).
 * extra: another label ("stage=\"apply\"") or "". ns: the recorded values
 * are nanoseconds, exposed as seconds; otherwise plain counts. */
static void prom_hist(struct prom *p, const char *name, const char *extra, const struct bz_hist *h, int first,
		      int last, bool ns)
{
	const char *sep = *extra ? "," : "";
	uint64_t cum = 0, total = 0;

	/* The count is the buckets' total, not h->count: the snapshot reads the
	 * fields one by one while observations go on, and the exposition must
	 * stay consistent (+Inf == _count >= every bucket). */
	for (int i = 0; i < BZ_HIST_BUCKETS; i++)
		total += h->bucket[i];
	for (int i = 0; i < first; i++)
		cum += h->bucket[i];
	for (int i = first; i <= last && i < BZ_HIST_BUCKETS; i++) {
		uint64_t le = (UINT64_C(1) << (i + 1)) - 1; /* bucket i: integer values <= le */
		cum += h->bucket[i];
		sb_printf(p->b, "%s_bucket{%s%s%s,le=\"", name, p->lbl, sep, extra);
		if (ns)
			sb_printf(p->b, "%.12g", (double)le * 1e-9);
		else
			sb_printf(p->b, "%llu", (unsigned long long)le);
		sb_printf(p->b, "\"} %llu\n", (unsigned long long)cum);
	}
	sb_printf(p->b, "%s_bucket{%s%s%s,le=\"+Inf\"} %llu\n", name, p->lbl, sep, extra,
		  (unsigned long long)total);
	sb_printf(p->b, "%s_sum{%s%s%s} ", name, p->lbl, sep, extra);
	if (ns)
		sb_ns_as_seconds(p->b, h->sum);
	else
		sb_printf(p->b, "%llu", (unsigned long long)h->sum);
	sb_printf(p->b, "\n%s_count{%s%s%s} %llu\n", name, p->lbl, sep, extra, (unsigned long long)total);
}

static void prom_pipeline(struct prom *p, const struct pipe_stats *st)
{
	const struct store_stats *ss = &st->store;
	char extra[64];

	/* pipeline counters ("batches", "records", ... in the JSON) */
	prom_u64(p, "blazefs_batches_total", "counter", "Batches appended to the WAL.", st->batches);
	prom_u64(p, "blazefs_records_total", "counter", "Records (data and namespace) appended to the WAL.",
		 st->records);
	prom_u64(p, "blazefs_namespace_records_total", "counter", "Namespace records appended to the WAL.",
		 st->ns_records);
	prom_u64(p, "blazefs_logical_bytes_total", "counter",
		 "Raw bytes of the records appended to the WAL (namespace payloads included).", st->bytes_in);
	prom_u64(p, "blazefs_wal_written_bytes_total", "counter",
		 "Bytes of encoded (compressed) record frames written to the WAL.", st->bytes_stored);
	prom_u64(p, "blazefs_wal_fdatasyncs_total", "counter", "fdatasync calls on the WAL.", st->fdatasyncs);
	prom_u64(p, "blazefs_checkpoints_total", "counter", "Checkpoints written by the pipeline since mount.",
		 st->checkpoints);
	prom_u64(p, "blazefs_writer_blocked_total", "counter",
		 "Appends that waited for room under the in-flight limit.", st->writer_blocked);
	prom_u64(p, "blazefs_commit_wakeups_total", "counter", "Times the commit thread was woken by a signal (not by its own timer).",
		 st->commit_wakeups);
	prom_u64(p, "blazefs_linger_arms_total", "counter",
		 "First records of a batch that had to wake the commit thread to arm the linger timer.",
		 st->linger_arms);
	prom_u64(p, "blazefs_pipeline_errors_total", "counter", "Errors met by the pipeline.", st->errors);
	prom_i64(p, "blazefs_pipeline_error", "gauge", "Sticky pipeline error as a negative errno, 0 when none.",
		 st->error);
	prom_u64(p, "blazefs_sealed_seq", "gauge", "Sequence number of the last sealed batch.", st->sealed_seq);
	prom_u64(p, "blazefs_written_seq", "gauge", "Sequence number of the last batch written to the WAL.",
		 st->written_seq);
	prom_u64(p, "blazefs_durable_seq", "gauge", "Sequence number of the last batch made durable (fdatasync).",
		 st->durable_seq);
	prom_u64(p, "blazefs_workers", "gauge", "Encoder threads (0: encoding on the commit thread).", st->workers);
	prom_u64(p, "blazefs_queue_depth", "gauge", "Sealed batches waiting for an encoder.", st->queue_depth);
	prom_u64(p, "blazefs_reorder_depth", "gauge", "Encoded batches waiting for an earlier one.",
		 st->reorder_depth);
	prom_u64(p, "blazefs_inflight_bytes", "gauge", "Bytes accepted but not yet applied to the store.",
		 st->inflight_bytes);
	prom_u64(p, "blazefs_inflight_max_bytes", "gauge", "High-water mark of blazefs_inflight_bytes.",
		 st->inflight_max);

	prom_head(p, "blazefs_stage_duration_seconds", "histogram",
		  "Time spent per pipeline stage (one observation per batch, per group for fdatasync, per barrier for ack).");
	for (int i = 0; i < PIPE_ST_COUNT; i++) {
		snprintf(extra, sizeof(extra), "stage=\"%s\"", pipe_stage_name((enum pipe_stage)i));
		prom_hist(p, "blazefs_stage_duration_seconds", extra, &st->stage[i], PROM_NS_FIRST, PROM_NS_LAST, true);
	}
	prom_head(p, "blazefs_group_commit_batches", "histogram", "Batches made durable by one WAL fdatasync.");
	prom_hist(p, "blazefs_group_commit_batches", "", &st->group_size, 0, PROM_GROUP_LAST, false);

	/* the store ("store" object in the JSON) */
	prom_u64(p, "blazefs_store_page_size_bytes", "gauge", "Page size of store.db.", ss->page_size);
	prom_u64(p, "blazefs_store_pages", "gauge", "Pages in store.db.", ss->pages_total);
	prom_u64(p, "blazefs_store_free_pages", "gauge", "Free and pending pages in store.db.", ss->pages_free);
	prom_u64(p, "blazefs_store_data_pages", "gauge", "Extent and pack pages written to store.db.", ss->data_pages);
	prom_u64(p, "blazefs_store_free_extents", "gauge", "Extents the free and pending pages of store.db form.",
		 ss->free_extents);
	prom_u64(p, "blazefs_store_released_pages_total", "counter",
		 "Pages of deleted files and old namespace chains released since the store was opened.",
		 ss->pages_released);
	prom_u64(p, "blazefs_store_pack_pages", "gauge", "Pack pages of store.db holding live frames.",
		 ss->pack_pages);
	prom_u64(p, "blazefs_store_pack_live_bytes", "gauge",
		 "Frame bytes in pack pages still named by an index entry (the rest is reclaimable).",
		 ss->pack_live_bytes);
	prom_u64(p, "blazefs_store_cleaned_pages_total", "counter",
		 "Pack pages emptied by cleaning (their live frames moved) since the store was opened.",
		 ss->pages_cleaned);
	prom_u64(p, "blazefs_store_chunks_sealed_total", "counter",
		 "Chunks sealed from files' open chunks (small appends compressed together) since open.",
		 ss->chunks_sealed);
	prom_u64(p, "blazefs_store_tails_written_total", "counter",
		 "Open chunks written as tail frames (at checkpoints and spills) since open.", ss->tails_written);
	prom_u64(p, "blazefs_store_chunks_split_total", "counter",
		 "Chunks stored split (full pages and a fragment packed with other frames) since open.",
		 ss->chunks_split);
	prom_u64(p, "blazefs_store_open_chunk_bytes", "gauge", "Memory held by the files' open chunk buffers.",
		 ss->open_chunk_bytes);
	prom_u64(p, "blazefs_store_relocated_pages_total", "counter",
		 "Extent pages moved down so that the end of store.db can be given back (since open).",
		 ss->pages_relocated);
	prom_u64(p, "blazefs_store_db_truncations_total", "counter",
		 "Times store.db was cut to give free space at its end back to the disk (since open).",
		 ss->store_db_truncations);
	prom_u64(p, "blazefs_store_stored_bytes", "gauge", "Bytes of the live files' record frames as stored.",
		 ss->stored_bytes);
	prom_u64(p, "blazefs_store_logical_bytes", "gauge", "Logical bytes of the live files.", ss->logical_bytes);
	prom_u64(p, "blazefs_wal_since_checkpoint_bytes", "gauge", "WAL bytes written since the last checkpoint.",
		 ss->wal_bytes_since_checkpoint);
	prom_u64(p, "blazefs_store_checkpoints_total", "counter", "Checkpoints of the store since it was created.",
		 ss->checkpoints);
	prom_u64(p, "blazefs_store_checkpoint_lsn", "gauge", "LSN of the last checkpoint.", ss->checkpoint_lsn);
	prom_u64(p, "blazefs_store_last_lsn", "gauge", "LSN of the last batch appended to the WAL.", ss->last_lsn);
	prom_u64(p, "blazefs_cache_hits_total", "counter", "Page cache hits.", ss->cache_hits);
	prom_u64(p, "blazefs_cache_misses_total", "counter", "Page cache misses.", ss->cache_misses);
	prom_u64(p, "blazefs_checksum_errors_total", "counter", "Page or record checksum mismatches found by reads.",
		 ss->checksum_errors);
	prom_u64(p, "blazefs_store_replayed_batches", "gauge", "WAL batches replayed when the store was opened.",
		 ss->replayed_batches);
	prom_u64(p, "blazefs_store_space_need_bytes", "gauge",
		 "Disk space the next checkpoint (and a recovery) may need beyond store.db's free pages.",
		 ss->space_need);
	prom_u64(p, "blazefs_store_space_spare_bytes", "gauge",
		 "Free pages of store.db beyond what the next checkpoint needs (usable by new data).",
		 ss->space_spare);
	prom_i64(p, "blazefs_store_error", "gauge", "Sticky store error as a negative errno, 0 when none.", ss->error);
}

static void prom_fs(struct prom *p, struct fs *fs) EXCLUDES(fs_ns_lock)
{
	uint64_t live, kernel;
	char retain[32];

	bz_mutex_lock(&fs_ns_lock);
	live = ns_count(fs->ns);
	kernel = fs->itab_count;
	bz_mutex_unlock(&fs_ns_lock);

	retain_opt(fs, retain, sizeof(retain));
	prom_head(p, "blazefs_info", "gauge", "Constant 1; the labels give the version and the mount options.");
	sb_printf(p->b,
		  "blazefs_info{%s,version=\"%s\",workers=\"%u\",zstd_level=\"%d\",worm=\"%s\",retain=\"%s\","
		  "writeback_cache=\"%s\",sync_close=\"%s\"} 1\n",
		  p->lbl, PROM_VERSION, fs->opts.pipe.workers, fs->opts.pipe.zstd_level,
		  fs->opts.worm ? "true" : "false", retain, fs->opts.writeback_cache ? "true" : "false",
		  fs->opts.sync_close ? "true" : "false");
	prom_head(p, "blazefs_mount_time_seconds", "gauge", "When the store was mounted, seconds since the epoch.");
	sb_printf(p->b, "blazefs_mount_time_seconds{%s} ", p->lbl);
	sb_ns_as_seconds(p->b, fs->mount_time_ns > 0 ? (uint64_t)fs->mount_time_ns : 0);
	sb_printf(p->b, "\n");
	prom_u64(p, "blazefs_inodes", "gauge", "Inodes in the live namespace.", live);
	prom_u64(p, "blazefs_kernel_inodes", "gauge", "Inodes the kernel holds references to.", kernel);
	prom_u64(p, "blazefs_open_files", "gauge", "Open files.", FS_READ(fs, open_files));
	prom_u64(p, "blazefs_writes_total", "counter", "Accepted write requests.", FS_READ(fs, writes));
	prom_u64(p, "blazefs_written_bytes_total", "counter", "Bytes appended by write requests.",
		 FS_READ(fs, write_bytes));
	prom_u64(p, "blazefs_overlap_bytes_total", "counter",
		 "Bytes of writes below the end accepted because they equal the stored ones.",
		 FS_READ(fs, overlap_bytes));
	prom_u64(p, "blazefs_scrub_bytes_total", "counter", "Bytes verified against the disk by online scrub.",
		 FS_READ(fs, scrub_bytes));
	prom_u64(p, "blazefs_scrub_damaged_total", "counter", "Damaged ranges and metadata pages found by online scrub.",
		 FS_READ(fs, scrub_damaged));
	prom_u64(p, "blazefs_zero_extend_bytes_total", "counter", "Zero bytes appended by growing truncates.",
		 FS_READ(fs, zero_extend_bytes));
	prom_u64(p, "blazefs_holes_filled_total", "counter",
		 "Writes past the end on the descriptor that created the file (gap filled with zeros).",
		 FS_READ(fs, holes_filled));
	prom_u64(p, "blazefs_hole_bytes_total", "counter", "Zero bytes appended for those gaps.",
		 FS_READ(fs, hole_bytes));
	prom_u64(p, "blazefs_held_writes_total", "counter",
		 "Writeback cache: page writes held past the end until the bytes below them arrived.",
		 FS_READ(fs, held_writes));
	prom_u64(p, "blazefs_nospc_pages_total", "counter",
		 "Writeback cache: page writes refused because a page before them was refused for lack of space "
		 "and no writer had been told yet.",
		 FS_READ(fs, nospc_pages));
	prom_u64(p, "blazefs_order_waits_total", "counter",
		 "Writeback cache: page writes that waited for the ones below them instead of being held.",
		 FS_READ(fs, order_waits));
	prom_u64(p, "blazefs_held_bytes", "gauge", "Writeback cache: bytes of page writes held now.",
		 __atomic_load_n(&fs->held_total, __ATOMIC_RELAXED));
	prom_u64(p, "blazefs_held_max_bytes", "gauge", "High-water mark of blazefs_held_bytes.",
		 FS_READ(fs, held_bytes_max));
	prom_u64(p, "blazefs_retrieved_bytes_total", "counter",
		 "Writeback cache: bytes fetched back from the kernel cache (FUSE_NOTIFY_RETRIEVE).",
		 FS_READ(fs, retrieved_bytes));
	prom_u64(p, "blazefs_invalidations_total", "counter",
		 "Writeback cache: kernel cache invalidations after a refused write.", FS_READ(fs, invalidations));
	prom_u64(p, "blazefs_namespace_ops_total", "counter", "Namespace operations submitted.", FS_READ(fs, nsops));
	prom_u64(p, "blazefs_flushes_total", "counter", "close() (FUSE flush) requests.", FS_READ(fs, flushes));
	prom_u64(p, "blazefs_fsyncs_total", "counter", "fsync/fdatasync/fsyncdir requests.", FS_READ(fs, fsyncs));
	prom_u64(p, "blazefs_errors_total", "counter", "EIO, EROFS and ENOSPC replies.", FS_READ(fs, errors));
	prom_u64(p, "blazefs_space_reclaims_total", "counter",
		 "Checkpoints made for an operation short of space before it looked again.",
		 FS_READ(fs, space_reclaims));
	prom_u64(p, "blazefs_failed", "gauge", "1 when the pipeline failed: read-only until remounted.",
		 __atomic_load_n(&fs->failed, __ATOMIC_RELAXED) ? 1 : 0);
	prom_head(p, "blazefs_refusals_total", "counter",
		  "Requests refused by the append-only rules (EPERM, EOPNOTSUPP, EACCES), by reason.");
	for (int i = 0; i < FS_REF_COUNT; i++)
		sb_printf(p->b, "blazefs_refusals_total{%s,reason=\"%s\"} %llu\n", p->lbl,
			  fs_refusal_name((enum fs_refusal)i), (unsigned long long)FS_READ(fs, refusals[i]));
}

int fs_stats_prometheus(struct fs *fs, char **ret_buf, size_t *ret_len)
{
	struct sbuf b = {0}, lbl = {0};
	struct pipe_stats *st = malloc(sizeof(*st));
	struct prom p = {.b = &b};
	int r = 0;

	if (!st) {
		r = -ENOMEM;
		goto out;
	}
	pipe_stats(fs->pipe, st);
	sb_printf(&lbl, "store=\"");
	sb_label_value(&lbl, fs->store_dir ? fs->store_dir : "");
	sb_printf(&lbl, "\"");
	r = lbl.err;
	if (r < 0)
		goto out;
	p.lbl = lbl.p;
	prom_fs(&p, fs);
	prom_pipeline(&p, st);
	r = b.err;
out:
	free(st);
	free(lbl.p);
	if (r < 0) {
		free(b.p);
		return r;
	}
	*ret_buf = b.p;
	*ret_len = b.len;
	return 0;
}

/* ---- the control directory's files ---- */

static const struct {
	const char *name;
	uint64_t ino;
	int (*generate)(struct fs *fs, char **ret_buf, size_t *ret_len);
} ctl_files[] = {
	{FS_CTL_STATS_NAME, FS_CTL_STATS_INO, fs_stats_json},
	{FS_CTL_METRICS_NAME, FS_CTL_METRICS_INO, fs_stats_prometheus},
};

uint64_t fs_ctl_lookup(const char *name)
{
	for (size_t i = 0; i < BZ_ARRAY_SIZE(ctl_files); i++)
		if (strcmp(name, ctl_files[i].name) == 0)
			return ctl_files[i].ino;
	return 0;
}

const char *fs_ctl_entry(size_t i, uint64_t *ret_ino)
{
	if (i >= BZ_ARRAY_SIZE(ctl_files))
		return NULL;
	*ret_ino = ctl_files[i].ino;
	return ctl_files[i].name;
}

int fs_ctl_content(struct fs *fs, uint64_t ino, char **ret_buf, size_t *ret_len)
{
	for (size_t i = 0; i < BZ_ARRAY_SIZE(ctl_files); i++)
		if (ctl_files[i].ino == ino)
			return ctl_files[i].generate(fs, ret_buf, ret_len);
	return -ENOENT;
}
