/* store.c — the PageStore: open, create, recovery, close, the WAL-facing
 * API (store_wal_append/sync, store_apply), store_space and store_stats.
 * The full specification (precise enough for a second implementation) is
 * docs/FORMAT.md ("The PageStore and recovery"); the comments at the top of
 * the store*.c files are the summary a reader of the code needs:
 *
 *   store_int.h    struct store and its parts, constants, THREADS AND LOCKS
 *                  (the lock order and which lock guards which field)
 *   store.c        this file: lifecycle, WAL-facing API, shared helpers
 *                  (st_vec_*, st_set_error)
 *   store_data.c   chunks (extents, pack pages), page allocation and
 *                  release, the per-file index (ftab), applying batches
 *   store_ckpt.c   superblocks, the namespace checkpoint stream, free
 *                  extents, giving store.db space back, store_checkpoint
 *   freemap.c      the extent sets (free, pending)
 *   store_read.c   the read path (store_read, lazy index loading, zstd
 *                  context pool) and the [any] queries
 *   store_check.c  offline tools: superblock dump, page scan, per-file
 *                  records, store_check, store_diagnose
 *
 * FILES. "lock" (vfs_lock'ed while the store is open; shared by read-only
 * opens, which may also run without it on read-only media), "store.db" (pages,
 * see pager.c for the 48-byte page header) and the WAL segments (wal.c).
 *
 * CREATION (store_create, only when store.db is missing and no segment has a
 * header). The WAL is sized from the free space unless the caller set the
 * segment size (wal_auto_segment), checked to fit before anything is
 * written, then made, then store.db.tmp, renamed to store.db. A failure
 * removes exactly the files this creation made (create_undo), so a failed
 * creation neither fills the disk nor leaves anything but what an
 * interrupted creation leaves (header-less segments), which the next open
 * creates over.
 *
 * RECOVERY. Read pages 0 and 1; take the valid superblock with the highest
 * generation (none valid: -EUCLEAN, never reinitialize; a format 1 store:
 * -EPROTO, never modified). Load its namespace
 * chain. Allocation restarts at its high-water mark and free list, so pages
 * a crashed run wrote beyond them are simply reused. wal_replay from the
 * superblock's WAL position applies every committed batch with LSN >
 * checkpoint_lsn exactly like store_apply. Then (unless read-only) a
 * checkpoint. Replay applies each batch once onto the checkpointed state,
 * so a crash at any point of a checkpoint or of recovery recovers the same
 * logical state.
 *
 * LOCKS. See store_int.h. Mutators (store_wal_append, store_wal_sync,
 * store_apply, store_checkpoint) run on the one commit thread; applying a
 * batch (st_apply_batch) takes s->lock exclusive; the WAL calls and fsyncs
 * hold no store lock. store_space and store_stats read [commit] fields
 * with __atomic; store_stats takes s->lock shared only for the byte
 * counters it guards.
 *
 * STATES. opening (recovery: replay, then checkpoint) -> ready -> closed;
 * any write-path failure -> error (sticky: mutators return -EIO, close does
 * not checkpoint). read_only stores stay in ready without ever writing.
 */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

int st_vec_push(struct u64vec *v, uint64_t x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		uint64_t *p = realloc(v->v, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		v->v = p;
		v->cap = cap;
	}
	v->v[v->n++] = x;
	return 0;
}

void st_vec_free(struct u64vec *v)
{
	free(v->v);
	v->v = NULL;
	v->n = v->cap = 0;
}

/* Enters the sticky error state (logs the first cause only). */
int st_set_error(struct store *s, int r, const char *what)
{
	int expected = 0;
	if (r >= 0)
		r = -EIO;
	if (__atomic_compare_exchange_n(&s->error, &expected, -EIO, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		s->cause = r;
		bz_err("store: %s failed (%s); the store refuses further writes", what, strerror(-r));
	}
	return -EIO;
}

/* ------------------------------------------------------------------ */
/* open / close                                                        */

void store_opts_default(struct store_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->wal_segment_bytes = 0; /* 0: sized from the free space at creation */
	o->wal_segments = 4;
	o->checkpoint_bytes = 0; /* 0: half of the log */
	o->cache_bytes = 32ull << 20;
	o->chunk_bytes = 256u << 10;
	o->zstd_level = BZ_ZSTD_LEVEL_DEFAULT;
	o->create = true;
}

/* A new store's WAL when the caller left wal_segment_bytes 0: the largest
 * power of two from WAL_AUTO_MIN to WAL_AUTO_MAX whose `segments` segments
 * take at most 1/WAL_AUTO_SHARE of the space available to the store (never
 * less than WAL_AUTO_MIN). The minimum is far above wal.c's (64 KiB) and
 * holds the largest batch the default pipeline seals (batch_bytes 1 MiB +
 * a 256 KiB record + headers): pipe_start clamps any larger options to the
 * segment size of the store as opened (fit_wal_entry), not to a default. */
#define WAL_AUTO_MIN (4ull << 20)
#define WAL_AUTO_MAX (64ull << 20)
#define WAL_AUTO_SHARE 8u

static uint64_t wal_auto_segment(uint64_t avail, uint32_t segments)
{
	uint64_t seg = WAL_AUTO_MAX;

	while (seg > WAL_AUTO_MIN && seg * segments > avail / WAL_AUTO_SHARE)
		seg /= 2;
	return seg;
}

/* Removes what a failed store_create made (never a file that was there
 * before): store.db first and durably (it names the WAL), then store.db.tmp
 * and the segments. Whatever a crash leaves of it is no store.db and
 * segments without a header: an interrupted creation, created over by the
 * next open (refuse_orphan_wal). */
static int create_undo(struct vfs *v, uint32_t segments, const bool *created, bool made_db)
{
	int r = 0, u;

	if (made_db) {
		u = vfs_unlink(v, DB_NAME);
		if (u == 0)
			u = vfs_sync_dir(v);
		if (u < 0 && u != -ENOENT)
			r = u;
	}
	u = vfs_unlink(v, DB_TMP_NAME);
	if (u < 0 && u != -ENOENT && r == 0)
		r = u;
	u = created ? wal_unlink_created(v, segments, created) : 0;
	if (u < 0 && r == 0)
		r = u;
	u = vfs_sync_dir(v);
	if (u < 0 && r == 0)
		r = u;
	return r;
}

/* pi: what the directory holds of a log (refuse_orphan_wal's probe: only
 * segments without a header, which this creation overwrites). */
static int store_create(const struct store_opts *o, const struct wal_probe_info *pi)
{
	struct wal_opts wo = {.segment_bytes = o->wal_segment_bytes, .segments = o->wal_segments};
	struct vfs_file *f = NULL;
	struct store_sb sb = {0};
	struct ns *ns = NULL;
	bool *created = NULL, made_db = false;
	uint64_t free_b = 0, total_b = 0, avail = UINT64_MAX, need;
	uint8_t page[PAGER_PAGE_SIZE];
	int r;

	if (!wo.segments)
		wo.segments = 4;
	/* the space the store can take: the disk's free space, and the
	 * segments of an interrupted creation (overwritten in place) */
	r = vfs_space(o->vfs, &free_b, &total_b);
	if (r == 0)
		avail = free_b + pi->bytes;
	else
		bz_warn("store: the free space of the store's disk is unknown (%s): sizing the WAL for a large disk",
			strerror(-r));
	if (!wo.segment_bytes)
		wo.segment_bytes = wal_auto_segment(avail, wo.segments);
	need = wo.segment_bytes * wo.segments; /* and store.db's two pages, within the slack */
	r = -ENOMEM;
	created = calloc(wo.segments, sizeof(*created));
	if (!created)
		goto out;
	/* Nothing is written that cannot fit: the WAL is zero-filled whole */
	if (need + 2 * PAGER_PAGE_SIZE > avail) {
		r = -ENOSPC;
		goto out;
	}
	r = vfs_unlink(o->vfs, DB_TMP_NAME);
	if (r < 0 && r != -ENOENT)
		goto out;
	r = wal_create(o->vfs, &wo, &sb.wal_pos, created);
	if (r < 0)
		goto out;
	r = ns_new(&ns);
	if (r < 0)
		goto out;
	sb.wal_o = wo;
	sb.next_ino = ns_next_ino(ns);
	sb.hwm = 2;
	r = vfs_open(o->vfs, DB_TMP_NAME, VFS_O_RDWR | VFS_O_CREAT, &f);
	if (r < 0)
		goto out;
	for (sb.gen = 0; sb.gen < 2; sb.gen++) {
		st_sb_encode(&sb, page);
		r = vfs_pwrite(f, page, PAGER_PAGE_SIZE, sb.gen * PAGER_PAGE_SIZE);
		if (r < 0)
			goto out;
	}
	r = vfs_fsync(f);
	if (r < 0)
		goto out;
	vfs_close(f);
	f = NULL;
	r = vfs_rename(o->vfs, DB_TMP_NAME, DB_NAME);
	if (r < 0)
		goto out;
	made_db = true;
	r = vfs_sync_dir(o->vfs);
	if (r < 0)
		goto out;
	bz_info("store: created a new store (WAL %u x %llu MiB%s, %llu MiB free before)", wo.segments,
		(unsigned long long)(wo.segment_bytes >> 20), o->wal_segment_bytes ? "" : ", sized from the free space",
		(unsigned long long)(free_b >> 20));
out:
	vfs_close(f);
	f = NULL;
	if (r < 0) {
		int u = create_undo(o->vfs, wo.segments, created, made_db);
		(void)vfs_space(o->vfs, &free_b, &total_b);
		bool mib = wo.segment_bytes % (1u << 20) == 0;
		bz_err("store: creating a new store failed: %s (it needs %llu MiB for the WAL, %u x %llu %s; %llu MiB "
		       "free%s)%s",
		       strerror(-r), (unsigned long long)((need + (1u << 20) - 1) >> 20), wo.segments,
		       (unsigned long long)(wo.segment_bytes >> (mib ? 20 : 10)), mib ? "MiB" : "KiB",
		       (unsigned long long)(free_b >> 20),
		       o->wal_segment_bytes ? "; the segment size was set by the caller" : "",
		       u < 0 ? "; removing the files it made failed too: the next open creates over them"
			     : "; the files it made are removed");
	}
	free(created);
	ns_free(ns);
	return r;
}

/* store.db is missing. A log whose segments carry a valid header has held
 * committed batches (a header is written with a segment's first batch), and
 * store.db is what names where they start and holds everything checkpointed
 * before them: creating a new store would zero that log. Refuse (-EUCLEAN)
 * and name the files. Segments without any valid header are what a creation
 * interrupted before store.db was renamed into place leaves: recreate. */
static int refuse_orphan_wal(struct vfs *v, struct wal_probe_info *ret_pi)
{
	struct wal_probe_info pi = {0};
	int r = wal_probe_dir(v, &pi);

	if (r < 0) {
		bz_err("store: store.db is missing and the WAL segments cannot be inspected: %s", strerror(-r));
		goto out;
	}
	if (pi.with_header == 0) {
		if (pi.files)
			bz_warn("store: store.db is missing; the %u WAL segment(s) hold no batch (an interrupted "
				  "creation): creating a new store",
				  pi.files);
		*ret_pi = pi;
		goto out;
	}
	bz_err("store: store.db is missing but the WAL segments wal.%03u..wal.%03u (%u file(s), %u written) hold "
	       "committed batches: refusing to create a new store over them, which would destroy that data. "
	       "Restore store.db into the store directory, or move the wal.* files away to start an empty store",
	       pi.first, pi.last, pi.files, pi.with_header);
	r = -EUCLEAN;
out:
	return r;
}

static int replay_cb(void *arg, uint64_t lsn, int64_t time_ns, const uint8_t *payload, size_t len)
{
	struct store *s = arg;
	int r = st_apply_batch(s, lsn, time_ns, payload, len);
	if (r == 0) {
		s->last_appended = lsn;
		st_set_u64(&s->replayed, s->replayed + 1);
	}
	return r;
}

static void store_free(struct store *s) NO_TSA
{
	if (!s)
		return;
	wal_close(s->wal);
	pager_free(s->pager);
	vfs_close(s->db_f);
	vfs_close(s->lock_f);
	ns_free(s->ns);
	st_ftab_clear(&s->files);
	st_ptab_free(&s->packs);
	st_ptab_free(&s->kdirty);
	free(s->open_page);
	free(s->run);
	fm_free(&s->free);
	fm_free(&s->pending);
	st_vec_free(&s->chain);
	st_nst_close(s);
	free(s->rheap);
	st_vec_free(&s->dead);
	for (unsigned i = 0; i < s->n_dctx; i++)
		ZSTD_freeDCtx(s->dctx_pool[i]);
	st_oc_fini(s);
	bz_mutex_destroy(&s->dctx_mu);
	bz_rwlock_destroy(&s->lock);
	free(s);
}

static int read_superblocks(struct store *s, struct store_sb *ret_sb)
{
	uint8_t page[PAGER_PAGE_SIZE];
	struct store_sb sb[2];
	bool ok[2] = {false, false}, v1 = false;
	int r = 0;

	for (unsigned i = 0; i < 2; i++) {
		size_t n = 0;
		const char *why = "short file";
		r = vfs_pread(s->db_f, page, PAGER_PAGE_SIZE, i * PAGER_PAGE_SIZE, &n);
		if (r < 0) {
			bz_err("store.db: reading superblock %u failed: %s", i, strerror(-r));
			goto out;
		}
		int d = n == PAGER_PAGE_SIZE ? st_sb_decode(page, i, &sb[i], &why) : -EBADMSG;
		if (d == 0)
			ok[i] = true;
		else if (d == -EPROTO)
			v1 = true;
		else
			bz_warn("store.db: superblock %u is invalid (%s)", i, why);
	}
	if (v1 && !(ok[0] && ok[1])) {
		/* A format 1 store (never modified: nothing is written before
		 * the superblocks are read). A store with one format 2
		 * superblock and one format 1 superblock cannot exist either:
		 * format 2 stores are created with two format 2 superblocks. */
		bz_err("store: store.db is format 1 (blazefs <= session 2); this blazefs reads formats 2 to 6: copy the "
		       "files out with the old binary");
		r = -EPROTO;
		goto out;
	}
	if (!ok[0] && !ok[1]) {
		bz_err("store.db: no valid superblock: not a blazefs store, or corrupt; refusing to open "
		       "(it is never reinitialized)");
		r = -EUCLEAN;
		goto out;
	}
	int pick = !ok[0] ? 1 : !ok[1] ? 0 : (sb[1].gen > sb[0].gen ? 1 : 0);
	*ret_sb = sb[pick];
	r = 0;
out:
	return r;
}

int store_open(const struct store_opts *o, struct store **ret_store)
{
	struct store *s = NULL;
	struct store_sb sb;
	uint64_t last = 0;
	int r = -EINVAL;

	if (!o || !o->vfs || (o->chunk_bytes && (o->chunk_bytes < 512 || o->chunk_bytes > (1u << 20) ||
						 (o->chunk_bytes & (o->chunk_bytes - 1)))) ||
	    o->zstd_level < ZSTD_minCLevel() || o->zstd_level > ZSTD_maxCLevel())
		goto out;
	r = -ENOMEM;
	s = calloc(1, sizeof(*s));
	if (!s)
		goto out;
	bz_rwlock_init_writer_first(&s->lock);
	bz_mutex_init(&s->dctx_mu);
	s->vfs = o->vfs;
	s->read_only = o->read_only;

	/* Read-only opens do not create the lock file unless it is missing
	 * (a crash image, a fresh copy) and can still lock an unwritable one,
	 * with a shared lock: read-only users coexist, a writer is excluded.
	 * On read-only media where it is missing and cannot be created they go
	 * on without a lock: nobody can write that store either. */
	r = vfs_open(o->vfs, "lock", s->read_only ? VFS_O_RDONLY : VFS_O_RDWR | VFS_O_CREAT, &s->lock_f);
	if (r == -ENOENT && s->read_only) {
		r = vfs_open(o->vfs, "lock", VFS_O_RDWR | VFS_O_CREAT, &s->lock_f);
		if (r == -EROFS || r == -EACCES || r == -EPERM) {
			bz_info("store: no lock file and it cannot be created (%s): opening read-only without a lock",
				strerror(-r));
			s->lock_f = NULL;
			r = 0;
		}
	}
	if (r < 0) {
		bz_err("store: cannot open the lock file: %s", strerror(-r));
		goto out;
	}
	r = !s->lock_f ? 0 : s->read_only ? vfs_lock_shared(s->lock_f) : vfs_lock(s->lock_f);
	if (r == -EWOULDBLOCK || r == -EAGAIN) {
		bz_err("store: the store is in use by another process (its lock file is held)");
		r = -EBUSY;
		goto out;
	}
	if (r < 0)
		goto out;

	r = vfs_open(o->vfs, DB_NAME, s->read_only ? VFS_O_RDONLY : VFS_O_RDWR, &s->db_f);
	if (r == -ENOENT && o->create && !s->read_only) {
		struct wal_probe_info pi;
		r = refuse_orphan_wal(o->vfs, &pi);
		if (r == 0)
			r = store_create(o, &pi);
		if (r < 0)
			goto out;
		r = vfs_open(o->vfs, DB_NAME, VFS_O_RDWR, &s->db_f);
	}
	if (r < 0) {
		bz_err("store: cannot open store.db: %s", strerror(-r));
		goto out;
	}
	r = read_superblocks(s, &sb);
	if (r < 0)
		goto out;
	s->sb = sb;
	s->hwm = sb.hwm;
	s->wal_o = sb.wal_o;
	s->data_pages = sb.data_pages;
	s->checkpoint_lsn = sb.checkpoint_lsn;
	s->checkpoints = sb.checkpoints;
	s->last_applied = s->last_appended = sb.checkpoint_lsn;
	s->index_budget = BZ_MAX(o->cache_bytes / 2 / sizeof(struct ient), (uint64_t)1024);
	s->chunk_bytes = o->chunk_bytes ? o->chunk_bytes : 256u << 10;
	s->zstd_level = o->zstd_level;
	s->open_budget = o->open_chunk_budget ? o->open_chunk_budget : BZ_MAX(o->cache_bytes / 4, 16ull << 20);
	r = st_oc_init(s);
	if (r < 0)
		goto out;
	s->checkpoint_bytes = o->checkpoint_bytes ? o->checkpoint_bytes
						  : sb.wal_o.segment_bytes * sb.wal_o.segments / 2;

	r = pager_new(s->db_f, o->cache_bytes, &s->pager);
	if (r < 0)
		goto out;
	if (s->read_only)
		pager_set_volatile(s->pager);
	bz_cap_wrlock(&s->lock, &store_cap);
	s->pk_done = true; /* format 5 says otherwise (st_nst_attach) */
	r = ns_new(&s->ns);
	if (r == 0) {
		s->open_page = calloc(1, PAGER_PAGE_SIZE);
		s->run = malloc((size_t)RUN_PAGES * PAGER_PAGE_SIZE);
		if (!s->open_page || !s->run)
			r = -ENOMEM;
	}
	bz_cap_wrunlock(&s->lock, &store_cap);
	if (r < 0)
		goto out;
	r = st_ns_load_chain(s, &sb);
	if (r == 0)
		r = st_nst_open(s, &sb);
	if (r == 0 && sb.format >= SB_VERSION_5)
		r = st_nst_attach(s, &sb); /* formats 5 and 6: loaded on demand */
	else if (r == 0 && sb.format >= SB_VERSION_3) {
		r = st_nst_load(s, &sb);
		/* every 'I' record is written again with the directories'
		 * parents (format 5) by the first checkpoint */
		bz_cap_wrlock(&s->lock, &store_cap);
		ns_dirty_set_all(s->ns);
		bz_cap_wrunlock(&s->lock, &store_cap);
	} else if (r == 0) {
		/* format 2: the stream held everything; the next checkpoint
		 * writes the trees (upgrade in place, docs/FORMAT.md §6a) */
		bz_cap_wrlock(&s->lock, &store_cap);
		ns_dirty_set_all(s->ns);
		bz_cap_wrunlock(&s->lock, &store_cap);
		s->kdirty_all = true;
	}
	if (r == 0 && sb.format < SB_VERSION)
		s->dirty = true; /* formats 2 to 5: the first checkpoint upgrades */
	if (r < 0)
		goto out;
	/* directories' parents now, not at the first op: the live view
	 * copies them (store_ns_backed) */
	bz_cap_wrlock(&s->lock, &store_cap);
	ns_fix_parents(s->ns);
	if (!ns_is_backed(s->ns) && s->pk_done) { /* formats 2 to 4: loaded whole */
		s->ld_phase = LD_DONE;
		__atomic_store_n(&s->ld_done, true, __ATOMIC_RELAXED);
	}
	bz_cap_wrunlock(&s->lock, &store_cap);
	s->ns_est = sb.ns_bytes;
	s->ns_est_base = sb.ns_bytes;
	st_set_u64(&s->n_free, s->free.n);
	st_set_u64(&s->n_reuse, s->free.n);

	r = s->read_only ? wal_open_ro(o->vfs, &s->wal_o, &s->wal) : wal_open(o->vfs, &s->wal_o, &s->wal);
	if (r < 0) {
		bz_err("store: opening the WAL failed: %s", strerror(-r));
		goto out;
	}
	s->replaying = true;
	r = wal_replay(s->wal, &sb.wal_pos, sb.checkpoint_lsn, replay_cb, s, &last);
	s->replaying = false;
	if (r < 0) {
		bz_err("store: WAL replay failed: %s", strerror(-r));
		goto out;
	}
	if (last > s->last_appended)
		s->last_appended = last;
	if (s->last_applied != s->last_appended) {
		/* batches the replay skipped cannot exist: wal_replay stops at gaps */
		bz_err("store: WAL replay ended at lsn %llu but applied %llu", (unsigned long long)last,
		       (unsigned long long)s->last_applied);
		r = -EUCLEAN;
		goto out;
	}
	st_set_u64(&s->wal_used, wal_used_since_checkpoint(s->wal));
	bz_info("store: opened at checkpoint %llu (lsn %llu), replayed %llu batches to lsn %llu",
		(unsigned long long)sb.gen, (unsigned long long)sb.checkpoint_lsn,
		(unsigned long long)s->replayed, (unsigned long long)s->last_applied);
	if (!s->read_only) {
		r = store_checkpoint(s);
		if (r < 0)
			goto out;
	}
	*ret_store = s;
	s = NULL;
	r = 0;
out:
	if (r < 0 && s && s->cause == -ENOSPC) {
		/* Recovery (replay, then a checkpoint) needs at most the reserve
		 * a mounted filesystem keeps free; something else filled the
		 * disk. Nothing was lost: the log and the durable checkpoint are
		 * untouched. Say so, and what to do. */
		uint64_t need = 0, spare = 0, free_b = 0, total_b = 0;
		store_space(s, &need, &spare);
		(void)vfs_space(s->vfs, &free_b, &total_b);
		bz_err("store: recovery ran out of disk space (%llu MiB free; its checkpoint needs about %llu MiB "
		       "more): the committed data is intact in the WAL; free space on the store's disk and open it "
		       "again (a read-only open needs no space)",
		       (unsigned long long)(free_b >> 20), (unsigned long long)(need >> 20) + 1);
		r = -ENOSPC;
	}
	store_free(s);
	return r;
}

int store_close(struct store *s)
{
	int r = 0;

	if (!s)
		return 0;
	if (!s->read_only && !st_load_error(s)) {
		/* The closing checkpoints clean and relocate (below), which wait
		 * for the whole namespace: when this mount deleted files (or a
		 * cleaning is due), what the background load has not loaded yet
		 * (format 5, a mount closed soon after it opened) is loaded now,
		 * O(files) once, so that an unmount gives their space back however
		 * soon it comes. */
		bz_cap_wrlock(&s->lock, &store_cap);
		if (s->drops || s->clean_due)
			r = st_ns_load_all(s);
		bz_cap_wrunlock(&s->lock, &store_cap);
		if (r == 0)
			r = store_checkpoint(s);
	}
	/* What that checkpoint released is free now: more give the space at
	 * the end of store.db back to the disk before it sits unmounted
	 * (docs/FORMAT.md §7): one moves a file or pack pages down into it
	 * (store_reloc.c) or its chain lower, the next cuts what they left. At
	 * most three: each is bounded, the rest waits for the next mount. */
	for (int i = 0; i < 3 && r == 0 && !s->read_only && st_tail_free(s); i++)
		r = store_checkpoint(s);
	store_free(s);
	return r;
}

/* ------------------------------------------------------------------ */
/* [commit] write path                                                 */

int store_wal_append(struct store *s, int64_t time_ns, const void *frames, size_t len, uint64_t *ret_lsn)
{
	uint64_t lsn = s->last_appended + 1;
	int r;

	if (st_load_error(s))
		return -EIO;
	if (s->read_only)
		return -EROFS;
	r = wal_append(s->wal, lsn, time_ns, frames, len);
	if (r < 0)
		return st_set_error(s, r, "WAL append");
	st_set_u64(&s->last_appended, lsn);
	st_set_u64(&s->wal_used, wal_used_since_checkpoint(s->wal));
	*ret_lsn = lsn;
	return 0;
}

bool store_wal_has_room(struct store *s, size_t len) { return wal_has_room(s->wal, len); }

uint64_t store_wal_max_payload(struct store *s) { return wal_max_payload(&s->wal_o); }
uint32_t store_chunk_bytes(const struct store *s) { return s->chunk_bytes; }

int store_wal_sync(struct store *s)
{
	int r;

	if (st_load_error(s))
		return -EIO;
	if (s->read_only)
		return -EROFS;
	r = wal_sync(s->wal);
	if (r < 0)
		return st_set_error(s, r, "WAL sync");
	return 0;
}

int store_apply(struct store *s, uint64_t lsn, int64_t time_ns, const void *frames, size_t len)
{
	if (st_load_error(s))
		return -EIO;
	if (s->read_only)
		return -EROFS;
	if (lsn > s->last_appended) {
		bz_err("store: apply of lsn %llu that was never appended", (unsigned long long)lsn);
		return -EINVAL;
	}
	return st_apply_batch(s, lsn, time_ns, frames, len);
}

bool store_read_only(const struct store *s) { return s->read_only; }

void store_space(struct store *s, uint64_t *ret_need, uint64_t *ret_spare)
{
	/* The next checkpoint writes the stream (counters, pack pages, free
	 * extents: at most 20 bytes each), the namespace trees' changed
	 * paths, the open chunks' tails into new pages while the durable
	 * chain stays allocated, after the run of full pack pages, the open
	 * page and an index page. Recovery needs no more: its replay rewrites
	 * pages the crashed run had allocated (the file already covers them)
	 * except data that was never flushed, which the caller's in-flight
	 * reserve covers, then makes this same checkpoint.
	 * Free pages are taken before the file grows: they count against the
	 * checkpoint's pages first, and what is left over ("spare") takes new
	 * data without growing the file. Data that takes free pages leaves the
	 * disk's free space untouched and lowers n_reuse (raising need or
	 * lowering spare by as much), so the sum stays true. */
	uint64_t bytes = st_get_u64(&s->ns_est) + 20 * st_get_u64(&s->n_free_ext) + 64;
	/* and the open chunks' tails (store_chunk.c oc_recount): a dirty
	 * buffer's bytes, a frame header and the rest of a page each; a clean
	 * buffer is not written again (counting every buffer's capacity held
	 * 21 MiB of the disk back after a cp -r of 8,000 files and the
	 * checkpoint that wrote their tails; now 0.3 MiB) */
	bytes += st_get_u64(&s->open_need);
	uint64_t pages = (bytes + PAGER_PAYLOAD - 1) / PAGER_PAYLOAD + RUN_PAGES + 2;
	/* and the namespace trees' flush (store_nstree.c: st_nst_estimate) */
	pages += st_get_u64(&s->tree_est);
	uint64_t reuse = st_get_u64(&s->n_reuse);

	*ret_need = (pages > reuse ? pages - reuse : 0) * PAGER_PAGE_SIZE;
	*ret_spare = (reuse > pages ? reuse - pages : 0) * PAGER_PAGE_SIZE;
}

bool store_need_checkpoint(struct store *s)
{
	/* Also when deleted files hold a quarter of store.db (at least 1 MiB):
	 * their space is reusable only after a checkpoint (FORMAT.md §7), so a
	 * rotating log reuses the previous file's space instead of growing. */
	uint64_t dead = st_get_u64(&s->dead_bytes);
	return !s->read_only && (st_get_u64(&s->wal_used) >= s->checkpoint_bytes ||
				 (dead >= (1u << 20) && dead >= st_get_u64(&s->hwm) * PAGER_PAGE_SIZE / 4));
}

bool store_checkpoint_would_free(struct store *s, uint64_t min_bytes)
{
	uint64_t ns = st_get_u64(&s->ns_est), nb = st_get_u64(&s->ns_est_base);
	uint64_t te = st_get_u64(&s->tree_est), tb = st_get_u64(&s->tree_est_base);
	uint64_t grown = (ns > nb ? ns - nb : 0) + (te > tb ? te - tb : 0) * PAGER_PAGE_SIZE;

	if (s->read_only)
		return false;
	return st_get_u64(&s->dead_bytes) > 0 || (min_bytes > 0 && grown >= min_bytes);
}

/* ------------------------------------------------------------------ */
/* statistics [any]                                                    */

void store_stats(struct store *s, struct store_stats *ret)
{
	struct pager_stats ps;

	memset(ret, 0, sizeof(*ret));
	ret->page_size = PAGER_PAGE_SIZE;
	pager_stats(s->pager, &ps);
	bz_cap_rdlock(&s->lock, &store_cap);
	ret->stored_bytes = s->stored_bytes;
	ret->logical_bytes = s->logical_bytes;
	bz_cap_rdunlock(&s->lock, &store_cap);
	ret->pages_total = __atomic_load_n(&s->hwm, __ATOMIC_RELAXED);
	ret->pages_free = st_get_u64(&s->n_free);
	ret->free_extents = st_get_u64(&s->n_free_ext);
	ret->pages_released = st_get_u64(&s->pages_released);
	ret->pack_pages = st_get_u64(&s->pack_pages);
	ret->pack_live_bytes = st_get_u64(&s->pack_live);
	ret->pages_cleaned = st_get_u64(&s->pages_cleaned);
	ret->chunks_sealed = st_get_u64(&s->chunks_sealed);
	ret->tails_written = st_get_u64(&s->tails_written);
	ret->chunks_split = st_get_u64(&s->chunks_split);
	ret->open_chunk_bytes = st_get_u64(&s->open_bytes);
	ret->pages_relocated = st_get_u64(&s->pages_relocated);
	ret->store_db_truncations = st_get_u64(&s->truncations);
	ret->data_pages = st_get_u64(&s->data_pages);
	ret->wal_bytes_since_checkpoint = st_get_u64(&s->wal_used);
	ret->checkpoints = st_get_u64(&s->checkpoints);
	ret->checkpoint_lsn = st_get_u64(&s->checkpoint_lsn);
	ret->last_lsn = st_get_u64(&s->last_applied);
	ret->cache_hits = ps.hits;
	ret->cache_misses = ps.misses;
	ret->checksum_errors = ps.checksum_errors + st_get_u64(&s->record_errors);
	ret->replayed_batches = st_get_u64(&s->replayed);
	store_space(s, &ret->space_need, &ret->space_spare);
	ret->error = st_load_error(s);
}
