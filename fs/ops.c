/* ops.c — the FUSE low-level operations of blazefs (the only user of
 * fuse_lowlevel.h besides main.c's session setup).
 *
 * Namespace operations (create/mknod, mkdir, symlink, link, unlink, rmdir,
 * rename, setattr of mode/owner/times) become a struct ns_op that is
 * validated and applied to the live namespace with ns_apply() and then
 * submitted to the pipeline with pipe_nsop(), both under fs_ns_lock, so the
 * WAL order equals the order the live view saw. Lookups count kernel
 * references (nlookup) in the inode table (inode.c), which pins the inode;
 * forget releases them. Data writes go through fs_file_write() (inode.c);
 * reads through pipe_read() for any range. flush and fsync never block a
 * session thread: they register a pipeline barrier whose callback replies
 * from the commit thread.
 *
 * The read-only control directory MOUNTPOINT/.blazefs (reserved inode
 * numbers FS_CTL_*) holds "stats" (JSON) and "metrics" (Prometheus text),
 * snapshots generated at open (stats.c) and served with direct_io.
 *
 * Lock order (never take a lock to the left while holding one to its right):
 *
 *     fs_inode.lock  ->  fs_ns_lock  ->  pipeline/store internal locks
 *
 *   - fs_inode.lock (inode.c) serializes size changes of one file; it is held
 *     across pipe_read/pipe_append, never while waiting for the disk except
 *     for the pipeline's bounded in-flight limit.
 *   - fs_ns_lock guards the live namespace and the inode table. pipe_nsop is
 *     called under it (it may block on the in-flight limit: namespace ops then
 *     wait for the pipeline, as writers do). Replies are sent after it is
 *     released, except the barrier callbacks, which take no fs lock at all.
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs/fs.h"

#define ATTR_TIMEOUT 1.0
#define ENTRY_TIMEOUT 1.0
/* writeback WRITEs up to this size seal the open batch (op_write) */
#define FS_SEAL_WRITE_MAX (64u << 10)

static struct fs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

static bool is_ctl(fuse_ino_t ino) { return fs_is_ctl(ino); }

static bool is_ctl_name(fuse_ino_t parent, const char *name)
{
	return parent == NS_ROOT_INO && strcmp(name, FS_CTL_DIR_NAME) == 0;
}

static void ts_of(int64_t ns, struct timespec *ts)
{
	ts->tv_sec = (time_t)(ns / 1000000000ll);
	ts->tv_nsec = (long)(ns % 1000000000ll);
	if (ts->tv_nsec < 0) {
		ts->tv_nsec += 1000000000l;
		ts->tv_sec -= 1;
	}
}

static int64_t ns_of(const struct timespec *ts) { return (int64_t)ts->tv_sec * 1000000000ll + ts->tv_nsec; }

/* st_blocks of a regular file: the bytes it really occupies in the store,
 * as ZFS reports compressed sizes, so du shows what is stored and
 * du --apparent-size the logical size. Applied data counts its record
 * frames as stored (store_file_info: compressed payloads plus headers;
 * holes store nothing); bytes still in the pipeline (beyond the applied
 * size) count raw until applied, so a file with data never shows 0 blocks. Takes the store's lock shared (the order
 * fs_ns_lock -> store lock is allowed). */
static blkcnt_t stored_blocks(struct fs *fs, const struct ns_attr *a)
{
	struct store_file_info info = {0};
	uint64_t bytes;

	if (!S_ISREG(a->mode) || a->size == 0)
		return 0;
	if (store_file_info(fs->store, a->ino, &info) < 0)
		memset(&info, 0, sizeof(info)); /* not applied yet: all of it is pending */
	bytes = info.stored_bytes + (a->size > info.size ? a->size - info.size : 0);
	return (blkcnt_t)((bytes + 511) / 512);
}

static void stat_of(struct fs *fs, const struct ns_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)a->size;
	st->st_rdev = a->rdev;
	st->st_blksize = FS_BLKSIZE;
	st->st_blocks = stored_blocks(fs, a);
	ts_of(a->atime_ns, &st->st_atim);
	ts_of(a->mtime_ns, &st->st_mtim);
	ts_of(a->ctime_ns, &st->st_ctim);
}

static void ctl_stat(struct fs *fs, fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if (ino == FS_CTL_DIR_INO) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
	}
	st->st_blksize = 4096;
	ts_of(fs->mount_time_ns, &st->st_atim);
	st->st_mtim = st->st_ctim = st->st_atim;
}

static void entry_init(struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = ATTR_TIMEOUT;
	e->entry_timeout = ENTRY_TIMEOUT;
}

/* The entry of ino for a reply that hands the kernel a reference. */
static int make_entry(struct fs *fs, uint64_t ino, struct fuse_entry_param *e) REQUIRES(fs_ns_lock)
{
	struct ns_attr a;
	int r = ns_getattr(fs->ns, ino, &a);

	if (r < 0)
		return r;
	r = fs_inode_lookup(fs, ino);
	if (r < 0)
		return r;
	entry_init(e);
	e->ino = ino;
	stat_of(fs, &a, &e->attr);
	return 0;
}

static void reply_err(fuse_req_t req, int r) { fuse_reply_err(req, r < 0 ? -r : r); }

/* The request whose handler may append zeros for long (growing truncate,
 * a gap on a fresh descriptor, owed zeros at flush/fsync): fs_interrupted()
 * lets that loop (inode.c append_zeros) end with EINTR when the caller is
 * interrupted (Ctrl-C: the kernel sends FUSE_INTERRUPT, libfuse marks the
 * request). One per session thread; NULL outside those handlers. */
static __thread fuse_req_t cur_req;

bool fs_interrupted(void)
{
	return cur_req && fuse_req_interrupted(cur_req);
}

/* ---- lifecycle ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	conn->max_write = FS_MAX_WRITE;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC; /* O_TRUNC reaches open(): checked there */
	/* We clear setuid/setgid on writes, truncates and chowns (kill_priv):
	 * otherwise the kernel asks getxattr("security.capability") before
	 * every write (measured: 1.5x fewer small appends per second). */
	if (conn->capable & FUSE_CAP_HANDLE_KILLPRIV)
		conn->want |= FUSE_CAP_HANDLE_KILLPRIV;
	if (fs->opts.writeback_cache) {
		if (conn->capable & FUSE_CAP_WRITEBACK_CACHE) {
			conn->want |= FUSE_CAP_WRITEBACK_CACHE;
			conn->max_background = FS_WB_MAX_BACKGROUND; /* see FS_WB_MIN_THREADS */
		}
		else
			bz_warn("the kernel does not support the writeback cache; running without it");
	} else {
		conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	}
	bz_info("mounted %s (workers %u, writeback_cache %s, worm %s, sync_close %s)", fs->store_dir,
		fs->opts.pipe.workers, (conn->want & FUSE_CAP_WRITEBACK_CACHE) ? "on" : "off",
		fs->opts.worm ? "on" : "off", fs->opts.sync_close ? "on" : "off");
}

/* ---- lookups and attributes ---- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	uint64_t ino;
	int r;

	if (is_ctl_name(parent, name) || parent == FS_CTL_DIR_INO) {
		entry_init(&e);
		e.ino = parent == NS_ROOT_INO ? FS_CTL_DIR_INO : fs_ctl_lookup(name);
		if (!e.ino) {
			reply_err(req, ENOENT);
			return;
		}
		ctl_stat(fs, e.ino, &e.attr);
		fuse_reply_entry(req, &e);
		return;
	}
	if (is_ctl(parent)) {
		reply_err(req, ENOTDIR);
		return;
	}
	bz_mutex_lock(&fs_ns_lock);
	r = ns_lookup(fs->ns, parent, name, strlen(name), &ino);
	if (r == 0)
		r = make_entry(fs, ino, &e);
	bz_mutex_unlock(&fs_ns_lock);
	if (r == -ENOENT) {
		/* A negative entry the kernel may cache for ENTRY_TIMEOUT: every
		 * name change reaches the namespace through this kernel (one
		 * daemon per store; the orphan directory is behind the control
		 * directory's name), which drops the negative dentry when it
		 * creates the name. Saves the LOOKUP of shells' PATH searches,
		 * `test -e`, a build's probes of missing files. */
		entry_init(&e);
		e.ino = 0;
		e.attr_timeout = 0;
		fuse_reply_entry(req, &e);
	} else if (r < 0) {
		reply_err(req, r);
	} else {
		fuse_reply_entry(req, &e);
	}
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fs *fs = fs_of(req);

	if (!is_ctl(ino)) {
		bz_mutex_lock(&fs_ns_lock);
		fs_inode_forget(fs, ino, nlookup);
		bz_mutex_unlock(&fs_ns_lock);
	}
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);

	bz_mutex_lock(&fs_ns_lock);
	for (size_t i = 0; i < count; i++)
		if (!is_ctl(forgets[i].ino))
			fs_inode_forget(fs, forgets[i].ino, forgets[i].nlookup);
	bz_mutex_unlock(&fs_ns_lock);
	fuse_reply_none(req);
}

static int get_stat(struct fs *fs, fuse_ino_t ino, struct stat *st) EXCLUDES(fs_ns_lock)
{
	struct ns_attr a;
	int r;

	if (is_ctl(ino)) {
		ctl_stat(fs, ino, st);
		return 0;
	}
	bz_mutex_lock(&fs_ns_lock);
	r = ns_getattr(fs->ns, ino, &a);
	if (r == 0) {
		struct fs_inode *ip = fs_inode_find(fs, ino);
		if (ip && ip->orphan)
			a.nlink = 0; /* unlinked, parked until the last close */
	}
	bz_mutex_unlock(&fs_ns_lock);
	if (r == 0)
		stat_of(fs, &a, st);
	return r;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int r = get_stat(fs_of(req), ino, &st);

	(void)fi;
	if (r < 0)
		reply_err(req, r);
	else
		fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

/* Submits an attribute change of an inode whose attributes a are current.
 * An inode with no link left is one the store has already dropped (files
 * unlinked while open are parked, and keep their link): the kernel still
 * caches it and, with the writeback cache, sends its time updates later.
 * Those change only the live view; logging them would make the store skip
 * them and say so, for nothing. */
static int submit_attr(struct fs *fs, struct ns_op *op, const struct ns_attr *a) REQUIRES(fs_ns_lock)
{
	if (a->nlink == 0 && !S_ISDIR(a->mode))
		return ns_apply(fs->ns, op);
	return fs_submit(fs, op);
}

/* FUSE_CAP_HANDLE_KILLPRIV: a write or truncate by a non-root user clears
 * S_ISUID, and S_ISGID when group-executable (as the kernel would). */
static int kill_priv(struct fs *fs, fuse_ino_t ino) EXCLUDES(fs_ns_lock)
{
	struct ns_op op = {.kind = NS_SETATTR, .ino = ino, .flags = NS_SET_MODE};
	struct ns_attr a;
	uint32_t kill;
	int r;

	bz_mutex_lock(&fs_ns_lock);
	r = ns_getattr(fs->ns, ino, &a);
	if (r < 0)
		goto out;
	kill = S_ISUID | ((a.mode & S_IXGRP) ? S_ISGID : 0);
	if (!S_ISREG(a.mode) || !(a.mode & kill))
		goto out;
	op.mode = a.mode & ~kill;
	op.uid = a.uid;
	op.gid = a.gid;
	op.atime_ns = a.atime_ns;
	op.mtime_ns = a.mtime_ns;
	op.ctime_ns = fs_now_ns();
	r = submit_attr(fs, &op, &a);
out:
	bz_mutex_unlock(&fs_ns_lock);
	return r;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct ns_op op = {.kind = NS_SETATTR, .ino = ino};
	struct stat st;
	int64_t now = fs_now_ns();
	bool same_size = false;
	int r = 0;

	cur_req = req;
	if (is_ctl(ino)) {
		fs_refuse(fs, NULL, ino, FS_REF_CONTROL, "setattr of the control file");
		r = -EPERM;
		goto out;
	}
	if (fs->opts.read_only) {
		r = -EROFS;
		goto out;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		struct fs_open *of = fi ? (struct fs_open *)(uintptr_t)fi->fh : NULL;
		struct fs_inode *ip = NULL;

		uint64_t before = 0;

		if (attr->st_size < 0) {
			r = -EINVAL;
			goto out;
		}
		if ((uint64_t)attr->st_size > FS_MAX_FILE_BYTES) {
			r = -EFBIG; /* as ext4 above s_maxbytes; nothing changes */
			goto out;
		}
		same_size = fs_live_size(fs, ino, &before) == 0 && before == (uint64_t)attr->st_size;
		if (of && of->inode) {
			r = fs_file_truncate(fs, of->inode, (uint64_t)attr->st_size);
		} else {
			bz_mutex_lock(&fs_ns_lock);
			r = fs_inode_get(fs, ino, &ip);
			bz_mutex_unlock(&fs_ns_lock);
			if (r == 0) {
				r = fs_file_truncate(fs, ip, (uint64_t)attr->st_size);
				bz_mutex_lock(&fs_ns_lock);
				fs_inode_put(fs, ip);
				bz_mutex_unlock(&fs_ns_lock);
			}
		}
		if (r < 0)
			goto out;
		if (fuse_req_ctx(req)->uid != 0)
			(void)kill_priv(fs, ino);
		/* POSIX truncate()/ftruncate(): mtime and ctime are set also when
		 * the size does not change (a growing one sets them with its
		 * zeros); the kernel does not send the times along. */
		if (same_size && !(to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)))
			to_set |= FUSE_SET_ATTR_MTIME_NOW;
	}
	if (to_set & FUSE_SET_ATTR_MODE) {
		op.flags |= NS_SET_MODE;
		op.mode = attr->st_mode & 07777;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		op.flags |= NS_SET_UID;
		op.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		op.flags |= NS_SET_GID;
		op.gid = attr->st_gid;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
		op.flags |= NS_SET_ATIME;
		op.atime_ns = (to_set & FUSE_SET_ATTR_ATIME_NOW) ? now : ns_of(&attr->st_atim);
	}
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
		op.flags |= NS_SET_MTIME;
		op.mtime_ns = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? now : ns_of(&attr->st_mtim);
	}
	/* chown(f, -1, -1) changes nothing but ctime, as on ext4: the kernel
	 * sends only FUSE_SET_ATTR_CTIME (writeback cache) or nothing to set.
	 * With the writeback cache the kernel keeps and shows its own ctime and
	 * sends it along: that value is stored, so what a remount shows is what
	 * stat showed (the daemon's clock could be one tick later). */
	if (op.flags || (to_set & FUSE_SET_ATTR_CTIME) || !to_set) {
		struct ns_attr a;

		op.ctime_ns = (to_set & FUSE_SET_ATTR_CTIME) ? ns_of(&attr->st_ctim) : now;
		bz_mutex_lock(&fs_ns_lock);
		r = ns_getattr(fs->ns, ino, &a);
		if (r == 0 && (op.flags & (NS_SET_UID | NS_SET_GID)) && !(op.flags & NS_SET_MODE) && !S_ISDIR(a.mode) &&
		    (a.mode & (S_ISUID | S_ISGID))) {
			/* chown of any non-directory (FIFOs and devices too, as the
			 * kernel's chown_common asks) clears setuid, and setgid when
			 * group-executable */
			op.flags |= NS_SET_MODE;
			op.mode = a.mode & 07777 & ~(uint32_t)(S_ISUID | ((a.mode & S_IXGRP) ? S_ISGID : 0));
		}
		if (r == 0) {
			op.mode |= a.mode & S_IFMT;
			if (!(op.flags & NS_SET_MODE))
				op.mode = a.mode;
			if (!(op.flags & NS_SET_UID))
				op.uid = a.uid;
			if (!(op.flags & NS_SET_GID))
				op.gid = a.gid;
			if (!(op.flags & NS_SET_ATIME))
				op.atime_ns = a.atime_ns;
			if (!(op.flags & NS_SET_MTIME))
				op.mtime_ns = a.mtime_ns;
			r = submit_attr(fs, &op, &a);
		}
		bz_mutex_unlock(&fs_ns_lock);
	}
out:
	cur_req = NULL;
	if (r == 0)
		r = get_stat(fs, ino, &st);
	if (r == 0 && (to_set & FUSE_SET_ATTR_SIZE) && S_ISREG(st.st_mode))
		st.st_size = attr->st_size; /* the kernel takes it as its size; zeros may still be owed */
	if (r < 0)
		reply_err(req, r);
	else
		fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	char buf[NS_SYMLINK_MAX + 1];
	int r;

	if (is_ctl(ino)) {
		reply_err(req, EINVAL);
		return;
	}
	bz_mutex_lock(&fs_ns_lock);
	r = ns_readlink(fs->ns, ino, buf, sizeof(buf) - 1);
	bz_mutex_unlock(&fs_ns_lock);
	if (r < 0) {
		reply_err(req, r);
		return;
	}
	buf[r] = '\0';
	fuse_reply_readlink(req, buf);
}

/* ---- namespace changes ---- */

/* Creates a regular file, directory, symlink or special file (NS_MKNOD:
 * FIFO, socket, device node with rdev); on success *e holds the new entry
 * with one kernel reference; *ret_ip (create only) a counted ref. */
static int make_node(fuse_req_t req, fuse_ino_t parent, const char *name, enum ns_kind kind, mode_t mode,
		     dev_t rdev, const char *target, struct fuse_entry_param *e, struct fs_inode **ret_ip)
{
	struct fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct ns_op op = {.kind = (uint8_t)kind, .parent = parent, .name = name};
	struct ns_attr pa;
	size_t len = strlen(name);
	int64_t now = fs_now_ns();
	int r;

	if (is_ctl_name(parent, name))
		return -EEXIST;
	if (is_ctl(parent)) {
		fs_refuse(fs, NULL, parent, FS_REF_CONTROL, "create in the control directory");
		return -EPERM;
	}
	if (len > NS_NAME_MAX)
		return -ENAMETOOLONG;
	op.name_len = (uint32_t)len;
	op.uid = ctx->uid;
	op.gid = ctx->gid;
	op.atime_ns = op.mtime_ns = op.ctime_ns = now;
	switch (kind) {
	case NS_CREATE:
		op.mode = S_IFREG | (mode & 07777 & ~ctx->umask);
		break;
	case NS_MKDIR:
		op.mode = S_IFDIR | (mode & 07777 & ~ctx->umask);
		break;
	case NS_MKNOD:
		op.mode = (mode & S_IFMT) | (mode & 07777 & ~ctx->umask);
		/* the kernel's dev_t encoding (new_encode_dev) fits 32 bits */
		op.rdev = S_ISCHR(mode) || S_ISBLK(mode) ? (uint32_t)rdev : 0;
		break;
	default:
		op.mode = S_IFLNK | 0777;
		op.name2 = target;
		if (strlen(target) > NS_SYMLINK_MAX)
			return -ENAMETOOLONG;
		op.name2_len = (uint32_t)strlen(target);
		break;
	}
	bz_mutex_lock(&fs_ns_lock);
	r = ns_getattr(fs->ns, parent, &pa);
	if (r < 0)
		goto out;
	if (pa.mode & S_ISGID) { /* BSD group semantics of setgid directories */
		op.gid = pa.gid;
		if (kind == NS_MKDIR)
			op.mode |= S_ISGID;
	}
	op.ino = ns_alloc_ino(fs->ns);
	r = fs_submit(fs, &op);
	if (r < 0)
		goto out;
	r = make_entry(fs, op.ino, e);
	if (r == 0 && ret_ip)
		r = fs_inode_get(fs, op.ino, ret_ip);
out:
	bz_mutex_unlock(&fs_ns_lock);
	return r;
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct fuse_entry_param e;
	int r;

	/* FIFOs, sockets and device nodes hold no data: the kernel serves their
	 * I/O itself (init_special_inode), so they never reach open/write here. */
	if (S_ISREG(mode))
		r = make_node(req, parent, name, NS_CREATE, mode, 0, NULL, &e, NULL);
	else if (S_ISFIFO(mode) || S_ISSOCK(mode) || S_ISCHR(mode) || S_ISBLK(mode))
		r = make_node(req, parent, name, NS_MKNOD, mode, rdev, NULL, &e, NULL);
	else
		r = -EINVAL; /* as mknod(2) for a directory or an unknown type */
	if (r < 0)
		reply_err(req, r);
	else
		fuse_reply_entry(req, &e);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fuse_entry_param e;
	int r = make_node(req, parent, name, NS_MKDIR, mode, 0, NULL, &e, NULL);

	if (r < 0)
		reply_err(req, r);
	else
		fuse_reply_entry(req, &e);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int r = make_node(req, parent, name, NS_SYMLINK, 0, 0, link, &e, NULL);

	if (r < 0)
		reply_err(req, r);
	else
		fuse_reply_entry(req, &e);
}

/* -o worm: is the entry a regular file with data, within its retention
 * period (retain.c)? Then it stays; the refusal is counted and logged. */
static bool worm_protected(struct fs *fs, fuse_ino_t parent, const char *name, const char *what)
	REQUIRES(fs_ns_lock)
{
	uint64_t ino = 0;
	int64_t until = 0;

	if (!fs_retain_protected(fs, parent, name, &ino, &until))
		return false;
	fs_retain_refuse(fs, ino, until, what);
	return true;
}

static void remove_entry(fuse_req_t req, fuse_ino_t parent, const char *name, enum ns_kind kind)
{
	struct fs *fs = fs_of(req);
	struct ns_op op = {.kind = (uint8_t)kind, .parent = parent, .name = name};
	int r;

	if (is_ctl_name(parent, name) || is_ctl(parent)) {
		fs_refuse(fs, NULL, parent, FS_REF_CONTROL, "removal in the control directory");
		reply_err(req, EPERM);
		return;
	}
	op.name_len = (uint32_t)strlen(name);
	op.ctime_ns = fs_now_ns();
	bz_mutex_lock(&fs_ns_lock);
	if (kind == NS_UNLINK && worm_protected(fs, parent, name, "unlink of a non-empty file")) {
		r = -EPERM;
	} else if (kind == NS_UNLINK) {
		r = fs_unlink_or_orphan(fs, parent, name);
	} else {
		r = fs_submit(fs, &op);
	}
	bz_mutex_unlock(&fs_ns_lock);
	reply_err(req, r);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, NS_UNLINK);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, NS_RMDIR);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct fs *fs = fs_of(req);
	struct ns_op op = {.kind = NS_RENAME, .parent = parent, .name = name, .parent2 = newparent, .name2 = newname};
	int r;

	if (is_ctl_name(parent, name) || is_ctl_name(newparent, newname) || is_ctl(parent) || is_ctl(newparent)) {
		fs_refuse(fs, NULL, parent, FS_REF_CONTROL, "rename involving the control directory");
		reply_err(req, EPERM);
		return;
	}
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		reply_err(req, EINVAL);
		return;
	}
	if (strlen(newname) > NS_NAME_MAX) {
		reply_err(req, ENAMETOOLONG);
		return;
	}
	op.name_len = (uint32_t)strlen(name);
	op.name2_len = (uint32_t)strlen(newname);
	op.flags = ((flags & RENAME_NOREPLACE) ? NS_RENAME_NOREPLACE : 0) |
		   ((flags & RENAME_EXCHANGE) ? NS_RENAME_EXCHANGE : 0);
	op.ctime_ns = fs_now_ns();
	bz_mutex_lock(&fs_ns_lock);
	if (worm_protected(fs, parent, name, "rename of a non-empty file")) {
		r = -EPERM;
	} else if (worm_protected(fs, newparent, newname, "rename over a non-empty file")) {
		r = -EPERM;
	} else {
		r = fs_retain_carry(fs, parent, name, newparent); /* retain.c */
		if (r == 0 && (flags & RENAME_EXCHANGE))
			r = fs_retain_carry(fs, newparent, newname, parent);
		if (r == 0)
			r = fs_rename(fs, &op);
	}
	bz_mutex_unlock(&fs_ns_lock);
	reply_err(req, r);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct fs *fs = fs_of(req);
	struct ns_op op = {.kind = NS_LINK, .ino = ino};
	struct fuse_entry_param e;
	size_t len = strlen(newname);
	int r;

	if (is_ctl(ino) || is_ctl(newparent) || is_ctl_name(newparent, newname)) {
		reply_err(req, is_ctl_name(newparent, newname) ? EEXIST : EPERM);
		return;
	}
	if (len > NS_NAME_MAX) {
		reply_err(req, ENAMETOOLONG);
		return;
	}
	/* The new entry, in both name slots (nsop.h: link uses parent2/name2). */
	op.parent = op.parent2 = newparent;
	op.name = op.name2 = newname;
	op.name_len = op.name2_len = (uint32_t)len;
	op.ctime_ns = fs_now_ns();
	bz_mutex_lock(&fs_ns_lock);
	r = fs_submit(fs, &op);
	if (r == 0)
		r = make_entry(fs, ino, &e);
	bz_mutex_unlock(&fs_ns_lock);
	if (r < 0)
		reply_err(req, r);
	else
		fuse_reply_entry(req, &e);
}

/* ---- files ---- */

static int open_ctl(struct fs *fs, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_open *of;
	int r;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fs_refuse(fs, NULL, ino, FS_REF_CONTROL, "write open of a control file");
		return -EACCES;
	}
	of = calloc(1, sizeof(*of));
	if (!of)
		return -ENOMEM;
	r = fs_ctl_content(fs, ino, &of->ctl, &of->ctl_len);
	if (r < 0) {
		free(of);
		return r;
	}
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fi->fh = (uint64_t)(uintptr_t)of;
	bz_mutex_lock(&fs_ns_lock);
	fs_open_link(fs, of);
	bz_mutex_unlock(&fs_ns_lock);
	return 0;
}

/* Writeback cache, O_TRUNC of a file the daemon holds no byte of: the
 * kernel may still hold dirty bytes of it (a file written and closed a
 * moment ago), which the truncate would drop. The kernel holds the inode's
 * writeback back during this open, so asking it is safe and stable. */
static bool trunc_ok_wb(struct fs *fs, struct fs_inode *ip) EXCLUDES(fs_ns_lock)
{
	char byte;
	size_t got = 0;

	if (fs_file_has_pending(ip))
		return false;
	return fs_wb_retrieve(fs, ip->ino, 0, &byte, 1, &got) < 0 || got == 0;
}

/* O_TRUNC of an (empty) existing file: POSIX open() sets mtime and ctime,
 * and a caller without CAP_FSETID loses setuid (and setgid when
 * group-executable), as on ext4. The kernel leaves both to us: with
 * FUSE_CAP_ATOMIC_O_TRUNC it sends no setattr for O_TRUNC. */
static int truncated_empty(struct fs *fs, const struct ns_attr *a, bool kill) REQUIRES(fs_ns_lock)
{
	struct ns_op op = {.kind = NS_SETATTR, .ino = a->ino, .flags = NS_SET_MTIME};
	uint32_t bits = S_ISUID | ((a->mode & S_IXGRP) ? S_ISGID : 0);

	op.mode = a->mode;
	op.uid = a->uid;
	op.gid = a->gid;
	op.atime_ns = a->atime_ns;
	op.mtime_ns = op.ctime_ns = fs_now_ns();
	if (kill && (a->mode & bits)) {
		op.flags |= NS_SET_MODE;
		op.mode = a->mode & ~bits;
	}
	return fs_submit(fs, &op);
}

/* Opens ino: a counted inode reference in a struct fs_open. kill: the
 * kernel asked to clear setuid/setgid on O_TRUNC (FUSE_OPEN_KILL_SUIDGID). */
static int open_file(struct fs *fs, fuse_ino_t ino, struct fuse_file_info *fi, bool created, struct fs_inode *ip,
		     bool kill)
{
	struct fs_open *of = calloc(1, sizeof(*of));
	struct ns_attr a;
	bool refused = false;
	int r = 0;

	if (!of)
		return -ENOMEM;
	if (!ip) {
		bz_mutex_lock(&fs_ns_lock);
		r = ns_getattr(fs->ns, ino, &a);
		if (r == 0 && S_ISDIR(a.mode))
			r = -EISDIR;
		if (r == 0 && a.nlink == 0) {
			/* Unlinked and not parked (fs_unlink_or_orphan parks every
			 * file the kernel references): its data is gone. */
			struct fs_inode *held = fs_inode_find(fs, ino);
			if (!held || !held->orphan)
				r = -ENOENT;
		}
		if (r == 0 && (fi->flags & O_TRUNC) && a.size > 0) {
			fs_refuse(fs, fs_inode_find(fs, ino), ino, FS_REF_O_TRUNC, "O_TRUNC of a non-empty file");
			r = -EPERM;
		}
		if (r == 0)
			r = fs_inode_get(fs, ino, &ip);
		if (r == 0 && (ip->inval_queued || ip->inval_busy)) {
			/* The kernel still caches a page the store refused (with
			 * or without the writeback cache, wb.c): a new reader or
			 * writer must not start from it. (Not with O_TRUNC: the
			 * kernel then holds back the inode's writeback, which
			 * the invalidation may wait for.) */
			refused = true;
			if (!(fi->flags & O_TRUNC))
				fs_wb_inval_wait(fs, ip);
		}
		bz_mutex_unlock(&fs_ns_lock);
		if (r == 0 && fs->opts.writeback_cache && (fi->flags & O_TRUNC) && !trunc_ok_wb(fs, ip)) {
			fs_refuse(fs, ip, ino, FS_REF_O_TRUNC, "O_TRUNC of a non-empty file");
			r = -EPERM;
		}
		if (r == 0 && (fi->flags & O_TRUNC)) {
			/* judged empty: the truncate's times (and setuid) now, after
			 * every check that can still refuse the open */
			bz_mutex_lock(&fs_ns_lock);
			r = ns_getattr(fs->ns, ino, &a);
			if (r == 0 && a.size > 0) {
				fs_refuse(fs, ip, ino, FS_REF_O_TRUNC, "O_TRUNC of a non-empty file");
				r = -EPERM;
			}
			if (r == 0 && S_ISREG(a.mode))
				r = truncated_empty(fs, &a, kill);
			bz_mutex_unlock(&fs_ns_lock);
		}
		if (r < 0 && ip) {
			bz_mutex_lock(&fs_ns_lock);
			fs_inode_put(fs, ip);
			bz_mutex_unlock(&fs_ns_lock);
		}
		if (r < 0) {
			free(of);
			return r;
		}
	}
	of->inode = ip;
	of->flags = fi->flags;
	if (ip)
		of->ref_seen = __atomic_load_n(&ip->ref_seq, __ATOMIC_ACQUIRE); /* refusals before it: not its own */
	of->opened_ns = bz_now_ns();
	of->fresh = created || ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY);
	if (of->fresh)
		__atomic_add_fetch(&ip->fresh_opens, 1, __ATOMIC_RELAXED);
	bz_mutex_lock(&fs_ns_lock);
	fs_file_opened(fs, of);
	fs_open_link(fs, of);
	bz_mutex_unlock(&fs_ns_lock);
	fi->fh = (uint64_t)(uintptr_t)of;
	/* Data never changes once written, so the kernel keeps its cache --
	 * unless it may hold a page the store refused. */
	fi->keep_cache = !refused;
	FS_COUNT(fs, open_files, 1);
	return 0;
}

static void close_file(struct fs *fs, struct fs_open *of)
{
	if (!of)
		return;
	if (of->inode && of->fresh)
		__atomic_sub_fetch(&of->inode->fresh_opens, 1, __ATOMIC_RELAXED);
	bz_mutex_lock(&fs_ns_lock);
	fs_open_unlink(fs, of);
	if (of->inode)
		fs_inode_put(fs, of->inode);
	bz_mutex_unlock(&fs_ns_lock);
	if (of->inode)
		__atomic_sub_fetch(&fs->ctr.open_files, 1, __ATOMIC_RELAXED);
	free(of->ctl);
	free(of);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	int r;

	if (ino == FS_CTL_DIR_INO)
		r = -EISDIR;
	else if (is_ctl(ino))
		r = open_ctl(fs, ino, fi);
	else if (fs->opts.read_only && ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)))
		r = -EROFS; /* -o ro (the kernel refuses these on a read-only mount already) */
	else
		r = open_file(fs, ino, fi, false, NULL,
			      fs_killpriv_open_kill(fi->flags, fuse_req_ctx(req)->uid != 0));
	if (r < 0) {
		reply_err(req, r);
		return;
	}
	if (fuse_reply_open(req, fi) != 0)
		close_file(fs, (struct fs_open *)(uintptr_t)fi->fh);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct fs_inode *ip = NULL;
	int r;

	if (!S_ISREG(mode) && (mode & S_IFMT) != 0) {
		reply_err(req, EPERM);
		return;
	}
	r = make_node(req, parent, name, NS_CREATE, mode, 0, NULL, &e, &ip);
	if (r == 0) {
		r = open_file(fs, e.ino, fi, true, ip, false);
		if (r < 0) {
			bz_mutex_lock(&fs_ns_lock);
			fs_inode_put(fs, ip);
			bz_mutex_unlock(&fs_ns_lock);
		}
	}
	if (r < 0) {
		reply_err(req, r);
		return;
	}
	if (fuse_reply_create(req, &e, fi) != 0)
		close_file(fs, (struct fs_open *)(uintptr_t)fi->fh);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_open *of = (struct fs_open *)(uintptr_t)fi->fh;
	size_t n = 0;
	char *buf;

	if (off < 0) {
		reply_err(req, EINVAL);
		return;
	}
	if (of && !of->inode) { /* control file */
		/* Reply from a copy: once the kernel has the reply, the reader may
		 * close the file, and the release (on another session thread) frees
		 * of->ctl while fuse_reply_buf may still be returning from writev --
		 * so the reply must not point into of. Until the reply is sent, of
		 * is valid: the kernel releases a handle only after every request
		 * on it has been answered. */
		n = (uint64_t)off >= of->ctl_len ? 0 : BZ_MIN(size, of->ctl_len - (size_t)off);
		buf = malloc(n ? n : 1);
		if (!buf) {
			reply_err(req, ENOMEM);
			return;
		}
		if (n)
			memcpy(buf, of->ctl + off, n);
		fuse_reply_buf(req, buf, n);
		free(buf);
		return;
	}
	if (fs_read_submit(fs, req, ino, size, off) == 0)
		return; /* the read pool replies (read.c) */
	buf = malloc(size ? size : 1);
	if (!buf) {
		reply_err(req, ENOMEM);
		return;
	}
	fs_read_serve(fs, req, ino, size, off, buf);
	free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_open *of = (struct fs_open *)(uintptr_t)fi->fh;
	ssize_t n;

	if (!of || !of->inode || off < 0) {
		reply_err(req, of && !of->inode ? EBADF : EINVAL);
		return;
	}
	/* The maximum file size, as the kernel's generic_write_checks applies
	 * s_maxbytes: nothing at or beyond it, a short write up to it. */
	if ((uint64_t)off >= FS_MAX_FILE_BYTES) {
		reply_err(req, EFBIG);
		return;
	}
	size = (size_t)BZ_MIN((uint64_t)size, FS_MAX_FILE_BYTES - (uint64_t)off);
	cur_req = req;
	n = fs_file_write(fs, of, buf, size, (uint64_t)off, fi->writepage != 0);
	cur_req = NULL;
	if (n >= 0 && fuse_req_ctx(req)->uid != 0)
		(void)kill_priv(fs, ino);
	if (n < 0) {
		reply_err(req, (int)n);
	} else {
		fuse_reply_write(req, (size_t)n);
		/* The kernel's writeback of a small file or tail: at a close
		 * (cp, echo >>) the flush follows at once and would seal the
		 * batch anyway; sealing now lets the commit thread encode and
		 * log it while the reply and the FLUSH request travel.
		 * Streaming writeback comes in max_write pieces that fill
		 * batches by themselves (sealing those too raised the peak RSS
		 * of a 256 MiB stream from ~290 to ~380 MiB). */
		if (fi->writepage && size <= FS_SEAL_WRITE_MAX)
			pipe_seal(fs->pipe);
	}
}

/* Barrier callback: replies from the commit thread (or the caller). */
static void barrier_done(void *arg, int err)
{
	fuse_req_t req = arg;
	struct fs *fs = fs_of(req);

	if (err < 0) {
		/* the WAL write or sync failed: sticky (never retried) */
		fs_note_error(fs, err);
		__atomic_store_n(&fs->failed, 1, __ATOMIC_RELAXED);
		err = -EIO;
	}
	fuse_reply_err(req, -err);
}

static void barrier(fuse_req_t req, enum pipe_level level)
{
	struct fs *fs = fs_of(req);
	int r = pipe_barrier(fs->pipe, level, barrier_done, req);

	if (r < 0) {
		/* Not queued: the callback was not called. */
		fs_note_error(fs, r);
		reply_err(req, EIO);
	}
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_open *of = (struct fs_open *)(uintptr_t)fi->fh;

	(void)ino;
	if (!of || !of->inode || (of->flags & O_ACCMODE) == O_RDONLY) {
		reply_err(req, 0); /* nothing written through it */
		return;
	}
	FS_COUNT(fs, flushes, 1);
	if (fs->opts.writeback_cache) {
		/* the kernel has written back the dirty pages: judge what is held */
		int r = fs_file_settle(fs, of);
		if (r < 0) {
			reply_err(req, r);
			return;
		}
	}
	barrier(req, fs->opts.sync_close ? PIPE_DURABLE : PIPE_WRITTEN);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_open *of = (struct fs_open *)(uintptr_t)fi->fh;

	(void)ino;
	if (of && of->inode && fs->opts.writeback_cache && (of->flags & O_ACCMODE) != O_RDONLY)
		(void)fs_file_settle(fs, of); /* refusals are logged; nobody is left to tell */
	close_file(fs, of);
	reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_open *of = fi ? (struct fs_open *)(uintptr_t)fi->fh : NULL;

	(void)datasync;
	if (is_ctl(ino)) {
		reply_err(req, 0);
		return;
	}
	if (of && of->inode && fs->opts.writeback_cache) {
		int r = fs_file_settle(fs, of);
		if (r < 0) {
			reply_err(req, r);
			return;
		}
	}
	FS_COUNT(fs_of(req), fsyncs, 1);
	barrier(req, PIPE_DURABLE);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_open *of = (struct fs_open *)(uintptr_t)fi->fh;

	(void)mode;
	(void)offset;
	(void)length;
	fs_refuse(fs, of ? of->inode : NULL, ino, FS_REF_FALLOCATE, "fallocate");
	reply_err(req, EOPNOTSUPP);
}

/* SEEK_DATA / SEEK_HOLE: holes are the gaps between a file's stored chunks
 * (store_seek, over the applied state); bytes still in the pipeline, past
 * the applied size, count as data (a hole record among them is reported as
 * data until it is applied: allowed, a filesystem may always report data). */
static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	uint64_t size = 0, applied = 0, at = 0;
	int r;

	(void)fi;
	if (is_ctl(ino) || (whence != SEEK_DATA && whence != SEEK_HOLE)) {
		reply_err(req, EINVAL);
		return;
	}
	if (fs->opts.writeback_cache)
		fs_catch_up_ino(fs, ino); /* the kernel's dirty pages first */
	r = fs_live_size(fs, ino, &size);
	if (r == 0 && (off < 0 || (uint64_t)off >= size))
		r = -ENXIO; /* no data at or after off, and no hole either */
	if (r == 0) {
		r = store_file_size(fs->store, ino, &applied);
		if (r == -ENOENT)
			r = 0; /* created, not yet applied: all pipeline */
	}
	if (r == 0 && (uint64_t)off >= applied) {
		at = whence == SEEK_DATA ? (uint64_t)off : size; /* all pipeline: data */
	} else if (r == 0) {
		r = store_seek(fs->store, ino, (uint64_t)off, whence, &at);
		if (r == -ENXIO && whence == SEEK_DATA && applied < size) {
			at = applied; /* no stored data after off, but the pipeline's */
			r = 0;
		} else if (r == 0 && whence == SEEK_HOLE && at >= applied) {
			at = size; /* the applied end is followed by pipeline data */
		}
	}
	if (r < 0)
		reply_err(req, -r);
	else
		fuse_reply_lseek(req, (off_t)at);
}

/* ---- directories ---- */

struct dent {
	uint64_t ino;
	uint32_t mode;
	off_t next;
	char name[NS_NAME_MAX + 1];
};

struct dcollect {
	struct dent *v;
	size_t n, cap;
	size_t bytes, limit;
	bool plus;
	bool root; /* hide the real ".blazefs" (orphan directory) */
};

static size_t dent_size(bool plus, size_t namelen)
{
	size_t base = plus ? 152 : 24; /* fuse_direntplus / fuse_dirent header */
	return (base + namelen + 7) & ~(size_t)7;
}

static int dcollect_add(struct dcollect *c, const char *name, size_t len, uint64_t ino, uint32_t mode, off_t next)
{
	if (c->bytes + dent_size(c->plus, len) > c->limit && c->n > 0)
		return 1;
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 32;
		struct dent *nv = realloc(c->v, ncap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		c->v = nv;
		c->cap = ncap;
	}
	c->v[c->n].ino = ino;
	c->v[c->n].mode = mode;
	c->v[c->n].next = next;
	memcpy(c->v[c->n].name, name, len);
	c->v[c->n].name[len] = '\0';
	c->n++;
	c->bytes += dent_size(c->plus, len);
	return 0;
}

#define DOFF_FIXED 3 /* ".", "..", ".blazefs" (root only) */

static int dcollect_ns(void *arg, const char *name, size_t name_len, uint64_t ino, uint32_t mode, uint64_t cookie)
{
	struct dcollect *c = arg;

	if (cookie > (uint64_t)INT64_MAX - DOFF_FIXED)
		return -EOVERFLOW;
	if (c->root && name_len == strlen(FS_CTL_DIR_NAME) && memcmp(name, FS_CTL_DIR_NAME, name_len) == 0)
		return 0;
	return dcollect_add(arg, name, name_len, ino, mode, (off_t)(cookie + DOFF_FIXED));
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct fs *fs = fs_of(req);
	struct dcollect c = {.limit = size, .plus = plus, .root = ino == NS_ROOT_INO};
	char *buf = NULL;
	size_t pos = 0;
	int r = 0;

	if (off < 0) {
		r = -EINVAL;
		goto out;
	}
	buf = malloc(size ? size : 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	bz_mutex_lock(&fs_ns_lock);
	if (ino == FS_CTL_DIR_INO) {
		if (off < 1)
			r = dcollect_add(&c, ".", 1, FS_CTL_DIR_INO, S_IFDIR, 1);
		if (r == 0 && off < 2)
			r = dcollect_add(&c, "..", 2, NS_ROOT_INO, S_IFDIR, 2);
		for (size_t i = 0; r == 0; i++) {
			uint64_t cino;
			const char *cname = fs_ctl_entry(i, &cino);
			if (!cname)
				break;
			if (off < (off_t)(i + 3))
				r = dcollect_add(&c, cname, strlen(cname), cino, S_IFREG, (off_t)(i + 3));
		}
		if (r > 0)
			r = 0; /* the reply buffer is full */
	} else {
		struct ns_attr a;
		r = ns_getattr(fs->ns, ino, &a);
		if (r == 0 && !S_ISDIR(a.mode))
			r = -ENOTDIR;
		if (r == 0 && off < 1)
			r = dcollect_add(&c, ".", 1, ino, S_IFDIR, 1);
		if (r == 0 && off < 2) {
			uint64_t up = 0;
			r = ns_parent(fs->ns, ino, &up);
			if (r == 0)
				r = dcollect_add(&c, "..", 2, up, S_IFDIR, 2);
		}
		if (r == 0 && off < 3 && ino == NS_ROOT_INO)
			r = dcollect_add(&c, FS_CTL_DIR_NAME, strlen(FS_CTL_DIR_NAME), FS_CTL_DIR_INO, S_IFDIR, 3);
		if (r == 0)
			r = ns_readdir(fs->ns, ino, off > DOFF_FIXED ? (uint64_t)(off - DOFF_FIXED) : 0, dcollect_ns, &c);
		if (r > 0)
			r = 0;
	}
	for (size_t i = 0; r == 0 && i < c.n; i++) {
		struct dent *d = &c.v[i];
		bool dots = strcmp(d->name, ".") == 0 || strcmp(d->name, "..") == 0;
		size_t need;

		if (!plus) {
			struct stat st = {.st_ino = d->ino, .st_mode = d->mode & S_IFMT};
			need = fuse_add_direntry(req, buf + pos, size - pos, d->name, &st, d->next);
		} else {
			struct fuse_entry_param e;
			struct ns_attr a;

			entry_init(&e);
			if (dots) {
				e.attr.st_ino = d->ino;
				e.attr.st_mode = d->mode & S_IFMT;
			} else if (is_ctl(d->ino)) {
				e.ino = d->ino;
				ctl_stat(fs, d->ino, &e.attr);
			} else if (ns_getattr(fs->ns, d->ino, &a) == 0) {
				e.ino = d->ino;
				stat_of(fs, &a, &e.attr);
			} else {
				continue;
			}
			need = fuse_add_direntry_plus(req, buf + pos, size - pos, d->name, &e, d->next);
			/* an entry handed to the kernel is a lookup reference */
			if (need <= size - pos && e.ino && !is_ctl(e.ino) && fs_inode_lookup(fs, e.ino) < 0)
				break; /* not counted: leave the entry out */
		}
		if (need > size - pos)
			break;
		pos += need;
	}
	bz_mutex_unlock(&fs_ns_lock);
out:
	if (r < 0 && pos == 0)
		reply_err(req, r);
	else
		fuse_reply_buf(req, buf, pos);
	free(c.v);
	free(buf);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int r = get_stat(fs_of(req), ino, &st);

	if (r == 0 && !S_ISDIR(st.st_mode))
		r = -ENOTDIR;
	if (r < 0) {
		reply_err(req, r);
		return;
	}
	fi->fh = 0;
	fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	reply_err(req, 0);
}

/* fsync of any directory is the global durability barrier: the kernel never
 * forwards sync(2)/syncfs(2) to a FUSE daemon, so `sync MOUNTPOINT` (an fsync
 * of the root directory) and `blazectl sync` (syncfs, then this) are how users
 * make everything written so far durable. pipe_barrier seals whatever is
 * pending, in every file, and replies after the fdatasync covering it. */
static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	(void)fi;
	if (is_ctl(ino)) {
		reply_err(req, 0);
		return;
	}
	FS_COUNT(fs_of(req), fsyncs, 1);
	if (fs_of(req)->opts.writeback_cache && !fs_of(req)->opts.read_only)
		fs_catch_up_all(fs_of(req), "a directory fsync", 0); /* what writers still have in the kernel cache */
	barrier(req, PIPE_DURABLE);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct statvfs sv;
	struct store_stats ss;
	uint64_t free_b = 0, total_b = 0, avail_b, spare_b = 0, inodes;
	const uint64_t bs = 4096;
	int r;

	(void)ino;
	r = vfs_space(fs->vfs, &free_b, &total_b);
	if (r < 0) {
		reply_err(req, r);
		return;
	}
	store_stats(fs->store, &ss);
	bz_mutex_lock(&fs_ns_lock);
	inodes = ns_count(fs->ns);
	bz_mutex_unlock(&fs_ns_lock);
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = bs;
	sv.f_frsize = bs;
	/* capacity = what is stored + what the disk still has: df shows
	 * used = stored bytes, available = what writes can really use: the
	 * disk's free space minus the reserve (space.c) below which writes and
	 * namespace additions get ENOSPC (like ext4's reserved blocks: counted
	 * in f_bfree, not in f_bavail) */
	avail_b = fs_space_avail(fs, &spare_b);
	free_b += spare_b; /* free pages inside store.db take data first */
	sv.f_blocks = (fsblkcnt_t)((free_b + ss.stored_bytes) / bs);
	sv.f_bfree = (fsblkcnt_t)(free_b / bs);
	sv.f_bavail = (fsblkcnt_t)(BZ_MIN(avail_b, free_b) / bs);
	sv.f_files = (fsfilcnt_t)(inodes + (1ull << 32));
	sv.f_ffree = (fsfilcnt_t)(1ull << 32);
	sv.f_favail = sv.f_ffree;
	sv.f_namemax = NS_NAME_MAX;
	(void)total_b;
	fuse_reply_statfs(req, &sv);
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.symlink = op_symlink,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.ioctl = fs_op_ioctl,
	.statfs = op_statfs,
	.setxattr = fs_op_setxattr,
	.getxattr = fs_op_getxattr,
	.listxattr = fs_op_listxattr,
	.removexattr = fs_op_removexattr,
	.fallocate = op_fallocate,
	.lseek = op_lseek,
	.retrieve_reply = fs_wb_retrieve_reply,
};
