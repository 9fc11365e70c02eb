/* crash_enum.c — crash-state enumeration against the real engine
 * (DESIGN §5; in the spirit of SQLite's crash VFS, ALICE and CrashMonkey).
 *
 * Stack:   store (or pipeline + store)  ->  probe vfs  ->  recording vfs
 *
 * The probe calls a hook before every call that changes the disk. The hook
 * looks at the recording vfs's pending (not yet durable) operations and
 * materializes crash states "the power failed right here":
 *   - every prefix of the pending ops (0 = the durable image);
 *   - every subset while <= 8 ops are pending, random subsets beyond;
 *   - the last kept write torn at each 512-byte sector boundary (a sample
 *     when the write spans many sectors), the rest of its sectors holding
 *     OLD, ZERO or GARBAGE bytes;
 * at most --per-point of them per point (the durable image and the
 * all-kept state always; --per-point 0: all of them, every sector). Each state is recovered with store_open on the
 * crash image and checked against the model (harness.h):
 *   - recovery succeeds;
 *   - the namespace + file sizes equal the model after some prefix p of the
 *     global op sequence with acked <= p <= submitted (store mode: p is a
 *     batch end; pipeline mode: a data op may be cut at a record boundary);
 *   - every live file's bytes equal the model's (so every acknowledged byte
 *     is present and intact, and no byte was never written);
 *   - sampled: close + reopen gives the same state (idempotence); crash
 *     states taken during a second recovery of the same image recover to
 *     the same state; an append made after recovery survives the next crash.
 *
 * Workloads (deterministic from --seed):
 *   store mode: single-threaded store_wal_append / store_wal_sync /
 *     store_apply / store_checkpoint with frames built here (raw and zstd
 *     data records, REC_NS records), a clean close/reopen now and then.
 *     Acknowledged = everything appended before a store_wal_sync that
 *     returned 0.
 *   pipeline mode: pipe_append / pipe_nsop, barriers PIPE_DURABLE. The
 *     barrier callback marks the ack on the commit thread itself, so a
 *     build that acks before the fdatasync is caught at the fdatasync's
 *     hook deterministically.
 *
 * Usage: crash_enum [--quick|--long] [--states N] [--seed S] [--mode store|pipe|both]
 *                   [--per-point M] [--point K] [-v]
 * env BZ_CRASH_STATES overrides the default state target.
 * Exit 0 ok, 1 violation (seed, point and state printed), 2 harness error.
 */
#include <getopt.h>
#include <stdarg.h>
#include <unistd.h>

#include "harness.h"
#include "storage/pipeline.h"
#include "storage/wal.h"

/* ------------------------------------------------------------- globals */
static uint64_t g_target = 70000; /* states to check before stopping (--quick) */
static uint64_t g_states, g_points, g_points_enum, g_idem, g_post, g_rcrash, g_create_fail,
	g_size_mismatch, g_runs_store, g_runs_pipe, g_ops, g_acks;
static int g_verbose;
static long g_only_point = -1;
static unsigned g_per_point = 24;
static uint64_t g_fsck, g_fsck_warn_states, g_fsck_torn_wal;
/* --mutant NAME: the engine runs with a deliberate bug (store test hook);
 * the run passes (exit 0) only if the enumeration finds a violation. */
static const char *g_mutant;
/* Growing truncates in the workload: 1 = one hole record each (REC_HOLE
 * frames in store mode, pipe_hole in pipeline mode), 2 = zeros appended as
 * data (what the fs sent before holes), 0 = none. */
static unsigned g_holes = 1;
static const struct {
	const char *name;
	int id;
} mutants[] = {
	{ "free_early", STORE_MUTANT_FREE_EARLY },
	{ "reuse_durable", STORE_MUTANT_REUSE_DURABLE },
	{ "truncate_early", STORE_MUTANT_TRUNCATE_EARLY },
	{ "tail_skip", STORE_MUTANT_TAIL_SKIP },
	{ "forget_dirty", STORE_MUTANT_FORGET_DIRTY },
	{ "forget_pack", STORE_MUTANT_FORGET_PACK },
	{ "no_preload", STORE_MUTANT_NO_PRELOAD },
	{ "split_uncounted", STORE_MUTANT_SPLIT_UNCOUNTED },
};

/* What the engine was doing at a crash point (store mode: set by the driver
 * around each call; pipeline mode: the commit thread runs, PH_PIPE). */
enum { PH_CREATE, PH_OPEN, PH_APPEND, PH_SYNC, PH_APPLY, PH_CKPT, PH_CLOSE, PH_PIPE, PH_N };
static const char *const ph_name[PH_N] = { "create", "recovery", "wal-append", "wal-sync",
					   "apply",  "checkpoint", "close", "pipeline" };
/* Which call the power failed before. */
enum { IO_WAL_WRITE, IO_WAL_SYNC, IO_WAL_OTHER, IO_DB_SUPER, IO_DB_DATA, IO_DB_INDEX, IO_DB_NSMETA, IO_DB_PACK,
       IO_DB_TREE, IO_DB_OTHER, IO_DB_SYNC, IO_DB_GROW, IO_DB_SHRINK, IO_DIR, IO_OTHER, IO_N };
static const char *const io_name[IO_N] = { "wal-write",	 "wal-sync",	"wal-create/size", "db-write-super",
					   "db-write-data",	 "db-write-index", "db-write-nsmeta", "db-write-pack", "db-write-tree",
					   "db-write-other", "db-sync",	"db-grow",	   "db-shrink",
					   "dir-op",	 "other" };
static uint64_t g_ph_states[PH_N], g_io_states[IO_N];
/* Every store.db page written, by page type (header byte 4; 6+ = other),
 * and store.db truncations that shrank it, over all runs. */
static uint64_t g_pages_written[10], g_db_shrinks, g_trunc_pending_states;
/* The namespace trees of the final images: most keys seen in each. */
static uint64_t g_cov_ino_keys, g_cov_dent_keys, g_cov_pack_keys;
/* Workload coverage, summed over runs (struct model's st, and the final
 * images' files). */
static uint64_t g_cov_appends, g_cov_hot, g_cov_big, g_cov_hotfiles, g_cov_hotfull, g_cov_del, g_cov_del_named,
	g_cov_del_big, g_cov_del_many, g_cov_reopen, g_cov_crashcont, g_cov_ckpt, g_cov_apply_first, g_cov_records_max,
	g_cov_files_idx, g_cov_holes, g_cov_hole_bytes, g_cov_cleaned, g_cov_sealed, g_cov_tails, g_cov_reloc, g_cov_split;

/* Pack pages cleaned by this store since open (counted before each close). */
static void cov_pack(struct store *s)
{
	struct store_stats st;
	if (!s)
		return;
	store_stats(s, &st);
	g_cov_cleaned += st.pages_cleaned;
	g_cov_sealed += st.chunks_sealed;
	g_cov_tails += st.tails_written;
	g_cov_split += st.chunks_split;
	g_cov_reloc += st.pages_relocated;
}

struct run {
	const char *mode;
	int mi; /* 0 store, 1 pipe */
	uint64_t seed;
	struct model *m;
	struct vfs *rec, *probe;
	struct store_opts sopts;
	pthread_mutex_t hook_mu;
	bool hook_on;
	bool creating;   /* the store is being created: no prior state to compare */
	uint64_t point;  /* crash points seen in this run */
	unsigned cap;    /* states per point */
	unsigned every;  /* enumerate every k-th non-sync point */
	struct rng srng; /* state sampling, reseeded per point */
	const char *cur_desc;
	int phase;       /* PH_*: what the driver (or the commit thread) is doing */
	int cat;         /* IO_*: the call at the current crash point */
	bool shrink_pending; /* a store.db shrink not yet made durable by a store.db sync */
};

/* Per-mode budgets: in --mode both the pipeline gets 30% of the states. */
static uint64_t g_mstates[2], g_mtarget[2];
/* Counted on the hook's thread (the commit thread in pipeline mode), read by
 * the driver: relaxed atomics (a budget, not synchronization). */
static inline void count_state(struct run *R)
{
	__atomic_fetch_add(&g_states, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&g_mstates[R->mi], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&g_ph_states[R->phase], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&g_io_states[R->cat], 1, __ATOMIC_RELAXED);
	if (R->shrink_pending)
		__atomic_fetch_add(&g_trunc_pending_states, 1, __ATOMIC_RELAXED);
}
static inline bool budget_left(const struct run *R)
{
	return __atomic_load_n(&g_mstates[R->mi], __ATOMIC_RELAXED) < g_mtarget[R->mi];
}

static BZ_PRINTF(3, 4) void violation(struct run *R, const char *state, const char *fmt, ...)
{
	va_list ap;
	printf("VIOLATION mode=%s seed=%" PRIu64 " point=%" PRIu64 " ops_submitted=%zu ops_acked=%zu\n", R->mode,
	       R->seed, R->point, m_submitted(R->m), m_acked(R->m));
	printf("  state: %s\n  what: ", state);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n  reproduce: crash_enum --mode %s --seed %" PRIu64 " --point %" PRIu64 "%s%s -v\n", R->mode, R->seed,
	       R->point, g_mutant ? " --mutant " : "", g_mutant ? g_mutant : "");
	if (g_mutant) {
		printf("crash_enum: mutant %s CAUGHT after %" PRIu64 " states (as it must be)\n", g_mutant, g_states);
		fflush(stdout);
		_exit(0);
	}
	printf("crash_enum: FAILED after %" PRIu64 " states\n", g_states);
	fflush(stdout);
	_exit(1);
}

static BZ_PRINTF(2, 3) void harness_fail(struct run *R, const char *fmt, ...)
{
	va_list ap;
	printf("ERROR mode=%s seed=%" PRIu64 " point=%" PRIu64 ": ", R ? R->mode : "-", R ? R->seed : 0,
	       R ? R->point : 0);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\ncrash_enum: FAILED (engine or harness error during the workload%s)\n",
	       g_mutant ? "; a mutant counts as caught only by a violation" : "");
	fflush(stdout);
	_exit(1);
}

static int open_on(struct run *R, struct vfs *v, struct store **ret)
{
	struct store_opts o = R->sopts;
	o.vfs = v;
	return store_open(&o, ret);
}

/* Recovers img and checks the full invariant set; returns the matched
 * prefix. On any violation the process exits. */
static long verify_store(struct run *R, struct store *s, const char *desc, size_t lo, size_t hi, struct rstate *rs)
{
	char why[320];
	long p;

	if (rs_extract(s, rs) < 0)
		violation(R, desc, "recovered namespace is malformed: %s", rs->err);
	p = m_match(R->m, rs, lo, hi);
	if (p < 0) {
		printf("  recovered: %" PRIu64 " inodes, %" PRIu64 " entries\n", rs->ninodes, rs->ndirents);
		m_diff(R->m, rs, lo, "acked");
		m_diff(R->m, rs, hi, "submitted");
		violation(R, desc,
			  "recovered state is not the model after any op prefix p in [acked=%zu, submitted=%zu] "
			  "(lost acknowledged data, a hole, reordering or a half-applied batch)",
			  lo, hi);
	}
	if (m_check_content(R->m, s, rs, why, sizeof(why)) < 0)
		violation(R, desc, "content: %s (state matched prefix %ld)", why, p);
	if (rs->size_mismatch)
		g_size_mismatch++;
	return p;
}

static void dump_wal(struct run *R, struct vfs *img);

/* ---- sampled deep checks: crash during a second recovery, append after */
struct nested {
	struct run *R;
	struct vfs *rec;
	uint64_t want_sig;
	const char *desc;
	unsigned budget;
	bool off;
	struct rng rng;
};

static void nested_hook(void *arg, enum vfs_op op, const struct probe_io *io)
{
	struct nested *N = arg;
	struct run *R = N->R;
	struct vfs *img = NULL;
	struct store *s = NULL;
	struct rstate rs;
	char desc[400];
	(void)op;
	(void)io;

	if (N->off || !N->budget || !rng_chance(&N->rng, 35))
		return;
	N->budget--;
	size_t n = vfs_rec_pending(N->rec);
	uint8_t *keep = calloc(n ? n : 1, 1);
	if (!keep)
		harness_fail(R, "out of memory");
	size_t upto = (size_t)rng_below(&N->rng, n + 1);
	for (size_t i = 0; i < upto; i++)
		keep[i] = 1;
	struct vfs_crash c = { .keep = keep, .n_keep = n, .torn_op = -1 };
	int rc = vfs_rec_crash(N->rec, &c, &img);
	if (rc < 0)
		harness_fail(R, "vfs_rec_crash (during recovery): %s", strerror(-rc));
	snprintf(desc, sizeof(desc), "%s, then a crash during its recovery keeping %zu of %zu pending ops", N->desc,
		 upto, n);
	if (g_verbose && g_only_point >= 0) {
		struct vfs *copy = NULL;
		printf("  nested state: %s\n", desc);
		for (size_t i = 0; i < n; i++) {
			struct vfs_rec_op ro;
			if (vfs_rec_op_get(N->rec, i, &ro) == 0)
				printf("    pending %zu: kind %d %s off %" PRIu64 " len %" PRIu64 "\n", i, (int)ro.kind,
				       ro.name, ro.off, ro.len);
		}
		if (vfs_mem_clone(img, &copy) == 0) {
			dump_wal(R, copy);
			vfs_destroy(copy);
		}
	}
	rc = open_on(R, img, &s);
	if (rc < 0)
		violation(R, desc, "store_open after a crash during recovery failed: %s", strerror(-rc));
	if (rs_extract(s, &rs) < 0)
		violation(R, desc, "recovered namespace is malformed: %s", rs.err);
	if (rs.sig != N->want_sig)
		violation(R, desc, "a crash during recovery changed the recovered state");
	char why[320];
	if (m_check_content(R->m, s, &rs, why, sizeof(why)) < 0)
		violation(R, desc, "content after a crash during recovery: %s", why);
	store_close(s);
	vfs_destroy(img);
	free(keep);
	count_state(R);
	g_rcrash++;
}

static int post_append(struct store *s, struct model *m)
{
	uint8_t nsbuf[NSOP_MAX_LEN];
	size_t cap = 2 * REC_HDR_MAX + NSOP_MAX_LEN + ZSTD_compressBound(M_POST_LEN);
	uint8_t *buf = malloc(cap);
	struct ns_op op = { .kind = NS_CREATE, .ino = M_POST_INO, .parent = NS_ROOT_INO, .name = "post",
			    .name_len = 4, .mode = S_IFREG | 0644, .ctime_ns = m->time_ns };
	uint64_t lsn;
	int rc, n, len = 0;

	if (!buf)
		return -ENOMEM;
	rc = nsop_encode(&op, nsbuf, sizeof(nsbuf));
	if (rc < 0)
		goto out;
	n = frame_build(buf, cap, REC_NS, 0, 0, nsbuf, (size_t)rc, false);
	if (n < 0) {
		rc = n;
		goto out;
	}
	len = n;
	n = frame_build(buf + len, cap - (size_t)len, REC_DATA, M_POST_INO, 0, m->content[M_POST_INO], M_POST_LEN,
			true);
	if (n < 0) {
		rc = n;
		goto out;
	}
	len += n;
	rc = store_wal_append(s, m->time_ns, buf, (size_t)len, &lsn);
	if (rc < 0)
		goto out;
	rc = store_wal_sync(s);
	if (rc < 0)
		goto out;
	rc = store_apply(s, lsn, m->time_ns, buf, (size_t)len);
out:
	free(buf);
	return rc < 0 ? rc : 0;
}

static void deep_recovery(struct run *R, struct vfs *rec2, const struct rstate *r1, const char *desc)
{
	struct nested N = { .R = R, .rec = rec2, .want_sig = r1->sig, .desc = desc, .budget = 3 };
	struct vfs *probe2 = NULL, *img3 = NULL;
	struct store *s2 = NULL, *s3 = NULL;
	struct rstate rs;
	char d2[400], why[320];
	int rc;

	N.rng.s = mix2(R->seed, R->point * 7919 + g_states);
	if (probe_new(rec2, nested_hook, &N, &probe2) < 0)
		harness_fail(R, "out of memory");
	rc = open_on(R, probe2, &s2);
	if (rc < 0)
		violation(R, desc, "second recovery of the same crash image failed: %s", strerror(-rc));
	N.off = true;
	if (rs_extract(s2, &rs) < 0 || rs.sig != r1->sig)
		violation(R, desc, "recovery is not deterministic: the same crash image recovered twice differs %s",
			  rs.err);
	/* An append after recovery must survive the next crash. */
	rc = post_append(s2, R->m);
	if (rc < 0)
		violation(R, desc, "append + sync after recovery failed: %s", strerror(-rc));
	rc = vfs_rec_crash(rec2, &durable_only, &img3);
	if (rc < 0)
		harness_fail(R, "vfs_rec_crash: %s", strerror(-rc));
	snprintf(d2, sizeof(d2), "%s, recovered, appended %u bytes to a new file + synced, crashed", desc, M_POST_LEN);
	rc = open_on(R, img3, &s3);
	if (rc < 0)
		violation(R, d2, "recovery failed: %s", strerror(-rc));
	if (rs_extract(s3, &rs) < 0)
		violation(R, d2, "recovered namespace is malformed: %s", rs.err);
	uint64_t want = r1->sig + h_dirent(NS_ROOT_INO, "post", 4, M_POST_INO) +
			h_inode(M_POST_INO, MT_REG, 1, M_POST_LEN);
	if (rs.sig != want)
		violation(R, d2, "the synced append after recovery (or the state before it) was lost");
	if (m_check_content(R->m, s3, &rs, why, sizeof(why)) < 0)
		violation(R, d2, "content: %s", why);
	store_close(s3);
	store_close(s2);
	vfs_destroy(img3);
	vfs_destroy(probe2);
	g_post++;
	count_state(R);
}

static int dump_entry(void *arg, const struct wal_entry_info *e)
{
	(void)arg;
	printf("    wal seg %u off %" PRIu64 " life %" PRIu64 " kind %u lsn %" PRIu64 " len %" PRIu64 " %s\n", e->segment,
	       e->offset, e->life, e->kind, e->lsn, e->len, e->valid ? "valid" : "INVALID");
	return 0;
}

/* Diagnostics for a violation: the WAL entries of the crash image. */
static void dump_wal(struct run *R, struct vfs *img)
{
	struct wal_opts wo = { .segment_bytes = R->sopts.wal_segment_bytes, .segments = R->sopts.wal_segments };
	if (g_verbose)
		(void)wal_inspect(img, &wo, dump_entry, NULL);
}

struct fsck_ctx {
	char first_error[256];
};
static void fsck_problem(void *arg, enum store_check_sev sev, const char *msg)
{
	struct fsck_ctx *c = arg;
	if (sev == STORE_CHECK_ERROR && !c->first_error[0] && strncmp(msg, "WAL: ", 5))
		snprintf(c->first_error, sizeof(c->first_error), "%s", msg);
}

/* blazectl fsck's check on a recovered store: no error in the PageStore (a
 * page referenced twice, referenced and free, a record that does not
 * verify, ...), nor a whole committed batch beyond the log's end. Not
 * failed: leaked pages and a torn WAL tail beyond the recovered log's end
 * (warnings: a crash leaves them by design, counted). */
static void fsck_state(struct run *R, struct store *s, const char *desc)
{
	struct fsck_ctx c = { { 0 } };
	struct store_check_ops ops = { .problem = fsck_problem };
	struct store_check_report rep;
	int rc = store_check(s, 0, &ops, &c, &rep);
	if (rc < 0)
		violation(R, desc, "store_check (fsck) of the recovered store failed: %s", strerror(-rc));
	if (rep.errors)
		violation(R, desc, "fsck of the recovered store: %" PRIu64 " errors, the first: %s", rep.errors,
			  c.first_error);
	g_fsck++;
	g_fsck_warn_states += rep.warnings > 0;
	g_fsck_torn_wal += rep.wal_torn;
}

/* Recovers one crash image (consumed) and checks it. */
static void check_image(struct run *R, struct vfs *img, const char *desc, bool deep_ok)
{
	size_t lo = m_acked(R->m), hi = m_submitted(R->m);
	struct vfs *rec2 = NULL;
	struct store *s = NULL;
	struct rstate r1, r2;
	unsigned dice = (unsigned)rng_below(&R->srng, 48);
	bool deep = deep_ok && dice == 0;
	bool idem = deep_ok && dice >= 1 && dice <= 4;
	char why[320];
	int rc;

	if (deep && vfs_rec_from(img, &rec2) < 0)
		harness_fail(R, "vfs_rec_from failed");
	if (g_verbose && g_only_point >= 0) {
		struct vfs *copy = NULL;
		if (vfs_mem_clone(img, &copy) == 0) {
			printf("  state %s:\n", desc);
			dump_wal(R, copy);
			vfs_destroy(copy);
		}
	}
	rc = open_on(R, img, &s);
	if (rc < 0) {
		if (R->creating) {
			g_create_fail++;
			goto out;
		}
		violation(R, desc, "store_open on the crash image failed: %s", strerror(-rc));
	}
	long p = verify_store(R, s, desc, lo, hi, &r1);
	count_state(R);
	if (g_verbose > 1)
		printf("  ok: %s -> prefix %ld\n", desc, p);
	rc = store_close(s);
	s = NULL;
	if (rc < 0)
		violation(R, desc, "store_close after recovery failed: %s", strerror(-rc));
	if (idem) {
		rc = open_on(R, img, &s);
		if (rc < 0)
			violation(R, desc, "reopen after recovery failed: %s", strerror(-rc));
		if (rs_extract(s, &r2) < 0 || r2.sig != r1.sig)
			violation(R, desc, "recovery is not idempotent: reopening changed the state %s", r2.err);
		if (m_check_content(R->m, s, &r2, why, sizeof(why)) < 0)
			violation(R, desc, "content after reopen: %s", why);
		fsck_state(R, s, desc);
		store_close(s);
		s = NULL;
		g_idem++;
		count_state(R);
	}
	if (deep)
		deep_recovery(R, rec2, &r1, desc);
out:
	vfs_destroy(rec2);
	vfs_destroy(img);
}

/* ------------------------------------------------------- enumeration */
enum { C_PREFIX, C_MASK, C_RANDOM };
struct cand {
	uint8_t kind;
	uint8_t fill;
	uint32_t i;    /* prefix: ops kept */
	uint64_t bits; /* mask bits / random seed */
	long torn;
	uint64_t torn_at;
	/* "hole": write i-1 of a prefix reached the disk except one sector in
	 * its middle (disks do not order the sectors of one write), which holds
	 * the old bytes (hole_fill OLD) or garbage */
	int64_t hole_at; /* absolute file offset of the sector, or -1 */
	uint8_t hole_fill;
};
struct cands {
	struct cand *v;
	size_t n, cap;
};
static void cands_push(struct run *R, struct cands *C, struct cand c)
{
	if (C->n == C->cap) {
		C->cap = C->cap ? 2 * C->cap : 256;
		C->v = realloc(C->v, C->cap * sizeof(*C->v));
		if (!C->v)
			harness_fail(R, "out of memory");
	}
	C->v[C->n++] = c;
}

static const char *fill_name(unsigned f) { return f == VFS_TEAR_OLD ? "OLD" : f == VFS_TEAR_ZERO ? "ZERO" : "GARBAGE"; }

static void add_tears(struct run *R, struct cands *C, struct cand base, const struct vfs_rec_op *w, long idx)
{
	uint64_t ts[160];
	size_t nt = 0;
	ts[nt++] = 0;
	for (uint64_t b = (w->off / 512 + 1) * 512; b < w->off + w->len && nt < BZ_ARRAY_SIZE(ts); b += 512)
		ts[nt++] = b - w->off;
	if (nt > 6 && R->cap) { /* 0, first, last and three random boundaries (all when uncapped) */
		uint64_t pick[6] = { ts[0], ts[1], ts[nt - 1], 0, 0, 0 };
		for (int k = 3; k < 6; k++)
			pick[k] = ts[1 + rng_below(&R->srng, nt - 1)];
		memcpy(ts, pick, sizeof(pick));
		nt = 6;
	}
	for (size_t k = 0; k < nt; k++) {
		for (unsigned f = VFS_TEAR_OLD; f <= VFS_TEAR_GARBAGE; f++) {
			if (ts[k] == 0 && f == VFS_TEAR_OLD)
				continue; /* same as not keeping the write */
			struct cand c = base;
			c.hole_at = -1;
			c.torn = idx;
			c.torn_at = ts[k];
			c.fill = (uint8_t)f;
			cands_push(R, C, c);
		}
	}
}

static void build_keep(const struct cand *c, size_t n, uint8_t *keep)
{
	struct rng r = { c->bits };
	for (size_t j = 0; j < n; j++) {
		switch (c->kind) {
		case C_PREFIX:
			keep[j] = j < c->i;
			break;
		case C_MASK:
			keep[j] = (uint8_t)((c->bits >> j) & 1);
			break;
		default:
			keep[j] = (uint8_t)(rng_next(&r) & 1);
			break;
		}
	}
	if (c->torn >= 0)
		keep[c->torn] = 1;
}

static void describe(char *buf, size_t cap, const struct cand *c, const uint8_t *keep, size_t n,
		     const struct vfs_rec_op *ops)
{
	size_t o = (size_t)snprintf(buf, cap, "%zu pending, keep=", n);
	for (size_t j = 0; j < n && o + 8 < cap; j++) {
		if (j == 64) {
			o += (size_t)snprintf(buf + o, cap - o, "...");
			break;
		}
		buf[o++] = keep[j] ? '1' : '0';
	}
	buf[o] = 0;
	if (c->hole_at >= 0 && o < cap) {
		const struct vfs_rec_op *w = &ops[c->i - 1];
		o += (size_t)snprintf(buf + o, cap - o, " hole: sector at %" PRId64 " of op %u (%s off %" PRIu64 " len %" PRIu64
					  ") holds %s bytes",
				      c->hole_at, c->i - 1, w->name, w->off, w->len, c->hole_fill ? "GARBAGE" : "OLD");
	}
	if (c->torn >= 0 && o < cap) {
		const struct vfs_rec_op *w = &ops[c->torn];
		snprintf(buf + o, cap - o, " torn op %ld (%s off %" PRIu64 " len %" PRIu64 ") at +%" PRIu64 " fill %s",
			 c->torn, w->name, w->off, w->len, c->torn_at, fill_name(c->fill));
	}
}

/* Replaces one sector of write w in img by its old bytes (the state with
 * the write not kept) or by garbage. */
static void make_hole(struct run *R, struct vfs *img, const struct cand *c, size_t n, uint8_t *keep,
		      const struct vfs_rec_op *w)
{
	uint64_t lo = BZ_MAX((uint64_t)c->hole_at, w->off);
	uint64_t hi = BZ_MIN((uint64_t)c->hole_at + 512, w->off + w->len);
	uint8_t buf[512];
	size_t got = 0;
	struct vfs_file *f = NULL;
	int rc;

	memset(buf, 0, sizeof(buf));
	if (c->hole_fill == VFS_TEAR_OLD) {
		struct vfs *old = NULL;
		keep[c->i - 1] = 0;
		struct vfs_crash cr = { .keep = keep, .n_keep = n, .torn_op = -1 };
		rc = vfs_rec_crash(R->rec, &cr, &old);
		keep[c->i - 1] = 1;
		if (rc < 0)
			harness_fail(R, "vfs_rec_crash (old bytes): %s", strerror(-rc));
		if (vfs_open(old, w->name, VFS_O_RDONLY, &f) == 0) {
			(void)vfs_pread(f, buf, (size_t)(hi - lo), lo, &got);
			vfs_close(f);
			f = NULL;
		}
		vfs_destroy(old);
	} else {
		struct rng r = { mix2(R->seed, (uint64_t)c->hole_at) };
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)rng_next(&r);
	}
	rc = vfs_open(img, w->name, VFS_O_RDWR, &f);
	if (rc == -ENOENT)
		return; /* the file itself did not survive */
	if (rc < 0 || (rc = vfs_pwrite(f, buf, (size_t)(hi - lo), lo)) < 0)
		harness_fail(R, "making a hole in %s: %s", w->name, strerror(-rc));
	vfs_close(f);
}

static void enumerate(struct run *R)
{
	size_t n = vfs_rec_pending(R->rec);
	struct vfs_rec_op *ops = calloc(n ? n : 1, sizeof(*ops));
	uint8_t *keep = calloc(n ? n : 1, 1);
	struct cands C = { 0 };
	char desc[512];
	unsigned cap = g_only_point >= 0 || !R->cap ? UINT32_MAX : R->cap;

	if (!ops || !keep)
		harness_fail(R, "out of memory");
	for (size_t i = 0; i < n; i++) {
		int rc = vfs_rec_op_get(R->rec, i, &ops[i]);
		if (rc < 0)
			harness_fail(R, "vfs_rec_op_get(%zu of %zu): %s", i, n, strerror(-rc));
	}
	/* prefixes (C.v[0] = durable image, C.v[1] = everything) and torn tails */
	cands_push(R, &C, (struct cand){ .kind = C_PREFIX, .i = 0, .torn = -1, .hole_at = -1 });
	if (n)
		cands_push(R, &C, (struct cand){ .kind = C_PREFIX, .i = (uint32_t)n, .torn = -1, .hole_at = -1 });
	for (size_t i = 1; i < n; i++)
		cands_push(R, &C, (struct cand){ .kind = C_PREFIX, .i = (uint32_t)i, .torn = -1, .hole_at = -1 });
	for (size_t i = 1; i <= n; i++)
		if (ops[i - 1].kind == VFS_REC_WRITE && ops[i - 1].len)
			add_tears(R, &C, (struct cand){ .kind = C_PREFIX, .i = (uint32_t)i - 1 }, &ops[i - 1],
				  (long)i - 1);
	/* a hole in the middle of the last kept write (two sectors, OLD and GARBAGE) */
	for (size_t i = 1; i <= n; i++) {
		const struct vfs_rec_op *w = &ops[i - 1];
		if (w->kind != VFS_REC_WRITE || !w->len)
			continue;
		uint64_t first = w->off / 512, last = (w->off + w->len - 1) / 512;
		if (last - first < 1)
			continue;
		for (int k = 0; k < 2; k++) {
			uint64_t sec = first + rng_below(&R->srng, last - first); /* never the last sector */
			for (unsigned f = VFS_TEAR_OLD; f <= VFS_TEAR_GARBAGE; f += 2)
				cands_push(R, &C, (struct cand){ .kind = C_PREFIX, .i = (uint32_t)i, .torn = -1,
								  .hole_at = (int64_t)(sec * 512), .hole_fill = (uint8_t)f });
		}
	}
	/* subsets */
	if (n <= 8) {
		for (uint64_t b = 0; b < (1ull << n); b++) {
			if ((b & (b + 1)) == 0)
				continue; /* a prefix */
			cands_push(R, &C, (struct cand){ .kind = C_MASK, .bits = b, .torn = -1, .hole_at = -1 });
		}
	} else {
		for (int k = 0; k < 32; k++) {
			struct cand c = { .kind = C_RANDOM, .bits = rng_next(&R->srng), .torn = -1, .hole_at = -1 };
			if (rng_chance(&R->srng, 30)) { /* tear its last kept write */
				build_keep(&c, n, keep);
				for (size_t j = n; j-- > 0;) {
					if (keep[j] && ops[j].kind == VFS_REC_WRITE && ops[j].len) {
						c.torn = (long)j;
						c.torn_at = (rng_below(&R->srng, ops[j].len) / 512) * 512;
						c.fill = (uint8_t)rng_below(&R->srng, 3);
						break;
					}
					if (keep[j])
						break;
				}
			}
			cands_push(R, &C, c);
		}
	}
	/* sample down to the cap, keeping the first two */
	size_t fixed = BZ_MIN(C.n, (size_t)2);
	if (C.n > cap && cap >= fixed) {
		for (size_t k = fixed; k < cap; k++) {
			size_t j = k + (size_t)rng_below(&R->srng, C.n - k);
			struct cand t = C.v[k];
			C.v[k] = C.v[j];
			C.v[j] = t;
		}
		C.n = cap;
	}
	if (g_verbose) {
		printf("point %" PRIu64 ": %zu pending ops, %zu states (acked %zu, submitted %zu)\n", R->point, n,
		       C.n, m_acked(R->m), m_submitted(R->m));
		for (size_t i = 0; i < n && g_only_point >= 0; i++)
			printf("  pending %zu: %s %s%s%s off %" PRIu64 " len %" PRIu64 "\n", i,
			       (const char *[]){ "WRITE", "TRUNCATE", "CREATE", "RENAME", "UNLINK" }[ops[i].kind],
			       ops[i].name, ops[i].name2 ? " -> " : "", ops[i].name2 ? ops[i].name2 : "", ops[i].off,
			       ops[i].len);
	}
	for (size_t k = 0; k < C.n; k++) {
		struct vfs *img = NULL;
		const struct cand *c = &C.v[k];
		build_keep(c, n, keep);
		if (c->torn >= 0 && ops[c->torn].kind != VFS_REC_WRITE)
			continue;
		struct vfs_crash cr = { .keep = n ? keep : NULL, .n_keep = n, .torn_op = c->torn,
					.torn_at = c->torn_at, .torn_fill = c->fill,
					.seed = mix2(R->seed, R->point * 131 + k) };
		describe(desc, sizeof(desc), c, keep, n, ops);
		int rc = vfs_rec_crash(R->rec, &cr, &img);
		if (rc < 0)
			harness_fail(R, "vfs_rec_crash(%s): %s", desc, strerror(-rc));
		if (c->hole_at >= 0)
			make_hole(R, img, c, n, keep, &ops[c->i - 1]);
		check_image(R, img, desc, !R->creating);
	}
	g_points_enum++;
	free(C.v);
	free(ops);
	free(keep);
}

/* The call's category (IO_*), and store.db pages written by type. */
static int classify(enum vfs_op op, const struct probe_io *io)
{
	bool sync = op == VFS_OP_FDATASYNC || op == VFS_OP_FSYNC;
	if (!io->name)
		return IO_DIR;
	if (!strncmp(io->name, "wal.", 4))
		return op == VFS_OP_PWRITE ? IO_WAL_WRITE : sync ? IO_WAL_SYNC : IO_WAL_OTHER;
	if (strcmp(io->name, "store.db"))
		return op == VFS_OP_OPEN ? IO_DIR : IO_OTHER;
	if (sync)
		return IO_DB_SYNC;
	if (op == VFS_OP_FTRUNCATE || op == VFS_OP_FALLOCATE)
		return io->off < io->len ? IO_DB_SHRINK : IO_DB_GROW;
	if (op != VFS_OP_PWRITE)
		return IO_DB_OTHER;
	int cat = IO_DB_OTHER;
	for (uint64_t k = 0; io->off % 4096 == 0 && k + 48 <= io->len; k += 4096) {
		const uint8_t *pg = io->buf + k;
		unsigned t = bz_get_le32(pg) == 0x47505a42u ? pg[4] : 0; /* PAGER_MAGIC */
		__atomic_fetch_add(&g_pages_written[BZ_MIN(t, 9u)], 1, __ATOMIC_RELAXED);
		if (k == 0)
			cat = t == 1 ? IO_DB_SUPER : t == 2 ? IO_DB_DATA : t == 3 ? IO_DB_INDEX : t == 4 ? IO_DB_NSMETA :
			      t == 5 ? IO_DB_PACK : t >= 6 && t <= 8 ? IO_DB_TREE : IO_DB_OTHER;
	}
	return cat;
}

static void run_hook(void *arg, enum vfs_op op, const struct probe_io *io)
{
	struct run *R = arg;
	bool sync = op == VFS_OP_FDATASYNC || op == VFS_OP_FSYNC || op == VFS_OP_SYNC_DIR;

	pthread_mutex_lock(&R->hook_mu);
	if (!R->hook_on)
		goto out;
	R->cat = classify(op, io);
	if (R->cat == IO_DB_SHRINK)
		g_db_shrinks++;
	R->point++;
	g_points++;
	if (g_only_point >= 0) {
		if ((long)R->point == g_only_point)
			enumerate(R);
		goto out;
	}
	if (!budget_left(R))
		goto out;
	if (!sync && R->every > 1 && R->point % R->every)
		goto out;
	R->srng.s = mix2(R->seed, R->point);
	enumerate(R);
out:
	if (R->hook_on && R->cat == IO_DB_SHRINK)
		R->shrink_pending = true; /* the points after this one have it pending */
	else if (R->hook_on && R->cat == IO_DB_SYNC)
		R->shrink_pending = false;
	pthread_mutex_unlock(&R->hook_mu);
}

static void run_init(struct run *R, const char *mode, uint64_t seed, struct model *m, bool all_bnd)
{
	memset(R, 0, sizeof(*R));
	R->mode = mode;
	R->mi = strcmp(mode, "store") ? 1 : 0;
	R->seed = seed;
	R->m = m;
	pthread_mutex_init(&R->hook_mu, NULL);
	if (m_init(m, mix2(seed, 1), 2, all_bnd) < 0)
		harness_fail(R, "out of memory");
	if (vfs_rec_new(&R->rec) < 0 || probe_new(R->rec, run_hook, R, &R->probe) < 0)
		harness_fail(R, "cannot create the recording vfs");
	store_opts_default(&R->sopts);
	R->sopts.wal_segment_bytes = 64 << 10;
	R->sopts.wal_segments = 4;
	R->sopts.checkpoint_bytes = (32 + rng_below(&m->gen, 64)) << 10;
	R->sopts.cache_bytes = 1 << 20;
	/* open chunks (storage/store_chunk.c): small chunks so that appends
	 * seal them, and a small budget so that buffers are spilled as tails
	 * between checkpoints */
	R->sopts.chunk_bytes = rng_below(&m->gen, 2) ? 512 : 4096;
	R->sopts.open_chunk_budget = 8u << 10;
	R->sopts.create = true;
	R->cap = g_per_point;
	R->every = 1;
}

static void run_create(struct run *R, struct store **ret)
{
	R->creating = true;
	R->hook_on = true;
	R->phase = PH_CREATE;
	int rc = open_on(R, R->probe, ret);
	if (rc < 0)
		harness_fail(R, "store_open (create): %s", strerror(-rc));
	R->creating = false;
	R->m->stress = true;
	R->m->holes = (uint8_t)g_holes;
	struct ns *ns = NULL;
	if (store_ns_clone(*ret, &ns) == 0) {
		R->m->next_ino = BZ_MAX(R->m->next_ino, ns_next_ino(ns));
		ns_free(ns);
	}
}

static int cov_records(void *arg, const struct store_record_info *ri)
{
	(void)ri;
	(*(uint64_t *)arg)++;
	return 0;
}

/* Workload coverage of one run: the model's counters, and per live file of
 * the final image its data records (v1: > 126 = full index pages). */
static void coverage(struct run *R, struct vfs *img)
{
	struct model *m = R->m;
	struct vfs *copy = NULL;
	struct store *s = NULL;
	struct store_opts o = R->sopts;

	g_cov_appends += m->st.appends;
	g_cov_hot += m->st.hot_appends;
	g_cov_big += m->st.big_appends;
	g_cov_hotfiles += m->st.hot_files;
	g_cov_hotfull += m->st.hot_filled;
	g_cov_del += m->st.del_data;
	g_cov_del_named += m->st.del_named;
	g_cov_del_big += m->st.del_big;
	g_cov_del_many += m->st.del_many;
	g_cov_holes += m->st.holes;
	g_cov_hole_bytes += m->st.hole_bytes;
	if (vfs_mem_clone(img, &copy) < 0)
		harness_fail(R, "vfs_mem_clone");
	struct store_sb_info sbi[2];
	if (store_read_superblocks(copy, sbi) == 0)
		for (int k = 0; k < 2; k++) {
			g_cov_ino_keys = BZ_MAX(g_cov_ino_keys, sbi[k].ino_count);
			g_cov_dent_keys = BZ_MAX(g_cov_dent_keys, sbi[k].dent_count);
			g_cov_pack_keys = BZ_MAX(g_cov_pack_keys, sbi[k].pack_count);
		}
	o.vfs = copy;
	o.read_only = true;
	if (store_open(&o, &s) == 0) {
		for (uint64_t i = 2; i < M_MAX_INO; i++) {
			uint64_t n = 0;
			if (m->type[i] != MT_REG || store_file_records(s, i, cov_records, &n) < 0)
				continue;
			g_cov_records_max = BZ_MAX(g_cov_records_max, n);
			g_cov_files_idx += n > 126;
		}
		store_close(s);
	}
	vfs_destroy(copy);
}

/* The final durable image must hold everything. */
static void run_finish(struct run *R)
{
	struct vfs *img = NULL;
	pthread_mutex_lock(&R->hook_mu);
	R->hook_on = false;
	pthread_mutex_unlock(&R->hook_mu);
	m_ack(R->m, m_submitted(R->m));
	if (vfs_rec_crash(R->rec, &durable_only, &img) < 0)
		harness_fail(R, "vfs_rec_crash (final)");
	coverage(R, img);
	check_image(R, img, "final durable image after a clean close", false);
	g_ops += m_submitted(R->m);
	vfs_destroy(R->probe);
	vfs_destroy(R->rec);
	m_free(R->m);
	pthread_mutex_destroy(&R->hook_mu);
}

/* ------------------------------------------------------- store mode */
struct pend {
	uint64_t lsn;
	uint8_t *buf;
	size_t len;
};

static void apply_group(struct run *R, struct store *s, struct pend *g, size_t ng)
{
	R->phase = PH_APPLY;
	for (size_t i = 0; i < ng; i++) {
		int rc = store_apply(s, g[i].lsn, R->m->time_ns, g[i].buf, g[i].len);
		if (rc < 0)
			harness_fail(R, "store_apply(lsn %" PRIu64 "): %s", g[i].lsn, strerror(-rc));
		free(g[i].buf);
		g[i].buf = NULL;
	}
}

static void checkpoint(struct run *R, struct store *s)
{
	if (g_verbose && g_only_point >= 0)
		printf("checkpoint at point %" PRIu64 "\n", R->point);
	R->phase = PH_CKPT;
	int rc = store_checkpoint(s);
	if (rc < 0)
		harness_fail(R, "store_checkpoint: %s", strerror(-rc));
	g_cov_ckpt++;
}

/* Syncs the WAL (the acknowledgement) and applies the group. apply_first:
 * apply before the sync, as the pipeline's commit thread may (it applies
 * every appended batch, synced or not): whatever apply writes to store.db
 * then precedes the WAL's durability. */
static void flush_group(struct run *R, struct store *s, struct pend *g, size_t *ng, bool apply_first)
{
	int rc;
	if (apply_first && *ng) {
		apply_group(R, s, g, *ng);
		g_cov_apply_first++;
	}
	if (*ng) {
		size_t upto = m_submitted(R->m);
		R->phase = PH_SYNC;
		rc = store_wal_sync(s);
		if (rc < 0)
			harness_fail(R, "store_wal_sync: %s", strerror(-rc));
		m_ack(R->m, upto);
		g_acks++;
		if (g_verbose && g_only_point >= 0)
			printf("synced: acked %zu ops, point %" PRIu64 "\n", upto, R->point);
	}
	if (!apply_first)
		apply_group(R, s, g, *ng);
	*ng = 0;
	if (store_need_checkpoint(s))
		checkpoint(R, s);
}

/* "Power cut, then carry on": everything is synced; the run continues on a
 * new recording vfs holding only the durable image, starting with its
 * recovery (whose I/O is enumerated like any other). The old store is
 * closed on the old disk with the hook off. */
static void crash_continue(struct run *R, struct store **s)
{
	struct vfs *img = NULL, *rec = NULL, *probe = NULL;
	int rc = vfs_rec_crash(R->rec, &durable_only, &img);
	if (rc < 0)
		harness_fail(R, "vfs_rec_crash (continue): %s", strerror(-rc));
	pthread_mutex_lock(&R->hook_mu);
	R->hook_on = false;
	pthread_mutex_unlock(&R->hook_mu);
	R->phase = PH_CLOSE;
	cov_pack(*s);
	(void)store_close(*s); /* on the abandoned disk */
	*s = NULL;
	if (vfs_rec_from(img, &rec) < 0 || probe_new(rec, run_hook, R, &probe) < 0)
		harness_fail(R, "cannot create the recording vfs");
	vfs_destroy(img);
	pthread_mutex_lock(&R->hook_mu);
	vfs_destroy(R->probe);
	vfs_destroy(R->rec);
	R->rec = rec;
	R->probe = probe;
	R->shrink_pending = false;
	R->hook_on = true;
	pthread_mutex_unlock(&R->hook_mu);
	R->phase = PH_OPEN;
	rc = open_on(R, R->probe, s);
	if (rc < 0)
		violation(R, "the durable image after a synced workload", "recovery failed: %s", strerror(-rc));
	g_cov_crashcont++;
}

static void reopen(struct run *R, struct store **s)
{
	R->phase = PH_CLOSE;
	cov_pack(*s);
	int rc = store_close(*s);
	*s = NULL;
	if (rc < 0)
		harness_fail(R, "store_close: %s", strerror(-rc));
	R->phase = PH_OPEN;
	rc = open_on(R, R->probe, s);
	if (rc < 0)
		harness_fail(R, "store_open (reopen): %s", strerror(-rc));
	g_cov_reopen++;
}

static uint64_t store_ckpts(struct store *s)
{
	struct store_stats st;
	store_stats(s, &st);
	return st.checkpoints;
}

static void run_store(uint64_t seed, unsigned steps)
{
	static struct model model;
	struct run R;
	struct store *s = NULL;
	struct pend group[4];
	size_t ng = 0;
	/* a batch: ops while it holds < 16 KiB, the last one up to M_BIG_APPEND */
	size_t per_op = REC_HDR_MAX + BZ_MAX((size_t)NSOP_MAX_LEN, ZSTD_compressBound(M_BIG_APPEND));
	size_t cap = (16u << 10) + per_op;
	uint8_t nsbuf[NSOP_MAX_LEN];
	int rc;

	uint64_t big_dels = 0;

	run_init(&R, "store", seed, &model, false);
	R.every = 1;
	run_create(&R, &s);
	struct rng *r = &model.gen;
	for (unsigned step = 0; step < steps && budget_left(&R); step++) {
		uint8_t *buf = malloc(cap);
		size_t len = 0;
		/* 40% of the batches carry many ops (many records per file) */
		unsigned nops = 1 + (unsigned)rng_below(r, rng_chance(r, 40) ? 32 : 4);
		if (!buf)
			harness_fail(&R, "out of memory");
		model.epoch = store_ckpts(s);
		for (unsigned k = 0; k < nops && len < (16u << 10); k++) {
			struct gen_op g;
			rc = m_gen(&model, &g, 70);
			if (rc < 0)
				break;
			if (g.mop.kind == MOP_DATA && g.mop.hole) {
				rc = hole_frame_build(buf + len, cap - len, g.mop.ino, g.mop.off, g.mop.len);
			} else if (g.mop.kind == MOP_DATA) {
				rc = frame_build(buf + len, cap - len, REC_DATA, g.mop.ino, g.mop.off, g.data, g.mop.len,
						 rng_chance(r, 40));
			} else {
				int el = nsop_encode(&g.ns, nsbuf, sizeof(nsbuf));
				if (el < 0)
					harness_fail(&R, "nsop_encode(kind %u): %s", g.ns.kind, strerror(-el));
				rc = frame_build(buf + len, cap - len, REC_NS, 0, 0, nsbuf, (size_t)el, false);
			}
			if (rc < 0)
				harness_fail(&R, "frame_build: %s", strerror(-rc));
			len += (size_t)rc;
		}
		if (!len) {
			free(buf);
			break;
		}
		model.bnd[m_submitted(&model)] = 1;
		bool apply_first = rng_chance(r, 30);
		if (!store_wal_has_room(s, len)) {
			flush_group(&R, s, group, &ng, apply_first);
			checkpoint(&R, s);
			if (!store_wal_has_room(s, len))
				harness_fail(&R, "no WAL room for %zu bytes right after a checkpoint", len);
		}
		model.time_ns += 1000;
		R.phase = PH_APPEND;
		rc = store_wal_append(s, model.time_ns, buf, len, &group[ng].lsn);
		if (rc < 0)
			harness_fail(&R, "store_wal_append(%zu bytes): %s", len, strerror(-rc));
		if (g_verbose && g_only_point >= 0)
			printf("step %u: appended lsn %" PRIu64 " (%zu bytes), ops now %zu, point %" PRIu64 "\n", step,
			       group[ng].lsn, len, m_submitted(&model), R.point);
		group[ng].buf = buf;
		group[ng].len = len;
		ng++;
		if (ng == BZ_ARRAY_SIZE(group) || rng_chance(r, 55))
			flush_group(&R, s, group, &ng, apply_first);
		unsigned c = (unsigned)rng_below(r, 100);
		if (c < 2) { /* clean close + reopen (recovery of a clean store) */
			flush_group(&R, s, group, &ng, false);
			reopen(&R, &s);
		} else if (c < 4) { /* power cut with everything synced, then carry on */
			flush_group(&R, s, group, &ng, false);
			crash_continue(&R, &s);
		} else if (c < 7 || (model.st.del_big > big_dels && c < 50)) {
			/* a checkpoint before the WAL asks for one; half the
			 * time right after a large file went (its space freed
			 * at the end of store.db: H lowered, store.db cut) */
			flush_group(&R, s, group, &ng, apply_first);
			checkpoint(&R, s);
		}
		big_dels = model.st.del_big;
	}
	flush_group(&R, s, group, &ng, false);
	R.phase = PH_CLOSE;
	cov_pack(s);
	rc = store_close(s);
	if (rc < 0)
		harness_fail(&R, "store_close: %s", strerror(-rc));
	run_finish(&R);
	g_runs_store++;
}

/* ---------------------------------------------------- pipeline mode */
struct ack_wait {
	struct model *m;
	size_t upto;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int err;
};

static void ack_cb(void *arg, int err)
{
	struct ack_wait *w = arg;
	if (!err)
		m_ack(w->m, w->upto); /* on the commit thread: visible to its next I/O hook */
	pthread_mutex_lock(&w->mu);
	w->err = err;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void run_pipe(uint64_t seed, unsigned steps)
{
	static struct model model;
	struct run R;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts po;
	int rc;

	run_init(&R, "pipe", seed, &model, true);
	R.cap = g_per_point ? BZ_MAX(4u, g_per_point / 2) : 0;
	R.every = 2;
	run_create(&R, &s);
	struct rng *r = &model.gen;
	pipe_opts_default(&po);
	po.workers = (unsigned)rng_below(r, 3);
	po.zstd_level = 1;
	po.record_bytes = 4096;
	po.batch_bytes = (8 + rng_below(r, 24)) << 10;
	po.batch_records = 2 + (unsigned)rng_below(r, 8);
	po.linger_us = 100 + (unsigned)rng_below(r, 400);
	po.sync_interval_ms = 5 + (unsigned)rng_below(r, 20);
	po.max_inflight_bytes = 256 << 10;
	R.phase = PH_PIPE;
	rc = pipe_start(s, &po, &p);
	if (rc < 0)
		harness_fail(&R, "pipe_start: %s", strerror(-rc));
	for (unsigned step = 0; step < steps && budget_left(&R); step++) {
		struct gen_op g;
		model.epoch = store_ckpts(s);
		unsigned c = (unsigned)rng_below(r, 100);
		if (c < 2) { /* stop the pipeline (drain: all acked), then reopen or cut the power */
			rc = pipe_stop(p);
			p = NULL;
			if (rc < 0)
				harness_fail(&R, "pipe_stop: %s", strerror(-rc));
			m_ack(&model, m_submitted(&model));
			if (c == 0)
				reopen(&R, &s);
			else
				crash_continue(&R, &s);
			R.phase = PH_PIPE;
			rc = pipe_start(s, &po, &p);
			if (rc < 0)
				harness_fail(&R, "pipe_start: %s", strerror(-rc));
		}
		if (m_gen(&model, &g, 70) < 0)
			break;
		if (g.mop.kind == MOP_DATA && g.mop.hole)
			rc = pipe_hole(p, g.mop.ino, g.mop.off, g.mop.len, NULL);
		else if (g.mop.kind == MOP_DATA)
			rc = pipe_append(p, g.mop.ino, g.mop.off, g.data, g.mop.len);
		else
			rc = pipe_nsop(p, &g.ns);
		if (rc < 0)
			harness_fail(&R, "pipe_%s: %s", g.mop.kind == MOP_DATA ? "append" : "nsop", strerror(-rc));
		if (!rng_chance(r, 25))
			continue;
		size_t upto = m_submitted(&model);
		if (rng_chance(r, 50)) {
			struct ack_wait w = { .m = &model, .upto = upto };
			pthread_mutex_init(&w.mu, NULL);
			pthread_cond_init(&w.cv, NULL);
			rc = pipe_barrier(p, PIPE_DURABLE, ack_cb, &w);
			if (rc < 0)
				harness_fail(&R, "pipe_barrier: %s", strerror(-rc));
			pthread_mutex_lock(&w.mu);
			while (!w.done)
				pthread_cond_wait(&w.cv, &w.mu);
			pthread_mutex_unlock(&w.mu);
			pthread_cond_destroy(&w.cv);
			pthread_mutex_destroy(&w.mu);
			rc = w.err;
		} else {
			rc = pipe_barrier_wait(p, PIPE_DURABLE);
			if (!rc)
				m_ack(&model, upto);
		}
		if (rc < 0)
			harness_fail(&R, "barrier PIPE_DURABLE: %s", strerror(-rc));
		g_acks++;
	}
	rc = pipe_stop(p);
	if (rc < 0)
		harness_fail(&R, "pipe_stop: %s", strerror(-rc));
	m_ack(&model, m_submitted(&model));
	R.phase = PH_CLOSE;
	cov_pack(s);
	rc = store_close(s);
	if (rc < 0)
		harness_fail(&R, "store_close: %s", strerror(-rc));
	run_finish(&R);
	g_runs_pipe++;
}

/* ---------------------------------------------------------------- main */
static void usage(void)
{
	fprintf(stderr, "usage: crash_enum [--quick|--long] [--states N] [--seed S] [--mode store|pipe|both]\n"
			"                  [--per-point M] [--point K] [--steps N] [--mutant NAME] [--holes 0|1|2] [-v]\n"
			"mutants (must be caught): free_early reuse_durable truncate_early tail_skip forget_dirty forget_pack\n"
			"                           no_preload split_uncounted\n");
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t seed = 1;
	bool seed_set = false, lng = false;
	const char *mode = "both";
	unsigned steps = 160;
	const char *env = getenv("BZ_CRASH_STATES");
	static const struct option lo[] = {
		{ "quick", no_argument, 0, 'q' },	   { "long", no_argument, 0, 'l' },
		{ "states", required_argument, 0, 'n' },   { "seed", required_argument, 0, 's' },
		{ "mode", required_argument, 0, 'm' },	   { "per-point", required_argument, 0, 'c' },
		{ "point", required_argument, 0, 'p' },	   { "steps", required_argument, 0, 'k' },
		{ "verbose", no_argument, 0, 'v' },	   { "mutant", required_argument, 0, 'M' },
		{ "holes", required_argument, 0, 'H' },
		{ 0, 0, 0, 0 },
	};
	int o;

	if (env && *env)
		g_target = strtoull(env, NULL, 0);
	while ((o = getopt_long(argc, argv, "v", lo, NULL)) != -1) {
		switch (o) {
		case 'q':
			break;
		case 'l':
			lng = true;
			break;
		case 'n':
			g_target = strtoull(optarg, NULL, 0);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			seed_set = true;
			break;
		case 'm':
			mode = optarg;
			break;
		case 'c':
			g_per_point = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'p':
			g_only_point = strtol(optarg, NULL, 0);
			break;
		case 'k':
			steps = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'v':
			g_verbose++;
			break;
		case 'M':
			g_mutant = optarg;
			break;
		case 'H':
			g_holes = (unsigned)strtoul(optarg, NULL, 0);
			break;
		default:
			usage();
		}
	}
	if (strcmp(mode, "store") && strcmp(mode, "pipe") && strcmp(mode, "both"))
		usage();
	if (g_mutant) {
		struct store_test_hooks h = { 0 };
		for (size_t i = 0; i < BZ_ARRAY_SIZE(mutants); i++)
			if (!strcmp(g_mutant, mutants[i].name))
				h.mutant = mutants[i].id;
		if (!h.mutant)
			usage();
		store_set_test_hooks(&h);
	}
	if (lng) {
		if (!env && g_target == 70000)
			g_target = 5000000;
		if (!seed_set)
			seed = (uint64_t)bz_wall_ns();
	}
	if (!g_verbose)
		bz_log_set_level(BZ_LOG_ERR);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("crash_enum: seed=%" PRIu64 " mode=%s target=%" PRIu64 " states per-point=%u steps=%u%s%s%s\n", seed,
	       mode, g_target, g_per_point, steps, lng ? " (long)" : "", g_mutant ? " mutant=" : "",
	       g_mutant ? g_mutant : "");
	uint64_t t0 = bz_now_ns();
	bool one = g_only_point >= 0;
	bool do_store = strcmp(mode, "pipe") != 0, do_pipe = strcmp(mode, "store") != 0;
	g_mtarget[0] = do_store ? (do_pipe ? g_target * 7 / 10 : g_target) : 0;
	g_mtarget[1] = do_pipe ? g_target - g_mtarget[0] : 0;
	if (one)
		g_mtarget[0] = g_mtarget[1] = UINT64_MAX;
	for (uint64_t i = 0; one ? i < 1 : (g_mstates[0] < g_mtarget[0] || g_mstates[1] < g_mtarget[1]); i++) {
		uint64_t sd = seed + i;
		uint64_t before = g_states;
		if (do_store && g_mstates[0] < g_mtarget[0])
			run_store(sd, steps);
		if (do_pipe && g_mstates[1] < g_mtarget[1])
			run_pipe(sd, steps);
		printf("  seed %" PRIu64 ": %" PRIu64 " states (total %" PRIu64 ", %.0fs)\n", sd, g_states - before,
		       g_states, (double)(bz_now_ns() - t0) / 1e9);
		if (!one && g_states == before)
			harness_fail(NULL, "a whole run produced no crash states");
	}
	printf("crash_enum: OK seed=%" PRIu64 " states=%" PRIu64 " (store %" PRIu64 ", pipe %" PRIu64 ") points=%" PRIu64 " (enumerated %" PRIu64
	       ") runs store=%" PRIu64 " pipe=%" PRIu64 " ops=%" PRIu64 " acks=%" PRIu64 "\n",
	       seed, g_states, g_mstates[0], g_mstates[1], g_points, g_points_enum, g_runs_store, g_runs_pipe, g_ops, g_acks);
	printf("  deep: idempotent-reopen=%" PRIu64 " append-after-recovery=%" PRIu64 " crash-during-recovery=%" PRIu64
	       "; creation states that did not open=%" PRIu64 "; states with ns size != store size=%" PRIu64
	       "; %.1fs\n",
	       g_idem, g_post, g_rcrash, g_create_fail, g_size_mismatch, (double)(bz_now_ns() - t0) / 1e9);
	printf("  fsck of recovered states: %" PRIu64 " (with warnings, e.g. leaked pages: %" PRIu64
	       "; with a torn WAL tail left past the log's end: %" PRIu64 ")\n",
	       g_fsck, g_fsck_warn_states, g_fsck_torn_wal);
	printf("  states by phase:");
	for (int i = 0; i < PH_N; i++)
		printf(" %s=%" PRIu64, ph_name[i], g_ph_states[i]);
	printf("\n  states by the call cut:");
	for (int i = 0; i < IO_N; i++)
		if (g_io_states[i])
			printf(" %s=%" PRIu64, io_name[i], g_io_states[i]);
	printf("\n  store.db pages written: super=%" PRIu64 " data=%" PRIu64 " index=%" PRIu64 " nsmeta=%" PRIu64
	       " pack=%" PRIu64 " tree-leaf=%" PRIu64 " tree-node=%" PRIu64 " tree-overflow=%" PRIu64 " other=%" PRIu64
	       "; store.db shrunk %" PRIu64 " times, states with the shrink pending %" PRIu64 "\n",
	       g_pages_written[1], g_pages_written[2], g_pages_written[3], g_pages_written[4], g_pages_written[5],
	       g_pages_written[6], g_pages_written[7], g_pages_written[8], g_pages_written[0] + g_pages_written[9],
	       g_db_shrinks, g_trunc_pending_states);
	printf("  namespace trees of the final images: most keys %" PRIu64 " (inodes), %" PRIu64 " (entries), %" PRIu64
	       " (pack pages)\n",
	       g_cov_ino_keys, g_cov_dent_keys, g_cov_pack_keys);
	printf("  workload: appends=%" PRIu64 " (hot file %" PRIu64 ", of them >= 8 KiB %" PRIu64 "), hot files=%" PRIu64
	       " (filled %" PRIu64 "), files deleted with data=%" PRIu64 " (after a checkpoint named them %" PRIu64
	       ", >= 64 KiB %" PRIu64 ", with > %u appends %" PRIu64 "), checkpoints by the driver=%" PRIu64 ", apply-before-sync groups=%" PRIu64
	       ", reopens=%" PRIu64 ", crash-and-continue=%" PRIu64 "\n",
	       g_cov_appends, g_cov_hot, g_cov_big, g_cov_hotfiles, g_cov_hotfull, g_cov_del, g_cov_del_named,
	       g_cov_del_big, M_HOT_APPENDS, g_cov_del_many, g_cov_ckpt, g_cov_apply_first, g_cov_reopen, g_cov_crashcont);
	printf("  holes: %" PRIu64 " (%" PRIu64 " bytes)\n", g_cov_holes, g_cov_hole_bytes);
	printf("  pack pages cleaned (live frames moved, page freed): %" PRIu64 "\n", g_cov_cleaned);
	printf("  open chunks: sealed %" PRIu64 ", tails written %" PRIu64 " (checkpoints and spills)\n", g_cov_sealed,
	       g_cov_tails);
	printf("  extent pages relocated off the end of store.db: %" PRIu64 "\n", g_cov_reloc);
	printf("  chunks stored split (full pages + a packed fragment): %" PRIu64 "\n", g_cov_split);
	printf("  final images: most records in one file=%" PRIu64 ", files with > 126 records=%" PRIu64 "\n",
	       g_cov_records_max, g_cov_files_idx);
	if (g_mutant) {
		printf("crash_enum: mutant %s NOT caught in %" PRIu64 " states: the enumeration misses this bug\n",
		       g_mutant, g_states);
		return 1;
	}
	return 0;
}
