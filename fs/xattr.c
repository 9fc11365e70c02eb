/* xattr.c — extended attributes: the user's (stored) and blazefs's own
 * (read-only, computed).
 *
 * Stored attributes. Names in the "user." and "trusted." namespaces are
 * kept per inode in the namespace (storage/ns.c) and change only through
 * NS_SETXATTR / NS_REMOVEXATTR ops: validated on the live namespace and
 * logged under fs_ns_lock like every namespace change (fs_submit), so they
 * are in the WAL, survive a crash and are written into every checkpoint
 * ('X' records, docs/FORMAT.md). The kernel decides who may touch which
 * namespace before asking us (user.* only on regular files and directories,
 * trusted.* only with CAP_SYS_ADMIN; values <= 64 KiB, names <= 255 bytes).
 * Limits of our own, as ext4 (4 KiB blocks) has its own: one inode's
 * attributes, sum of (name length + 1 + value length), take at most
 * NS_XATTR_TOTAL_MAX = 64 KiB; beyond, setxattr answers ENOSPC. Other
 * namespaces (security.*, system.*) are not supported (EOPNOTSUPP): in
 * particular security.capability cannot exist, which the KILLPRIV_V2
 * negotiation (killpriv.c) relies on.
 *
 * Info attributes. info_attrs[] is a table of read-only names under
 * "user.blazefs." computed on the fly (records, stored_bytes, ratio,
 * pending_bytes of a regular file). They are gettable by name but never
 * listed, so copying tools (cp --preserve=xattr, cp -a, rsync -X) that copy
 * every listed attribute do not try to write them into the copy. Setting or
 * removing one is EPERM; a stored attribute can never take such a name.
 *
 * Settings (retain.c) are the exception: user.blazefs.zstd_level,
 * chunk_bytes and retain are stored attributes a user sets on a directory
 * (validated and canonicalized there); on a file they and deletable_at
 * are computed (retain.c fs_setting_info). They are not listed either,
 * like every "user.blazefs." name: a copy made with cp -a or rsync -X
 * takes the settings of the directory it lands in (inheritance), and
 * copying to a mount without worm does not fail on a retain.
 *
 * -o noxattr: every xattr request answers ENOSYS, after which the kernel
 * stops sending them (including the security.capability query it would
 * otherwise make before writes when KILLPRIV_V2 is not negotiated).
 *
 * Locks: fs_ns_lock around the live-namespace reads and the submit; replies
 * after it is released.
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "fs/fs.h"

#define INFO_PREFIX "user.blazefs."

static struct fs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

static void reply_err(fuse_req_t req, int r) { fuse_reply_err(req, r < 0 ? -r : r); }

/* ---- read-only info attributes ---- */

/* The applied state (store_file_info) and the live size of a regular file. */
static int info_records(struct fs *fs, uint64_t ino, const struct store_file_info *info, char *v, size_t cap)
{
	(void)fs;
	(void)ino;
	return snprintf(v, cap, "%llu", (unsigned long long)info->records);
}

static int info_stored(struct fs *fs, uint64_t ino, const struct store_file_info *info, char *v, size_t cap)
{
	(void)fs;
	(void)ino;
	return snprintf(v, cap, "%llu", (unsigned long long)info->stored_bytes);
}

static int info_ratio(struct fs *fs, uint64_t ino, const struct store_file_info *info, char *v, size_t cap)
{
	(void)fs;
	(void)ino;
	return snprintf(v, cap, "%.4f",
			info->raw_bytes ? (double)info->stored_bytes / (double)info->raw_bytes : 0.0);
}

/* live size - applied bytes: data still in the pipeline (sealed, encoding,
 * or logged but not yet applied; usually for a few ms). */
static int info_pending(struct fs *fs, uint64_t ino, const struct store_file_info *info, char *v, size_t cap)
{
	uint64_t size = 0;

	if (fs_live_size(fs, ino, &size) < 0)
		size = 0;
	return snprintf(v, cap, "%llu",
			(unsigned long long)(size > info->raw_bytes ? size - info->raw_bytes : 0));
}

static const struct info_attr {
	const char *name;
	int (*get)(struct fs *fs, uint64_t ino, const struct store_file_info *info, char *v, size_t cap);
} info_attrs[] = {
	{INFO_PREFIX "records", info_records},
	{INFO_PREFIX "stored_bytes", info_stored},
	{INFO_PREFIX "ratio", info_ratio},
	{INFO_PREFIX "pending_bytes", info_pending},
};

static const struct info_attr *info_find(const char *name)
{
	for (size_t i = 0; i < BZ_ARRAY_SIZE(info_attrs); i++)
		if (strcmp(name, info_attrs[i].name) == 0)
			return &info_attrs[i];
	return NULL;
}

/* The whole "user.blazefs." namespace is reserved for info attributes. */
static bool info_reserved(const char *name) { return strncmp(name, INFO_PREFIX, strlen(INFO_PREFIX)) == 0; }

/* 0 if a stored attribute may have this name, else the errno. */
static int stored_name_check(const char *name)
{
	if (info_reserved(name))
		return -EPERM;
	if (strncmp(name, "user.", 5) != 0 && strncmp(name, "trusted.", 8) != 0)
		return -EOPNOTSUPP;
	if (strlen(name) > NS_XATTR_NAME_MAX)
		return -ERANGE; /* as the kernel says for names over XATTR_NAME_MAX */
	return 0;
}

static void reply_value(fuse_req_t req, const void *v, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, v, len);
}

/* Drops the "user.blazefs." names (settings) from a list of NUL-terminated
 * names; returns the new length. */
static size_t unlist_info(char *list, size_t len)
{
	size_t in = 0, out = 0;

	while (in < len) {
		size_t n = strnlen(list + in, len - in) + 1;
		if (!info_reserved(list + in)) {
			memmove(list + out, list + in, n);
			out += n;
		}
		in += n;
	}
	return out;
}

/* ---- the operations ---- */

void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags)
{
	struct fs *fs = fs_of(req);
	struct ns_op op = {.kind = NS_SETXATTR, .ino = ino, .name = name, .name2 = value};
	int r;

	if (fs->opts.noxattr) {
		reply_err(req, ENOSYS);
		return;
	}
	if (fs_is_ctl(ino)) {
		fs_refuse(fs, NULL, ino, FS_REF_CONTROL, "setxattr in the control directory");
		reply_err(req, EPERM);
		return;
	}
	if (flags & ~(XATTR_CREATE | XATTR_REPLACE)) {
		r = -EINVAL;
		goto out;
	}
	if (fs_setting_name(name)) {
		bz_mutex_lock(&fs_ns_lock);
		if ((flags & XATTR_CREATE) && (flags & XATTR_REPLACE))
			r = ns_getxattr(fs->ns, ino, name, strlen(name), NULL, 0) >= 0 ? -EEXIST : -ENODATA;
		else
			r = fs_setting_set(fs, ino, name, value, size, flags);
		bz_mutex_unlock(&fs_ns_lock);
		goto out;
	}
	r = stored_name_check(name);
	if (r == 0 && size > NS_XATTR_VALUE_MAX)
		r = -E2BIG;
	if (r < 0)
		goto out;
	op.name_len = (uint32_t)strlen(name);
	op.name2_len = (uint32_t)size;
	op.ctime_ns = fs_now_ns();
	bz_mutex_lock(&fs_ns_lock);
	if ((flags & XATTR_CREATE) && (flags & XATTR_REPLACE)) {
		/* ext4 checks REPLACE then CREATE: either way one of them fails */
		r = ns_getxattr(fs->ns, ino, name, op.name_len, NULL, 0);
		r = r >= 0 ? -EEXIST : r;
	} else {
		op.flags = (flags & XATTR_CREATE) ? NS_XATTR_CREATE : (flags & XATTR_REPLACE) ? NS_XATTR_REPLACE : 0;
		r = fs_submit(fs, &op);
	}
	bz_mutex_unlock(&fs_ns_lock);
out:
	reply_err(req, r);
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fs *fs = fs_of(req);
	struct ns_op op = {.kind = NS_REMOVEXATTR, .ino = ino, .name = name};
	int r;

	if (fs->opts.noxattr) {
		reply_err(req, ENOSYS);
		return;
	}
	if (fs_is_ctl(ino)) {
		reply_err(req, ENODATA);
		return;
	}
	if (fs_setting_name(name)) {
		bz_mutex_lock(&fs_ns_lock);
		r = fs_setting_remove(fs, ino, name);
		bz_mutex_unlock(&fs_ns_lock);
		goto out;
	}
	r = stored_name_check(name);
	if (r < 0)
		goto out;
	op.name_len = (uint32_t)strlen(name);
	op.ctime_ns = fs_now_ns();
	bz_mutex_lock(&fs_ns_lock);
	r = fs_submit(fs, &op);
	bz_mutex_unlock(&fs_ns_lock);
out:
	reply_err(req, r);
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = fs_of(req);
	const struct info_attr *ia;
	char *buf = NULL;
	int r;

	if (fs->opts.noxattr) {
		reply_err(req, ENOSYS);
		return;
	}
	if (fs_is_ctl(ino)) {
		reply_err(req, ENODATA);
		return;
	}
	if (fs_setting_info_name(name)) {
		char v[64];

		bz_mutex_lock(&fs_ns_lock);
		r = fs_setting_info(fs, ino, name, v, sizeof(v));
		bz_mutex_unlock(&fs_ns_lock);
		if (r < 0)
			reply_err(req, r);
		else
			reply_value(req, v, (size_t)r, size);
		return;
	}
	ia = info_find(name);
	if (ia) {
		struct store_file_info info = {0};
		struct ns_attr a;
		char v[64];

		bz_mutex_lock(&fs_ns_lock);
		r = ns_getattr(fs->ns, ino, &a);
		bz_mutex_unlock(&fs_ns_lock);
		if (r == 0 && !S_ISREG(a.mode))
			r = -ENODATA;
		if (r < 0) {
			reply_err(req, r);
			return;
		}
		/* The applied state: bytes still in the pipeline are not counted yet. */
		if (store_file_info(fs->store, ino, &info) < 0)
			memset(&info, 0, sizeof(info));
		r = ia->get(fs, ino, &info, v, sizeof(v));
		reply_value(req, v, (size_t)r, size);
		return;
	}
	if (stored_name_check(name) < 0) {
		reply_err(req, ENODATA);
		return;
	}
	if (size) {
		buf = malloc(BZ_MIN(size, (size_t)NS_XATTR_VALUE_MAX) + 1);
		if (!buf) {
			reply_err(req, ENOMEM);
			return;
		}
	}
	bz_mutex_lock(&fs_ns_lock);
	r = ns_getxattr(fs->ns, ino, name, strlen(name), buf, size ? BZ_MIN(size, (size_t)NS_XATTR_VALUE_MAX) : 0);
	bz_mutex_unlock(&fs_ns_lock);
	if (r < 0)
		reply_err(req, r);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)r);
	else
		fuse_reply_buf(req, buf, (size_t)r);
	free(buf);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs *fs = fs_of(req);
	char *buf = NULL;
	int r;

	if (fs->opts.noxattr) {
		reply_err(req, ENOSYS);
		return;
	}
	if (fs_is_ctl(ino)) {
		reply_value(req, "", 0, size);
		return;
	}
	buf = malloc(NS_XATTR_TOTAL_MAX); /* the whole list: it is filtered before its size is known */
	if (!buf) {
		reply_err(req, ENOMEM);
		return;
	}
	bz_mutex_lock(&fs_ns_lock);
	r = ns_listxattr(fs->ns, ino, buf, NS_XATTR_TOTAL_MAX);
	bz_mutex_unlock(&fs_ns_lock);
	if (r >= 0)
		r = (int)unlist_info(buf, (size_t)r);
	if (r < 0)
		reply_err(req, r);
	else
		reply_value(req, buf, (size_t)r, size);
	free(buf);
}
