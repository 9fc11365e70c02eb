/* pool.h — a fixed pool of worker threads with a bounded job queue.
 * Created once, reused for the life of the mount; every thread is joined by
 * pool_destroy. Each worker owns a context made by ctx_new (e.g. a reused
 * ZSTD_CCtx) that is passed to every job it runs. */
#ifndef BZ_POOL_H
#define BZ_POOL_H

#include <stddef.h>

struct pool;

typedef void (*pool_job_fn)(void *arg, void *worker_ctx);

struct pool_opts {
	unsigned threads;   /* >= 1 */
	size_t queue_cap;   /* >= 1: jobs waiting, not counting running ones */
	void *(*ctx_new)(void *ctx_arg); /* NULL: workers get a NULL ctx; a NULL return fails pool_create */
	void (*ctx_free)(void *ctx);
	void *ctx_arg;
};

int pool_create(const struct pool_opts *o, struct pool **ret_pool);
/* Queues a job; blocks while the queue is full. -ESHUTDOWN after destroy began. */
int pool_add(struct pool *p, pool_job_fn fn, void *arg);
/* Queues a job or returns -EAGAIN at once if the queue is full. */
int pool_try_add(struct pool *p, pool_job_fn fn, void *arg);
/* Waits until every queued job has finished running. */
void pool_join(struct pool *p);
/* Runs every queued job, stops and joins every thread, frees ctxs. NULL ok. */
void pool_destroy(struct pool *p);
/* Jobs waiting in the queue now (for stats). */
size_t pool_queued(struct pool *p);

#endif
