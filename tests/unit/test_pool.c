/* test_pool.c — the bounded worker pool: many jobs, per-worker contexts,
 * FIFO order, a full queue blocks pool_add and fails pool_try_add, pool_join,
 * pool_destroy runs queued jobs, a blocked pool_add sees -ESHUTDOWN. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "t.h"
#include "workers/pool.h"

static unsigned long counter; /* __atomic */

static void job_inc(void *arg, void *ctx)
{
	(void)arg;
	(void)ctx;
	__atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
}

/* ---- per-worker ctx ---- */
struct wctx {
	pthread_t owner;
	int owner_set;
	unsigned long jobs;
	int bad;
};
static unsigned ctx_made, ctx_freed; /* __atomic */

static void *ctx_new_fn(void *arg)
{
	(void)arg;
	__atomic_fetch_add(&ctx_made, 1, __ATOMIC_RELAXED);
	return calloc(1, sizeof(struct wctx));
}
static unsigned ctx_bad; /* ctxs that ran on more than one thread */
static unsigned long ctx_jobs;
static void ctx_free_fn(void *c)
{
	struct wctx *w = c;
	__atomic_fetch_add(&ctx_freed, 1, __ATOMIC_RELAXED);
	ctx_bad += (unsigned)w->bad;
	ctx_jobs += w->jobs;
	free(c);
}
static void *ctx_new_null(void *arg)
{
	(void)arg;
	return NULL;
}

static void job_ctx(void *arg, void *ctx)
{
	struct wctx *w = ctx;
	(void)arg;
	if (!w) {
		__atomic_fetch_add(&counter, 1000000, __ATOMIC_RELAXED);
		return;
	}
	/* a ctx is only ever touched by its own worker: no lock needed */
	if (!w->owner_set) {
		w->owner = pthread_self();
		w->owner_set = 1;
	} else if (!pthread_equal(w->owner, pthread_self())) {
		w->bad = 1;
	}
	w->jobs++;
	__atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
}

/* ---- a gate that holds a job until opened ---- */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_entered;

static void gate_reset(void)
{
	pthread_mutex_lock(&gate_mu);
	gate_open = 0;
	gate_entered = 0;
	pthread_mutex_unlock(&gate_mu);
}
static void job_gate(void *arg, void *ctx)
{
	(void)arg;
	(void)ctx;
	pthread_mutex_lock(&gate_mu);
	gate_entered++;
	pthread_cond_broadcast(&gate_cv);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
}
static void gate_wait_entered(int n)
{
	pthread_mutex_lock(&gate_mu);
	while (gate_entered < n)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
}
static void gate_release(void)
{
	pthread_mutex_lock(&gate_mu);
	gate_open = 1;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

/* ---- FIFO ---- */
static int order[64];
static int norder; /* written only by the single worker; read after pool_join */

static void job_order(void *arg, void *ctx)
{
	(void)ctx;
	order[norder++] = (int)(intptr_t)arg;
}

/* ---- adder thread ---- */
struct adder {
	struct pool *p;
	int ret;
	int done; /* __atomic */
};
static void *adder_main(void *arg)
{
	struct adder *a = arg;
	a->ret = pool_add(a->p, job_inc, NULL);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}
static void *destroyer_main(void *arg)
{
	pool_destroy(arg);
	return NULL;
}

static void test_many_jobs(unsigned threads)
{
	struct pool *p = NULL;
	struct pool_opts o = {.threads = threads, .queue_cap = 8, .ctx_new = ctx_new_fn, .ctx_free = ctx_free_fn};
	unsigned long n = 20000;

	counter = 0;
	ctx_made = ctx_freed = ctx_bad = 0;
	ctx_jobs = 0;
	T_ASSERT(pool_create(&o, &p) == 0);
	T_CHECK_EQ(ctx_made, threads);
	for (unsigned long i = 0; i < n; i++)
		T_ASSERT(pool_add(p, i % 2 ? job_ctx : job_inc, NULL) == 0);
	pool_join(p);
	T_CHECK_EQ(__atomic_load_n(&counter, __ATOMIC_RELAXED), n);
	T_CHECK_EQ(pool_queued(p), 0);
	/* join twice is fine, and the pool is reusable after a join */
	pool_join(p);
	for (unsigned long i = 0; i < 100; i++)
		T_ASSERT(pool_add(p, job_ctx, NULL) == 0);
	pool_destroy(p);
	T_CHECK_EQ(__atomic_load_n(&counter, __ATOMIC_RELAXED), n + 100);
	T_CHECK_EQ(ctx_freed, threads);
	T_CHECK_EQ(ctx_bad, 0);
	T_CHECK_EQ(ctx_jobs, n / 2 + 100);
}

static void test_bounded(void)
{
	struct pool *p = NULL;
	struct pool_opts o = {.threads = 1, .queue_cap = 2};
	struct adder a = {0};
	pthread_t th;

	counter = 0;
	gate_reset();
	T_ASSERT(pool_create(&o, &p) == 0);
	T_CHECK_EQ(pool_add(p, job_gate, NULL), 0);
	gate_wait_entered(1); /* the only worker is now busy */
	T_CHECK_EQ(pool_try_add(p, job_inc, NULL), 0);
	T_CHECK_EQ(pool_add(p, job_inc, NULL), 0);
	T_CHECK_EQ(pool_queued(p), 2);
	T_CHECK_EQ(pool_try_add(p, job_inc, NULL), -EAGAIN);
	T_CHECK_EQ(pool_queued(p), 2);
	/* a blocking add waits while the queue is full */
	a.p = p;
	T_ASSERT(pthread_create(&th, NULL, adder_main, &a) == 0);
	usleep(50000);
	/* not a timing assertion: the add can only return once a slot frees,
	 * and no slot can free while the gate is closed */
	T_CHECK_EQ(__atomic_load_n(&a.done, __ATOMIC_ACQUIRE), 0);
	T_CHECK_EQ(__atomic_load_n(&counter, __ATOMIC_RELAXED), 0);
	gate_release();
	pthread_join(th, NULL);
	T_CHECK_EQ(a.ret, 0);
	pool_join(p);
	T_CHECK_EQ(__atomic_load_n(&counter, __ATOMIC_RELAXED), 3);
	T_CHECK_EQ(pool_queued(p), 0);
	pool_destroy(p);
}

static void test_fifo(void)
{
	struct pool *p = NULL;
	struct pool_opts o = {.threads = 1, .queue_cap = 64};

	gate_reset();
	norder = 0;
	T_ASSERT(pool_create(&o, &p) == 0);
	T_ASSERT(pool_add(p, job_gate, NULL) == 0);
	gate_wait_entered(1);
	for (int i = 0; i < 50; i++)
		T_ASSERT(pool_add(p, job_order, (void *)(intptr_t)i) == 0);
	gate_release();
	pool_join(p);
	T_CHECK_EQ(norder, 50);
	for (int i = 0; i < 50; i++)
		T_CHECK_EQ(order[i], i);
	pool_destroy(p);
}

static void test_destroy_runs_queued(void)
{
	struct pool *p = NULL;
	struct pool_opts o = {.threads = 2, .queue_cap = 100};

	counter = 0;
	gate_reset();
	T_ASSERT(pool_create(&o, &p) == 0);
	T_ASSERT(pool_add(p, job_gate, NULL) == 0);
	T_ASSERT(pool_add(p, job_gate, NULL) == 0);
	gate_wait_entered(2);
	for (int i = 0; i < 100; i++)
		T_ASSERT(pool_try_add(p, job_inc, NULL) == 0);
	T_CHECK_EQ(pool_queued(p), 100);
	gate_release();
	pool_destroy(p); /* must run all 100 before joining */
	T_CHECK_EQ(__atomic_load_n(&counter, __ATOMIC_RELAXED), 100);
}

static void test_shutdown_wakes_adder(void)
{
	struct pool *p = NULL;
	struct pool_opts o = {.threads = 1, .queue_cap = 1};
	struct adder a = {0};
	pthread_t th, dt;

	counter = 0;
	gate_reset();
	T_ASSERT(pool_create(&o, &p) == 0);
	T_ASSERT(pool_add(p, job_gate, NULL) == 0);
	gate_wait_entered(1);
	T_ASSERT(pool_add(p, job_inc, NULL) == 0); /* queue full now */
	a.p = p;
	T_ASSERT(pthread_create(&th, NULL, adder_main, &a) == 0);
	usleep(20000); /* let the adder block (either order is correct) */
	T_ASSERT(pthread_create(&dt, NULL, destroyer_main, p) == 0);
	/* the destroyer cannot finish while the gate is closed; the adder
	 * must come back with -ESHUTDOWN (or 0 if it got in before) */
	pthread_join(th, NULL);
	T_CHECK(a.ret == -ESHUTDOWN || a.ret == 0);
	gate_release();
	pthread_join(dt, NULL);
	T_CHECK_EQ(__atomic_load_n(&counter, __ATOMIC_RELAXED), a.ret == 0 ? 2 : 1);
}

static void test_bad_create(void)
{
	struct pool *p = (struct pool *)(uintptr_t)0x1;
	struct pool_opts o = {.threads = 2, .queue_cap = 2, .ctx_new = ctx_new_null};
	struct pool_opts z = {.threads = 0, .queue_cap = 2};

	T_CHECK(pool_create(&o, &p) < 0);
	T_CHECK(p == (struct pool *)(uintptr_t)0x1); /* untouched on failure */
	T_CHECK_EQ(pool_create(&z, &p), -EINVAL);
	z.threads = 1;
	z.queue_cap = 0;
	T_CHECK_EQ(pool_create(&z, &p), -EINVAL);
	pool_destroy(NULL);
}

int main(void)
{
	test_many_jobs(1);
	test_many_jobs(2);
	test_many_jobs(4);
	test_bounded();
	test_fifo();
	test_destroy_runs_queued();
	test_shutdown_wakes_adder();
	test_bad_create();
	T_DONE();
}
