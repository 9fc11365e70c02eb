/* vfs_posix.c — the vfs backend on real files.
 *
 * The backend holds an O_DIRECTORY descriptor of the store directory and does
 * everything relative to it (openat, renameat, unlinkat), so the process's
 * current directory never matters and a renamed path above the store does not
 * confuse it. Names are flat: a name containing '/' (or "", ".", "..") is
 * refused with -EINVAL.
 *
 * Files are opened O_CLOEXEC, mode 0644. pwrite loops over partial writes and
 * EINTR; a write that makes no progress is reported as -ENOSPC. vfs_lock is
 * flock(LOCK_EX|LOCK_NB): flock locks belong to the open file description, so
 * a second open of the lock file in the same process also conflicts.
 *
 * No state is shared between threads except the immutable dir fd, so there
 * is no lock here; the kernel orders concurrent pread/pwrite.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "log.h"
#include "vfs_int.h"

struct posix_vfs {
	struct vfs base;
	int dirfd; /* set at creation, immutable */
};

struct posix_file {
	struct vfs_file base;
	int fd; /* set at open, immutable */
};

static int px_dirfd(struct vfs *v) { return ((struct posix_vfs *)v)->dirfd; }
static int px_fd(struct vfs_file *f) { return ((struct posix_file *)f)->fd; }

static bool px_name_ok(const char *name)
{
	return name && name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static int px_open(struct vfs *v, const char *name, int flags, struct vfs_file **ret_file)
{
	struct posix_file *pf = NULL;
	int oflags = O_CLOEXEC;
	int fd = -1;
	int r;

	if (!px_name_ok(name)) {
		r = -EINVAL;
		goto out;
	}
	oflags |= (flags & VFS_O_RDWR) ? O_RDWR : O_RDONLY;
	if (flags & VFS_O_CREAT)
		oflags |= O_CREAT;
	if (flags & VFS_O_EXCL)
		oflags |= O_EXCL;
	pf = calloc(1, sizeof(*pf));
	if (!pf) {
		r = -ENOMEM;
		goto out;
	}
	do
		fd = openat(px_dirfd(v), name, oflags, 0644);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	pf->base.vfs = v;
	pf->fd = fd;
	*ret_file = &pf->base;
	pf = NULL;
	r = 0;
out:
	free(pf);
	return r;
}

static void px_close(struct vfs_file *f)
{
	struct posix_file *pf = (struct posix_file *)f;

	if (close(pf->fd) < 0 && errno != EINTR)
		bz_warn("vfs: close failed: %s", strerror(errno));
	free(pf);
}

static int px_pread(struct vfs_file *f, void *buf, size_t len, uint64_t off, size_t *ret_n)
{
	size_t done = 0;
	int r = 0;

	while (done < len) {
		ssize_t n = pread(px_fd(f), (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	*ret_n = done;
out:
	return r;
}

static int px_pwrite(struct vfs_file *f, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	int r = 0;

	while (done < len) {
		ssize_t n = pwrite(px_fd(f), (const char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (n == 0) {
			r = -ENOSPC;
			goto out;
		}
		done += (size_t)n;
	}
out:
	return r;
}

static int px_fdatasync(struct vfs_file *f)
{
	return fdatasync(px_fd(f)) < 0 ? -errno : 0;
}

static int px_fsync(struct vfs_file *f)
{
	return fsync(px_fd(f)) < 0 ? -errno : 0;
}

static int px_fallocate(struct vfs_file *f, uint64_t off, uint64_t len)
{
	int r;

	do
		r = fallocate(px_fd(f), 0, (off_t)off, (off_t)len);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == ENOSYS ? -EOPNOTSUPP : -errno;
	return 0;
}

static int px_ftruncate(struct vfs_file *f, uint64_t len)
{
	int r;

	do
		r = ftruncate(px_fd(f), (off_t)len);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static int px_size(struct vfs_file *f, uint64_t *ret_size)
{
	struct stat st;

	if (fstat(px_fd(f), &st) < 0)
		return -errno;
	*ret_size = (uint64_t)st.st_size;
	return 0;
}

static int px_rename(struct vfs *v, const char *from, const char *to)
{
	if (!px_name_ok(from) || !px_name_ok(to))
		return -EINVAL;
	return renameat(px_dirfd(v), from, px_dirfd(v), to) < 0 ? -errno : 0;
}

static int px_unlink(struct vfs *v, const char *name)
{
	if (!px_name_ok(name))
		return -EINVAL;
	return unlinkat(px_dirfd(v), name, 0) < 0 ? -errno : 0;
}

static int px_sync_dir(struct vfs *v)
{
	return fsync(px_dirfd(v)) < 0 ? -errno : 0;
}

static int px_lock(struct vfs_file *f, bool shared)
{
	int r;

	do
		r = flock(px_fd(f), (shared ? LOCK_SH : LOCK_EX) | LOCK_NB);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static int px_space(struct vfs *v, uint64_t *ret_free, uint64_t *ret_total)
{
	struct statvfs sv;

	if (fstatvfs(px_dirfd(v), &sv) < 0)
		return -errno;
	*ret_free = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
	*ret_total = (uint64_t)sv.f_blocks * (uint64_t)sv.f_frsize;
	return 0;
}

static void px_destroy(struct vfs *v)
{
	struct posix_vfs *pv = (struct posix_vfs *)v;

	close(pv->dirfd);
	free(pv);
}

static const struct vfs_ops px_ops = {
	.open = px_open,
	.close = px_close,
	.pread = px_pread,
	.pwrite = px_pwrite,
	.fdatasync = px_fdatasync,
	.fsync = px_fsync,
	.fallocate = px_fallocate,
	.ftruncate = px_ftruncate,
	.size = px_size,
	.rename = px_rename,
	.unlink = px_unlink,
	.sync_dir = px_sync_dir,
	.lock = px_lock,
	.space = px_space,
	.destroy = px_destroy,
};

int vfs_posix_new(const char *dir, struct vfs **ret_vfs)
{
	struct posix_vfs *pv = NULL;
	int r;

	pv = calloc(1, sizeof(*pv));
	if (!pv) {
		r = -ENOMEM;
		goto out;
	}
	pv->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (pv->dirfd < 0) {
		r = -errno;
		goto out;
	}
	pv->base.ops = &px_ops;
	*ret_vfs = &pv->base;
	pv = NULL;
	r = 0;
out:
	free(pv);
	return r;
}
