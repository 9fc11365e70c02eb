/* scrub.c — blazectl scrub [--rate MB/s] [--resume] [--state FILE] [-q] MOUNTPOINT
 *
 * Online scrub: verifies, while the filesystem is mounted and in use, every
 * stored byte of every regular file against the disk -- every page checksum
 * and every record checksum on the way -- and names each damaged file and
 * byte range; and every metadata page: both superblocks and the namespace
 * checkpoint chain first (BZ_IOC_SCRUB_META on the mount point), then each
 * file's INDEX pages before its data (a damaged index page is reported with
 * the file's path). The daemon does the verifying (BZ_IOC_SCRUB[_META],
 * fs/ioctl.h and fs/scrub.c: cache bypassed, never on the commit thread);
 * this side walks the tree, paces the requests, shows progress and keeps
 * the resume state. Metadata bytes count in the progress, the pacing and
 * the report like data bytes.
 *
 * Order and resume. Files are scrubbed in inode-number order (the walk's
 * list, sorted), so a position is (inode, offset). The state file holds the
 * position reached, the bytes verified and the damage found so far; it is
 * written every 2 s and when interrupted (SIGINT, SIGTERM, SIGHUP), and
 * removed when a scrub completes. `--resume` continues from it; files
 * created since with smaller inode numbers are left for the next full
 * scrub. Default state file: /var/lib/blazefs/scrub/<mount path with / as
 * ->.state (root), else $HOME/.local/state/blazefs/...
 *
 * Holes. Before each request the tool asks lseek(SEEK_DATA) for the next
 * stored byte and skips the gap (it stores nothing; it counts as verified),
 * so an 8 TiB sparse file costs what its data costs.
 *
 * Pacing. --rate R (MB/s, 10^6 bytes) bounds the average verification rate
 * from the start of this run: after each request the tool sleeps until
 * bytes / R <= elapsed time. Each request covers at most 4 MiB (less at low
 * rates: a quarter second of budget), so a scrub never holds the daemon
 * for long. Default: no limit.
 *
 * Progress. On a terminal (stderr), a bar with percentage, bytes, rate and
 * ETA, redrawn at most 4 times a second; -q silences it. Damage is reported
 * on stdout as it is found:
 *     DAMAGED PATH: bytes START-END (N bytes): Input/output error
 *     DAMAGED PATH: index page N fails its checksum or header ...
 *     DAMAGED superblock N (page N): fails its checksum or header
 *     DAMAGED namespace checkpoint (generation G): page N fails ...
 * (a read-only mount's torn older superblock is a WARNING line, as fsck
 * warns, and is not counted as damage).
 *
 * Exit codes (fsck's convention): 0 no damage, 4 damage found, 8
 * operational error (not a blazefs mount, a daemon without scrub, ...),
 * 32 interrupted (the state is saved; --resume continues).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blazectl.h"
#include "fs/ioctl.h"

#define STEP_MAX (4ull << 20)
/* A namespace walk starts again when a checkpoint replaced its chain; it
 * gives up (operational error) after this many. */
#define META_RESTARTS_MAX 1000u
#define STATE_MAGIC "blazefs-scrub-state 1"

struct sfile {
	uint64_t ino, size;
	char *path;
};

struct scrub {
	const char *mount;
	char ctl_dir[PATH_MAX];
	struct sfile *f;
	size_t n, cap;
	uint64_t total;                 /* bytes of all files at the walk */
	double rate;                    /* bytes/s, 0 = unlimited */
	bool quiet, tty;
	char state[3 * PATH_MAX];
	/* progress */
	uint64_t pos_ino, pos_off;      /* resume point */
	uint64_t done, base_done;       /* bytes verified, metadata included (base_done: by earlier runs) */
	uint64_t meta, meta_bad;        /* metadata bytes verified, damaged metadata pages */
	uint64_t damaged, damaged_files, vanished;
	size_t files_done;
	double t0, last_draw, last_save;
};

static struct scrub *g_walk;
static volatile sig_atomic_t stop_sig;

static void on_signal(int sig) { stop_sig = sig; }

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int walk_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	struct scrub *s = g_walk;
	struct sfile *nf;

	(void)ftw;
	if (type == FTW_D && strcmp(path, s->ctl_dir) == 0)
		return FTW_SKIP_SUBTREE; /* the control directory: not data */
	if (type != FTW_F || !S_ISREG(st->st_mode))
		return FTW_CONTINUE;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		nf = realloc(s->f, cap * sizeof(*nf));
		if (!nf)
			return FTW_STOP;
		s->f = nf;
		s->cap = cap;
	}
	s->f[s->n].path = strdup(path);
	if (!s->f[s->n].path)
		return FTW_STOP;
	s->f[s->n].ino = st->st_ino;
	s->f[s->n].size = (uint64_t)st->st_size;
	s->total += (uint64_t)st->st_size;
	s->n++;
	return FTW_CONTINUE;
}

static int by_ino(const void *a, const void *b)
{
	const struct sfile *x = a, *y = b;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static void default_state_path(struct scrub *s)
{
	char real[PATH_MAX], name[PATH_MAX], dir[PATH_MAX];
	const char *home = getenv("HOME");
	size_t j = 0;

	if (!realpath(s->mount, real))
		snprintf(real, sizeof(real), "%s", s->mount);
	for (size_t i = 0; real[i] && j + 2 < sizeof(name); i++)
		name[j++] = real[i] == '/' ? '-' : real[i];
	name[j] = 0;
	if (geteuid() == 0 || !home) {
		snprintf(dir, sizeof(dir), "/var/lib/blazefs/scrub");
		(void)mkdir("/var/lib/blazefs", 0755);
	} else {
		snprintf(dir, sizeof(dir), "%s/.local/state/blazefs", home);
		char tmp[2 * PATH_MAX];
		if (strlen(home) > PATH_MAX - 128)
			home = "/tmp";
		snprintf(tmp, sizeof(tmp), "%s/.local", home);
		(void)mkdir(tmp, 0755);
		snprintf(tmp, sizeof(tmp), "%s/.local/state", home);
		(void)mkdir(tmp, 0755);
	}
	(void)mkdir(dir, 0755);
	snprintf(s->state, sizeof(s->state), "%s/scrub%s.state", dir, name);
}

/* Writes the state atomically (temp + rename). Failures are reported once
 * and otherwise ignored: the scrub itself goes on. */
static void save_state(struct scrub *s)
{
	static bool warned;
	char tmp[3 * PATH_MAX + 8];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", s->state);
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%s\n%llu %llu %llu %llu %llu %llu %llu\n", STATE_MAGIC, (unsigned long long)s->pos_ino,
			  (unsigned long long)s->pos_off, (unsigned long long)s->done,
			  (unsigned long long)s->damaged, (unsigned long long)s->damaged_files,
			  (unsigned long long)s->meta, (unsigned long long)s->meta_bad) < 0 ||
	    fclose(f) != 0 || rename(tmp, s->state) < 0) {
		if (!warned)
			fprintf(stderr, "blazectl: cannot save the scrub state in %s: %s\n", s->state, strerror(errno));
		warned = true;
		if (f)
			(void)unlink(tmp);
	}
}

static int load_state(struct scrub *s)
{
	unsigned long long ino, off, done, dmg, dmgf, meta = 0, meta_bad = 0;
	char magic[64];
	FILE *f = fopen(s->state, "r");
	int r = -1;

	if (!f) {
		fprintf(stderr, "blazectl: no interrupted scrub to resume (%s: %s); starting from the beginning\n",
			s->state, strerror(errno));
		return 0;
	}
	if (!fgets(magic, sizeof(magic), f) || strncmp(magic, STATE_MAGIC, strlen(STATE_MAGIC)) != 0 ||
	    fscanf(f, "%llu %llu %llu %llu %llu", &ino, &off, &done, &dmg, &dmgf) != 5) {
		fprintf(stderr, "blazectl: %s is not a scrub state file\n", s->state);
		goto out;
	}
	s->pos_ino = ino;
	s->pos_off = off;
	s->base_done = s->done = done;
	s->damaged = dmg;
	s->damaged_files = dmgf;
	if (fscanf(f, "%llu %llu", &meta, &meta_bad) == 2) { /* absent in states of older blazectls */
		s->meta = meta;
		s->meta_bad = meta_bad;
	}
	r = 0;
out:
	fclose(f);
	return r;
}

static void fmt_hms(char *buf, size_t len, double secs)
{
	unsigned long t = secs < 0 ? 0 : (unsigned long)(secs + 0.5);
	snprintf(buf, len, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
}

static void draw(struct scrub *s, bool final)
{
	double t = now_s(), el = t - s->t0, mbps;
	uint64_t run = s->done - s->base_done;
	double frac = s->total ? (double)s->done / (double)s->total : 1.0;
	char eta[32], bar[31];

	if (!s->tty || s->quiet || (!final && t - s->last_draw < 0.25))
		return;
	s->last_draw = t;
	if (frac > 1.0)
		frac = 1.0;
	mbps = el > 0 ? (double)run / el / 1e6 : 0;
	if (run > 0 && s->total > s->done)
		fmt_hms(eta, sizeof(eta), (double)(s->total - s->done) / ((double)run / el));
	else
		snprintf(eta, sizeof(eta), "--:--");
	for (int i = 0; i < 30; i++)
		bar[i] = i < (int)(frac * 30) ? '#' : '.';
	bar[30] = 0;
	fprintf(stderr, "\rscrub [%s] %3d%%  %.1f/%.1f MB  %.1f MB/s  ETA %s  files %zu/%zu  damaged %llu \033[K%s",
		bar, (int)(frac * 100), (double)s->done / 1e6, (double)s->total / 1e6, mbps, eta, s->files_done, s->n,
		(unsigned long long)(s->damaged + s->meta_bad), final ? "\n" : "");
}

static void pace(struct scrub *s)
{
	if (s->rate <= 0)
		return;
	double want = (double)(s->done - s->base_done) / s->rate, el = now_s() - s->t0;
	if (want > el) {
		double d = want - el;
		struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
		nanosleep(&ts, NULL); /* a signal cuts it short: checked by the caller */
	}
}

static const char *bad_what(uint32_t bad)
{
	switch (bad) {
	case BZ_META_BAD_PAGE:
		return "fails its checksum or header";
	case BZ_META_BAD_LINK:
		return "breaks its chain (the link ends early, runs on or points outside store.db)";
	case BZ_META_BAD_BODY:
		return "holds wrong content (a valid checksum over bad used bytes, entries or stream length)";
	default:
		return "is damaged";
	}
}

static uint64_t step_bytes(const struct scrub *s)
{
	uint64_t step = STEP_MAX;

	if (s->rate > 0 && (uint64_t)(s->rate / 4) < step)
		step = (uint64_t)(s->rate / 4) > 4096 ? (uint64_t)(s->rate / 4) : 4096;
	return step;
}

/* Walks metadata pages: walk BZ_META_NS (fd: the mount point) or
 * BZ_META_INDEX (fd: the open file `path`). Returns 0, 1 (damage found),
 * -1 (operational error: reported), -2 (interrupted), -3 (the daemon does
 * not answer metadata scrub requests: reported), -4 (INDEX: the file was
 * deleted meanwhile). */
static int scrub_meta(struct scrub *s, int fd, uint32_t walk, const char *path)
{
	struct bz_scrub_meta_arg a = {.walk = walk};
	unsigned restarts = 0;
	int r = 0;

	for (;;) {
		if (stop_sig)
			return -2;
		a.len = step_bytes(s);
		if (ioctl(fd, BZ_IOC_SCRUB_META, &a) < 0) {
			if (errno == EAGAIN) { /* a checkpoint ran during the call: again, same cursor */
				struct timespec ts = {0, 1000000};
				nanosleep(&ts, NULL);
				continue;
			}
			if (errno == EINTR)
				return -2;
			if (errno == ENOENT && walk == BZ_META_INDEX)
				return -4;
			fprintf(stderr, "%sblazectl: %s: metadata scrub request failed: %s%s\n",
				s->tty && !s->quiet ? "\n" : "", path, strerror(errno),
				errno == ENOTTY ? " (is this blazefs, and a daemon that knows metadata scrub?)" : "");
			return errno == ENOTTY ? -3 : -1;
		}
		s->done += a.done;
		s->meta += a.done;
		if ((a.flags & BZ_META_RESTARTED) && ++restarts > META_RESTARTS_MAX) {
			fprintf(stderr, "%sblazectl: %s: checkpoints replaced the namespace chain %u times during its "
					"walk; try again with a higher --rate or when the filesystem is quieter\n",
				s->tty && !s->quiet ? "\n" : "", path, restarts - 1);
			return -1;
		}
		if (a.bad) {
			if (s->tty && !s->quiet)
				fprintf(stderr, "\r\033[K");
			if (a.bad == BZ_META_BAD_STALE) {
				printf("WARNING superblock %llu (page %llu) is invalid: a torn checkpoint; the store uses the "
				       "other one, and the next checkpoint of a writable mount rewrites it\n",
				       (unsigned long long)a.bad_pgno, (unsigned long long)a.bad_pgno);
			} else {
				if (walk == BZ_META_INDEX)
					printf("DAMAGED %s: index page %llu %s%s\n", path, (unsigned long long)a.bad_pgno,
					       bad_what(a.bad),
					       a.flags & BZ_META_END && a.pos < a.total / 4096
						       ? "; the older chunks it leads to cannot be found" : "");
				else if (a.pos <= 2 && a.bad_pgno < 2)
					printf("DAMAGED superblock %llu (page %llu): %s\n", (unsigned long long)a.bad_pgno,
					       (unsigned long long)a.bad_pgno, bad_what(a.bad));
				else
					printf("DAMAGED namespace checkpoint (generation %llu): page %llu %s%s\n",
					       (unsigned long long)a.gen, (unsigned long long)a.bad_pgno, bad_what(a.bad),
					       a.flags & BZ_META_END && a.pos < a.total / 4096
						       ? "; the rest of the chain cannot be followed" : "");
				s->meta_bad++;
				r = 1;
			}
			fflush(stdout);
		}
		if (a.flags & BZ_META_END)
			break;
		draw(s, false);
		pace(s);
	}
	return r;
}

/* Scrubs one file from offset `from`. Returns 0, 1 (damage found), -1
 * (operational error: reported), -2 (interrupted) or -3 (the daemon does
 * not answer scrub requests: reported). */
static int scrub_file(struct scrub *s, const struct sfile *sf, uint64_t from)
{
	struct bz_scrub_arg a;
	struct stat st;
	uint64_t step = step_bytes(s), off = from;
	int fd, r = 0;

	fd = open(sf->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_ino != sf->ino) {
		s->vanished++; /* deleted or replaced since the walk: not an error */
		goto out;
	}
	if (from == 0) { /* its index pages first (a resumed file did them already) */
		s->pos_ino = sf->ino;
		s->pos_off = 0;
		r = scrub_meta(s, fd, BZ_META_INDEX, sf->path);
		if (r == -4) {
			s->vanished++;
			r = 0;
			goto out;
		}
		if (r < 0)
			goto out;
		if (r == 1)
			s->damaged_files++;
	}
	for (;;) {
		if (stop_sig) {
			r = -2;
			break;
		}
		/* Holes store nothing: jump to the next data (SEEK_DATA reports the
		 * store's holes), counting the gap as verified. ENXIO: no data
		 * after off, the rest of the file is a hole. */
		off_t data = lseek(fd, (off_t)off, SEEK_DATA);
		if (data < 0 && errno == ENXIO) {
			if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > off)
				s->done += (uint64_t)st.st_size - off;
			off = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : off;
			break;
		}
		if (data > (off_t)off) {
			s->done += (uint64_t)data - off;
			off = (uint64_t)data;
		}
		memset(&a, 0, sizeof(a));
		a.off = off;
		a.len = step;
		s->pos_ino = sf->ino;
		s->pos_off = off;
		if (ioctl(fd, BZ_IOC_SCRUB, &a) < 0) {
			if (errno == EINTR) {
				r = -2;
				break;
			}
			fprintf(stderr, "%sblazectl: %s: scrub request failed: %s%s\n", s->tty && !s->quiet ? "\n" : "",
				sf->path, strerror(errno),
				errno == ENOTTY ? " (is this blazefs, and a daemon that knows scrub?)" : "");
			r = errno == ENOTTY ? -3 : -1;
			break;
		}
		s->done += a.done;
		off += a.done;
		if (a.bad_len) {
			if (s->tty && !s->quiet)
				fprintf(stderr, "\r\033[K");
			printf("DAMAGED %s: bytes %llu-%llu (%llu bytes): %s\n", sf->path,
			       (unsigned long long)a.bad_off, (unsigned long long)(a.bad_off + a.bad_len - 1),
			       (unsigned long long)a.bad_len, strerror(a.err ? -a.err : EIO));
			fflush(stdout);
			if (r == 0)
				s->damaged_files++;
			s->damaged++;
			r = 2;
			off = a.bad_off + a.bad_len;
		} else if (a.done == 0) {
			break; /* the end of the file */
		}
		draw(s, false);
		pace(s);
		if (now_s() - s->last_save > 2.0) {
			s->pos_off = off;
			save_state(s);
			s->last_save = now_s();
		}
	}
	s->pos_off = off;
out:
	if (fd >= 0)
		close(fd);
	return r == 2 ? 1 : r;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: blazectl scrub [--rate MB/s] [--resume] [--state FILE] [-q] MOUNTPOINT\n");
}

int blazectl_scrub(int argc, char **argv)
{
	static const struct option lo[] = {{"rate", required_argument, NULL, 'r'},
					   {"resume", no_argument, NULL, 'R'},
					   {"state", required_argument, NULL, 's'},
					   {"quiet", no_argument, NULL, 'q'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	struct scrub s = {0};
	struct sigaction sa = {0};
	bool resume = false;
	char ctl[PATH_MAX + 32], *end;
	struct stat st;
	int c, rc = 8, mfd = -1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "r:s:qh", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			errno = 0;
			s.rate = strtod(optarg, &end) * 1e6;
			if (errno || *end || s.rate <= 0) {
				fprintf(stderr, "blazectl: --rate: a positive number of MB/s, not '%s'\n", optarg);
				goto out;
			}
			break;
		case 'R':
			resume = true;
			break;
		case 's':
			snprintf(s.state, sizeof(s.state), "%s", optarg);
			break;
		case 'q':
			s.quiet = true;
			break;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		default:
			usage(stderr);
			goto out;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		goto out;
	}
	s.mount = argv[optind];
	snprintf(ctl, sizeof(ctl), "%s/.blazefs/stats", s.mount);
	if (stat(ctl, &st) < 0) {
		fprintf(stderr, "blazectl: %s: not a blazefs mount point (%s: %s)\n", s.mount, ctl, strerror(errno));
		goto out;
	}
	snprintf(s.ctl_dir, sizeof(s.ctl_dir), "%s/.blazefs", s.mount);
	if (!s.state[0])
		default_state_path(&s);
	if (resume && load_state(&s) < 0)
		goto out;
	g_walk = &s;
	if (nftw(s.mount, walk_cb, 64, FTW_PHYS | FTW_MOUNT | FTW_ACTIONRETVAL) != 0) {
		fprintf(stderr, "blazectl: walking %s: %s\n", s.mount, strerror(errno ? errno : ENOMEM));
		goto out;
	}
	if (s.n) /* qsort wants a non-NULL base */
		qsort(s.f, s.n, sizeof(*s.f), by_ino);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	s.tty = isatty(STDERR_FILENO);
	s.t0 = s.last_save = now_s();
	bool failed = false;
	/* The metadata: its size for the progress, then the superblocks and the
	 * namespace chain (before any file, so a resumed run past the first
	 * file has done them). */
	mfd = open(s.mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mfd >= 0) {
		struct bz_scrub_meta_arg probe = {.walk = BZ_META_NS};
		int pr;
		for (int tries = 0; (pr = ioctl(mfd, BZ_IOC_SCRUB_META, &probe)) < 0 && errno == EAGAIN && tries < 100;
		     tries++)
			probe = (struct bz_scrub_meta_arg){.walk = BZ_META_NS}; /* a checkpoint: ask again */
		if (pr == 0)
			s.total += probe.total + probe.index_total;
	}
	if (!resume || s.pos_ino == 0) {
		int r = mfd < 0 ? -1 : scrub_meta(&s, mfd, BZ_META_NS, s.mount);
		if (mfd < 0)
			fprintf(stderr, "blazectl: %s: %s\n", s.mount, strerror(errno));
		if (r == -1 || r == -3)
			failed = true;
		if (r == -3)
			s.n = 0; /* a daemon without scrub requests: nothing more to try */
	}
	for (size_t i = 0; i < s.n && !stop_sig; i++) {
		const struct sfile *sf = &s.f[i];
		uint64_t from = 0;

		if (resume && sf->ino < s.pos_ino) { /* done by the interrupted run */
			s.files_done++;
			continue;
		}
		if (resume && sf->ino == s.pos_ino)
			from = s.pos_off;
		int r = scrub_file(&s, sf, from);
		if (r == -1 || r == -3)
			failed = true;
		if (r == -3)
			break;
		if (r != -2)
			s.files_done++;
		if (r >= 0) {
			s.pos_ino = sf->ino + 1; /* next position: the following inode */
			s.pos_off = 0;
		}
	}
	draw(&s, true);
	if (stop_sig) {
		save_state(&s);
		fprintf(stderr, "blazectl: scrub interrupted at inode %llu offset %llu; continue with: blazectl scrub "
				"--resume%s%s %s\n",
			(unsigned long long)s.pos_ino, (unsigned long long)s.pos_off, s.state[0] ? " --state " : "",
			s.state, s.mount);
		rc = 32;
		goto out;
	}
	(void)unlink(s.state);
	printf("scrub %s: %zu files, %llu bytes of data and %llu bytes of metadata verified in %.1f s; %llu damaged "
	       "ranges in %llu files, %llu damaged metadata pages%s\n",
	       s.mount, s.files_done, (unsigned long long)(s.done - s.meta), (unsigned long long)s.meta,
	       now_s() - s.t0, (unsigned long long)s.damaged, (unsigned long long)s.damaged_files,
	       (unsigned long long)s.meta_bad,
	       s.vanished ? " (some files changed or vanished during the scrub)" : "");
	rc = failed ? 8 : s.damaged || s.meta_bad ? 4 : 0;
out:
	if (mfd >= 0)
		close(mfd);
	for (size_t i = 0; i < s.n; i++)
		free(s.f[i].path);
	free(s.f);
	return rc;
}
