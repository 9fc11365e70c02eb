/* btree.h — a copy-on-write B+tree of byte-string keys and values over the
 * store's 4 KiB pages. Format: docs/FORMAT.md ("B+tree pages") and the
 * comment at the top of btree.c.
 *
 * The tree never writes a page that a previous flush wrote: a changed node
 * gets a new page at the next btree_flush and its old page goes to
 * io->free_page, so the root returned by the previous flush stays readable
 * until the caller reuses the pages it was handed back (the store: after
 * the superblock naming the new root is durable).
 *
 * Threads: a struct btree is not thread-safe; one thread (or the caller's
 * lock) at a time. The io callbacks are called from that thread.
 * Errors: 0 or a negative errno. A corrupt page gives -EUCLEAN (or the
 * read_page callback's error, e.g. -EIO); an error inside btree_flush makes
 * the tree fail every later call with -EIO (sticky: reopen from a root).
 */
#ifndef BZ_BTREE_H
#define BZ_BTREE_H

#include <stddef.h>
#include <stdint.h>

#define BTREE_KEY_MAX 300u
#define BTREE_INLINE_MAX 1024u         /* longer values live in OVERFLOW pages */
#define BTREE_VALUE_MAX (16u << 20)    /* longest value btree_put accepts */

struct btree_io {
	/* Reads page pgno (4096 bytes) into buf. Verification is the tree's. */
	int (*read_page)(void *arg, uint64_t pgno, uint8_t *buf);
	/* A page number nobody uses (the free map first, then the high-water
	 * mark). Never a page handed to free_page since the caller's last
	 * durable point. */
	int (*alloc_page)(void *arg, uint64_t *ret_pgno);
	/* The page is no longer part of the tree as of the flush in progress;
	 * it must stay readable until the new root is durable. */
	void (*free_page)(void *arg, uint64_t pgno);
	/* Writes a sealed page (btree_flush only). */
	int (*write_page)(void *arg, uint64_t pgno, const uint8_t *page);
	/* Page numbers valid as children are [2, high_water(arg)); NULL = no
	 * upper bound checked. */
	uint64_t (*high_water)(void *arg);
	void *arg;
};

struct btree;

/* root 0 = empty tree (count must then be 0). Reads nothing yet. io is
 * copied. */
int btree_open(const struct btree_io *io, uint64_t root_pgno, uint64_t count, struct btree **ret_tree);
void btree_close(struct btree *t); /* NULL ok; drops unflushed changes */
/* Memory budget for clean (evictable) nodes; default 4 MiB. Dirty nodes
 * stay in memory until the next flush whatever the budget. */
void btree_set_cache_bytes(struct btree *t, uint64_t bytes);

/* Key: 1..BTREE_KEY_MAX bytes, compared with memcmp (a prefix sorts first).
 * btree_get copies the value into buf when it fits: *ret_vlen = its length
 * always (on 0 and on -ERANGE, which means cap < length; buf may be NULL
 * with cap 0 to ask the length). -ENOENT if absent. */
int btree_get(struct btree *t, const void *key, size_t klen, void *buf, size_t cap, size_t *ret_vlen);
/* Inserts or replaces. -EINVAL: bad key length; -E2BIG: value too long. */
int btree_put(struct btree *t, const void *key, size_t klen, const void *val, size_t vlen);
/* -ENOENT if absent. */
int btree_del(struct btree *t, const void *key, size_t klen);
/* Calls cb for every key >= from (from NULL or flen 0: from the first) in
 * key order until cb returns nonzero; returns that value, 0 at the end, or
 * a negative errno. key/val are valid during the call only. cb may call
 * btree_get but not btree_put/btree_del/btree_flush (-EBUSY). */
typedef int (*btree_iter_fn)(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen);
int btree_iter(struct btree *t, const void *from, size_t flen, btree_iter_fn cb, void *arg);
uint64_t btree_count(const struct btree *t);
/* The largest key, copied into buf (BTREE_KEY_MAX bytes): O(depth).
 * -ENOENT for an empty tree (or an empty last leaf). */
int btree_last(struct btree *t, uint8_t *buf, size_t *ret_klen);
/* The highest page number on the tree's leftmost and rightmost root-to-leaf
 * paths (dirty nodes, which have no page yet, count 0; 0 for an empty
 * tree): whether those paths pin the end of the file. */
int btree_ends_max(struct btree *t, uint64_t *ret_pgno);

/* Writes every node changed since the last flush (and new overflow
 * values), children before parents, to newly allocated pages sealed with
 * lsn; hands the pages they replace to io->free_page; *ret_root = the new
 * root (0 = empty tree). Unchanged: no page written, same root. */
int btree_flush(struct btree *t, uint64_t lsn, uint64_t *ret_root);

/* Reads the on-disk tree at root from scratch (no cache) and checks all of
 * it: page checksums and types, levels, key order within and across nodes,
 * overflow chains, and that it holds count keys. Calls page_cb (may be
 * NULL) once per page reached: node, leaf or overflow (type = the pager
 * type). For fsck and tests. 0 or -EUCLEAN / the read error. */
int btree_verify(const struct btree_io *io, uint64_t root_pgno, uint64_t count,
	void (*page_cb)(void *arg, uint64_t pgno, uint8_t type), void *cb_arg);

struct btree_stats {
	uint64_t pages_read, pages_written, pages_freed; /* cumulative */
	uint64_t cache_hits, cache_misses, evictions;
	uint64_t clean_bytes, clean_nodes, dirty_nodes;  /* now */
	uint32_t depth;                                  /* levels, 0 = empty */
};
void btree_stats(const struct btree *t, struct btree_stats *ret);

#endif
