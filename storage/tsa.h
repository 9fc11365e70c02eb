/* tsa.h — Clang thread-safety analysis annotations and annotated locks.
 *
 * Every mutex-protected field is declared GUARDED_BY(its lock) and every
 * function that expects a lock held is declared REQUIRES(lock). Built with
 * -Wthread-safety -Werror under clang (tools/test does that build). With gcc
 * the macros expand to nothing.
 *
 * C and struct fields. Clang (14 through 19 at least) cannot name a sibling
 * member in a field attribute in C: `int x GUARDED_BY(mu);` inside a struct
 * is "use of undeclared identifier 'mu'" in clang-14 and is silently bound
 * to no object in clang-19. So a struct's lock is named through a
 * capability token — a global that stands for "the <module> lock of the
 * instance being worked on":
 *
 *     BZ_CAP_DECLARE(pipe_batch_cap);               // extern, never defined
 *     struct pipeline {
 *             bz_mutex batch_mu;                    // the real lock
 *             uint64_t next_seq GUARDED_BY(pipe_batch_cap);
 *     };
 *     static void batch_lock(struct pipeline *p) ACQUIRE(pipe_batch_cap) NO_TSA
 *     { bz_mutex_lock(&p->batch_mu); }
 *
 * and every access and REQUIRES names the token. The analysis then checks
 * every field access against the lock wrappers, per lock type rather than
 * per instance — exact for the one-instance-per-process objects of blazefs,
 * and conservative otherwise. Never hold two instances' same-token locks at
 * once (the analysis could not tell them apart); lock order is per token.
 */
#ifndef BZ_TSA_H
#define BZ_TSA_H

#include <pthread.h>
#include <stdint.h>

#if defined(__clang__)
#define BZ_TSA(x) __attribute__((x))
#else
#define BZ_TSA(x)
#endif

#define CAPABILITY(x) BZ_TSA(capability(x))
#define GUARDED_BY(x) BZ_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) BZ_TSA(pt_guarded_by(x))
#define REQUIRES(...) BZ_TSA(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) BZ_TSA(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) BZ_TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) BZ_TSA(release_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) BZ_TSA(acquire_shared_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) BZ_TSA(release_shared_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) BZ_TSA(requires_shared_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) BZ_TSA(try_acquire_capability(__VA_ARGS__))
#define NO_TSA BZ_TSA(no_thread_safety_analysis)

/* A capability token (see above): a per-file static that only exists for
 * the analysis (nothing reads or writes it). */
struct CAPABILITY("mutex") bz_cap {
	int unused;
};
#define BZ_CAP_DECLARE(name) static struct bz_cap name __attribute__((unused))

typedef struct CAPABILITY("mutex") bz_mutex {
	pthread_mutex_t m;
} bz_mutex;

typedef struct CAPABILITY("rwlock") bz_rwlock {
	pthread_rwlock_t l;
} bz_rwlock;

static inline void bz_mutex_init(bz_mutex *mu) { pthread_mutex_init(&mu->m, NULL); }
static inline void bz_mutex_destroy(bz_mutex *mu) { pthread_mutex_destroy(&mu->m); }
static inline void bz_mutex_lock(bz_mutex *mu) ACQUIRE(mu) NO_TSA { pthread_mutex_lock(&mu->m); }
static inline void bz_mutex_unlock(bz_mutex *mu) RELEASE(mu) NO_TSA { pthread_mutex_unlock(&mu->m); }

static inline void bz_rwlock_init(bz_rwlock *l) { pthread_rwlock_init(&l->l, NULL); }
/* A lock whose waiting writer goes before readers that arrive after it
 * (glibc's default lets a steady stream of readers starve the writer).
 * Non-recursive: a thread must never take it shared twice, or it deadlocks
 * against a waiting writer (clang's analysis rejects double acquisition). */
static inline void bz_rwlock_init_writer_first(bz_rwlock *l)
{
	pthread_rwlockattr_t a;
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&l->l, &a);
	pthread_rwlockattr_destroy(&a);
}
static inline void bz_rwlock_destroy(bz_rwlock *l) { pthread_rwlock_destroy(&l->l); }
static inline void bz_rwlock_rdlock(bz_rwlock *l) ACQUIRE_SHARED(l) NO_TSA { pthread_rwlock_rdlock(&l->l); }
static inline void bz_rwlock_rdunlock(bz_rwlock *l) RELEASE_SHARED(l) NO_TSA { pthread_rwlock_unlock(&l->l); }
static inline void bz_rwlock_wrlock(bz_rwlock *l) ACQUIRE(l) NO_TSA { pthread_rwlock_wrlock(&l->l); }
static inline void bz_rwlock_wrunlock(bz_rwlock *l) RELEASE(l) NO_TSA { pthread_rwlock_unlock(&l->l); }

/* Lock through a token: the real lock is taken, the analysis sees *cap. */
static inline void bz_cap_lock(bz_mutex *mu, struct bz_cap *cap) ACQUIRE(*cap) NO_TSA
{
	(void)cap;
	pthread_mutex_lock(&mu->m);
}
static inline void bz_cap_unlock(bz_mutex *mu, struct bz_cap *cap) RELEASE(*cap) NO_TSA
{
	(void)cap;
	pthread_mutex_unlock(&mu->m);
}
static inline void bz_cap_rdlock(bz_rwlock *l, struct bz_cap *cap) ACQUIRE_SHARED(*cap) NO_TSA
{
	(void)cap;
	pthread_rwlock_rdlock(&l->l);
}
static inline void bz_cap_rdunlock(bz_rwlock *l, struct bz_cap *cap) RELEASE_SHARED(*cap) NO_TSA
{
	(void)cap;
	pthread_rwlock_unlock(&l->l);
}
static inline void bz_cap_wrlock(bz_rwlock *l, struct bz_cap *cap) ACQUIRE(*cap) NO_TSA
{
	(void)cap;
	pthread_rwlock_wrlock(&l->l);
}
static inline void bz_cap_wrunlock(bz_rwlock *l, struct bz_cap *cap) RELEASE(*cap) NO_TSA
{
	(void)cap;
	pthread_rwlock_unlock(&l->l);
}
static inline void bz_cap_cond_wait(pthread_cond_t *c, bz_mutex *mu, struct bz_cap *cap) REQUIRES(*cap) NO_TSA
{
	(void)cap;
	pthread_cond_wait(c, &mu->m);
}
int bz_cap_cond_timedwait(pthread_cond_t *c, bz_mutex *mu, struct bz_cap *cap, uint64_t abs_mono_ns)
	REQUIRES(*cap);

/* Condition variables: the caller must hold mu (checked by the analysis). */
static inline void bz_cond_wait(pthread_cond_t *c, bz_mutex *mu) REQUIRES(mu) NO_TSA
{
	pthread_cond_wait(c, &mu->m);
}
/* Waits until abs_mono (CLOCK_MONOTONIC, ns). Returns 0 or ETIMEDOUT. The
 * condition variable must have been made with bz_cond_init. */
int bz_cond_timedwait(pthread_cond_t *c, bz_mutex *mu, uint64_t abs_mono_ns) REQUIRES(mu);
/* Initializes a condition variable that uses CLOCK_MONOTONIC. */
void bz_cond_init(pthread_cond_t *c);

#endif
