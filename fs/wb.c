/* wb.c — what the daemon needs for -o writeback_cache: page writes held out
 * of order, the kernel-cache notifier thread, and retrieving dirty pages.
 * Without the writeback cache only the notifier runs (not with -o ro): a
 * page of a shared mapping written back and refused keeps the refused bytes
 * in the kernel's cache just the same (inode.c refused_page_err).
 *
 * In this mode the kernel acknowledges write() itself, keeps its own i_size
 * (it never takes the size from getattr again while the inode is cached)
 * and sends whole dirty pages later, from its writeback threads, in any
 * order and after any delay, on any of the session threads. So:
 *
 *   - Held extents. A page write (FUSE_WRITE_CACHE) that starts past the
 *     live end is not judged at once: the bytes below it may still be dirty
 *     in the kernel. It is copied into the inode's held list (sorted by
 *     offset, never overlapping: an overlap must carry identical bytes or
 *     it is a refused overwrite; a page that starts where an extent ends
 *     grows that extent in place, and neighbours may touch) and
 *     acknowledged. Whenever the live end
 *     grows, held extents that became reachable are appended in order
 *     (inode.c drain). At flush/fsync/release the kernel has written every
 *     dirty page back, so what is still held lies beyond a real hole and
 *     is judged then (fs_file_settle). Memory: all held bytes of the mount
 *     are bounded by held_cap (= max_inflight); a page that does not fit is
 *     judged at once, as without the cache (counted, logged).
 *   - Invalidation. After a refusal the kernel still caches the refused
 *     page (clean, with the refused bytes) and would show it to readers and
 *     send it again with the next append. The inode is queued here and the
 *     notifier thread calls fuse_lowlevel_notify_inval_inode for the range.
 *     Never from the request handler itself: the kernel waits for the
 *     writeback of the page being answered, which ends only once the
 *     handler has replied (deadlock). The queue is intrusive (fs_inode
 *     inval_next, one entry per inode, ranges merged), so it needs no
 *     memory and cannot fill up; fs_wb_forget unlinks an entry being freed.
 *   - Retrieve. A growing truncate is not preceded by a flush of dirty
 *     pages, and the kernel's size may already be past the daemon's live
 *     end. fs_wb_retrieve asks the kernel for the bytes it caches at an
 *     offset (FUSE_NOTIFY_RETRIEVE; only cached pages, never past its
 *     i_size) and waits for the reply, which another session thread
 *     delivers to fs_wb_retrieve_done. The truncate path (inode.c) uses it
 *     to store those dirty bytes first and to see whether the kernel's size
 *     is above the requested one (a shrink: EPERM, as without the cache).
 *     During a truncate the kernel holds no write of the inode in flight
 *     (fuse_set_nowrite), so the bytes are stable.
 *
 *   - Order. Several session threads take a writeback pass's WRITEs, which
 *     the kernel sends in page order, and race for the inode lock: a page
 *     often got there before the one below it and was held -- two copies
 *     of every such byte (perf of a 1 MiB sequential writer: a third of
 *     the daemon's CPU). So every page write registers (ino, off) here from
 *     before it takes the inode lock until it releases it, and one that is
 *     past the live end while a write of the same inode below it is
 *     registered waits for it (inode.c: wait_for_below) instead of being
 *     held. The wait ends when the live end reaches it or no write below it
 *     is registered any more: a registered write is already in the daemon
 *     and never waits for one above it, so the lowest always proceeds. At
 *     most FS_WB_MAX_BACKGROUND threads wait at once (of at least
 *     FS_WB_MIN_THREADS), so one is always free for a retrieve's reply.
 *     A write the table has no slot for is simply not registered: then a
 *     page may be held, as before.
 *
 * Locks: held lists and ghost_end under the inode lock (fs_inode_cap);
 * held_total and held_bytes are __atomic. The notifier queue and each
 * inode's inval_* fields under fs_ns_lock; the thread sleeps on wb->cond
 * with fs_ns_lock and calls the kernel with no lock held. Retrieve waiters
 * live on wb->waiters under wb->mu (a leaf lock); a reply for a waiter that
 * gave up finds no entry and is dropped. The order table and its waiter
 * count under wb->omu (a leaf, taken with or without the inode lock).
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <stdlib.h>
#include <string.h>

#include "fs/fs.h"

struct fs_held {
	struct fs_held *next;
	uint64_t off;
	size_t len;
	char data[];
};

struct rwait {
	struct rwait *next;
	char *buf;
	size_t cap, got;
	bool done;
};

BZ_CAP_DECLARE(wb_cap);
BZ_CAP_DECLARE(wb_order_cap);

#define WB_ORDER_SLOTS 64

struct order_slot {
	uint64_t ino; /* 0 = free */
	uint64_t off;
};

struct fs_wb {
	pthread_t th;
	bool started;
	pthread_t cth;        /* the catch-up thread */
	bool cstarted;
	bool stop GUARDED_BY(fs_ns_lock);
	pthread_cond_t ccond; /* stop, for the catch-up thread, with fs_ns_lock (monotonic) */
	pthread_cond_t cond;  /* queue not empty or stop, with fs_ns_lock */
	pthread_cond_t done;  /* an invalidation finished, with fs_ns_lock */
	bz_mutex mu;          /* retrieve waiters (leaf) */
	pthread_cond_t rcond; /* a reply arrived, with mu */
	struct rwait *waiters GUARDED_BY(wb_cap);
	bz_mutex omu; /* the order table (leaf) */
	struct order_slot order[WB_ORDER_SLOTS] GUARDED_BY(wb_order_cap);
	unsigned order_waiters GUARDED_BY(wb_order_cap);
};

/* ---- order of page writes ---- */

int fs_wb_order_enter(struct fs *fs, uint64_t ino, uint64_t off)
{
	struct fs_wb *wb = fs->wb;
	int slot = -1;

	if (!wb || ino == 0)
		return -1;
	bz_cap_lock(&wb->omu, &wb_order_cap);
	for (int i = 0; i < WB_ORDER_SLOTS && slot < 0; i++)
		if (wb->order[i].ino == 0) {
			wb->order[i] = (struct order_slot){.ino = ino, .off = off};
			slot = i;
		}
	bz_cap_unlock(&wb->omu, &wb_order_cap);
	return slot;
}

void fs_wb_order_leave(struct fs *fs, int slot)
{
	struct fs_wb *wb = fs->wb;

	if (!wb || slot < 0 || slot >= WB_ORDER_SLOTS)
		return;
	bz_cap_lock(&wb->omu, &wb_order_cap);
	wb->order[slot].ino = 0;
	bz_cap_unlock(&wb->omu, &wb_order_cap);
}

static bool order_below(struct fs_wb *wb, uint64_t ino, uint64_t off) REQUIRES(wb_order_cap)
{
	for (int i = 0; i < WB_ORDER_SLOTS; i++)
		if (wb->order[i].ino == ino && wb->order[i].off < off)
			return true;
	return false;
}

bool fs_wb_order_below(struct fs *fs, uint64_t ino, uint64_t off)
{
	struct fs_wb *wb = fs->wb;
	bool below;

	if (!wb)
		return false;
	bz_cap_lock(&wb->omu, &wb_order_cap);
	below = order_below(wb, ino, off);
	bz_cap_unlock(&wb->omu, &wb_order_cap);
	return below;
}

bool fs_wb_order_wait_begin(struct fs *fs, uint64_t ino, uint64_t off)
{
	struct fs_wb *wb = fs->wb;
	bool ok = false;

	if (!wb)
		return false;
	bz_cap_lock(&wb->omu, &wb_order_cap);
	if (wb->order_waiters < FS_WB_MAX_BACKGROUND && order_below(wb, ino, off)) {
		wb->order_waiters++;
		ok = true;
	}
	bz_cap_unlock(&wb->omu, &wb_order_cap);
	return ok;
}

void fs_wb_order_wait_end(struct fs *fs)
{
	struct fs_wb *wb = fs->wb;

	if (!wb)
		return;
	bz_cap_lock(&wb->omu, &wb_order_cap);
	wb->order_waiters--;
	bz_cap_unlock(&wb->omu, &wb_order_cap);
}

/* ---- held extents ---- */

static void held_account(struct fs *fs, struct fs_inode *ip, int64_t delta) REQUIRES(fs_inode_cap)
{
	uint64_t total = __atomic_add_fetch(&fs->held_total, (uint64_t)delta, __ATOMIC_RELAXED);
	uint64_t peak = __atomic_load_n(&fs->ctr.held_bytes_max, __ATOMIC_RELAXED);

	__atomic_store_n(&ip->held_bytes, ip->held_bytes + (uint64_t)delta, __ATOMIC_RELAXED);
	while (delta > 0 && total > peak &&
	       !__atomic_compare_exchange_n(&fs->ctr.held_bytes_max, &peak, total, false, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED))
		;
}

int fs_held_insert(struct fs *fs, struct fs_inode *ip, uint64_t off, const char *buf, size_t len)
{
	struct fs_held **pp = &ip->held, *h, *first = NULL, *nh;
	uint64_t start = off, end = off + len, old_bytes = 0;
	size_t merged = 0;

	/* skip extents that end before the new one */
	while (*pp && (*pp)->off + (*pp)->len < off)
		pp = &(*pp)->next;
	/* The common case: the session threads took the pages after a missing
	 * one in order, so this one starts where a held extent ends and
	 * overlaps nothing after it. That extent grows in place: realloc of a
	 * block past glibc's mmap threshold (fs/main.c) moves no bytes, where
	 * building a merged copy at each page made a run of N held pages cost
	 * O(N^2) copying and a fresh mapping each (perf: the largest cost of
	 * the FUSE threads with two writers). */
	h = *pp;
	if (h && h->off + h->len == off && (!h->next || h->next->off >= end)) {
		nh = realloc(h, sizeof(*nh) + h->len + len);
		if (!nh)
			return -ENOMEM;
		memcpy(nh->data + nh->len, buf, len);
		nh->len += len;
		*pp = nh;
		held_account(fs, ip, (int64_t)len);
		return 0;
	}
	/* the overlapping or touching extents must agree with buf; the run
	 * of them (extents may touch each other: see above) becomes one */
	for (h = *pp; h && h->off <= end; h = h->next) {
		uint64_t lo = BZ_MAX(h->off, off), hi = BZ_MIN(h->off + h->len, off + len);
		if (hi > lo && memcmp(h->data + (lo - h->off), buf + (lo - off), (size_t)(hi - lo)) != 0)
			return 1;
		start = BZ_MIN(start, h->off);
		end = BZ_MAX(end, h->off + h->len);
		merged++;
	}
	nh = malloc(sizeof(*nh) + (size_t)(end - start));
	if (!nh)
		return -ENOMEM;
	nh->off = start;
	nh->len = (size_t)(end - start);
	first = *pp;
	for (; merged > 0; merged--) {
		struct fs_held *next = first->next;
		memcpy(nh->data + (first->off - start), first->data, first->len);
		old_bytes += first->len;
		free(first);
		first = next;
	}
	memcpy(nh->data + (off - start), buf, len);
	nh->next = first;
	*pp = nh;
	held_account(fs, ip, (int64_t)(nh->len - old_bytes));
	return 0;
}

struct fs_held *fs_held_first(struct fs_inode *ip, uint64_t *ret_off, const char **ret_data, size_t *ret_len)
{
	struct fs_held *h = ip->held;

	if (h) {
		*ret_off = h->off;
		*ret_data = h->data;
		*ret_len = h->len;
	}
	return h;
}

uint64_t fs_held_last_end(struct fs_inode *ip)
{
	struct fs_held *h = ip->held;

	while (h && h->next)
		h = h->next;
	return h ? h->off + h->len : 0;
}

void fs_held_pop(struct fs *fs, struct fs_inode *ip)
{
	struct fs_held *h = ip->held;

	if (!h)
		return;
	ip->held = h->next;
	held_account(fs, ip, -(int64_t)h->len);
	free(h);
}

void fs_held_free_all(struct fs *fs, struct fs_inode *ip)
{
	while (ip->held)
		fs_held_pop(fs, ip);
}

void fs_file_read_held(struct fs *fs, uint64_t ino, uint64_t off, char *buf, size_t len, size_t *ret_n)
{
	struct fs_inode *ip;
	size_t n = *ret_n;

	bz_mutex_lock(&fs_ns_lock);
	ip = fs_inode_find(fs, ino);
	if (ip && __atomic_load_n(&ip->held_bytes, __ATOMIC_RELAXED) == 0)
		ip = NULL;
	if (ip)
		ip->refs++; /* keep the entry while its lock is taken below */
	bz_mutex_unlock(&fs_ns_lock);
	if (!ip)
		return;
	bz_cap_lock(&ip->lock, &fs_inode_cap);
	for (struct fs_held *h = ip->held; h; h = h->next) {
		uint64_t lo = BZ_MAX(h->off, off + n), hi = BZ_MIN(h->off + h->len, off + len);
		if (h->off >= off + len)
			break;
		if (hi <= lo)
			continue;
		memset(buf + n, 0, (size_t)(lo - (off + n))); /* a hole: reads as zeros */
		memcpy(buf + (lo - off), h->data + (lo - h->off), (size_t)(hi - lo));
		n = (size_t)(hi - off);
	}
	bz_cap_unlock(&ip->lock, &fs_inode_cap);
	bz_mutex_lock(&fs_ns_lock);
	fs_inode_put(fs, ip);
	bz_mutex_unlock(&fs_ns_lock);
	*ret_n = n;
}

/* ---- the notifier thread ---- */

void fs_wb_inval(struct fs *fs, struct fs_inode *ip, uint64_t off, uint64_t end)
{
	if (!fs->wb || !fs->se)
		return;
	if (ip->inval_queued) {
		ip->inval_off = BZ_MIN(ip->inval_off, off);
		ip->inval_end = BZ_MAX(ip->inval_end, end);
		return;
	}
	ip->inval_queued = true;
	ip->inval_off = off;
	ip->inval_end = end;
	ip->inval_next = NULL;
	if (fs->inval_tail)
		fs->inval_tail->inval_next = ip;
	else
		fs->inval_head = ip;
	fs->inval_tail = ip;
	pthread_cond_signal(&fs->wb->cond);
}

void fs_wb_forget(struct fs *fs, struct fs_inode *ip)
{
	struct fs_inode **pp, *prev = NULL;

	if (!ip->inval_queued)
		return; /* (never busy: the notifier holds a reference meanwhile) */
	for (pp = &fs->inval_head; *pp; prev = *pp, pp = &(*pp)->inval_next) {
		if (*pp == ip) {
			*pp = ip->inval_next;
			if (fs->inval_tail == ip)
				fs->inval_tail = prev;
			break;
		}
	}
	ip->inval_queued = false;
}

static void *notifier_main(void *arg)
{
	struct fs *fs = arg;
	struct fs_wb *wb = fs->wb;

	bz_mutex_lock(&fs_ns_lock);
	for (;;) {
		struct fs_inode *ip;
		uint64_t ino, off, end;
		int r;

		while (!fs->inval_head && !wb->stop)
			bz_cond_wait(&wb->cond, &fs_ns_lock);
		if (wb->stop)
			break;
		ip = fs->inval_head;
		fs->inval_head = ip->inval_next;
		if (!fs->inval_tail || fs->inval_tail == ip)
			fs->inval_tail = NULL;
		ip->inval_queued = false;
		ip->inval_busy = true;
		ip->refs++; /* the entry stays while the kernel is told */
		ino = ip->ino;
		off = ip->inval_off;
		end = ip->inval_end;
		bz_mutex_unlock(&fs_ns_lock);
		/* pages [off, end) and the attributes; -ENOENT: not cached */
		r = fuse_lowlevel_notify_inval_inode(fs->se, ino, (off_t)off,
						     end == UINT64_MAX || end - off > INT64_MAX ? 0 : (off_t)(end - off));
		if (r < 0 && r != -ENOENT && r != -ENOTCONN)
			bz_warn("inode %llu: invalidating the kernel cache: %s", (unsigned long long)ino,
				strerror(-r));
		else
			FS_COUNT(fs, invalidations, 1);
		bz_mutex_lock(&fs_ns_lock);
		ip->inval_busy = false;
		pthread_cond_broadcast(&wb->done);
		fs_inode_put(fs, ip);
	}
	bz_mutex_unlock(&fs_ns_lock);
	return NULL;
}

void fs_wb_inval_wait(struct fs *fs, struct fs_inode *ip)
{
	while (fs->wb && !fs->wb->stop && (ip->inval_queued || ip->inval_busy))
		bz_cond_wait(&fs->wb->done, &fs_ns_lock);
}

/* ---- the catch-up thread ---- */

/* How often the catch-up thread fetches what the kernel caches for files
 * open for writing: half the sync interval, between 10 ms and 500 ms. */
static uint64_t catchup_period_ns(const struct fs *fs)
{
	uint64_t ms = fs->opts.pipe.sync_interval_ms / 2;

	return BZ_MIN(BZ_MAX(ms, 10ull), 500ull) * 1000000ull;
}

static void *catchup_main(void *arg)
{
	struct fs *fs = arg;
	struct fs_wb *wb = fs->wb;
	uint64_t period = catchup_period_ns(fs);

	(void)pthread_setname_np(pthread_self(), "bz-catchup");
	bz_mutex_lock(&fs_ns_lock);
	while (!wb->stop) {
		(void)bz_cond_timedwait(&wb->ccond, &fs_ns_lock, bz_now_ns() + period);
		if (wb->stop)
			break;
		bz_mutex_unlock(&fs_ns_lock);
		fs_catch_up_all(fs, "the periodic catch-up", period);
		bz_mutex_lock(&fs_ns_lock);
	}
	bz_mutex_unlock(&fs_ns_lock);
	return NULL;
}

int fs_wb_start(struct fs *fs)
{
	struct fs_wb *wb;
	int r;

	if (fs->opts.read_only)
		return 0; /* nothing is ever refused */
	wb = calloc(1, sizeof(*wb));
	if (!wb)
		return -ENOMEM;
	pthread_cond_init(&wb->cond, NULL);
	pthread_cond_init(&wb->done, NULL);
	bz_cond_init(&wb->ccond);
	bz_mutex_init(&wb->mu);
	bz_mutex_init(&wb->omu);
	bz_cond_init(&wb->rcond);
	fs->wb = wb;
	r = -pthread_create(&wb->th, NULL, notifier_main, fs);
	if (r < 0) {
		fs->wb = NULL;
		pthread_cond_destroy(&wb->cond);
		pthread_cond_destroy(&wb->done);
		pthread_cond_destroy(&wb->ccond);
		pthread_cond_destroy(&wb->rcond);
		bz_mutex_destroy(&wb->mu);
		bz_mutex_destroy(&wb->omu);
		free(wb);
		return r;
	}
	wb->started = true;
	if (fs->opts.writeback_cache) {
		r = -pthread_create(&wb->cth, NULL, catchup_main, fs);
		if (r < 0) {
			fs_wb_stop(fs);
			return r;
		}
		wb->cstarted = true;
	}
	return 0;
}

void fs_wb_stop(struct fs *fs)
{
	struct fs_wb *wb = fs->wb;

	if (!wb)
		return;
	bz_mutex_lock(&fs_ns_lock);
	wb->stop = true;
	pthread_cond_signal(&wb->cond);
	pthread_cond_signal(&wb->ccond);
	pthread_cond_broadcast(&wb->done);
	bz_mutex_unlock(&fs_ns_lock);
	if (wb->started)
		pthread_join(wb->th, NULL);
	if (wb->cstarted)
		pthread_join(wb->cth, NULL);
	bz_mutex_lock(&fs_ns_lock);
	fs->inval_head = fs->inval_tail = NULL; /* the table is freed next */
	fs->wb = NULL;
	bz_mutex_unlock(&fs_ns_lock);
	pthread_cond_destroy(&wb->cond);
	pthread_cond_destroy(&wb->done);
	pthread_cond_destroy(&wb->ccond);
	pthread_cond_destroy(&wb->rcond);
	bz_mutex_destroy(&wb->mu);
	bz_mutex_destroy(&wb->omu);
	free(wb);
}

/* ---- retrieve ---- */

#define RETRIEVE_POLL_NS (100ull * 1000 * 1000)

int fs_wb_retrieve(struct fs *fs, uint64_t ino, uint64_t off, char *buf, size_t len, size_t *ret_n)
{
	struct fs_wb *wb = fs->wb;
	struct rwait w = {.buf = buf, .cap = len};
	struct rwait **pp;
	int r;

	if (!wb || !fs->se)
		return -EOPNOTSUPP;
	bz_cap_lock(&wb->mu, &wb_cap);
	w.next = wb->waiters;
	wb->waiters = &w;
	bz_cap_unlock(&wb->mu, &wb_cap);
	r = fuse_lowlevel_notify_retrieve(fs->se, ino, len, (off_t)off, &w);
	bz_cap_lock(&wb->mu, &wb_cap);
	/* The reply comes on another session thread; the poll only notices an
	 * unmount (the kernel answers every retrieve it accepted). */
	while (r == 0 && !w.done) {
		if (fuse_session_exited(fs->se)) {
			r = -ENOTCONN;
			break;
		}
		(void)bz_cap_cond_timedwait(&wb->rcond, &wb->mu, &wb_cap, bz_now_ns() + RETRIEVE_POLL_NS);
	}
	for (pp = &wb->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == &w) {
			*pp = w.next;
			break;
		}
	}
	bz_cap_unlock(&wb->mu, &wb_cap);
	if (r == -ENOENT) { /* the kernel does not cache the inode: nothing dirty */
		w.got = 0;
		r = 0;
	} else if (r < 0 && r != -ENOTCONN) {
		static int warned; /* __atomic */
		if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
			bz_warn("the kernel refused a cache retrieve (%s): truncates are judged by the "
				"daemon's size only", strerror(-r));
		r = -EOPNOTSUPP; /* callers go on without it */
	}
	if (r == 0)
		*ret_n = w.got;
	bz_debug("retrieve inode %llu at %llu: %d, %zu bytes", (unsigned long long)ino, (unsigned long long)off, r,
		 w.got);
	return r;
}

void fs_wb_retrieve_reply(fuse_req_t req, void *cookie, fuse_ino_t ino, off_t offset, struct fuse_bufvec *bufv)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_wb *wb = fs->wb;

	(void)ino;
	(void)offset;
	if (wb) {
		bz_cap_lock(&wb->mu, &wb_cap);
		for (struct rwait *w = wb->waiters; w; w = w->next) {
			if (w == cookie) {
				struct fuse_bufvec dst = FUSE_BUFVEC_INIT(w->cap);
				ssize_t n;

				dst.buf[0].mem = w->buf;
				n = fuse_buf_copy(&dst, bufv, 0);
				w->got = n > 0 ? (size_t)n : 0;
				w->done = true;
				pthread_cond_broadcast(&wb->rcond);
				break;
			}
		}
		bz_cap_unlock(&wb->mu, &wb_cap);
	}
	fuse_reply_none(req);
}
