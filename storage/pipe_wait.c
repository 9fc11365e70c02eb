/* pipe_wait.c — barriers of the pipeline (map: pipeline.c).
 *
 * Owns the two waiter lists: p->wait[0] (PIPE_WRITTEN) and p->wait[1]
 * (PIPE_DURABLE), FIFOs whose targets are nondecreasing (a target is the
 * sealed_seq when the barrier was made, and sealed_seq only grows under
 * mu). pipe_barrier seals the open batch and either answers at once (target
 * already reached, or the pipeline failed/stopping) on the caller's thread
 * or queues a waiter; the commit thread publishes appended_seq/synced_seq
 * and takes the satisfied waiters off under mu (pi_commit_fire), then calls
 * them with no lock held, in submission order. After a failure every
 * waiter gets -EIO; at the end of the drain in pipe_stop, -ESHUTDOWN.
 * pipe_barrier_wait blocks on a private mutex/cond (token pipe_bw_cap) that
 * the callback signals; it never holds p->mu while waiting.
 *
 * Locks: the lists, appended_seq, synced_seq and c_group are under p->mu;
 * a waiter, once taken off a list, belongs to whoever took it (it is called
 * and freed exactly once).
 */
#include <pthread.h>
#include <stdlib.h>

#include "pipeline_int.h"

BZ_CAP_DECLARE(pipe_bw_cap); /* a blocking barrier's bw.mu */

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
uint32_t pi_wlist_take(struct wlist *l, uint64_t reached, struct waiter **out, int err)
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
void pi_waiters_call(struct pipeline *p, struct waiter *list)
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
		bz_hist_add(&p->hist[PIPE_ST_ACK], pi_since(w->submit_ns, bz_now_ns()));
		w->cb(w->arg, w->err);
		free(w);
	}
}

/* Publishes what the commit thread reached and fires the waiters it
 * satisfied. */
void pi_commit_fire(struct pipeline *p)
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
	pi_wlist_take(&p->wait[0], p->appended_seq, &fire, 0);
	n = pi_wlist_take(&p->wait[1], p->synced_seq, &fire, 0);
	if (n)
		p->c_group = n + p->wait[1].n; /* released + already back */
	bz_cap_unlock(&p->mu, &pipe_cap);
	pi_waiters_call(p, fire);
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
		pi_seal_locked(p, &disp);
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
		pi_dispatch(p, disp);
	if (now_err != 1) {
		bz_hist_add(&p->hist[PIPE_ST_ACK], pi_since(w->submit_ns, bz_now_ns()));
		free(w);
		cb(arg, now_err);
	}
	return 0;
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
