/* vfs.h — the only door to storage I/O.
 *
 * Every byte the engine reads or writes goes through this table, so tests can
 * swap the disk for a recording backend (crash states) or a failing one
 * (fault injection) and still run the real engine code.
 *
 * Names are flat file names relative to the backend's root (the store
 * directory): "lock", "store.db", "wal.000", ... No subdirectories.
 *
 * Every call returns 0 (or a count) or a negative errno. All calls are
 * thread-safe: readers pread concurrently with the commit thread's writes.
 */
#ifndef BZ_VFS_H
#define BZ_VFS_H

#include "base.h"

struct vfs;      /* a backend instance */
struct vfs_file; /* an open file of a backend */

enum {
	VFS_O_RDONLY = 0,
	VFS_O_RDWR = 1 << 0,
	VFS_O_CREAT = 1 << 1,
	VFS_O_EXCL = 1 << 2,
};

/* The operations, numbered for counters and fault masks. */
enum vfs_op {
	VFS_OP_OPEN = 0,
	VFS_OP_PREAD,
	VFS_OP_PWRITE,
	VFS_OP_FDATASYNC,
	VFS_OP_FSYNC,
	VFS_OP_FALLOCATE,
	VFS_OP_FTRUNCATE,
	VFS_OP_RENAME,
	VFS_OP_UNLINK,
	VFS_OP_SYNC_DIR,
	VFS_OP_COUNT
};
#define VFS_MASK(op) (1u << (op))
/* The calls that change what is on disk or make it durable. */
#define VFS_MASK_MUTATING                                                                             \
	(VFS_MASK(VFS_OP_PWRITE) | VFS_MASK(VFS_OP_FDATASYNC) | VFS_MASK(VFS_OP_FSYNC) |               \
	 VFS_MASK(VFS_OP_FALLOCATE) | VFS_MASK(VFS_OP_FTRUNCATE) | VFS_MASK(VFS_OP_RENAME) |          \
	 VFS_MASK(VFS_OP_UNLINK) | VFS_MASK(VFS_OP_SYNC_DIR))

/* ---- calls (dispatch through the backend's table; every call is counted) ---- */
int vfs_open(struct vfs *v, const char *name, int flags, struct vfs_file **ret_file);
void vfs_close(struct vfs_file *f); /* NULL ok */
/* Reads up to len bytes; *ret_n < len only at end of file. */
int vfs_pread(struct vfs_file *f, void *buf, size_t len, uint64_t off, size_t *ret_n);
/* Writes all len bytes or fails. On failure any prefix of buf may have
 * reached the file (a short write is reported as -ENOSPC or -EIO). */
int vfs_pwrite(struct vfs_file *f, const void *buf, size_t len, uint64_t off);
int vfs_fdatasync(struct vfs_file *f);
int vfs_fsync(struct vfs_file *f);
/* Allocates [off, off+len); may fail with -EOPNOTSUPP (callers then write zeros). */
int vfs_fallocate(struct vfs_file *f, uint64_t off, uint64_t len);
int vfs_ftruncate(struct vfs_file *f, uint64_t len);
int vfs_size(struct vfs_file *f, uint64_t *ret_size);
int vfs_rename(struct vfs *v, const char *from, const char *to);
int vfs_unlink(struct vfs *v, const char *name);
/* Makes creations, renames and unlinks in the root durable (fsync of the directory). */
int vfs_sync_dir(struct vfs *v);
/* Takes an exclusive advisory lock on the open file, without blocking:
 * -EWOULDBLOCK if another holder has it. Released by vfs_close. */
int vfs_lock(struct vfs_file *f);
/* A shared lock (read-only opens): any number of shared holders, but not
 * together with an exclusive one (-EWOULDBLOCK either way). */
int vfs_lock_shared(struct vfs_file *f);
/* Free and total bytes of the device under the root (statvfs); memory
 * backends report a large fixed capacity (or vfs_mem_set_capacity's). */
int vfs_space(struct vfs *v, uint64_t *ret_free, uint64_t *ret_total);
/* Number of calls of op made so far through v (all backends count). */
uint64_t vfs_count(struct vfs *v, enum vfs_op op);
void vfs_destroy(struct vfs *v); /* NULL ok; all files must be closed */

/* ---- posix backend: real files under an existing directory ---- */
int vfs_posix_new(const char *dir, struct vfs **ret_vfs);

/* ---- memory backend: volatile in-memory files ---- */
int vfs_mem_new(struct vfs **ret_vfs);
/* Tests: a small disk. vfs_space then reports bytes less what the files
 * hold, and a pwrite, fallocate or ftruncate that would grow them past it
 * fails with -ENOSPC, writing nothing. 0: the default (1 TiB, not
 * enforced). Memory and recording backends only (-EINVAL otherwise). */
int vfs_mem_set_capacity(struct vfs *v, uint64_t bytes);

/* ---- recording backend ----
 * Behaves like the memory backend and also keeps, per file, the durable
 * image (what a power cut would leave) and a global ordered list of the
 * operations that are not yet durable:
 *   - pwrite/ftruncate/fallocate of file F become durable when F is
 *     fdatasync'd or fsync'd (all of F's pending ops before the sync);
 *   - creation, rename and unlink become durable at vfs_sync_dir.
 * A crash state is built from the durable images plus any chosen subset of
 * the pending ops, applied in their original order, optionally tearing one
 * write at a 512-byte sector boundary.
 * Strict model: a created file whose creation was never dir-synced does not
 * exist in any crash state that drops its CREATE, even if it was fsynced.
 * Ops follow the file, not the name (a write after a rename lands in the file
 * under whichever name it has in the crash state); an op on a file absent
 * from the crash state is skipped. Full model: docs/TESTING.md ("The crash model"). */
int vfs_rec_new(struct vfs **ret_vfs);

enum vfs_rec_kind { VFS_REC_WRITE, VFS_REC_TRUNCATE, VFS_REC_CREATE, VFS_REC_RENAME, VFS_REC_UNLINK };
struct vfs_rec_op {
	enum vfs_rec_kind kind;
	const char *name;  /* file (for rename: the source) */
	const char *name2; /* rename target, else NULL */
	uint64_t off, len; /* write: range; truncate: len = new size */
};
/* Number of pending (not yet durable) operations. */
size_t vfs_rec_pending(struct vfs *rec);
/* Describes pending op i (0 = oldest). Pointers stay valid until the next
 * mutating call on rec. */
int vfs_rec_op_get(struct vfs *rec, size_t i, struct vfs_rec_op *ret_op);

enum vfs_tear_fill { VFS_TEAR_OLD = 0, VFS_TEAR_ZERO, VFS_TEAR_GARBAGE };
struct vfs_crash {
	const uint8_t *keep; /* keep[i] != 0: pending op i reached the disk; NULL: none did */
	size_t n_keep;       /* entries in keep (must equal vfs_rec_pending) */
	long torn_op;        /* -1, or index of a kept WRITE op that is torn */
	uint64_t torn_at;    /* bytes of that write that reached the disk (any value < len) */
	/* What [off+torn_at, end of its 512-byte sector) holds (nothing if
	 * off+torn_at is sector-aligned); never grows the file past
	 * max(old size, off+len). The rest of the write is not applied. */
	enum vfs_tear_fill torn_fill;
	uint64_t seed;       /* seeds the garbage */
};
/* Materializes a crash state as a new memory backend (independent of rec).
 * keep == NULL and torn_op == -1: the pure durable image. -EINVAL if rec is
 * not a recording backend, n_keep != vfs_rec_pending, or torn_op is not a
 * kept WRITE with torn_at < len. Safe to call from several threads at once. */
int vfs_rec_crash(struct vfs *rec, const struct vfs_crash *c, struct vfs **ret_mem);
/* Copies the current (not crash) contents into a new memory backend. */
int vfs_mem_clone(struct vfs *v, struct vfs **ret_mem);
/* Makes a new recording backend whose current and durable images are the
 * files of a memory (or recording) backend: "restart after a crash". */
int vfs_rec_from(struct vfs *src, struct vfs **ret_rec);

/* ---- fault backend: wraps another backend (not owned) ---- */
enum vfs_fault_mode { VFS_FAULT_EIO = 1, VFS_FAULT_ENOSPC, VFS_FAULT_SHORT };
struct vfs_fault_spec {
	uint64_t fail_at;   /* 1-based number of the counted call that fails; 0 = disarmed */
	enum vfs_fault_mode mode; /* SHORT: a pwrite writes half its bytes and returns -EIO;
	                           * on other ops SHORT acts as EIO */
	bool persistent;    /* every counted call from fail_at on fails */
	unsigned op_mask;   /* which ops are counted (VFS_MASK bits); 0 = VFS_MASK_MUTATING */
};
int vfs_fault_new(struct vfs *inner, struct vfs **ret_vfs);
void vfs_fault_arm(struct vfs *f, const struct vfs_fault_spec *spec);
/* Counted calls so far (resets on arm). */
uint64_t vfs_fault_calls(struct vfs *f);
/* Number of calls that were failed since the last arm (resets on arm).
 * vfs_close, vfs_size, vfs_lock and vfs_space are never counted or failed. */
uint64_t vfs_fault_injected(struct vfs *f);
/* Sleeps delay_us before every call in op_mask (slow-disk simulation). */
void vfs_fault_set_delay(struct vfs *f, unsigned op_mask, unsigned delay_us);

#endif
