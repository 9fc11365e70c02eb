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
 * 4. Then once more with a namespace-only workload (creates, mkdirs, links,
 *    renames, unlinks, rmdirs and their checkpoints: ENOSPC and the other
 *    faults in every namespace-op path, issue 11.5).
 * Prints the number of faults injected. Exit 0 ok, 1 failure.
 * Usage: fault_store [--seed S] [--seeds N] [--max-k N] [-v]   (default: seeds 7, 8, 9)
 */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <unistd.h>

#include "../crash/harness.h"
#include "storage/pipeline.h"

#define NOPS 120
#define CASE_TIMEOUT_S 30

static char g_case[256];
static int g_verbose;
static uint64_t g_seed = 7;
static uint64_t g_cases, g_injected, g_silent, g_open_err, g_barrier_err, g_submit_err, g_stop_err,
	g_close_err, g_acked_ops, g_recovered;
static struct store_opts g_sopts;
static unsigned g_data_pct = 65; /* share of appends in the workload */

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
static void workload(struct vfs *v, struct model *m, struct outcome *o)
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
	po.record_bytes = 4096;
	po.batch_bytes = 8192;
	po.batch_records = 4;
	po.linger_us = 200;
	po.sync_interval_ms = 10;
	po.max_inflight_bytes = 256 << 10;
	rc = pipe_start(s, &po, &p);
	note(o, &o->start_rc, rc);
	if (rc < 0)
		goto close;
	for (int i = 0; i < NOPS; i++) {
		struct gen_op g;
		if (m_gen(m, &g, g_data_pct) < 0)
			break;
		if (g.mop.kind == MOP_DATA)
			rc = pipe_append(p, g.mop.ino, g.mop.off, g.data, g.mop.len);
		else
			rc = pipe_nsop(p, &g.ns);
		note(o, &o->submit_rc, rc);
		if (rc < 0)
			break;
		if (i % 6 == 5 || i == NOPS - 1) {
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

/* Recovers the durable image of rec and checks it against the model. */
static void verify_durable(struct vfs *rec, struct model *m)
{
	struct vfs *img = NULL;
	struct store *s = NULL;
	struct store_opts so = g_sopts;
	struct rstate rs;
	char why[320];
	size_t lo = m_acked(m), hi = m_submitted(m);
	int rc = vfs_rec_crash(rec, &durable_only, &img);

	if (rc < 0)
		fail("vfs_rec_crash: %s", strerror(-rc));
	so.vfs = img;
	rc = store_open(&so, &s);
	if (rc < 0)
		fail("recovery of the durable image failed: %s", strerror(-rc));
	if (rs_extract(s, &rs) < 0)
		fail("recovered namespace is malformed: %s", rs.err);
	long p = m_match(m, &rs, lo, hi);
	if (p < 0) {
		m_diff(m, &rs, lo, "acked");
		m_diff(m, &rs, hi, "submitted");
		fail("durable state is not the model after any prefix in [acked=%zu, submitted=%zu]: "
		     "an acknowledged op was lost (false ack) or the state has a hole",
		     lo, hi);
	}
	if (m_check_content(m, s, &rs, why, sizeof(why)) < 0)
		fail("content: %s", why);
	rc = store_close(s);
	if (rc < 0)
		fail("store_close after recovery: %s", strerror(-rc));
	vfs_destroy(img);
	g_acked_ops += lo;
	g_recovered++;
}

static const char *mode_name(enum vfs_fault_mode md)
{
	return md == VFS_FAULT_EIO ? "EIO" : md == VFS_FAULT_ENOSPC ? "ENOSPC" : "SHORT";
}

static uint64_t run_case(uint64_t k, enum vfs_fault_mode md, bool persistent)
{
	static struct model m;
	struct vfs *rec = new_store_rec(), *fv = NULL;
	struct vfs_fault_spec spec = { .fail_at = k, .mode = md, .persistent = persistent };
	struct outcome o;
	uint64_t calls;
	int rc;

	snprintf(g_case, sizeof(g_case), "k=%" PRIu64 " mode=%s %s", k, mode_name(md),
		 persistent ? "persistent" : "once");
	if (m_init(&m, g_seed, 2, true) < 0)
		fail("out of memory");
	rc = vfs_fault_new(rec, &fv);
	if (rc < 0)
		fail("vfs_fault_new: %s", strerror(-rc));
	vfs_fault_arm(fv, &spec);
	alarm(CASE_TIMEOUT_S);
	workload(fv, &m, &o);
	alarm(0);
	calls = vfs_fault_calls(fv);
	uint64_t inj = vfs_fault_injected(fv);
	if (k) {
		g_cases++;
		g_injected += inj;
		if (g_verbose)
			printf("  %s: injected=%" PRIu64 " open=%d start=%d submit=%d barrier=%d after=%d stop=%d close=%d "
			       "acked=%zu/%zu\n",
			       g_case, inj, o.open_rc, o.start_rc, o.submit_rc, o.barrier_rc, o.after_err_rc, o.stop_rc,
			       o.close_rc, m_acked(&m), m_submitted(&m));
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
	}
	verify_durable(rec, &m);
	vfs_destroy(fv);
	vfs_destroy(rec);
	m_free(&m);
	return calls;
}

int main(int argc, char **argv)
{
	uint64_t max_k = 0, seeds = 3;
	int o;
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
			fprintf(stderr, "usage: fault_store [--seed S] [--max-k N] [-v]\n");
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
	g_sopts.create = true;

	uint64_t t0 = bz_now_ns();
	uint64_t first = g_seed;
	for (uint64_t si = 0; si <= seeds; si++) {
		g_seed = first + si;
		g_data_pct = si < seeds ? 65 : 0; /* the last pass: namespace ops only */
		uint64_t K = run_case(0, VFS_FAULT_EIO, false);
		uint64_t kmax = K + K / 10 + 2;
		if (max_k && max_k < kmax)
			kmax = max_k;
		printf("fault_store: seed=%" PRIu64 "%s, workload makes %" PRIu64 " mutating calls; testing k=1..%" PRIu64
		       " x {EIO,ENOSPC,SHORT} x {once,persistent}\n",
		       g_seed, g_data_pct ? "" : " (namespace ops only)", K, kmax);
		for (uint64_t k = 1; k <= kmax; k++)
			for (int md = VFS_FAULT_EIO; md <= VFS_FAULT_SHORT; md++)
				for (int pers = 0; pers < 2; pers++)
					run_case(k, (enum vfs_fault_mode)md, pers);
	}
	printf("fault_store: OK cases=%" PRIu64 " faults injected=%" PRIu64 " recovered+verified=%" PRIu64
	       " acked ops verified=%" PRIu64 "\n",
	       g_cases, g_injected, g_recovered, g_acked_ops);
	printf("  errors seen at: open=%" PRIu64 " submit=%" PRIu64 " barrier=%" PRIu64 " stop=%" PRIu64
	       " close=%" PRIu64 "; %.1fs\n",
	       g_open_err, g_submit_err, g_barrier_err, g_stop_err, g_close_err, (double)(bz_now_ns() - t0) / 1e9);
	return 0;
}
