/* vfs_int.h — what a vfs backend implements. Only vfs*.c include this. */
#ifndef BZ_VFS_INT_H
#define BZ_VFS_INT_H

#include "vfs.h"

struct vfs_ops {
	int (*open)(struct vfs *v, const char *name, int flags, struct vfs_file **ret_file);
	void (*close)(struct vfs_file *f);
	int (*pread)(struct vfs_file *f, void *buf, size_t len, uint64_t off, size_t *ret_n);
	int (*pwrite)(struct vfs_file *f, const void *buf, size_t len, uint64_t off);
	int (*fdatasync)(struct vfs_file *f);
	int (*fsync)(struct vfs_file *f);
	int (*fallocate)(struct vfs_file *f, uint64_t off, uint64_t len);
	int (*ftruncate)(struct vfs_file *f, uint64_t len);
	int (*size)(struct vfs_file *f, uint64_t *ret_size);
	int (*rename)(struct vfs *v, const char *from, const char *to);
	int (*unlink)(struct vfs *v, const char *name);
	int (*sync_dir)(struct vfs *v);
	int (*lock)(struct vfs_file *f, bool shared);
	int (*space)(struct vfs *v, uint64_t *ret_free, uint64_t *ret_total);
	void (*destroy)(struct vfs *v);
};

/* Every backend struct starts with this. */
struct vfs {
	const struct vfs_ops *ops;
	uint64_t counts[VFS_OP_COUNT]; /* __atomic increments by the dispatcher */
};

/* Every backend file struct starts with this. */
struct vfs_file {
	struct vfs *vfs;
};

#endif
