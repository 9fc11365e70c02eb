/* pool.c — a fixed pool of worker threads with a bounded FIFO job queue
 * (in the style of zstd lib/common/pool.c).
 *
 * Threads: `threads` workers, created once by pool_create and joined by
 * pool_destroy; nothing is detached. Each worker owns the ctx made for it by
 * ctx_new (created up front in pool_create, freed in pool_destroy after the
 * join) and passes it to every job it runs, so jobs can reuse e.g. a
 * ZSTD_CCtx without any locking.
 *
 * Queue: a ring of queue_cap slots guarded by p->mu. pool_add waits on
 * not_full while the ring is full; pool_try_add returns -EAGAIN instead.
 * Workers wait on not_empty, pop in FIFO order, run the job without the lock
 * and then decrement `running`; pool_join waits on `idle` until the ring is
 * empty and nothing runs.
 *
 * Shutdown: pool_destroy sets `shutdown`; workers keep running queued jobs
 * until the ring is empty and then exit; callers blocked in pool_add wake up
 * with -ESHUTDOWN. One lock (p->mu), no lock order to keep.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../storage/log.h"
#include "../storage/tsa.h"
#include "pool.h"

BZ_CAP_DECLARE(pool_cap); /* p->mu (tsa.h: capability tokens) */


struct pool_job {
	pool_job_fn fn;
	void *arg;
};

struct pool_worker {
	struct pool *p;
	pthread_t tid;
	void *ctx; /* set by pool_create before the thread starts, then owned by the thread */
};

struct pool {
	bz_mutex mu;
	pthread_cond_t not_empty; /* a job was queued or shutdown began */
	pthread_cond_t not_full;  /* a slot was freed or shutdown began */
	pthread_cond_t idle;      /* queue empty and nothing running */
	struct pool_job *ring GUARDED_BY(pool_cap);
	size_t cap;               /* immutable after create */
	size_t head GUARDED_BY(pool_cap);
	size_t n GUARDED_BY(pool_cap);
	unsigned running GUARDED_BY(pool_cap);
	bool shutdown GUARDED_BY(pool_cap);
	unsigned nthreads;        /* threads started; immutable after create */
	struct pool_worker *w;    /* immutable after create */
	void (*ctx_free)(void *ctx);
};

static void *pool_main(void *arg)
{
	struct pool_worker *w = arg;
	struct pool *p = w->p;
	char name[16];

	snprintf(name, sizeof(name), "bz-worker%u", (unsigned)(w - p->w));
	pthread_setname_np(pthread_self(), name); /* top -H, perf; best effort */
	bz_cap_lock(&p->mu, &pool_cap);
	for (;;) {
		struct pool_job job;

		while (p->n == 0 && !p->shutdown)
			bz_cap_cond_wait(&p->not_empty, &p->mu, &pool_cap);
		if (p->n == 0)
			break; /* shutdown and drained */
		job = p->ring[p->head];
		p->head = (p->head + 1) % p->cap;
		p->n--;
		p->running++;
		pthread_cond_signal(&p->not_full);
		bz_cap_unlock(&p->mu, &pool_cap);

		job.fn(job.arg, w->ctx);

		bz_cap_lock(&p->mu, &pool_cap);
		p->running--;
		if (p->n == 0 && p->running == 0)
			pthread_cond_broadcast(&p->idle);
	}
	bz_cap_unlock(&p->mu, &pool_cap);
	return NULL;
}

static void pool_free_mem(struct pool *p) NO_TSA
{
	if (p->w && p->ctx_free) {
		for (unsigned i = 0; i < p->nthreads; i++)
			if (p->w[i].ctx)
				p->ctx_free(p->w[i].ctx);
	}
	free(p->w);
	free(p->ring);
	pthread_cond_destroy(&p->not_empty);
	pthread_cond_destroy(&p->not_full);
	pthread_cond_destroy(&p->idle);
	bz_mutex_destroy(&p->mu);
	free(p);
}

/* Stops and joins the first `started` threads. */
static void pool_stop_threads(struct pool *p, unsigned started)
{
	bz_cap_lock(&p->mu, &pool_cap);
	p->shutdown = true;
	pthread_cond_broadcast(&p->not_empty);
	pthread_cond_broadcast(&p->not_full);
	bz_cap_unlock(&p->mu, &pool_cap);
	for (unsigned i = 0; i < started; i++)
		pthread_join(p->w[i].tid, NULL);
}

int pool_create(const struct pool_opts *o, struct pool **ret_pool) NO_TSA
{
	struct pool *p = NULL;
	unsigned started = 0;
	int r = 0;

	if (!o || o->threads < 1 || o->queue_cap < 1)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	bz_mutex_init(&p->mu);
	pthread_cond_init(&p->not_empty, NULL);
	pthread_cond_init(&p->not_full, NULL);
	pthread_cond_init(&p->idle, NULL);
	p->cap = o->queue_cap;
	p->nthreads = o->threads;
	p->ctx_free = o->ctx_free;
	p->ring = calloc(p->cap, sizeof(*p->ring));
	p->w = calloc(o->threads, sizeof(*p->w));
	if (!p->ring || !p->w) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < o->threads; i++) {
		p->w[i].p = p;
		if (o->ctx_new) {
			p->w[i].ctx = o->ctx_new(o->ctx_arg);
			if (!p->w[i].ctx) {
				r = -ENOMEM;
				goto fail;
			}
		}
	}
	for (; started < o->threads; started++) {
		int e = pthread_create(&p->w[started].tid, NULL, pool_main, &p->w[started]);
		if (e) {
			bz_err("pool: cannot start worker thread %u: %s", started, strerror(e));
			r = -e;
			goto fail;
		}
	}
	*ret_pool = p;
	return 0;
fail:
	pool_stop_threads(p, started);
	pool_free_mem(p);
	return r;
}

static int pool_push(struct pool *p, pool_job_fn fn, void *arg, bool block)
{
	int r = 0;

	bz_cap_lock(&p->mu, &pool_cap);
	while (p->n == p->cap && !p->shutdown) {
		if (!block) {
			r = -EAGAIN;
			goto out;
		}
		bz_cap_cond_wait(&p->not_full, &p->mu, &pool_cap);
	}
	if (p->shutdown) {
		r = -ESHUTDOWN;
		goto out;
	}
	p->ring[(p->head + p->n) % p->cap] = (struct pool_job){fn, arg};
	p->n++;
	pthread_cond_signal(&p->not_empty);
out:
	bz_cap_unlock(&p->mu, &pool_cap);
	return r;
}

int pool_add(struct pool *p, pool_job_fn fn, void *arg) { return pool_push(p, fn, arg, true); }

int pool_try_add(struct pool *p, pool_job_fn fn, void *arg) { return pool_push(p, fn, arg, false); }

void pool_join(struct pool *p)
{
	bz_cap_lock(&p->mu, &pool_cap);
	while (p->n > 0 || p->running > 0)
		bz_cap_cond_wait(&p->idle, &p->mu, &pool_cap);
	bz_cap_unlock(&p->mu, &pool_cap);
}

void pool_destroy(struct pool *p)
{
	if (!p)
		return;
	pool_stop_threads(p, p->nthreads);
	pool_free_mem(p);
}

size_t pool_queued(struct pool *p)
{
	size_t n;

	bz_cap_lock(&p->mu, &pool_cap);
	n = p->n;
	bz_cap_unlock(&p->mu, &pool_cap);
	return n;
}
