/* test_nsop.c — the namespace-op codec: every kind round-trips (with extreme
 * field values), invalid ops are refused by the encoder, and every
 * truncation and single-bit flip of each encoding either fails to decode or
 * decodes to an op that is valid (re-encodes to the same bytes). */
#include <string.h>
#include <sys/stat.h>

#include "storage/nsop.h"
#include "t.h"

static char long_name[NS_NAME_MAX + 2];
static char long_target[NS_SYMLINK_MAX + 2];
static char long_xname[NS_XATTR_NAME_MAX + 2];
static char big_value[NS_XATTR_VALUE_MAX + 2];

static bool same_str(const char *a, uint32_t al, const char *b, uint32_t bl)
{
	return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

/* Compares the fields the kind carries. */
static bool op_eq(const struct ns_op *a, const struct ns_op *b)
{
	if (a->kind != b->kind)
		return false;
	switch (a->kind) {
	case NS_CREATE:
	case NS_MKDIR:
	case NS_SYMLINK:
		if (a->kind != NS_SYMLINK && a->mode != b->mode)
			return false;
		if (a->kind == NS_SYMLINK && !same_str(a->name2, a->name2_len, b->name2, b->name2_len))
			return false;
		return a->parent == b->parent && same_str(a->name, a->name_len, b->name, b->name_len) &&
		       a->ino == b->ino && a->uid == b->uid && a->gid == b->gid && a->atime_ns == b->atime_ns &&
		       a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
	case NS_LINK:
		return a->ino == b->ino && a->parent2 == b->parent2 &&
		       same_str(a->name2, a->name2_len, b->name2, b->name2_len) && a->ctime_ns == b->ctime_ns;
	case NS_UNLINK:
	case NS_RMDIR:
		return a->parent == b->parent && same_str(a->name, a->name_len, b->name, b->name_len) &&
		       a->ctime_ns == b->ctime_ns;
	case NS_RENAME:
		return a->parent == b->parent && same_str(a->name, a->name_len, b->name, b->name_len) &&
		       a->parent2 == b->parent2 && same_str(a->name2, a->name2_len, b->name2, b->name2_len) &&
		       a->flags == b->flags && a->ctime_ns == b->ctime_ns;
	case NS_MKNOD:
		return a->parent == b->parent && same_str(a->name, a->name_len, b->name, b->name_len) &&
		       a->ino == b->ino && a->mode == b->mode && a->rdev == b->rdev && a->uid == b->uid &&
		       a->gid == b->gid && a->atime_ns == b->atime_ns && a->mtime_ns == b->mtime_ns &&
		       a->ctime_ns == b->ctime_ns;
	case NS_SETXATTR:
		if (!same_str(a->name2, a->name2_len, b->name2, b->name2_len) || a->flags != b->flags)
			return false;
		/* fall through */
	case NS_REMOVEXATTR:
		return a->ino == b->ino && same_str(a->name, a->name_len, b->name, b->name_len) &&
		       a->ctime_ns == b->ctime_ns;
	case NS_SETATTR:
		return a->ino == b->ino && a->flags == b->flags &&
		       (!(a->flags & NS_SET_MODE) || a->mode == b->mode) &&
		       (!(a->flags & NS_SET_UID) || a->uid == b->uid) &&
		       (!(a->flags & NS_SET_GID) || a->gid == b->gid) &&
		       (!(a->flags & NS_SET_ATIME) || a->atime_ns == b->atime_ns) &&
		       (!(a->flags & NS_SET_MTIME) || a->mtime_ns == b->mtime_ns) && a->ctime_ns == b->ctime_ns;
	}
	return false;
}

static struct ns_op ops[64];
static size_t n_ops;

static void add(struct ns_op op) { ops[n_ops++] = op; }

static void build_ops(void)
{
	memset(long_name, 'n', sizeof(long_name));
	memset(long_target, 't', sizeof(long_target));
	memset(long_xname, 'x', sizeof(long_xname));
	memset(big_value, 0xA5, sizeof(big_value));
	long_target[5] = '/';
	const int64_t T1 = 1700000000123456789ll;
	add((struct ns_op){.kind = NS_CREATE, .parent = 1, .name = "a", .name_len = 1, .ino = 2, .mode = S_IFREG | 0644,
			   .uid = 1000, .gid = 1000, .atime_ns = T1, .mtime_ns = T1, .ctime_ns = T1});
	add((struct ns_op){.kind = NS_CREATE, .parent = UINT64_MAX, .name = long_name, .name_len = NS_NAME_MAX,
			   .ino = UINT64_MAX, .mode = 0600, .uid = UINT32_MAX, .gid = UINT32_MAX,
			   .atime_ns = INT64_MIN, .mtime_ns = INT64_MAX, .ctime_ns = -1});
	add((struct ns_op){.kind = NS_MKDIR, .parent = 1, .name = "dir", .name_len = 3, .ino = 3, .mode = S_IFDIR | 0755,
			   .atime_ns = 0, .mtime_ns = 1, .ctime_ns = -2});
	add((struct ns_op){.kind = NS_MKDIR, .parent = 9, .name = "...", .name_len = 3, .ino = 300, .mode = 01777});
	add((struct ns_op){.kind = NS_SYMLINK, .parent = 1, .name = "l", .name_len = 1, .ino = 4, .uid = 5, .gid = 6,
			   .name2 = "../x/y", .name2_len = 6, .ctime_ns = 7});
	add((struct ns_op){.kind = NS_SYMLINK, .parent = 1, .name = ".a", .name_len = 2, .ino = 4,
			   .name2 = long_target, .name2_len = NS_SYMLINK_MAX, .ctime_ns = T1});
	add((struct ns_op){.kind = NS_LINK, .ino = 2, .parent2 = 3, .name2 = "b", .name2_len = 1, .ctime_ns = T1});
	add((struct ns_op){.kind = NS_UNLINK, .parent = 3, .name = "b", .name_len = 1, .ctime_ns = T1});
	add((struct ns_op){.kind = NS_RMDIR, .parent = 1, .name = "dir", .name_len = 3, .ctime_ns = 0});
	for (uint32_t f = 0; f <= 2; f++)
		add((struct ns_op){.kind = NS_RENAME, .parent = 1, .name = "a", .name_len = 1, .parent2 = 3,
				   .name2 = "..b", .name2_len = 3, .flags = f, .ctime_ns = T1});
	for (uint32_t m = 0; m < 32; m += 3)
		add((struct ns_op){.kind = NS_SETATTR, .ino = 2, .flags = m, .mode = 0640, .uid = 7, .gid = 8,
				   .atime_ns = -5, .mtime_ns = T1, .ctime_ns = T1});
	add((struct ns_op){.kind = NS_SETATTR, .ino = 2, .flags = 31, .mode = UINT32_MAX, .uid = UINT32_MAX,
			   .gid = UINT32_MAX, .atime_ns = INT64_MIN, .mtime_ns = INT64_MAX, .ctime_ns = INT64_MIN});
	add((struct ns_op){.kind = NS_MKNOD, .parent = 1, .name = "fifo", .name_len = 4, .ino = 5, .mode = S_IFIFO | 0644,
			   .uid = 1, .gid = 2, .atime_ns = T1, .mtime_ns = T1, .ctime_ns = T1});
	add((struct ns_op){.kind = NS_MKNOD, .parent = 1, .name = "s", .name_len = 1, .ino = 6, .mode = S_IFSOCK | 0755});
	add((struct ns_op){.kind = NS_MKNOD, .parent = 1, .name = "null", .name_len = 4, .ino = 7,
			   .mode = S_IFCHR | 0666, .rdev = (1u << 8) | 3u, .ctime_ns = -1});
	add((struct ns_op){.kind = NS_MKNOD, .parent = UINT64_MAX, .name = long_name, .name_len = NS_NAME_MAX,
			   .ino = UINT64_MAX, .mode = S_IFBLK | 07777, .rdev = UINT32_MAX, .uid = UINT32_MAX,
			   .gid = UINT32_MAX, .atime_ns = INT64_MIN, .mtime_ns = INT64_MAX, .ctime_ns = INT64_MIN});
	for (uint32_t f = 0; f <= 2; f++)
		add((struct ns_op){.kind = NS_SETXATTR, .ino = 2, .flags = f, .name = "user.a/b", .name_len = 8,
				   .name2 = "v\0x", .name2_len = 3, .ctime_ns = T1});
	add((struct ns_op){.kind = NS_SETXATTR, .ino = 2, .name = "user.empty", .name_len = 10, .ctime_ns = 5});
	add((struct ns_op){.kind = NS_SETXATTR, .ino = UINT64_MAX, .name = long_xname, .name_len = NS_XATTR_NAME_MAX,
			   .name2 = big_value, .name2_len = NS_XATTR_VALUE_MAX, .ctime_ns = INT64_MAX});
	add((struct ns_op){.kind = NS_REMOVEXATTR, .ino = 2, .name = "user.x", .name_len = 6, .ctime_ns = T1});
	add((struct ns_op){.kind = NS_REMOVEXATTR, .ino = 3, .name = long_xname, .name_len = NS_XATTR_NAME_MAX});
}

static void test_roundtrip(void)
{
	for (size_t i = 0; i < n_ops; i++) {
		uint8_t b[NSOP_MAX_LEN], b2[NSOP_MAX_LEN];
		struct ns_op d;
		int n = nsop_encode(&ops[i], b, sizeof(b));
		T_CHECK(n > 0);
		if (n <= 0)
			continue;
		T_CHECK_EQ(nsop_decode(b, (size_t)n, &d), 0);
		T_CHECK(op_eq(&ops[i], &d));
		if (d.kind == NS_SYMLINK)
			T_CHECK_EQ(d.mode, S_IFLNK | 0777);
		T_CHECK_EQ(nsop_encode(&d, b2, sizeof(b2)), n);
		T_CHECK(memcmp(b, b2, (size_t)n) == 0);
		/* exact capacity works, one less does not and leaves buf alone */
		memset(b2, 0xEE, sizeof(b2));
		T_CHECK_EQ(nsop_encode(&ops[i], b2, (size_t)n - 1), -ENOSPC);
		T_CHECK_EQ(b2[0], 0xEE);
		T_CHECK_EQ(nsop_encode(&ops[i], b2, (size_t)n), n);
		/* trailing garbage */
		b[n] = 0;
		struct ns_op keep = {.kind = 77};
		T_CHECK_EQ(nsop_decode(b, (size_t)n + 1, &keep), -EBADMSG);
		T_CHECK_EQ(keep.kind, 77);
	}
}

static void test_invalid(void)
{
	uint8_t b[NSOP_MAX_LEN];
	const struct ns_op base = {.kind = NS_CREATE, .parent = 1, .name = "a", .name_len = 1, .ino = 2,
				   .mode = S_IFREG | 0644};
	struct ns_op o;
	T_CHECK(nsop_encode(&base, b, sizeof(b)) > 0);
#define BAD(mod)                                               \
	do {                                                   \
		o = base;                                      \
		mod;                                           \
		T_CHECK_EQ(nsop_encode(&o, b, sizeof(b)), -EINVAL); \
	} while (0)
	BAD(o.kind = 0);
	BAD(o.kind = NS_KIND_MAX + 1);
	BAD((o.kind = NS_MKNOD, o.mode = S_IFREG | 0644));
	BAD((o.kind = NS_MKNOD, o.mode = S_IFDIR | 0755));
	BAD((o.kind = NS_MKNOD, o.mode = 0644));
	BAD((o.kind = NS_MKNOD, o.mode = S_IFIFO | 0644, o.rdev = 1));
	BAD((o.kind = NS_MKNOD, o.mode = S_IFSOCK | 0644, o.rdev = 1));
	BAD((o.kind = NS_MKNOD, o.mode = S_IFCHR, o.name = "."));
	BAD((o.kind = NS_SETXATTR, o.name_len = 0));
	BAD((o.kind = NS_SETXATTR, o.name = "a\0b", o.name_len = 3));
	BAD((o.kind = NS_SETXATTR, o.name = long_xname, o.name_len = NS_XATTR_NAME_MAX + 1));
	BAD((o.kind = NS_SETXATTR, o.name2 = big_value, o.name2_len = NS_XATTR_VALUE_MAX + 1));
	BAD((o.kind = NS_SETXATTR, o.name2 = NULL, o.name2_len = 1));
	BAD((o.kind = NS_SETXATTR, o.flags = 3));
	BAD((o.kind = NS_SETXATTR, o.ino = 0));
	BAD((o.kind = NS_REMOVEXATTR, o.name = NULL));
	BAD((o.kind = NS_REMOVEXATTR, o.ino = 0));
	BAD(o.name_len = 0);
	BAD((o.name = long_name, o.name_len = NS_NAME_MAX + 1));
	BAD(o.name = ".");
	BAD((o.name = "..", o.name_len = 2));
	BAD((o.name = "a/b", o.name_len = 3));
	BAD((o.name = "a\0b", o.name_len = 3));
	BAD(o.name = NULL);
	BAD(o.parent = 0);
	BAD(o.ino = 0);
	BAD(o.mode = S_IFDIR | 0755);
	BAD((o.kind = NS_MKDIR, o.mode = S_IFREG | 0644));
	BAD((o.kind = NS_SYMLINK, o.name2 = NULL, o.name2_len = 0));
	BAD((o.kind = NS_SYMLINK, o.name2 = "x", o.name2_len = 0));
	BAD((o.kind = NS_SYMLINK, o.name2 = long_target, o.name2_len = NS_SYMLINK_MAX + 1));
	BAD((o.kind = NS_SYMLINK, o.name2 = "a\0", o.name2_len = 2));
	BAD((o.kind = NS_LINK, o.parent2 = 3, o.name2 = ".", o.name2_len = 1));
	BAD((o.kind = NS_LINK, o.parent2 = 0, o.name2 = "x", o.name2_len = 1));
	BAD((o.kind = NS_RENAME, o.parent2 = 1, o.name2 = "x", o.name2_len = 1, o.flags = 3));
	BAD((o.kind = NS_RENAME, o.parent2 = 1, o.name2 = "x", o.name2_len = 1, o.flags = 4));
	BAD((o.kind = NS_SETATTR, o.flags = 32));
	BAD((o.kind = NS_SETATTR, o.ino = 0));
#undef BAD
	struct ns_op d;
	T_CHECK_EQ(nsop_decode(b, 0, &d), -EBADMSG);
	const uint8_t k0[] = {0}, k9[] = {NS_KIND_MAX + 1, 1, 1, 'a', 0};
	T_CHECK_EQ(nsop_decode(k0, 1, &d), -EBADMSG);
	T_CHECK_EQ(nsop_decode(k9, sizeof(k9), &d), -EBADMSG);
	/* documented layout: unlink(parent 1, "ab", ctime -1) = 05 01 02 'a' 'b' 01 */
	const uint8_t ul[] = {NS_UNLINK, 0x01, 0x02, 'a', 'b', 0x01};
	T_CHECK_EQ(nsop_decode(ul, sizeof(ul), &d), 0);
	T_CHECK(d.kind == NS_UNLINK && d.parent == 1 && d.name_len == 2 && d.ctime_ns == -1);
	/* a uid above 32 bits */
	const uint8_t bigu[] = {NS_SETATTR, 0x02, NS_SET_UID, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00};
	T_CHECK_EQ(nsop_decode(bigu, sizeof(bigu), &d), -EBADMSG);
	const uint8_t oku[] = {NS_SETATTR, 0x02, NS_SET_UID, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00};
	T_CHECK_EQ(nsop_decode(oku, sizeof(oku), &d), 0);
	T_CHECK(d.uid == UINT32_MAX && d.flags == NS_SET_UID);
}

/* A decoded op is valid iff it re-encodes to exactly the same bytes. */
static int check_mutant(const uint8_t *b, size_t n)
{
	struct ns_op d;
	uint8_t re[NSOP_MAX_LEN];
	if (nsop_decode(b, n, &d) != 0)
		return 0;
	for (uint32_t i = 0; i < d.name_len; i++)
		if ((d.name[i] == '/' && d.kind != NS_SETXATTR && d.kind != NS_REMOVEXATTR) || d.name[i] == 0)
			return 1;
	int m = nsop_encode(&d, re, sizeof(re));
	if (m < 0 || (size_t)m != n || memcmp(re, b, n) != 0)
		return 1;
	return 0;
}

static void test_mutations(void)
{
	for (size_t i = 0; i < n_ops; i++) {
		uint8_t b[NSOP_MAX_LEN];
		int n = nsop_encode(&ops[i], b, sizeof(b));
		T_ASSERT(n > 0);
		int bad = 0;
		/* every truncation (of a 64 KiB value: the first and last 300) */
		for (int t = 0; t < n; t++) {
			struct ns_op d;
			if (t == 300 && n > 600)
				t = n - 300;
			if (nsop_decode(b, (size_t)t, &d) == 0)
				bad += check_mutant(b, (size_t)t);
		}
		/* bit flips: all bits of ops up to 300 bytes, the first 300 bytes otherwise */
		int lim = BZ_MIN(n, 300);
		for (int bit = 0; bit < lim * 8; bit++) {
			b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			bad += check_mutant(b, (size_t)n);
			b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
		T_CHECK_EQ(bad, 0);
	}
}

int main(void)
{
	build_ops();
	test_roundtrip();
	test_invalid();
	test_mutations();
	T_DONE();
}
