/* fault_store.c — fault injection at every mutating I/O call of a fixed
 * workload (DESIGN §5 "Fault injection").
 *
 * Stack: pipeline + store -> fault vfs -> recording vfs.
 *
 * 1. A store is created on the recording vfs (no faults), closed.
 * 2. The workload (open = recovery, pipe_start, a fixed seeded mix of appends
 *    and namespace ops with PIPE_DURABLE barriers, pipe_stop, store_close)
 *    runs once with the fault vfs disarmed to count its mutating calls K.
 * 3. For every k in 1..K(+10%) and every mode (EIO, ENOSPC, SHORT) x (once,
 *    persistent), a fresh copy runs with call k failing, under alarm():
 *      - no hang (SIGALRM => failure, case printed);
 *      - the caller sees an error: store_open, a pipe_* call, a barrier,
 *        pipe_stop or store_close returns one (after the first failed
 *        barrier or submission, further submissions must fail too);
 *      - no false acknowledgement: the recording vfs's durable image (what a
 *        power cut right now would leave) is recovered and must contain
 *        every acknowledged op, and equal the model after some op prefix
 *        p in [acked, submitted], byte for byte.
 *      - after an ENOSPC, the store as the fault left it, on the clean vfs
 *        (the disk has room again, no power cut), opens and holds every
 *        acknowledged op too; the recovered stores pass store_check (fsck) with no error
 *        but a torn WAL tail (a fault can leave one by design).
 * 4. Passes (each its own seed): "plain" (the original mix: 65% appends of
 *    1 B-20 KiB, 4 KiB records); "v2", the storage v2 space paths: the
 *    stress profile of tests/crash/harness.h (a hot file of hundreds of
 *    records: full INDEX pages; appends up to 24 KiB in 16 KiB records:
 *    frames over 4048 bytes, i.e. extents; small frames in pack pages;
 *    holes through pipe_hole; unlinks of the files with the most records),
 *    then every file unlinked (their extents, pack frames and index pages
 *    freed at the checkpoints; pack pages cleaned; store.db cut at close);
 *    "ns", namespace ops only; "create", a new store (WAL segments written
 *    and sized, store.db, the rename): the store open must fail, and the
 *    directory left must open (recreated) on the clean vfs and from its
 *    durable image.
 * 5. Coverage: a probe above the fault vfs names the call each fault hit
 *    (wal-write, db-write-data / -index / -nsmeta / -pack / -super, db-grow,
 *    db-shrink, ...); a category of a space-consuming path without an
 *    injected ENOSPC fails the run, and so do the v2 workload's own figures
 *    (holes, deleted files with index pages, pack pages cleaned, store.db
 *    truncations) at 0.
 * Prints the number of faults injected. Exit 0 ok, 1 failure.
 * Usage: fault_store [--seed S] [--seeds N] [--max-k N] [-v]   (default seed 7;
 *        N plain passes, default 1 or env BZ_FAULT_SEEDS; --seeds 0: the v2,
 *        ns and create passes only; env BZ_FAULT_STRIDE=n: 1/n of the
 *        (k, variant) pairs, every k and every variant still tried)
 */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <unistd.h>

#include "../crash/harness.h"
#include "storage/pipeline.h"

#define CASE_TIMEOUT_S 30

/* A workload profile (see 4. above). */
struct pass {
	const char *name;
	unsigned data_pct; /* share of appends */
	bool stress;       /* the crash harness's stress profile, holes included */
	bool drain;        /* at the end unlink every file (space freed, store.db cut) */
	bool create;       /* faults in the creation of a new store */
	int nops;
	int barrier_every;
	size_t record_bytes;
};
static const struct pass g_passes[] = {
	{ "plain", 65, false, false, false, 120, 6, 4096 },
	{ "v2", 70, true, true, false, 480, 12, 16 << 10 },
	{ "ns", 0, false, false, false, 120, 6, 4096 },
	{ "create", 0, false, false, true, 0, 0, 0 },
};
static const struct pass *g_pass = &g_passes[0];

/* Which call a fault hit (the probe classifies the call the fault vfs
 * counted as number k; the same order: both see every call of the store). */
enum { IO_CREATE, IO_WAL_WRITE, IO_WAL_SYNC, IO_WAL_OTHER, IO_DB_SUPER, IO_DB_DATA, IO_DB_INDEX, IO_DB_NSMETA,
       IO_DB_PACK, IO_DB_OTHER, IO_DB_SYNC, IO_DB_GROW, IO_DB_SHRINK, IO_DIR, IO_OTHER, IO_N };
static const char *const io_name[IO_N] = { "create",	 "wal-write",	   "wal-sync",	     "wal-size",
					   "db-write-super", "db-write-data",  "db-write-index", "db-write-nsmeta",
					   "db-write-pack",  "db-write-other", "db-sync",	     "db-grow",
					   "db-shrink",	     "dir-op",	       "other" };
/* the categories whose ENOSPC the run must have injected (store.db grows
 * by writes past its end: db-grow and dir-op calls come only from the
 * creation of a store, the "create" pass) */
static const int io_required[] = { IO_CREATE,   IO_WAL_WRITE, IO_WAL_SYNC, IO_DB_SUPER, IO_DB_DATA,
				   IO_DB_INDEX, IO_DB_NSMETA, IO_DB_PACK,  IO_DB_SYNC,  IO_DB_SHRINK };
static uint64_t g_io_enospc[IO_N], g_io_any[IO_N];
static uint64_t g_probe_calls, g_probe_k;
static int g_probe_cat = -1;
/* targeted cases: the first call of category g_target fails (the probe
 * arms the fault vfs just before it), whatever its number in this run */
static int g_target = -1;
static struct vfs *g_target_fv;
static struct vfs_fault_spec g_target_spec;
static bool g_creating;
/* the v2 workload's own figures (its unarmed run) */
static uint64_t g_v2_holes, g_v2_del_many, g_v2_del_big, g_v2_cleaned, g_v2_shrinks, g_v2_ckpts, g_v2_max_records;
static uint64_t g_db_shrinks; /* store.db truncations seen by the probe in the current case */

static char g_case[256];
static int g_verbose;
static uint64_t g_seed = 7;
static uint64_t g_cases, g_injected, g_silent, g_open_err, g_barrier_err, g_submit_err, g_stop_err,
	g_close_err, g_acked_ops, g_recovered;
static struct store_opts g_sopts;

static void on_alarm(int sig)
{
	char msg[400];
	int n = snprintf(msg, sizeof(msg), "FAIL: hang (> %ds) in case %s\n", CASE_TIMEOUT_S, g_case);
	(void)sig;
	if (write(1, msg, (size_t)n) < 0)
		_exit(1);
	_exit(1);
}

static BZ_PRINTF(1, 2) void fail(const char *fmt, ...)
{
	va_list ap;
	printf("FAIL [seed=%" PRIu64 " %s]: ", g_seed, g_case);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\nfault_store: FAILED after %" PRIu64 " cases\n", g_cases);
	fflush(stdout);
	_exit(1);
}

static int classify(enum vfs_op op, const struct probe_io *io)
{
	bool sync = op == VFS_OP_FDATASYNC || op == VFS_OP_FSYNC;
	if (g_creating)
		return IO_CREATE;
	if (!io->name)
		return IO_DIR;
	if (!strncmp(io->name, "wal.", 4))
		return op == VFS_OP_PWRITE ? IO_WAL_WRITE : sync ? IO_WAL_SYNC : IO_WAL_OTHER;
	if (strcmp(io->name, "store.db"))
		return IO_OTHER;
	if (sync)
		return IO_DB_SYNC;
	if (op == VFS_OP_FTRUNCATE || op == VFS_OP_FALLOCATE)
		return io->off < io->len ? IO_DB_SHRINK : IO_DB_GROW;
	if (op != VFS_OP_PWRITE || io->off % 4096 || io->len < 48)
		return IO_DB_OTHER;
	unsigned t = bz_get_le32(io->buf) == 0x47505a42u ? io->buf[4] : 0; /* PAGER_MAGIC, page type */
	return t == 1 ? IO_DB_SUPER : t == 2 ? IO_DB_DATA : t == 3 ? IO_DB_INDEX : t == 4 ? IO_DB_NSMETA :
	       t == 5 ? IO_DB_PACK : IO_DB_OTHER;
}

static void probe_hook(void *arg, enum vfs_op op, const struct probe_io *io)
{
	(void)arg;
	if (!(VFS_MASK_MUTATING & VFS_MASK(op)))
		return;
	int cat = classify(op, io);
	if (cat == IO_DB_SHRINK)
		__atomic_add_fetch(&g_db_shrinks, 1, __ATOMIC_RELAXED);
	if (__atomic_add_fetch(&g_probe_calls, 1, __ATOMIC_RELAXED) == g_probe_k)
		g_probe_cat = cat;
	if (g_target >= 0 && cat == g_target && g_probe_cat < 0) {
		g_probe_cat = cat;
		vfs_fault_arm(g_target_fv, &g_target_spec); /* fail_at 1: this very call */
	}
}

struct outcome {
	int open_rc, start_rc, submit_rc, barrier_rc, stop_rc, close_rc;
	int after_err_rc; /* a submission after the first error */
	bool any_err;
};

static void note(struct outcome *o, int *slot, int rc)
{
	if (rc < 0 && *slot == 0)
		*slot = rc;
	if (rc < 0)
		o->any_err = true;
}

/* The workload. Ops are generated from the model (same seed every run). */
static void workload(struct vfs *v, struct model *m, struct outcome *o, struct store_stats *stats)
{
	struct store_opts so = g_sopts;
	struct store *s = NULL;
	struct pipeline *p = NULL;
	struct pipe_opts po;
	int rc;

	memset(o, 0, sizeof(*o));
	so.vfs = v;
	rc = store_open(&so, &s);
	note(o, &o->open_rc, rc);
	if (rc < 0)
		return;
	pipe_opts_default(&po);
	po.workers = 1;
	po.record_bytes = g_pass->record_bytes;
	po.batch_bytes = g_pass->stress ? 32 << 10 : 8192;
	po.batch_records = g_pass->stress ? 16 : 4;
	po.linger_us = 200;
	po.sync_interval_ms = 10;
	po.max_inflight_bytes = 256 << 10;
	rc = pipe_start(s, &po, &p);
	note(o, &o->start_rc, rc);
	if (rc < 0)
		goto close;
	for (int i = 0, drained = 0; i < g_pass->nops || (g_pass->drain && !drained); i++) {
		struct gen_op g;
		int err = 0;
		if (i < g_pass->nops) {
			if (m_gen(m, &g, g_pass->data_pct) < 0)
				break;
		} else { /* drain: unlink every file, one name at a time */
			memset(&g, 0, sizeof(g));
			if (!m_live_files(m) || m->submitted >= M_MAX_OPS) {
				drained = 1;
				goto barrier;
			}
			m->hot = 0; /* no file is spared any more */
			if (!m_gen_try(m, &g, W_UNLINK, &err))
				fail("drain: no file to unlink (%d)", err);
			m_publish(m, &g.mop);
		}
		if (g.mop.kind == MOP_DATA && g.mop.hole)
			rc = pipe_hole(p, g.mop.ino, g.mop.off, g.mop.len, NULL);
		else if (g.mop.kind == MOP_DATA)
			rc = pipe_append(p, g.mop.ino, g.mop.off, g.data, g.mop.len);
		else
			rc = pipe_nsop(p, &g.ns);
		note(o, &o->submit_rc, rc);
		if (rc < 0)
			break;
		if (g_pass->stress && g.mop.kind == MOP_DATA && g.mop.ino == m->hot && i < g_pass->nops) {
			/* a namespace op closes every open record (pipeline.c): the
			 * hot file's appends stay one record each, so that it gets
			 * hundreds of index entries (INDEX pages) */
			memset(&g, 0, sizeof(g));
			if (m_gen_try(m, &g, W_XATTR, &err)) {
				m_publish(m, &g.mop);
				rc = pipe_nsop(p, &g.ns);
				note(o, &o->submit_rc, rc);
				if (rc < 0)
					break;
			}
		}
	barrier:
		if (i % g_pass->barrier_every == g_pass->barrier_every - 1 || i == g_pass->nops - 1 || drained) {
			size_t upto = m_submitted(m);
			rc = pipe_barrier_wait(p, PIPE_DURABLE);
			note(o, &o->barrier_rc, rc);
			if (rc < 0)
				break;
			m_ack(m, upto);
		}
	}
	if (o->any_err) { /* the filesystem refuses further writes */
		struct gen_op g;
		if (m_gen(m, &g, 100) == 0) {
			rc = g.mop.kind == MOP_DATA ? pipe_append(p, g.mop.ino, g.mop.off, g.data, g.mop.len) :
						      pipe_nsop(p, &g.ns);
			o->after_err_rc = rc;
			if (rc == 0) {
				size_t upto = m_submitted(m);
				rc = pipe_barrier_wait(p, PIPE_DURABLE);
				if (rc == 0)
					m_ack(m, upto);
				o->after_err_rc = rc;
			}
		}
	}
	rc = pipe_stop(p);
	note(o, &o->stop_rc, rc);
	if (rc == 0)
		m_ack(m, m_submitted(m)); /* pipe_stop drained and synced everything */
	if (stats) {
		struct store_stats st;
		store_stats(s, &st);
		*stats = st;
	}
close:
	rc = store_close(s);
	note(o, &o->close_rc, rc);
}

static struct vfs *new_store_rec(void)
{
	struct vfs *rec = NULL;
	struct store *s = NULL;
	struct store_opts so = g_sopts;
	int rc = vfs_rec_new(&rec);
	if (rc < 0)
		fail("vfs_rec_new: %s", strerror(-rc));
	so.vfs = rec;
	rc = store_open(&so, &s);
	if (rc < 0)
		fail("creating the store: %s", strerror(-rc));
	rc = store_close(s);
	if (rc < 0)
		fail("closing the new store: %s", strerror(-rc));
	return rec;
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

/* Opens the store on v (recovery), checks it against the model and with
 * store_check (blazectl fsck: no error but a torn WAL tail), closes it.
 * what: "durable image" or "clean vfs". */
static void verify_on(struct vfs *v, struct model *m, const char *what)
{
	struct store *s = NULL;
	struct store_opts so = g_sopts;
	struct store_check_ops ops = { .problem = fsck_problem };
	struct store_check_report rep;
	struct fsck_ctx fc = { { 0 } };
	struct rstate rs;
	char why[320];
	size_t lo = m_acked(m), hi = m_submitted(m);
	int rc;

	so.vfs = v;
	rc = store_open(&so, &s);
	if (rc < 0)
		fail("store_open of the %s failed: %s", what, strerror(-rc));
	if (rs_extract(s, &rs) < 0)
		fail("%s: recovered namespace is malformed: %s", what, rs.err);
	long p = m_match(m, &rs, lo, hi);
	if (p < 0) {
		m_diff(m, &rs, lo, "acked");
		m_diff(m, &rs, hi, "submitted");
		fail("%s: state is not the model after any prefix in [acked=%zu, submitted=%zu]: "
		     "an acknowledged op was lost (false ack) or the state has a hole",
		     what, lo, hi);
	}
	if (m_check_content(m, s, &rs, why, sizeof(why)) < 0)
		fail("%s: content: %s", what, why);
	rc = store_check(s, 0, &ops, &fc, &rep);
	if (rc < 0)
		fail("%s: store_check failed: %s", what, strerror(-rc));
	if (rep.errors)
		fail("%s: fsck: %" PRIu64 " errors, the first: %s", what, rep.errors, fc.first_error);
	rc = store_close(s);
	if (rc < 0)
		fail("%s: store_close after recovery: %s", what, strerror(-rc));
	g_acked_ops += lo;
	g_recovered++;
}

/* The durable image of rec (a power cut now), then, when clean, rec itself
 * (the fault is gone: the disk has room again). */
static void verify(struct vfs *rec, struct model *m, bool clean)
{
	struct vfs *img = NULL;
	int rc = vfs_rec_crash(rec, &durable_only, &img);

	if (rc < 0)
		fail("vfs_rec_crash: %s", strerror(-rc));
	verify_on(img, m, "durable image");
	vfs_destroy(img);
	if (clean)
		verify_on(rec, m, "clean vfs");
}

static const char *mode_name(enum vfs_fault_mode md)
{
	return md == VFS_FAULT_EIO ? "EIO" : md == VFS_FAULT_ENOSPC ? "ENOSPC" : "SHORT";
}

/* Counts the fault of a case by the call it hit. */
static void count_hit(enum vfs_fault_mode md, uint64_t inj)
{
	if (!inj || g_probe_cat < 0)
		return;
	g_io_any[g_probe_cat]++;
	if (md == VFS_FAULT_ENOSPC)
		g_io_enospc[g_probe_cat]++;
}

static void arm_probe(uint64_t k)
{
	g_probe_calls = 0;
	g_probe_k = k;
	g_probe_cat = -1;
	g_db_shrinks = 0;
}

/* The "create" pass: call k of a new store's creation fails. */
static uint64_t run_create_case(uint64_t k, enum vfs_fault_mode md, bool persistent)
{
	static struct model m;
	struct vfs *rec = NULL, *fv = NULL, *pv = NULL;
	struct vfs_fault_spec spec = { .fail_at = k, .mode = md, .persistent = persistent };
	struct store_opts so = g_sopts;
	struct store *s = NULL;
	uint64_t calls, inj;
	int rc;

	snprintf(g_case, sizeof(g_case), "create k=%" PRIu64 " mode=%s %s", k, mode_name(md),
		 persistent ? "persistent" : "once");
	if (m_init(&m, g_seed, 2, true) < 0)
		fail("out of memory");
	if (vfs_rec_new(&rec) < 0 || vfs_fault_new(rec, &fv) < 0 || probe_new(fv, probe_hook, NULL, &pv) < 0)
		fail("creating the vfs stack");
	vfs_fault_arm(fv, &spec);
	arm_probe(k);
	g_creating = true;
	so.vfs = pv;
	alarm(CASE_TIMEOUT_S);
	rc = store_open(&so, &s);
	if (rc == 0)
		rc = store_close(s);
	alarm(0);
	g_creating = false;
	calls = vfs_fault_calls(fv);
	inj = vfs_fault_injected(fv);
	if (k) {
		g_cases++;
		g_injected += inj;
		count_hit(md, inj);
		if (inj && rc == 0)
			fail("a fault was injected in the creation but store_open succeeded");
		if (!inj && rc < 0)
			fail("no fault was injected but the creation failed: %s", strerror(-rc));
		g_open_err += rc < 0;
	} else if (rc < 0) {
		fail("creating a store fails without faults: %s", strerror(-rc));
	}
	/* what a failed creation leaves is either no store (recreated) or a
	 * whole empty one: both open, empty, fsck clean */
	verify(rec, &m, true);
	vfs_destroy(pv);
	vfs_destroy(fv);
	vfs_destroy(rec);
	m_free(&m);
	return calls;
}

/* k: the call that fails (0: none); or, when g_target >= 0, the first
 * call of that category. */
static uint64_t run_case(uint64_t k, enum vfs_fault_mode md, bool persistent)
{
	static struct model m;
	struct vfs *rec = NULL, *fv = NULL, *pv = NULL;
	struct vfs_fault_spec spec = { .fail_at = k, .mode = md, .persistent = persistent };
	struct outcome o;
	struct store_stats st = { 0 };
	uint64_t calls;
	int rc;

	if (g_pass->create)
		return run_create_case(k, md, persistent);
	rec = new_store_rec();
	if (g_target >= 0)
		snprintf(g_case, sizeof(g_case), "%s first %s call mode=%s %s", g_pass->name, io_name[g_target],
			 mode_name(md), persistent ? "persistent" : "once");
	else
		snprintf(g_case, sizeof(g_case), "%s k=%" PRIu64 " mode=%s %s", g_pass->name, k, mode_name(md),
			 persistent ? "persistent" : "once");
	if (m_init(&m, g_seed, 2, true) < 0)
		fail("out of memory");
	m.stress = g_pass->stress;
	m.holes = g_pass->stress ? 1 : 0;
	rc = vfs_fault_new(rec, &fv);
	if (rc == 0)
		rc = probe_new(fv, probe_hook, NULL, &pv);
	if (rc < 0)
		fail("creating the vfs stack: %s", strerror(-rc));
	vfs_fault_arm(fv, &spec);
	arm_probe(k);
	g_target_fv = fv;
	g_target_spec = (struct vfs_fault_spec){ .fail_at = 1, .mode = md, .persistent = persistent };
	alarm(CASE_TIMEOUT_S);
	workload(pv, &m, &o, &st);
	alarm(0);
	calls = vfs_fault_calls(fv);
	uint64_t inj = vfs_fault_injected(fv);
	if (k || g_target >= 0) {
		g_cases++;
		g_injected += inj;
		count_hit(md, inj);
		if (g_verbose)
			printf("  %s: injected=%" PRIu64 " at=%s open=%d start=%d submit=%d barrier=%d after=%d stop=%d "
			       "close=%d acked=%zu/%zu\n",
			       g_case, inj, g_probe_cat >= 0 ? io_name[g_probe_cat] : "-", o.open_rc, o.start_rc,
			       o.submit_rc, o.barrier_rc, o.after_err_rc, o.stop_rc, o.close_rc, m_acked(&m),
			       m_submitted(&m));
		if (inj && !o.any_err) {
			g_silent++;
			fail("a fault was injected (%" PRIu64 " calls failed) but no caller saw an error", inj);
		}
		if (o.open_rc)
			g_open_err++;
		if (o.barrier_rc)
			g_barrier_err++;
		if (o.submit_rc)
			g_submit_err++;
		if (o.stop_rc)
			g_stop_err++;
		if (o.close_rc)
			g_close_err++;
		if ((o.barrier_rc || o.submit_rc) && o.after_err_rc == 0)
			fail("after a failed barrier/submission (%d/%d) a new write was accepted and acknowledged "
			     "(want EROFS)",
			     o.barrier_rc, o.submit_rc);
		if (!inj && o.any_err)
			fail("no fault was injected but the workload failed (open=%d start=%d submit=%d barrier=%d "
			     "stop=%d close=%d)",
			     o.open_rc, o.start_rc, o.submit_rc, o.barrier_rc, o.stop_rc, o.close_rc);
	} else if (o.any_err) {
		fail("the workload fails without faults (open=%d start=%d submit=%d barrier=%d stop=%d close=%d)",
		     o.open_rc, o.start_rc, o.submit_rc, o.barrier_rc, o.stop_rc, o.close_rc);
	} else if (g_pass->stress) {
		uint32_t most = 0;
		for (size_t i = 0; i < M_MAX_INO; i++)
			most = BZ_MAX(most, m.napp[i]);
		g_v2_holes = m.st.holes;
		g_v2_del_many = m.st.del_many;
		g_v2_del_big = m.st.del_big;
		g_v2_cleaned = st.pages_cleaned;
		g_v2_ckpts = st.checkpoints;
		g_v2_shrinks = g_db_shrinks;
		g_v2_max_records = most;
	}
	verify(rec, &m, md == VFS_FAULT_ENOSPC || !k); /* the clean reopen: after ENOSPC (time) */
	vfs_destroy(pv);
	vfs_destroy(fv);
	vfs_destroy(rec);
	m_free(&m);
	return calls;
}

int main(int argc, char **argv)
{
	uint64_t max_k = 0, seeds = 1, stride = 1;
	const char *env = getenv("BZ_FAULT_SEEDS"); /* tools/test's sanitizer builds: fewer plain passes */
	int o;

	if (env && *env)
		seeds = strtoull(env, NULL, 0);
	/* BZ_FAULT_STRIDE=n (tools/test's sanitizer build: 2): each call k gets
	 * the variants (mode x once/persistent) whose index is congruent to -k
	 * mod n, so every k and every variant is still tried, 1/n of the pairs;
	 * the per-category runs below keep every variant */
	env = getenv("BZ_FAULT_STRIDE");
	if (env && *env)
		stride = BZ_MAX(strtoull(env, NULL, 0), 1);
	static const struct option lo[] = { { "seed", required_argument, 0, 's' },
					    { "max-k", required_argument, 0, 'k' },
					    { "seeds", required_argument, 0, 'n' },
					    { "verbose", no_argument, 0, 'v' },
					    { 0, 0, 0, 0 } };

	while ((o = getopt_long(argc, argv, "v", lo, NULL)) != -1) {
		if (o == 's')
			g_seed = strtoull(optarg, NULL, 0);
		else if (o == 'k')
			max_k = strtoull(optarg, NULL, 0);
		else if (o == 'n')
			seeds = strtoull(optarg, NULL, 0);
		else if (o == 'v')
			g_verbose++;
		else {
			fprintf(stderr, "usage: fault_store [--seed S] [--seeds N] [--max-k N] [-v]\n");
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!g_verbose)
		bz_log_set_level(BZ_LOG_ERR);
	signal(SIGALRM, on_alarm);
	store_opts_default(&g_sopts);
	g_sopts.wal_segment_bytes = 64 << 10;
	g_sopts.wal_segments = 4;
	g_sopts.checkpoint_bytes = 24 << 10;
	g_sopts.cache_bytes = 1 << 20;
	/* open chunks: records of >= 256 bytes are chunks (index pages),
	 * smaller ones gather and are written as tails */
	g_sopts.chunk_bytes = 512;
	g_sopts.open_chunk_budget = 8u << 10;
	g_sopts.create = true;

	uint64_t t0 = bz_now_ns();
	uint64_t first = g_seed;
	size_t npass = (size_t)seeds + BZ_ARRAY_SIZE(g_passes) - 1;
	for (size_t pi = 0; pi < npass; pi++) {
		g_seed = first + pi;
		g_pass = &g_passes[pi < seeds ? 0 : pi - seeds + 1];
		uint64_t K = run_case(0, VFS_FAULT_EIO, false);
		uint64_t kmax = K + K / 10 + 2;
		if (max_k && max_k < kmax)
			kmax = max_k;
		printf("fault_store: seed=%" PRIu64 " pass %s: the workload makes %" PRIu64
		       " mutating calls; testing k=1..%" PRIu64 " x {EIO,ENOSPC,SHORT} x {once,persistent}\n",
		       g_seed, g_pass->name, K, kmax);
		if (g_pass->stress)
			printf("  v2 workload: %" PRIu64 " holes, %" PRIu64 " records in the longest file, %" PRIu64
			       " deleted files with > %u records (index pages) and %" PRIu64
			       " with >= 64 KiB (extents), %" PRIu64 " checkpoints, %" PRIu64
			       " pack pages cleaned, %" PRIu64 " store.db truncations\n",
			       g_v2_holes, g_v2_max_records, g_v2_del_many, M_HOT_APPENDS, g_v2_del_big, g_v2_ckpts,
			       g_v2_cleaned, g_v2_shrinks);
		for (uint64_t k = 1; k <= kmax; k++)
			for (int md = VFS_FAULT_EIO; md <= VFS_FAULT_SHORT; md++)
				for (int pers = 0; pers < 2; pers++)
					if ((k + (uint64_t)(md - VFS_FAULT_EIO) * 2 + (uint64_t)pers) % stride == 0)
						run_case(k, (enum vfs_fault_mode)md, pers);
		/* thread timing moves the calls between runs: the first call of
		 * every category the pass makes fails too, whatever its number */
		for (size_t c = 0; c < BZ_ARRAY_SIZE(io_required) && !g_pass->create; c++) {
			g_target = io_required[c];
			for (int md = VFS_FAULT_EIO; md <= VFS_FAULT_SHORT; md++)
				for (int pers = 0; pers < 2; pers++)
					run_case(0, (enum vfs_fault_mode)md, pers);
			g_target = -1;
		}
	}
	printf("fault_store: OK cases=%" PRIu64 " faults injected=%" PRIu64 " recovered+verified=%" PRIu64
	       " acked ops verified=%" PRIu64 "\n",
	       g_cases, g_injected, g_recovered, g_acked_ops);
	printf("  errors seen at: open=%" PRIu64 " submit=%" PRIu64 " barrier=%" PRIu64 " stop=%" PRIu64
	       " close=%" PRIu64 "; %.1fs\n",
	       g_open_err, g_submit_err, g_barrier_err, g_stop_err, g_close_err, (double)(bz_now_ns() - t0) / 1e9);
	printf("  faults by the call hit (ENOSPC/all):");
	for (int c = 0; c < IO_N; c++)
		if (g_io_any[c])
			printf(" %s=%" PRIu64 "/%" PRIu64, io_name[c], g_io_enospc[c], g_io_any[c]);
	printf("\n");
	if (max_k)
		return 0; /* a cut run covers what it covers */
	for (size_t i = 0; i < BZ_ARRAY_SIZE(io_required); i++)
		if (!g_io_enospc[io_required[i]])
			fail("coverage: no ENOSPC was injected at a %s call", io_name[io_required[i]]);
	if (!g_v2_holes || !g_v2_del_many || !g_v2_del_big || !g_v2_cleaned || !g_v2_shrinks)
		fail("coverage: the v2 workload lacks holes, deleted files with index pages or extents, pack "
		     "cleaning or store.db truncation");
	return 0;
}
