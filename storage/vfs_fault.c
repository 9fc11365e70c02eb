/* vfs_fault.c — the fault-injecting vfs backend.
 *
 * Wraps another backend (not owned) and forwards every call to it through
 * the public vfs_* calls (so the inner backend counts them too). Files opened
 * through it are wrapped, so their calls are intercepted as well.
 *
 * Arming: vfs_fault_arm(spec) resets the counters. From then on every call
 * whose op is in spec.op_mask is counted (1-based); call number fail_at fails
 * (and, if persistent, every counted call after it):
 *   EIO    -> -EIO, the inner backend is not called;
 *   ENOSPC -> -ENOSPC, the inner backend is not called;
 *   SHORT  -> a pwrite writes its first len/2 bytes through the inner backend
 *             and returns -EIO; any other op acts as EIO.
 * vfs_close, vfs_size, vfs_lock and vfs_space have no op number and are never
 * counted or failed. vfs_fault_set_delay sleeps before each call of the
 * delay mask, armed or not (a slow disk).
 *
 * Locking: one mutex guards the spec and the counters; the decision for a
 * call (count it, fail it?) is taken under it, so arming from another thread
 * is safe. The sleep and the inner call happen outside the lock.
 */
#include <stdlib.h>
#include <unistd.h>

#include "tsa.h"
#include "vfs_int.h"

/* The arming lock as a capability token (tsa.h explains why C needs one). */
BZ_CAP_DECLARE(fault_cap);

struct fault_vfs {
	struct vfs base;
	struct vfs *inner; /* immutable, not owned */
	bz_mutex mu;
	struct vfs_fault_spec spec GUARDED_BY(fault_cap); /* op_mask already defaulted */
	uint64_t calls GUARDED_BY(fault_cap);
	uint64_t injected GUARDED_BY(fault_cap);
	unsigned delay_mask GUARDED_BY(fault_cap);
	unsigned delay_us GUARDED_BY(fault_cap);
};

static void fv_lock(struct fault_vfs *fv) ACQUIRE(fault_cap) NO_TSA { bz_mutex_lock(&fv->mu); }
static void fv_unlock(struct fault_vfs *fv) RELEASE(fault_cap) NO_TSA { bz_mutex_unlock(&fv->mu); }


struct fault_file {
	struct vfs_file base;
	struct vfs_file *inner; /* immutable, owned */
};

static struct fault_vfs *to_fv(struct vfs *v) { return (struct fault_vfs *)v; }
static struct vfs_file *inner_file(struct vfs_file *f) { return ((struct fault_file *)f)->inner; }

/* Sleeps if op is delayed, counts the call, and returns the fault mode to
 * inject (0 = none). */
static int fault_enter(struct vfs *v, enum vfs_op op)
{
	struct fault_vfs *fv = to_fv(v);
	unsigned delay = 0;
	int mode = 0;

	fv_lock(fv);
	if (fv->delay_mask & VFS_MASK(op))
		delay = fv->delay_us;
	if (fv->spec.op_mask & VFS_MASK(op)) {
		uint64_t n = ++fv->calls;
		if (fv->spec.fail_at && (n == fv->spec.fail_at || (fv->spec.persistent && n > fv->spec.fail_at))) {
			fv->injected++;
			mode = (int)fv->spec.mode;
		}
	}
	fv_unlock(fv);
	if (delay)
		usleep(delay);
	return mode;
}

static int fault_err(int mode) { return mode == VFS_FAULT_ENOSPC ? -ENOSPC : -EIO; }

static int fault_open(struct vfs *v, const char *name, int flags, struct vfs_file **ret_file)
{
	struct fault_file *ff = NULL;
	int mode = fault_enter(v, VFS_OP_OPEN);
	int r;

	if (mode) {
		r = fault_err(mode);
		goto out;
	}
	ff = calloc(1, sizeof(*ff));
	if (!ff) {
		r = -ENOMEM;
		goto out;
	}
	r = vfs_open(to_fv(v)->inner, name, flags, &ff->inner);
	if (r < 0)
		goto out;
	ff->base.vfs = v;
	*ret_file = &ff->base;
	ff = NULL;
out:
	free(ff);
	return r;
}

static void fault_close(struct vfs_file *f)
{
	vfs_close(inner_file(f));
	free(f);
}

static int fault_pread(struct vfs_file *f, void *buf, size_t len, uint64_t off, size_t *ret_n)
{
	int mode = fault_enter(f->vfs, VFS_OP_PREAD);

	return mode ? fault_err(mode) : vfs_pread(inner_file(f), buf, len, off, ret_n);
}

static int fault_pwrite(struct vfs_file *f, const void *buf, size_t len, uint64_t off)
{
	int mode = fault_enter(f->vfs, VFS_OP_PWRITE);
	int r;

	if (mode == VFS_FAULT_SHORT) {
		r = len / 2 ? vfs_pwrite(inner_file(f), buf, len / 2, off) : 0;
		return r < 0 ? r : -EIO;
	}
	return mode ? fault_err(mode) : vfs_pwrite(inner_file(f), buf, len, off);
}

static int fault_fdatasync(struct vfs_file *f)
{
	int mode = fault_enter(f->vfs, VFS_OP_FDATASYNC);

	return mode ? fault_err(mode) : vfs_fdatasync(inner_file(f));
}

static int fault_fsync(struct vfs_file *f)
{
	int mode = fault_enter(f->vfs, VFS_OP_FSYNC);

	return mode ? fault_err(mode) : vfs_fsync(inner_file(f));
}

static int fault_fallocate(struct vfs_file *f, uint64_t off, uint64_t len)
{
	int mode = fault_enter(f->vfs, VFS_OP_FALLOCATE);

	return mode ? fault_err(mode) : vfs_fallocate(inner_file(f), off, len);
}

static int fault_ftruncate(struct vfs_file *f, uint64_t len)
{
	int mode = fault_enter(f->vfs, VFS_OP_FTRUNCATE);

	return mode ? fault_err(mode) : vfs_ftruncate(inner_file(f), len);
}

static int fault_size(struct vfs_file *f, uint64_t *ret_size) { return vfs_size(inner_file(f), ret_size); }

static int fault_rename(struct vfs *v, const char *from, const char *to)
{
	int mode = fault_enter(v, VFS_OP_RENAME);

	return mode ? fault_err(mode) : vfs_rename(to_fv(v)->inner, from, to);
}

static int fault_unlink(struct vfs *v, const char *name)
{
	int mode = fault_enter(v, VFS_OP_UNLINK);

	return mode ? fault_err(mode) : vfs_unlink(to_fv(v)->inner, name);
}

static int fault_sync_dir(struct vfs *v)
{
	int mode = fault_enter(v, VFS_OP_SYNC_DIR);

	return mode ? fault_err(mode) : vfs_sync_dir(to_fv(v)->inner);
}

static int fault_lock(struct vfs_file *f, bool shared)
{
	return shared ? vfs_lock_shared(inner_file(f)) : vfs_lock(inner_file(f));
}

static int fault_space(struct vfs *v, uint64_t *ret_free, uint64_t *ret_total)
{
	return vfs_space(to_fv(v)->inner, ret_free, ret_total);
}

static void fault_destroy(struct vfs *v)
{
	struct fault_vfs *fv = to_fv(v);

	bz_mutex_destroy(&fv->mu);
	free(fv);
}

static const struct vfs_ops fault_ops = {
	.open = fault_open,
	.close = fault_close,
	.pread = fault_pread,
	.pwrite = fault_pwrite,
	.fdatasync = fault_fdatasync,
	.fsync = fault_fsync,
	.fallocate = fault_fallocate,
	.ftruncate = fault_ftruncate,
	.size = fault_size,
	.rename = fault_rename,
	.unlink = fault_unlink,
	.sync_dir = fault_sync_dir,
	.lock = fault_lock,
	.space = fault_space,
	.destroy = fault_destroy,
};

int vfs_fault_new(struct vfs *inner, struct vfs **ret_vfs)
{
	struct fault_vfs *fv;

	if (!inner)
		return -EINVAL;
	fv = calloc(1, sizeof(*fv));
	if (!fv)
		return -ENOMEM;
	fv->base.ops = &fault_ops;
	fv->inner = inner;
	bz_mutex_init(&fv->mu);
	fv_lock(fv);
	fv->spec.op_mask = VFS_MASK_MUTATING;
	fv_unlock(fv);
	*ret_vfs = &fv->base;
	return 0;
}

static struct fault_vfs *as_fault(struct vfs *v) { return v && v->ops == &fault_ops ? to_fv(v) : NULL; }

void vfs_fault_arm(struct vfs *f, const struct vfs_fault_spec *spec)
{
	struct fault_vfs *fv = as_fault(f);

	if (NEVER(!fv || !spec))
		return;
	fv_lock(fv);
	fv->spec = *spec;
	if (!fv->spec.op_mask)
		fv->spec.op_mask = VFS_MASK_MUTATING;
	fv->calls = 0;
	fv->injected = 0;
	fv_unlock(fv);
}

uint64_t vfs_fault_calls(struct vfs *f)
{
	struct fault_vfs *fv = as_fault(f);
	uint64_t n;

	if (NEVER(!fv))
		return 0;
	fv_lock(fv);
	n = fv->calls;
	fv_unlock(fv);
	return n;
}

uint64_t vfs_fault_injected(struct vfs *f)
{
	struct fault_vfs *fv = as_fault(f);
	uint64_t n;

	if (NEVER(!fv))
		return 0;
	fv_lock(fv);
	n = fv->injected;
	fv_unlock(fv);
	return n;
}

void vfs_fault_set_delay(struct vfs *f, unsigned op_mask, unsigned delay_us)
{
	struct fault_vfs *fv = as_fault(f);

	if (NEVER(!fv))
		return;
	fv_lock(fv);
	fv->delay_mask = op_mask;
	fv->delay_us = delay_us;
	fv_unlock(fv);
}
