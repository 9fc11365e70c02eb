/* nsop.c — the namespace-operation payload codec (pure: no I/O, no state).
 *
 * A namespace change is the raw payload of a REC_NS record. Encoding
 * (normative copy in docs/FORMAT.md ("Record frames"), "Namespace op payload"):
 *
 *   kind (1 byte, enum ns_kind), then the kind's fields in this order:
 *
 *   NS_CREATE, NS_MKDIR  parent, name, ino, mode, uid, gid, atime, mtime, ctime
 *   NS_SYMLINK           parent, name, ino, uid, gid, atime, mtime, ctime, target
 *   NS_LINK              ino, parent2, name2, ctime
 *   NS_UNLINK, NS_RMDIR  parent, name, ctime
 *   NS_RENAME            parent, name, parent2, name2, flags, ctime
 *   NS_SETATTR           ino, flags, [mode], [uid], [gid], [atime], [mtime], ctime
 *                        (a bracketed field is present iff its NS_SET_* bit
 *                        is set in flags)
 *   NS_MKNOD             parent, name, ino, mode, rdev, uid, gid, atime, mtime, ctime
 *   NS_SETXATTR          ino, flags, xname, value, ctime
 *   NS_REMOVEXATTR       ino, xname, ctime
 *
 *   inode numbers, mode, uid, gid, flags: unsigned LEB128 varints (minimal,
 *     as in record frames); inode numbers are >= 1; 32-bit fields <= 2^32-1.
 *   times (ns since the epoch, signed): zigzag ((t << 1) ^ (t >> 63)), then
 *     an unsigned LEB128 varint.
 *   name, name2, target: varint length, then that many bytes.
 *
 * The payload must end exactly after the last field. Validation (encoder and
 * decoder alike): names are 1..NS_NAME_MAX bytes without '/' or NUL and are
 * not "." or ".."; a symlink target is 1..NS_SYMLINK_MAX bytes without NUL;
 * CREATE's mode type bits are S_IFREG or 0, MKDIR's S_IFDIR or 0; MKNOD's
 * S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK, and its rdev is 0 unless the type is
 * a device (rdev is a 32-bit varint); rename flags are 0,
 * NS_RENAME_NOREPLACE or NS_RENAME_EXCHANGE; a setattr mask has only NS_SET_*
 * bits. A symlink carries no mode: decoding sets S_IFLNK|0777. An attribute
 * name (xname, in op->name) is 1..NS_XATTR_NAME_MAX bytes without NUL ('/'
 * is allowed); a value (op->name2) is 0..NS_XATTR_VALUE_MAX arbitrary bytes;
 * setxattr flags are 0, NS_XATTR_CREATE or NS_XATTR_REPLACE.
 */
#include <string.h>
#include <sys/stat.h>

#include "nsop.h"
#include "record.h"

#define NS_SET_ALL (NS_SET_MODE | NS_SET_UID | NS_SET_GID | NS_SET_ATIME | NS_SET_MTIME)

static bool name_ok(const char *p, uint32_t len)
{
	if (len < 1 || len > NS_NAME_MAX || !p)
		return false;
	if (memchr(p, '/', len) || memchr(p, '\0', len))
		return false;
	if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
		return false;
	return true;
}

static bool target_ok(const char *p, uint32_t len)
{
	return p && len >= 1 && len <= NS_SYMLINK_MAX && !memchr(p, '\0', len);
}

static bool xname_ok(const char *p, uint32_t len)
{
	return p && len >= 1 && len <= NS_XATTR_NAME_MAX && !memchr(p, '\0', len);
}

static bool special_ok(uint32_t mode, uint32_t rdev)
{
	switch (mode & S_IFMT) {
	case S_IFCHR:
	case S_IFBLK:
		return true;
	case S_IFIFO:
	case S_IFSOCK:
		return rdev == 0;
	default:
		return false;
	}
}

/* The rules both directions share. */
static bool op_valid(const struct ns_op *op)
{
	switch (op->kind) {
	case NS_CREATE:
	case NS_MKDIR: {
		uint32_t want = op->kind == NS_CREATE ? S_IFREG : S_IFDIR;
		return op->parent && op->ino && name_ok(op->name, op->name_len) &&
		       ((op->mode & S_IFMT) == 0 || (op->mode & S_IFMT) == want);
	}
	case NS_SYMLINK:
		return op->parent && op->ino && name_ok(op->name, op->name_len) &&
		       target_ok(op->name2, op->name2_len);
	case NS_LINK:
		return op->ino && op->parent2 && name_ok(op->name2, op->name2_len);
	case NS_UNLINK:
	case NS_RMDIR:
		return op->parent && name_ok(op->name, op->name_len);
	case NS_RENAME:
		return op->parent && op->parent2 && name_ok(op->name, op->name_len) &&
		       name_ok(op->name2, op->name2_len) &&
		       (op->flags == 0 || op->flags == NS_RENAME_NOREPLACE || op->flags == NS_RENAME_EXCHANGE);
	case NS_SETATTR:
		return op->ino && !(op->flags & ~(uint32_t)NS_SET_ALL);
	case NS_MKNOD:
		return op->parent && op->ino && name_ok(op->name, op->name_len) && special_ok(op->mode, op->rdev);
	case NS_SETXATTR:
		return op->ino && xname_ok(op->name, op->name_len) && op->name2_len <= NS_XATTR_VALUE_MAX &&
		       (op->name2 || op->name2_len == 0) &&
		       (op->flags == 0 || op->flags == NS_XATTR_CREATE || op->flags == NS_XATTR_REPLACE);
	case NS_REMOVEXATTR:
		return op->ino && xname_ok(op->name, op->name_len);
	default:
		return false;
	}
}

/* Encoder cursor: an overflow is remembered and reported once at the end. */
struct wr {
	uint8_t *p;
	size_t cap, n;
	bool full;
};

static void put_u(struct wr *w, uint64_t v)
{
	int r = w->full ? -ENOSPC : rec_varint_put(w->p + w->n, w->cap - w->n, v);
	if (r < 0)
		w->full = true;
	else
		w->n += (size_t)r;
}

static void put_t(struct wr *w, int64_t t) { put_u(w, ((uint64_t)t << 1) ^ (uint64_t)(t >> 63)); }

static void put_s(struct wr *w, const char *s, uint32_t len)
{
	put_u(w, len);
	if (w->full || w->cap - w->n < len) {
		w->full = true;
		return;
	}
	if (len)
		memcpy(w->p + w->n, s, len);
	w->n += len;
}

int nsop_encode(const struct ns_op *op, uint8_t *buf, size_t cap)
{
	uint8_t tmp[NSOP_MAX_LEN];
	struct wr w = {.p = tmp, .cap = sizeof(tmp)};
	int r;

	if (!op_valid(op)) {
		r = -EINVAL;
		goto out;
	}
	tmp[w.n++] = op->kind;
	switch (op->kind) {
	case NS_CREATE:
	case NS_MKDIR:
	case NS_SYMLINK:
	case NS_MKNOD:
		put_u(&w, op->parent);
		put_s(&w, op->name, op->name_len);
		put_u(&w, op->ino);
		if (op->kind != NS_SYMLINK)
			put_u(&w, op->mode);
		if (op->kind == NS_MKNOD)
			put_u(&w, op->rdev);
		put_u(&w, op->uid);
		put_u(&w, op->gid);
		put_t(&w, op->atime_ns);
		put_t(&w, op->mtime_ns);
		put_t(&w, op->ctime_ns);
		if (op->kind == NS_SYMLINK)
			put_s(&w, op->name2, op->name2_len);
		break;
	case NS_LINK:
		put_u(&w, op->ino);
		put_u(&w, op->parent2);
		put_s(&w, op->name2, op->name2_len);
		put_t(&w, op->ctime_ns);
		break;
	case NS_UNLINK:
	case NS_RMDIR:
		put_u(&w, op->parent);
		put_s(&w, op->name, op->name_len);
		put_t(&w, op->ctime_ns);
		break;
	case NS_RENAME:
		put_u(&w, op->parent);
		put_s(&w, op->name, op->name_len);
		put_u(&w, op->parent2);
		put_s(&w, op->name2, op->name2_len);
		put_u(&w, op->flags);
		put_t(&w, op->ctime_ns);
		break;
	case NS_SETATTR:
		put_u(&w, op->ino);
		put_u(&w, op->flags);
		if (op->flags & NS_SET_MODE)
			put_u(&w, op->mode);
		if (op->flags & NS_SET_UID)
			put_u(&w, op->uid);
		if (op->flags & NS_SET_GID)
			put_u(&w, op->gid);
		if (op->flags & NS_SET_ATIME)
			put_t(&w, op->atime_ns);
		if (op->flags & NS_SET_MTIME)
			put_t(&w, op->mtime_ns);
		put_t(&w, op->ctime_ns);
		break;
	case NS_SETXATTR:
		put_u(&w, op->ino);
		put_u(&w, op->flags);
		put_s(&w, op->name, op->name_len);
		put_s(&w, op->name2, op->name2_len);
		put_t(&w, op->ctime_ns);
		break;
	case NS_REMOVEXATTR:
		put_u(&w, op->ino);
		put_s(&w, op->name, op->name_len);
		put_t(&w, op->ctime_ns);
		break;
	}
	if (NEVER(w.full) || w.n > cap) {
		r = -ENOSPC;
		goto out;
	}
	memcpy(buf, tmp, w.n);
	r = (int)w.n;
out:
	return r;
}

/* Decoder cursor: any malformation is remembered; fields read after it are
 * zero, and the op is rejected at the end. */
struct rd {
	const uint8_t *p;
	size_t len, n;
	bool bad;
};

static uint64_t get_u(struct rd *d)
{
	uint64_t v = 0;
	int r = d->bad ? -EBADMSG : rec_varint_get(d->p + d->n, d->len - d->n, &v);
	if (r < 0) {
		d->bad = true;
		return 0;
	}
	d->n += (size_t)r;
	return v;
}

static uint32_t get_u32(struct rd *d)
{
	uint64_t v = get_u(d);
	if (v > UINT32_MAX) {
		d->bad = true;
		return 0;
	}
	return (uint32_t)v;
}

static int64_t get_t(struct rd *d)
{
	uint64_t z = get_u(d);
	return (int64_t)((z >> 1) ^ (~(z & 1) + 1));
}

static const char *get_s_max(struct rd *d, uint32_t *ret_len, uint64_t max)
{
	uint64_t len = get_u(d);
	const char *s;
	if (d->bad || len > max || d->len - d->n < len) {
		d->bad = true;
		*ret_len = 0;
		return NULL;
	}
	s = (const char *)(d->p + d->n);
	d->n += (size_t)len;
	*ret_len = (uint32_t)len;
	return s;
}

static const char *get_s(struct rd *d, uint32_t *ret_len) { return get_s_max(d, ret_len, NS_SYMLINK_MAX); }

int nsop_decode(const uint8_t *buf, size_t len, struct ns_op *ret_op)
{
	struct ns_op op = {0};
	struct rd d = {.p = buf, .len = len};
	int r;

	if (len < 1) {
		r = -EBADMSG;
		goto out;
	}
	op.kind = buf[d.n++];
	switch (op.kind) {
	case NS_CREATE:
	case NS_MKDIR:
	case NS_SYMLINK:
	case NS_MKNOD:
		op.parent = get_u(&d);
		op.name = get_s(&d, &op.name_len);
		op.ino = get_u(&d);
		op.mode = op.kind == NS_SYMLINK ? (S_IFLNK | 0777) : get_u32(&d);
		if (op.kind == NS_MKNOD)
			op.rdev = get_u32(&d);
		op.uid = get_u32(&d);
		op.gid = get_u32(&d);
		op.atime_ns = get_t(&d);
		op.mtime_ns = get_t(&d);
		op.ctime_ns = get_t(&d);
		if (op.kind == NS_SYMLINK)
			op.name2 = get_s(&d, &op.name2_len);
		break;
	case NS_LINK:
		op.ino = get_u(&d);
		op.parent2 = get_u(&d);
		op.name2 = get_s(&d, &op.name2_len);
		op.ctime_ns = get_t(&d);
		break;
	case NS_UNLINK:
	case NS_RMDIR:
		op.parent = get_u(&d);
		op.name = get_s(&d, &op.name_len);
		op.ctime_ns = get_t(&d);
		break;
	case NS_RENAME:
		op.parent = get_u(&d);
		op.name = get_s(&d, &op.name_len);
		op.parent2 = get_u(&d);
		op.name2 = get_s(&d, &op.name2_len);
		op.flags = get_u32(&d);
		op.ctime_ns = get_t(&d);
		break;
	case NS_SETATTR:
		op.ino = get_u(&d);
		op.flags = get_u32(&d);
		if (op.flags & NS_SET_MODE)
			op.mode = get_u32(&d);
		if (op.flags & NS_SET_UID)
			op.uid = get_u32(&d);
		if (op.flags & NS_SET_GID)
			op.gid = get_u32(&d);
		if (op.flags & NS_SET_ATIME)
			op.atime_ns = get_t(&d);
		if (op.flags & NS_SET_MTIME)
			op.mtime_ns = get_t(&d);
		op.ctime_ns = get_t(&d);
		break;
	case NS_SETXATTR:
		op.ino = get_u(&d);
		op.flags = get_u32(&d);
		op.name = get_s_max(&d, &op.name_len, NS_XATTR_NAME_MAX);
		op.name2 = get_s_max(&d, &op.name2_len, NS_XATTR_VALUE_MAX);
		op.ctime_ns = get_t(&d);
		break;
	case NS_REMOVEXATTR:
		op.ino = get_u(&d);
		op.name = get_s_max(&d, &op.name_len, NS_XATTR_NAME_MAX);
		op.ctime_ns = get_t(&d);
		break;
	default:
		d.bad = true;
		break;
	}
	if (d.bad || d.n != len || !op_valid(&op)) {
		r = -EBADMSG;
		goto out;
	}
	*ret_op = op;
	r = 0;
out:
	return r;
}
