/* read.c — READ requests of regular files, answered by the read pool.
 *
 * WHY. The fsync path crosses several threads (the session thread that
 * takes the WRITE, the commit thread that writes and syncs the WAL, the
 * session thread that answers the FSYNC), and each hop waits for a CPU.
 * Readers of compressed files keep every core busy decompressing: served
 * by the session threads themselves, six sequential readers on 2 cores
 * took every session thread and both cores, and an fsync waited behind
 * them (tools/bench "fsync p99 6 readers / none"; docs/BENCH.md).
 *
 * WHAT. op_read (ops.c) hands a READ of a regular file larger than a page
 * to fs_read_submit,
 * which queues it to a pool of read_threads workers (workers/pool.c;
 * default max(1, CPUs - 1), so one core is never taken by reads) and
 * returns: the session thread goes back to /dev/fuse at once, and a WRITE
 * or FSYNC queued behind a crowd of READs is taken without waiting for one
 * to decompress. A worker:
 *   - lowers its own priority to nice +FS_READ_NICE on its first job
 *     (raising one's nice value needs no privilege; it is never lowered
 *     again): when reads and the commit path want the same core, the
 *     commit path gets it;
 *   - answers EINTR for a request interrupted while it was queued;
 *   - reads into a buffer it keeps (grown to the largest READ it has
 *     served, at most the kernel's max_read, 1 MiB), not a fresh 1 MiB
 *     allocation per READ, which glibc maps and the kernel faults in and
 *     zeroes every time (M_MMAP_THRESHOLD is fixed at 128 KiB, main.c);
 *   - reads the store (pipe_read) and, with the writeback cache, the pages
 *     held past the end (fs_file_read_held), and replies.
 * fuse_reply_buf copies the buffer into the kernel before it returns, so
 * the buffer is free for the next job.
 *
 * BOUNDS. FS_READ_QUEUE jobs wait at most; when the queue is full the
 * session thread serves the READ itself, as with read_threads=0. A queued
 * job holds its request and ~48 bytes; the kernel bounds the READs in
 * flight (its background limit plus one per reading thread).
 *
 * ORDER. READs may be answered in any order; the kernel matches replies to
 * requests by their unique id, and a read() waits for every READ it sent.
 *
 * TEARDOWN. fs_read_stop (main.c, after the session loop ends, before the
 * pipeline stops) runs every queued job (their replies then fail harmlessly
 * if the kernel is gone; replying frees the request) and joins the workers.
 *
 * LOCKS. None of its own beyond the pool's queue lock (pool.c); a job
 * touches its request, its worker's buffer, and what pipe_read and
 * fs_file_read_held lock themselves. Any session thread may submit.
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs/fs.h"
#include "workers/pool.h"

#define FS_READ_QUEUE 256
/* READs of at most one page stay on the session thread: the writeback
 * cache's read-modify-write of a partial last page is one (every `echo >>`
 * sends it), and a thread hop costs that write path more than its read */
#define FS_READ_INLINE_MAX 4096

struct rjob {
	struct fs *fs;
	fuse_req_t req;
	fuse_ino_t ino;
	size_t size;
	off_t off;
};

struct rworker {
	char *buf;
	size_t cap;
	bool niced;
};

void fs_read_serve(struct fs *fs, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, char *buf)
{
	size_t n = 0;
	int r = pipe_read(fs->pipe, ino, (uint64_t)off, buf, size, &n);

	if (r == 0 && n < size && fs->opts.writeback_cache)
		fs_file_read_held(fs, ino, (uint64_t)off, buf, size, &n); /* pages held past the end */
	if (r < 0) {
		fs_note_error(fs, r);
		fuse_reply_err(req, -r);
	} else {
		fuse_reply_buf(req, buf, n);
	}
}

static void rjob_run(void *arg, void *ctx)
{
	struct rjob *j = arg;
	struct rworker *w = ctx;

	if (!w->niced) {
		/* this thread only (Linux: a thread id names one thread) */
		if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), FS_READ_NICE) < 0)
			bz_warn("read pool: cannot lower the priority of a read thread: %s", strerror(errno));
		w->niced = true;
	}
	if (fuse_req_interrupted(j->req)) {
		fuse_reply_err(j->req, EINTR);
		goto out;
	}
	if (w->cap < j->size) { /* size > FS_READ_INLINE_MAX: never 0 */
		char *nb = realloc(w->buf, j->size);
		if (!nb) {
			fuse_reply_err(j->req, ENOMEM);
			goto out;
		}
		w->buf = nb;
		w->cap = j->size;
	}
	fs_read_serve(j->fs, j->req, j->ino, j->size, j->off, w->buf);
out:
	free(j);
}

static void *rworker_new(void *arg)
{
	(void)arg;
	return calloc(1, sizeof(struct rworker));
}

static void rworker_free(void *ctx)
{
	struct rworker *w = ctx;

	if (w)
		free(w->buf);
	free(w);
}

int fs_read_start(struct fs *fs)
{
	struct pool_opts o = {
		.threads = fs->opts.read_threads,
		.queue_cap = FS_READ_QUEUE,
		.ctx_new = rworker_new,
		.ctx_free = rworker_free,
	};

	fs->rpool = NULL;
	if (!fs->opts.read_threads)
		return 0;
	return pool_create(&o, &fs->rpool);
}

int fs_read_submit(struct fs *fs, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off)
{
	struct rjob *j;
	int r;

	if (!fs->rpool || size <= FS_READ_INLINE_MAX)
		return -EAGAIN;
	j = malloc(sizeof(*j));
	if (!j)
		return -ENOMEM;
	*j = (struct rjob){.fs = fs, .req = req, .ino = ino, .size = size, .off = off};
	r = pool_try_add(fs->rpool, rjob_run, j);
	if (r < 0)
		free(j);
	return r;
}

void fs_read_stop(struct fs *fs)
{
	pool_destroy(fs->rpool);
	fs->rpool = NULL;
}
