/* stats.c — the content of MOUNTPOINT/.blazefs/stats.
 *
 * One JSON object: every field of pipe_stats_json() (the pipeline and the
 * store: stage histograms, batches, records, bytes, queue depths, errors; see
 * docs/ARCHITECTURE.md) plus an "fs" object with the daemon's own counters:
 *
 *   "fs": {
 *     "store": "/var/lib/blazefs/default",
 *     "mounted_at_ns": <wall clock>,
 *     "options": {"workers": N, "zstd_level": N, "worm": bool,
 *                 "writeback_cache": bool, "sync_close": bool},
 *     "live_inodes": N,          inodes in the live namespace
 *     "kernel_inodes": N,        inodes the kernel holds references to
 *     "open_files": N,
 *     "writes": N, "write_bytes": N,   accepted write requests, bytes appended
 *     "overlap_bytes": N,        identical bytes below the end accepted
 *     "zero_extend_bytes": N,    zeros appended by growing truncates
 *     "holes_filled": N, "hole_bytes": N,  sparse writes on fresh files
 *     "held_writes": N,          writeback cache: page writes held past the end
 *     "held_bytes": N, "held_bytes_max": N,  bytes held now / at most
 *     "retrieved_bytes": N,      dirty bytes fetched from the kernel at truncates
 *     "invalidations": N,        kernel cache ranges dropped after refusals
 *     "nsops": N, "flushes": N, "fsyncs": N,
 *     "errors": N,               EIO/EROFS/ENOSPC replies
 *     "failed": bool,            the pipeline failed: read-only until remount
 *     "refusals": {"total": N, "overwrite": N, "past_eof": N, "shrink": N,
 *                  "o_trunc": N, "worm": N, "fallocate": N, "control": N}
 *   }
 *
 * Generated once per open of the file (the control file is direct_io, so
 * cat/read see the snapshot whatever st_size says).
 */
#include <stdarg.h>
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
		n = vsnprintf(b->p + b->len, room, fmt, ap);
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

static void fs_object(struct fs *fs, struct sbuf *b) EXCLUDES(fs_ns_lock)
{
	uint64_t live, kernel, total = 0;

	bz_mutex_lock(&fs_ns_lock);
	live = ns_count(fs->ns);
	kernel = fs->itab_count;
	bz_mutex_unlock(&fs_ns_lock);

	sb_printf(b, "\"fs\":{\"store\":");
	sb_json_str(b, fs->store_dir ? fs->store_dir : "");
	sb_printf(b, ",\"mounted_at_ns\":%lld", (long long)fs->mount_time_ns);
	sb_printf(b,
		  ",\"options\":{\"workers\":%u,\"zstd_level\":%d,\"worm\":%s,\"writeback_cache\":%s,"
		  "\"sync_close\":%s}",
		  fs->opts.pipe.workers, fs->opts.pipe.zstd_level, fs->opts.worm ? "true" : "false",
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
	sb_printf(b, ",\"held_bytes\":%llu", (unsigned long long)__atomic_load_n(&fs->held_total, __ATOMIC_RELAXED));
	F(held_bytes_max);
	F(retrieved_bytes);
	F(invalidations);
	F(nsops);
	F(flushes);
	F(fsyncs);
	F(errors);
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
