/* bufpool.h — large buffers recycled between the threads that fill them
 * and the thread that frees them (storage/bufpool.c). */
#ifndef BZ_BUFPOOL_H
#define BZ_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

/* Requests below this are plain malloc; from it up to BP_MAX they come in
 * power-of-two classes. */
#define BP_MIN ((size_t)128 << 10)
#define BP_MAX ((size_t)4 << 20)
/* Bytes the pool keeps at most, over all classes. */
#define BP_KEEP ((size_t)32 << 20)

/* A buffer of at least n bytes (n > 0); *ret_cap gets its capacity, which
 * bp_put needs back. NULL on ENOMEM. The bytes are not initialized. */
void *bp_get(size_t n, size_t *ret_cap);
/* Gives back a buffer from bp_get (or any malloc'ed buffer of cap bytes,
 * or NULL): kept for the next bp_get of its class while the pool holds
 * less than BP_KEEP bytes, else freed. */
void bp_put(void *p, size_t cap);
/* Frees every kept buffer (tests, leak checks). */
void bp_drain(void);

struct bp_stats {
	uint64_t hits, misses; /* bp_get of a class size served from / not from the pool */
	uint64_t kept_bytes;   /* bytes held now */
};
void bp_stats(struct bp_stats *ret);

#endif
