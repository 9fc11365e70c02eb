/* store_int.h — private to storage/store*.c: the structures of the
 * PageStore, its constants and the functions its files share. Nothing
 * outside storage/store*.c includes this header (the public API is
 * store.h). Shared internal functions carry the st_ prefix; everything else
 * in the store*.c files is static or a public store_* function.
 *
 * STRUCTURES.
 *   struct store    one open store (fields below, each marked with what
 *                   guards it).
 *   struct sfile    the index state of one file that has data: sizes, the
 *                   head of its chain of full INDEX pages (newest first),
 *                   the entries of those pages once loaded (full[0, n_full)
 *                   iff loaded) and the tail of entries not yet in a full
 *                   page (n_tail < IDX_PER_PAGE after each apply).
 *   struct ient     one index entry: where one data record of a file lives.
 *                   Entries of a file are in increasing logical offset.
 *   struct ftab     open-addressing hash ino -> sfile (linear probing,
 *                   backward-shift deletion; cap is 0 or a power of two,
 *                   load <= 3/4).
 *   struct u64vec   a growable array of page numbers (free, pending, chain,
 *                   dead).
 *   struct store_sb a decoded superblock (layout: store_ckpt.c and
 *                   docs/FORMAT.md).
 *   struct rctx     one reader's scratch (store_read, store_file_records,
 *                   store_check): page, frame and raw buffers, a zstd
 *                   context borrowed from the store's pool.
 *
 * THREADS AND LOCKS. Mutators run on the one commit thread. Lock order:
 *     s->lock (rwlock over ns, files, open pack page, counters)
 *       -> pager cache_mu (leaf, inside pager.c)
 *       -> s->dctx_mu (leaf: the pool of readers' zstd contexts)
 * The commit thread never waits for a reader's CPU work: s->lock prefers
 * writers (a waiting apply goes before readers that arrive after it; never
 * take it shared twice in one thread), and store_read holds it shared only
 * to look up the index and COPY the frames it needs (from the open page,
 * the run, or pager pages) into its own buffer; it decodes, decompresses
 * and hash-checks them after dropping the lock. A read that needs a file's
 * full index reads the chain with no lock (index pages are immutable and a
 * live file's chain only grows at its head), then takes the lock exclusive
 * only to read the pages added meanwhile, install the entries and copy its
 * frames. Tools (store_file_records, store_check) still hold it for their
 * whole walk. The commit thread holds it exclusive while applying a batch
 * and while sealing the open page; shared while serializing a checkpoint;
 * not at all during fsyncs. Fields marked [commit] are touched only by the
 * commit thread (read with __atomic by store_stats); they need no lock.
 * The Clang thread-safety tokens store_cap (s->lock) and store_dctx_cap
 * (s->dctx_mu) are declared here so every store*.c file names the same
 * capability.
 */

#ifndef BZ_STORE_INT_H
#define BZ_STORE_INT_H

#include <zstd.h>

#include "btree.h"
#include "freemap.h"
#include "log.h"
#include "pager.h"
#include "record.h"
#include "store.h"
#include "tsa.h"
#include "wal.h"

BZ_CAP_DECLARE(store_cap); /* s->lock (tsa.h: capability tokens) */
BZ_CAP_DECLARE(store_dctx_cap); /* s->dctx_mu */

#define SB_MAGIC 0x42535a42u /* "BZSB" */
#define SB_VERSION 6u   /* format 6: split chunks (an extent's last partial page packed: ient.tpage) */
#define SB_VERSION_5 5u /* format 5: a directory's 'I' record names its parent: the namespace loads on demand */
#define SB_VERSION_4 4u /* format 4: pack pages' live bytes in a B+tree too (store_nstree.c); read, upgraded */
#define SB_VERSION_3 3u /* format 3: the namespace in B+trees, 'K' in the stream; read, upgraded in place */
#define SB_VERSION_2 2u /* format 2: the whole namespace in the stream; read, upgraded in place */
#define NS_MAGIC 0x534e5a42u /* "BZNS" */
#define NS_VERSION 6u /* 6 (format 4): counters and 'P' only; the rest is in the trees */
#define NS_VERSION_3 5u /* format 3's: counters, 'K' and 'P' */
#define NS_FLAG_CLEAN_DUE 1u /* version 6 flags: the last checkpoint's cleaning hit its bound */
#define NS_VERSION_2 4u /* format 2's: 4, the open chunk in 'F'; 3 is read too (stores of session 3) */
#define IDX_ENTRY_SIZE 40u
#define IDX_PER_PAGE (PAGER_PAYLOAD / IDX_ENTRY_SIZE) /* 101 */
#define DCTX_POOL 8u   /* zstd decompression contexts kept for readers */
#define PACK_CLEAN_MAX 16u /* pack pages cleaned per checkpoint at most */
#define RUN_PAGES 64u /* full pack pages written together (256 KiB) */
#define SPLIT_MAX (PAGER_PAYLOAD * 3 / 4) /* longest fragment a chunk's extent gives to a pack page */
#define NS_GROWTH_OP 64u     /* stream bytes an ns op adds beyond its payload (bound) */
#define NS_GROWTH_RECORD 64u /* stream bytes a data record adds: a tail entry, 'F' record share */
#define DB_NAME "store.db"
#define DB_TMP_NAME "store.db.tmp"

/* One index entry: where one chunk (one data record's frame) of a file
 * lives: an extent of npages pages starting at page, or (npages 0) packed
 * at pg_off in pack page `page`, or (tpage != 0, format 6) SPLIT: its
 * first npages * PAGER_PAYLOAD bytes in the extent's full pages and the
 * rest (the fragment, ient_frag_len) packed at pg_off in pack page tpage. */
struct ient {
	uint64_t off;       /* logical offset of the chunk's first raw byte */
	uint64_t page;      /* the extent's first page, or the pack page */
	uint32_t raw_len;   /* raw bytes of the chunk */
	uint32_t frame_len; /* header + stored payload */
	uint32_t npages;    /* extent pages; 0 = packed */
	uint32_t pg_off;    /* packed: payload offset of the frame in page; split: of the fragment in tpage; extent: 0 */
	uint64_t tpage;     /* split: the pack page of the fragment; 0 = not split */
};

/* A split chunk's bytes in its extent and in its fragment (0 unless split). */
static inline uint32_t ient_ext_len(const struct ient *e)
{
	return e->tpage ? e->npages * PAGER_PAYLOAD : e->frame_len;
}
static inline uint32_t ient_frag_len(const struct ient *e)
{
	return e->tpage ? e->frame_len - e->npages * PAGER_PAYLOAD : 0;
}
/* The pack page holding some of e's bytes (a packed frame's, a split
 * chunk's fragment's; 0 = none: a whole extent), and how many: e's share of
 * that page's live bytes. */
static inline uint64_t ient_pack_page(const struct ient *e)
{
	return e->tpage ? e->tpage : e->npages ? 0 : e->page;
}
static inline uint32_t ient_pack_len(const struct ient *e)
{
	return e->tpage ? ient_frag_len(e) : e->frame_len;
}

/* Per-file index state (files that have data). */
struct sfile {
	uint64_t ino;
	uint64_t stored_bytes, raw_bytes;
	uint64_t last_full; /* newest full index page, 0 = none */
	uint64_t n_full;    /* entries in full index pages */
	struct ient *full;  /* [0, n_full) when loaded */
	bool loaded;
	uint32_t n_tail, cap_tail;
	struct ient *tail;
	/* The OPEN CHUNK (store_chunk.c): the file's bytes [ostart, size)
	 * not in a sealed chunk. On disk, as of the last time it was written,
	 * they are the frame `otail` (has_otail; it covers exactly
	 * [ostart, ostart + otail.raw_len)); in memory, once loaded, obuf
	 * holds [ostart, ostart + olen). Without obuf, olen == otail.raw_len
	 * (or 0 and no otail). odirty: obuf holds bytes otail does not. */
	uint64_t ostart;
	uint32_t olen, ocap;
	uint8_t *obuf;
	bool has_otail, odirty;
	uint32_t oneed;  /* this file's share of s->open_need (oc_recount) */
	struct ient otail;
	uint32_t chunk;  /* the file's chunk_bytes, 0 = not resolved yet */
	int level;       /* the file's zstd level (resolved with chunk) */
	struct sfile *lru_prev, *lru_next; /* files with obuf, most recent first */
	uint32_t chain_gen; /* + 1 each time the index chain is rewritten (store_reloc.c) */
};

/* Open-addressing hash table ino -> sfile (linear probing, backward-shift
 * deletion). */
struct ftab {
	struct sfile **slot;
	size_t cap, n; /* cap: power of two or 0 */
};

/* Live bytes of each pack page: the frame bytes still named by an index
 * entry (tail, full index page, or a deleted file's chain not yet
 * released). Open-addressing hash pgno -> live (linear probing,
 * backward-shift deletion; cap 0 or a power of two, load <= 3/4). A page
 * is in the table iff its live bytes are > 0, except the open pack page.
 * Saved in the pack tree (store_nstree.c: what changed, at each
 * checkpoint), loaded at open, kept by replay. The same table type holds
 * s->kdirty, the pages whose count changed since the last checkpoint
 * (live unused). Both are [commit] state. */
struct ptab {
	uint64_t *pg;
	uint32_t *live;
	size_t cap, n;
};

struct rheap_ent {
	uint64_t top, ino; /* store_reloc.c: a file's highest page as last seen */
};

struct u64vec {
	uint64_t *v;
	size_t n, cap;
};

struct store_sb {
	uint64_t gen, checkpoint_lsn;
	struct wal_pos wal_pos;
	struct wal_opts wal_o;
	uint64_t next_ino, hwm;
	uint64_t ns_first, ns_pages, ns_bytes;
	uint64_t stored_bytes, logical_bytes, data_pages, checkpoints;
	uint32_t format;                  /* SB_VERSION, SB_VERSION_3 or SB_VERSION_2 (decoded) */
	uint64_t ino_root, ino_count;     /* format >= 3: the inode tree (0 = empty) */
	uint64_t dent_root, dent_count;   /* format >= 3: the directory entry tree */
	uint64_t pack_root, pack_count;   /* format 4: the pack tree (pages' live bytes) */
};

struct store {
	/* set at open, then read-only */
	struct vfs *vfs;
	struct vfs_file *lock_f, *db_f;
	struct pager *pager;
	struct wal *wal;
	struct wal_opts wal_o;
	uint64_t checkpoint_bytes;
	bool read_only;

	bz_rwlock lock;
	struct ns *ns GUARDED_BY(store_cap);
	struct ftab files GUARDED_BY(store_cap);
	uint8_t *open_page GUARDED_BY(store_cap); /* PAGER_PAGE_SIZE buffer */
	uint8_t *run GUARDED_BY(store_cap);       /* full pack pages not yet written: RUN_PAGES */
	uint64_t run_first GUARDED_BY(store_cap); /* page number of run[0] */
	uint32_t run_n GUARDED_BY(store_cap);     /* pages in run (consecutive numbers) */
	uint64_t open_pgno GUARDED_BY(store_cap); /* 0 = no open pack page */
	uint32_t open_used GUARDED_BY(store_cap);
	uint64_t open_lsn GUARDED_BY(store_cap);
	uint64_t stored_bytes GUARDED_BY(store_cap), logical_bytes GUARDED_BY(store_cap);
	uint64_t loaded_entries GUARDED_BY(store_cap); /* full index entries held in memory */
	uint64_t index_budget;                      /* max loaded_entries (set at open) */
	uint32_t chunk_bytes;                       /* default chunk size (set at open) */
	int zstd_level;                             /* default level of chunks (set at open) */

	/* [commit] */
	struct store_sb sb;        /* the durable superblock (newest) */
	uint64_t hwm;              /* next never-allocated page */
	uint64_t data_pages;       /* __atomic for store_stats */
	uint64_t last_appended;    /* __atomic */
	uint64_t last_applied;     /* __atomic */
	uint64_t checkpoints;      /* __atomic */
	uint64_t checkpoint_lsn;   /* __atomic */
	uint64_t replayed;         /* __atomic */
	uint64_t wal_used;         /* __atomic mirror of wal_used_since_checkpoint */
	uint64_t n_free;           /* __atomic mirror of free.pages + pending.pages */
	uint64_t n_reuse;          /* __atomic mirror of free.pages (reusable now) */
	uint64_t n_free_ext;       /* __atomic mirror of free.n + pending.n (extents) */
	uint64_t truncations;      /* __atomic: store.db given back to the disk */
	uint64_t pages_released;   /* __atomic: pages of deleted files and old chains freed */
	uint64_t dead_bytes;       /* __atomic: stored bytes of files deleted since the last checkpoint */
	uint64_t ns_est;           /* __atomic: bound on the next namespace stream's bytes */
	struct ptab packs;         /* live bytes per pack page (store_check reads it in tools) */
	struct ptab kdirty;        /* pack pages whose live bytes changed since the last checkpoint */
	bool kdirty_all;           /* kdirty overflowed or the store was format < 4: the next
				    * checkpoint writes the pack tree whole */
	bool pk_done;              /* the pack table holds every page (format 5: once the
				    * background load read the pack tree; st_pack_fetch) */
	uint64_t pack_live;        /* __atomic: sum of packs' live bytes */
	uint64_t pack_pages;       /* __atomic: packs.n */
	uint64_t pages_cleaned;    /* __atomic: pack pages emptied by cleaning (since open) */
	struct freemap free;       /* free page extents (reusable now) */
	struct freemap pending;    /* free once the next superblock is durable */
	struct u64vec chain;       /* pages of the durable namespace chain */
	struct btree *itree;       /* the namespace tables (store_nstree.c), as of */
	struct btree *dtree;       /* the last checkpoint + what it flushes */
	struct btree *ptree;       /* the pack tree (format 4) */
	int nst_err;               /* a tree page could not be released */
	/* The namespace loaded on demand (format 5, store_nstree.c "DEMAND
	 * LOADS"): the background load's place in the trees. */
	int ld_phase GUARDED_BY(store_cap);     /* LD_PACKS, LD_INODES, LD_ENTRIES, LD_DONE */
	uint64_t ld_next GUARDED_BY(store_cap); /* next inode / directory to visit */
	bool ld_done;                           /* __atomic: s->ns is complete */
	uint32_t ld_waiters;                    /* __atomic: threads waiting to load */
	uint64_t drops GUARDED_BY(store_cap);   /* files with data deleted since open */
	uint64_t tree_est;         /* __atomic: bound on the pages the next checkpoint's tree flush writes */
	/* __atomic: ns_est and tree_est right after the last checkpoint: what
	 * they grew by since is what the next one gives back to the reserve
	 * (store_checkpoint_would_free) */
	uint64_t ns_est_base, tree_est_base;
	bool reloc_valid;          /* relocation's candidate heap (store_reloc.c) */
	struct rheap_ent *rheap;
	size_t rheap_n, rheap_cap;
	struct u64vec dead;        /* index chain heads of deleted files (their
				    * tails' extents went to pending at once) */
	bz_mutex dctx_mu;          /* leaf lock: the readers' zstd contexts */
	ZSTD_DCtx *dctx_pool[DCTX_POOL] GUARDED_BY(store_dctx_cap);
	unsigned n_dctx GUARDED_BY(store_dctx_cap);
	bool dirty;                /* anything applied or allocated since the last checkpoint */
	bool clean_due;            /* a pack page fell under half live: the next checkpoint cleans */
	uint64_t strand_stuck;     /* a stranded pack page cleaning could not move (st_pack_stranded) */
	bool reloc_stuck;          /* the last relocation found nothing to move: not due until a change */
	uint64_t pages_relocated;  /* __atomic: extent pages moved down (since open) */
	int error;                 /* sticky, __atomic */
	int cause;                 /* the errno that set error (written once, by the setter) */
	uint64_t record_errors;    /* [any] __atomic: frames failing their checks */
	bool replaying;
	/* open chunks [commit]: buffers of files with obuf, LRU order */
	struct sfile *lru_head GUARDED_BY(store_cap), *lru_tail GUARDED_BY(store_cap);
	uint64_t open_bytes;       /* __atomic: sum of ocap of the buffers */
	uint64_t open_files;       /* __atomic: files with a buffer */
	/* __atomic: what the next checkpoint may write for the open chunks:
	 * the sum of sfile.oneed (store_chunk.c oc_recount) */
	uint64_t open_need;
	uint64_t open_budget;      /* max open_bytes before spilling (set at open) */
	uint64_t chunks_sealed;    /* __atomic: chunks sealed from open chunks (since open) */
	uint64_t tails_written;    /* __atomic: tail frames written (checkpoints, spills) */
	uint64_t chunks_split;     /* __atomic: chunks stored split (st_chunk_store) */
	ZSTD_CCtx *cctx;           /* [commit] compresses open chunks */
	ZSTD_DCtx *odctx;          /* [commit] decodes records into open chunks */
	uint8_t *cbuf;             /* [commit] scratch: one encoded chunk frame */
	size_t cbuf_cap;
};

/* Per-store_read scratch: the last data page read (consecutive small
 * records share pages), frame/raw buffers reused across records, and a
 * zstd decompression context borrowed from the store's pool. */
struct rpart {
	struct ient e;     /* copied: the index may change once the lock is dropped */
	uint64_t from, to; /* file bytes wanted from this record */
	size_t at;         /* its frame's offset in rctx.frame */
	bool raw;          /* at holds the raw bytes [from, to) themselves (an open chunk's buffer) */
};

struct rctx {
	uint64_t pgno; /* page held in page[], 0 = none */
	struct pager_hdr h;
	uint8_t *frame, *raw;
	size_t frame_cap, raw_cap;
	size_t frame_len;        /* bytes of frames collected (store_read) */
	struct rpart *parts;     /* the records a store_read decodes, in order */
	size_t n_parts, cap_parts;
	ZSTD_DCtx *dctx;
	uint8_t page[PAGER_PAGE_SIZE];
};

/* [commit]/[any] counters: relaxed atomics (see struct store) */
static inline int st_load_error(const struct store *s) { return __atomic_load_n(&s->error, __ATOMIC_RELAXED); }
static inline void st_set_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint64_t st_get_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

/* store.c: shared helpers */
int st_vec_push(struct u64vec *v, uint64_t x);
void st_vec_free(struct u64vec *v);
int st_set_error(struct store *s, int r, const char *what);

/* store_data.c: file table, allocation, data stream, apply */
struct sfile *st_ftab_get(const struct ftab *t, uint64_t ino);
int st_ftab_put(struct ftab *t, struct sfile *f);
/* Room for n files without growing (a load sized from the superblock). */
int st_ftab_reserve(struct ftab *t, size_t n);
void st_sfile_free(struct sfile *f);
void st_ftab_clear(struct ftab *t);
int st_sfile_tail_push(struct sfile *f, const struct ient *e);
uint64_t st_page_alloc(struct store *s);
uint64_t st_extent_alloc(struct store *s, uint64_t n);
void st_free_mirror(struct store *s);
int st_release(struct store *s, uint64_t start, uint64_t n);
int st_release_entry(struct store *s, const struct ient *e);
int st_pack_live_add(struct store *s, uint64_t pg, uint32_t n);
uint32_t st_pack_live_get(const struct store *s, uint64_t pg);
int st_pack_closed(struct store *s, uint64_t pg);
int st_pack_clean(struct store *s, uint64_t lsn) REQUIRES(store_cap);
size_t st_pack_stranded(const struct store *s, uint64_t *ret, size_t max) NO_TSA;
void st_ptab_free(struct ptab *t);
void st_pack_dirty_clear(struct store *s);
int st_pack_dirty_each(struct store *s, int (*fn)(void *arg, uint64_t pg), void *arg);
void st_index_entry_decode(const uint8_t *p, struct ient *e);
int st_run_flush(struct store *s) REQUIRES(store_cap);
int st_data_page_flush(struct store *s, uint64_t next) REQUIRES(store_cap);
void st_sfile_unload(struct store *s, struct sfile *f) REQUIRES(store_cap);
int st_apply_batch(struct store *s, uint64_t lsn, int64_t time_ns, const uint8_t *frames, size_t len);
int st_chunk_store(struct store *s, uint64_t lsn, const uint8_t *frame, size_t len, struct ient *e)
	REQUIRES(store_cap);
int st_index_add(struct store *s, struct sfile *f, uint64_t lsn, const struct ient *e) REQUIRES(store_cap);
int st_index_page_write(struct store *s, uint64_t lsn, const struct ient *e, uint32_t n, uint64_t next,
			uint64_t *ret_pg);
int st_extent_write(struct store *s, uint64_t lsn, const uint8_t *frame, size_t len, struct ient *e);
int st_frag_move(struct store *s, uint64_t lsn, struct ient *e, const uint8_t *frag) REQUIRES(store_cap);

/* store_reloc.c: moving live chunks off the end of store.db */
int st_relocate(struct store *s, uint64_t lsn) REQUIRES(store_cap);
bool st_reloc_due(const struct store *s) NO_TSA;
void st_reloc_fold(struct store *s) NO_TSA;
void st_reloc_seed(struct store *s) NO_TSA;
void st_reloc_note(struct store *s, const struct sfile *f) NO_TSA;
int st_clean_move(struct store *s, uint64_t lsn, uint64_t ino, struct ient *e, struct rctx *x) REQUIRES(store_cap);

/* store_chunk.c: the open chunk of each file */
int st_oc_append(struct store *s, struct sfile *f, uint64_t lsn, const struct rec_hdr *h, const uint8_t *frame,
		 size_t frame_len, const uint8_t *payload) REQUIRES(store_cap);
int st_oc_seal(struct store *s, struct sfile *f, uint64_t lsn) REQUIRES(store_cap);
int st_oc_write_tails(struct store *s, uint64_t lsn) REQUIRES(store_cap);
int st_oc_drop(struct store *s, struct sfile *f) REQUIRES(store_cap);
void st_oc_resolve(struct store *s, struct sfile *f) REQUIRES(store_cap);
int st_oc_init(struct store *s);
void st_oc_fini(struct store *s);

/* store_nstree.c: the namespace tables in B+trees (format 3) */
int st_nst_open(struct store *s, const struct store_sb *sb) NO_TSA;
int st_nst_load(struct store *s, const struct store_sb *sb) NO_TSA;
int st_nst_update(struct store *s, uint64_t lsn, struct store_sb *sb) REQUIRES_SHARED(store_cap);
void st_nst_close(struct store *s);
void st_nst_io(struct store *s, struct btree_io *io);
void st_nst_estimate(struct store *s) REQUIRES_SHARED(store_cap);
enum { LD_PACKS, LD_INODES, LD_ENTRIES, LD_DONE };
/* store_data.c: a pack page's count from the pack tree into the table
 * before it changes (format 5, pack table still loading); 0 or -errno. */
int st_pack_fetch(struct store *s, uint64_t pg);
/* A count read from the pack tree: into the table, marking nothing. */
int st_pack_put_loaded(struct store *s, uint64_t pg, uint32_t live);
bool st_pack_known(const struct store *s, uint64_t pg); /* in the table or changed since the checkpoint */
/* store_nstree.c: pack page pg's key, if the tree has one, into the table */
int st_pack_tree_get(struct store *s, uint64_t pg);
/* Format 5: s->ns becomes a namespace backed by the trees (before any
 * other thread sees the store). */
int st_nst_attach(struct store *s, const struct store_sb *sb) NO_TSA;
/* Loads up to about `budget` inodes or entries more of a backed s->ns:
 * 1 more to do, 0 complete (s->ns detached), or -errno. */
int st_ns_load_step(struct store *s, size_t budget) REQUIRES(store_cap);
int st_ns_load_all(struct store *s) REQUIRES(store_cap);
/* Loads inode ino (and a directory's entries) into s->ns if need be,
 * taking s->lock exclusive for it; call without s->lock. */
int st_ns_need(struct store *s, uint64_t ino, bool entries) EXCLUDES(store_cap);
/* s->lock exclusive for a load: counted in ld_waiters while it waits, so
 * that the background load steps aside (store_ns_load_more). */
void st_ns_wrlock(struct store *s) ACQUIRE(store_cap);
/* Before reading inode ino under s->lock shared: loads it if need be
 * (0 also when there is no such inode). */
int st_ns_ensure(struct store *s, uint64_t ino) EXCLUDES(store_cap);
/* ns_getattr under s->lock shared, after st_ns_ensure: never loads. */
int st_ns_getattr(struct store *s, uint64_t ino, struct ns_attr *ret_attr) REQUIRES_SHARED(store_cap);

/* store_ckpt.c: superblocks, namespace chain */
/* One inode's value in the inode tree: its 'I', 'X' and 'F' records as
 * in the stream (malloc'd into *ret_p). -ENOENT if the inode is gone. */
int st_ns_ser_one(struct store *s, uint64_t ino, uint8_t **ret_p, size_t *ret_len) REQUIRES_SHARED(store_cap);
/* Parses such a value (at open): every record must name ino. */
int st_ns_parse_one(struct store *s, uint64_t ino, const uint8_t *p, size_t len) NO_TSA;
void st_sb_encode(const struct store_sb *sb, uint8_t *page);
int st_sb_decode(const uint8_t *page, uint64_t pgno, struct store_sb *ret, const char **why);
int st_ns_load_chain(struct store *s, const struct store_sb *sb) NO_TSA;
bool st_tail_free(const struct store *s);

/* store_read.c: index loading and frame reads (also used by store_check.c) */
const struct ient *st_sfile_ent(const struct sfile *f, uint64_t i);
int st_sfile_load(struct store *s, struct sfile *f) REQUIRES(store_cap);
int st_grow(uint8_t **p, size_t *cap, size_t need);
int st_data_page_src(struct store *s, uint64_t pg, uint8_t type, struct rctx *x, const uint8_t **ret_src,
		     struct pager_hdr *ret_h) REQUIRES_SHARED(store_cap);
bool st_entry_ok(const struct ient *e);
int st_frame_read(struct store *s, const struct ient *e, struct rctx *x) REQUIRES_SHARED(store_cap);
/* st_frame_read, then the frame's header must be a data record (not a hole)
 * of ino matching e (offset, raw and frame length): -EBADMSG if not. */
int st_frame_read_checked(struct store *s, uint64_t ino, const struct ient *e, struct rctx *x, struct rec_hdr *ret_h,
			  const uint8_t **ret_payload) REQUIRES_SHARED(store_cap);
void st_rctx_free(struct rctx *x); /* a scratch without a pooled zstd context; NULL ok */
/* The test hooks' mutant (enum store_mutant; 0 outside tests). */
int st_mutant(void);

#endif
