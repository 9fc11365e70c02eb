/* nsop.h — namespace operations and their payload codec (pure, no I/O).
 * A namespace change travels through the pipeline as a REC_NS record whose
 * raw payload is nsop_encode()'s output, in the same global order as data.
 */
#ifndef BZ_NSOP_H
#define BZ_NSOP_H

#include "base.h"

#define NS_NAME_MAX 255
#define NS_SYMLINK_MAX 4095
#define NS_ROOT_INO 1ull
#define NS_XATTR_NAME_MAX 255     /* XATTR_NAME_MAX */
#define NS_XATTR_VALUE_MAX 65536  /* XATTR_SIZE_MAX */
#define NS_XATTR_TOTAL_MAX 65536  /* per inode: sum of (name_len + 1 + value_len) */

enum ns_kind {
	NS_CREATE = 1, /* regular file: parent, name, ino, mode, uid, gid, times */
	NS_MKDIR,      /* parent, name, ino, mode, uid, gid, times */
	NS_SYMLINK,    /* parent, name, ino, uid, gid, times, target (name2) */
	NS_LINK,       /* ino, new parent, new name, ctime */
	NS_UNLINK,     /* parent, name, ctime */
	NS_RMDIR,      /* parent, name, ctime */
	NS_RENAME,     /* parent, name -> parent2, name2, flags, ctime */
	NS_SETATTR,    /* ino, flags = NS_SET_* mask, mode/uid/gid/atime/mtime, ctime */
	NS_MKNOD,      /* FIFO, socket or device node: parent, name, ino, mode, rdev, uid, gid, times */
	NS_SETXATTR,   /* ino, flags = NS_XATTR_*, name = attribute name, name2 = value, ctime */
	NS_REMOVEXATTR, /* ino, name = attribute name, ctime */
};
#define NS_KIND_MAX NS_REMOVEXATTR

enum { NS_RENAME_NOREPLACE = 1, NS_RENAME_EXCHANGE = 2 };
enum { NS_XATTR_CREATE = 1, NS_XATTR_REPLACE = 2 }; /* as XATTR_CREATE / XATTR_REPLACE */
enum { NS_SET_MODE = 1, NS_SET_UID = 2, NS_SET_GID = 4, NS_SET_ATIME = 8, NS_SET_MTIME = 16 };

struct ns_op {
	uint8_t kind;      /* enum ns_kind */
	uint64_t ino;      /* the inode created / linked / changed (0 when unused) */
	uint64_t parent;   /* directory of name */
	uint64_t parent2;  /* rename: target directory; link: new parent */
	const char *name;  /* not NUL-terminated after decode: use name_len */
	uint32_t name_len;
	const char *name2; /* rename: new name; link: new name; symlink: target; setxattr: value */
	uint32_t name2_len;
	uint32_t mode, uid, gid; /* mode includes the S_IF* type bits */
	uint32_t rdev;           /* mknod of a device: the kernel's dev_t (new_encode_dev); else 0 */
	uint32_t flags;          /* rename flags, setattr mask or NS_XATTR_* */
	int64_t atime_ns, mtime_ns, ctime_ns;
};

/* Encodes op into buf[0..cap). Returns the length or -EINVAL / -ENOSPC. */
int nsop_encode(const struct ns_op *op, uint8_t *buf, size_t cap);
/* Largest encoding of any op. */
#define NSOP_MAX_LEN (64 + NS_XATTR_NAME_MAX + NS_XATTR_VALUE_MAX + 16)
/* Decodes; name pointers point into buf. Returns 0 or -EBADMSG. */
int nsop_decode(const uint8_t *buf, size_t len, struct ns_op *ret_op);

#endif
