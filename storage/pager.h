/* pager.h — fixed-size checksummed pages of store.db and their read cache.
 * Internal to the PageStore (store*.c). Page layout: docs/FORMAT.md ("The PageStore and recovery")
 * and the comment at the top of pager.c.
 *
 * Threads: pager_write/pager_sync are called by the commit thread only;
 * pager_read by any thread. The cache has its own mutex (a leaf lock).
 */
#ifndef BZ_PAGER_H
#define BZ_PAGER_H

#include "vfs.h"

#define PAGER_PAGE_SIZE 4096u
#define PAGER_HDR_SIZE 48u
#define PAGER_PAYLOAD (PAGER_PAGE_SIZE - PAGER_HDR_SIZE)
#define PAGER_MAGIC 0x47505a42u /* "BZPG" little-endian */

enum pager_type {
	PAGER_SUPER = 1,  /* pages 0 and 1 */
	PAGER_DATA = 2,   /* one chunk frame's extent page; next = pgno+1 while it continues */
	PAGER_INDEX = 3,  /* a full per-file index page; next = previous index page */
	PAGER_NSMETA = 4, /* namespace checkpoint stream; next = next page of the chain */
	PAGER_PACK = 5,   /* packed chunk frames (none crosses the page); next = 0 */
	PAGER_BTREE_LEAF = 6, /* B+tree leaf (btree.c); next = 0 */
	PAGER_BTREE_NODE = 7, /* B+tree interior node (btree.c); next = 0 */
	PAGER_OVERFLOW = 8,   /* part of a long B+tree value; next = its next page */
};

struct pager_hdr {
	uint8_t type;  /* enum pager_type */
	uint64_t pgno; /* the page's own number */
	uint64_t lsn;  /* newest LSN whose content the page holds */
	uint64_t next; /* chain link (0 = none; page 0 is never a chain member) */
	uint32_t used; /* payload bytes in use (<= PAGER_PAYLOAD) */
};

/* Writes h into page[0..PAGER_HDR_SIZE) and stores the checksum (XXH3-64
 * over the whole page with the checksum field zeroed). */
void pager_seal(uint8_t *page, const struct pager_hdr *h);
/* Checks magic, checksum, type (0 = any) and page number. Returns 0 (and
 * fills *ret_h, may be NULL) or -EBADMSG. Never logs. */
int pager_check(const uint8_t *page, uint64_t pgno, uint8_t type, struct pager_hdr *ret_h);

struct pager;
/* f is not owned. cache_bytes == 0 disables the cache. */
int pager_new(struct vfs_file *f, uint64_t cache_bytes, struct pager **ret_pager);
void pager_free(struct pager *p); /* NULL ok */
/* Writes a sealed page (commit thread). The cache copy is replaced. */
int pager_write(struct pager *p, uint64_t pgno, const uint8_t *page);
/* Writes n sealed, consecutive pages first..first+n-1 in one call (commit
 * thread). Cached copies of those page numbers are dropped, not replaced. */
int pager_write_run(struct pager *p, uint64_t first, uint32_t n, const uint8_t *pages);
/* Reads and verifies page pgno of the given type into buf[PAGER_PAGE_SIZE]
 * (from the cache if present). A short file or a bad page returns -EIO and
 * logs "store.db: page N: ..." once per call. */
int pager_read(struct pager *p, uint64_t pgno, uint8_t type, uint8_t *buf, struct pager_hdr *ret_h);
int pager_sync(struct pager *p);
/* The calling thread's pager_read calls (on every pager) bypass the cache
 * while on: they read and verify the file itself (online scrub). */
void pager_scrub_thread(bool on);
/* Odd while pager_write writes page 0 or 1 (a superblock); grows by 2 with
 * each such write (pager.c, SUPERBLOCK WRITES). */
uint64_t pager_super_seq(struct pager *p);
/* Read-only stores (fsck, dump): from now on pager_write keeps pages in
 * memory (pager_read serves them from there) and never touches the file;
 * pager_sync does nothing. */
void pager_set_volatile(struct pager *p);

struct pager_stats {
	uint64_t hits, misses, checksum_errors;
};
void pager_stats(struct pager *p, struct pager_stats *ret);

#endif
