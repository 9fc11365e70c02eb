/* util.c — the few shared helpers declared in tsa.h, log.h and hist.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "hist.h"
#include "log.h"
#include "tsa.h"

void bz_cond_init(pthread_cond_t *c)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

int bz_cond_timedwait(pthread_cond_t *c, bz_mutex *mu, uint64_t abs_mono_ns) NO_TSA
{
	struct timespec ts = {
		.tv_sec = (time_t)(abs_mono_ns / 1000000000ull),
		.tv_nsec = (long)(abs_mono_ns % 1000000000ull),
	};
	return pthread_cond_timedwait(c, &mu->m, &ts);
}

int bz_cap_cond_timedwait(pthread_cond_t *c, bz_mutex *mu, struct bz_cap *cap, uint64_t abs_mono_ns) NO_TSA
{
	(void)cap;
	return bz_cond_timedwait(c, mu, abs_mono_ns);
}

static int log_level = BZ_LOG_INFO; /* __atomic access */
static int log_syslog;              /* __atomic access */

void bz_log_set_level(enum bz_log_level level) { __atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED); }
enum bz_log_level bz_log_get_level(void) { return (enum bz_log_level)__atomic_load_n(&log_level, __ATOMIC_RELAXED); }

void bz_log_use_syslog(bool on)
{
	if (on)
		openlog("blazefs", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	__atomic_store_n(&log_syslog, on ? 1 : 0, __ATOMIC_RELAXED);
}

void bz_log(enum bz_log_level level, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char line[1024];
	va_list ap;

	if ((int)level > __atomic_load_n(&log_level, __ATOMIC_RELAXED))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (__atomic_load_n(&log_syslog, __ATOMIC_RELAXED)) {
		syslog(prio[level], "%s", line);
	} else {
		/* one fprintf per line: stdio locks the stream, so lines never interleave */
		fprintf(stderr, "blazefs: %s: %s\n", names[level], line);
	}
}

static unsigned hist_bucket(uint64_t ns)
{
	unsigned b = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;
	return b < BZ_HIST_BUCKETS ? b : BZ_HIST_BUCKETS - 1;
}

void bz_hist_add(struct bz_hist *h, uint64_t ns)
{
	uint64_t m;

	__atomic_fetch_add(&h->bucket[hist_bucket(ns)], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->sum, ns, __ATOMIC_RELAXED);
	m = __atomic_load_n(&h->max, __ATOMIC_RELAXED);
	while (ns > m && !__atomic_compare_exchange_n(&h->max, &m, ns, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void bz_hist_snapshot(const struct bz_hist *h, struct bz_hist *ret)
{
	for (unsigned i = 0; i < BZ_HIST_BUCKETS; i++)
		ret->bucket[i] = __atomic_load_n(&h->bucket[i], __ATOMIC_RELAXED);
	ret->count = __atomic_load_n(&h->count, __ATOMIC_RELAXED);
	ret->sum = __atomic_load_n(&h->sum, __ATOMIC_RELAXED);
	ret->max = __atomic_load_n(&h->max, __ATOMIC_RELAXED);
}

uint64_t bz_hist_quantile(const struct bz_hist *snap, double q)
{
	uint64_t total = 0, want, seen = 0;

	for (unsigned i = 0; i < BZ_HIST_BUCKETS; i++)
		total += snap->bucket[i];
	if (total == 0)
		return 0;
	want = (uint64_t)(q * (double)total);
	if (want >= total)
		want = total - 1;
	for (unsigned i = 0; i < BZ_HIST_BUCKETS; i++) {
		seen += snap->bucket[i];
		if (seen > want) {
			uint64_t hi = (i + 1 < 64) ? (1ull << (i + 1)) : UINT64_MAX;
			return hi < snap->max ? hi : snap->max;
		}
	}
	return snap->max;
}
