/* test_bufpool.c — the large-buffer pool (storage/bufpool.c): class sizes,
 * reuse of what was given back, the bound on what it keeps, plain malloc
 * outside the classes, and threads handing buffers to each other (the way
 * FUSE threads fill records the commit thread frees). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "storage/bufpool.h"
#include "t.h"

static void classes_and_reuse(void)
{
	struct bp_stats st0, st1;
	size_t cap = 0, cap2 = 0;
	void *a, *b;

	bp_drain();
	bp_stats(&st0);
	T_CHECK_EQ(st0.kept_bytes, 0);
	/* below the classes: malloc of the size asked */
	a = bp_get(100, &cap);
	T_ASSERT(a);
	T_CHECK_EQ(cap, 100);
	bp_put(a, cap);
	bp_stats(&st1);
	T_CHECK_EQ(st1.kept_bytes, 0);
	/* a class: the smallest power of two >= n from BP_MIN */
	a = bp_get(BP_MIN + 1, &cap);
	T_ASSERT(a);
	T_CHECK_EQ(cap, 2 * BP_MIN);
	memset(a, 0xab, cap); /* the whole capacity is usable */
	bp_put(a, cap);
	bp_stats(&st1);
	T_CHECK_EQ(st1.kept_bytes, 2 * BP_MIN);
	b = bp_get(2 * BP_MIN, &cap2); /* the same class: the kept buffer again */
	T_CHECK(b == a);
	T_CHECK_EQ(cap2, 2 * BP_MIN);
	bp_stats(&st1);
	T_CHECK_EQ(st1.hits, st0.hits + 1);
	T_CHECK_EQ(st1.kept_bytes, 0);
	/* a capacity that is no class size is freed, not kept */
	bp_put(b, cap2 - 1);
	bp_stats(&st1);
	T_CHECK_EQ(st1.kept_bytes, 0);
	/* above the classes: malloc */
	a = bp_get(BP_MAX + 1, &cap);
	T_ASSERT(a);
	T_CHECK_EQ(cap, BP_MAX + 1);
	bp_put(a, cap);
	bp_stats(&st1);
	T_CHECK_EQ(st1.kept_bytes, 0);
	bp_put(NULL, 0);
}

static void keeps_at_most_bp_keep(void)
{
	enum { N = 64 };
	void *v[N];
	size_t cap[N];
	struct bp_stats st;

	bp_drain();
	for (int i = 0; i < N; i++) {
		v[i] = bp_get(BP_MAX, &cap[i]);
		T_ASSERT(v[i]);
	}
	for (int i = 0; i < N; i++)
		bp_put(v[i], cap[i]);
	bp_stats(&st);
	T_CHECK(st.kept_bytes <= BP_KEEP);
	T_CHECK(st.kept_bytes == BP_KEEP / BP_MAX * BP_MAX);
	bp_drain();
	bp_stats(&st);
	T_CHECK_EQ(st.kept_bytes, 0);
}

/* Two producers fill buffers with a pattern and hand them to a consumer
 * that checks and gives them back (run under TSan and ASan in CI). */
struct hand {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	void *slot[8];
	size_t cap[8], len[8];
	int n, done;
};

static void *producer(void *arg)
{
	struct hand *h = arg;

	for (int i = 0; i < 2000; i++) {
		size_t n = BP_MIN / 2 + (size_t)(i * 7919) % (BP_MAX - BP_MIN / 2), cap = 0;
		unsigned char *b = bp_get(n, &cap);
		T_ASSERT(b && cap >= n);
		memset(b, (int)(n & 0xff), n);
		pthread_mutex_lock(&h->mu);
		while (h->n == 8)
			pthread_cond_wait(&h->cv, &h->mu);
		h->slot[h->n] = b;
		h->cap[h->n] = cap;
		h->len[h->n] = n;
		h->n++;
		pthread_cond_broadcast(&h->cv);
		pthread_mutex_unlock(&h->mu);
	}
	pthread_mutex_lock(&h->mu);
	h->done++;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static void threads_hand_over(void)
{
	struct hand h = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	pthread_t t[2];
	struct bp_stats st;
	int bad = 0;

	bp_drain();
	for (int i = 0; i < 2; i++)
		T_ASSERT(pthread_create(&t[i], NULL, producer, &h) == 0);
	pthread_mutex_lock(&h.mu);
	for (;;) {
		while (h.n == 0 && h.done < 2)
			pthread_cond_wait(&h.cv, &h.mu);
		if (h.n == 0)
			break;
		h.n--;
		unsigned char *b = h.slot[h.n];
		size_t cap = h.cap[h.n], n = h.len[h.n];
		pthread_cond_broadcast(&h.cv);
		pthread_mutex_unlock(&h.mu);
		for (size_t k = 0; k < n; k += 4093)
			bad += b[k] != (unsigned char)(n & 0xff);
		bp_put(b, cap);
		pthread_mutex_lock(&h.mu);
	}
	pthread_mutex_unlock(&h.mu);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	T_CHECK_EQ(bad, 0);
	bp_stats(&st);
	T_CHECK(st.hits > 0);
	T_CHECK(st.kept_bytes <= BP_KEEP);
	bp_drain();
}

int main(void)
{
	classes_and_reuse();
	keeps_at_most_bp_keep();
	threads_hand_over();
	T_DONE();
}
