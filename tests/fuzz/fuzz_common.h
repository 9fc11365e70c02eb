/* fuzz_common.h — shared by fuzz_page.c, fuzz_recover.c and gen_corpus.c:
 * the store geometry of the seed stores and "read everything reachable". */
#ifndef BZ_FUZZ_COMMON_H
#define BZ_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "storage/log.h"
#include "storage/store.h"

#define FZ_SEG_BYTES (64u << 10)
#define FZ_SEGMENTS 3u
#define FZ_READ_BUDGET (4u << 20) /* bytes read per input at most */

static inline void fz_opts(struct store_opts *o, struct vfs *v)
{
	store_opts_default(o);
	o->vfs = v;
	o->wal_segment_bytes = FZ_SEG_BYTES;
	o->wal_segments = FZ_SEGMENTS;
	o->checkpoint_bytes = FZ_SEG_BYTES;
	o->cache_bytes = 256 << 10;
}

/* Replaces file name of v with data (then zero-pads it to pad bytes). */
static inline int fz_put(struct vfs *v, const char *name, const uint8_t *data, size_t len, uint64_t pad)
{
	struct vfs_file *f = NULL;
	int rc = vfs_open(v, name, VFS_O_RDWR | VFS_O_CREAT, &f);
	if (rc < 0)
		return rc;
	rc = vfs_ftruncate(f, 0);
	if (rc == 0 && len)
		rc = vfs_pwrite(f, data, len, 0);
	if (rc == 0 && pad > len)
		rc = vfs_ftruncate(f, pad);
	vfs_close(f);
	return rc;
}

struct fz_walk {
	struct store *s;
	uint64_t budget;
	uint8_t *buf;
};

static int fz_inode(void *arg, const struct ns_attr *a, const char *symlink, size_t symlink_len)
{
	struct fz_walk *w = arg;
	struct store_file_info info;
	uint64_t size = 0;
	(void)symlink;
	(void)symlink_len;
	if (!S_ISREG(a->mode))
		return 0;
	(void)store_file_info(w->s, a->ino, &info);
	if (store_file_size(w->s, a->ino, &size) < 0)
		return 0;
	for (uint64_t off = 0; off < size && w->budget; ) {
		size_t n = 0;
		size_t want = (size_t)(size - off < 65536 ? size - off : 65536);
		if (want > w->budget)
			want = (size_t)w->budget;
		if (store_read(w->s, a->ino, off, w->buf, want, &n) < 0 || n == 0)
			break;
		off += n;
		w->budget -= n;
	}
	return 0;
}
static int fz_dirent(void *arg, uint64_t dir, const char *name, size_t name_len, uint64_t ino)
{
	(void)arg;
	(void)dir;
	(void)name;
	(void)name_len;
	(void)ino;
	return 0;
}

static int fz_xattr(void *arg, uint64_t ino, const char *name, size_t name_len, const void *value, size_t value_len)
{
	(void)arg;
	(void)ino;
	(void)name;
	(void)name_len;
	(void)value;
	(void)value_len;
	return 0;
}

/* Reads every file of s (bounded). */
static inline int fz_entry(void *arg, const char *name, size_t name_len, uint64_t ino, uint32_t mode,
			   uint64_t cookie)
{
	(void)arg;
	(void)name;
	(void)name_len;
	(void)ino;
	(void)mode;
	(void)cookie;
	return 0;
}

static inline void fz_read_all(struct store *s)
{
	static uint8_t buf[65536];
	struct fz_walk w = { .s = s, .budget = FZ_READ_BUDGET, .buf = buf };
	struct ns_visit v = { .inode = fz_inode, .dirent = fz_dirent, .xattr = fz_xattr };
	struct ns *ns = NULL, *live = NULL;
	struct store_stats st;
	store_stats(s, &st);
	/* format 5's demand loads first: inodes by number, then the root's
	 * entries and their inodes through a live view */
	for (uint64_t ino = 1; ino < 48; ino++) {
		uint64_t size = 0;
		(void)store_file_size(s, ino, &size);
	}
	if (store_ns_backed(s, &live) == 0)
		(void)ns_readdir(live, 1, 0, fz_entry, NULL);
	ns_free(live);
	if (store_ns_clone(s, &ns) == 0)
		(void)ns_walk(ns, &v, &w);
	ns_free(ns);
}

/* A valid empty store, made once per process: its WAL segments (and for
 * fuzz_recover its store.db) are the background each input is laid on.
 * Logging is silenced: every input is an error case. */
static struct vfs *fz_base __attribute__((unused));

static inline void fz_base_init(void)
{
	struct store_opts o;
	struct store *s = NULL;

	if (fz_base)
		return;
	bz_log_set_level((enum bz_log_level)-1);
	if (vfs_mem_new(&fz_base) < 0)
		abort();
	fz_opts(&o, fz_base);
	if (store_open(&o, &s) < 0 || store_close(s) < 0)
		abort();
}

#endif
