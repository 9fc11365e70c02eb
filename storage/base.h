/* base.h — project-wide conventions. Pure: no state, safe for every module.
 *
 * Error convention: every function that can fail returns 0 (or a non-negative
 * count) on success and a negative errno on failure. Output parameters are
 * named ret_* and are left untouched on failure. One cleanup exit per
 * function (goto out / goto fail); destructors accept NULL.
 */
#ifndef BZ_BASE_H
#define BZ_BASE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define BZ_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define BZ_MIN(a, b) ((a) < (b) ? (a) : (b))
#define BZ_MAX(a, b) ((a) > (b) ? (a) : (b))
#define BZ_LIKELY(x) __builtin_expect(!!(x), 1)
#define BZ_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define BZ_UNUSED __attribute__((unused))
#define BZ_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ALWAYS(x)/NEVER(x): can't-happen branches. In debug builds (NDEBUG unset)
 * they abort when violated; in release builds they evaluate to x so the
 * defensive branch still runs. */
#ifndef NDEBUG
#include <assert.h>
#define ALWAYS(x) (assert(x), 1)
#define NEVER(x) (assert(!(x)), 0)
#else
#define ALWAYS(x) (!!(x))
#define NEVER(x) (!!(x))
#endif

/* Little-endian fixed-width helpers: the one byte order of every on-disk
 * structure. */
static inline void bz_put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void bz_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void bz_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t bz_get_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t bz_get_le32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}
static inline uint64_t bz_get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* Monotonic and wall clocks in nanoseconds. */
static inline uint64_t bz_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline int64_t bz_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}
/* The clock the kernel stamps file times with (current_time(): one tick,
 * 4 ms at HZ=250), as ext4's are: inode times of appends and namespace
 * changes (fs/fs.h fs_now_ns, a batch's time in the pipeline). */
static inline int64_t bz_wall_coarse_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

#endif
