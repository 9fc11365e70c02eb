/* space.c — out of space is ENOSPC, never an unmountable store (DESIGN §2).
 *
 * THE RESERVE. Everything blazefs accepts must still be storable, and the
 * store must always be able to checkpoint and to recover after a crash. So
 * every operation that will consume disk space is charged against the free
 * space of the store's disk, and refused with ENOSPC when the disk would
 * drop below the reserve:
 *     reserve = max_inflight + max_inflight/16 + slack      (fixed, at mount;
 *               slack = 1/16 of the disk, 4 to 32 MiB)
 *             + store_space() need                          (grows with the
 *               namespace: the next checkpoint's stream, written into new
 *               pages while the durable one is still allocated, plus the
 *               pages a checkpoint flushes, less the free pages of store.db)
 * and the free pages of store.db beyond those ("spare") count as free disk.
 * The fixed part covers what can be in flight (accepted, not yet applied:
 * stored size <= raw size + frame/page overhead, ~1/16) and slack; recovery
 * needs no more than the same reserve (store.h store_space_need).
 *
 * CHARGES. write(): its length plus a record's overhead. A namespace op that
 * adds to the namespace (everything but unlink and rmdir, which must stay
 * possible on a full disk so space can be freed, and setattr, which changes
 * an inode record in place): its names and target plus
 * a bound on its inode and entry records, and the worst-case share of the
 * stream it adds. Growing truncates and the zero gap before a write past the
 * end: the stored size of zeros (compressed unless zstd_level <= 0).
 *
 * SAMPLING. The free space of the store's disk is sampled with statvfs at
 * most every 20 ms or after every 4 MiB charged, so a check costs a few
 * atomic loads; charges since the last sample are added to it. What the
 * pipeline holds then, accepted but not yet applied to store.db, is not
 * free (pipe_unapplied_bytes): it takes its space when applied. Without
 * that, df right after a burst of writes said "3 MiB available" and the
 * next mkdir got ENOSPC once the burst was applied.
 *
 * SHORT OF SPACE. While writes are refused (space_warned), the pipeline
 * checkpoints as soon as deleted files hold space (pipe_set_space_short):
 * their room is reusable only after a checkpoint (FORMAT.md §7), and on a
 * full disk no WAL traffic would bring one before unmount.
 *
 * UNLINK. Removals are never charged, including the ops an unlink of a
 * file still held by the kernel is made of (inode.c orphanize: the orphan
 * directory and the rename into it, a name of ~20 bytes, within the
 * fixed slack).
 *
 * statfs reports what writes can really use: available = free + spare -
 * unapplied - reserve.
 *
 * Locks: none; the samples are __atomic (any session thread). */
#include <string.h>

#include "fs/fs.h"
#include "storage/record.h"

#define SPACE_SAMPLE_NS (20ull * 1000 * 1000)
#define SPACE_SAMPLE_BYTES (4ull << 20)
#define SPACE_RECORD_COST (REC_HDR_MAX + 64u) /* frame header, index entry, tail entry */
#define SPACE_NSOP_COST 192u                  /* inode + entry records of one op */
/* A refused charge first has a checkpoint made when the namespace changes
 * since the last one hold at least reclaim_min() of the reserve (or
 * deleted files hold space): see fs_space_check. */
#define SPACE_RECLAIM_MIN (256ull << 10)
/* The reserve's slack, beyond what is computed (in flight, the next
 * checkpoint's need): 1/16 of the disk, between 4 and 32 MiB. Nothing
 * known needs it (store_space bounds the checkpoint and the recovery; a
 * relocation moves chunks into free pages only; cleaning writes at most
 * PACK_CLEAN_MAX pages); it absorbs other writers of the disk between two
 * samples. A fixed 32 MiB left a 48 MiB disk no room at all and a 64 MiB
 * one 12 MiB of its 48 free after the WAL. */
#define SPACE_SLACK_MIN (4ull << 20)
#define SPACE_SLACK_MAX (32ull << 20)
#define SPACE_RECLAIM_MAX (2ull << 20)

void fs_space_init(struct fs *fs)
{
	uint64_t free_b = 0, total_b = 0, slack = SPACE_SLACK_MAX;

	if (vfs_space(fs->vfs, &free_b, &total_b) == 0) {
		/* What may be in flight is part of the reserve: the default 32
		 * MiB took half of a 128 MiB disk. Unless -o max_inflight_mb
		 * says otherwise, at most 1/16 of the disk (whole MiB, at least
		 * 4): writers then block earlier, on a disk that small. */
		uint64_t cap = BZ_MAX((total_b / 16) >> 20, 4ull) << 20;
		if (!fs->opts.inflight_set && cap < fs->opts.pipe.max_inflight_bytes) {
			bz_info("%s: a %llu MiB disk: at most %llu MiB in flight (not %llu)", fs->store_dir,
				(unsigned long long)(total_b >> 20), (unsigned long long)(cap >> 20),
				(unsigned long long)(fs->opts.pipe.max_inflight_bytes >> 20));
			fs->opts.pipe.max_inflight_bytes = (size_t)cap;
		}
		slack = BZ_MIN(BZ_MAX(total_b / 16, SPACE_SLACK_MIN), SPACE_SLACK_MAX);
	}
	fs->space_reserve = fs->opts.pipe.max_inflight_bytes + fs->opts.pipe.max_inflight_bytes / 16 + slack;
}

uint64_t fs_space_reserve(struct fs *fs, uint64_t *ret_spare)
{
	uint64_t need = 0, spare = 0;

	if (fs->store)
		store_space(fs->store, &need, &spare);
	if (ret_spare)
		*ret_spare = spare;
	return fs->space_reserve + need;
}

/* The free bytes of the store's disk as last sampled, less what the
 * pipeline holds unapplied then (pipe_unapplied_bytes), resampled when
 * due; *ret_since: bytes charged since that sample (this charge included). */
static uint64_t space_free(struct fs *fs, uint64_t len, bool force, uint64_t *ret_since)
{
	uint64_t now = bz_now_ns(), free_b, total_b;
	uint64_t since = __atomic_add_fetch(&fs->space_since, len, __ATOMIC_RELAXED);
	uint64_t at = __atomic_load_n(&fs->space_at_ns, __ATOMIC_RELAXED);

	if (force || now - at >= SPACE_SAMPLE_NS || since >= SPACE_SAMPLE_BYTES) {
		if (vfs_space(fs->vfs, &free_b, &total_b) == 0) {
			/* data accepted but not yet applied will take its
			 * share of that disk space: it is not free */
			uint64_t unapplied = fs->pipe ? pipe_unapplied_bytes(fs->pipe) : 0;
			unapplied += unapplied / 16; /* page and frame overhead, as in the reserve */
			free_b -= BZ_MIN(free_b, unapplied);
			__atomic_store_n(&fs->space_total, total_b, __ATOMIC_RELAXED);
			__atomic_store_n(&fs->space_free, free_b, __ATOMIC_RELAXED);
			__atomic_store_n(&fs->space_since, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&fs->space_at_ns, now, __ATOMIC_RELAXED);
			since = 0;
		}
	}
	*ret_since = since;
	return __atomic_load_n(&fs->space_free, __ATOMIC_RELAXED);
}

/* How much of the reserve the namespace changes since the last checkpoint
 * must hold before a short charge has a checkpoint made for them: 1/64 of
 * the disk, between 256 KiB and 2 MiB. The reserve counts a worst case of
 * ~70 KB of tree pages per created file where a checkpoint really writes a
 * few hundred bytes, so on a nearly full disk a low threshold means a
 * checkpoint (several fsyncs) every few creates: measured on a 400 MiB disk
 * with 3 MiB left, 10,000 mkdirs made 400-500 checkpoints at 256 KiB, one
 * per 20-30 mkdirs, and on a CI machine whose disk was busy such a run
 * took 20 minutes; at 2 MiB, 8 times fewer (an upper bound: ~27 creates
 * per checkpoint, measured below). The
 * cost of a higher one: ENOSPC may come while up to that much of the
 * reserve could still be given back -- less than what ext4 keeps for its
 * own metadata (2% of the disk, at most 4096 clusters = 16 MiB). */
static uint64_t reclaim_min(struct fs *fs)
{
	uint64_t m = __atomic_load_n(&fs->space_total, __ATOMIC_RELAXED) / 64;

	return BZ_MIN(BZ_MAX(m, SPACE_RECLAIM_MIN), SPACE_RECLAIM_MAX);
}

/* Has the checkpoint made that gives room back, when one would
 * (store_checkpoint_would_free: deleted files, or reclaim_min() held for
 * namespace changes), and waits for it; true if it was made. */
static bool space_reclaim(struct fs *fs)
{
	if (!fs->pipe || !fs->store || !store_checkpoint_would_free(fs->store, reclaim_min(fs)) ||
	    pipe_reclaim(fs->pipe) < 0)
		return false;
	FS_COUNT(fs, space_reclaims, 1);
	return true;
}

/* Whether len fits above the reserve; force: sample the disk now. */
static bool space_fits(struct fs *fs, uint64_t len, bool force, uint64_t *ret_free, uint64_t *ret_reserve)
{
	uint64_t since = 0, spare = 0, free_b = space_free(fs, force ? 0 : len, force, &since);
	uint64_t reserve = fs_space_reserve(fs, &spare);

	free_b += spare;
	*ret_free = free_b;
	*ret_reserve = reserve;
	return free_b >= reserve + since + (since ? 0 : len);
}

int fs_space_check(struct fs *fs, uint64_t len)
{
	uint64_t free_b = 0, reserve = 0;
	bool fits = space_fits(fs, len, false, &free_b, &reserve);

	/* Short: if a checkpoint would give room back (files deleted since the
	 * last one, or namespace changes whose checkpoint the reserve holds
	 * room for), have one made and look again -- as ext4 commits its
	 * journal and retries an allocation that found the disk full. Once
	 * per call; the checkpoint's own need is within the reserve. */
	if (!fits && space_reclaim(fs))
		fits = space_fits(fs, len, true, &free_b, &reserve);
	if (fits) {
		if (__atomic_load_n(&fs->space_warned, __ATOMIC_RELAXED) &&
		    __atomic_exchange_n(&fs->space_warned, 0, __ATOMIC_RELAXED) && fs->pipe)
			pipe_set_space_short(fs->pipe, 0);
		return 0;
	}
	if (!__atomic_exchange_n(&fs->space_warned, 1, __ATOMIC_RELAXED)) {
		if (fs->pipe)
			pipe_set_space_short(fs->pipe, reclaim_min(fs)); /* deleted files' room: at once */
		bz_warn("%s: %s: %.1f MiB free, %.1f MiB short of the %.1f MiB reserve that keeps "
			"acknowledged data storable and the store checkpointable: writes and namespace "
			"additions get ENOSPC",
			fs->store_dir, strerror(ENOSPC), (double)free_b / (1 << 20),
			(double)(reserve + len - BZ_MIN(free_b, reserve + len)) / (1 << 20),
			(double)reserve / (1 << 20));
	}
	return -ENOSPC;
}

uint64_t fs_space_write_cost(struct fs *fs, uint64_t len)
{
	(void)fs;
	return len + SPACE_RECORD_COST;
}

int fs_space_nsop(struct fs *fs, const struct ns_op *op)
{
	if (op->kind == NS_UNLINK || op->kind == NS_RMDIR || op->kind == NS_SETATTR)
		return 0; /* frees space, or changes a record in place (like ext4's inode update) */
	return fs_space_check(fs, (uint64_t)op->name_len + op->name2_len + SPACE_NSOP_COST);
}

uint64_t fs_space_zeros_cost(struct fs *fs, uint64_t count)
{
	/* zeros are appended as hole records (REC_HOLE, at most 2^44 bytes
	 * each), which store no payload and take no index entry */
	(void)fs;
	return (count / REC_MAX_HOLE + 1) * SPACE_RECORD_COST;
}

uint64_t fs_space_avail(struct fs *fs, uint64_t *ret_spare)
{
	uint64_t since = 0, spare = 0, free_b, reserve;

	/* Files deleted since the last checkpoint hold space that only the
	 * next one makes reusable (FORMAT.md §7), and the namespace changes
	 * since then hold part of the reserve (the next checkpoint's worst
	 * case): have that checkpoint made first, so df shows the room a write
	 * would find (a write short of space has it made too, fs_space_check).
	 * A checkpoint costs what changed; a df that finds less than
	 * reclaim_min() of such room makes none. */
	(void)space_reclaim(fs);
	free_b = space_free(fs, 0, true, &since);
	reserve = fs_space_reserve(fs, &spare);

	*ret_spare = spare;
	free_b += spare;
	return free_b > reserve ? free_b - reserve : 0;
}
