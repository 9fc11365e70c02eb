/* btree_int.h — what storage/btree.c shares with storage/btree_verify.c:
 * the in-memory node and the page decoder. Not for other modules. */
#ifndef BZ_BTREE_INT_H
#define BZ_BTREE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "btree.h"
#include "pager.h"

#define BT_HDR 8u
#define BT_MAXDEPTH 24
#define BT_MIN_FILL (PAGER_PAYLOAD / 4)
#define BT_LEAF_ENT 9u  /* slot + klen + flags + vlen */
#define BT_NODE_ENT 12u /* slot + klen + child */
#define BT_DEFAULT_CACHE (4u << 20)

enum { VK_INLINE = 0, VK_OVF = 1, VK_NEW = 2 }; /* VK_NEW: long value in memory, not yet written */

struct bnode;

struct bent {
	uint8_t *kv;        /* key, then (leaf VK_INLINE / VK_NEW) the value; NULL if klen 0 */
	uint16_t klen;
	uint8_t vkind;      /* leaves */
	uint8_t own;        /* kv is the entry's own allocation, else it points into its node's arena */
	uint32_t vlen;      /* leaves */
	uint64_t ptr;       /* node: child page (0 while the child is new); leaf VK_OVF: first page */
	struct bnode *cmem; /* node: the child, when it is dirty */
};

struct bnode {
	uint64_t pgno;  /* clean: the page it is on; dirty: 0 (the old page is queued) */
	uint8_t level;
	bool dirty;
	uint32_t n, cap;
	struct bent *e;
	size_t bytes;   /* payload size once written */
	size_t mem;     /* accounted memory (clean nodes) */
	uint8_t *arena; /* the entries as read from the page (one allocation per node read) */
	size_t arena_len;
	struct bnode *hnext, *lprev, *lnext;
};

struct kbound {
	const uint8_t *k; /* NULL = unbounded */
	size_t len;
};

/* Reads page pgno through io->read_page and checks its header (type 0 =
 * any): -EUCLEAN outside [2, H) or of another type, -EIO if it fails its
 * checksum, magic or page number. */
int btree_read_checked(struct btree *t, uint64_t pgno, uint8_t type, uint8_t *buf, struct pager_hdr *h);
/* Decodes a LEAF or NODE page into a new node, checking everything the page
 * alone can tell and that its keys lie in [lo, hi). level < 0: any. */
int btree_node_decode(struct btree *t, const uint8_t *page, const struct pager_hdr *h, int level,
	struct kbound lo, struct kbound hi, struct bnode **ret);
void btree_node_free(struct bnode *nd); /* NULL ok */

#endif
