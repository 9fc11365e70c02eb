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
 *     appended first, as a hole (stored as nothing, reads as zeros). This is
 *     what makes GNU cp of a sparse
 *     file work (cp seeks the destination over holes, then writes); it
 *     deviates from DESIGN §2 only for descriptors that are producing a new
 *     file.
 *   - Growing truncate: a hole appended (instant, no space).
 *
 * With the writeback cache (-o writeback_cache, see wb.c) the kernel sends
 * dirty pages back in any order, so a page write past the end is held
 * (or, without room, the bytes below it are fetched from the kernel cache:
 * fetch_gap) until the bytes below it arrive, and judged by the rules above
 * only at flush/fsync/release, when every dirty page has been written back.
 * A truncate first fetches what the kernel still holds dirty (retrieve:
 * catch_up_kernel) so that a truncate below the kernel's own size is refused
 * as a shrink; a growing truncate's zeros (zext) are stored once the pages
 * below can no longer come: at settle or at the next truncate, where the
 * kernel caches nothing below zext. After a refusal the kernel's cached page is invalidated, and
 * the range between the live end and the end of the refused write (which
 * the kernel keeps as part of its size: ghost_end) is stored as zeros when
 * a later page needs it -- that is what readers of the kernel cache see.
 *
 * Every refusal is counted by reason and logged once per inode and reason.
 *
 * Files unlinked while the kernel references them or while open are parked
 * in the orphan directory (see "orphans" below) so the store keeps their
 * data until the last forget and the last close.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs.h"
#include "storage/bufpool.h"
#include "storage/record.h"

bz_mutex fs_ns_lock = {PTHREAD_MUTEX_INITIALIZER};



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
	ip->zlevel = fs_file_zlevel(fs, ino);
	ip->chunk = fs_file_chunk(fs, ino);
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

/* Frees what an entry nobody else can reach still holds. */
static void held_free_unlocked(struct fs *fs, struct fs_inode *ip) NO_TSA
{
	fs_held_free_all(fs, ip);
}

static void itab_release(struct fs *fs, struct fs_inode *ip) REQUIRES(fs_ns_lock)
{
	struct fs_inode **pp;

	if (ip->nlookup > 0 || ip->refs > 0)
		return;
	if (ip->orphan)
		orphan_reap(fs, ip); /* the last reference to a file unlinked while held */
	for (pp = &fs->itab[hash_ino(ip->ino, fs->itab_size)]; *pp; pp = &(*pp)->next) {
		if (*pp == ip) {
			*pp = ip->next;
			break;
		}
	}
	fs->itab_count--;
	fs_wb_forget(fs, ip);
	if (__atomic_load_n(&ip->held_bytes, __ATOMIC_RELAXED)) {
		/* the kernel forgot the inode: nothing below these will come */
		bz_warn("inode %llu: %llu bytes of page writes past a hole dropped", (unsigned long long)ip->ino,
			(unsigned long long)ip->held_bytes);
		held_free_unlocked(fs, ip);
	}
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
	itab_release(fs, ip);
}

/* charge: check the op against the reserve (space.c). Not for the ops an
 * unlink is made of (the orphan directory and the rename into it), which
 * must work on a full disk like every removal. */
static int submit(struct fs *fs, struct ns_op *op, bool charge) REQUIRES(fs_ns_lock)
{
	int r;

	/* After a pipeline failure the log takes nothing more: keep the live
	 * view from running ahead of it (only the op that met the failure
	 * can; it is refused too). */
	if (__atomic_load_n(&fs->failed, __ATOMIC_RELAXED) || fs->opts.read_only)
		return -EROFS;
	r = charge ? fs_space_nsop(fs, op) : 0; /* space.c: ENOSPC before the live view changes */
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

int fs_submit(struct fs *fs, struct ns_op *op) { return submit(fs, op, true); }

/* ---- orphans: files unlinked while held ----
 * The store applies an unlink at once and drops the data of an inode that
 * loses its last link, but an open descriptor must keep reading and
 * appending, and so must a descriptor opened later through a reference the
 * kernel still holds (an open racing the unlink, /proc/self/fd of an O_PATH
 * descriptor). So an unlink of the last link of a regular file with
 * nlookup > 0 or refs > 0 (or its replacement by a rename) is logged as a
 * rename into the orphan directory -- a real directory named ".blazefs" in
 * the root, unreachable because that name is the control directory -- and
 * the orphan is unlinked when its table entry goes (itab_release: the last
 * forget and the last close). A crash leaves orphans behind;
 * fs_orphans_cleanup removes them at the next mount. */

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
		int64_t now = fs_now_ns();
		struct ns_op op = {
			.kind = NS_MKDIR, .parent = NS_ROOT_INO, .name = FS_CTL_DIR_NAME,
			.name_len = (uint32_t)strlen(FS_CTL_DIR_NAME), .mode = S_IFDIR | 0700,
			.atime_ns = now, .mtime_ns = now, .ctime_ns = now,
		};
		op.ino = ns_alloc_ino(fs->ns);
		r = submit(fs, &op, false); /* part of an unlink */
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
	op.ctime_ns = fs_now_ns();
	/* an unlink: not charged (the entry moves; the bytes of its new name
	 * are within the reserve's fixed slack, space.c) */
	r = submit(fs, &op, false);
	if (r == 0) {
		ip->orphan = true;
		bz_debug("inode %llu unlinked while open: parked as %s", (unsigned long long)ino, oname);
	}
	return r;
}

/* If parent/name is the last link of a regular file that the kernel still
 * references (nlookup > 0: a dentry, an O_PATH descriptor, a cwd, an open
 * racing this unlink) or that is open (refs > 0), its entry. Open handles
 * alone are not enough: the kernel may send an OPEN for an inode it looked
 * up before the unlink (open racing unlink, /proc/self/fd of an O_PATH
 * descriptor), and that open must find the data. */
static struct fs_inode *held_last_link(struct fs *fs, uint64_t parent, const char *name, uint64_t *ret_ino)
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
	if (!ip || (ip->refs == 0 && ip->nlookup == 0) || ip->orphan)
		return NULL;
	*ret_ino = ino;
	return ip;
}

int fs_unlink_or_orphan(struct fs *fs, uint64_t parent, const char *name)
{
	struct ns_op op = {.kind = NS_UNLINK, .parent = parent, .name = name, .name_len = (uint32_t)strlen(name)};
	uint64_t ino = 0;
	struct fs_inode *ip = held_last_link(fs, parent, name, &ino);

	if (ip)
		return orphanize(fs, parent, name, ino, ip);
	op.ctime_ns = fs_now_ns();
	return fs_submit(fs, &op);
}

int fs_rename(struct fs *fs, struct ns_op *op)
{
	uint64_t ino = 0, src = 0;
	struct ns_attr a;
	struct fs_inode *ip = NULL;
	int r = 0;

	if (!(op->flags & NS_RENAME_EXCHANGE))
		ip = held_last_link(fs, op->parent2, op->name2, &ino);
	if (!ip)
		goto submit;
	/* The target is parked before the rename replaces it (the store would
	 * drop its data), so first refuse what ns_apply would refuse when a
	 * regular file is the target: a failed rename must change nothing. */
	if (op->flags & NS_RENAME_NOREPLACE) {
		r = -EEXIST;
		goto out;
	}
	r = ns_lookup(fs->ns, op->parent, op->name, op->name_len, &src);
	if (r == 0)
		r = ns_getattr(fs->ns, src, &a);
	if (r < 0)
		goto out;
	if (src == ino)
		goto submit; /* the same file: nothing is replaced */
	if (S_ISDIR(a.mode)) {
		r = -ENOTDIR;
		goto out;
	}
	r = orphanize(fs, op->parent2, op->name2, ino, ip);
	if (r < 0)
		goto out;
submit:
	r = fs_submit(fs, op);
out:
	return r;
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
	op.ctime_ns = fs_now_ns();
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
				   .name_len = (uint32_t)strlen(l.names[i]), .ctime_ns = fs_now_ns()};
		r = fs_submit(fs, &op);
	}
	if (l.n)
		bz_info("removed %zu orphan file(s) (unlinked while still in use)", l.n);
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
			held_free_unlocked(fs, ip);
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

static int publish_size(struct fs *fs, uint64_t ino, uint64_t size, int64_t time_ns) EXCLUDES(fs_ns_lock)
{
	int r;

	bz_mutex_lock(&fs_ns_lock);
	r = ns_set_size(fs->ns, ino, size, time_ns ? time_ns : fs_now_ns());
	bz_mutex_unlock(&fs_ns_lock);
	return r;
}

/* Appends len bytes at *size (the live end) in pipeline-sized pieces. */
static int append_bytes(struct fs *fs, struct fs_inode *ip, uint64_t *size, const char *buf, size_t len)
	REQUIRES(fs_inode_cap)
{
	int r = 0;

	while (len > 0) {
		size_t n = len;
		r = pipe_append_level(fs->pipe, ip->ino, *size, buf, n, ip->zlevel, ip->chunk, &ip->data_ns);
		if (r < 0)
			break;
		*size += n;
		buf += n;
		len -= n;
	}
	return r;
}

/* Appends count zero bytes at *size as a HOLE (storage v2: one record that
 * stores nothing and reads as zeros), so a growing truncate or a gap of up
 * to FS_MAX_FILE_BYTES is instant and takes no space; the reserve check
 * (ENOSPC) covers the record (DESIGN §1 rule 8). */
static int append_zeros_ex(struct fs *fs, struct fs_inode *ip, uint64_t *size, uint64_t count, bool charged)
	REQUIRES(fs_inode_cap)
{
	int r = charged ? 0 : fs_space_check(fs, fs_space_zeros_cost(fs, count)); /* space.c */

	while (r == 0 && count > 0) {
		uint64_t n = BZ_MIN(count, (uint64_t)REC_MAX_HOLE);
		r = pipe_hole(fs->pipe, ip->ino, *size, n, &ip->data_ns);
		if (r < 0)
			break;
		*size += n;
		count -= n;
	}
	return r;
}

static int append_zeros(struct fs *fs, struct fs_inode *ip, uint64_t *size, uint64_t count) REQUIRES(fs_inode_cap)
{
	return append_zeros_ex(fs, ip, size, count, false);
}

/* The zeros a growing truncate owes (writeback cache: below ip->zext): the
 * truncate was charged when it returned 0 (fs_file_truncate), so they are
 * not checked again. Checked again, a disk that filled meanwhile refused
 * them at the next flush, and a truncate that had succeeded was lost. */
static int append_owed_zeros(struct fs *fs, struct fs_inode *ip, uint64_t *size, uint64_t count)
	REQUIRES(fs_inode_cap)
{
	return append_zeros_ex(fs, ip, size, count, true);
}

/* Compares [off, off+len) with the stored bytes: 0 equal, 1 different.
 * With the writeback cache this runs for every page the kernel writes back
 * after the catch-up fetched it, so it reads in pieces of up to a WRITE's
 * size (one decompression per stored chunk, not one per 64 KiB of it) into
 * a pooled buffer (no fresh mapping per call). */
static int compare_stored(struct fs *fs, uint64_t ino, uint64_t off, const char *buf, size_t len)
{
	size_t cap = 0;
	char *tmp = bp_get(BZ_MIN(len, (size_t)FS_MAX_WRITE), &cap);
	int r = 0;

	if (!tmp)
		return -ENOMEM;
	while (len > 0) {
		size_t want = BZ_MIN(len, cap), got = 0;
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
	bp_put(tmp, cap);
	return r;
}

/* Places [off, off+len) with off <= *size: the overlap must equal the stored
 * bytes (1 if not: nothing changes), the rest is appended. */
static int place_at(struct fs *fs, struct fs_inode *ip, uint64_t *size, uint64_t off, const char *buf,
		    size_t len, size_t *ret_skip) REQUIRES(fs_inode_cap)
{
	size_t skip = 0;
	int r = 0;

	if (off < *size) {
		skip = (size_t)BZ_MIN((uint64_t)len, *size - off);
		r = compare_stored(fs, ip->ino, off, buf, skip);
		if (r != 0)
			return r;
		FS_COUNT(fs, overlap_bytes, skip);
	}
	*ret_skip = skip;
	return append_bytes(fs, ip, size, buf + skip, len - skip);
}

/* Has the kernel drop its cached pages of [off, end) of ip (notifier
 * thread): they hold bytes the store did not take. */
static void drop_cached(struct fs *fs, struct fs_inode *ip, uint64_t off, uint64_t end) EXCLUDES(fs_ns_lock)
{
	bz_mutex_lock(&fs_ns_lock);
	fs_wb_inval(fs, ip, off, end);
	bz_mutex_unlock(&fs_ns_lock);
}

/* Writeback cache: after a refusal the kernel keeps the refused page and,
 * if the write grew the file, its own larger size; have the page dropped
 * (notifier thread) and remember up to where the kernel's size may reach.
 * Without it, a write() the store refuses leaves no page behind (the kernel
 * marks the pages of a failed write not up to date), but a page written
 * back from a shared mapping keeps the refused bytes: drop it too. */
static void refused_page_err(struct fs *fs, struct fs_inode *ip, uint64_t size, uint64_t off, uint64_t end,
			     int err) REQUIRES(fs_inode_cap)
{
	if (!fs->opts.writeback_cache) {
		drop_cached(fs, ip, off, end);
		return;
	}
	/* every writer's next flush/fsync reports it (fs_file_refusal) */
	__atomic_store_n(&ip->ref_err, err, __ATOMIC_RELAXED);
	unsigned seq = __atomic_add_fetch(&ip->ref_seq, 1, __ATOMIC_RELEASE);
	if (err == -ENOSPC)
		__atomic_store_n(&ip->nospc_seq, seq, __ATOMIC_RELAXED);
	if (end > size)
		ip->ghost_end = BZ_MAX(ip->ghost_end, end);
	drop_cached(fs, ip, off, end);
}

static void refused_page(struct fs *fs, struct fs_inode *ip, uint64_t size, uint64_t off, uint64_t end)
	REQUIRES(fs_inode_cap)
{
	refused_page_err(fs, ip, size, off, end, -EPERM);
}

/* A writer now knows of every refusal of ip up to seq (told_seq only grows). */
static void told_up_to(struct fs_inode *ip, unsigned seq)
{
	unsigned told = __atomic_load_n(&ip->told_seq, __ATOMIC_RELAXED);

	while ((int)(seq - told) > 0 &&
	       !__atomic_compare_exchange_n(&ip->told_seq, &told, seq, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

static bool nospc_untold(const struct fs_inode *ip);

int fs_file_refusal(struct fs_open *of)
{
	struct fs_inode *ip = of->inode;
	unsigned seq, seen;

	if (!ip || (of->flags & O_ACCMODE) == O_RDONLY)
		return 0;
	seq = __atomic_load_n(&ip->ref_seq, __ATOMIC_ACQUIRE);
	seen = __atomic_exchange_n(&of->ref_seen, seq, __ATOMIC_RELAXED);
	if (seen == seq)
		return 0;
	told_up_to(ip, seq);
	return __atomic_load_n(&ip->ref_err, __ATOMIC_RELAXED);
}

void fs_file_opened(struct fs *fs, struct fs_open *of)
{
	struct fs_inode *ip = of->inode;

	/* (the open-files walk only when a refusal is untold: not per open) */
	if (!ip || (of->flags & O_ACCMODE) == O_RDONLY || !nospc_untold(ip))
		return;
	for (const struct fs_open *o = fs->opens; o; o = o->next)
		if (o->inode == ip && (o->flags & O_ACCMODE) != O_RDONLY)
			return; /* a writer is there: it is the one to tell */
	/* The first writer starts from what the kernel shows: a refusal no
	 * writer was there to hear of (a page of a shared mapping written
	 * back after the last close) does not hold its pages back. */
	told_up_to(ip, of->ref_seen);
}

/* Writeback cache: a page of this file was refused for lack of space and
 * no writer has been told yet (fs_inode nospc_seq). The kernel had
 * acknowledged that page's bytes and the ones after it to write(); what it
 * writes back after the refused page belongs to the same stretch the
 * writer will learn failed at its next fsync/close. Storing it would put
 * the refused range as zeros in the middle of the file with later bytes
 * after it (seen: a log with a 1 MiB run of zeros between two fsyncs).
 * So a page reaching past the live end is refused as well until then; the
 * file stays a prefix of what was written. Once told, a writer that goes
 * on writes where the kernel's size is: the refused range reads as zeros
 * (ghost_end), as it did through the kernel meanwhile. */
static bool nospc_untold(const struct fs_inode *ip)
{
	unsigned n = __atomic_load_n(&ip->nospc_seq, __ATOMIC_RELAXED);
	unsigned t = __atomic_load_n(&ip->told_seq, __ATOMIC_RELAXED);

	return n != 0 && (int)(n - t) > 0;
}

/* Appends the held extents the live end has reached, in order. A held
 * extent whose stored overlap differs is dropped and refused (its error
 * reaches the writer at the next fsync/close through *ret_refused). */
static int drain_held(struct fs *fs, struct fs_inode *ip, uint64_t *size, int *ret_refused) REQUIRES(fs_inode_cap)
{
	uint64_t hoff;
	const char *data;
	size_t hlen, skip;
	int r = 0;

	while (fs_held_first(ip, &hoff, &data, &hlen)) {
		if (hoff > *size) {
			if (hoff > ip->ghost_end || nospc_untold(ip))
				break; /* the bytes below it have not arrived yet (or
					* were refused: fs_file_settle refuses it) */
			/* below the end the kernel kept after a refusal: zeros */
			r = append_zeros(fs, ip, size, hoff - *size);
			if (r < 0)
				break;
		}
		r = place_at(fs, ip, size, hoff, data, hlen, &skip);
		if (r > 0) {
			fs_refuse(fs, ip, ip->ino, FS_REF_OVERWRITE, "write below the end with different bytes");
			refused_page(fs, ip, *size, hoff, hoff + hlen);
			*ret_refused = -EPERM;
			r = 0;
		}
		fs_held_pop(fs, ip);
		if (r < 0)
			break;
	}
	return r;
}

/* Ends a size-changing section: publishes the new live size. */
static int publish_grown(struct fs *fs, struct fs_inode *ip, uint64_t start, uint64_t size, int r)
	REQUIRES(fs_inode_cap)
{
	if (size != start) {
		/* Publish whatever reached the pipeline, even on a later failure. */
		int r2 = publish_size(fs, ip->ino, size, ip->data_ns);
		if (r2 < 0 && r == 0)
			r = r2;
		pthread_cond_broadcast(&ip->grown);
	}
	if (ip->ghost_end && size >= ip->ghost_end)
		ip->ghost_end = 0;
	if (ip->zext && size >= ip->zext)
		ip->zext = 0;
	return r;
}

/* Writeback cache, when a page past the end cannot be held: appends the
 * bytes the kernel caches for [*size, off) (dirty pages not written back
 * yet), fetched with FUSE_NOTIFY_RETRIEVE. The inode lock is released while
 * the kernel answers (the reply needs another session thread, and the
 * writes of this inode must not all wait for this one); one fetch per inode
 * at a time. Stops early at a page the kernel does not cache (a hole).
 * *size is the live end on return. */
static int fetch_gap(struct fs *fs, struct fs_inode *ip, uint64_t *size, uint64_t off) REQUIRES(fs_inode_cap)
{
	size_t cap = 0;
	char *buf = bp_get(FS_MAX_WRITE, &cap);
	int r = buf ? 0 : -ENOMEM, dummy = 0;

	while (r == 0 && *size < off) {
		uint64_t at = *size, cur = 0, start;
		size_t got = 0, skip;

		if (ip->fetching) {
			bz_cap_cond_wait(&ip->grown, &ip->lock, &fs_inode_cap);
			r = fs_live_size(fs, ip->ino, size);
			continue;
		}
		if (at < ip->ghost_end) { /* refused bytes: never fetched, zeros (see catch_up_kernel) */
			start = at;
			r = append_zeros(fs, ip, size, BZ_MIN(ip->ghost_end, off) - at);
			r = publish_grown(fs, ip, start, *size, r);
			continue;
		}
		ip->fetching = true;
		bz_cap_unlock(&ip->lock, &fs_inode_cap);
		r = fs_wb_retrieve(fs, ip->ino, at, buf, (size_t)BZ_MIN(off - at, (uint64_t)FS_MAX_WRITE), &got);
		bz_cap_lock(&ip->lock, &fs_inode_cap);
		ip->fetching = false;
		pthread_cond_broadcast(&ip->grown);
		if (r == 0)
			r = fs_live_size(fs, ip->ino, &cur);
		if (r < 0 || got == 0) {
			if (r == 0)
				*size = cur;
			break;
		}
		start = cur;
		if (at + got > cur)
			r = fs_space_check(fs, fs_space_write_cost(fs, at + got - cur)); /* like the writes they were */
		if (r == 0 && at + got > cur) {
			FS_COUNT(fs, retrieved_bytes, at + got - cur);
			r = place_at(fs, ip, &cur, at, buf, got, &skip);
			if (r > 0) /* the kernel's page changed meanwhile: judge the write as it is */
				r = 0;
		}
		if (r == 0 && ip->held)
			r = drain_held(fs, ip, &cur, &dummy);
		r = publish_grown(fs, ip, start, cur, r);
		*size = cur;
		if (dummy < 0)
			ip->wb_err = dummy;
	}
	bp_put(buf, cap);
	if (r == -EOPNOTSUPP)
		r = 0;
	return r;
}

/* Writeback cache: a page write past the live end (size) that may be
 * early -- the pages below it not arrived yet -- rather than past a refusal
 * the kernel still shows (ghost_end). */
static bool early_page(const struct fs *fs, const struct fs_inode *ip, bool writepage, uint64_t off, uint64_t size)
	REQUIRES(fs_inode_cap)
{
	return off > size && writepage && fs->opts.writeback_cache && off > ip->ghost_end;
}

/* Writeback cache: a page write past the live end waits (inode lock
 * released) while a page write of the same inode below it is in the daemon
 * (wb.c "Order"), so that it is appended, not held. *size is the live end
 * on return. */
static int wait_for_below(struct fs *fs, struct fs_inode *ip, uint64_t off, uint64_t *size) REQUIRES(fs_inode_cap)
{
	int r = 0;

	if (ip->fetching || !fs_wb_order_wait_begin(fs, ip->ino, off))
		return 0;
	FS_COUNT(fs, order_waits, 1);
	while (off > *size && !ip->fetching && fs_wb_order_below(fs, ip->ino, off)) {
		bz_cap_cond_wait(&ip->grown, &ip->lock, &fs_inode_cap);
		r = fs_live_size(fs, ip->ino, size);
		if (r < 0)
			break;
	}
	fs_wb_order_wait_end(fs);
	return r;
}

ssize_t fs_file_write(struct fs *fs, const struct fs_open *of, const char *buf, size_t len, uint64_t off,
		      bool writepage)
{
	struct fs_inode *ip = of->inode;
	uint64_t size = 0, start = 0;
	size_t skip = 0;
	int held_err = 0, slot = -1;
	ssize_t ret;
	int r;

	if (off > (uint64_t)INT64_MAX - len)
		return -EFBIG;
	r = fs_space_check(fs, fs_space_write_cost(fs, len));
	if (r < 0 && !(writepage && fs->opts.writeback_cache)) {
		fs_note_error(fs, r);
		if (writepage) /* a shared mapping's page: it keeps bytes not stored */
			drop_cached(fs, ip, off, off + len);
		return r;
	}
	if (writepage)
		__atomic_store_n(&ip->page_write_ns, bz_now_ns(), __ATOMIC_RELAXED);
	if (writepage && fs->opts.writeback_cache)
		slot = fs_wb_order_enter(fs, ip->ino, off);
	bz_cap_lock(&ip->lock, &fs_inode_cap);
	if (r < 0) { /* a page written back to a full disk: see out */
		if (fs_live_size(fs, ip->ino, &size) == 0)
			start = size;
		goto out;
	}
	r = fs_live_size(fs, ip->ino, &size);
	if (r < 0)
		goto out;
	start = size;
	if (early_page(fs, ip, writepage, off, size) && !nospc_untold(ip)) {
		r = wait_for_below(fs, ip, off, &size);
		if (r < 0)
			goto out;
	}
	start = size;
	/* (after the wait: the page below this one may have been refused) */
	if (writepage && fs->opts.writeback_cache && off + len > size && nospc_untold(ip)) {
		FS_COUNT(fs, nospc_pages, 1);
		r = -ENOSPC; /* refused like the page before it (see out) */
		goto out;
	}
	if (early_page(fs, ip, writepage, off, size)) {
		/* A page the kernel wrote back before the ones below it (or
		 * beyond a hole) with none of them in the daemon: hold it until
		 * they arrive or a flush/fsync shows they never will
		 * (fs_file_settle). */
		if (__atomic_load_n(&fs->held_total, __ATOMIC_RELAXED) + len <= fs->held_cap) {
			r = fs_held_insert(fs, ip, off, buf, len);
			if (r > 0) {
				fs_refuse(fs, ip, ip->ino, FS_REF_OVERWRITE, "write below the end with different bytes");
				refused_page(fs, ip, size, off, off + len);
				r = -EPERM;
			}
			if (r == 0)
				FS_COUNT(fs, held_writes, 1);
			skip = len; /* nothing appended yet */
			goto out;
		}
		/* No room to hold it: fetch the bytes below it from the kernel
		 * cache instead (what is not there is a hole: judged below). */
		r = fetch_gap(fs, ip, &size, off);
		if (r < 0)
			goto out;
	}
	if (off > size) {
		/* zeros the kernel shows after a refusal, or a growing truncate owes */
		bool ghost = off <= ip->ghost_end || off <= ip->zext;
		/* (a page write may come through any descriptor of the inode) */
		bool fresh = of->fresh || (writepage && __atomic_load_n(&ip->fresh_opens, __ATOMIC_RELAXED) > 0);
		if (!ghost && !fresh) {
			fs_refuse(fs, ip, ip->ino, FS_REF_PAST_EOF, "write past the end");
			refused_page(fs, ip, size, off, off + len);
			r = -EPERM;
			goto out;
		}
		/* A fresh file being produced (cp of a sparse file): the hole
		 * reads as zeros, so store zeros. */
		if (!ghost) {
			FS_COUNT(fs, holes_filled, 1);
			FS_COUNT(fs, hole_bytes, off - size);
		}
		r = append_zeros(fs, ip, &size, off - size);
		if (r < 0)
			goto out;
	}
	r = place_at(fs, ip, &size, off, buf, len, &skip);
	if (r > 0) {
		fs_refuse(fs, ip, ip->ino, FS_REF_OVERWRITE, "write below the end with different bytes");
		refused_page(fs, ip, size, off, off + len);
		r = -EPERM;
		goto out;
	}
	if (r == 0 && ip->held)
		r = drain_held(fs, ip, &size, &held_err);
out:
	/* Writeback cache, disk full: the kernel has already acknowledged
	 * these bytes to write() and keeps the page (clean after the error)
	 * and its larger size. Treat it as a refusal: the page is dropped and
	 * the range the kernel's size covers reads as zeros, as it will be
	 * stored (a hole, no space) -- so that the file shows what is stored,
	 * the catch-up never stores the bytes behind the reserve's back, and
	 * the writer's fsync/close gets the ENOSPC (the kernel's writeback
	 * error). */
	if (r == -ENOSPC && writepage && fs->opts.writeback_cache && off + len > size)
		refused_page_err(fs, ip, size, off, off + len, -ENOSPC);
	r = publish_grown(fs, ip, start, size, r);
	if (slot >= 0) {
		fs_wb_order_leave(fs, slot);
		pthread_cond_broadcast(&ip->grown); /* writes above it stop waiting for it */
	}
	bz_cap_unlock(&ip->lock, &fs_inode_cap);
	if (r == 0 && held_err < 0)
		r = held_err; /* a held page refused now: this reply carries it */
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
	int r = append_zeros(fs, ip, &cur, size - cur);

	FS_COUNT(fs, zero_extend_bytes, cur - start);
	return publish_grown(fs, ip, start, cur, r);
}

/* Where the zeros an earlier growing truncate owes from cur (below
 * ip->zext, where the kernel caches nothing) end: at its size, or at the
 * next held page below it. */
static uint64_t owed_zeros_end(struct fs_inode *ip, uint64_t cur) REQUIRES(fs_inode_cap)
{
	uint64_t hoff = ip->zext;
	const char *hdata;
	size_t hlen;

	if (fs_held_first(ip, &hoff, &hdata, &hlen))
		hoff = BZ_MIN(BZ_MAX(hoff, cur), ip->zext);
	return hoff;
}

/* Writeback cache, before a truncate to size (the kernel has no write of the
 * inode in flight then): stores the bytes it still holds dirty past the live
 * end, what is held here, and the zeros an earlier growing truncate owes
 * where the kernel caches nothing (what it would show there), so that the
 * decision that follows sees the kernel's size. A hole the kernel caches
 * nothing for past those ends the walk: what lies beyond it stays held.
 * 1 if the kernel has bytes at or past size (a shrink). */
static int catch_up_kernel(struct fs *fs, struct fs_inode *ip, uint64_t *cur, uint64_t size, int *ret_refused)
	REQUIRES(fs_inode_cap)
{
	uint64_t start = *cur, hoff;
	size_t cap = 0;
	char *buf = bp_get(FS_MAX_WRITE, &cap);
	int r = buf ? 0 : -ENOMEM, r2;

	while (r == 0) {
		size_t got = 0, skip;

		if (ip->held) {
			r = drain_held(fs, ip, cur, ret_refused);
			if (r < 0)
				break;
		}
		if (*cur < ip->ghost_end) {
			/* refused bytes the kernel may still cache: never fetch
			 * them; it shows zeros there once invalidated */
			r = append_zeros(fs, ip, cur, BZ_MIN(ip->ghost_end, size) - *cur);
			if (r < 0 || *cur >= size)
				break;
			continue;
		}
		r = fs_wb_retrieve(fs, ip->ino, *cur, buf, FS_MAX_WRITE, &got);
		if (r == -EOPNOTSUPP)
			r = 0; /* no session (unit tests): nothing to fetch */
		if (r < 0)
			break;
		if (got > 0) {
			if (*cur + got > size) {
				r = 1; /* the kernel's size is above the requested one */
				break;
			}
			FS_COUNT(fs, retrieved_bytes, got);
			r = place_at(fs, ip, cur, *cur, buf, got, &skip);
			if (r > 0) { /* a dirty page differs from the stored bytes */
				fs_refuse(fs, ip, ip->ino, FS_REF_OVERWRITE, "write below the end with different bytes");
				refused_page(fs, ip, *cur, *cur, *cur + got);
				*ret_refused = -EPERM;
				r = 0;
				break;
			}
			continue;
		}
		if (*cur >= ip->zext)
			break;
		/* Nothing cached below an earlier truncate's size: its zeros,
		 * up to that size or the next held page. */
		hoff = owed_zeros_end(ip, *cur);
		r = append_owed_zeros(fs, ip, cur, hoff - *cur);
		FS_COUNT(fs, zero_extend_bytes, hoff - start);
	}
	bp_put(buf, cap);
	if (r < 0)
		return publish_grown(fs, ip, start, *cur, r);
	r2 = publish_grown(fs, ip, start, *cur, 0);
	return r2 < 0 ? r2 : r;
}

/* What is still held past the live end lies beyond a gap nobody wrote
 * (every dirty page has been written back): zeros up to the size a growing
 * truncate asked for; beyond it, on a file a descriptor created or emptied
 * the gap becomes zeros (cp of a sparse file), else the held pages are
 * refused as writes past the end. Then the truncate's remaining zeros. */
static int settle_held(struct fs *fs, struct fs_inode *ip, uint64_t *cur, bool fresh, int *ret_refused)
	REQUIRES(fs_inode_cap)
{
	uint64_t hoff;
	const char *data;
	size_t hlen;
	int r = drain_held(fs, ip, cur, ret_refused);

	while (r == 0 && fs_held_first(ip, &hoff, &data, &hlen)) {
		if (nospc_untold(ip)) {
			/* after a page refused for lack of space: refused too */
			FS_COUNT(fs, nospc_pages, 1);
			refused_page_err(fs, ip, *cur, hoff, hoff + hlen, -ENOSPC);
			fs_held_pop(fs, ip);
			*ret_refused = -ENOSPC;
			continue;
		}
		if (hoff <= ip->zext || fresh) {
			uint64_t from = *cur;
			r = hoff <= ip->zext ? append_owed_zeros(fs, ip, cur, hoff - *cur) :
					       append_zeros(fs, ip, cur, hoff - *cur);
			if (hoff > ip->zext) {
				FS_COUNT(fs, holes_filled, 1);
				FS_COUNT(fs, hole_bytes, *cur - BZ_MAX(from, ip->zext));
			}
			if (r == 0)
				r = drain_held(fs, ip, cur, ret_refused);
			continue;
		}
		fs_refuse(fs, ip, ip->ino, FS_REF_PAST_EOF, "write past the end");
		refused_page(fs, ip, *cur, hoff, hoff + hlen);
		fs_held_pop(fs, ip);
		*ret_refused = -EPERM;
	}
	if (r == 0 && *cur < ip->zext) {
		uint64_t from = *cur;
		r = append_owed_zeros(fs, ip, cur, ip->zext - *cur);
		FS_COUNT(fs, zero_extend_bytes, *cur - from);
	}
	if (r == 0)
		ip->zext = 0;
	return r;
}

/* A descriptor of ip open for writing (the kernel may hold dirty pages). */
static bool has_writer(struct fs *fs, const struct fs_inode *ip) EXCLUDES(fs_ns_lock)
{
	bool w = false;

	bz_mutex_lock(&fs_ns_lock);
	for (const struct fs_open *of = fs->opens; of && !w; of = of->next)
		w = of->inode == ip && (of->flags & O_ACCMODE) != O_RDONLY;
	bz_mutex_unlock(&fs_ns_lock);
	return w;
}

int fs_file_truncate(struct fs *fs, struct fs_inode *ip, uint64_t size)
{
	uint64_t cur = 0, eff;
	int held_err = 0;
	int r;

	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	bz_cap_lock(&ip->lock, &fs_inode_cap);
	r = fs_live_size(fs, ip->ino, &cur);
	if (r < 0)
		goto out;
	eff = cur;
	if (fs->opts.writeback_cache) {
		/* The kernel does not write dirty pages back before a truncate:
		 * fetch them, and judge against the kernel's size. */
		if (size >= cur) { /* also to the live size: the kernel may be past it */
			r = catch_up_kernel(fs, ip, &cur, size, &held_err);
			if (r < 0)
				goto out;
		}
		eff = BZ_MAX(BZ_MAX(cur, ip->zext), fs_held_last_end(ip));
		if (r > 0)
			eff = size + 1; /* the kernel has bytes past size */
		r = 0;
		if (held_err < 0)
			ip->wb_err = held_err; /* for the writers' next fsync/close */
	}
	if (size == eff)
		goto out;
	if (size < eff) {
		fs_refuse(fs, ip, ip->ino, FS_REF_SHRINK, "shrinking truncate");
		r = -EPERM;
		goto out;
	}
	if (fs->opts.writeback_cache && (ip->held || ip->zext || has_writer(fs, ip))) {
		/* Charge the owed zeros now, so that a truncate the disk cannot
		 * hold fails here with ENOSPC and changes nothing, as without the
		 * cache (settling later would leave the kernel with the new size). */
		r = fs_space_check(fs, fs_space_zeros_cost(fs, size - eff));
		if (r == 0)
			ip->zext = size; /* zeros owed: pages below may still be dirty (settle pays them) */
	} else {
		/* no descriptor open for writing: the kernel wrote every dirty
		 * page back at the last close, so the zeros go now (a sync
		 * need not find the inode among the open files) */
		r = extend_locked(fs, ip, cur, size);
	}
out:
	bz_cap_unlock(&ip->lock, &fs_inode_cap);
	if (r < 0)
		fs_note_error(fs, r);
	return r == -ESHUTDOWN ? -EROFS : r;
}

/* Writeback cache, unmount: pays what every inode still owes -- the zeros
 * of a growing truncate made by path (no descriptor whose flush or release
 * would settle them), and held pages. The session loop has ended, so the
 * kernel has written back all it had; nothing more can come below them. */
void fs_settle_all(struct fs *fs)
{
	struct fs_inode **v = NULL;
	size_t n = 0;

	bz_mutex_lock(&fs_ns_lock);
	v = calloc(fs->itab_count ? fs->itab_count : 1, sizeof(*v));
	for (size_t i = 0; v && i < fs->itab_size; i++)
		for (struct fs_inode *ip = fs->itab[i]; ip && n < fs->itab_count; ip = ip->next)
			if (fs_inode_get(fs, ip->ino, &v[n]) == 0)
				n++;
	bz_mutex_unlock(&fs_ns_lock);
	for (size_t i = 0; i < n; i++) {
		struct fs_open of = {.inode = v[i]};
		int r = fs_file_settle(fs, &of);
		if (r < 0)
			bz_warn("inode %llu: what the writeback cache still owed at unmount: %s",
				(unsigned long long)v[i]->ino, strerror(-r));
	}
	bz_mutex_lock(&fs_ns_lock);
	for (size_t i = 0; i < n; i++)
		fs_inode_put(fs, v[i]);
	bz_mutex_unlock(&fs_ns_lock);
	free(v);
}

/* Stores what the kernel caches contiguously from the live end (retrieve),
 * with the held pages that then fit. Unlike catch_up_kernel (a truncate,
 * while the kernel writes nothing back), writers may be running: so it
 * stops at the first byte the kernel does not cache, never stores owed or
 * refused-range zeros, and leaves the rest to the writers' flush/fsync. */
static int fetch_cached(struct fs *fs, struct fs_inode *ip, uint64_t *cur, int *ret_refused) REQUIRES(fs_inode_cap)
{
	size_t cap = 0;
	char *buf = bp_get(FS_MAX_WRITE, &cap);
	int r = buf ? 0 : -ENOMEM;

	while (r == 0 && *cur >= ip->ghost_end) {
		size_t got = 0, skip;

		r = fs_wb_retrieve(fs, ip->ino, *cur, buf, FS_MAX_WRITE, &got);
		if (r == -EOPNOTSUPP)
			r = 0; /* no session (unit tests) */
		if (r < 0)
			break;
		if (got == 0) {
			/* Nothing cached below an earlier growing truncate's size:
			 * its zeros (what the kernel shows there), up to that size
			 * or the next held page, then what the kernel caches past
			 * them, as catch_up_kernel does; else a sync would not
			 * cover the truncate nor anything appended after it. */
			uint64_t hoff, from = *cur;
			if (*cur >= ip->zext)
				break;
			hoff = owed_zeros_end(ip, *cur);
			if (hoff <= *cur && !ip->held)
				break;
			r = append_owed_zeros(fs, ip, cur, hoff - *cur);
			FS_COUNT(fs, zero_extend_bytes, *cur - from);
			if (r == 0 && ip->held)
				r = drain_held(fs, ip, cur, ret_refused);
			if (r == 0 && *cur == from)
				break; /* no progress (a held page the drain keeps) */
			continue;
		}
		/* charged like the writes they were: on a short disk they stay
		 * in the kernel, whose writeback gets the ENOSPC */
		r = fs_space_check(fs, fs_space_write_cost(fs, got));
		if (r < 0)
			break;
		FS_COUNT(fs, retrieved_bytes, got);
		r = place_at(fs, ip, cur, *cur, buf, got, &skip);
		if (r > 0) { /* a cached page differs from the stored bytes */
			fs_refuse(fs, ip, ip->ino, FS_REF_OVERWRITE, "write below the end with different bytes");
			refused_page(fs, ip, *cur, *cur, *cur + got);
			*ret_refused = -EPERM;
			r = 0;
			break;
		}
		if (r == 0 && ip->held)
			r = drain_held(fs, ip, cur, ret_refused);
	}
	bp_put(buf, cap);
	return r;
}

/* Fetches what the kernel caches past the stored end of ip (the writeback
 * cache's dirty pages) and appends it; `why` names the caller in a warning. */
static void catch_up_one(struct fs *fs, struct fs_inode *ip, const char *why) EXCLUDES(fs_ns_lock)
{
	uint64_t cur = 0, start;
	int held_err = 0, r;

	bz_cap_lock(&ip->lock, &fs_inode_cap);
	r = fs_live_size(fs, ip->ino, &cur);
	start = cur;
	if (r == 0)
		r = fetch_cached(fs, ip, &cur, &held_err);
	r = publish_grown(fs, ip, start, cur, r);
	if (held_err < 0)
		ip->wb_err = held_err; /* for the writer's next fsync/close */
	bz_cap_unlock(&ip->lock, &fs_inode_cap);
	if (r < 0 && r != -ENOSPC) /* short of space: space.c said so once */
		bz_warn("inode %llu: fetching the kernel's cached pages for %s: %s", (unsigned long long)ip->ino, why,
			strerror(-r));
}

/* lseek(SEEK_DATA/SEEK_HOLE) with the writeback cache: the kernel does not
 * write its dirty pages back first, so a file open for writing is caught up
 * (as for a directory fsync) before the daemon answers from its own size. */
void fs_catch_up_ino(struct fs *fs, uint64_t ino)
{
	struct fs_inode *ip = NULL;

	bz_mutex_lock(&fs_ns_lock);
	for (struct fs_open *of = fs->opens; of; of = of->next)
		if (of->inode && of->inode->ino == ino && (of->flags & O_ACCMODE) != O_RDONLY) {
			if (fs_inode_get(fs, ino, &ip) < 0)
				ip = NULL;
			break;
		}
	bz_mutex_unlock(&fs_ns_lock);
	if (!ip)
		return;
	catch_up_one(fs, ip, "lseek");
	bz_mutex_lock(&fs_ns_lock);
	fs_inode_put(fs, ip);
	bz_mutex_unlock(&fs_ns_lock);
}

/* The kernel does not send its dirty pages for an fsync of a directory (nor
 * for sync/syncfs), so `sync MOUNTPOINT` would not cover what writers still
 * have in the kernel cache: fetch it first, as a truncate does. Only files
 * open for writing can have dirty pages (the kernel writes them back at
 * every close). A refused page is kept for that file's next fsync/close.
 * The catch-up thread (wb.c) calls it periodically for writers that make no
 * call at all, for descriptors open at least one period: a file written and
 * closed within that time (cp, echo >>) is written back by the kernel at its
 * close anyway, and fetching its pages while the kernel still writes them
 * only doubles the work (and its times: the kernel then sends a SETATTR);
 * nor a file the kernel sent a page write of within that time: its
 * writeback is under way (a busy writer's pages are written back as the
 * kernel's dirty limits require; fetching them too made the logger bench
 * compare every byte twice). */
void fs_catch_up_all(struct fs *fs, const char *why, uint64_t min_age_ns)
{
	struct fs_inode **v = NULL;
	size_t n = 0, cap = 0;
	uint64_t now = bz_now_ns();

	bz_mutex_lock(&fs_ns_lock);
	for (struct fs_open *of = fs->opens; of; of = of->next)
		if (of->inode && (of->flags & O_ACCMODE) != O_RDONLY)
			cap++;
	v = cap ? calloc(cap, sizeof(*v)) : NULL;
	for (struct fs_open *of = fs->opens; v && of; of = of->next) {
		bool seen = false;
		if (!of->inode || (of->flags & O_ACCMODE) == O_RDONLY || now - of->opened_ns < min_age_ns ||
		    now - __atomic_load_n(&of->inode->page_write_ns, __ATOMIC_RELAXED) < min_age_ns)
			continue;
		for (size_t i = 0; i < n && !seen; i++)
			seen = v[i] == of->inode;
		if (!seen && n < cap && fs_inode_get(fs, of->inode->ino, &v[n]) == 0)
			n++;
	}
	bz_mutex_unlock(&fs_ns_lock);
	for (size_t i = 0; i < n; i++)
		catch_up_one(fs, v[i], why);
	bz_mutex_lock(&fs_ns_lock);
	for (size_t i = 0; i < n; i++)
		fs_inode_put(fs, v[i]);
	bz_mutex_unlock(&fs_ns_lock);
	free(v);
}

bool fs_file_has_pending(struct fs_inode *ip)
{
	bool r;

	bz_cap_lock(&ip->lock, &fs_inode_cap);
	r = ip->held || ip->zext;
	bz_cap_unlock(&ip->lock, &fs_inode_cap);
	return r;
}

/* Writeback cache: the bytes a settle stores were written by the
 * application before its last time change. The kernel sends that change
 * (utimens, or its own times of the writes) as a setattr before the
 * flush that settles, so the data records after it would set mtime and
 * ctime to their batch's time at replay: a `cp -a` of a sparse file (its
 * pages past the hole are held until the flush) lost its futimens time
 * after a remount. The times from before the settle are logged again
 * after its records. */
static int keep_times(struct fs *fs, struct fs_inode *ip, int64_t mtime_ns, int64_t ctime_ns)
	REQUIRES(fs_inode_cap)
{
	struct ns_op op = {.kind = NS_SETATTR, .ino = ip->ino, .flags = NS_SET_MTIME};
	int r;

	op.mtime_ns = mtime_ns;
	op.ctime_ns = ctime_ns;
	bz_mutex_lock(&fs_ns_lock);
	r = fs_submit(fs, &op);
	bz_mutex_unlock(&fs_ns_lock);
	return r;
}

int fs_file_settle(struct fs *fs, struct fs_open *of)
{
	struct fs_inode *ip = of->inode;
	uint64_t cur = 0, start;
	struct ns_attr before;
	int held_err = 0;
	int r = 0;

	bz_cap_lock(&ip->lock, &fs_inode_cap);
	held_err = ip->wb_err;
	ip->wb_err = 0;
	if (!ip->held && !ip->zext)
		goto out;
	r = fs_live_size(fs, ip->ino, &cur);
	if (r < 0)
		goto out;
	bz_mutex_lock(&fs_ns_lock);
	r = ns_getattr(fs->ns, ip->ino, &before);
	bz_mutex_unlock(&fs_ns_lock);
	if (r < 0)
		goto out;
	start = cur;
	r = settle_held(fs, ip, &cur, of->fresh || __atomic_load_n(&ip->fresh_opens, __ATOMIC_RELAXED) > 0, &held_err);
	r = publish_grown(fs, ip, start, cur, r);
	if (r == 0 && cur != start)
		r = keep_times(fs, ip, before.mtime_ns, before.ctime_ns);
out:
	bz_cap_unlock(&ip->lock, &fs_inode_cap);
	if (r == 0)
		r = held_err;
	/* refusals since this descriptor last asked: marked seen whatever
	 * this call returns, so one refusal is reported to it once */
	held_err = fs_file_refusal(of);
	if (r == 0)
		r = held_err;
	if (r < 0)
		fs_note_error(fs, r);
	return r == -ESHUTDOWN ? -EROFS : r;
}
