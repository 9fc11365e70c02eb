/* scrub.c — BZ_IOC_SCRUB: verify a range of a file against the disk, online;
 * BZ_IOC_SCRUB_META: verify metadata pages (the superblocks and the
 * namespace checkpoint chain, or one file's INDEX chain) the same way
 * (the daemon half of `blazectl scrub`; the ABI is fs/ioctl.h).
 *
 * Metadata requests call store_scrub_meta (storage/store_scrub.c: cache
 * bypassed, no store lock across any page read, a checkpoint during the
 * call detected through the superblock write sequence and answered EAGAIN)
 * SCRUB_META_STEP pages at a time, with an interrupt check in between, up
 * to the caller's `len`; the caller paces itself as for data.
 *
 * The request runs on the session thread that received it, never on the
 * commit thread. It reads the range through the ordinary read path
 * (pipe_read -> store_read: index, page checksums, record xxh3) with the
 * thread's page reads bypassing the pager cache (store_scrub_thread), in
 * pieces of SCRUB_PIECE bytes, and checks for an interrupt between pieces.
 * A piece that fails with EIO is narrowed to 4 KiB blocks: the first
 * damaged block, then the following damaged blocks up to the first good one
 * (or the end of the call's range), make the reported range. So damage is named in whole 4 KiB
 * blocks of the file, the granularity a reader sees it at.
 *
 * Holes (gaps between stored chunks, store_seek) are skipped: they store
 * nothing, and `done` counts them as verified. When the file's index cannot
 * be read (store_seek fails with EIO: a damaged INDEX page), nothing past
 * pos can be located: the rest of the file is reported as one damaged
 * range. One call covers at most
 * SCRUB_MAX_CALL bytes so each request stays
 * short (the caller paces itself: blazectl's --rate). Nothing here takes a
 * lock beyond what a read takes: the commit thread waits for a scrub no
 * longer than for any reader.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fuse_lowlevel.h>

#include "fs.h"
#include "ioctl.h"

#define SCRUB_PIECE (1u << 20)
#define SCRUB_BLOCK 4096u
#define SCRUB_MAX_CALL (64ull << 20)
#define SCRUB_META_STEP 64u /* pages per store_scrub_meta call (interrupt checks between) */
#define PAGER_BYTES 4096u   /* a metadata page (storage/pager.h PAGER_PAGE_SIZE) */

/* Reads [off, off+len) with cache bypass; 0, -EIO for damage, other errors. */
static int scrub_read(struct fs *fs, uint64_t ino, uint64_t off, uint8_t *buf, size_t len, size_t *ret_n)
{
	int r;

	store_scrub_thread(true);
	r = pipe_read(fs->pipe, ino, off, buf, len, ret_n);
	store_scrub_thread(false);
	return r;
}

/* Verifies a->off .. a->off + a->len of ino (capped at the size and at
 * SCRUB_MAX_CALL) and fills the out fields. Returns 0 or a negative errno
 * that is not damage (EINTR, ENOMEM, ...). */
static int scrub_range(struct fs *fs, uint64_t ino, struct bz_scrub_arg *a)
{
	uint64_t size, pos, end;
	uint8_t *buf = NULL;
	size_t n;
	int r;

	r = fs_live_size(fs, ino, &size);
	if (r < 0)
		goto out;
	a->size = size;
	a->done = a->bad_off = a->bad_len = 0;
	a->err = 0;
	pos = a->off;
	end = a->len > SCRUB_MAX_CALL ? pos + SCRUB_MAX_CALL : pos + a->len;
	if (end < pos || end > size)
		end = size;
	buf = malloc(SCRUB_PIECE);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	while (pos < end) {
		uint64_t data, hole;
		size_t want;

		if (fs_interrupted()) {
			r = -EINTR;
			goto out;
		}
		/* Holes store nothing: skip them (a growing truncate to 8 TiB is
		 * one gap). No stored data after pos (the rest is a hole or still
		 * in the pipeline, whose bytes the WAL checks): done. ENOENT: the
		 * store has not applied the file's creation yet (a file written
		 * and closed just now): all of it is still in the pipeline. */
		r = store_seek(fs->store, ino, pos, SEEK_DATA, &data);
		if (r == -ENXIO || r == -ENOENT) {
			pos = end;
			break;
		}
		if (r == 0)
			r = store_seek(fs->store, ino, data, SEEK_HOLE, &hole);
		if (r == -EIO || r == -EBADMSG) {
			/* The file's index cannot be read (a damaged INDEX page:
			 * BZ_IOC_SCRUB_META names it): no chunk after pos can be
			 * located, so the rest of the file is one damaged range. */
			a->bad_off = pos & ~(uint64_t)(SCRUB_BLOCK - 1);
			a->bad_len = ((size + SCRUB_BLOCK - 1) & ~(uint64_t)(SCRUB_BLOCK - 1)) - a->bad_off;
			a->err = -EIO;
			r = 0;
			break;
		}
		if (r < 0)
			goto out;
		if (data >= end) {
			pos = end;
			break;
		}
		pos = data;
		want = (size_t)BZ_MIN((uint64_t)SCRUB_PIECE, BZ_MIN(hole, end) - pos);
		r = scrub_read(fs, ino, pos, buf, want, &n);
		if (r == 0) {
			if (n == 0)
				break; /* the size changed under us: nothing more to verify */
			pos += n;
			continue;
		}
		if (r != -EIO && r != -EBADMSG)
			goto out;
		/* Damage inside this piece: find it block by block. */
		uint64_t blk = pos & ~(uint64_t)(SCRUB_BLOCK - 1), pend = end; /* damage may run past the piece */
		for (; blk < pend; blk += SCRUB_BLOCK) {
			size_t bl = (size_t)BZ_MIN((uint64_t)SCRUB_BLOCK, size - blk);
			r = scrub_read(fs, ino, blk, buf, bl, &n);
			if (r == -EIO || r == -EBADMSG) {
				if (a->bad_len == 0) {
					a->bad_off = blk;
					a->err = -EIO;
				}
				a->bad_len = blk + bl - a->bad_off;
			} else if (r < 0) {
				goto out;
			} else if (a->bad_len) {
				break; /* the damaged range ended */
			} else {
				pos = blk + bl;
			}
		}
		r = 0;
		break;
	}
	a->done = pos > a->off ? pos - a->off : 0;
	r = 0;
out:
	free(buf);
	return r;
}

/* BZ_IOC_SCRUB_META: up to a->len bytes of metadata pages of one walk
 * (store_scrub_meta: no store lock across any read, cache bypassed), with
 * an interrupt check every SCRUB_META_STEP pages. */
static int scrub_meta(struct fs *fs, uint64_t ino, struct bz_scrub_meta_arg *a)
{
	struct store_scrub_meta c = {.gen = a->gen, .pos = a->pos, .pgno = a->pgno, .bytes = a->bytes};
	uint64_t want = a->len / PAGER_BYTES, done = 0;
	int r = 0;

	a->done = a->total = a->index_total = a->bad_pgno = 0;
	a->flags = a->bad = 0;
	if (a->walk == BZ_META_NS && a->len == 0)
		a->index_total = store_index_bytes(fs->store);
	if (want == 0 && a->len)
		want = 1;
	do {
		if (fs_interrupted()) {
			r = -EINTR;
			goto out;
		}
		uint64_t step = BZ_MIN(want - done, (uint64_t)SCRUB_META_STEP);
		r = store_scrub_meta(fs->store, a->walk == BZ_META_NS ? STORE_SCRUB_NS : STORE_SCRUB_INDEX, ino, step, &c);
		if (r == -EAGAIN && done)
			r = 0; /* keep what earlier steps verified; the caller calls again */
		if (r < 0)
			goto out;
		done += c.done;
		if (c.restarted)
			a->flags |= BZ_META_RESTARTED;
	} while (done < want && !c.end && !c.bad && c.done);
	a->gen = c.gen;
	a->pos = c.pos;
	a->pgno = c.pgno;
	a->bytes = c.bytes;
	a->done = done * PAGER_BYTES;
	a->total = c.total * PAGER_BYTES;
	a->bad = c.bad;
	a->bad_pgno = c.bad_pgno;
	if (c.end)
		a->flags |= BZ_META_END;
out:
	return r;
}

static void ioctl_meta(fuse_req_t req, struct fs *fs, fuse_ino_t ino, struct fs_open *of, unsigned flags,
		       const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct bz_scrub_meta_arg a;
	int r;

	if (in_bufsz != sizeof(a) || out_bufsz != sizeof(a)) {
		r = -EINVAL;
		goto out;
	}
	memcpy(&a, in_buf, sizeof(a));
	if ((a.walk != BZ_META_NS && a.walk != BZ_META_INDEX) || a.reserved) {
		r = -EINVAL;
		goto out;
	}
	/* an index belongs to a regular file (a directory's fh is not an fs_open) */
	if (a.walk == BZ_META_INDEX && ((flags & FUSE_IOCTL_DIR) || !of || !of->inode)) {
		r = -ENOTTY;
		goto out;
	}
	r = scrub_meta(fs, ino, &a);
	if (r == 0) {
		if (a.bad && a.bad != BZ_META_BAD_STALE)
			__atomic_fetch_add(&fs->ctr.scrub_damaged, 1, __ATOMIC_RELAXED);
		fuse_reply_ioctl(req, 0, &a, sizeof(a));
		return;
	}
out:
	fuse_reply_err(req, -r);
}

void fs_op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg, struct fuse_file_info *fi,
		 unsigned flags, const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_open *of = fi && !(flags & FUSE_IOCTL_DIR) ? (struct fs_open *)(uintptr_t)fi->fh : NULL;
	struct bz_scrub_arg a;
	int r;

	(void)arg;
	if (flags & FUSE_IOCTL_COMPAT) {
		r = -ENOSYS;
		goto out;
	}
	if (cmd == BZ_IOC_SCRUB_META) {
		ioctl_meta(req, fs, ino, of, flags, in_buf, in_bufsz, out_bufsz);
		return;
	}
	if (cmd != BZ_IOC_SCRUB || (flags & FUSE_IOCTL_DIR) || !of || !of->inode) {
		r = -ENOTTY; /* what ext4 answers an ioctl it does not know */
		goto out;
	}
	if (in_bufsz != sizeof(a) || out_bufsz != sizeof(a)) {
		r = -EINVAL;
		goto out;
	}
	memcpy(&a, in_buf, sizeof(a));
	if (a.flags != 0) {
		r = -EINVAL;
		goto out;
	}
	r = scrub_range(fs, ino, &a);
	if (r == 0) {
		__atomic_fetch_add(&fs->ctr.scrub_bytes, a.done, __ATOMIC_RELAXED);
		if (a.bad_len)
			__atomic_fetch_add(&fs->ctr.scrub_damaged, 1, __ATOMIC_RELAXED);
		fuse_reply_ioctl(req, 0, &a, sizeof(a));
		return;
	}
out:
	fuse_reply_err(req, -r);
}
