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

#endif
