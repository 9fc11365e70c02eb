/* inode.c — per-inode runtime state of the blazefs daemon and the
 * append-only write path.
 *
 * The inode table maps an inode number to a struct fs_inode while the kernel
 * holds lookup references to it (nlookup, from lookup/create/mkdir/... and
 * readdirplus, dropped by forget) or while a thread holds a counted
 * reference (refs: open handles, a setattr in progress). An entry pins its
 * inode in the live namespace (ns_pin), so a file that is unlinked while open
 * keeps its data and stays readable and appendable until the last reference
 * goes. The table and the counts are guarded by fs_ns_lock.
 *
 * The write path (DESIGN §2) runs under the inode's own lock, which
 * serializes every size change of the file; the namespace lock is taken only
 * briefly to read and publish the live size, never across pipe_append (which
 * may block while the pipeline is full):
 *
 *   - The offset the kernel sent is the only truth, also on O_APPEND
 *     descriptors: the kernel computes an O_APPEND write's offset from its
 *     i_size, which tracks the live size exactly (every size change goes
 *     through this mount), while the flags remembered at open cannot see a
 *     writer that cleared O_APPEND with fcntl(F_SETFL) -- that writer must
 *     still get EPERM below the end.
 *   - off == size: appended (pipe_append, then the live size grows).
 *   - off < size: the overlap is compared with the stored bytes (pipe_read);
 *     equal -> accepted unchanged and only the part past the end appended;
 *     different -> EPERM.
 *   - off > size: EPERM, except on a "fresh" descriptor (the open that created
 *     the file, or truncated it to empty with O_TRUNC): there the gap is
 *     appended as zero bytes first. This is what makes GNU cp of a sparse
 *     file work (cp seeks the destination over holes, then writes); it
 *     deviates from DESIGN §2 only for descriptors that are producing a new
 *     file. With the writeback cache the kernel may send page writes out of
 *     order on different session threads, so a write past the end first
 *     waits (bounded) for the gap to be filled by an earlier write.
 *
 *   - Growing truncate: zeros appended. With the writeback cache the kernel
 *     does not flush dirty pages before a truncate, so the zeros are owed
 *     (fs_inode.zext) instead: writes below the owed size may fill the gap
 *     with zeros first, and flush/fsync/release append what is still owed.
 *
 * Every refusal is counted by reason and logged once per inode and reason.
 *
 * Files unlinked while open are parked in the orphan directory (see
 * "orphans" below) so the store keeps their data until the last close.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs.h"

bz_mutex fs_ns_lock = {PTHREAD_MUTEX_INITIALIZER};

#define FS_REORDER_WAIT_NS (200ull * 1000 * 1000)
#define FS_CHUNK (64u << 10)

static const char zeros[FS_CHUNK];

static const char *const refusal_names[FS_REF_COUNT] = {
	[FS_REF_OVERWRITE] = "overwrite",
	[FS_REF_PAST_EOF] = "past_eof",
	[FS_REF_SHRINK] = "shrink",
	[FS_REF_O_TRUNC] = "o_trunc",
	[FS_REF_WORM] = "worm",
	[FS_REF_FALLOCATE] = "fallocate",
	[FS_REF_CONTROL] = "control",
};

const char *fs_refusal_name(enum fs_refusal r)
{
	return (unsigned)r < FS_REF_COUNT ? refusal_names[r] : "unknown";
}

static size_t hash_ino(uint64_t ino, size_t size)
{
	ino ^= ino >> 33;
	ino *= 0xff51afd7ed558ccdull;
	ino ^= ino >> 33;
	return (size_t)(ino & (size - 1));
}

struct fs_inode *fs_inode_find(struct fs *fs, uint64_t ino)
{
	struct fs_inode *ip;

	if (!fs->itab)
		return NULL;
	for (ip = fs->itab[hash_ino(ino, fs->itab_size)]; ip; ip = ip->next)
		if (ip->ino == ino)
			return ip;
	return NULL;
}

static int itab_grow(struct fs *fs) REQUIRES(fs_ns_lock)
{
	size_t nsize = fs->itab_size ? fs->itab_size * 2 : 256;
	struct fs_inode **nt = calloc(nsize, sizeof(*nt));

	if (!nt)
		return -ENOMEM;
	for (size_t i = 0; i < fs->itab_size; i++) {
		struct fs_inode *ip = fs->itab[i], *next;
		for (; ip; ip = next) {
			size_t h = hash_ino(ip->ino, nsize);
			next = ip->next;
			ip->next = nt[h];
			nt[h] = ip;
		}
	}
	free(fs->itab);
	fs->itab = nt;
	fs->itab_size = nsize;
	return 0;
}

/* Finds or creates (and pins) the entry of ino. */
static int itab_get(struct fs *fs, uint64_t ino, struct fs_inode **ret_ip) REQUIRES(fs_ns_lock)
{
	struct fs_inode *ip = fs_inode_find(fs, ino);
	size_t h;
	int r = 0;

	if (ip)
		goto out;
	if (fs->itab_count >= fs->itab_size) {
		r = itab_grow(fs);
		if (r < 0)
			goto out;
	}
	ip = calloc(1, sizeof(*ip));
	if (!ip) {
		r = -ENOMEM;
		goto out;
	}
	r = ns_pin(fs->ns, ino);
	if (r < 0) {
		free(ip);
		ip = NULL;
		goto out;
	}
	ip->ino = ino;
	bz_mutex_init(&ip->lock);
	bz_cond_init(&ip->grown);
	h = hash_ino(ino, fs->itab_size);
	ip->next = fs->itab[h];
	fs->itab[h] = ip;
	fs->itab_count++;
out:
	if (r == 0)
		*ret_ip = ip;
	return r;
}

static void orphan_reap(struct fs *fs, struct fs_inode *ip) REQUIRES(fs_ns_lock);

static void itab_release(struct fs *fs, struct fs_inode *ip) REQUIRES(fs_ns_lock)
{
	struct fs_inode **pp;

	if (ip->nlookup > 0 || ip->refs > 0)
		return;
	for (pp = &fs->itab[hash_ino(ip->ino, fs->itab_size)]; *pp; pp = &(*pp)->next) {
		if (*pp == ip) {
			*pp = ip->next;
			break;
		}
	}
	fs->itab_count--;
	(void)ns_unpin(fs->ns, ip->ino);
	pthread_cond_destroy(&ip->grown);
	bz_mutex_destroy(&ip->lock);
	free(ip);
}

int fs_inode_lookup(struct fs *fs, uint64_t ino)
{
	struct fs_inode *ip;
	int r = itab_get(fs, ino, &ip);

	if (r == 0)
		ip->nlookup++;
	return r;
}

void fs_inode_forget(struct fs *fs, uint64_t ino, uint64_t n)
{
	struct fs_inode *ip = fs_inode_find(fs, ino);

	if (!ip)
		return;
	ip->nlookup = ip->nlookup > n ? ip->nlookup - n : 0;
	itab_release(fs, ip);
}

int fs_inode_get(struct fs *fs, uint64_t ino, struct fs_inode **ret_ip)
{
	struct fs_inode *ip;
	int r = itab_get(fs, ino, &ip);

	if (r == 0) {
		ip->refs++;
		*ret_ip = ip;
	}
	return r;
}

void fs_inode_put(struct fs *fs, struct fs_inode *ip)
{
	if (!ip)
		return;
	if (ip->refs > 0)
		ip->refs--;
	if (ip->refs == 0 && ip->orphan)
		orphan_reap(fs, ip); /* the last close of a file unlinked while open */
	itab_release(fs, ip);
}

int fs_submit(struct fs *fs, struct ns_op *op)
{
	int r;

	/* After a pipeline failure the log takes nothing more: keep the live
	 * view from running ahead of it (only the op that met the failure
	 * can; it is refused too). */
	if (__atomic_load_n(&fs->failed, __ATOMIC_RELAXED))
		return -EROFS;
	r = fs_space_nsop(fs, op); /* space.c: ENOSPC before the live view changes */
	if (r < 0)
		return r;
	r = ns_apply(fs->ns, op);
	if (r < 0)
		return r;
	r = pipe_nsop(fs->pipe, op);
	if (r < 0) {
		/* The live view now holds an op the log does not: the pipeline
		 * has failed and refuses every further change anyway. */
		bz_err("namespace op %u on inode %llu not logged: %s", op->kind, (unsigned long long)op->ino,
		       strerror(-r));
		fs_note_error(fs, r);
		return r == -ESHUTDOWN ? -EROFS : r;
	}
	FS_COUNT(fs, nsops, 1);
	return 0;
}

/* ---- orphans: files unlinked while open ----
 * The store applies an unlink at once and drops the data of an inode that
 * loses its last link, but an open descriptor must keep reading and
 * appending. So such an unlink (or the replacement of an open file by a
 * rename) is logged as a rename into the orphan directory -- a real directory
 * named ".blazefs" in the root, unreachable because that name is the control
 * directory -- and the orphan is unlinked at its last close. A crash leaves
 * orphans behind; fs_orphans_cleanup removes them at the next mount. */

static void orphan_name(uint64_t ino, char *buf, size_t cap)
{
	snprintf(buf, cap, "o%llu", (unsigned long long)ino);
}

static int orphan_dir(struct fs *fs, uint64_t *ret_dir) REQUIRES(fs_ns_lock)
{
	struct ns_attr a;
	uint64_t dir;
	int r;

	if (fs->orphan_dir && ns_getattr(fs->ns, fs->orphan_dir, &a) == 0 && S_ISDIR(a.mode)) {
		*ret_dir = fs->orphan_dir;
		return 0;
	}
	r = ns_lookup(fs->ns, NS_ROOT_INO, FS_CTL_DIR_NAME, strlen(FS_CTL_DIR_NAME), &dir);
	if (r == -ENOENT) {
		int64_t now = bz_wall_ns();
		struct ns_op op = {
			.kind = NS_MKDIR, .parent = NS_ROOT_INO, .name = FS_CTL_DIR_NAME,
			.name_len = (uint32_t)strlen(FS_CTL_DIR_NAME), .mode = S_IFDIR | 0700,
			.atime_ns = now, .mtime_ns = now, .ctime_ns = now,
		};
		op.ino = ns_alloc_ino(fs->ns);
		r = fs_submit(fs, &op);
		dir = op.ino;
	}
	if (r < 0)
		return r;
	fs->orphan_dir = dir;
	*ret_dir = dir;
	return 0;
}

/* Parks parent/name (inode ino, entry ip) in the orphan directory. */
static int orphanize(struct fs *fs, uint64_t parent, const char *name, uint64_t ino, struct fs_inode *ip)
	REQUIRES(fs_ns_lock)
{
	char oname[32];
	uint64_t dir;
	struct ns_op op = {.kind = NS_RENAME, .parent = parent, .name = name, .name_len = (uint32_t)strlen(name)};
	int r = orphan_dir(fs, &dir);

	if (r < 0)
		return r;
	orphan_name(ino, oname, sizeof(oname));
	op.parent2 = dir;
	op.name2 = oname;
	op.name2_len = (uint32_t)strlen(oname);
	op.ctime_ns = bz_wall_ns();
	r = fs_submit(fs, &op);
	if (r == 0) {
		ip->orphan = true;
		bz_debug("inode %llu unlinked while open: parked as %s", (unsigned long long)ino, oname);
	}
	return r;
}

/* If parent/name is the last link of a regular file that is open, its entry. */
static struct fs_inode *open_last_link(struct fs *fs, uint64_t parent, const char *name, uint64_t *ret_ino)
	REQUIRES(fs_ns_lock)
{
	struct fs_inode *ip;
	struct ns_attr a;
	uint64_t ino;

	if (ns_lookup(fs->ns, parent, name, strlen(name), &ino) < 0 || ns_getattr(fs->ns, ino, &a) < 0)
		return NULL;
	if (!S_ISREG(a.mode) || a.nlink != 1)
		return NULL;
	ip = fs_inode_find(fs, ino);
	if (!ip || ip->refs == 0 || ip->orphan)
		return NULL;
	*ret_ino = ino;
	return ip;
}

int fs_unlink_or_orphan(struct fs *fs, uint64_t parent, const char *name)
{
	struct ns_op op = {.kind = NS_UNLINK, .parent = parent, .name = name, .name_len = (uint32_t)strlen(name)};
	uint64_t ino = 0;
	struct fs_inode *ip = open_last_link(fs, parent, name, &ino);

	if (ip)
		return orphanize(fs, parent, name, ino, ip);
	op.ctime_ns = bz_wall_ns();
	return fs_submit(fs, &op);
}

int fs_orphan_if_open(struct fs *fs, uint64_t parent, const char *name)
{
	uint64_t ino = 0;
	struct fs_inode *ip = open_last_link(fs, parent, name, &ino);

	if (!ip)
		return 0;
	return orphanize(fs, parent, name, ino, ip);
}

static void orphan_reap(struct fs *fs, struct fs_inode *ip)
{
	char oname[32];
	struct ns_op op = {.kind = NS_UNLINK};
	int r;

	ip->orphan = false;
	if (!fs->orphan_dir)
		return;
	orphan_name(ip->ino, oname, sizeof(oname));
	op.parent = fs->orphan_dir;
	op.name = oname;
	op.name_len = (uint32_t)strlen(oname);
	op.ctime_ns = bz_wall_ns();
	r = fs_submit(fs, &op);
	if (r < 0)
		bz_warn("orphan inode %llu not removed (%s): the next mount removes it", (unsigned long long)ip->ino,
			strerror(-r));
}

struct orphan_list {
	char (*names)[NS_NAME_MAX + 1];
	size_t n, cap;
	int err;
};

static int orphan_collect(void *arg, const char *name, size_t len, uint64_t ino, uint32_t mode, uint64_t cookie)
{
	struct orphan_list *l = arg;

	(void)ino;
	(void)cookie;
	if (S_ISDIR(mode))
		return 0;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		void *nv = realloc(l->names, ncap * sizeof(*l->names));
		if (!nv) {
			l->err = -ENOMEM;
			return 1;
		}
		l->names = nv;
		l->cap = ncap;
	}
	memcpy(l->names[l->n], name, len);
	l->names[l->n][len] = '\0';
	l->n++;
	return 0;
}

int fs_orphans_cleanup(struct fs *fs)
{
	struct orphan_list l = {0};
	uint64_t dir;
	int r = ns_lookup(fs->ns, NS_ROOT_INO, FS_CTL_DIR_NAME, strlen(FS_CTL_DIR_NAME), &dir);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	fs->orphan_dir = dir;
	r = ns_readdir(fs->ns, dir, 0, orphan_collect, &l);
	if (r == 0)
		r = l.err;
	for (size_t i = 0; r == 0 && i < l.n; i++) {
		struct ns_op op = {.kind = NS_UNLINK, .parent = dir, .name = l.names[i],
				   .name_len = (uint32_t)strlen(l.names[i]), .ctime_ns = bz_wall_ns()};
		r = fs_submit(fs, &op);
	}
	if (l.n)
		bz_info("removed %zu orphan file(s) left by the previous run", l.n);
	free(l.names);
	return r;
}

void fs_open_link(struct fs *fs, struct fs_open *of)
{
	of->prev = NULL;
	of->next = fs->opens;
	if (fs->opens)
		fs->opens->prev = of;
	fs->opens = of;
}

void fs_open_unlink(struct fs *fs, struct fs_open *of)
{
	if (of->prev)
		of->prev->next = of->next;
	else if (fs->opens == of)
		fs->opens = of->next;
	if (of->next)
		of->next->prev = of->prev;
	of->prev = of->next = NULL;
}

void fs_inode_table_free(struct fs *fs)
{
	while (fs->opens) {
		struct fs_open *of = fs->opens;
		fs_open_unlink(fs, of);
		free(of->ctl);
		free(of);
	}
	for (size_t i = 0; i < fs->itab_size; i++) {
		struct fs_inode *ip = fs->itab[i], *next;
		for (; ip; ip = next) {
			next = ip->next;
			pthread_cond_destroy(&ip->grown);
			bz_mutex_destroy(&ip->lock);
			free(ip);
		}
	}
	free(fs->itab);
	fs->itab = NULL;
	fs->itab_size = fs->itab_count = 0;
}

void fs_refuse(struct fs *fs, struct fs_inode *ip, uint64_t ino, enum fs_refusal why, const char *what)
{
	unsigned bit = 1u << why;

	static unsigned warned_no_inode; /* __atomic: reasons logged without an inode entry */
	unsigned *warned = ip ? &ip->warned : &warned_no_inode;

	FS_COUNT(fs, refusals[why], 1);
	if (__atomic_fetch_or(warned, bit, __ATOMIC_RELAXED) & bit)
		return;
	bz_warn("refused %s on inode %llu: %s (append-only%s)", what, (unsigned long long)ino,
		fs_refusal_name(why), why == FS_REF_WORM ? ", worm" : "");
}

void fs_note_error(struct fs *fs, int err)
{
	if (err == -EIO || err == -EROFS || err == -ENOSPC || err == -ESHUTDOWN)
		FS_COUNT(fs, errors, 1);
	if (err == -EROFS || err == -ESHUTDOWN) /* the pipeline's sticky failure */
		__atomic_store_n(&fs->failed, 1, __ATOMIC_RELAXED);
}

int fs_live_size(struct fs *fs, uint64_t ino, uint64_t *ret_size)
{
	struct ns_attr a;
	int r;

	bz_mutex_lock(&fs_ns_lock);
	r = ns_getattr(fs->ns, ino, &a);
	bz_mutex_unlock(&fs_ns_lock);
	if (r < 0)
		return r;
	if (S_ISDIR(a.mode))
		return -EISDIR;
	if (!S_ISREG(a.mode))
		return -EINVAL;
	*ret_size = a.size;
	return 0;
}

static int publish_size(struct fs *fs, uint64_t ino, uint64_t size) EXCLUDES(fs_ns_lock)
{
	int r;

	bz_mutex_lock(&fs_ns_lock);
	r = ns_set_size(fs->ns, ino, size, bz_wall_ns());
	bz_mutex_unlock(&fs_ns_lock);
	return r;
}

/* Appends len bytes at *size (the live end) in pipeline-sized pieces. */
static int append_bytes(struct fs *fs, uint64_t ino, uint64_t *size, const char *buf, size_t len)
{
	int r = 0;

	while (len > 0) {
		size_t n = len;
		r = pipe_append(fs->pipe, ino, *size, buf, n);
		if (r < 0)
			break;
		*size += n;
		buf += n;
		len -= n;
	}
	return r;
}

static int append_zeros(struct fs *fs, uint64_t ino, uint64_t *size, uint64_t count)
{
	int r = fs_space_check(fs, fs_space_zeros_cost(fs, count)); /* space.c */

	while (r == 0 && count > 0) {
		size_t n = (size_t)BZ_MIN(count, (uint64_t)FS_CHUNK);
		r = pipe_append(fs->pipe, ino, *size, zeros, n);
		if (r < 0)
			break;
		*size += n;
		count -= n;
	}
	return r;
}

/* Compares [off, off+len) with the stored bytes: 0 equal, 1 different. */
static int compare_stored(struct fs *fs, uint64_t ino, uint64_t off, const char *buf, size_t len)
{
	char *tmp = malloc(BZ_MIN(len, (size_t)FS_CHUNK));
	int r = 0;

	if (!tmp)
		return -ENOMEM;
	while (len > 0) {
		size_t want = BZ_MIN(len, (size_t)FS_CHUNK), got = 0;
		r = pipe_read(fs->pipe, ino, off, tmp, want, &got);
		if (r < 0)
			goto out;
		if (got != want) {
			bz_err("inode %llu: %zu stored bytes missing at offset %llu below the live end",
			       (unsigned long long)ino, want - got, (unsigned long long)(off + got));
			r = -EIO;
			goto out;
		}
		if (memcmp(tmp, buf, want) != 0) {
			r = 1;
			goto out;
		}
		off += want;
		buf += want;
		len -= want;
	}
out:
	free(tmp);
	return r;
}

ssize_t fs_file_write(struct fs *fs, const struct fs_open *of, const char *buf, size_t len, uint64_t off)
{
	struct fs_inode *ip = of->inode;
	uint64_t size = 0, start = 0;
	size_t skip = 0;
	ssize_t ret;
	int r;

	if (off > (uint64_t)INT64_MAX - len)
		return -EFBIG;
	r = fs_space_check(fs, fs_space_write_cost(fs, len));
	if (r < 0) {
		fs_note_error(fs, r);
		return r;
	}
	bz_cap_lock(&ip->lock, &fs_inode_cap);
	r = fs_live_size(fs, ip->ino, &size);
	if (r < 0)
		goto out;
	start = size;
	if (off > size && fs->opts.writeback_cache) {
		/* The kernel may deliver page writebacks out of order on different
		 * session threads: give the earlier ones a moment to land. */
		uint64_t deadline = bz_now_ns() + FS_REORDER_WAIT_NS;
		while (off > size && bz_now_ns() < deadline) {
			(void)bz_cap_cond_timedwait(&ip->grown, &ip->lock, &fs_inode_cap, deadline);
			r = fs_live_size(fs, ip->ino, &size);
			if (r < 0)
				goto out;
		}
		start = size;
	}
	if (off > size) {
		bool truncated = off <= ip->zext; /* zeros a growing truncate owes */
		if (!truncated && !of->fresh) {
			fs_refuse(fs, ip, ip->ino, FS_REF_PAST_EOF, "write past the end");
			r = -EPERM;
			goto out;
		}
		/* A fresh file being produced (cp of a sparse file): the hole
		 * reads as zeros, so store zeros. */
		if (!truncated) {
			FS_COUNT(fs, holes_filled, 1);
			FS_COUNT(fs, hole_bytes, off - size);
		}
		r = append_zeros(fs, ip->ino, &size, off - size);
		if (r < 0)
			goto out;
	}
	if (off < size) {
		size_t overlap = (size_t)BZ_MIN((uint64_t)len, size - off);
		r = compare_stored(fs, ip->ino, off, buf, overlap);
		if (r < 0)
			goto out;
		if (r > 0) {
			fs_refuse(fs, ip, ip->ino, FS_REF_OVERWRITE, "write below the end with different bytes");
			r = -EPERM;
			goto out;
		}
		skip = overlap;
		FS_COUNT(fs, overlap_bytes, overlap);
	}
	r = append_bytes(fs, ip->ino, &size, buf + skip, len - skip);
out:
	if (ip->zext && size >= ip->zext)
		ip->zext = 0;
	if (size != start) {
		/* Publish whatever reached the pipeline, even on a later failure. */
		int r2 = publish_size(fs, ip->ino, size);
		if (r2 < 0 && r == 0)
			r = r2;
		pthread_cond_broadcast(&ip->grown);
	}
	bz_cap_unlock(&ip->lock, &fs_inode_cap);
	if (r < 0) {
		fs_note_error(fs, r);
		ret = r == -ESHUTDOWN ? -EROFS : r;
	} else {
		FS_COUNT(fs, writes, 1);
		FS_COUNT(fs, write_bytes, len - skip);
		ret = (ssize_t)len;
	}
	return ret;
}

static int extend_locked(struct fs *fs, struct fs_inode *ip, uint64_t cur, uint64_t size) REQUIRES(fs_inode_cap)
{
	uint64_t start = cur;
	int r = append_zeros(fs, ip->ino, &cur, size - cur);

	FS_COUNT(fs, zero_extend_bytes, cur - start);
	if (cur != start) {
		int r2 = publish_size(fs, ip->ino, cur);
		if (r2 < 0 && r == 0)
			r = r2;
		pthread_cond_broadcast(&ip->grown);
	}
	if (r == 0)
		ip->zext = 0;
	return r;
}

int fs_file_truncate(struct fs *fs, struct fs_inode *ip, uint64_t size, bool defer)
{
	uint64_t cur = 0, eff;
	int r;

	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	bz_cap_lock(&ip->lock, &fs_inode_cap);
	r = fs_live_size(fs, ip->ino, &cur);
	if (r < 0)
		goto out;
	eff = BZ_MAX(cur, ip->zext);
	if (size == eff)
		goto out;
	if (size < eff) {
		fs_refuse(fs, ip, ip->ino, FS_REF_SHRINK, "shrinking truncate");
		r = -EPERM;
		goto out;
	}
	if (defer)
		ip->zext = size;
	else
		r = extend_locked(fs, ip, cur, size);
out:
	bz_cap_unlock(&ip->lock, &fs_inode_cap);
	if (r < 0)
		fs_note_error(fs, r);
	return r == -ESHUTDOWN ? -EROFS : r;
}

int fs_file_settle(struct fs *fs, struct fs_inode *ip)
{
	uint64_t cur = 0;
	int r = 0;

	bz_cap_lock(&ip->lock, &fs_inode_cap);
	if (ip->zext == 0)
		goto out;
	r = fs_live_size(fs, ip->ino, &cur);
	if (r < 0)
		goto out;
	if (cur >= ip->zext)
		ip->zext = 0;
	else
		r = extend_locked(fs, ip, cur, ip->zext);
out:
	bz_cap_unlock(&ip->lock, &fs_inode_cap);
	if (r < 0)
		fs_note_error(fs, r);
	return r == -ESHUTDOWN ? -EROFS : r;
}
