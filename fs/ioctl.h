/* ioctl.h — the ioctls a mounted blazefs answers (the ABI between the daemon
 * and blazectl; any program may use it). Restricted FUSE ioctls: the kernel
 * copies exactly sizeof(struct bz_scrub_arg) bytes in and out, so the
 * layout below is fixed (56 bytes, no padding, little endian on every
 * architecture blazefs runs on).
 *
 * BZ_IOC_SCRUB, on an open regular file (any access mode): verify the
 * stored bytes of [off, off + len) against the disk -- every page checksum
 * and every record or chunk checksum they need -- bypassing the daemon's
 * page cache. The daemon stops at the end of the file, after `len` bytes, or
 * at the first damaged range, and fills:
 *   done     bytes verified from `off`, holes included (they store
 *            nothing) (up to the damage or the end; a
 *            damaged range is NOT counted: resume at bad_off + bad_len);
 *   bad_off, bad_len  the damaged range, in 4 KiB-aligned file bytes that
 *            cannot be read (bad_len = 0: none found);
 *   err      0, or the negative errno of the damage (-EIO);
 *   size     the file's size when the call started.
 * The call returns 0 in all these cases; -1 with errno for bad arguments
 * (EINVAL), a control file or special file (ENOTTY), an interrupted call
 * (EINTR, with nothing filled in).
 * Bytes still in flight in the pipeline or the write-ahead log (not yet in
 * store.db) are verified by the WAL's checksums at replay, not here.
 *
 */
#ifndef BZ_IOCTL_H
#define BZ_IOCTL_H

#include <stdint.h>
#include <sys/ioctl.h>

struct bz_scrub_arg {
	uint64_t off, len;         /* in */
	uint64_t done;             /* out */
	uint64_t bad_off, bad_len; /* out */
	uint64_t size;             /* out */
	int32_t err;               /* out */
	uint32_t flags;            /* in: 0 */
};

#define BZ_IOC_SCRUB _IOWR('b', 0x51, struct bz_scrub_arg)

/* BZ_IOC_SCRUB_META: verify metadata pages against the disk, a few per
 * call, resumably (fixed layout: 88 bytes, no padding).
 *   walk = BZ_META_NS, on the mount's root directory (or any open file or
 *     directory of the mount): both superblocks, then every page of the
 *     namespace checkpoint chain the newest valid superblock names;
 *   walk = BZ_META_INDEX, on an open regular file: every full INDEX page of
 *     that file's index chain.
 * Each page: checksum, magic, type, page number, used bytes, chain link
 * (and the index entries). Start with the cursor (gen, pos, pgno, bytes)
 * all 0 and pass it back unchanged; `len` bounds the bytes (4 KiB pages) a
 * call verifies (at least one page; 0 only fills `total` and, for
 * BZ_META_NS, `index_total`). The daemon fills:
 *   done        bytes verified by this call;
 *   total       bytes of the whole walk;
 *   index_total (BZ_META_NS) bytes of every file's INDEX pages, for
 *               progress;
 *   flags       BZ_META_END: the walk is complete (or cannot go on past
 *               the damage); BZ_META_RESTARTED (NS): a checkpoint replaced
 *               the chain since the last call, the walk began again;
 *   bad         a BZ_META_BAD_* reason (0: none) and bad_pgno, the page.
 * Errors: EAGAIN -- a checkpoint wrote a superblock during the call;
 * nothing was verified and the cursor is unchanged: call again. ENOENT
 * (INDEX) -- the file has no index any more (deleted meanwhile). EINVAL,
 * ENOTTY, EINTR as for BZ_IOC_SCRUB. The daemon holds no store lock across
 * any page read: the commit thread never waits for it.
 */
enum { BZ_META_NS = 1, BZ_META_INDEX = 2 };
enum { BZ_META_END = 1, BZ_META_RESTARTED = 2 };
enum {
	BZ_META_BAD_PAGE = 1,  /* fails its checksum or header (magic, type, page number) */
	BZ_META_BAD_LINK = 2,  /* the chain ends early, runs on, or links outside store.db */
	BZ_META_BAD_BODY = 3,  /* a valid page with wrong content (used bytes, entries, stream length) */
	BZ_META_BAD_STALE = 4, /* read-only mount: the older superblock is invalid (a torn checkpoint; fsck warns) */
};

struct bz_scrub_meta_arg {
	uint64_t gen, pos, pgno, bytes; /* in/out: the cursor */
	uint64_t len;                   /* in */
	uint64_t done, total;           /* out */
	uint64_t index_total;           /* out (BZ_META_NS) */
	uint64_t bad_pgno;              /* out */
	uint32_t walk;                  /* in: BZ_META_NS or BZ_META_INDEX */
	uint32_t flags;                 /* out: BZ_META_END | BZ_META_RESTARTED */
	uint32_t bad;                   /* out: BZ_META_BAD_*, 0 = none */
	uint32_t reserved;              /* in: 0 */
};

#define BZ_IOC_SCRUB_META _IOWR('b', 0x52, struct bz_scrub_meta_arg)

#endif
