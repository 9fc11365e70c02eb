/* pipe_stats.c — the pipeline's counters as a struct (pipe_stats) and as
 * one JSON object (pipe_stats_json, the base of .blazefs/stats; fields:
 * docs/ARCHITECTURE.md "Stats"). Map: pipeline.c.
 *
 * The counters and histograms are relaxed atomics any thread adds to and
 * snapshots, so a snapshot is not one consistent instant (counts may be a
 * batch apart); only the in-flight bytes, the error and the seqs are read
 * together under p->mu. store_stats is called with no pipeline lock held.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_int.h"

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

void pipe_stats(struct pipeline *p, struct pipe_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	for (int i = 0; i < PIPE_ST_COUNT; i++)
		bz_hist_snapshot(&p->hist[i], &ret->stage[i]);
	bz_hist_snapshot(&p->group, &ret->group_size);
	ret->batches = pi_get(&p->n_batches);
	ret->records = pi_get(&p->n_records);
	ret->ns_records = pi_get(&p->n_ns);
	ret->bytes_in = pi_get(&p->bytes_in);
	ret->bytes_stored = pi_get(&p->bytes_stored);
	ret->fdatasyncs = pi_get(&p->n_syncs);
	ret->checkpoints = pi_get(&p->n_ckpts);
	ret->writer_blocked = pi_get(&p->n_blocked);
	ret->commit_wakeups = pi_get(&p->n_wakeups);
	ret->linger_arms = pi_get(&p->n_arms);
	ret->errors = pi_get(&p->n_errors);
	ret->reorder_depth = pi_get(&p->reorder_depth);
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
	   "\"pack_live_bytes\":%llu,\"pages_cleaned\":%llu,\"chunks_sealed\":%llu,\"tails_written\":%llu,"
	   "\"chunks_split\":%llu,\"open_chunk_bytes\":%llu,\"pages_relocated\":%llu,\"error\":%d}}",
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
	   (unsigned long long)ss->pack_live_bytes, (unsigned long long)ss->pages_cleaned,
	   (unsigned long long)ss->chunks_sealed, (unsigned long long)ss->tails_written,
	   (unsigned long long)ss->chunks_split, (unsigned long long)ss->open_chunk_bytes, (unsigned long long)ss->pages_relocated, ss->error);
	r = j.over ? -ENOSPC : (int)j.len;
	if (r < 0)
		buf[0] = '\0';
	free(st);
	return r;
}
