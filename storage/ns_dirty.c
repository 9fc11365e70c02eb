/* ns_dirty.c — the namespace's dirty sets: which inodes and which directory
 * entries changed since the last checkpoint (docs/FORMAT.md §8: a
 * checkpoint writes only those into the namespace B+trees).
 *
 * Two hash sets, open addressing with linear probing, never shrinking
 * until cleared:
 *  - inode numbers (u64; 0 marks an empty slot, inode 0 never exists): an
 *    inode is in the set when anything the checkpoint stores for it changed
 *    (attributes, link count, size, times, symlink target, extended
 *    attributes, the store's per-file index state) or it was created or
 *    removed;
 *  - (directory inode, name) pairs: an entry added, removed or pointed at
 *    another inode.
 * A mark is never lost: when growing a set fails (ENOMEM), `all` is set
 * instead and the next checkpoint rewrites the whole namespace. The sets
 * are cleared only by the checkpoint that wrote them (ns_dirty_clear after
 * its superblock is durable), so a failed checkpoint keeps them.
 *
 * Pure data structure, no locks: the owner of the ns serializes access.
 */
#include <stdlib.h>
#include <string.h>

#include "ns.h"
#include "ns_dirty.h"
#include "record.h"

static size_t slot64(uint64_t x, size_t cap) { return (size_t)((x * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1); }

static int ino_grow(struct nsd *d)
{
	size_t cap = d->ino_cap ? d->ino_cap * 2 : 64;
	uint64_t *t;

	if ((d->ino_n + 1) * 4 <= d->ino_cap * 3)
		return 0;
	t = calloc(cap, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < d->ino_cap; i++) {
		uint64_t x = d->ino[i];
		if (!x)
			continue;
		size_t k = slot64(x, cap);
		while (t[k])
			k = (k + 1) & (cap - 1);
		t[k] = x;
	}
	free(d->ino);
	d->ino = t;
	d->ino_cap = cap;
	return 0;
}

int nsd_reserve_ino(struct nsd *d) { return ino_grow(d); }

bool nsd_has_ino(const struct nsd *d, uint64_t ino)
{
	if (ino == 0 || !d->ino_cap)
		return false;
	for (size_t k = slot64(ino, d->ino_cap); d->ino[k]; k = (k + 1) & (d->ino_cap - 1))
		if (d->ino[k] == ino)
			return true;
	return false;
}

void nsd_mark_ino(struct nsd *d, uint64_t ino)
{
	if (ino == 0 || d->all)
		return;
	if (ino_grow(d) < 0) {
		d->all = true;
		return;
	}
	size_t k = slot64(ino, d->ino_cap);
	while (d->ino[k]) {
		if (d->ino[k] == ino)
			return;
		k = (k + 1) & (d->ino_cap - 1);
	}
	d->ino[k] = ino;
	d->ino_n++;
}

static uint64_t ent_hash(uint64_t dir, const char *name, size_t len)
{
	return rec_hash(name, len) ^ (dir * 0xC2B2AE3D27D4EB4Full);
}

static int ent_grow(struct nsd *d)
{
	size_t cap = d->ent_cap ? d->ent_cap * 2 : 64;
	struct nsd_ent **t;

	if ((d->ent_n + 1) * 4 <= d->ent_cap * 3)
		return 0;
	t = calloc(cap, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < d->ent_cap; i++) {
		struct nsd_ent *e = d->ent[i];
		if (!e)
			continue;
		size_t k = slot64(e->hash, cap);
		while (t[k])
			k = (k + 1) & (cap - 1);
		t[k] = e;
	}
	free(d->ent);
	d->ent = t;
	d->ent_cap = cap;
	return 0;
}

void nsd_mark_ent(struct nsd *d, uint64_t dir, const char *name, size_t len)
{
	uint64_t h;
	struct nsd_ent *e;

	if (dir == 0 || d->all)
		return;
	if (ent_grow(d) < 0) {
		d->all = true;
		return;
	}
	h = ent_hash(dir, name, len);
	size_t k = slot64(h, d->ent_cap);
	for (; d->ent[k]; k = (k + 1) & (d->ent_cap - 1)) {
		e = d->ent[k];
		if (e->hash == h && e->dir == dir && e->len == len && !memcmp(e->name, name, len))
			return;
	}
	e = malloc(sizeof(*e) + len);
	if (!e) {
		d->all = true;
		return;
	}
	e->dir = dir;
	e->hash = h;
	e->len = (uint32_t)len;
	memcpy(e->name, name, len);
	d->ent[k] = e;
	d->ent_n++;
}

/* Empties the sets. Tables grown large (a load marks every inode) are
 * freed, so that walking the sets costs what they hold, not what they
 * once held. */
void nsd_clear(struct nsd *d)
{
	if (d->ino_cap > 1024) {
		free(d->ino);
		d->ino = NULL;
		d->ino_cap = 0;
	} else if (d->ino_n) {
		memset(d->ino, 0, d->ino_cap * sizeof(*d->ino));
	}
	for (size_t i = 0; i < d->ent_cap && d->ent_n; i++) {
		free(d->ent[i]);
		d->ent[i] = NULL;
	}
	if (d->ent_cap > 1024) {
		free(d->ent);
		d->ent = NULL;
		d->ent_cap = 0;
	}
	d->ino_n = d->ent_n = 0;
	d->all = false;
}

void nsd_free(struct nsd *d)
{
	nsd_clear(d);
	free(d->ino);
	free(d->ent);
	*d = (struct nsd){0};
}

/* ---- the public part (ns.h) -------------------------------------------- */

int nsd_each_ino(const struct nsd *d, int (*cb)(void *arg, uint64_t ino), void *arg)
{
	for (size_t i = 0; i < d->ino_cap; i++)
		if (d->ino[i]) {
			int r = cb(arg, d->ino[i]);
			if (r)
				return r;
		}
	return 0;
}

int nsd_each_ent(const struct nsd *d, int (*cb)(void *arg, uint64_t dir, const char *name, size_t len), void *arg)
{
	for (size_t i = 0; i < d->ent_cap; i++)
		if (d->ent[i]) {
			int r = cb(arg, d->ent[i]->dir, d->ent[i]->name, d->ent[i]->len);
			if (r)
				return r;
		}
	return 0;
}
