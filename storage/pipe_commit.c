/* pipe_commit.c — the ONE commit thread of the pipeline (map: pipeline.c).
 *
 * Owns: the reorder list, the appended list, next_seq, the unsynced count,
 * the group-commit state and the inline encoder (the fields marked
 * "commit" in pipeline_int.h: this thread alone touches them, no lock). It
 * is the only caller of store_wal_append, store_wal_sync, store_apply and
 * store_checkpoint. One loop:
 *   1. take completions into the reorder list (sorted by seq);
 *   2. append every batch whose seq is the next one (if the WAL has no room:
 *      sync, apply, checkpoint first); fire PIPE_WRITTEN waiters;
 *   3. if a PIPE_DURABLE waiter's target is appended (and no group hold,
 *      commit_hold_until), or sync_interval_ms passed with unsynced data, or
 *      we are draining: ONE store_wal_sync for every appended-unsynced batch
 *      (group commit); fire PIPE_DURABLE waiters (before the apply: the ack
 *      does not wait for page work);
 *   4. store_apply every appended batch in seq order, then drop its records
 *      from the per-file pending lists and release its in-flight bytes
 *      (apply first, drop second: a reader sees every byte somewhere);
 *   5. store_checkpoint when store_need_checkpoint() (after a sync).
 *   While the commit thread syncs, writers and workers keep forming and
 *   encoding the next group. It also seals the open batch when its linger
 *   ends, and on pipe_stop drains every sealed batch, syncs, applies and
 *   checkpoints before it returns.
 *
 * Failure: a failed WAL append or sync (or apply, checkpoint, encode) moves
 * the pipeline into a sticky FAILED state (commit_fail): the cause is logged
 * once, every pending and future waiter gets -EIO, pipe_append/pipe_nsop
 * return -EROFS, and the commit thread never touches the store again but
 * keeps receiving (and freeing) batches and answering barriers. A sync is
 * never retried.
 *
 * Locks: p->mu only for the short exchanges with writers (taking
 * completions, deciding to sync, retiring a batch, publishing progress);
 * never across store_*, pool_* or a callback. Callbacks run on this thread
 * with no lock held; they must not block on the pipeline.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_int.h"

/* While batches keep coming (the last one less than PIPE_TICK_ACTIVE_NS
 * ago), an idle commit thread sleeps at most linger_us instead of until
 * signalled, so the first record of the next batch need not wake it to arm
 * its linger timer (see ob_add in pipeline.c). Not with a linger below
 * PIPE_TICK_MIN_US (too many ticks): then that record signals as before. */
#define PIPE_TICK_ACTIVE_NS 1000000000ull
#define PIPE_TICK_MIN_US 200u

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
			pi_prec_free(pb->precs[i]);
	pi_pbatch_free(pb);
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
	pi_add(&p->n_errors, 1);
	bz_err("pipeline: %s failed: %s; every waiter gets EIO, writes are refused (EROFS) from now on",
	       what, strerror(-err));
	pi_commit_fire(p); /* what was reached before the failure still succeeds */
	bz_cap_lock(&p->mu, &pipe_cap);
	p->failed = true;
	p->reclaim_done = p->reclaim_want; /* their waiters get -EIO */
	if (!p->error)
		p->error = err;
	pi_wlist_take(&p->wait[0], UINT64_MAX, &fire, -EIO);
	pi_wlist_take(&p->wait[1], UINT64_MAX, &fire, -EIO);
	pthread_cond_broadcast(&p->room_cv);
	bz_cap_unlock(&p->mu, &pipe_cap);
	pi_waiters_call(p, fire);
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
	pi_add(&p->n_syncs, 1);
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
			struct pfile *f = pi_pfile_find(p, r->ino);
			if (ALWAYS(f && f->head == r)) {
				f->head = r->fnext;
				if (!f->head) {
					f->tail = NULL;
					pi_pfile_remove(p, f);
				}
			}
		}
		pi_prec_free(r);
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
			 (unsigned long long)pi_since(pb->b.first_ns, pb->b.sealed_ns) / 1000,
			 (unsigned long long)pi_since(pb->b.sealed_ns, pb->start_ns) / 1000,
			 (unsigned long long)pb->b.out.hash_ns / 1000, (unsigned long long)pb->b.out.compress_ns / 1000,
			 (unsigned long long)pb->b.out.encode_ns / 1000,
			 (unsigned long long)pi_since(pb->done_ns, pb->take_ns) / 1000,
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
	pi_add(&p->n_ckpts, 1);
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
	pi_commit_fire(p);
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
			pi_encode_one(p, pb, p->ienc); /* workers=0 or a small batch: the same code, inline */
			bz_cap_lock(&p->mu, &pipe_cap);
			pi_charge_encoded(p, pb);
			bz_cap_unlock(&p->mu, &pipe_cap);
		}
		pb->take_ns = bz_now_ns();
		bz_hist_add(&p->hist[PIPE_ST_REORDER], pi_since(pb->done_ns, pb->take_ns));
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
		pi_add(&p->n_batches, 1);
		pi_add(&p->n_records, b->nrec);
		pi_add(&p->n_ns, b->nrec - pb->ndata);
		pi_add(&p->bytes_in, b->raw_bytes);
		pi_add(&p->bytes_stored, b->out.len);
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

void *pi_commit_main(void *arg)
{
	struct pipeline *p = arg;
	const char *what = "";
	bool final = false;
	int r;

	pthread_setname_np(pthread_self(), "bz-commit"); /* top -H, perf; best effort */
	while (!final) {
		struct batch *disp = NULL;
		bool ready, need_sync, idle_load = false, stopping;
		uint64_t short_min; /* pipe_set_space_short: 0, or its threshold */
		uint64_t reclaim = 0; /* pipe_reclaim tickets this round serves */

		bz_cap_lock(&p->mu, &pipe_cap);
		for (bool woken = true;;) {
			uint64_t now = bz_now_ns(), deadline = UINT64_MAX;

			if (p->ob && (p->stopping || now >= p->ob->b.first_ns + p->o.linger_us * 1000ull))
				pi_seal_locked(p, &disp);
			commit_take(p);
			ready = p->reorder && p->reorder->seq == p->next_seq;
			need_sync = commit_sync_due(p, now);
			final = p->stopping && !p->ob && p->received == p->sealed_seq && !p->reorder;
			if (disp || ready || need_sync || final || p->space_poke || p->reclaim_want > p->reclaim_done)
				break;
			/* nothing to do: a step of the store's namespace load
			 * (format 5 loads on demand; the rest meanwhile) */
			if (!p->stopping && !p->c_failed && !store_ns_loaded(p->s)) {
				if (!store_ns_load_waiting(p->s)) {
					idle_load = true;
					break;
				}
				/* a reader is loading: the next step after it */
				deadline = BZ_MIN(deadline, now + 1000000ull);
			}
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
				pi_add(&p->n_wakeups, 1);
			woken = true;
		}
		p->c_work_ns = bz_now_ns();
		short_min = p->space_short;
		if (p->reclaim_want > p->reclaim_done)
			reclaim = p->reclaim_want; /* the checkpoint below begins after they asked */
		stopping = p->stopping;
		p->space_poke = false;
		bz_cap_unlock(&p->mu, &pipe_cap);
		if (disp)
			pi_dispatch(p, disp);
		if (p->c_failed)
			continue;

		r = commit_append_ready(p, &what);
		if (r < 0) {
			commit_fail(p, what, r);
			continue;
		}
		pi_commit_fire(p); /* PIPE_WRITTEN waiters */
		bz_cap_lock(&p->mu, &pipe_cap);
		need_sync = commit_sync_due(p, bz_now_ns());
		bz_cap_unlock(&p->mu, &pipe_cap);
		if (need_sync) {
			r = commit_sync(p);
			if (r < 0) {
				commit_fail(p, "WAL fdatasync", r);
				continue;
			}
			pi_commit_fire(p); /* PIPE_DURABLE waiters */
		}
		r = commit_apply_all(p);
		if (r < 0) {
			commit_fail(p, "apply", r);
			continue;
		}
		if (store_need_checkpoint(p->s) || reclaim ||
		    (short_min && store_checkpoint_would_free(p->s, short_min))) {
			r = commit_flush(p, true, &what);
			if (r < 0) {
				commit_fail(p, what, r);
				continue;
			}
		}
		if (reclaim) {
			bz_cap_lock(&p->mu, &pipe_cap);
			p->reclaim_done = BZ_MAX(p->reclaim_done, reclaim);
			pthread_cond_broadcast(&p->room_cv);
			bz_cap_unlock(&p->mu, &pipe_cap);
		}
		/* the rest of the store's namespace: a step when idle, a small
		 * one between busy rounds (so that a commit thread that never
		 * idles still completes it, for relocation and cleaning) */
		if (!store_ns_loaded(p->s) && !stopping) {
			r = idle_load ? store_ns_load_more(p->s) : store_ns_load_some(p->s, 32);
			if (r < 0)
				commit_fail(p, "namespace load", r);
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
		pi_wlist_take(&p->wait[0], UINT64_MAX, &fire, -ESHUTDOWN);
		pi_wlist_take(&p->wait[1], UINT64_MAX, &fire, -ESHUTDOWN);
		bz_cap_unlock(&p->mu, &pipe_cap);
		pi_waiters_call(p, fire);
	}
	return NULL;
}
