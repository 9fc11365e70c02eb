/* pager.c — the pages of store.db: header, checksum, read cache.
 *
 * PAGE LAYOUT. store.db is an array of 4096-byte pages; page N lives at byte
 * N * 4096. Every page starts with a 48-byte header, all integers little
 * endian:
 *
 *   off size field
 *     0   4  magic     0x47505a42 ("BZPG")
 *     4   1  type      1 SUPER, 2 DATA, 3 INDEX, 4 NSMETA, 5 PACK
 *     5   3  reserved  zero
 *     8   8  pgno      the page's own number (a page written at the wrong
 *                      place, or a stale copy, never validates)
 *    16   8  lsn       newest LSN whose content the page holds
 *    24   8  next      chain link, 0 = none (page 0 is a superblock, so it is
 *                      never a chain member)
 *    32   4  used      payload bytes in use, <= 4048
 *    36   4  reserved  zero
 *    40   8  checksum  XXH3-64 of the whole 4096-byte page with these 8
 *                      bytes set to zero
 *
 * followed by 4048 payload bytes (unused payload bytes are zero). What the
 * payload means depends on the type: see store_data.c, store_ckpt.c and
 * docs/FORMAT.md ("The PageStore and recovery").
 *
 * A page is valid iff magic, checksum, type and pgno all match. Reading an
 * invalid page is an I/O error (-EIO) and is logged with its page number:
 * the engine never returns bytes from a page that fails its checksum.
 *
 * CACHE. A direct-mapped cache of verified pages (slot = pgno % slots), so
 * its memory is bounded by cache_bytes. The commit thread replaces a slot's
 * copy whenever it writes that page, so a reused page number (a freed index
 * or namespace page) can never be served stale. Lock: cache_mu is a leaf
 * lock (nothing else is taken while holding it).
 *
 * SCRUB READS. A thread that calls pager_scrub_thread(true) reads every
 * page from the file: the cache is neither consulted nor filled, so an
 * online scrub (fs/scrub.c) verifies what the disk holds, not a copy
 * verified earlier, and does not evict the readers' hot pages. The flag is
 * thread-local: no lock, no effect on other threads.
 *
 * SUPERBLOCK WRITES. pager_write of page 0 or 1 (a superblock) makes
 * super_seq odd before its pwrite and even again after it (seq_cst
 * atomics: a seqlock with one writer, the commit thread). A scrub that
 * reads metadata pages with no store lock (store_scrub.c) samples it before
 * and after: equal and even means no superblock was being written meanwhile
 * -- so the superblocks it read are not torn, and no page named by the
 * superblock it read was freed (a checkpoint frees the previous chain only
 * after writing the next superblock).
 *
 * VOLATILE MODE (read-only stores): recovery of a read-only store still
 * replays the WAL, which fills data and index pages; those pages then live
 * in an in-memory overlay (hash of pgno -> page) and the file is never
 * written.
 */
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "log.h"
#include "pager.h"
#include "tsa.h"

BZ_CAP_DECLARE(pager_cache_cap); /* p->cache_mu (tsa.h: capability tokens) */


#define SLOT_EMPTY UINT64_MAX

static __thread bool scrub_reads; /* this thread bypasses the cache */

void pager_scrub_thread(bool on) { scrub_reads = on; }

struct pager {
	struct vfs_file *f; /* set at pager_new, then read-only */
	size_t slots;       /* set at pager_new, then read-only */
	bz_mutex cache_mu;
	uint64_t *slot_pgno GUARDED_BY(pager_cache_cap); /* SLOT_EMPTY = free */
	uint8_t *slot_data GUARDED_BY(pager_cache_cap);  /* slots * PAGER_PAGE_SIZE */
	uint64_t hits, misses, checksum_errors;   /* __atomic, statistics */
	uint64_t super_seq;                       /* __atomic: odd while a superblock is written */
	bool is_volatile;                         /* set before any other thread runs */
	uint64_t *ov_pgno GUARDED_BY(pager_cache_cap);   /* overlay hash (volatile mode), 0 = empty */
	uint8_t **ov_page GUARDED_BY(pager_cache_cap);
	size_t ov_cap GUARDED_BY(pager_cache_cap), ov_n GUARDED_BY(pager_cache_cap);
};

static size_t ov_home(uint64_t pgno, size_t cap) { return (size_t)((pgno * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1); }

static uint8_t *ov_find(struct pager *p, uint64_t pgno) REQUIRES(pager_cache_cap)
{
	if (!p->ov_cap)
		return NULL;
	for (size_t i = ov_home(pgno, p->ov_cap);; i = (i + 1) & (p->ov_cap - 1)) {
		if (!p->ov_pgno[i])
			return NULL;
		if (p->ov_pgno[i] == pgno)
			return p->ov_page[i];
	}
}

static int ov_put(struct pager *p, uint64_t pgno, const uint8_t *page) REQUIRES(pager_cache_cap)
{
	uint8_t *dst = ov_find(p, pgno);
	if (dst) {
		memcpy(dst, page, PAGER_PAGE_SIZE);
		return 0;
	}
	if ((p->ov_n + 1) * 2 > p->ov_cap) {
		size_t cap = p->ov_cap ? p->ov_cap * 2 : 64;
		uint64_t *pg = calloc(cap, sizeof(*pg));
		uint8_t **pp = calloc(cap, sizeof(*pp));
		if (!pg || !pp) {
			free(pg);
			free(pp);
			return -ENOMEM;
		}
		for (size_t j = 0; j < p->ov_cap; j++) {
			if (!p->ov_pgno[j])
				continue;
			size_t i = ov_home(p->ov_pgno[j], cap);
			while (pg[i])
				i = (i + 1) & (cap - 1);
			pg[i] = p->ov_pgno[j];
			pp[i] = p->ov_page[j];
		}
		free(p->ov_pgno);
		free(p->ov_page);
		p->ov_pgno = pg;
		p->ov_page = pp;
		p->ov_cap = cap;
	}
	dst = malloc(PAGER_PAGE_SIZE);
	if (!dst)
		return -ENOMEM;
	memcpy(dst, page, PAGER_PAGE_SIZE);
	size_t i = ov_home(pgno, p->ov_cap);
	while (p->ov_pgno[i])
		i = (i + 1) & (p->ov_cap - 1);
	p->ov_pgno[i] = pgno;
	p->ov_page[i] = dst;
	p->ov_n++;
	return 0;
}

void pager_set_volatile(struct pager *p) { p->is_volatile = true; }

static uint64_t page_checksum(const uint8_t *page)
{
	XXH3_state_t st;
	static const uint8_t zero[8];

	XXH3_INITSTATE(&st); /* a stack state must be initialized (xxhash.h) */
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, page, 40);
	XXH3_64bits_update(&st, zero, 8);
	XXH3_64bits_update(&st, page + 48, PAGER_PAGE_SIZE - 48);
	return XXH3_64bits_digest(&st);
}

void pager_seal(uint8_t *page, const struct pager_hdr *h)
{
	bz_put_le32(page + 0, PAGER_MAGIC);
	page[4] = h->type;
	page[5] = page[6] = page[7] = 0;
	bz_put_le64(page + 8, h->pgno);
	bz_put_le64(page + 16, h->lsn);
	bz_put_le64(page + 24, h->next);
	bz_put_le32(page + 32, h->used);
	bz_put_le32(page + 36, 0);
	bz_put_le64(page + 40, page_checksum(page));
}

int pager_check(const uint8_t *page, uint64_t pgno, uint8_t type, struct pager_hdr *ret_h)
{
	struct pager_hdr h;

	if (bz_get_le32(page) != PAGER_MAGIC)
		return -EBADMSG;
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	if (bz_get_le64(page + 40) != page_checksum(page))
		return -EBADMSG;
#endif
	h.type = page[4];
	h.pgno = bz_get_le64(page + 8);
	h.lsn = bz_get_le64(page + 16);
	h.next = bz_get_le64(page + 24);
	h.used = bz_get_le32(page + 32);
	if ((type && h.type != type) || h.pgno != pgno || h.used > PAGER_PAYLOAD)
		return -EBADMSG;
	if (ret_h)
		*ret_h = h;
	return 0;
}

int pager_new(struct vfs_file *f, uint64_t cache_bytes, struct pager **ret_pager)
{
	struct pager *p = calloc(1, sizeof(*p));
	int r = -ENOMEM;

	if (!p)
		goto out;
	p->f = f;
	bz_mutex_init(&p->cache_mu);
	p->slots = (size_t)(cache_bytes / PAGER_PAGE_SIZE);
	if (p->slots) {
		bz_cap_lock(&p->cache_mu, &pager_cache_cap);
		p->slot_pgno = malloc(p->slots * sizeof(uint64_t));
		p->slot_data = malloc(p->slots * (size_t)PAGER_PAGE_SIZE);
		if (p->slot_pgno)
			for (size_t i = 0; i < p->slots; i++)
				p->slot_pgno[i] = SLOT_EMPTY;
		bool ok = p->slot_pgno && p->slot_data;
		bz_cap_unlock(&p->cache_mu, &pager_cache_cap);
		if (!ok) {
			pager_free(p);
			p = NULL;
			goto out;
		}
	}
	*ret_pager = p;
	r = 0;
out:
	return r;
}

void pager_free(struct pager *p) NO_TSA
{
	if (!p)
		return;
	free(p->slot_pgno);
	free(p->slot_data);
	for (size_t i = 0; i < p->ov_cap; i++)
		free(p->ov_page[i]);
	free(p->ov_pgno);
	free(p->ov_page);
	bz_mutex_destroy(&p->cache_mu);
	free(p);
}

static void cache_put(struct pager *p, uint64_t pgno, const uint8_t *page) EXCLUDES(pager_cache_cap)
{
	if (!p->slots)
		return;
	size_t i = (size_t)(pgno % p->slots);
	bz_cap_lock(&p->cache_mu, &pager_cache_cap);
	p->slot_pgno[i] = pgno;
	memcpy(p->slot_data + i * (size_t)PAGER_PAGE_SIZE, page, PAGER_PAGE_SIZE);
	bz_cap_unlock(&p->cache_mu, &pager_cache_cap);
}

static bool cache_get(struct pager *p, uint64_t pgno, uint8_t *buf) EXCLUDES(pager_cache_cap)
{
	bool hit = false;

	if (!p->slots)
		return false;
	size_t i = (size_t)(pgno % p->slots);
	bz_cap_lock(&p->cache_mu, &pager_cache_cap);
	if (p->slot_pgno[i] == pgno) {
		memcpy(buf, p->slot_data + i * (size_t)PAGER_PAGE_SIZE, PAGER_PAGE_SIZE);
		hit = true;
	}
	bz_cap_unlock(&p->cache_mu, &pager_cache_cap);
	return hit;
}

int pager_write(struct pager *p, uint64_t pgno, const uint8_t *page)
{
	int r;

	if (p->is_volatile) {
		bz_cap_lock(&p->cache_mu, &pager_cache_cap);
		r = pgno ? ov_put(p, pgno, page) : -EINVAL;
		bz_cap_unlock(&p->cache_mu, &pager_cache_cap);
		return r;
	}
	/* Drop the old copy first: if the write fails, the page's content on
	 * disk is unknown, and the cache must not pretend otherwise. */
	if (p->slots) {
		size_t i = (size_t)(pgno % p->slots);
		bz_cap_lock(&p->cache_mu, &pager_cache_cap);
		if (p->slot_pgno[i] == pgno)
			p->slot_pgno[i] = SLOT_EMPTY;
		bz_cap_unlock(&p->cache_mu, &pager_cache_cap);
	}
	if (pgno < 2)
		__atomic_fetch_add(&p->super_seq, 1, __ATOMIC_SEQ_CST); /* odd: a superblock is being written */
	r = vfs_pwrite(p->f, page, PAGER_PAGE_SIZE, pgno * (uint64_t)PAGER_PAGE_SIZE);
	if (r < 0) {
		bz_err("store.db: page %llu: write failed: %s", (unsigned long long)pgno, strerror(-r));
		goto out;
	}
	cache_put(p, pgno, page);
	r = 0;
out:
	if (pgno < 2)
		__atomic_fetch_add(&p->super_seq, 1, __ATOMIC_SEQ_CST);
	return r;
}

uint64_t pager_super_seq(struct pager *p) { return __atomic_load_n(&p->super_seq, __ATOMIC_SEQ_CST); }

int pager_write_run(struct pager *p, uint64_t first, uint32_t n, const uint8_t *pages)
{
	int r = 0;

	if (p->is_volatile || n == 1) {
		for (uint32_t i = 0; i < n && r == 0; i++)
			r = pager_write(p, first + i, pages + (size_t)i * PAGER_PAGE_SIZE);
		return r;
	}
	if (p->slots) {
		bz_cap_lock(&p->cache_mu, &pager_cache_cap);
		for (uint32_t i = 0; i < n; i++) {
			size_t k = (size_t)((first + i) % p->slots);
			if (p->slot_pgno[k] == first + i)
				p->slot_pgno[k] = SLOT_EMPTY;
		}
		bz_cap_unlock(&p->cache_mu, &pager_cache_cap);
	}
	r = vfs_pwrite(p->f, pages, (size_t)n * PAGER_PAGE_SIZE, first * (uint64_t)PAGER_PAGE_SIZE);
	if (r < 0)
		bz_err("store.db: pages %llu..%llu: write failed: %s", (unsigned long long)first,
		       (unsigned long long)(first + n - 1), strerror(-r));
	return r < 0 ? r : 0;
}

/* A cached page was verified when it entered the cache, so a failed check
 * here means the caller expected another type: a corrupt reference (an
 * index entry naming a namespace page, say — found by fuzz_page), not a
 * can't-happen. */
static int cached_check(struct pager *p, const uint8_t *buf, uint64_t pgno, uint8_t type, struct pager_hdr *ret_h)
{
	int r = pager_check(buf, pgno, type, ret_h);

	if (r < 0) {
		__atomic_fetch_add(&p->checksum_errors, 1, __ATOMIC_RELAXED);
		bz_err("store.db: page %llu: not a page of type %u (a corrupt reference to it)",
		       (unsigned long long)pgno, (unsigned)type);
		r = -EIO;
	}
	return r;
}

int pager_read(struct pager *p, uint64_t pgno, uint8_t type, uint8_t *buf, struct pager_hdr *ret_h)
{
	size_t n = 0;
	int r;

	if (p->is_volatile) {
		bz_cap_lock(&p->cache_mu, &pager_cache_cap);
		const uint8_t *src = ov_find(p, pgno);
		if (src)
			memcpy(buf, src, PAGER_PAGE_SIZE);
		bz_cap_unlock(&p->cache_mu, &pager_cache_cap);
		if (src) {
			r = cached_check(p, buf, pgno, type, ret_h);
			goto out;
		}
	}
	if (!scrub_reads && cache_get(p, pgno, buf)) {
		__atomic_fetch_add(&p->hits, 1, __ATOMIC_RELAXED);
		r = cached_check(p, buf, pgno, type, ret_h);
		goto out;
	}
	__atomic_fetch_add(&p->misses, 1, __ATOMIC_RELAXED);
	r = vfs_pread(p->f, buf, PAGER_PAGE_SIZE, pgno * (uint64_t)PAGER_PAGE_SIZE, &n);
	if (r < 0) {
		bz_err("store.db: page %llu: read failed: %s", (unsigned long long)pgno, strerror(-r));
		goto out;
	}
	if (n != PAGER_PAGE_SIZE) {
		bz_err("store.db: page %llu: beyond the end of the file (%zu bytes read)",
		       (unsigned long long)pgno, n);
		r = -EIO;
		goto out;
	}
	r = pager_check(buf, pgno, type, ret_h);
	if (r < 0) {
		__atomic_fetch_add(&p->checksum_errors, 1, __ATOMIC_RELAXED);
		bz_err("store.db: page %llu: checksum mismatch or bad header (expected type %u, found type %u, "
		       "page number %llu)",
		       (unsigned long long)pgno, type, buf[4], (unsigned long long)bz_get_le64(buf + 8));
		r = -EIO;
		goto out;
	}
	if (!scrub_reads)
		cache_put(p, pgno, buf);
out:
	return r;
}

int pager_sync(struct pager *p)
{
	if (p->is_volatile)
		return 0;
	int r = vfs_fsync(p->f);
	if (r < 0)
		bz_err("store.db: fsync failed: %s", strerror(-r));
	return r;
}

void pager_stats(struct pager *p, struct pager_stats *ret)
{
	ret->hits = __atomic_load_n(&p->hits, __ATOMIC_RELAXED);
	ret->misses = __atomic_load_n(&p->misses, __ATOMIC_RELAXED);
	ret->checksum_errors = __atomic_load_n(&p->checksum_errors, __ATOMIC_RELAXED);
}
