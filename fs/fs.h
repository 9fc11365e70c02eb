/* fs.h — private to the blazefs daemon (fs/): the filesystem state shared by
 * main.c (options, startup, shutdown), ops.c (the FUSE low-level operations),
 * xattr.c (extended attributes),
 * inode.c (per-inode runtime state, the append-only write path) and stats.c
 * (the .blazefs/stats control file).
 *
 * One filesystem per process. The live namespace and the inode table are
 * guarded by the one global mutex fs_ns_lock; the data path of a file is
 * serialized by its fs_inode.lock. Lock order (also at the top of ops.c):
 *
 *     fs_inode.lock  ->  fs_ns_lock  ->  (pipeline internal locks)
 *
 * Never take an fs_inode.lock while holding fs_ns_lock.
 */
#ifndef BZ_FS_H
#define BZ_FS_H

#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "storage/log.h"
#include "storage/ns.h"
#include "storage/pipeline.h"
#include "storage/store.h"
#include "storage/tsa.h"
#include "storage/vfs.h"

/* The control directory: reserved inode numbers ns_alloc_ino never reaches
 * (every inode number >= FS_CTL_DIR_INO belongs to it). */
#define FS_CTL_DIR_INO 0xFFFFFFFFFFFFFF00ull
#define FS_CTL_STATS_INO 0xFFFFFFFFFFFFFF01ull
#define FS_CTL_METRICS_INO 0xFFFFFFFFFFFFFF02ull
#define FS_CTL_DIR_NAME ".blazefs"
#define FS_CTL_STATS_NAME "stats"
#define FS_CTL_METRICS_NAME "metrics"

#define FS_MAX_WRITE (1u << 20)
/* Maximum file size (the kernel's s_maxbytes for FUSE is not settable):
 * writes and truncates beyond it get EFBIG, as on ext4, whose limit with 4 KiB
 * blocks is the same 16 TiB (docs/FILESYSTEM.md "Maximum file size"). */
#define FS_MAX_FILE_BYTES (16ull << 40)
#define FS_BLKSIZE (128u << 10)
/* Writeback cache: page writes the kernel may have in the daemon at once
 * (FUSE max_background), and the session threads kept so that a retrieve
 * reply always finds one (wb.c). */
#define FS_WB_MAX_BACKGROUND 12
#define FS_WB_MIN_THREADS (FS_WB_MAX_BACKGROUND + 12)

struct fs_opts {
	struct pipe_opts pipe;
	uint64_t cache_bytes; /* 0: store default */
	bool worm;
	bool has_retain;    /* -o retain=DURATION (implies worm) */
	uint64_t retain_s;  /* its period in seconds */
	bool writeback_cache;
	bool sync_close;
	bool noxattr; /* xattr ops answer ENOSYS: the kernel stops asking (see xattr.c) */
	bool read_only; /* -o ro: the store is opened read-only, every change is EROFS */
	unsigned read_threads; /* -o read_threads: the read pool (read.c); 0 = session threads read */
	bool inflight_set;     /* -o max_inflight_mb given (else a small disk lowers it: main.c) */
};

/* Why a request was refused (stats keys: fs_refusal_name). */
enum fs_refusal {
	FS_REF_OVERWRITE = 0, /* write below the end with different bytes */
	FS_REF_PAST_EOF,      /* write starting past the end */
	FS_REF_SHRINK,        /* truncate to a smaller size */
	FS_REF_O_TRUNC,       /* O_TRUNC on a non-empty file */
	FS_REF_WORM,          /* -o worm: unlink/rename/rmdir of a non-empty file */
	FS_REF_FALLOCATE,     /* fallocate */
	FS_REF_CONTROL,       /* modification of .blazefs */
	FS_REF_COUNT
};
const char *fs_refusal_name(enum fs_refusal r);

/* Counters: relaxed atomics (__atomic builtins), any thread. */
struct fs_counters {
	uint64_t refusals[FS_REF_COUNT];
	uint64_t holes_filled;   /* writes past the end on a fresh descriptor, gap zero-filled */
	uint64_t hole_bytes;     /* zero bytes appended for those */
	uint64_t open_files;     /* now */
	uint64_t errors;         /* EIO / EROFS / ENOSPC replies */
	uint64_t space_reclaims; /* checkpoints a charge short of space had made before it looked again (space.c) */
	uint64_t writes, write_bytes;   /* accepted write requests, bytes appended by them */
	uint64_t overlap_bytes;  /* bytes of writes below the end accepted as identical */
	uint64_t zero_extend_bytes; /* bytes appended by growing truncates */
	uint64_t held_writes, held_bytes_max; /* writeback cache: page writes past the end held (wb.c), peak bytes held */
	uint64_t order_waits;       /* writeback cache: page writes that waited for the ones below them (wb.c "Order") */
	uint64_t retrieved_bytes;   /* writeback cache: dirty bytes fetched from the kernel cache (truncate, sync, catch-up) */
	uint64_t invalidations;     /* writeback cache: kernel cache ranges invalidated after a refusal */
	uint64_t nospc_pages;       /* writeback cache: pages refused because one before them was (inode.c nospc_untold) */
	uint64_t nsops;          /* namespace operations submitted */
	uint64_t flushes, fsyncs;
	uint64_t scrub_bytes, scrub_damaged; /* BZ_IOC_SCRUB: data bytes verified; damaged ranges and metadata pages found (scrub.c) */
};
#define FS_COUNT(fs, field, n) __atomic_add_fetch(&(fs)->ctr.field, (n), __ATOMIC_RELAXED)
#define FS_READ(fs, field) __atomic_load_n(&(fs)->ctr.field, __ATOMIC_RELAXED)

extern bz_mutex fs_ns_lock;

/* An inode's data-path lock, as a capability token (storage/tsa.h: clang
 * cannot name a sibling struct member in C). Only one inode lock is ever
 * held at a time, so the per-type token is exact. */
BZ_CAP_DECLARE(fs_inode_cap);

/* Runtime state of an inode the kernel knows (nlookup > 0) or that some
 * thread holds a reference to (refs > 0). While it exists the inode is
 * pinned in the live namespace, so an unlinked but open file stays usable. */
struct fs_inode {
	uint64_t ino;                                /* immutable */
	/* The zstd level of the file's records (immutable): its inherited
	 * user.blazefs.zstd_level (fixed at its creation, retain.c), else
	 * the mount's zstd_level (PIPE_LEVEL_DEFAULT when it is > 0). */
	int zlevel;
	uint32_t chunk; /* its user.blazefs.chunk_bytes, 0 = the mount's record_bytes */
	struct fs_inode *next GUARDED_BY(fs_ns_lock); /* hash chain */
	uint64_t nlookup GUARDED_BY(fs_ns_lock);      /* kernel references */
	uint64_t refs GUARDED_BY(fs_ns_lock);         /* open handles + transient users */
	bool orphan GUARDED_BY(fs_ns_lock);           /* unlinked while held: parked in the orphan dir */
	bz_mutex lock;                                /* the data path: size changes */
	pthread_cond_t grown;                         /* broadcast (under lock) when the size grows */
	/* Writeback cache (wb.c). held: page writes that arrived past the live
	 * end, sorted by offset, not overlapping, waiting for the bytes below
	 * them (the kernel writes dirty pages back in any order). */
	struct fs_held *held GUARDED_BY(fs_inode_cap);
	uint64_t held_bytes;                          /* __atomic (written under lock): bytes in held */
	uint64_t page_write_ns;                       /* __atomic: monotonic time of the last page write (writeback) */
	/* The kernel's i_size may include refused bytes it will never send
	 * again (it keeps its own size in this mode): [live end, ghost_end)
	 * reads as zeros through the kernel and is stored as zeros when a
	 * later page write needs it. 0 = none. */
	uint64_t ghost_end GUARDED_BY(fs_inode_cap);
	unsigned fresh_opens;                         /* __atomic: open descriptors that created the
						       * file or emptied it (the kernel writes pages
						       * back through any descriptor of the inode) */
	/* The size a growing truncate set in the kernel; its zeros are stored
	 * once the dirty pages below can no longer come (fs_file_settle, or
	 * the next truncate). 0 = none. */
	uint64_t zext GUARDED_BY(fs_inode_cap);
	/* The time of the pipeline batch that holds the file's last appended
	 * bytes (pipe_append_level): the store sets it as mtime and ctime at
	 * the apply, so the live size is published with it. 0 = none yet. */
	int64_t data_ns GUARDED_BY(fs_inode_cap);
	bool fetching GUARDED_BY(fs_inode_cap);       /* a fetch_gap is waiting for the kernel (lock released) */
	int wb_err GUARDED_BY(fs_inode_cap);          /* a held page refused outside a write reply: the
						       * next flush/fsync reports it (0 = none) */
	/* Notifier queue (wb.c), guarded by fs_ns_lock: a kernel cache range
	 * to invalidate once no request for it is being answered. */
	bool inval_queued GUARDED_BY(fs_ns_lock);
	bool inval_busy GUARDED_BY(fs_ns_lock);        /* the notifier is telling the kernel now */
	struct fs_inode *inval_next GUARDED_BY(fs_ns_lock);
	uint64_t inval_off GUARDED_BY(fs_ns_lock), inval_end GUARDED_BY(fs_ns_lock);
	unsigned warned;                              /* refusal reasons logged (bit per enum fs_refusal), __atomic */
	/* Writeback cache: refusals of written-back pages, as the kernel's
	 * errseq: ref_seq counts them, ref_err is the last one's error; every
	 * descriptor open for writing gets it once at its next flush/fsync
	 * (fs_open ref_seen), not only the first to close. __atomic */
	unsigned ref_seq;
	int ref_err;
	/* The ref_seq of the last page refused for lack of space, and the
	 * highest ref_seq reported to any writer (fs_file_refusal). While the
	 * first is above the second, no writer knows yet: every page write
	 * that reaches past the live end is refused too (inode.c
	 * nospc_untold), so the file stays a prefix of what was written and
	 * never gets the refused range as zeros with later bytes after it.
	 * __atomic */
	unsigned nospc_seq, told_seq;
};

/* One open file (fuse_file_info.fh). Immutable after open, except the
 * list links (fs_ns_lock). */
struct fs_open {
	struct fs_open *prev GUARDED_BY(fs_ns_lock), *next GUARDED_BY(fs_ns_lock); /* fs.opens */
	struct fs_inode *inode; /* NULL for the control file */
	int flags;              /* open(2) flags as the kernel sent them */
	bool fresh;             /* this open created the file or truncated it to 0 */
	uint64_t opened_ns;     /* monotonic time of the open (the catch-up skips younger ones) */
	unsigned ref_seen;      /* inode ref_seq already reported to this descriptor, __atomic */
	char *ctl;              /* control file: content generated at open */
	size_t ctl_len;
};

struct fs {
	/* Set before the session starts, immutable while mounted. */
	struct fs_opts opts;
	char *store_dir;
	struct vfs *vfs;
	struct store *store;
	struct pipeline *pipe;
	int64_t mount_time_ns;
	int64_t retain_skew_s; /* test only: BLAZEFS_TEST_RETAIN_SKEW (retain.c) */
	/* The live namespace: applied ops plus those still in the pipeline. */
	struct ns *ns GUARDED_BY(fs_ns_lock);
	/* Inode table (inode.c). */
	struct fs_inode **itab GUARDED_BY(fs_ns_lock);
	size_t itab_size GUARDED_BY(fs_ns_lock);
	size_t itab_count GUARDED_BY(fs_ns_lock);
	/* The orphan directory: a real directory named ".blazefs" in the root
	 * (hidden behind the control directory of that name) where files
	 * unlinked while open are parked until their last close, so the store
	 * keeps their data. 0 until first needed. */
	uint64_t orphan_dir GUARDED_BY(fs_ns_lock);
	/* Every open handle: the ones the kernel never released (unmount by
	 * signal) are freed at shutdown. */
	struct fs_open *opens GUARDED_BY(fs_ns_lock);
	struct fs_counters ctr;
	int failed; /* __atomic: the pipeline refused an op (EROFS/EIO): no more namespace changes */
	/* Out-of-space reserve (inode.c fs_space_check): appends are refused
	 * with ENOSPC while the store's disk has less than space_reserve free.
	 * space_free/space_at_ns/space_since are __atomic samples. */
	uint64_t space_reserve; /* immutable while mounted */
	uint64_t space_free, space_at_ns, space_since;
	uint64_t space_total;   /* __atomic: the disk's size at the last sample (space.c reclaim_min) */
	int space_warned;       /* __atomic: logged once per shortage */
	/* Writeback cache (wb.c): the session (kernel notifications), the
	 * bytes held out of order by all files (__atomic, bounded by
	 * held_cap) and the notifier thread with its queue of inodes whose
	 * kernel cache must be invalidated (guarded by fs_ns_lock). */
	struct fuse_session *se; /* set before the session loop starts */
	uint64_t held_total, held_cap;
	struct fs_wb *wb;
	struct fs_inode *inval_head GUARDED_BY(fs_ns_lock), *inval_tail GUARDED_BY(fs_ns_lock);
	/* READs of regular files (read.c): NULL with read_threads=0. Set
	 * before the session starts, stopped after it ends. */
	struct pool *rpool;
};

/* Inode timestamps (mtime, ctime, atime of namespace changes and appends)
 * come from the clock the kernel stamps file times with, current_time():
 * the coarse realtime clock (one tick, 4 ms at HZ=250), as ext4's do. With
 * the writeback cache the kernel stamps writes itself and sends a SETATTR
 * of the times at close whenever a write's time differs from the inode's:
 * a file created with a fine-grained time (later than the coarse clock)
 * and written in the same tick got its mtime moved backwards and cost one
 * more request and WAL record per file (cp -r: 173 SETATTRs for 173 files,
 * 6 with this clock). */
static inline int64_t fs_now_ns(void)
{
	return bz_wall_coarse_ns();
}

static inline bool fs_is_ctl(uint64_t ino) { return ino >= FS_CTL_DIR_INO; } /* .blazefs and its files */

/* ---- ops.c ---- */
extern const struct fuse_lowlevel_ops fs_ops;
/* True when the request the calling session thread is handling (a
 * setattr or write that may append zeros for long) has been interrupted. */
bool fs_interrupted(void);

/* ---- xattr.c: extended attributes (fs_ops entries) ---- */
#ifdef FUSE_LOWLEVEL_H_
void fs_op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg, struct fuse_file_info *fi,
		 unsigned flags, const void *in_buf, size_t in_bufsz, size_t out_bufsz); /* scrub.c */
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags);
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
#endif

/* ---- retain.c: per-directory settings and retention ---- */
/* DURATION: integer + s/m/h/d/w/y (y = 365 d), bare integer = seconds,
 * at most 9999y. -EINVAL. */
int fs_duration_parse(const char *s, size_t len, uint64_t *ret_s);
/* secs in the largest unit that divides it exactly ("30d", "90s"). */
int fs_duration_format(uint64_t secs, char *buf, size_t cap);
/* user.blazefs.zstd_level / chunk_bytes / retain: settable on directories. */
bool fs_setting_name(const char *name);
/* Those and user.blazefs.deletable_at: computed on non-directories. */
bool fs_setting_info_name(const char *name);
/* setxattr / removexattr of a setting name (validated, canonical, submitted). */
int fs_setting_set(struct fs *fs, uint64_t ino, const char *name, const char *value, size_t size, int flags)
	REQUIRES(fs_ns_lock);
int fs_setting_remove(struct fs *fs, uint64_t ino, const char *name) REQUIRES(fs_ns_lock);
/* getxattr of a fs_setting_info_name: length of the NUL-terminated value in
 * v, or -ENODATA / -ENOENT. */
int fs_setting_info(struct fs *fs, uint64_t ino, const char *name, char *v, size_t cap) REQUIRES(fs_ns_lock);
/* The zstd level of ino's records: its own setting or PIPE_LEVEL_DEFAULT. */
int fs_file_zlevel(struct fs *fs, uint64_t ino) REQUIRES(fs_ns_lock);
/* The chunk_bytes a regular file was created with, 0 = none (the defaults). */
uint32_t fs_file_chunk(struct fs *fs, uint64_t ino) REQUIRES(fs_ns_lock);
/* Worm mount: may parent/name not be unlinked or renamed (or renamed over)
 * now? true with its inode and the second it becomes deletable (INT64_MAX:
 * never). */
bool fs_retain_protected(struct fs *fs, uint64_t parent, const char *name, uint64_t *ret_ino,
			 int64_t *ret_until_s) REQUIRES(fs_ns_lock);
/* Worm mount, before renaming from/name to directory to: if it is a
 * directory, lengthens its own retain to what it had from above at from
 * (submitted; 0 when nothing to do), so moving it does not shorten the
 * periods of the files inside. */
int fs_retain_carry(struct fs *fs, uint64_t from, const char *name, uint64_t to) REQUIRES(fs_ns_lock);
/* Counts and logs the refusal (FS_REF_WORM) with its date. */
void fs_retain_refuse(struct fs *fs, uint64_t ino, int64_t until_s, const char *what) REQUIRES(fs_ns_lock);

/* ---- inode.c ---- */
/* The table entry of ino or NULL. */
struct fs_inode *fs_inode_find(struct fs *fs, uint64_t ino) REQUIRES(fs_ns_lock);
/* A kernel lookup reference (nlookup += 1); creates and pins the entry. */
int fs_inode_lookup(struct fs *fs, uint64_t ino) REQUIRES(fs_ns_lock);
/* The kernel drops n lookup references. */
void fs_inode_forget(struct fs *fs, uint64_t ino, uint64_t n) REQUIRES(fs_ns_lock);
/* A counted reference (open handle or a transient user). */
int fs_inode_get(struct fs *fs, uint64_t ino, struct fs_inode **ret_ip) REQUIRES(fs_ns_lock);
void fs_inode_put(struct fs *fs, struct fs_inode *ip) REQUIRES(fs_ns_lock);
/* Validates op on the live namespace (ns_apply) and submits it to the
 * pipeline (pipe_nsop), in that order under fs_ns_lock. */
int fs_submit(struct fs *fs, struct ns_op *op) REQUIRES(fs_ns_lock);
/* Unlinks parent/name, or, when that would drop the last link of a regular
 * file the kernel still references (nlookup) or that is open (refs), parks
 * it in the orphan directory instead; it is unlinked there when both are
 * gone (forget and release). */
int fs_unlink_or_orphan(struct fs *fs, uint64_t parent, const char *name) REQUIRES(fs_ns_lock);
/* Renames (op: NS_RENAME); a target the kernel still references or that is
 * open is parked in the orphan directory first, but only once the rename is
 * known to succeed: a failed rename changes nothing. */
int fs_rename(struct fs *fs, struct ns_op *op) REQUIRES(fs_ns_lock);
/* At mount: removes what a previous run left in the orphan directory. */
int fs_orphans_cleanup(struct fs *fs) REQUIRES(fs_ns_lock);
/* Open handles: link into / unlink from fs.opens. */
void fs_open_link(struct fs *fs, struct fs_open *of) REQUIRES(fs_ns_lock);
void fs_open_unlink(struct fs *fs, struct fs_open *of) REQUIRES(fs_ns_lock);
/* Frees the open handles and the whole table (shutdown; unpins nothing). */
void fs_inode_table_free(struct fs *fs) REQUIRES(fs_ns_lock);

/* Live size of a regular file (-ENOENT, -EISDIR, -EINVAL for others). */
int fs_live_size(struct fs *fs, uint64_t ino, uint64_t *ret_size) EXCLUDES(fs_ns_lock);
/* The append-only write: returns the bytes accepted (len) or a negative
 * errno (-EPERM refusal, -EROFS after a pipeline failure, ...). */
ssize_t fs_file_write(struct fs *fs, const struct fs_open *of, const char *buf, size_t len, uint64_t off,
		      bool writepage) EXCLUDES(fs_ns_lock);
/* truncate/ftruncate to size: no-op, zero-append, or -EPERM. With the
 * writeback cache the kernel may still hold dirty pages below its own size:
 * they are fetched from it first (wb.c), so a shrink of bytes only the
 * kernel has is refused too. */
int fs_file_truncate(struct fs *fs, struct fs_inode *ip, uint64_t size) EXCLUDES(fs_ns_lock);
/* Writeback cache, at flush/fsync/release of of (the kernel has written back
 * every dirty page): stores what is held past the end, or refuses it when
 * it lies beyond a hole (-EPERM; zeros for the hole on a fresh file). */
int fs_file_settle(struct fs *fs, struct fs_open *of) EXCLUDES(fs_ns_lock);
/* Writeback cache: the error of a page refused since this descriptor last
 * asked (or was opened), once per descriptor open for writing, as the
 * kernel's errseq does per file; else 0. For flush and fsync. */
int fs_file_refusal(struct fs_open *of);
/* A descriptor being opened (before it is linked into fs->opens): the
 * first writer of an inode counts earlier refusals as told (nospc_seq). */
void fs_file_opened(struct fs *fs, struct fs_open *of) REQUIRES(fs_ns_lock);
/* Unmount (writeback cache): settles every inode the daemon still knows. */
void fs_settle_all(struct fs *fs) EXCLUDES(fs_ns_lock);
/* Writeback cache, before a global barrier (fsync of a directory): fetches
 * what the kernel still caches past the live end of every file open for
 * writing (retrieve), so the barrier covers it. */
/* Fetches what the kernel caches for every file open for writing through
 * a descriptor opened at least min_age_ns ago (0: all). */
void fs_catch_up_all(struct fs *fs, const char *why, uint64_t min_age_ns) EXCLUDES(fs_ns_lock);
void fs_catch_up_ino(struct fs *fs, uint64_t ino) EXCLUDES(fs_ns_lock); /* one file, if open for writing */
/* Writeback cache: the daemon holds page writes of ip not stored yet, or
 * owes a growing truncate's zeros (the kernel's size is above 0 then). */
bool fs_file_has_pending(struct fs_inode *ip) EXCLUDES(fs_ns_lock);
/* Writeback cache: copies held bytes overlapping [off, off+len) into buf
 * (a read past the stored end); *ret_n grows to cover them (gaps zero). */
void fs_file_read_held(struct fs *fs, uint64_t ino, uint64_t off, char *buf, size_t len, size_t *ret_n)
	EXCLUDES(fs_ns_lock);

/* ---- wb.c (writeback cache) ---- */
struct fs_held;
/* Starts / joins the notifier thread (no-op without the writeback cache). */
int fs_wb_start(struct fs *fs);
void fs_wb_stop(struct fs *fs);
/* Queues the invalidation of [off, end) of ip's kernel cache (pages and
 * attributes); done by the notifier thread, never inside a request. */
void fs_wb_inval(struct fs *fs, struct fs_inode *ip, uint64_t off, uint64_t end) REQUIRES(fs_ns_lock);
/* Waits until no invalidation of ip is queued or under way (open, so a
 * new writer never starts from a page the store refused). */
void fs_wb_inval_wait(struct fs *fs, struct fs_inode *ip) REQUIRES(fs_ns_lock);
/* Drops ip from the notifier queue (the entry is being freed). */
void fs_wb_forget(struct fs *fs, struct fs_inode *ip) REQUIRES(fs_ns_lock);
/* The order of page writes (wb.c "Order"): a page write registers from
 * before it takes the inode lock until it lets it go (enter: a slot, or -1
 * when untracked; leave with the inode lock held, then broadcast grown);
 * below: a registered write of ino starts below off; wait_begin: the same,
 * and a waiter may be added (then wait_end after the wait). */
int fs_wb_order_enter(struct fs *fs, uint64_t ino, uint64_t off);
void fs_wb_order_leave(struct fs *fs, int slot);
bool fs_wb_order_below(struct fs *fs, uint64_t ino, uint64_t off);
bool fs_wb_order_wait_begin(struct fs *fs, uint64_t ino, uint64_t off);
void fs_wb_order_wait_end(struct fs *fs);
/* Copies up to len bytes the kernel caches for ino at off (dirty or not,
 * never past its i_size) into buf: *ret_n bytes, 0 when it has none there. */
int fs_wb_retrieve(struct fs *fs, uint64_t ino, uint64_t off, char *buf, size_t len, size_t *ret_n);
#ifdef FUSE_USE_VERSION
/* The retrieve reply (ops.c registers it). */
void fs_wb_retrieve_reply(fuse_req_t req, void *cookie, fuse_ino_t ino, off_t offset, struct fuse_bufvec *bufv);
#endif
/* Held extents: insert (merging identical overlaps; 1 = different bytes),
 * first extent, drop first, free all. */
int fs_held_insert(struct fs *fs, struct fs_inode *ip, uint64_t off, const char *buf, size_t len)
	REQUIRES(fs_inode_cap);
struct fs_held *fs_held_first(struct fs_inode *ip, uint64_t *ret_off, const char **ret_data, size_t *ret_len)
	REQUIRES(fs_inode_cap);
void fs_held_pop(struct fs *fs, struct fs_inode *ip) REQUIRES(fs_inode_cap);
uint64_t fs_held_last_end(struct fs_inode *ip) REQUIRES(fs_inode_cap);
void fs_held_free_all(struct fs *fs, struct fs_inode *ip) REQUIRES(fs_inode_cap);
/* Counts a refusal and logs it once per inode and reason. ip may be NULL. */
void fs_refuse(struct fs *fs, struct fs_inode *ip, uint64_t ino, enum fs_refusal why, const char *what);
/* Counts an I/O error reply. */
void fs_note_error(struct fs *fs, int err);

/* ---- read.c: READs of regular files, served by the read pool ---- */
struct fuse_req;
/* Read threads run at this nice value (raised once, never lowered). */
#define FS_READ_NICE 10
/* Starts the pool (none with read_threads=0). 0 or -errno. */
int fs_read_start(struct fs *fs);
/* Queues the READ; 0: the pool replies. -EAGAIN (no pool, queue full) or
 * -ENOMEM: nothing queued, the caller serves it (fs_read_serve). */
int fs_read_submit(struct fs *fs, struct fuse_req *req, uint64_t ino, size_t size, off_t off);
/* Reads into buf (size bytes) and replies: data or the error. */
void fs_read_serve(struct fs *fs, struct fuse_req *req, uint64_t ino, size_t size, off_t off, char *buf);
/* Runs every queued READ, joins the threads. */
void fs_read_stop(struct fs *fs);

/* ---- space.c: the out-of-space reserve ---- */
/* Sizes the fixed part of the reserve from the options and the disk, and
 * caps max_inflight on a small disk unless it was given (before pipe_start). */
void fs_space_init(struct fs *fs);
/* The reserve now: fixed part + store_space's need (grows with the
 * namespace); *ret_spare (NULL ok): free pages of store.db new data can use. */
uint64_t fs_space_reserve(struct fs *fs, uint64_t *ret_spare);
/* 0, or -ENOSPC when consuming len more bytes of the store's disk would eat
 * into the reserve that keeps acknowledged data storable and the store
 * checkpointable and recoverable (DESIGN §2: out of space is ENOSPC, never
 * a lost acknowledged byte or an unmountable store). */
int fs_space_check(struct fs *fs, uint64_t len);
/* What a write of len bytes is charged. */
uint64_t fs_space_write_cost(struct fs *fs, uint64_t len);
/* Charges a namespace op (0 for unlink/rmdir, which free space). */
int fs_space_nsop(struct fs *fs, const struct ns_op *op);
/* What appending count zero bytes is charged (growing truncate, gaps). */
uint64_t fs_space_zeros_cost(struct fs *fs, uint64_t count);
/* Bytes writes can still use: free space of the store's disk plus the
 * spare free pages of store.db (*ret_spare) minus the reserve (statfs
 * f_bavail); samples the disk now, after the checkpoint that gives deleted
 * files' room back if one is due (may wait for it). */
uint64_t fs_space_avail(struct fs *fs, uint64_t *ret_spare);

/* ---- killpriv.c ---- */
struct fuse_session;
/* After fuse_session_mount: wraps the session's I/O so the INIT reply
 * negotiates FUSE_HANDLE_KILLPRIV_V2 when the kernel offers it. */
int fs_killpriv_v2_setup(struct fuse_session *se);
/* For the OPEN request this thread is handling: must setuid/setgid be
 * cleared? The kernel says so with FUSE_OPEN_KILL_SUIDGID (O_TRUNC by a
 * caller without CAP_FSETID) once FUSE_HANDLE_KILLPRIV_V2 is negotiated;
 * libfuse 3.14 drops that flag, so killpriv.c reads it from the raw request.
 * Without v2: fallback (O_TRUNC by a non-root caller). */
bool fs_killpriv_open_kill(int open_flags, bool fallback);

/* ---- stats.c ---- */
/* .blazefs/stats: the pipeline's JSON merged with the fs counters.
 * Allocates *ret_buf (caller frees). */
int fs_stats_json(struct fs *fs, char **ret_buf, size_t *ret_len) EXCLUDES(fs_ns_lock);
/* .blazefs/metrics: the same counters in the Prometheus text format 0.0.4. */
int fs_stats_prometheus(struct fs *fs, char **ret_buf, size_t *ret_len) EXCLUDES(fs_ns_lock);
/* The files of the control directory: the inode of name (0: none), the
 * i-th file's name and inode (NULL past the last), and the content of a
 * file generated now (-ENOENT: not a control file). */
uint64_t fs_ctl_lookup(const char *name);
const char *fs_ctl_entry(size_t i, uint64_t *ret_ino);
int fs_ctl_content(struct fs *fs, uint64_t ino, char **ret_buf, size_t *ret_len) EXCLUDES(fs_ns_lock);

#endif
