/* ns_int.h — private to storage/ns*.c: the namespace's structures and the
 * table and directory primitives ns.c implements for ns_copy.c. The prose
 * (formats, invariants, the backed namespace) is at the top of ns.c; the
 * owner of a namespace serializes every access (no locks here). */
#ifndef BZ_NS_INT_H
#define BZ_NS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ns.h"
#include "ns_dirty.h"

struct dent {
	uint64_t hash;
	uint64_t cookie;
	uint64_t ino;
	uint32_t len;
	char name[];
};

struct dir {
	struct dent **tab; /* name table, cap a power of two (or 0) */
	size_t tab_cap;
	size_t n;          /* live entries */
	struct dent **ord; /* ascending cookie order; NULL = hole */
	uint64_t *ordc;    /* cookie of each ord slot (kept for holes) */
	size_t ord_len, ord_cap, holes;
	uint64_t next_cookie;
	bool lazy; /* backed namespace: entries not loaded yet (n, tab, ord empty) */
};

struct xattr {
	uint32_t nlen, vlen;
	char data[]; /* name, then value */
};

struct inode {
	uint64_t ino;
	uint32_t mode, uid, gid, nlink;
	uint32_t rdev;       /* device nodes */
	uint32_t n_xa;       /* extended attributes: xa[0..n_xa), name order */
	uint32_t xa_bytes;   /* sum of nlen + 1 + vlen */
	struct xattr **xa;
	uint64_t size; /* regular files; symlinks: target length */
	int64_t atime_ns, mtime_ns, ctime_ns;
	int64_t append_ns; /* creation ctime, then every ns_set_size with a time */
	uint32_t pins;
	uint64_t parent; /* directories: the directory holding it (root: 0) */
	char *target;    /* symlinks */
	struct dir *dir; /* directories */
};

struct ns {
	struct inode **tab; /* inode table, cap a power of two */
	size_t tab_cap, loaded; /* loaded: inodes in tab */
	size_t count;           /* inodes of the namespace (loaded or not) */
	uint64_t next_ino;
	bool parents_dirty;
	struct nsd dirty; /* changed since the last checkpoint (ns_dirty.c) */
	/* backed namespace (see the top): NULL bk = everything is loaded */
	const struct ns_backing *bk;
	void *bk_arg;
	uint64_t bk_next;  /* inodes >= this were never in the backing namespace */
	struct nsd gone;   /* freed here, maybe still there (ino set only) */
	size_t gone_kept;  /* gone.ino_n after the last prune */
	/* a backing callback is loading into this namespace (ns_loading):
	 * ns_load_* add what they load without counting or marking it */
	bool loading;
	bool test_no_preload; /* ns_test_no_preload (a mutant) */
};

/* inode table (open addressing; nsi_ino_reserve before nsi_ino_insert or
 * nsi_ino_put_nogrow; insert counts the inode, put only loads it) */
struct inode *nsi_ino_get(const struct ns *ns, uint64_t ino);
int nsi_ino_reserve(struct ns *ns);
void nsi_ino_insert(struct ns *ns, struct inode *in);
void nsi_ino_put_nogrow(struct inode **tab, size_t cap, struct inode *in);

/* directories (nsi_dir_reserve before nsi_dir_insert) */
uint64_t nsi_name_hash(const char *name, size_t len);
int nsi_name_check(const char *name, size_t len);
struct dir *nsi_dir_new(void);
void nsi_dir_free(struct dir *d);
struct dent *nsi_dent_new(const char *name, size_t len, uint64_t h, uint64_t ino);
struct dent *nsi_dir_find(const struct dir *d, const char *name, size_t len, uint64_t h);
void nsi_tab_put_nogrow(struct dent **tab, size_t cap, struct dent *e);
int nsi_dir_reserve(struct dir *d);
int nsi_dir_grow(struct dir *d, size_t n); /* room for n entries in all */
void nsi_dir_insert(struct dir *d, struct dent *e);

/* inodes */
bool nsi_is_dir(const struct inode *in);
size_t nsi_dir_count(const struct inode *in); /* entries, loaded or not */
void nsi_inode_free(struct inode *in);
struct inode *nsi_root_new(void); /* ns_new's root: 0755, 0:0, no entries */
void nsi_fill_attr(const struct inode *in, struct ns_attr *a);
int nsi_xa_set(struct inode *in, const char *name, size_t nlen, const void *value, size_t vlen, uint32_t flags);

#endif
