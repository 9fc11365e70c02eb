/* test_ns.c — the in-memory namespace: every rename(2) case, unlink/rmdir
 * errors, link counts and times, pinning, clone independence, walk/load
 * round trip, readdir cookie stability, a 100k-file sanity run, a
 * randomized test of ns_apply against a simple reference model, and the
 * same model over a backed namespace whose backing lags behind it. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "storage/ns.h"
#include "t.h"

static int64_t now = 1000;

static struct ns_op op_new(uint8_t kind, uint64_t parent, const char *name, uint64_t ino)
{
	struct ns_op o = {.kind = kind, .parent = parent, .name = name, .name_len = (uint32_t)strlen(name), .ino = ino,
			  .uid = 7, .gid = 8, .atime_ns = now, .mtime_ns = now, .ctime_ns = now};
	o.mode = kind == NS_MKDIR ? S_IFDIR | 0755 : S_IFREG | 0644;
	if (kind == NS_SYMLINK) {
		o.name2 = "target/x";
		o.name2_len = 8;
	}
	now++;
	return o;
}

static uint64_t mk(struct ns *ns, uint8_t kind, uint64_t parent, const char *name)
{
	uint64_t ino = ns_alloc_ino(ns);
	struct ns_op o = op_new(kind, parent, name, ino);
	int r = ns_apply(ns, &o);
	T_CHECK_EQ(r, 0);
	return r ? 0 : ino;
}

static int rn(struct ns *ns, uint64_t p1, const char *n1, uint64_t p2, const char *n2, uint32_t flags)
{
	struct ns_op o = {.kind = NS_RENAME, .parent = p1, .name = n1, .name_len = (uint32_t)strlen(n1), .parent2 = p2,
			  .name2 = n2, .name2_len = (uint32_t)strlen(n2), .flags = flags, .ctime_ns = now++};
	return ns_apply(ns, &o);
}

static int rm(struct ns *ns, uint8_t kind, uint64_t p, const char *n)
{
	struct ns_op o = {.kind = kind, .parent = p, .name = n, .name_len = (uint32_t)strlen(n), .ctime_ns = now++};
	return ns_apply(ns, &o);
}

static int ln(struct ns *ns, uint64_t ino, uint64_t p, const char *n)
{
	struct ns_op o = {.kind = NS_LINK, .ino = ino, .parent2 = p, .name2 = n, .name2_len = (uint32_t)strlen(n),
			  .ctime_ns = now++};
	return ns_apply(ns, &o);
}

static uint64_t look(struct ns *ns, uint64_t p, const char *n)
{
	uint64_t ino = 0;
	if (ns_lookup(ns, p, n, strlen(n), &ino) < 0)
		return 0;
	return ino;
}

static struct ns_attr attr(struct ns *ns, uint64_t ino)
{
	struct ns_attr a;
	memset(&a, 0, sizeof(a));
	if (ns_getattr(ns, ino, &a) < 0)
		a.ino = 0;
	return a;
}

static int xset(struct ns *ns, uint64_t ino, const char *name, const char *val, uint32_t flags)
{
	struct ns_op o = {.kind = NS_SETXATTR, .ino = ino, .name = name, .name_len = (uint32_t)strlen(name),
			  .name2 = val, .name2_len = (uint32_t)strlen(val), .flags = flags, .ctime_ns = now++};
	return ns_apply(ns, &o);
}

static int xrm(struct ns *ns, uint64_t ino, const char *name)
{
	struct ns_op o = {.kind = NS_REMOVEXATTR, .ino = ino, .name = name, .name_len = (uint32_t)strlen(name),
			  .ctime_ns = now++};
	return ns_apply(ns, &o);
}

/* Serializes the whole namespace (walk) into a string, to compare states. */
struct dump {
	char *buf;
	size_t len, cap;
};
static void dput(struct dump *d, const void *p, size_t n)
{
	if (d->len + n > d->cap) {
		d->cap = (d->len + n) * 2 + 64;
		d->buf = realloc(d->buf, d->cap);
		T_ASSERT(d->buf);
	}
	memcpy(d->buf + d->len, p, n);
	d->len += n;
}
static int dump_inode(void *arg, const struct ns_attr *a, const char *sl, size_t sl_len)
{
	dput(arg, a, sizeof(*a));
	dput(arg, &sl_len, sizeof(sl_len));
	if (sl_len)
		dput(arg, sl, sl_len);
	return 0;
}
static int dump_dirent(void *arg, uint64_t dir, const char *name, size_t len, uint64_t ino)
{
	dput(arg, &dir, sizeof(dir));
	dput(arg, name, len);
	dput(arg, "/", 1);
	dput(arg, &ino, sizeof(ino));
	return 0;
}
static int dump_xattr(void *arg, uint64_t ino, const char *name, size_t nlen, const void *val, size_t vlen)
{
	dput(arg, &ino, sizeof(ino));
	dput(arg, &nlen, sizeof(nlen));
	dput(arg, name, nlen);
	dput(arg, &vlen, sizeof(vlen));
	dput(arg, val, vlen);
	return 0;
}
static struct dump dump(struct ns *ns)
{
	struct dump d = {0};
	struct ns_visit v = {.inode = dump_inode, .dirent = dump_dirent, .xattr = dump_xattr};
	T_CHECK_EQ(ns_walk(ns, &v, &d), 0);
	uint64_t x = ns_next_ino(ns);
	dput(&d, &x, sizeof(x));
	return d;
}
static bool dump_eq(struct ns *a, struct ns *b)
{
	struct dump x = dump(a), y = dump(b);
	bool eq = x.len == y.len && memcmp(x.buf, y.buf, x.len) == 0;
	free(x.buf);
	free(y.buf);
	return eq;
}

static void test_basics(void)
{
	struct ns *ns;
	T_ASSERT(ns_new(&ns) == 0);
	struct ns_attr r = attr(ns, NS_ROOT_INO);
	T_CHECK(r.ino == 1 && r.mode == (S_IFDIR | 0755) && r.nlink == 2 && r.size == 0 && r.uid == 0);
	T_CHECK_EQ(ns_next_ino(ns), 2);
	T_CHECK_EQ(ns_count(ns), 1);

	uint64_t f = mk(ns, NS_CREATE, 1, "f");
	T_CHECK_EQ(f, 2);
	struct ns_attr a = attr(ns, f);
	T_CHECK(a.mode == (S_IFREG | 0644) && a.nlink == 1 && a.size == 0 && a.uid == 7 && a.gid == 8);
	T_CHECK(a.atime_ns == a.ctime_ns && a.mtime_ns == a.ctime_ns);
	r = attr(ns, 1);
	T_CHECK(r.mtime_ns == a.ctime_ns && r.ctime_ns == a.ctime_ns && r.size == 1 && r.nlink == 2);

	/* EEXIST, ENOENT, ENOTDIR, names */
	struct ns_op o = op_new(NS_CREATE, 1, "f", 50);
	T_CHECK_EQ(ns_apply(ns, &o), -EEXIST);
	o = op_new(NS_MKDIR, 1, "f", 50);
	T_CHECK_EQ(ns_apply(ns, &o), -EEXIST);
	o = op_new(NS_CREATE, 99, "x", 50);
	T_CHECK_EQ(ns_apply(ns, &o), -ENOENT);
	o = op_new(NS_CREATE, f, "x", 50);
	T_CHECK_EQ(ns_apply(ns, &o), -ENOTDIR);
	char longn[NS_NAME_MAX + 2];
	memset(longn, 'x', sizeof(longn));
	longn[NS_NAME_MAX + 1] = 0;
	o = op_new(NS_CREATE, 1, longn, 50);
	T_CHECK_EQ(ns_apply(ns, &o), -ENAMETOOLONG);
	longn[NS_NAME_MAX] = 0;
	o = op_new(NS_CREATE, 1, longn, 50);
	T_CHECK_EQ(ns_apply(ns, &o), 0);
	T_CHECK_EQ(rm(ns, NS_UNLINK, 1, longn), 0);
	o = op_new(NS_CREATE, 1, "..", 51);
	T_CHECK_EQ(ns_apply(ns, &o), -EINVAL);
	o = op_new(NS_CREATE, 1, "a/b", 51);
	T_CHECK_EQ(ns_apply(ns, &o), -EINVAL);
	o = op_new(NS_CREATE, 1, "new", f); /* inode number in use */
	T_CHECK_EQ(ns_apply(ns, &o), -EINVAL);
	T_CHECK_EQ(look(ns, 1, "new"), 0);
	T_CHECK_EQ(ns_next_ino(ns), 51);

	uint64_t d = mk(ns, NS_MKDIR, 1, "d");
	T_CHECK_EQ(attr(ns, 1).nlink, 3);
	T_CHECK_EQ(attr(ns, d).nlink, 2);
	T_CHECK_EQ(attr(ns, d).mode, S_IFDIR | 0755);
	uint64_t s = mk(ns, NS_SYMLINK, d, "s");
	a = attr(ns, s);
	T_CHECK(a.mode == (S_IFLNK | 0777) && a.size == 8 && a.nlink == 1);
	char buf[16];
	T_CHECK_EQ(ns_readlink(ns, s, buf, sizeof(buf)), 8);
	T_CHECK(memcmp(buf, "target/x", 8) == 0);
	T_CHECK_EQ(ns_readlink(ns, s, buf, 3), 8);
	T_CHECK_EQ(ns_readlink(ns, f, buf, sizeof(buf)), -EINVAL);
	T_CHECK_EQ(ns_readlink(ns, 999, buf, sizeof(buf)), -ENOENT);

	/* unlink / rmdir */
	T_CHECK_EQ(rm(ns, NS_UNLINK, 1, "d"), -EISDIR);
	T_CHECK_EQ(rm(ns, NS_RMDIR, 1, "f"), -ENOTDIR);
	T_CHECK_EQ(rm(ns, NS_RMDIR, 1, "d"), -ENOTEMPTY);
	T_CHECK_EQ(rm(ns, NS_UNLINK, 1, "nope"), -ENOENT);
	T_CHECK_EQ(rm(ns, NS_UNLINK, 99, "x"), -ENOENT);
	T_CHECK_EQ(rm(ns, NS_UNLINK, f, "x"), -ENOTDIR);

	/* link */
	T_CHECK_EQ(ln(ns, d, 1, "dl"), -EPERM);
	T_CHECK_EQ(ln(ns, f, d, "s"), -EEXIST);
	T_CHECK_EQ(ln(ns, 999, d, "z"), -ENOENT);
	T_CHECK_EQ(ln(ns, f, d, "f2"), 0);
	a = attr(ns, f);
	T_CHECK_EQ(a.nlink, 2);
	T_CHECK_EQ(a.ctime_ns, now - 1);
	T_CHECK_EQ(attr(ns, d).mtime_ns, now - 1);
	T_CHECK_EQ(look(ns, d, "f2"), f);
	T_CHECK_EQ(rm(ns, NS_UNLINK, 1, "f"), 0);
	T_CHECK_EQ(attr(ns, f).nlink, 1);
	T_CHECK_EQ(rm(ns, NS_UNLINK, d, "f2"), 0);
	T_CHECK_EQ(attr(ns, f).ino, 0); /* freed */
	T_CHECK_EQ(rm(ns, NS_UNLINK, d, "s"), 0);
	T_CHECK_EQ(rm(ns, NS_RMDIR, 1, "d"), 0);
	T_CHECK_EQ(attr(ns, d).ino, 0);
	T_CHECK_EQ(attr(ns, 1).nlink, 2);
	T_CHECK_EQ(attr(ns, 1).size, 0);
	T_CHECK_EQ(ns_count(ns), 1);

	/* setattr keeps the type bits, sets ctime */
	f = mk(ns, NS_CREATE, 1, "g");
	o = (struct ns_op){.kind = NS_SETATTR, .ino = f, .flags = NS_SET_MODE | NS_SET_MTIME, .mode = S_IFDIR | 04711,
			   .uid = 99, .mtime_ns = 5, .atime_ns = 6, .ctime_ns = 77};
	T_CHECK_EQ(ns_apply(ns, &o), 0);
	a = attr(ns, f);
	T_CHECK(a.mode == (S_IFREG | 04711) && a.mtime_ns == 5 && a.ctime_ns == 77 && a.uid == 7 && a.atime_ns != 6);
	o.flags = NS_SET_UID | NS_SET_GID | NS_SET_ATIME;
	o.gid = 3;
	T_CHECK_EQ(ns_apply(ns, &o), 0);
	a = attr(ns, f);
	T_CHECK(a.uid == 99 && a.gid == 3 && a.atime_ns == 6 && a.mtime_ns == 5);
	o.ino = 999;
	T_CHECK_EQ(ns_apply(ns, &o), -ENOENT);
	/* set_size */
	T_CHECK_EQ(ns_set_size(ns, f, 4096, 1234), 0);
	a = attr(ns, f);
	T_CHECK(a.size == 4096 && a.mtime_ns == 1234 && a.ctime_ns == 1234);
	T_CHECK_EQ(ns_set_size(ns, f, 5000, 0), 0);
	T_CHECK(attr(ns, f).size == 5000 && attr(ns, f).mtime_ns == 1234);
	T_CHECK_EQ(ns_set_size(ns, 1, 1, 0), -EISDIR);
	T_CHECK_EQ(ns_set_size(ns, 999, 1, 0), -ENOENT);

	/* pinning: an unlinked pinned inode survives until unpinned */
	T_CHECK_EQ(ns_pin(ns, f), 0);
	T_CHECK_EQ(ns_pin(ns, f), 0);
	T_CHECK_EQ(rm(ns, NS_UNLINK, 1, "g"), 0);
	a = attr(ns, f);
	T_CHECK(a.ino == f && a.nlink == 0 && a.size == 5000);
	T_CHECK_EQ(look(ns, 1, "g"), 0);
	T_CHECK_EQ(ln(ns, f, 1, "again"), -ENOENT);
	o = (struct ns_op){.kind = NS_SETATTR, .ino = f, .flags = NS_SET_MODE, .mode = 0600, .ctime_ns = 1};
	T_CHECK_EQ(ns_apply(ns, &o), 0);
	T_CHECK_EQ(ns_set_size(ns, f, 6000, 0), 0);
	T_CHECK_EQ(ns_unpin(ns, f), 0);
	T_CHECK_EQ(attr(ns, f).ino, f);
	T_CHECK_EQ(ns_unpin(ns, f), 0);
	T_CHECK_EQ(attr(ns, f).ino, 0);
	T_CHECK_EQ(ns_unpin(ns, f), -ENOENT);
	T_CHECK_EQ(ns_pin(ns, 999), -ENOENT);
	T_CHECK_EQ(ns_unpin(ns, 1), -EINVAL);
	/* a pinned removed directory refuses new entries */
	d = mk(ns, NS_MKDIR, 1, "pd");
	T_CHECK_EQ(ns_pin(ns, d), 0);
	T_CHECK_EQ(rm(ns, NS_RMDIR, 1, "pd"), 0);
	T_CHECK_EQ(attr(ns, d).nlink, 0);
	o = op_new(NS_CREATE, d, "x", 500);
	T_CHECK_EQ(ns_apply(ns, &o), -ENOENT);
	T_CHECK_EQ(ns_unpin(ns, d), 0);
	T_CHECK_EQ(attr(ns, d).ino, 0);
	ns_free(ns);
	ns_free(NULL);
}

static void test_rename(void)
{
	struct ns *ns;
	T_ASSERT(ns_new(&ns) == 0);
	uint64_t a = mk(ns, NS_CREATE, 1, "a"), b = mk(ns, NS_CREATE, 1, "b");
	uint64_t d1 = mk(ns, NS_MKDIR, 1, "d1"), d2 = mk(ns, NS_MKDIR, 1, "d2"), d3 = mk(ns, NS_MKDIR, 1, "d3");
	uint64_t sub = mk(ns, NS_MKDIR, d1, "sub"), subsub = mk(ns, NS_MKDIR, sub, "subsub");
	uint64_t in3 = mk(ns, NS_CREATE, d3, "x");
	struct ns *before;

	/* file over file: b is replaced and freed */
	T_CHECK_EQ(rn(ns, 1, "a", 1, "b", 0), 0);
	T_CHECK_EQ(look(ns, 1, "b"), a);
	T_CHECK_EQ(look(ns, 1, "a"), 0);
	T_CHECK_EQ(attr(ns, b).ino, 0);
	T_CHECK_EQ(attr(ns, a).ctime_ns, now - 1);
	T_CHECK_EQ(attr(ns, 1).mtime_ns, now - 1);

	T_ASSERT(ns_clone(ns, &before) == 0);
	/* errors change nothing */
	T_CHECK_EQ(rn(ns, 1, "d1", 1, "d3", 0), -ENOTEMPTY);
	T_CHECK_EQ(rn(ns, 1, "b", 1, "d2", 0), -EISDIR);
	T_CHECK_EQ(rn(ns, 1, "d2", 1, "b", 0), -ENOTDIR);
	T_CHECK_EQ(rn(ns, 1, "d1", sub, "x", 0), -EINVAL);
	T_CHECK_EQ(rn(ns, 1, "d1", subsub, "x", 0), -EINVAL);
	T_CHECK_EQ(rn(ns, 1, "d1", d1, "x", 0), -EINVAL);
	T_CHECK_EQ(rn(ns, d1, "sub", subsub, "x", 0), -EINVAL);
	T_CHECK_EQ(rn(ns, 1, "nope", 1, "x", 0), -ENOENT);
	T_CHECK_EQ(rn(ns, 99, "b", 1, "x", 0), -ENOENT);
	T_CHECK_EQ(rn(ns, 1, "b", 99, "x", 0), -ENOENT);
	T_CHECK_EQ(rn(ns, 1, "b", a, "x", 0), -ENOTDIR);
	T_CHECK_EQ(rn(ns, 1, "b", 1, "d2", NS_RENAME_NOREPLACE), -EEXIST);
	T_CHECK_EQ(rn(ns, 1, "b", 1, "nope", NS_RENAME_EXCHANGE), -ENOENT);
	T_CHECK_EQ(rn(ns, 1, "nope", 1, "b", NS_RENAME_EXCHANGE), -ENOENT);
	T_CHECK_EQ(rn(ns, 1, "d1", sub, "subsub", NS_RENAME_EXCHANGE), -EINVAL);
	T_CHECK_EQ(rn(ns, sub, "subsub", 1, "d1", NS_RENAME_EXCHANGE), -EINVAL);
	T_CHECK_EQ(rn(ns, 1, "b", 1, "c", 3), -EINVAL);
	T_CHECK_EQ(rn(ns, d1, "sub", 1, "d1", 0), -ENOTEMPTY); /* over an ancestor */
	T_CHECK(dump_eq(ns, before));
	ns_free(before);
	/* same inode: no-op success, even with times */
	T_CHECK_EQ(ln(ns, a, 1, "hard"), 0);
	T_ASSERT(ns_clone(ns, &before) == 0);
	struct ns_attr pa = attr(ns, 1);
	T_CHECK_EQ(rn(ns, 1, "b", 1, "hard", 0), 0);
	T_CHECK_EQ(rn(ns, 1, "b", 1, "b", 0), 0);
	T_CHECK_EQ(attr(ns, 1).mtime_ns, pa.mtime_ns);
	T_CHECK(dump_eq(ns, before));
	T_CHECK_EQ(attr(ns, a).nlink, 2);
	T_CHECK_EQ(look(ns, 1, "b"), a);

	/* dir over empty dir; nlink bookkeeping across directories */
	T_CHECK_EQ(attr(ns, 1).nlink, 5);
	T_CHECK_EQ(rn(ns, d1, "sub", 1, "d2", 0), 0);
	T_CHECK_EQ(attr(ns, d2).ino, 0);
	T_CHECK_EQ(look(ns, 1, "d2"), sub);
	T_CHECK_EQ(attr(ns, d1).nlink, 2);
	T_CHECK_EQ(attr(ns, 1).nlink, 5);
	T_CHECK_EQ(attr(ns, sub).nlink, 3);
	/* the moved directory's parent is updated: its old subtree is now allowed */
	T_CHECK_EQ(rn(ns, 1, "d1", subsub, "d1moved", 0), 0);
	T_CHECK_EQ(attr(ns, subsub).nlink, 3);
	T_CHECK_EQ(attr(ns, 1).nlink, 4);
	T_CHECK_EQ(rn(ns, 1, "d2", d1, "x", 0), -EINVAL);

	/* exchange: a file and a directory in different parents */
	T_CHECK_EQ(rn(ns, 1, "b", d3, "x", NS_RENAME_EXCHANGE), 0);
	T_CHECK_EQ(look(ns, 1, "b"), in3);
	T_CHECK_EQ(look(ns, d3, "x"), a);
	T_CHECK_EQ(rn(ns, 1, "b", subsub, "d1moved", NS_RENAME_EXCHANGE), 0);
	T_CHECK_EQ(look(ns, 1, "b"), d1);
	T_CHECK_EQ(look(ns, subsub, "d1moved"), in3);
	T_CHECK_EQ(attr(ns, 1).nlink, 5);
	T_CHECK_EQ(attr(ns, subsub).nlink, 2);
	T_CHECK_EQ(attr(ns, in3).ctime_ns, now - 1);
	T_CHECK_EQ(attr(ns, d1).ctime_ns, now - 1);
	/* d1 is now under root: moving subsub's tree under d1 is fine */
	T_CHECK_EQ(rn(ns, 1, "d2", d1, "s", 0), 0);
	T_CHECK_EQ(rn(ns, 1, "b", subsub, "z", 0), -EINVAL);
	ns_free(before);
	ns_free(ns);
}

struct rd_ent {
	char name[32];
	uint64_t ino, cookie;
};
struct rd_list {
	struct rd_ent e[4096];
	size_t n, stop_after;
};
static int rd_cb(void *arg, const char *name, size_t len, uint64_t ino, uint32_t mode, uint64_t cookie)
{
	struct rd_list *l = arg;
	(void)mode;
	if (l->n < BZ_ARRAY_SIZE(l->e)) {
		memcpy(l->e[l->n].name, name, BZ_MIN(len, 31));
		l->e[l->n].name[BZ_MIN(len, 31)] = 0;
		l->e[l->n].ino = ino;
		l->e[l->n].cookie = cookie;
	}
	l->n++;
	return l->stop_after && l->n >= l->stop_after;
}

static void test_readdir_cookies(void)
{
	struct ns *ns;
	static struct rd_list l, l2;
	static uint64_t cookie_of[2000];
	char name[32];
	T_ASSERT(ns_new(&ns) == 0);
	uint64_t d = mk(ns, NS_MKDIR, 1, "d");
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		mk(ns, NS_CREATE, d, name);
	}
	l.n = 0;
	T_CHECK_EQ(ns_readdir(ns, d, 0, rd_cb, &l), 0);
	T_CHECK_EQ(l.n, 2000);
	for (size_t i = 0; i < 2000; i++) {
		cookie_of[i] = l.e[i].cookie;
		T_CHECK(l.e[i].cookie >= NS_COOKIE_FIRST);
		if (i)
			T_CHECK(l.e[i].cookie > l.e[i - 1].cookie);
	}
	/* delete 3 of every 4 (forces compaction), insert some more */
	for (int i = 0; i < 2000; i++) {
		if (i % 4 == 0)
			continue;
		snprintf(name, sizeof(name), "f%d", i);
		T_CHECK_EQ(rm(ns, NS_UNLINK, d, name), 0);
	}
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "g%d", i);
		mk(ns, NS_CREATE, d, name);
	}
	T_CHECK_EQ(attr(ns, d).size, 600);
	l.n = 0;
	T_CHECK_EQ(ns_readdir(ns, d, 0, rd_cb, &l), 0);
	T_CHECK_EQ(l.n, 600);
	for (size_t i = 0; i < 500 && i < l.n; i++) {
		snprintf(name, sizeof(name), "f%zu", i * 4);
		T_CHECK(strcmp(l.e[i].name, name) == 0);
		T_CHECK(l.e[i].cookie == cookie_of[i * 4]);
	}
	for (size_t i = 500; i < l.n; i++)
		T_CHECK(l.e[i].cookie > cookie_of[1999] && l.e[i].cookie > l.e[i - 1].cookie);
	/* resuming from any cookie, even of a deleted entry, continues in order */
	for (size_t k = 0; k < 2000; k += 37) {
		l2.n = 0;
		T_CHECK_EQ(ns_readdir(ns, d, cookie_of[k], rd_cb, &l2), 0);
		T_CHECK_EQ(l2.n, 600 - (k / 4 + 1));
		if (l2.n)
			T_CHECK(l2.e[0].cookie > cookie_of[k]);
	}
	/* paged reading with deletes in between sees every survivor once */
	l2.n = 0;
	l2.stop_after = 0;
	uint64_t c = 0;
	size_t seen = 0;
	for (;;) {
		l.n = 0;
		l.stop_after = 7;
		T_CHECK_EQ(ns_readdir(ns, d, c, rd_cb, &l), 0);
		if (!l.n)
			break;
		seen += l.n;
		c = l.e[l.n - 1].cookie;
		/* delete an entry we already passed */
		T_CHECK_EQ(rm(ns, NS_UNLINK, d, l.e[0].name), 0);
	}
	l.stop_after = 0;
	T_CHECK_EQ(seen, 600);
	T_CHECK_EQ(ns_readdir(ns, 1u << 30, 0, rd_cb, &l), -ENOENT);
	uint64_t f = look(ns, d, "g5");
	T_CHECK_EQ(ns_readdir(ns, f, 0, rd_cb, &l), -ENOTDIR);
	ns_free(ns);
}

static int load_inode_cb(void *arg, const struct ns_attr *a, const char *sl, size_t n)
{
	return ns_load_inode(arg, a, sl, n);
}
static int load_dirent_cb(void *arg, uint64_t dir, const char *name, size_t len, uint64_t ino)
{
	return ns_load_dirent(arg, dir, name, len, ino);
}
static int load_xattr_cb(void *arg, uint64_t ino, const char *name, size_t nlen, const void *val, size_t vlen)
{
	return ns_load_xattr(arg, ino, name, nlen, val, vlen);
}
static int stop_cb(void *arg, const struct ns_attr *a, const char *sl, size_t n)
{
	(void)a, (void)sl, (void)n;
	return ++*(int *)arg == 3 ? 42 : 0;
}

static void test_clone_walk_load(void)
{
	struct ns *ns, *cl, *ld;
	T_ASSERT(ns_new(&ns) == 0);
	uint64_t d = mk(ns, NS_MKDIR, 1, "d");
	uint64_t e = mk(ns, NS_MKDIR, d, "e");
	uint64_t f = mk(ns, NS_CREATE, e, "f");
	mk(ns, NS_SYMLINK, 1, "s");
	T_CHECK_EQ(ln(ns, f, 1, "f-link"), 0);
	T_CHECK_EQ(ns_set_size(ns, f, 12345, now++), 0);
	/* special files and attributes travel through clone and walk/load */
	struct ns_op sp = op_new(NS_MKNOD, e, "dev", ns_alloc_ino(ns));
	sp.mode = S_IFCHR | 0600;
	sp.rdev = 0x1234;
	T_CHECK_EQ(ns_apply(ns, &sp), 0);
	T_CHECK_EQ(xset(ns, f, "user.b", "2", 0), 0);
	T_CHECK_EQ(xset(ns, f, "user.a", "1", 0), 0);
	T_CHECK_EQ(xset(ns, d, "user.dir", "", 0), 0);
	/* a directory with a lower inode number under a higher one */
	uint64_t z = mk(ns, NS_MKDIR, 1, "z");
	T_CHECK_EQ(rn(ns, 1, "d", z, "d", 0), 0);

	T_ASSERT(ns_clone(ns, &cl) == 0);
	T_CHECK(dump_eq(ns, cl));
	/* independence both ways */
	mk(ns, NS_CREATE, 1, "only-orig");
	T_CHECK_EQ(rm(ns, NS_UNLINK, e, "f"), 0);
	T_CHECK_EQ(look(cl, 1, "only-orig"), 0);
	T_CHECK_EQ(look(cl, e, "f"), f);
	T_CHECK_EQ(attr(cl, f).nlink, 2);
	mk(cl, NS_CREATE, e, "only-clone");
	T_CHECK_EQ(look(ns, e, "only-clone"), 0);
	T_CHECK(!dump_eq(ns, cl));
	/* the clone's directory parents work for the subtree check */
	T_CHECK_EQ(rn(cl, 1, "z", e, "zz", 0), -EINVAL);

	/* walk -> load reproduces the namespace exactly */
	struct dump dm = dump(cl);
	T_ASSERT(ns_new(&ld) == 0);
	struct ns_visit v = {.inode = load_inode_cb, .dirent = load_dirent_cb, .xattr = load_xattr_cb};
	T_CHECK_EQ(ns_walk(cl, &v, ld), 0);
	ns_set_next_ino(ld, ns_next_ino(cl));
	struct dump dl = dump(ld);
	T_CHECK(dm.len == dl.len && memcmp(dm.buf, dl.buf, dm.len) == 0);
	free(dm.buf);
	free(dl.buf);
	T_CHECK_EQ(ns_count(ld), ns_count(cl));
	/* the loaded namespace works: subtree check uses recomputed parents */
	T_CHECK_EQ(rn(ld, 1, "z", e, "zz", 0), -EINVAL);
	T_CHECK_EQ(rn(ld, z, "d", 1, "d", 0), 0);
	T_CHECK_EQ(attr(ld, 1).nlink, 4);
	/* ns_parent: "..", also in a freshly loaded namespace */
	uint64_t up = 0;
	T_CHECK_EQ(ns_parent(ld, e, &up), 0);
	T_CHECK_EQ(up, d);
	T_CHECK_EQ(ns_parent(ld, d, &up), 0);
	T_CHECK_EQ(up, 1);
	T_CHECK_EQ(ns_parent(ld, 1, &up), 0);
	T_CHECK_EQ(up, 1);
	T_CHECK_EQ(ns_parent(ld, f, &up), -ENOTDIR);
	T_CHECK_EQ(ns_parent(ld, 999, &up), -ENOENT);
	T_CHECK_EQ(ns_parent(cl, d, &up), 0);
	T_CHECK_EQ(up, z);
	/* load errors */
	struct ns_attr a = attr(ld, f);
	T_CHECK_EQ(ns_load_inode(ld, &a, NULL, 0), -EEXIST);
	T_CHECK_EQ(ns_load_dirent(ld, 1, "d", 1, f), -EEXIST);
	T_CHECK_EQ(ns_load_dirent(ld, 999, "q", 1, f), -ENOENT);
	T_CHECK_EQ(ns_load_dirent(ld, f, "q", 1, f), -ENOTDIR);
	/* walk stops on a non-zero callback and returns it */
	int calls = 0;
	struct ns_visit sv = {.inode = stop_cb};
	T_CHECK_EQ(ns_walk(ld, &sv, &calls), 42);
	T_CHECK_EQ(calls, 3);
	ns_free(ns);
	ns_free(cl);
	ns_free(ld);
}

static void test_100k(void)
{
	struct ns *ns, *cl;
	char name[32];
	T_ASSERT(ns_new(&ns) == 0);
	uint64_t big = mk(ns, NS_MKDIR, 1, "big");
	uint64_t dirs[50];
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "d%d", i);
		dirs[i] = mk(ns, NS_MKDIR, 1, name);
	}
	int bad = 0;
	/* sized at once (a load's reservation); inserts must not need more */
	T_CHECK_EQ(ns_reserve(ns, 100100), 0);
	T_CHECK_EQ(ns_reserve_entries(ns, big, 50000), 0);
	T_CHECK_EQ(ns_reserve_entries(ns, 424242, 10), 0); /* no such directory: nothing */
	for (int i = 0; i < 100000; i++) {
		uint64_t p = i < 50000 ? big : dirs[i % 50];
		snprintf(name, sizeof(name), "file-%d", i);
		uint64_t ino = ns_alloc_ino(ns);
		struct ns_op o = op_new(NS_CREATE, p, name, ino);
		bad += ns_apply(ns, &o) != 0;
	}
	T_CHECK_EQ(bad, 0);
	T_CHECK_EQ(ns_count(ns), 100052);
	T_CHECK_EQ(attr(ns, big).size, 50000);
	T_ASSERT(ns_clone(ns, &cl) == 0);
	for (int i = 0; i < 100000; i++) {
		uint64_t p = i < 50000 ? big : dirs[i % 50];
		snprintf(name, sizeof(name), "file-%d", i);
		uint64_t ino = 0;
		bad += ns_lookup(cl, p, name, strlen(name), &ino) != 0 || ino != (uint64_t)i + 53;
		if (i % 2)
			bad += rm(ns, NS_UNLINK, p, name) != 0;
	}
	T_CHECK_EQ(bad, 0);
	T_CHECK_EQ(ns_count(ns), 50052);
	T_CHECK_EQ(ns_count(cl), 100052);
	ns_free(ns);
	ns_free(cl);
}

/* ---- randomized test against a reference model ------------------------ */

#ifndef NS_MODEL_ROUNDS
#define NS_MODEL_ROUNDS 20 /* -DNS_MODEL_ROUNDS=1000 for a longer soak */
#endif
#define M_INO 1024
#define M_ENT 2048
struct mnode {
	bool live;
	uint32_t mode, nlink, pins;
	uint64_t size, parent;
	int64_t mtime, ctime;
	uint64_t next_cookie;
	int nent;
};
static int me_hi; /* entries used are below this */
struct ment {
	bool used;
	uint64_t dir, ino, cookie;
	char name[4];
};
static struct mnode mn[M_INO];
static struct ment me[M_ENT];

static struct ment *m_find(uint64_t dir, const char *name)
{
	for (int i = 0; i < me_hi; i++)
		if (me[i].used && me[i].dir == dir && strcmp(me[i].name, name) == 0)
			return &me[i];
	return NULL;
}
static int m_count(uint64_t dir) { return mn[dir].nent; }
static void m_del(struct ment *e)
{
	e->used = false;
	mn[e->dir].nent--;
}
static bool m_isdir(uint64_t ino) { return S_ISDIR(mn[ino].mode); }
static int m_add(uint64_t dir, const char *name, uint64_t ino)
{
	for (int i = 0; i < M_ENT; i++) {
		if (!me[i].used) {
			me[i] = (struct ment){.used = true, .dir = dir, .ino = ino, .cookie = mn[dir].next_cookie++};
			mn[dir].nent++;
			if (i >= me_hi)
				me_hi = i + 1;
			strcpy(me[i].name, name);
			return 0;
		}
	}
	T_ASSERT(0);
	return -1;
}
static int m_dirok(uint64_t d)
{
	if (d >= M_INO || !mn[d].live || mn[d].nlink == 0)
		return -ENOENT;
	return m_isdir(d) ? 0 : -ENOTDIR;
}
static void m_drop(uint64_t ino)
{
	if (mn[ino].nlink == 0 && mn[ino].pins == 0)
		mn[ino].live = false;
}
/* Is a an ancestor-or-self of d? */
static bool m_anc(uint64_t a, uint64_t d)
{
	for (;;) {
		if (d == a)
			return true;
		if (d == 1)
			return false;
		d = mn[d].parent;
	}
}

static int m_apply(const struct ns_op *o)
{
	int r;
	switch (o->kind) {
	case NS_CREATE:
	case NS_MKDIR:
	case NS_SYMLINK:
		if ((r = m_dirok(o->parent)))
			return r;
		if (m_find(o->parent, o->name))
			return -EEXIST;
		mn[o->ino] = (struct mnode){.live = true, .nlink = 1, .mtime = o->mtime_ns, .ctime = o->ctime_ns,
					    .next_cookie = NS_COOKIE_FIRST};
		if (o->kind == NS_CREATE) {
			mn[o->ino].mode = S_IFREG | (o->mode & 07777);
		} else if (o->kind == NS_MKDIR) {
			mn[o->ino].mode = S_IFDIR | (o->mode & 07777);
			mn[o->ino].nlink = 2;
			mn[o->ino].parent = o->parent;
			mn[o->parent].nlink++;
		} else {
			mn[o->ino].mode = S_IFLNK | 0777;
			mn[o->ino].size = o->name2_len;
		}
		m_add(o->parent, o->name, o->ino);
		mn[o->parent].mtime = mn[o->parent].ctime = o->ctime_ns;
		return 0;
	case NS_LINK:
		if (o->ino >= M_INO || !mn[o->ino].live || mn[o->ino].nlink == 0)
			return -ENOENT;
		if (m_isdir(o->ino))
			return -EPERM;
		if ((r = m_dirok(o->parent2)))
			return r;
		if (m_find(o->parent2, o->name2))
			return -EEXIST;
		m_add(o->parent2, o->name2, o->ino);
		mn[o->ino].nlink++;
		mn[o->ino].ctime = o->ctime_ns;
		mn[o->parent2].mtime = mn[o->parent2].ctime = o->ctime_ns;
		return 0;
	case NS_UNLINK:
	case NS_RMDIR: {
		if ((r = m_dirok(o->parent)))
			return r;
		struct ment *e = m_find(o->parent, o->name);
		if (!e)
			return -ENOENT;
		uint64_t ino = e->ino;
		if (o->kind == NS_UNLINK && m_isdir(ino))
			return -EISDIR;
		if (o->kind == NS_RMDIR && !m_isdir(ino))
			return -ENOTDIR;
		if (o->kind == NS_RMDIR && m_count(ino))
			return -ENOTEMPTY;
		m_del(e);
		if (m_isdir(ino)) {
			mn[ino].nlink = 0;
			mn[o->parent].nlink--;
		} else {
			mn[ino].nlink--;
		}
		mn[ino].ctime = o->ctime_ns;
		mn[o->parent].mtime = mn[o->parent].ctime = o->ctime_ns;
		m_drop(ino);
		return 0;
	}
	case NS_RENAME: {
		if ((r = m_dirok(o->parent)) || (r = m_dirok(o->parent2)))
			return r;
		struct ment *e1 = m_find(o->parent, o->name), *e2 = m_find(o->parent2, o->name2);
		if (!e1)
			return -ENOENT;
		uint64_t s = e1->ino, t = e2 ? e2->ino : 0;
		if (o->flags == NS_RENAME_EXCHANGE) {
			if (!e2)
				return -ENOENT;
			if (e1 == e2)
				return 0;
			if ((m_isdir(s) && m_anc(s, o->parent2)) || (m_isdir(t) && m_anc(t, o->parent)))
				return -EINVAL;
			e1->ino = t;
			e2->ino = s;
			if (m_isdir(s)) {
				mn[o->parent].nlink--;
				mn[o->parent2].nlink++;
				mn[s].parent = o->parent2;
			}
			if (m_isdir(t)) {
				mn[o->parent2].nlink--;
				mn[o->parent].nlink++;
				mn[t].parent = o->parent;
			}
			mn[s].ctime = mn[t].ctime = o->ctime_ns;
			mn[o->parent].mtime = mn[o->parent].ctime = o->ctime_ns;
			mn[o->parent2].mtime = mn[o->parent2].ctime = o->ctime_ns;
			return 0;
		}
		if (e2) {
			if (o->flags == NS_RENAME_NOREPLACE)
				return -EEXIST;
			if (s == t)
				return 0;
			if (m_isdir(s) && !m_isdir(t))
				return -ENOTDIR;
			if (!m_isdir(s) && m_isdir(t))
				return -EISDIR;
		}
		if (m_isdir(s) && m_anc(s, o->parent2))
			return -EINVAL;
		if (e2 && m_isdir(t) && m_count(t))
			return -ENOTEMPTY;
		if (e2) {
			m_del(e2);
			if (m_isdir(t)) {
				mn[t].nlink = 0;
				mn[o->parent2].nlink--;
			} else {
				mn[t].nlink--;
			}
			mn[t].ctime = o->ctime_ns;
		}
		m_del(e1);
		m_add(o->parent2, o->name2, s);
		if (m_isdir(s)) {
			mn[o->parent].nlink--;
			mn[o->parent2].nlink++;
			mn[s].parent = o->parent2;
		}
		mn[s].ctime = o->ctime_ns;
		mn[o->parent].mtime = mn[o->parent].ctime = o->ctime_ns;
		mn[o->parent2].mtime = mn[o->parent2].ctime = o->ctime_ns;
		if (e2)
			m_drop(t);
		return 0;
	}
	}
	return -EINVAL;
}

/* Inode i against the model: attributes, and a directory's entries when
 * `entries` (a backed namespace loads them for it). */
static int m_check(struct ns *ns, uint64_t i, bool entries)
{
	static struct rd_list l;
	struct ns_attr a;
	int bad = 0, r = ns_getattr(ns, i, &a);

	if (!mn[i].live)
		return r != -ENOENT;
	if (r != 0)
		return 1;
	uint64_t size = m_isdir(i) ? (uint64_t)m_count(i) : mn[i].size;
	bad += a.mode != mn[i].mode || a.nlink != mn[i].nlink || a.size != size || a.ctime_ns != mn[i].ctime ||
	       a.mtime_ns != mn[i].mtime;
	if (!m_isdir(i) || !entries)
		return bad;
	l.n = 0;
	bad += ns_readdir(ns, i, 0, rd_cb, &l) != 0;
	bad += l.n != (size_t)m_count(i);
	for (size_t k = 0; k < l.n; k++) {
		struct ment *e = m_find(i, l.e[k].name);
		bad += !e || e->ino != l.e[k].ino || e->cookie != l.e[k].cookie;
		if (k)
			bad += l.e[k].cookie <= l.e[k - 1].cookie;
	}
	return bad;
}

static int m_compare(struct ns *ns, uint64_t next)
{
	int bad = 0;
	for (uint64_t i = 1; i < next && i < M_INO; i++)
		bad += m_check(ns, i, true);
	return bad;
}

/* One random step of the model tests: an op into *o (returns 1), or a pin
 * or unpin of a random inode done on ns and the model (returns 0). */
static int m_gen(struct ns *ns, uint64_t *rs, uint64_t next, struct ns_op *o, int *bad)
{
	static const char *names[] = {"a", "b", "c", "d"};
#define RNG() (*rs ^= *rs << 13, *rs ^= *rs >> 7, *rs ^= *rs << 17, *rs)
	uint64_t pick1 = 1 + RNG() % (next - 1), pick2 = 1 + RNG() % (next - 1);
	/* bias parents towards directories */
	for (int t = 0; t < 12 && !(mn[pick1].live && m_isdir(pick1)); t++)
		pick1 = 1 + RNG() % (next - 1);
	for (int t = 0; t < 12 && !(mn[pick2].live && m_isdir(pick2)); t++)
		pick2 = 1 + RNG() % (next - 1);
	const char *n1 = names[RNG() % 4], *n2 = names[RNG() % 4];
	int k = (int)(RNG() % 16);
	if (next >= M_INO - 1 && k < 4)
		k = 4 + (int)(RNG() % 12);
	if (k < 2)
		*o = op_new(NS_CREATE, pick1, n1, next);
	else if (k < 4)
		*o = op_new(k == 2 ? NS_MKDIR : NS_SYMLINK, pick1, n1, next);
	else if (k < 5)
		*o = (struct ns_op){.kind = NS_LINK, .ino = 1 + RNG() % (next - 1), .parent2 = pick1, .name2 = n1,
				    .name2_len = 1, .ctime_ns = now++};
	else if (k < 7)
		*o = (struct ns_op){.kind = NS_UNLINK, .parent = pick1, .name = n1, .name_len = 1, .ctime_ns = now++};
	else if (k < 9)
		*o = (struct ns_op){.kind = NS_RMDIR, .parent = pick1, .name = n1, .name_len = 1, .ctime_ns = now++};
	else if (k < 15)
		*o = (struct ns_op){.kind = NS_RENAME, .parent = pick1, .name = n1, .name_len = 1, .parent2 = pick2,
				    .name2 = n2, .name2_len = 1,
				    .flags = (uint32_t)(RNG() % 5 == 0 ? 1 + RNG() % 2 : 0), .ctime_ns = now++};
	else {
		/* pin or unpin (the live view's own: never applied to a backing) */
		if (mn[pick2].live && pick2 != 1) {
			if (mn[pick2].pins && RNG() % 2) {
				*bad += ns_unpin(ns, pick2) != 0;
				mn[pick2].pins--;
				m_drop(pick2);
			} else {
				*bad += ns_pin(ns, pick2) != 0;
				mn[pick2].pins++;
			}
		}
		return 0;
	}
#undef RNG
	return 1;
}

static void test_model(void)
{
	struct ns *ns;
	static int kind_ok[NS_SETATTR + 1][3];
	uint64_t seed = 0x1234567887654321ull;
#define RND() (seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17, seed)
	for (int round = 0; round < NS_MODEL_ROUNDS; round++) {
		T_ASSERT(ns_new(&ns) == 0);
		memset(mn, 0, sizeof(mn));
		memset(me, 0, sizeof(me));
		me_hi = 0;
		mn[1] = (struct mnode){.live = true, .mode = S_IFDIR | 0755, .nlink = 2, .next_cookie = NS_COOKIE_FIRST};
		int bad = 0, okops = 0;
		for (int step = 0; step < 3000; step++) {
			uint64_t next = ns_next_ino(ns);
			struct ns_op o = {0};
			if (!m_gen(ns, &seed, next, &o, &bad))
				continue;
			if (o.kind == NS_CREATE || o.kind == NS_MKDIR || o.kind == NS_SYMLINK) {
				if (next >= M_INO)
					continue;
			}
			int want = m_apply(&o);
			int got = ns_apply(ns, &o);
			if (want != got) {
				fprintf(stderr, "round %d step %d kind %d: model %d ns %d\n", round, step, o.kind, want,
					got);
				bad++;
			}
			if (got == 0 && (o.kind == NS_CREATE || o.kind == NS_MKDIR || o.kind == NS_SYMLINK))
				T_CHECK_EQ(ns_next_ino(ns), next + 1);
			okops += got == 0;
			kind_ok[o.kind][got == 0 ? 0 : 1]++;
			if (o.kind == NS_RENAME && got == 0)
				kind_ok[0][o.flags]++;
			if (want != got || step % 8 == 0)
				bad += m_compare(ns, ns_next_ino(ns));
			if (bad)
				break;
		}
		bad += m_compare(ns, ns_next_ino(ns));
		T_CHECK_EQ(bad, 0);
		if (okops <= 500)
			fprintf(stderr, "round %d: only %d ops succeeded\n", round, okops);
		T_CHECK(okops > 500);
		/* and a clone / walk-load of the final state agree */
		struct ns *cl;
		T_ASSERT(ns_clone(ns, &cl) == 0);
		T_CHECK_EQ(m_compare(cl, ns_next_ino(cl)), 0);
		ns_free(cl);
		ns_free(ns);
		if (bad)
			break;
	}
	for (int k = NS_CREATE; k <= NS_RENAME; k++) {
		fprintf(stderr, "model: kind %d: %d ok, %d refused\n", k, kind_ok[k][0], kind_ok[k][1]);
		T_CHECK(kind_ok[k][0] > 20 && kind_ok[k][1] > 20);
	}
	fprintf(stderr, "model: renames ok by flags: %d plain, %d noreplace, %d exchange\n", kind_ok[0][0], kind_ok[0][1],
		kind_ok[0][2]);
	T_CHECK(kind_ok[0][1] > 5 && kind_ok[0][2] > 5);
}

/* ---- the backed namespace (ns_new_backed) ------------------------------ */

/* The backing namespace is S, applied behind the backed one B as the store
 * applies behind the filesystem's live view: the ops that succeeded on B
 * wait in a queue and reach S in order, a few at a time. */
static struct {
	size_t inode, dir, rest, has;
} bk_calls;
static int tb_inode(void *arg, struct ns *ns, uint64_t ino)
{
	bk_calls.inode++;
	return ns_copy_inode(ns, arg, ino);
}
static int tb_dir(void *arg, struct ns *ns, uint64_t dir)
{
	bk_calls.dir++;
	return ns_copy_dir(ns, arg, dir);
}
static int tb_rest(void *arg, struct ns *ns)
{
	bk_calls.rest++;
	return ns_copy_rest(ns, arg);
}
static int tb_has(void *arg, uint64_t ino)
{
	struct ns_attr a;
	bk_calls.has++;
	return ns_getattr(arg, ino, &a) == 0;
}
static const struct ns_backing test_backing = {.inode = tb_inode, .dir = tb_dir, .rest = tb_rest, .has = tb_has};

static void test_backed_basics(void)
{
	struct ns *s, *b;
	T_ASSERT(ns_new(&s) == 0);
	uint64_t d = mk(s, NS_MKDIR, 1, "d");
	uint64_t f = mk(s, NS_CREATE, d, "f");
	uint64_t g = mk(s, NS_CREATE, d, "g");
	T_CHECK_EQ(xset(s, f, "user.k", "v", 0), 0);
	memset(&bk_calls, 0, sizeof(bk_calls));
	T_ASSERT(ns_new_backed(s, &test_backing, s, &b) == 0);
	T_CHECK_EQ(ns_count(b), 4);
	T_CHECK_EQ(ns_next_ino(b), ns_next_ino(s));
	/* a directory's size without its entries */
	T_CHECK_EQ(attr(b, d).size, 2);
	T_CHECK_EQ(bk_calls.dir, 0);
	T_CHECK_EQ(look(b, d, "f"), f);
	T_CHECK_EQ(bk_calls.dir, 1);
	char v[8];
	T_CHECK_EQ(ns_getxattr(b, f, "user.k", 6, v, sizeof(v)), 1);
	/* unlink g in B; S has not applied it yet: g stays gone in B */
	T_CHECK_EQ(rm(b, NS_UNLINK, d, "g"), 0);
	T_CHECK_EQ(attr(s, g).ino, g);
	T_CHECK_EQ(attr(b, g).ino, 0);
	T_CHECK_EQ(ns_count(b), 3);
	/* a new inode is never looked for in S */
	size_t before = bk_calls.inode;
	uint64_t h = mk(b, NS_CREATE, d, "h");
	T_CHECK_EQ(bk_calls.inode, before);
	T_CHECK_EQ(attr(b, h).nlink, 1);
	/* created here, applied to S, removed here but not yet there */
	struct ns_op oi = op_new(NS_CREATE, d, "i", ns_alloc_ino(b));
	T_CHECK_EQ(ns_apply(b, &oi), 0);
	T_CHECK_EQ(ns_apply(s, &oi), 0);
	T_CHECK_EQ(rm(b, NS_UNLINK, d, "i"), 0);
	/* ns_clone refuses a backed namespace; ns_walk loads the rest and detaches */
	struct ns *cl = NULL;
	T_CHECK_EQ(ns_clone(b, &cl), -EINVAL);
	struct dump x = dump(b);
	T_CHECK(x.len > 0);
	free(x.buf);
	T_CHECK_EQ(bk_calls.rest, 1);
	T_CHECK_EQ(ns_count(b), 4);
	T_CHECK_EQ(attr(b, g).ino, 0);
	T_CHECK_EQ(attr(b, oi.ino).ino, 0);
	/* the gone set is pruned of what S no longer holds, and what it
	 * dropped or kept stays gone in B */
	ns_free(b);
	T_ASSERT(ns_new_backed(s, &test_backing, s, &b) == 0);
	static uint64_t many[400];
	char nm[16];
	for (int i = 0; i < 400; i++) {
		snprintf(nm, sizeof(nm), "m%d", i);
		many[i] = mk(s, NS_CREATE, d, nm);
	}
	ns_free(b);
	T_ASSERT(ns_new_backed(s, &test_backing, s, &b) == 0);
	for (int i = 0; i < 200; i++) {
		snprintf(nm, sizeof(nm), "m%d", i);
		T_CHECK_EQ(rm(b, NS_UNLINK, d, nm), 0);
	}
	T_CHECK(bk_calls.has > 0); /* pruned while it grew: S still had them all */
	for (int i = 0; i < 200; i++) { /* S catches up */
		snprintf(nm, sizeof(nm), "m%d", i);
		T_CHECK_EQ(rm(s, NS_UNLINK, d, nm), 0);
	}
	size_t has1 = bk_calls.has;
	for (int i = 200; i < 400; i++) {
		snprintf(nm, sizeof(nm), "m%d", i);
		T_CHECK_EQ(rm(b, NS_UNLINK, d, nm), 0);
	}
	T_CHECK_EQ(attr(b, f).ino, f);
	T_CHECK(bk_calls.has > has1); /* pruned again: the first 200 went */
	int back = 0;
	for (int i = 0; i < 400; i++)
		back += attr(b, many[i]).ino != 0;
	T_CHECK_EQ(back, 0);
	/* the backing must have its parents (ns_fix_parents after a load) */
	struct ns *s2, *b2;
	T_ASSERT(ns_new(&s2) == 0);
	struct ns_attr da = attr(s, d);
	T_CHECK_EQ(ns_load_inode(s2, &da, NULL, 0), 0);
	T_CHECK_EQ(ns_new_backed(s2, &test_backing, s2, &b2), -EINVAL);
	ns_fix_parents(s2);
	T_CHECK_EQ(ns_new_backed(s2, &test_backing, s2, &b2), 0);
	ns_free(b2);
	ns_free(s2);
	ns_free(b);
	ns_free(s);
}

#define BQ_MAX 64
static void test_backed_model(void)
{
	static struct ns_op q[BQ_MAX];
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	int bad = 0, phases = 0;
#define RND2() (seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17, seed)
	memset(&bk_calls, 0, sizeof(bk_calls));
	for (int round = 0; round < NS_MODEL_ROUNDS && !bad; round++) {
		struct ns *s, *b;
		size_t qn = 0;
		T_ASSERT(ns_new(&s) == 0);
		memset(mn, 0, sizeof(mn));
		memset(me, 0, sizeof(me));
		me_hi = 0;
		mn[1] = (struct mnode){.live = true, .mode = S_IFDIR | 0755, .nlink = 2, .next_cookie = NS_COOKIE_FIRST};
		T_ASSERT(ns_new_backed(s, &test_backing, s, &b) == 0);
		for (int step = 0; step < 3000 && !bad; step++) {
			uint64_t next = ns_next_ino(b);
			/* now and then S catches up (part of the queue), or the
			 * live view starts over from a caught-up S (a remount;
			 * pins are dropped as at an unmount) */
			if (RND2() % 4 == 0 || qn == BQ_MAX) {
				size_t k = qn == BQ_MAX ? qn : (size_t)(RND2() % (qn + 1));
				for (size_t i = 0; i < k; i++)
					bad += ns_apply(s, &q[i]) != 0;
				memmove(q, q + k, (qn - k) * sizeof(*q));
				qn -= k;
			}
			if (step % 500 == 499) {
				for (size_t i = 0; i < qn; i++)
					bad += ns_apply(s, &q[i]) != 0;
				qn = 0;
				for (uint64_t i = 1; i < M_INO; i++) {
					mn[i].pins = 0;
					if (mn[i].live && mn[i].nlink == 0)
						mn[i].live = false;
				}
				ns_free(b);
				T_ASSERT(ns_new_backed(s, &test_backing, s, &b) == 0);
				phases++;
			}
			struct ns_op o;
			if (RND2() % 17 == 0) {
				/* look at a few inodes, dead ones included (the gone set) */
				for (int t = 0; t < 4; t++) {
					uint64_t i = 1 + RND2() % (next - 1);
					bad += m_check(b, i, RND2() % 2);
				}
				continue;
			}
			if (!m_gen(b, &seed, next, &o, &bad))
				continue;
			if ((o.kind == NS_CREATE || o.kind == NS_MKDIR || o.kind == NS_SYMLINK) && next >= M_INO)
				continue;
			int want = m_apply(&o), got = ns_apply(b, &o);
			if (want != got) {
				fprintf(stderr, "backed: round %d step %d kind %d: model %d ns %d\n", round, step, o.kind,
					want, got);
				bad++;
			}
			if (got == 0)
				q[qn++] = o;
		}
		if (!bad) {
			/* everything, then the walk loads the rest and detaches */
			bad += m_compare(b, ns_next_ino(b));
			struct dump x = dump(b);
			free(x.buf);
			bad += m_compare(b, ns_next_ino(b));
			uint64_t live = 0;
			for (uint64_t i = 1; i < M_INO; i++)
				live += mn[i].live;
			bad += ns_count(b) != live;
		}
		T_CHECK_EQ(bad, 0);
		ns_free(b);
		ns_free(s);
	}
	fprintf(stderr, "backed model: %d phases; loads: %zu inodes, %zu directories, %zu rest, %zu has\n", phases,
		bk_calls.inode, bk_calls.dir, bk_calls.rest, bk_calls.has);
	T_CHECK(phases > 20 && bk_calls.inode > 1000 && bk_calls.dir > 500);
}

/* FIFOs, sockets, device nodes; extended attributes. */
static void test_special_xattr(void)
{
	struct ns *ns;
	char buf[256];
	T_ASSERT(ns_new(&ns) == 0);
	static const uint32_t types[] = {S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK};
	const char *names[] = {"p", "s", "c", "b"};
	for (int i = 0; i < 4; i++) {
		struct ns_op o = op_new(NS_MKNOD, 1, names[i], ns_alloc_ino(ns));
		o.mode = types[i] | 0640;
		o.rdev = i >= 2 ? 0x10203u : 0;
		T_CHECK_EQ(ns_apply(ns, &o), 0);
		struct ns_attr a = attr(ns, look(ns, 1, names[i]));
		T_CHECK_EQ(a.mode, types[i] | 0640);
		T_CHECK_EQ(a.rdev, i >= 2 ? 0x10203u : 0);
		T_CHECK(a.size == 0 && a.nlink == 1);
		/* the same name again */
		o.ino = ns_alloc_ino(ns);
		T_CHECK_EQ(ns_apply(ns, &o), -EEXIST);
	}
	/* a mknod op of another type is refused by ns_apply too */
	struct ns_op bad = op_new(NS_MKNOD, 1, "r", ns_alloc_ino(ns));
	T_CHECK_EQ(ns_apply(ns, &bad), -EINVAL);
	/* special files link, rename and unlink like files */
	uint64_t p = look(ns, 1, "p");
	T_CHECK_EQ(ln(ns, p, 1, "p2"), 0);
	T_CHECK_EQ(attr(ns, p).nlink, 2);
	T_CHECK_EQ(rn(ns, 1, "p2", 1, "p3", 0), 0);
	T_CHECK_EQ(rm(ns, NS_UNLINK, 1, "p3"), 0);
	T_CHECK_EQ(rm(ns, NS_UNLINK, 1, "p"), 0);
	T_CHECK_EQ(attr(ns, p).ino, 0);
	T_CHECK_EQ(rm(ns, NS_RMDIR, 1, "s"), -ENOTDIR);
	T_CHECK_EQ(ns_set_size(ns, look(ns, 1, "s"), 5, 0), -EINVAL);

	/* extended attributes */
	uint64_t f = mk(ns, NS_CREATE, 1, "f");
	T_CHECK_EQ(ns_listxattr(ns, f, NULL, 0), 0);
	T_CHECK_EQ(ns_getxattr(ns, f, "user.x", 6, buf, sizeof(buf)), -ENODATA);
	T_CHECK_EQ(xset(ns, f, "user.x", "val", NS_XATTR_REPLACE), -ENODATA);
	T_CHECK_EQ(xset(ns, f, "user.x", "val", NS_XATTR_CREATE), 0);
	T_CHECK_EQ(attr(ns, f).ctime_ns, now - 1);
	T_CHECK_EQ(xset(ns, f, "user.x", "v2", NS_XATTR_CREATE), -EEXIST);
	T_CHECK_EQ(xset(ns, f, "user.x", "value2", NS_XATTR_REPLACE), 0);
	T_CHECK_EQ(xset(ns, f, "user.a", "", 0), 0);
	T_CHECK_EQ(ns_getxattr(ns, f, "user.x", 6, NULL, 0), 6);
	T_CHECK_EQ(ns_getxattr(ns, f, "user.x", 6, buf, 5), -ERANGE);
	T_CHECK_EQ(ns_getxattr(ns, f, "user.x", 6, buf, 6), 6);
	T_CHECK(memcmp(buf, "value2", 6) == 0);
	T_CHECK_EQ(ns_getxattr(ns, f, "user.a", 6, buf, sizeof(buf)), 0);
	/* the list: names in byte order, each NUL-terminated */
	T_CHECK_EQ(ns_listxattr(ns, f, NULL, 0), 14);
	T_CHECK_EQ(ns_listxattr(ns, f, buf, 13), -ERANGE);
	T_CHECK_EQ(ns_listxattr(ns, f, buf, sizeof(buf)), 14);
	T_CHECK(memcmp(buf, "user.a\0user.x\0", 14) == 0);
	T_CHECK_EQ(xrm(ns, f, "user.a"), 0);
	T_CHECK_EQ(xrm(ns, f, "user.a"), -ENODATA);
	T_CHECK_EQ(ns_listxattr(ns, f, buf, sizeof(buf)), 7);
	T_CHECK_EQ(xrm(ns, 999, "user.a"), -ENOENT);
	T_CHECK_EQ(xset(ns, 999, "user.a", "", 0), -ENOENT);
	/* per-inode space: sum of name + 1 + value <= NS_XATTR_TOTAL_MAX */
	static char big[NS_XATTR_TOTAL_MAX + 1];
	memset(big, 'v', sizeof(big) - 1);
	uint64_t g = mk(ns, NS_CREATE, 1, "g");
	struct ns_op o = {.kind = NS_SETXATTR, .ino = g, .name = "user.big", .name_len = 8, .name2 = big,
			  .name2_len = NS_XATTR_TOTAL_MAX - 9 + 1, .ctime_ns = now++};
	T_CHECK_EQ(ns_apply(ns, &o), -ENOSPC);
	o.name2_len--;
	T_CHECK_EQ(ns_apply(ns, &o), 0);
	T_CHECK_EQ(xset(ns, g, "user.c", "", 0), -ENOSPC);
	/* replacing counts the old value as freed */
	o.name2_len = 10;
	T_CHECK_EQ(ns_apply(ns, &o), 0);
	T_CHECK_EQ(xset(ns, g, "user.c", "", 0), 0);
	/* attributes go with the inode */
	T_CHECK_EQ(rm(ns, NS_UNLINK, 1, "g"), 0);
	T_CHECK_EQ(ns_getxattr(ns, g, "user.c", 6, NULL, 0), -ENOENT);
	/* a loaded attribute must be new and within bounds */
	T_CHECK_EQ(ns_load_xattr(ns, f, "user.x", 6, "z", 1), -EEXIST);
	T_CHECK_EQ(ns_load_xattr(ns, f, "", 0, "z", 1), -EINVAL);
	T_CHECK_EQ(ns_load_xattr(ns, 999, "user.q", 6, "z", 1), -ENOENT);
	T_CHECK_EQ(ns_load_xattr(ns, f, "user.q", 6, big, NS_XATTR_TOTAL_MAX), -EINVAL);
	ns_free(ns);
}

/* The daemon's append clock: creation ctime, then timed ns_set_size;
 * setattr of mtime (touch -d) does not move it. Settings inherited at
 * NS_CREATE / NS_MKDIR (ns.h NS_XA_*). */
static void test_append_clock_and_inherit(void)
{
	struct ns *ns = NULL, *c = NULL;
	char v[32];
	T_ASSERT(ns_new(&ns) == 0);
	uint64_t f = mk(ns, NS_CREATE, 1, "f");
	struct ns_attr a = attr(ns, f);
	T_CHECK(a.append_ns == a.ctime_ns && a.append_ns != 0);
	T_CHECK_EQ(ns_set_size(ns, f, 10, 5555), 0);
	T_CHECK_EQ(attr(ns, f).append_ns, 5555);
	T_CHECK_EQ(ns_set_size(ns, f, 11, 0), 0); /* untimed bookkeeping keeps it */
	T_CHECK_EQ(attr(ns, f).append_ns, 5555);
	struct ns_op o = {.kind = NS_SETATTR, .ino = f, .flags = NS_SET_MTIME | NS_SET_ATIME, .mtime_ns = 1,
			  .atime_ns = 1, .ctime_ns = 9999};
	T_CHECK_EQ(ns_apply(ns, &o), 0);
	T_CHECK(attr(ns, f).mtime_ns == 1 && attr(ns, f).append_ns == 5555);

	uint64_t d = mk(ns, NS_MKDIR, 1, "d");
	T_CHECK_EQ(xset(ns, d, NS_XA_ZSTD_LEVEL, "19", 0), 0);
	T_CHECK_EQ(xset(ns, d, NS_XA_CHUNK_BYTES, "65536", 0), 0);
	T_CHECK_EQ(xset(ns, d, NS_XA_RETAIN, "30d", 0), 0);
	T_CHECK_EQ(xset(ns, d, "user.other", "x", 0), 0);
	uint64_t sub = mk(ns, NS_MKDIR, d, "sub");
	uint64_t g = mk(ns, NS_CREATE, sub, "g");
	T_CHECK_EQ(ns_getxattr(ns, sub, NS_XA_RETAIN, strlen(NS_XA_RETAIN), v, sizeof(v)), 3);
	T_CHECK(memcmp(v, "30d", 3) == 0);
	T_CHECK_EQ(ns_getxattr(ns, sub, NS_XA_ZSTD_LEVEL, strlen(NS_XA_ZSTD_LEVEL), v, sizeof(v)), 2);
	T_CHECK_EQ(ns_getxattr(ns, sub, "user.other", 10, NULL, 0), -ENODATA);
	T_CHECK_EQ(ns_getxattr(ns, g, NS_XA_ZSTD_LEVEL, strlen(NS_XA_ZSTD_LEVEL), v, sizeof(v)), 2);
	T_CHECK(memcmp(v, "19", 2) == 0);
	T_CHECK_EQ(ns_getxattr(ns, g, NS_XA_CHUNK_BYTES, strlen(NS_XA_CHUNK_BYTES), v, sizeof(v)), 5);
	T_CHECK_EQ(ns_getxattr(ns, g, NS_XA_RETAIN, strlen(NS_XA_RETAIN), NULL, 0), -ENODATA);
	uint64_t s = mk(ns, NS_SYMLINK, d, "s");
	T_CHECK_EQ(ns_listxattr(ns, s, NULL, 0), 0);
	/* a copy: changing the parent later leaves the child's own */
	T_CHECK_EQ(xset(ns, d, NS_XA_ZSTD_LEVEL, "3", 0), 0);
	T_CHECK_EQ(ns_getxattr(ns, g, NS_XA_ZSTD_LEVEL, strlen(NS_XA_ZSTD_LEVEL), v, sizeof(v)), 2);
	/* clone keeps both */
	T_ASSERT(ns_clone(ns, &c) == 0);
	T_CHECK_EQ(attr(c, f).append_ns, 5555);
	T_CHECK_EQ(ns_getxattr(c, g, NS_XA_ZSTD_LEVEL, strlen(NS_XA_ZSTD_LEVEL), v, sizeof(v)), 2);
	ns_free(c);
	ns_free(ns);
}

/* Dirty tracking: after any sequence of ops, every inode whose stored
 * state (attributes, symlink, attributes) differs from a snapshot taken
 * at the last clear, and every entry whose inode or cookie differs, is in
 * the dirty sets; ns_dirty_clear empties them. Random ops over a few
 * names, compared against ns_clone snapshots. */
struct dset {
	uint64_t *ino;
	size_t n_ino;
	struct {
		uint64_t dir;
		char name[8];
		size_t len;
	} ent[4096];
	size_t n_ent;
};
static int dset_ino(void *arg, uint64_t ino)
{
	struct dset *d = arg;
	d->ino[d->n_ino++] = ino;
	return 0;
}
static int dset_ent(void *arg, uint64_t dir, const char *name, size_t len)
{
	struct dset *d = arg;
	T_ASSERT(d->n_ent < 4096 && len < 8);
	d->ent[d->n_ent].dir = dir;
	memcpy(d->ent[d->n_ent].name, name, len);
	d->ent[d->n_ent++].len = len;
	return 0;
}
static bool dset_has_ino(const struct dset *d, uint64_t ino)
{
	for (size_t i = 0; i < d->n_ino; i++)
		if (d->ino[i] == ino)
			return true;
	return false;
}
static bool dset_has_ent(const struct dset *d, uint64_t dir, const char *name, size_t len)
{
	for (size_t i = 0; i < d->n_ent; i++)
		if (d->ent[i].dir == dir && d->ent[i].len == len && !memcmp(d->ent[i].name, name, len))
			return true;
	return false;
}
static struct dump dump_one(const struct ns *ns, uint64_t ino)
{
	struct dump d = {0};
	struct ns_visit v = {.inode = dump_inode, .xattr = dump_xattr};
	dput(&d, "x", 1);
	(void)ns_walk_inode(ns, ino, &v, &d);
	return d;
}
struct ent_cmp {
	const struct ns *other;
	const struct dset *dirty;
	int missed;
};
static int ent_cmp_cb(void *arg, uint64_t dir, const char *name, size_t len, uint64_t ino)
{
	struct ent_cmp *c = arg;
	uint64_t o_ino = 0, o_ck = 0;
	(void)ns_dirent_get(c->other, dir, name, len, &o_ino, &o_ck);
	if (!dset_has_ent(c->dirty, dir, name, len))
		c->missed += o_ino == 0 || o_ino != ino;
	return 0;
}
static void dirty_check(struct ns *ns, struct ns *snap, int *missed_ino, int *missed_ent)
{
	struct dset *d = calloc(1, sizeof(*d));
	uint64_t hi = ns_next_ino(ns);
	T_ASSERT(d);
	d->ino = calloc(hi + 1, sizeof(uint64_t));
	T_ASSERT(d->ino);
	T_CHECK(!ns_dirty_all(ns));
	T_CHECK_EQ(ns_dirty_each_ino(ns, dset_ino, d), 0);
	T_CHECK_EQ(ns_dirty_each_dirent(ns, dset_ent, d), 0);
	size_t nde = 0;
	T_CHECK_EQ(ns_dirty_counts(ns, &nde), d->n_ino);
	T_CHECK_EQ(nde, d->n_ent);
	for (uint64_t ino = 1; ino < hi; ino++) {
		struct dump a = dump_one(ns, ino), b = dump_one(snap, ino);
		bool same = a.len == b.len && !memcmp(a.buf, b.buf, a.len);
		if (!same && !dset_has_ino(d, ino))
			(*missed_ino)++;
		free(a.buf);
		free(b.buf);
	}
	struct ent_cmp c1 = {.other = snap, .dirty = d}, c2 = {.other = ns, .dirty = d};
	struct ns_visit v1 = {.dirent = ent_cmp_cb};
	T_CHECK_EQ(ns_walk(ns, &v1, &c1), 0);
	T_CHECK_EQ(ns_walk(snap, &v1, &c2), 0);
	/* cookies: an entry whose cookie changed is dirty too */
	for (uint64_t dir = 1; dir < hi; dir++) {
		static const char *nm[] = {"a", "b", "c"};
		for (int k = 0; k < 3; k++) {
			uint64_t i1 = 0, c1k = 0, i2 = 0, c2k = 0;
			(void)ns_dirent_get(ns, dir, nm[k], 1, &i1, &c1k);
			(void)ns_dirent_get(snap, dir, nm[k], 1, &i2, &c2k);
			if ((i1 != i2 || c1k != c2k) && !dset_has_ent(d, dir, nm[k], 1))
				(*missed_ent)++;
		}
	}
	*missed_ent += c1.missed + c2.missed;
	free(d->ino);
	free(d);
}

static void test_dirty(void)
{
	static const char *names[] = {"a", "b", "c"};
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	struct ns *ns, *snap;
	int missed_ino = 0, missed_ent = 0, checks = 0;

	T_ASSERT(ns_new(&ns) == 0);
	size_t nde = 1;
	T_CHECK_EQ(ns_dirty_counts(ns, &nde), 0);
	T_CHECK_EQ(nde, 0);
	T_ASSERT(ns_clone(ns, &snap) == 0);
	for (int step = 0; step < 20000; step++) {
		uint64_t next = ns_next_ino(ns), p1 = 1 + RND() % (next - 1), p2 = 1 + RND() % (next - 1),
			 ino = 1 + RND() % (next - 1);
		const char *n1 = names[RND() % 3], *n2 = names[RND() % 3];
		struct ns_op o = {0};
		int k = (int)(RND() % 13);
		if (next > 400 && k < 3)
			k = 3 + (int)(RND() % 10);
		if (k == 0)
			o = op_new(NS_CREATE, p1, n1, next);
		else if (k == 1)
			o = op_new(NS_MKDIR, p1, n1, next);
		else if (k == 2)
			o = op_new(NS_SYMLINK, p1, n1, next);
		else if (k == 3)
			o = (struct ns_op){.kind = NS_LINK, .ino = ino, .parent2 = p1, .name2 = n1, .name2_len = 1,
					   .ctime_ns = now++};
		else if (k == 4)
			o = (struct ns_op){.kind = NS_UNLINK, .parent = p1, .name = n1, .name_len = 1, .ctime_ns = now++};
		else if (k == 5)
			o = (struct ns_op){.kind = NS_RMDIR, .parent = p1, .name = n1, .name_len = 1, .ctime_ns = now++};
		else if (k <= 7)
			o = (struct ns_op){.kind = NS_RENAME, .parent = p1, .name = n1, .name_len = 1, .parent2 = p2,
					   .name2 = n2, .name2_len = 1, .flags = (uint32_t)(RND() % 3),
					   .ctime_ns = now++};
		else if (k == 8) {
			o = (struct ns_op){.kind = NS_SETATTR, .ino = ino, .flags = NS_SET_MODE | NS_SET_MTIME,
					   .mode = 0600, .mtime_ns = now, .ctime_ns = now};
			now++;
		}
		else if (k == 9)
			o = (struct ns_op){.kind = NS_SETXATTR, .ino = ino, .name = "user.x", .name_len = 6,
					   .name2 = n2, .name2_len = 1, .ctime_ns = now++};
		else if (k == 10)
			o = (struct ns_op){.kind = NS_REMOVEXATTR, .ino = ino, .name = "user.x", .name_len = 6,
					   .ctime_ns = now++};
		else {
			uint64_t sz = RND() % 1000;
			(void)ns_set_size(ns, ino, sz, RND() % 2 ? now++ : 0);
			o.kind = 0;
		}
		if (o.kind)
			(void)ns_apply(ns, &o);
		if (RND() % 23 == 0) {
			dirty_check(ns, snap, &missed_ino, &missed_ent);
			checks++;
			ns_free(snap);
			ns_dirty_clear(ns);
			T_CHECK_EQ(ns_dirty_counts(ns, &nde), 0);
			T_CHECK_EQ(nde, 0);
			T_ASSERT(ns_clone(ns, &snap) == 0);
		}
	}
	T_CHECK(checks > 100);
	T_CHECK_EQ(missed_ino, 0);
	T_CHECK_EQ(missed_ent, 0);
	/* a mark that could not be stored marks everything; loads mark */
	ns_dirty_set_all(ns);
	T_CHECK(ns_dirty_all(ns));
	ns_dirty_clear(ns);
	T_CHECK(!ns_dirty_all(ns));
	struct ns_attr a = {.ino = 5000, .mode = S_IFREG | 0644, .nlink = 1};
	T_CHECK_EQ(ns_load_inode(ns, &a, NULL, 0), 0);
	T_CHECK_EQ(ns_load_dirent_cookie(ns, 1, "zz", 2, 5000, 77), 0);
	T_CHECK_EQ(ns_load_dirent_cookie(ns, 1, "zy", 2, 5000, 70), -EINVAL); /* cookies increase */
	uint64_t gi = 0, gc = 0;
	T_CHECK_EQ(ns_dirent_get(ns, 1, "zz", 2, &gi, &gc), 0);
	T_CHECK_EQ(gi, 5000);
	T_CHECK_EQ(gc, 77);
	T_CHECK_EQ(ns_dirty_counts(ns, &nde), 1);
	T_CHECK_EQ(nde, 1);
	ns_free(snap);
	ns_free(ns);
}

int main(void)
{
	test_dirty();
	test_append_clock_and_inherit();
	test_special_xattr();
	test_basics();
	test_rename();
	test_readdir_cookies();
	test_clone_walk_load();
	test_100k();
	test_model();
	test_backed_basics();
	test_backed_model();
	T_DONE();
}
