/* ns.h — an in-memory namespace: inodes, directory entries, attributes.
 * Pure data structure (no I/O, no locking: the owner serializes access).
 *
 * Two instances exist at run time: the engine's (store*.c: the state applied
 * from the WAL, persisted at checkpoint) and the filesystem's live view
 * (fs/: includes operations still in the pipeline). Both change only through
 * ns_apply(), so they cannot disagree about what an operation means.
 *
 * Inode 1 is the root directory. Inode numbers are chosen by the caller of
 * NS_CREATE/NS_MKDIR/NS_SYMLINK (ns_alloc_ino hands out the next unused).
 * An inode whose link count drops to 0 stays until ns_forget() if it is
 * pinned (open files in the live view), otherwise it is freed at once.
 */
#ifndef BZ_NS_H
#define BZ_NS_H

#include <stdbool.h>

#include "nsop.h"

struct ns;

struct ns_attr {
	uint64_t ino;
	uint32_t mode; /* with S_IF* bits */
	uint32_t uid, gid;
	uint32_t nlink;
	uint64_t size; /* regular file: bytes; symlink: target length; dir: entry count */
	int64_t atime_ns, mtime_ns, ctime_ns;
	/* The daemon's own clock of the inode's last append: the ctime of its
	 * creation, then the time of every ns_set_size with a time. Unlike
	 * mtime no user can set it (retention, fs/retain.c). */
	int64_t append_ns;
	uint32_t rdev; /* device nodes (NS_MKNOD); else 0 */
	/* directories: the directory holding it (the root: 0); ns_load_inode
	 * takes it when given (0: recomputed from the entries, as before) */
	uint64_t parent;
};

int ns_new(struct ns **ret_ns); /* root dir 0755 owned by 0:0 */
void ns_free(struct ns *ns);   /* NULL ok */
/* Deep copy (-EINVAL for a backed namespace). */
int ns_clone(const struct ns *ns, struct ns **ret_ns);

/* BACKED NAMESPACE (ns.c, "backed namespace"): a namespace that loads
 * inodes, and directories' entries, from another one the first time it
 * needs them, for an owner that applies every op to it first and to the
 * backing namespace later (the filesystem's live view over the engine's).
 * Its queries load, so they change it: its owner serializes them too.
 * The callbacks run under the caller's serialization and take whatever
 * lock guards the backing namespace; they return 0 or -errno:
 *  inode: ns_copy_inode(ns, backing, ino) (-ENOENT: no such inode there);
 *  dir:   ns_copy_dir(ns, backing, dir);
 *  rest:  ns_copy_rest(ns, backing) (ns_walk: everything, then detached);
 *  has:   1 if the backing namespace still holds inode ino, 0 if not. */
struct ns_backing {
	int (*inode)(void *arg, struct ns *ns, uint64_t ino);
	int (*dir)(void *arg, struct ns *ns, uint64_t dir);
	int (*rest)(void *arg, struct ns *ns);
	int (*has)(void *arg, uint64_t ino);
};
/* A backed namespace over `from` (called under its lock; from may be
 * backed itself, with its root loaded): the root loaded, from's counts
 * and next inode. */
int ns_new_backed(const struct ns *from, const struct ns_backing *bk, void *arg, struct ns **ret_ns);
/* For the callbacks only: copy from the backing namespace src into dst. */
int ns_copy_inode(struct ns *dst, const struct ns *src, uint64_t ino);
int ns_copy_dir(struct ns *dst, const struct ns *src, uint64_t dir);
int ns_copy_rest(struct ns *dst, const struct ns *src);
/* The engine's namespace recomputes directories' parents lazily after a
 * load; a backing namespace must have them (ns_new_backed checks). */
void ns_fix_parents(struct ns *ns);

/* A namespace backed by records rather than by another namespace (the
 * engine's over its checkpoint's trees, store_nstree.c): count inodes,
 * inode numbers from next_ino on never in the backing. The callbacks load
 * with the ns_load_* calls below while the namespace has them `loading`
 * (it sets that around each callback): an inode so loaded is not counted
 * (it is part of `count` already) and marks nothing dirty, a directory
 * comes lazy with attr.size entries, its parent is attr.parent; the dir
 * callback gives the entries with ns_load_dir. Dirty sets are kept (the
 * owner checkpoints this one). count 0 means ns_new's root (a backing
 * with no inode); else the root is loaded like any inode, when the owner
 * has installed the namespace where its callbacks find it. */
int ns_new_backed_by(const struct ns_backing *bk, void *arg, uint64_t count, uint64_t next_ino,
		     struct ns **ret_ns);
/* For an owner that loads outside a callback (its own walk of the
 * records): brackets its ns_load_* calls like a callback's. */
void ns_loading(struct ns *ns, bool on);
/* A lazy directory's entries, in ascending cookie order: exactly as many
 * as its inode said (-EIO otherwise), names valid and distinct, cookies
 * increasing from NS_COOKIE_FIRST (-EINVAL, -EEXIST). */
struct ns_dload {
	const char *name;
	size_t len;
	uint64_t ino, cookie;
};
int ns_load_dir(struct ns *ns, uint64_t dir, const struct ns_dload *v, size_t n);
/* Whether inode ino is here without a load: 1 loaded, 0 no such inode
 * (never fetched: numbers from next_ino on, freed ones, a complete
 * namespace's missing ones), -EAGAIN a query would load it; ns_dir_state
 * likewise for a directory's entries (1 also for a loaded non-directory). */
int ns_state(const struct ns *ns, uint64_t ino);
int ns_dir_state(const struct ns *ns, uint64_t dir);
/* Loads inode ino (and, with entries, a directory's entries) if need be:
 * 0, -ENOENT or the load's error. */
int ns_fetch(struct ns *ns, uint64_t ino, bool entries);
/* Tests only (the store's mutant no_preload): ns_apply on a backed
 * namespace with dirty sets does not load the op's directories before
 * it notes what their names held, so the inode an op unlinks is not
 * marked. The crash enumeration must catch it. */
void ns_test_no_preload(struct ns *ns);
/* Backed (not everything loaded yet)? */
bool ns_is_backed(const struct ns *ns);
/* Every inode loaded and no directory lazy: the backing is dropped (0);
 * -EAGAIN while anything is still to load. */
int ns_detach(struct ns *ns);

/* Validates and applies op. Returns 0 or the errno a filesystem would give:
 * -ENOENT, -EEXIST, -ENOTDIR, -EISDIR, -ENOTEMPTY, -EINVAL (e.g. rename of a
 * directory into its own subtree), -ENAMETOOLONG, -EMLINK. Nothing changes on
 * failure. A successful unlink/rmdir/rename that drops an inode's last link
 * frees it unless pinned. */
int ns_apply(struct ns *ns, const struct ns_op *op);

/* Inherited settings: a directory or regular file created by NS_CREATE /
 * NS_MKDIR gets, in the same ns_apply, a copy of these attributes of the
 * directory it is created in (when that has them): a directory all three,
 * a regular file the first two. Part of what the op means on disk
 * (docs/FORMAT.md "Namespace records"), so the live view, the engine and
 * WAL replay all inherit identically and a created inode never exists
 * without them. */
#define NS_XA_ZSTD_LEVEL "user.blazefs.zstd_level"
#define NS_XA_CHUNK_BYTES "user.blazefs.chunk_bytes"
#define NS_XA_RETAIN "user.blazefs.retain"

int ns_lookup(struct ns *ns, uint64_t parent, const char *name, size_t name_len, uint64_t *ret_ino);
int ns_getattr(struct ns *ns, uint64_t ino, struct ns_attr *ret_attr);
/* Copies the symlink target (not NUL-terminated) into buf; returns its length,
 * -EINVAL if not a symlink. Truncates to cap. */
int ns_readlink(struct ns *ns, uint64_t ino, char *buf, size_t cap);

/* Extended attributes (NS_SETXATTR / NS_REMOVEXATTR change them). Both
 * return the length of the value / of the list of NUL-terminated names (in
 * ascending byte order) and copy it into buf when cap > 0: -ERANGE if cap is
 * too small, -ENODATA for a missing attribute, -ENOENT for a missing inode. */
int ns_getxattr(struct ns *ns, uint64_t ino, const char *name, size_t name_len, void *buf, size_t cap);
int ns_listxattr(struct ns *ns, uint64_t ino, char *buf, size_t cap);

/* Directory iteration in a stable order. cookie 0 starts; fn is called for
 * each entry after cookie with the entry's own cookie (> 0, stable while the
 * entry exists); fn returns non-zero to stop. Returns 0 or -ENOTDIR/-ENOENT. */
#define NS_COOKIE_FIRST 3 /* entry cookies start here: 1 and 2 are free for "." and ".." */
typedef int (*ns_dirent_fn)(void *arg, const char *name, size_t name_len, uint64_t ino, uint32_t mode,
			    uint64_t cookie);
int ns_readdir(struct ns *ns, uint64_t dir, uint64_t cookie, ns_dirent_fn fn, void *arg);

/* The directory holding directory dir (the root's is the root itself), for
 * "..". -ENOENT, -ENOTDIR. Not const: recomputes the parents after a load. */
int ns_parent(struct ns *ns, uint64_t dir, uint64_t *ret_parent);

/* Data bookkeeping: sets the size (and mtime/ctime/append_ns when
 * time_ns != 0) of a regular file. -ENOENT / -EISDIR. */
int ns_set_size(struct ns *ns, uint64_t ino, uint64_t size, int64_t time_ns);

/* Pinning (live view: the kernel still references the inode). A pinned
 * inode with nlink 0 survives until unpinned; ns_unpin frees it then. */
int ns_pin(struct ns *ns, uint64_t ino);
int ns_unpin(struct ns *ns, uint64_t ino);

/* The next inode number never used (monotonic; persisted by the store). */
uint64_t ns_alloc_ino(struct ns *ns);
uint64_t ns_next_ino(const struct ns *ns);
void ns_set_next_ino(struct ns *ns, uint64_t next);
uint64_t ns_count(const struct ns *ns); /* live inodes */

/* Whole-namespace iteration (checkpoint serialization, fsck): each inode
 * once, then for directories each entry. Order: ascending inode number.
 * (Precisely: every inode in ascending order first, then the entries of
 * every directory, directories in ascending order, entries in cookie order.
 * A callback returning non-zero stops the walk and is returned.) */
struct ns_visit {
	int (*inode)(void *arg, const struct ns_attr *attr, const char *symlink, size_t symlink_len);
	int (*dirent)(void *arg, uint64_t dir, const char *name, size_t name_len, uint64_t ino);
	/* each extended attribute of the inode just visited, in name order */
	int (*xattr)(void *arg, uint64_t ino, const char *name, size_t name_len, const void *value,
		     size_t value_len);
};
int ns_walk(struct ns *ns, const struct ns_visit *v, void *arg);
/* Rebuilding from a checkpoint: insert an inode / an entry as-is (no
 * validation beyond duplicates; nlink and append_ns are taken from attr). */
int ns_load_inode(struct ns *ns, const struct ns_attr *attr, const char *symlink, size_t symlink_len);
int ns_load_dirent(struct ns *ns, uint64_t dir, const char *name, size_t name_len, uint64_t ino);
/* Room for n inodes / for n more entries of directory dir (nothing to do
 * for an unknown or not loaded one), so that a load of known size does not
 * grow the tables step by step. 0 or -ENOMEM. */
int ns_reserve(struct ns *ns, size_t n);
int ns_reserve_entries(struct ns *ns, uint64_t dir, size_t n);
/* -ENOENT (no such inode), -EEXIST (duplicate), -EINVAL (name or size out
 * of the NS_XATTR_* bounds). */
int ns_load_xattr(struct ns *ns, uint64_t ino, const char *name, size_t name_len, const void *value,
		  size_t value_len);

/* Like ns_load_dirent, with the entry's readdir cookie: cookies given to
 * one directory must increase (load its entries in cookie order); 0 = the
 * next one. The directory's next cookie follows the largest. */
int ns_load_dirent_cookie(struct ns *ns, uint64_t dir, const char *name, size_t name_len, uint64_t ino,
			  uint64_t cookie);
/* One entry: its inode and readdir cookie. -ENOENT, -ENOTDIR. */
int ns_dirent_get(const struct ns *ns, uint64_t dir, const char *name, size_t name_len, uint64_t *ret_ino,
		  uint64_t *ret_cookie);
/* ns_walk for one inode (its inode callback, then its attributes); no
 * entries. -ENOENT if there is no such inode. */
int ns_walk_inode(const struct ns *ns, uint64_t ino, const struct ns_visit *v, void *arg);

/* DIRTY TRACKING (incremental checkpoints, docs/FORMAT.md §8). The
 * namespace records every inode whose checkpointed state may have changed
 * (ns_apply: the inodes an op names by number or by name, before and
 * after; ns_set_size; ns_unpin; the ns_load_* calls) and every (directory,
 * name) entry an op added, removed or changed, until ns_dirty_clear. The
 * owner marks what it stores per inode itself (ns_dirty_mark: the store's
 * per-file index state). A mark that cannot be recorded (ENOMEM) sets
 * "all" (ns_dirty_all): then everything must be rewritten. ns_clone does
 * not copy the sets. */
void ns_dirty_mark(struct ns *ns, uint64_t ino);
void ns_dirty_set_all(struct ns *ns);
bool ns_dirty_all(const struct ns *ns);
void ns_dirty_clear(struct ns *ns);
/* inodes in the set; *ret_dirents (may be NULL) = entries in the set */
size_t ns_dirty_counts(const struct ns *ns, size_t *ret_dirents);
/* Each marked inode (it may no longer exist) / entry (it may be gone), in
 * no particular order, until cb returns non-zero (returned). The sets must
 * not change meanwhile. */
int ns_dirty_each_ino(const struct ns *ns, int (*cb)(void *arg, uint64_t ino), void *arg);
int ns_dirty_each_dirent(const struct ns *ns, int (*cb)(void *arg, uint64_t dir, const char *name, size_t len),
			 void *arg);

#endif
