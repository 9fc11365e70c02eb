/* ns_dirty.h — private to ns.c / ns_dirty.c: the namespace's dirty sets
 * (what changed since the last checkpoint). See ns_dirty.c. */
#ifndef BZ_NS_DIRTY_H
#define BZ_NS_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nsd_ent {
	uint64_t dir, hash;
	uint32_t len;
	char name[];
};

struct nsd {
	uint64_t *ino;          /* open addressing, 0 = empty slot */
	size_t ino_cap, ino_n;  /* cap: power of two or 0 */
	struct nsd_ent **ent;   /* open addressing on (dir, name) */
	size_t ent_cap, ent_n;
	bool all;               /* a mark failed (ENOMEM) or a load: everything is dirty */
};

void nsd_mark_ino(struct nsd *d, uint64_t ino);
/* Room for one more inode mark (after it nsd_mark_ino cannot fail): 0 or
 * -ENOMEM. Membership of an inode mark. (The backed namespace's "gone"
 * set uses the inode part alone, ns.c.) */
int nsd_reserve_ino(struct nsd *d);
bool nsd_has_ino(const struct nsd *d, uint64_t ino);
void nsd_mark_ent(struct nsd *d, uint64_t dir, const char *name, size_t len);
void nsd_clear(struct nsd *d);
void nsd_free(struct nsd *d);
int nsd_each_ino(const struct nsd *d, int (*cb)(void *arg, uint64_t ino), void *arg);
int nsd_each_ent(const struct nsd *d, int (*cb)(void *arg, uint64_t dir, const char *name, size_t len), void *arg);

#endif
