/* fsck.c — `blazectl fsck [--repair] [-v] STORE`: offline check of a store.
 *
 * The store is opened read-only (which takes its lock: a mounted store is
 * refused with exit 8, and recovery replays the WAL into memory only), then
 * store_check walks everything reachable from the newest superblock: see
 * docs/BLAZECTL.md for each check and docs/man/blazectl.8.
 *
 * --repair fixes only what needs no guessing: a torn WAL tail and a torn
 * superblock (a read-write open replays the valid log and checkpoints,
 * which starts the WAL in a fresh life and rewrites the older superblock)
 * and leaked pages (put on the free list at a checkpoint, only when nothing
 * else is wrong). Data that verifies is never touched. Then it checks again.
 *
 * Exit codes (e2fsck): 0 clean, 1 errors repaired, 4 errors left, 8
 * operational error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blazectl.h"
#include "storage/log.h"
#include "storage/store.h"

#define FSCK_MAX_SHOWN 100 /* findings printed without -v */

struct fsck {
	bool verbose, tty, pass2;
	uint64_t t0, last_ns;
	uint64_t shown, hidden;
	int last_step; /* non-tty: last 10% step printed */
	bool bar_on;   /* a \r progress line is on stderr */
};

static void bar_clear(struct fsck *k)
{
	if (k->bar_on) {
		fprintf(stderr, "\r\033[K");
		k->bar_on = false;
	}
}

static void on_problem(void *arg, enum store_check_sev sev, const char *msg)
{
	static const char *const name[] = {"info", "warning", "error"};
	struct fsck *k = arg;

	if (sev == STORE_CHECK_INFO && !k->verbose)
		return;
	if (!k->verbose && k->shown >= FSCK_MAX_SHOWN) {
		k->hidden++;
		return;
	}
	k->shown++;
	bar_clear(k);
	printf("%s%s: %s\n", k->pass2 ? "recheck: " : "", name[sev], msg);
	fflush(stdout);
}

static void on_progress(void *arg, uint64_t done, uint64_t total)
{
	struct fsck *k = arg;
	uint64_t now = bz_now_ns();
	double secs = (double)(now - k->t0) / 1e9;
	double pct = total ? 100.0 * (double)done / (double)total : 100.0;
	double mbs = secs > 0 ? (double)done / 1048576.0 / secs : 0;

	if (k->tty) {
		if (done < total && now - k->last_ns < 100000000ull)
			return;
		k->last_ns = now;
		int w = (int)(pct / 100.0 * 30);
		char bar[31];
		memset(bar, '#', (size_t)w);
		memset(bar + w, '.', (size_t)(30 - w));
		bar[30] = 0;
		double eta = mbs > 0 && total > done ? (double)(total - done) / 1048576.0 / mbs : 0;
		fprintf(stderr, "\r[%s] %5.1f%%  %7.1f MB/s  ETA %u:%02u", bar, pct, mbs, (unsigned)eta / 60,
			(unsigned)eta % 60);
		k->bar_on = true;
		fflush(stderr);
		return;
	}
	int step = (int)(pct / 10);
	if (step <= k->last_step)
		return;
	k->last_step = step;
	fprintf(stderr, "fsck: %3d%% (%.1f of %.1f MB verified, %.1f MB/s)\n", step * 10, (double)done / 1048576.0,
		(double)total / 1048576.0, mbs);
}

int blazectl_open_store(const char *dir, bool read_only, struct vfs **ret_vfs, struct store **ret_store)
{
	struct store_opts o;
	struct vfs *v = NULL;
	int r = vfs_posix_new(dir, &v);

	if (r < 0)
		return r;
	store_opts_default(&o);
	o.vfs = v;
	o.create = false;
	o.read_only = read_only;
	o.cache_bytes = 16ull << 20;
	r = store_open(&o, ret_store);
	if (r < 0) {
		vfs_destroy(v);
		return r;
	}
	*ret_vfs = v;
	return 0;
}

void blazectl_close_store(struct vfs *v, struct store *s)
{
	store_close(s);
	vfs_destroy(v);
}

/* Explains why a store does not open; returns the exit code. */
static int open_failed(const char *dir, struct fsck *k, int r)
{
	struct store_check_ops ops = {.problem = on_problem};
	struct vfs *v = NULL;
	uint64_t errors = 0;
	int rc = 8;

	if (r == -EBUSY) {
		fprintf(stderr, "blazectl fsck: %s is in use (mounted by a blazefs daemon, or open in another "
				"process): unmount it first\n", dir);
		return 8;
	}
	if ((r == -EUCLEAN || r == -EIO || r == -EBADMSG) && vfs_posix_new(dir, &v) == 0 &&
	    store_diagnose(v, &ops, k, &errors) == 0 && errors) {
		printf("%s: errors left: the store cannot be opened (%llu errors; not repairable by blazectl)\n", dir,
		       (unsigned long long)errors);
		rc = 4;
	} else if (r == -EUCLEAN) {
		printf("%s: errors left: the WAL does not replay onto the newest checkpoint\n", dir);
		rc = 4;
	} else {
		fprintf(stderr, "blazectl fsck: cannot open the store %s: %s%s\n", dir, strerror(-r),
			r == -ENOENT ? " (not a blazefs store?)" : "");
	}
	vfs_destroy(v);
	return rc;
}

static void summary(const char *dir, const struct store_check_report *c)
{
	printf("%s: %llu inodes (%llu directories, %llu files with data, %llu symlinks, %llu orphans), "
	       "%llu records (%llu bad), %.1f MB raw in %.1f MB stored\n",
	       dir, (unsigned long long)c->inodes, (unsigned long long)c->dirs, (unsigned long long)c->files,
	       (unsigned long long)c->symlinks, (unsigned long long)c->orphans, (unsigned long long)c->records,
	       (unsigned long long)c->bad_records, (double)c->raw_bytes / 1048576.0,
	       (double)c->stored_bytes / 1048576.0);
	printf("pages: %llu allocated (%llu in the file): 2 superblock, %llu namespace, %llu namespace tree, "
	       "%llu index, %llu data, %llu free, %llu pending, %llu leaked, %llu beyond use; %llu bad\n",
	       (unsigned long long)c->pages_hwm, (unsigned long long)c->pages_file, (unsigned long long)c->ns_pages,
	       (unsigned long long)c->tree_pages,
	       (unsigned long long)c->index_pages, (unsigned long long)c->data_pages,
	       (unsigned long long)c->free_pages, (unsigned long long)c->pending_pages,
	       (unsigned long long)c->unreachable, (unsigned long long)c->beyond, (unsigned long long)c->bad_pages);
	if (c->wal_batches)
		printf("wal: %llu committed batches after the checkpoint (lsn %llu..%llu), tail %s\n",
		       (unsigned long long)c->wal_batches, (unsigned long long)c->wal_first_lsn,
		       (unsigned long long)c->wal_last_lsn, c->wal_torn ? "TORN" : "clean");
	else
		printf("wal: no batches after the checkpoint, tail %s\n", c->wal_torn ? "TORN" : "clean");
}

/* One read-only pass; 0 or the exit code of an operational failure. */
static int check_pass(const char *dir, struct fsck *k, struct store_check_report *ret)
{
	struct store_check_ops ops = {.problem = on_problem, .progress = on_progress};
	struct store *s = NULL;
	struct vfs *v = NULL;
	int r = blazectl_open_store(dir, true, &v, &s);

	if (r < 0)
		return open_failed(dir, k, r);
	k->t0 = bz_now_ns();
	k->last_ns = 0;
	k->last_step = -1;
	r = store_check(s, 0, &ops, k, ret);
	bar_clear(k);
	blazectl_close_store(v, s);
	if (r < 0) {
		fprintf(stderr, "blazectl fsck: the check failed: %s\n", strerror(-r));
		return 8;
	}
	return 0;
}

/* The repairs (read-write). 0 or an exit code. */
static int repair(const char *dir, struct fsck *k, const struct store_check_report *first)
{
	struct store_check_ops ops = {.problem = on_problem};
	struct store_check_report rep;
	struct store *s = NULL;
	struct vfs *v = NULL;
	int r;

	/* Opening read-write replays the valid log and checkpoints: the WAL
	 * restarts in a fresh life past the torn tail, and the checkpoint
	 * overwrites the older (or torn) superblock. */
	r = blazectl_open_store(dir, false, &v, &s);
	if (r < 0) {
		fprintf(stderr, "blazectl fsck: --repair: cannot open the store read-write: %s\n", strerror(-r));
		return 8;
	}
	if (first->wal_torn)
		printf("repair: the WAL was cut at its last valid batch and restarted\n");
	if (first->unreachable) {
		r = store_check(s, STORE_CHECK_FREE_UNREACHABLE, &ops, k, &rep);
		if (r == 0 && rep.freed) {
			r = store_checkpoint(s);
			if (r == 0)
				printf("repair: %llu leaked pages put on the free list\n", (unsigned long long)rep.freed);
		}
		if (r < 0) {
			fprintf(stderr, "blazectl fsck: --repair: freeing leaked pages failed: %s\n", strerror(-r));
			blazectl_close_store(v, s);
			return 8;
		}
	}
	r = store_close(s);
	vfs_destroy(v);
	if (r < 0) {
		fprintf(stderr, "blazectl fsck: --repair: the checkpoint failed: %s\n", strerror(-r));
		return 8;
	}
	return 0;
}

int blazectl_fsck(int argc, char **argv)
{
	struct fsck k = {.tty = isatty(STDERR_FILENO) != 0, .last_step = -1};
	struct store_check_report rep;
	const char *dir = NULL;
	bool do_repair = false;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--repair") || !strcmp(argv[i], "-y"))
			do_repair = true;
		else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose"))
			k.verbose = true;
		else if (argv[i][0] == '-' || dir) {
			fprintf(stderr, "usage: blazectl fsck [--repair] [-v] STORE\n");
			return 8;
		} else
			dir = argv[i];
	}
	if (!dir) {
		fprintf(stderr, "usage: blazectl fsck [--repair] [-v] STORE\n");
		return 8;
	}
	/* The findings are printed here; the engine's own log lines only with -v. */
	bz_log_set_level(k.verbose ? BZ_LOG_WARN : (enum bz_log_level)-1);

	rc = check_pass(dir, &k, &rep);
	if (rc)
		return rc;
	summary(dir, &rep);
	if (k.hidden)
		printf("(%llu more findings not shown; -v shows all)\n", (unsigned long long)k.hidden);
	bool fixable = rep.wal_torn || rep.unreachable || rep.warnings;
	if (!do_repair || !fixable) {
		printf("%s: %s (%llu errors, %llu warnings)\n", dir, rep.errors ? "errors left" : "clean",
		       (unsigned long long)rep.errors, (unsigned long long)rep.warnings);
		return rep.errors ? 4 : 0;
	}
	rc = repair(dir, &k, &rep);
	if (rc)
		return rc;
	k.pass2 = true;
	k.shown = k.hidden = 0;
	rc = check_pass(dir, &k, &rep);
	if (rc)
		return rc;
	printf("%s: %s (after repair: %llu errors, %llu warnings)\n", dir, rep.errors ? "errors left" : "repaired",
	       (unsigned long long)rep.errors, (unsigned long long)rep.warnings);
	return rep.errors ? 4 : 1;
}
