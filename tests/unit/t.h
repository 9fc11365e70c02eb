/* t.h — the unit tests' tiny harness. A test program checks with T_CHECK*,
 * keeps going after a failed check, and ends with T_DONE() (exit 1 if any
 * check failed, 0 otherwise; exit 77 means skipped). */
#ifndef BZ_T_H
#define BZ_T_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static int t_failures;
static int t_checks;

#define T_CHECK(cond)                                                                   \
	do {                                                                            \
		t_checks++;                                                             \
		if (!(cond)) {                                                          \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			t_failures++;                                                   \
		}                                                                       \
	} while (0)

#define T_CHECK_EQ(a, b)                                                                         \
	do {                                                                                     \
		long long t_a_ = (long long)(a), t_b_ = (long long)(b);                          \
		t_checks++;                                                                      \
		if (t_a_ != t_b_) {                                                              \
			fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", __FILE__, \
				__LINE__, #a, #b, t_a_, t_b_);                                   \
			t_failures++;                                                            \
		}                                                                                \
	} while (0)

/* Fatal: stop the test program now. */
#define T_ASSERT(cond)                                                                    \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

#define T_DONE()                                                                        \
	do {                                                                            \
		fprintf(stderr, "%s: %d checks, %d failed\n", __FILE__, t_checks, t_failures); \
		return t_failures ? 1 : 0;                                              \
	} while (0)

#endif
