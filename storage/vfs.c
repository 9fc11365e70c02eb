/* vfs.c — the dispatcher of the vfs table.
 *
 * Every public vfs_* call lands here: it counts the call in the backend's
 * counts[] (an __atomic increment, relaxed: the counters are statistics and
 * test probes, not synchronization) and forwards it to the backend's ops
 * table. Backends live in vfs_posix.c, vfs_mem.c (memory and recording) and
 * vfs_fault.c. vfs_size, vfs_lock, vfs_space and vfs_close have no op number
 * and are not counted.
 */
#include "vfs_int.h"

static inline void vfs_count_op(struct vfs *v, enum vfs_op op)
{
	__atomic_fetch_add(&v->counts[op], 1, __ATOMIC_RELAXED);
}

int vfs_open(struct vfs *v, const char *name, int flags, struct vfs_file **ret_file)
{
	vfs_count_op(v, VFS_OP_OPEN);
	return v->ops->open(v, name, flags, ret_file);
}

void vfs_close(struct vfs_file *f)
{
	if (!f)
		return;
	f->vfs->ops->close(f);
}

int vfs_pread(struct vfs_file *f, void *buf, size_t len, uint64_t off, size_t *ret_n)
{
	vfs_count_op(f->vfs, VFS_OP_PREAD);
	return f->vfs->ops->pread(f, buf, len, off, ret_n);
}

int vfs_pwrite(struct vfs_file *f, const void *buf, size_t len, uint64_t off)
{
	vfs_count_op(f->vfs, VFS_OP_PWRITE);
	return f->vfs->ops->pwrite(f, buf, len, off);
}

int vfs_fdatasync(struct vfs_file *f)
{
	vfs_count_op(f->vfs, VFS_OP_FDATASYNC);
	return f->vfs->ops->fdatasync(f);
}

int vfs_fsync(struct vfs_file *f)
{
	vfs_count_op(f->vfs, VFS_OP_FSYNC);
	return f->vfs->ops->fsync(f);
}

int vfs_fallocate(struct vfs_file *f, uint64_t off, uint64_t len)
{
	vfs_count_op(f->vfs, VFS_OP_FALLOCATE);
	return f->vfs->ops->fallocate(f, off, len);
}

int vfs_ftruncate(struct vfs_file *f, uint64_t len)
{
	vfs_count_op(f->vfs, VFS_OP_FTRUNCATE);
	return f->vfs->ops->ftruncate(f, len);
}

int vfs_size(struct vfs_file *f, uint64_t *ret_size)
{
	return f->vfs->ops->size(f, ret_size);
}

int vfs_rename(struct vfs *v, const char *from, const char *to)
{
	vfs_count_op(v, VFS_OP_RENAME);
	return v->ops->rename(v, from, to);
}

int vfs_unlink(struct vfs *v, const char *name)
{
	vfs_count_op(v, VFS_OP_UNLINK);
	return v->ops->unlink(v, name);
}

int vfs_sync_dir(struct vfs *v)
{
	vfs_count_op(v, VFS_OP_SYNC_DIR);
	return v->ops->sync_dir(v);
}

int vfs_lock(struct vfs_file *f)
{
	return f->vfs->ops->lock(f, false);
}

int vfs_lock_shared(struct vfs_file *f)
{
	return f->vfs->ops->lock(f, true);
}

int vfs_space(struct vfs *v, uint64_t *ret_free, uint64_t *ret_total)
{
	return v->ops->space(v, ret_free, ret_total);
}

uint64_t vfs_count(struct vfs *v, enum vfs_op op)
{
	if (NEVER((unsigned)op >= VFS_OP_COUNT))
		return 0;
	return __atomic_load_n(&v->counts[op], __ATOMIC_RELAXED);
}

void vfs_destroy(struct vfs *v)
{
	if (!v)
		return;
	v->ops->destroy(v);
}
