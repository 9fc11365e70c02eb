/* main.c — the blazefs daemon: options, startup, the session loop, shutdown.
 *
 *   blazefs [FUSE options] [-o blazefs options] STORE_DIR MOUNTPOINT
 *
 * Startup order (every failure before the mount exits 1 with a message on
 * stderr and leaves nothing mounted):
 *   1. parse our -o options (fuse_opt_parse, strictly validated), then FUSE's
 *      command line (-f -d -s, mountpoint); create the session, which rejects
 *      unknown -o options;
 *   2. unless -f: fork; the parent waits for the child to report startup
 *      success or failure through a pipe and exits with that status, so
 *      `mount -t fuse.blazefs` and scripts see real errors;
 *   3. create STORE_DIR if absent, vfs_posix_new, store_open (a store held by
 *      another daemon that has it mounted: -EBUSY -> "already mounted", exit
 *      1; held by a process that has not mounted it -- a daemon finishing its
 *      unmount, blazectl fsck -- wait up to 60 s for it; a recovery that
 *      runs out of disk space, -ENOSPC: open read-only instead and say so;
 *      a failed creation of a new store -- store.db still missing after
 *      the failure, e.g. the WAL does not fit the disk -- is not a recovery:
 *      say that creating failed, exit 1),
 *      store_ns_backed
 *      (the live namespace, loaded from the store's on first use), pipe_start,
 *      fuse_session_mount;
 *   4. report success, detach stdio, log to syslog; run the session loop
 *      (multithreaded unless -s).
 * Shutdown (SIGTERM/SIGINT/SIGHUP or fusermount3 -u ends the loop):
 * pipe_stop (drains, syncs, checkpoints; pending flush/fsync replies go out),
 * unmount, store_close, exit 0 (1 if the pipeline or store reported a failure).
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs.h"

#define BLAZEFS_VERSION "0.1.0"

struct cli {
	char *workers, *zstd_level, *batch_bytes, *batch_records, *linger_us, *sync_interval_ms, *cache_mb,
		*max_inflight_mb, *record_bytes, *retain, *read_threads;
	int worm, writeback_cache, sync_close, noxattr, ro;
	char *store_dir;
	int nonopt;
	int show_help;
};

#define CLI_OPT(t, f, v) {t, offsetof(struct cli, f), v}
enum { KEY_HELP = 1, KEY_RO, KEY_RW };
static const struct fuse_opt cli_opts[] = {
	CLI_OPT("workers=%s", workers, 0),
	CLI_OPT("read_threads=%s", read_threads, 0),
	CLI_OPT("zstd_level=%s", zstd_level, 0),
	CLI_OPT("batch_bytes=%s", batch_bytes, 0),
	CLI_OPT("batch_records=%s", batch_records, 0),
	CLI_OPT("linger_us=%s", linger_us, 0),
	CLI_OPT("sync_interval_ms=%s", sync_interval_ms, 0),
	CLI_OPT("cache_mb=%s", cache_mb, 0),
	CLI_OPT("max_inflight_mb=%s", max_inflight_mb, 0),
	CLI_OPT("record_bytes=%s", record_bytes, 0),
	CLI_OPT("worm", worm, 1),
	CLI_OPT("retain=%s", retain, 0),
	CLI_OPT("writeback_cache", writeback_cache, 1),
	CLI_OPT("no_writeback_cache", writeback_cache, 0),
	CLI_OPT("sync_close", sync_close, 1),
	CLI_OPT("noxattr", noxattr, 1),
	FUSE_OPT_KEY("ro", KEY_RO), /* seen by us and passed on to the kernel mount */
	FUSE_OPT_KEY("rw", KEY_RW),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_END,
};

static int cli_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct cli *c = data;

	(void)outargs;
	if (key == KEY_HELP) {
		c->show_help = 1;
		return 1; /* FUSE prints its part too */
	}
	if (key == KEY_RO || key == KEY_RW) {
		c->ro = key == KEY_RO; /* the last one wins, as for mount(8) */
		return 1;
	}
	if (key == FUSE_OPT_KEY_NONOPT) {
		c->nonopt++;
		if (c->nonopt == 1) { /* STORE_DIR: ours */
			c->store_dir = strdup(arg);
			return 0;
		}
		return 1; /* MOUNTPOINT (and anything extra): fuse_parse_cmdline */
	}
	return 1;
}

static void usage(const char *prog)
{
	printf("usage: %s [FUSE options] [-o blazefs options] STORE_DIR MOUNTPOINT\n\n"
	       "blazefs options:\n"
	       "    -o workers=N           encoder threads, 0..64 (0 = serial; default min(CPUs,4))\n"
	       "    -o read_threads=N      threads answering reads at nice +10, 0..64 (0 = the FUSE\n"
	       "                           threads read; default max(1, CPUs-1))\n"
	       "    -o zstd_level=N        zstd level, -7..22 (default 6; 0 = zstd's default 3)\n"
	       "    -o batch_bytes=N       seal a batch at N bytes, 4K..64M (K/M/G suffix ok; default 1M)\n"
	       "    -o batch_records=N     seal a batch at N records, 1..65536 (default 64)\n"
	       "    -o record_bytes=N      max bytes of one record and chunk size, 4K..1M (default 256K)\n"
	       "    -o linger_us=N         seal a batch N us after its first record, 0..1000000 (default 2000)\n"
	       "    -o sync_interval_ms=N  fdatasync the WAL at least every N ms, 1..3600000 (default 1000)\n"
	       "    -o cache_mb=N          read page cache in MiB, 1..65536 (default 32)\n"
	       "    -o max_inflight_mb=N   writers block above N MiB in flight, 2..65536\n"
	       "                           (default 32; at most 1/16 of the store's disk)\n"
	       "    -o worm                refuse unlink/rename of non-empty files\n"
	       "    -o retain=DURATION     worm, but files become deletable DURATION after their last\n"
	       "                           append (e.g. 90s, 12h, 30d, 7y; implies worm)\n"
	       "    -o no_writeback_cache  no kernel writeback cache: every write() is a request to\n"
	       "                           the daemon and a refusal fails that write() itself\n"
	       "                           (default: the writeback cache is on, except with ro)\n"
	       "    -o sync_close          close() waits for fdatasync, not just the WAL write\n"
	       "    -o noxattr             no extended attributes: spares the kernel's xattr query\n"
	       "                           before every write (one FUSE round trip each)\n"
	       "    -o ro                  read-only: the store is never written (works on read-only media)\n\n",
	       prog);
}

/* Parses a decimal number with an optional K/M/G suffix (when sfx). */
static int parse_num(const char *name, const char *s, long long lo, long long hi, bool sfx, long long *ret)
{
	char *end = NULL;
	long long v;

	if (!s)
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || errno)
		goto bad;
	if (sfx && *end) {
		long long mul = 0;
		switch (*end) {
		case 'k': case 'K': mul = 1ll << 10; break;
		case 'm': case 'M': mul = 1ll << 20; break;
		case 'g': case 'G': mul = 1ll << 30; break;
		default: goto bad;
		}
		if (v > LLONG_MAX / mul || v < 0)
			goto bad;
		v *= mul;
		end++;
	}
	if (*end || v < lo || v > hi)
		goto bad;
	*ret = v;
	return 1;
bad:
	fprintf(stderr, "blazefs: invalid value for %s: '%s' (expected %lld..%lld%s)\n", name, s, lo, hi,
		sfx ? ", K/M/G suffix allowed" : "");
	return -EINVAL;
}

static int cli_to_opts(const struct cli *c, struct fs_opts *o)
{
	long long v = 0;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int r;

	memset(o, 0, sizeof(*o));
	pipe_opts_default(&o->pipe);
	o->pipe.workers = (unsigned)BZ_MIN(BZ_MAX(cores, 1l), 4l);
	o->read_threads = (unsigned)BZ_MAX(cores - 1, 1l);
#define NUM(field, lo, hi, sfx, assign)                                          \
	do {                                                                      \
		r = parse_num(#field, c->field, lo, hi, sfx, &v);                \
		if (r < 0)                                                        \
			return r;                                                 \
		if (r > 0)                                                        \
			assign;                                                   \
	} while (0)
	NUM(workers, 0, 64, false, o->pipe.workers = (unsigned)v);
	NUM(read_threads, 0, 64, false, o->read_threads = (unsigned)v);
	NUM(zstd_level, -7, 22, false, o->pipe.zstd_level = (int)v);
	NUM(batch_bytes, 4096, 64ll << 20, true, o->pipe.batch_bytes = (size_t)v);
	NUM(batch_records, 1, 65536, false, o->pipe.batch_records = (unsigned)v);
	NUM(record_bytes, 4096, 1ll << 20, true, o->pipe.record_bytes = (size_t)v);
	NUM(linger_us, 0, 1000000, false, o->pipe.linger_us = (unsigned)v);
	NUM(sync_interval_ms, 1, 3600000, false, o->pipe.sync_interval_ms = (unsigned)v);
	NUM(cache_mb, 1, 65536, false, o->cache_bytes = (uint64_t)v << 20);
	NUM(max_inflight_mb, 2, 65536, false, o->pipe.max_inflight_bytes = (size_t)v << 20);
#undef NUM
	o->inflight_set = c->max_inflight_mb != NULL;
	o->worm = c->worm;
	if (c->retain) {
		if (fs_duration_parse(c->retain, strlen(c->retain), &o->retain_s) < 0) {
			fprintf(stderr,
				"blazefs: invalid value for retain: '%s' (expected an integer with a unit s, m, h, d, w "
				"or y, e.g. 30d; at most 9999y)\n",
				c->retain);
			return -EINVAL;
		}
		o->has_retain = true;
		o->worm = true; /* retain= implies worm */
	}
	/* on by default (-o no_writeback_cache turns it off); a read-only
	 * mount writes nothing back, so there it stays off unless asked */
	o->writeback_cache = c->writeback_cache < 0 ? !c->ro : c->writeback_cache != 0;
	o->sync_close = c->sync_close;
	o->noxattr = c->noxattr;
	o->read_only = c->ro;
	return 0;
}

static void cli_free(struct cli *c)
{
	free(c->workers);
	free(c->read_threads);
	free(c->zstd_level);
	free(c->batch_bytes);
	free(c->batch_records);
	free(c->linger_us);
	free(c->sync_interval_ms);
	free(c->cache_mb);
	free(c->max_inflight_mb);
	free(c->record_bytes);
	free(c->retain);
	free(c->store_dir);
}

/* mkdir -p */
static int make_dirs(const char *path)
{
	char *p = strdup(path);
	int r = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == '\0') {
			char save = *s;
			*s = '\0';
			if (mkdir(p, 0755) < 0 && errno != EEXIST) {
				r = -errno;
				break;
			}
			*s = save;
			if (save == '\0')
				break;
		}
	}
	free(p);
	return r;
}

/* fsname=... with ',' and '\' escaped for the option parser. */
static char *fsname_opt(const char *dir)
{
	size_t n = strlen(dir);
	char *s = malloc(2 * n + 16), *q;

	if (!s)
		return NULL;
	q = s + sprintf(s, "-ofsname=");
	for (; *dir; dir++) {
		if (*dir == ',' || *dir == '\\')
			*q++ = '\\';
		*q++ = *dir;
	}
	*q = '\0';
	return s;
}

#define FS_LOCK_WAIT_MS 60000

/* Where store_dir is mounted as a blazefs (its fsname is the store
 * directory), copied into where (size bytes); false if it is not mounted.
 * /proc/mounts escapes space, tab, newline and backslash as \ooo. */
static bool store_mountpoint(const char *store_dir, char *where, size_t size)
{
	FILE *f = fopen("/proc/mounts", "re");
	char line[3 * PATH_MAX], src[PATH_MAX], mnt[PATH_MAX], type[64];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *fields[3] = {src, mnt, type}, *p = line;
		size_t caps[3] = {sizeof(src), sizeof(mnt), sizeof(type)};

		for (int i = 0; i < 3; i++) {
			size_t n = 0;
			while (*p == ' ')
				p++;
			while (*p && *p != ' ' && *p != '\n') {
				char c = *p++;
				if (c == '\\' && p[0] >= '0' && p[0] <= '3' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' &&
				    p[2] <= '7') {
					c = (char)((p[0] - '0') * 64 + (p[1] - '0') * 8 + (p[2] - '0'));
					p += 3;
				}
				if (n + 1 < caps[i])
					fields[i][n++] = c;
			}
			fields[i][n] = '\0';
		}
		if (strcmp(type, "fuse.blazefs") == 0 && strcmp(src, store_dir) == 0) {
			snprintf(where, size, "%s", mnt);
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* Startup report to the waiting parent (daemon mode). */
static int report_fd = -1;

static void report(int status)
{
	unsigned char c = (unsigned char)status;

	if (report_fd < 0)
		return;
	if (write(report_fd, &c, 1) < 0) {
		/* the parent is gone: nothing to tell */
	}
	close(report_fd);
	report_fd = -1;
}

/* A new store's root directory has no times (ns_new: 0, 1970-01-01). The
 * store is created by the first mount, so that mount gives the root its
 * creation time, logged as an NS_SETATTR like any other change. Every later
 * namespace change in the root sets its ctime, so ctime 0 marks exactly a
 * root that never had times. */
static int root_times_init(struct fs *fs) REQUIRES(fs_ns_lock)
{
	struct ns_op op = {.kind = NS_SETATTR, .ino = NS_ROOT_INO, .flags = NS_SET_ATIME | NS_SET_MTIME};
	struct ns_attr a;
	int r = ns_getattr(fs->ns, NS_ROOT_INO, &a);

	if (r < 0 || a.ctime_ns != 0)
		return r;
	op.mode = a.mode;
	op.uid = a.uid;
	op.gid = a.gid;
	op.atime_ns = op.mtime_ns = op.ctime_ns = fs_now_ns();
	return fs_submit(fs, &op);
}

static int fork_daemon(void)
{
	int p[2];
	pid_t pid;
	unsigned char c = 1;

	if (pipe(p) < 0) {
		perror("blazefs: pipe");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		perror("blazefs: fork");
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			c = 1; /* the child died before reporting */
		_exit(c);
	}
	close(p[0]);
	report_fd = p[1];
	if (setsid() < 0)
		perror("blazefs: setsid");
	return 0;
}

static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	(void)dup2(fd, 0);
	(void)dup2(fd, 1);
	(void)dup2(fd, 2);
	if (fd > 2)
		close(fd);
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts copts = {0};
	struct fuse_session *se = NULL;
	struct fuse_loop_config *lcfg = NULL;
	struct store_opts so;
	struct cli cli = {.writeback_cache = -1};
	struct stat mst;
	struct fs *fs = NULL;
	char *fsname = NULL;
	bool mounted = false, signals = false;
	int ret = 1, r;

	/* Blocks of 128 KiB and more are mmap'ed and unmapped when freed,
	 * except the record and batch buffers that storage/bufpool.c hands
	 * from the threads that free them to those that fill the next (a
	 * bounded pool: mapping and faulting in each one cost the FUSE
	 * threads more than the copy). glibc's default raises this threshold to
	 * the largest block freed (libfuse's 1 MiB request buffers), after
	 * which those blocks come from a heap per thread and are not given
	 * back: streaming 256 MiB peaked at 312 MiB RSS, 75 MiB with the
	 * threshold fixed (tools/bench "daemon RSS streaming"). */
	(void)mallopt(M_MMAP_THRESHOLD, 128 * 1024);

	if (fuse_opt_parse(&args, &cli, cli_opts, cli_proc) < 0) {
		fprintf(stderr, "blazefs: invalid arguments (see blazefs -h)\n");
		goto out;
	}
	if (fuse_parse_cmdline(&args, &copts) != 0) {
		fprintf(stderr, "blazefs: invalid arguments (see blazefs -h)\n");
		goto out;
	}
	if (cli.show_help || copts.show_help) {
		usage(argv[0]);
		printf("FUSE options:\n");
		fuse_cmdline_help();
		fuse_lowlevel_help();
		ret = 0;
		goto out;
	}
	if (copts.show_version) {
		printf("blazefs %s\n", BLAZEFS_VERSION);
		fflush(stdout);
		fuse_lowlevel_version();
		ret = 0;
		goto out;
	}
	if (!cli.store_dir || !copts.mountpoint) {
		fprintf(stderr, "blazefs: missing %s\nusage: %s [FUSE options] [-o options] STORE_DIR MOUNTPOINT\n",
			cli.store_dir ? "MOUNTPOINT" : "STORE_DIR and MOUNTPOINT", argv[0]);
		goto out;
	}
	if (cli.nonopt > 2) {
		fprintf(stderr, "blazefs: too many arguments\n");
		goto out;
	}
	/* As mount(8): only a directory can be a mount point (the kernel would
	 * mount a file, and the mount would be unusable). Checked before the
	 * store is created or opened: a refused mount leaves it untouched. */
	if (stat(copts.mountpoint, &mst) < 0) {
		fprintf(stderr, "blazefs: cannot mount on %s: %s; nothing mounted\n", copts.mountpoint,
			strerror(errno));
		goto out;
	}
	if (!S_ISDIR(mst.st_mode)) {
		fprintf(stderr, "blazefs: cannot mount on %s: %s; nothing mounted\n", copts.mountpoint,
			strerror(ENOTDIR));
		goto out;
	}
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		goto out;
	if (cli_to_opts(&cli, &fs->opts) < 0)
		goto out;
	if (copts.debug)
		bz_log_set_level(BZ_LOG_DEBUG);

	/* -o ro never creates or writes anything: the store must exist */
	r = fs->opts.read_only ? 0 : make_dirs(cli.store_dir);
	if (r < 0) {
		fprintf(stderr, "blazefs: cannot create %s: %s\n", cli.store_dir, strerror(-r));
		goto out;
	}
	fs->store_dir = realpath(cli.store_dir, NULL);
	if (!fs->store_dir) {
		fprintf(stderr, "blazefs: %s: %s\n", cli.store_dir, strerror(errno));
		goto out;
	}
	fsname = fsname_opt(fs->store_dir);
	if (!fsname || fuse_opt_add_arg(&args, "-odefault_permissions") < 0 || fuse_opt_add_arg(&args, fsname) < 0 ||
	    fuse_opt_add_arg(&args, "-osubtype=blazefs") < 0)
		goto out;

	se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), fs);
	if (!se) {
		fprintf(stderr, "blazefs: invalid options (see blazefs -h); nothing mounted\n");
		goto out;
	}
	if (!copts.foreground && fork_daemon() < 0)
		goto out;

	r = vfs_posix_new(fs->store_dir, &fs->vfs);
	if (r < 0) {
		fprintf(stderr, "blazefs: cannot open store directory %s: %s\n", fs->store_dir, strerror(-r));
		goto out;
	}
	store_opts_default(&so);
	so.vfs = fs->vfs;
	if (fs->opts.read_only) {
		/* read-only end to end: shared lock (none on read-only media
		 * without a lock file), WAL replayed into memory, no checkpoint;
		 * every mutation answers EROFS */
		so.read_only = true;
		so.create = false;
	}
	if (fs->opts.cache_bytes)
		so.cache_bytes = fs->opts.cache_bytes;
	/* chunks of the largest power of two a record holds: a full record
	 * is a chunk, stored as the worker compressed it */
	so.chunk_bytes = 4096;
	while (so.chunk_bytes * 2 <= fs->opts.pipe.record_bytes && so.chunk_bytes < (1u << 20))
		so.chunk_bytes *= 2;
	so.zstd_level = fs->opts.pipe.zstd_level;
	/* The lock is held by another process. If it has the store mounted,
	 * that is a second mount: refuse at once, naming the mount point. If
	 * not, it is a daemon finishing an unmount (umount returns before the
	 * daemon has drained and checkpointed) or blazectl fsck: wait for it,
	 * so that "umount M && mount M" works as on ext4. */
	for (int waited_ms = 0;; waited_ms += 100) {
		char where[PATH_MAX];

		r = store_open(&so, &fs->store);
		if (r != -EBUSY && r != -EWOULDBLOCK)
			break;
		if (store_mountpoint(fs->store_dir, where, sizeof(where))) {
			fprintf(stderr, "blazefs: %s is already mounted by another blazefs process (on %s)\n",
				fs->store_dir, where);
			goto out;
		}
		if (waited_ms >= FS_LOCK_WAIT_MS) {
			fprintf(stderr,
				"blazefs: %s is in use by another process (lock held for %d s; blazectl fsck, or a "
				"daemon that does not finish); nothing mounted\n",
				fs->store_dir, FS_LOCK_WAIT_MS / 1000);
			goto out;
		}
		if (waited_ms == 0)
			bz_info("%s is held by a process that has not mounted it (a daemon finishing its unmount, "
				"or blazectl fsck): waiting up to %d s",
				fs->store_dir, FS_LOCK_WAIT_MS / 1000);
		usleep(100 * 1000);
	}
	if (r < 0 && r != -EBUSY && r != -EWOULDBLOCK && r != -EUCLEAN && !fs->opts.read_only &&
	    store_read_superblocks(fs->vfs, (struct store_sb_info[2]){0}) == -ENOENT) {
		/* There was no store.db, and store_open did not leave one: it
		 * was creating a new store and failed (it said why, and removed
		 * what it had made). Not a recovery: no read-only fallback. */
		fprintf(stderr, "blazefs: creating a new store in %s failed: %s; nothing mounted\n", fs->store_dir,
			strerror(-r));
		goto out;
	}
	if (r == -ENOSPC && !fs->opts.read_only) {
		/* Recovery (replay, then a checkpoint) ran out of disk space:
		 * something else filled the store's disk while it was not
		 * mounted (store_open said how much it needs). A read-only open
		 * needs no space: mount read-only rather than not at all, so
		 * the data stays readable, and say why. */
		bz_err("%s: recovery needs more disk space than is free: mounting READ-ONLY (the committed data is "
		       "intact and readable; writes get EROFS). Free space on the store's disk and mount again to "
		       "write",
		       fs->store_dir);
		fs->opts.read_only = true;
		fs->opts.writeback_cache = false; /* as with -o ro */
		so.read_only = true;
		so.create = false;
		r = store_open(&so, &fs->store);
	}
	if (r < 0) {
		fprintf(stderr, "blazefs: cannot open store %s: %s\n", fs->store_dir, strerror(-r));
		goto out;
	}
	bz_mutex_lock(&fs_ns_lock);
	r = store_ns_backed(fs->store, &fs->ns);
	bz_mutex_unlock(&fs_ns_lock);
	if (r < 0) {
		fprintf(stderr, "blazefs: cannot load the namespace of %s: %s\n", fs->store_dir, strerror(-r));
		goto out;
	}
	/* Out of space must surface as ENOSPC (space.c): keep free what can be
	 * in flight plus what a checkpoint and a recovery can need, sized from
	 * the disk (which may lower max_inflight: before pipe_start). */
	fs_space_init(fs);
	r = pipe_start(fs->store, &fs->opts.pipe, &fs->pipe);
	if (r < 0) {
		fprintf(stderr, "blazefs: cannot start the pipeline: %s\n", strerror(-r));
		goto out;
	}
	bz_mutex_lock(&fs_ns_lock);
	r = fs->opts.read_only ? 0 : fs_orphans_cleanup(fs);
	if (r < 0)
		bz_warn("orphan cleanup: %s", strerror(-r));
	r = fs->opts.read_only ? 0 : root_times_init(fs);
	bz_mutex_unlock(&fs_ns_lock);
	if (r < 0)
		bz_warn("cannot set the times of the new store's root: %s", strerror(-r));
	fs->mount_time_ns = bz_wall_ns();
	{
		/* test only (retain.c): shifts the retention clock, so tests
		 * prove expiry without sleeping */
		const char *skew = getenv("BLAZEFS_TEST_RETAIN_SKEW");
		if (skew && *skew) {
			fs->retain_skew_s = strtoll(skew, NULL, 10);
			bz_warn("BLAZEFS_TEST_RETAIN_SKEW: the retention clock runs %lld s ahead (tests only)",
				(long long)fs->retain_skew_s);
		}
	}
	if (fuse_set_signal_handlers(se) != 0) {
		fprintf(stderr, "blazefs: cannot install signal handlers\n");
		goto out;
	}
	signals = true;
	if (fuse_session_mount(se, copts.mountpoint) != 0) {
		fprintf(stderr, "blazefs: cannot mount on %s; nothing mounted\n", copts.mountpoint);
		goto out;
	}
	mounted = true;
	fs->se = se;
	fs->held_cap = fs->opts.pipe.max_inflight_bytes / 2;
	r = fs_wb_start(fs);
	if (r < 0) {
		fprintf(stderr, "blazefs: cannot start the writeback-cache notifier: %s\n", strerror(-r));
		goto out;
	}
	r = fs_read_start(fs);
	if (r < 0) {
		fprintf(stderr, "blazefs: cannot start the read threads: %s\n", strerror(-r));
		goto out;
	}
	r = fs_killpriv_v2_setup(se);
	if (r < 0)
		bz_warn("fuse: cannot wrap the session I/O (%s): every write costs an extra xattr query",
			strerror(-r));

	if (!copts.foreground) {
		bz_log_use_syslog(true);
		report(0);
		detach_stdio();
		if (chdir("/") < 0) {
			/* harmless */
		}
	}
	bz_info("%s mounted on %s", fs->store_dir, copts.mountpoint);

	if (copts.singlethread) {
		r = fuse_session_loop(se);
	} else {
		lcfg = fuse_loop_cfg_create();
		if (!lcfg) {
			bz_err("cannot allocate the loop configuration");
			goto out;
		}
		fuse_loop_cfg_set_clone_fd(lcfg, (unsigned)copts.clone_fd);
		if (copts.max_idle_threads <= 1024) /* default UINT_MAX: libfuse's own default */
			fuse_loop_cfg_set_idle_threads(lcfg, copts.max_idle_threads);
		/* Writeback cache: up to FS_WB_MAX_BACKGROUND page writes are
		 * in the daemon at once, and some may wait for a retrieve reply
		 * (wb.c), which needs a thread of its own: keep room beyond them. */
		if (fs->opts.writeback_cache && copts.max_threads < FS_WB_MIN_THREADS)
			copts.max_threads = FS_WB_MIN_THREADS;
		if (copts.max_threads > 0 && copts.max_threads <= 1024)
			fuse_loop_cfg_set_max_threads(lcfg, copts.max_threads);
		r = fuse_session_loop_mt(se, lcfg);
	}
	/* 0, the number of the signal that ended it (clean), or -errno */
	ret = r < 0 ? 1 : 0;
	if (r < 0)
		bz_err("session loop failed: %s", strerror(-r));
	else if (r > 0)
		bz_info("signal %d: unmounting", r);

out:
	/* The READs still queued are answered (or fail harmlessly once the
	 * kernel is gone) while the pipeline they read is still there. */
	if (fs)
		fs_read_stop(fs);
	/* Drain first, while still mounted: the barrier callbacks of flushes
	 * and fsyncs still in flight (SIGTERM during I/O) can reply. */
	if (fs && fs->pipe) {
		if (fs->opts.writeback_cache && !fs->opts.read_only)
			fs_settle_all(fs);
		/* Files unlinked while the kernel still referenced them are parked
		 * as orphans until its last FORGET, which an unmount need not send:
		 * no request can reach them now, so they go before the store
		 * closes (and their space with them) rather than at the next
		 * mount. */
		if (!fs->opts.read_only) {
			bz_mutex_lock(&fs_ns_lock);
			r = fs_orphans_cleanup(fs);
			bz_mutex_unlock(&fs_ns_lock);
			if (r < 0)
				bz_warn("orphan cleanup at unmount: %s", strerror(-r));
		}
		r = pipe_stop(fs->pipe);
		if (r < 0) {
			bz_err("pipeline stopped with %s", strerror(-r));
			ret = 1;
		}
		fs->pipe = NULL;
	}
	if (mounted)
		fuse_session_unmount(se);
	/* After the unmount (which ends any writeback an invalidation could
	 * wait for), before the inode table goes. */
	if (fs)
		fs_wb_stop(fs);
	if (signals)
		fuse_remove_signal_handlers(se);
	if (fs) {
		bz_mutex_lock(&fs_ns_lock);
		fs_inode_table_free(fs);
		ns_free(fs->ns);
		fs->ns = NULL;
		bz_mutex_unlock(&fs_ns_lock);
		if (fs->store) {
			r = store_close(fs->store);
			if (r < 0) {
				bz_err("store close: %s", strerror(-r));
				ret = 1;
			}
		}
		vfs_destroy(fs->vfs);
		if (mounted)
			bz_info("%s unmounted", fs->store_dir);
		free(fs->store_dir);
		free(fs);
	}
	if (lcfg)
		fuse_loop_cfg_destroy(lcfg);
	if (se)
		fuse_session_destroy(se);
	report(ret);
	free(fsname);
	free(copts.mountpoint);
	fuse_opt_free_args(&args);
	cli_free(&cli);
	return ret;
}
