/* dump.c — `blazectl dump STORE [superblocks|wal|pages|files|file PATH]`:
 * human-readable views of a store's on-disk structures, for debugging.
 *
 * superblocks, wal and pages read the files directly (no lock, so they also
 * work on a store that does not open or is mounted; a mounted store may be
 * changing underneath). files and file PATH open the store read-only (the
 * state a mount would see: the checkpoint plus the replayed WAL). The
 * default is the superblocks plus a summary. Exit: 0 ok, 8 error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blazectl.h"
#include "storage/log.h"
#include "storage/store.h"
#include "storage/wal.h"

typedef unsigned long long ull;

static int dump_superblocks(struct vfs *v)
{
	struct store_sb_info sb[2];
	int r = store_read_superblocks(v, sb);
	int newest = -1;

	if (r < 0) {
		fprintf(stderr, "blazectl dump: cannot read store.db: %s\n", strerror(-r));
		return 8;
	}
	for (int i = 0; i < 2; i++)
		if (sb[i].valid && (newest < 0 || sb[i].generation > sb[newest].generation))
			newest = i;
	for (int i = 0; i < 2; i++) {
		const struct store_sb_info *b = &sb[i];
		printf("superblock %d: %s%s\n", i, b->valid ? "valid" : "INVALID: ", b->valid ? "" : b->why);
		if (!b->present)
			continue;
		if (i == newest)
			printf("  (newest: the store opens from this one)\n");
		printf("  generation      %llu\n", (ull)b->generation);
		printf("  checkpoint lsn  %llu\n", (ull)b->checkpoint_lsn);
		printf("  checkpoints     %llu\n", (ull)b->checkpoints);
		printf("  wal position    segment %u, life %llu, offset %llu\n", b->wal_segment, (ull)b->wal_life,
		       (ull)b->wal_offset);
		printf("  wal layout      %u segments x %llu bytes\n", b->wal_segments, (ull)b->wal_segment_bytes);
		printf("  next inode      %llu\n", (ull)b->next_ino);
		printf("  high-water mark %llu pages\n", (ull)b->hwm);
		printf("  namespace chain first page %llu, %llu pages, %llu bytes\n", (ull)b->ns_first,
		       (ull)b->ns_pages, (ull)b->ns_bytes);
		printf("  format          %u\n", b->format);
		if (b->format >= 3) {
			printf("  inode tree      root page %llu, %llu keys\n", (ull)b->ino_root, (ull)b->ino_count);
			printf("  entry tree      root page %llu, %llu keys\n", (ull)b->dent_root, (ull)b->dent_count);
		}
		if (b->format >= 4)
			printf("  pack tree       root page %llu, %llu keys\n", (ull)b->pack_root, (ull)b->pack_count);
		printf("  stored bytes    %llu\n", (ull)b->stored_bytes);
		printf("  logical bytes   %llu\n", (ull)b->logical_bytes);
		printf("  data pages      %llu\n", (ull)b->data_pages);
	}
	return 0;
}

/* ---- wal ---- */

static const char *kind_name(uint8_t k)
{
	switch (k) {
	case WAL_KIND_HEADER:
		return "HEADER";
	case WAL_KIND_BATCH:
		return "BATCH";
	case WAL_KIND_COMMIT:
		return "COMMIT";
	case WAL_KIND_END:
		return "END";
	default:
		return "?";
	}
}

static int wal_line(void *arg, const struct wal_entry_info *e)
{
	(void)arg;
	if (e->kind == WAL_KIND_HEADER) {
		printf("segment %u: life %llu, %s, %llu bytes\n", e->segment, (ull)e->life,
		       e->valid ? "header valid" : "no valid header", (ull)e->len);
		return 0;
	}
	printf("  %3u %10llu  life %-6llu %-6s lsn %-10llu len %-8llu %s\n", e->segment, (ull)e->offset,
	       (ull)e->life, kind_name(e->kind), (ull)e->lsn, (ull)e->len, e->valid ? "valid" : "INVALID");
	return 0;
}

/* The layout from the segment files themselves: wal.000, wal.001, ... */
static int wal_probe(struct vfs *v, struct wal_opts *ret)
{
	struct wal_opts o = {0};
	char name[16];

	for (unsigned i = 0; i < 1000; i++) {
		struct vfs_file *f = NULL;
		uint64_t size = 0;
		snprintf(name, sizeof(name), "wal.%03u", i);
		if (vfs_open(v, name, VFS_O_RDONLY, &f) < 0)
			break;
		int r = vfs_size(f, &size);
		vfs_close(f);
		if (r < 0 || (i && size != o.segment_bytes))
			break;
		o.segment_bytes = size;
		o.segments = i + 1;
	}
	if (!wal_max_payload(&o))
		return -EINVAL;
	*ret = o;
	return 0;
}

static int dump_wal(struct vfs *v)
{
	struct store_sb_info sb[2];
	struct wal_opts o;
	int r = store_read_superblocks(v, sb);
	int pick;

	if (r < 0) {
		fprintf(stderr, "blazectl dump: cannot read store.db: %s\n", strerror(-r));
		return 8;
	}
	pick = sb[0].valid && (!sb[1].valid || sb[0].generation > sb[1].generation) ? 0 : sb[1].valid ? 1 : -1;
	if (pick >= 0) {
		o.segments = sb[pick].wal_segments;
		o.segment_bytes = sb[pick].wal_segment_bytes;
		printf("wal: %u segments x %llu bytes; replay starts at segment %u offset %llu life %llu "
		       "(after lsn %llu)\n",
		       o.segments, (ull)o.segment_bytes, sb[pick].wal_segment, (ull)sb[pick].wal_offset,
		       (ull)sb[pick].wal_life, (ull)sb[pick].checkpoint_lsn);
	} else {
		r = wal_probe(v, &o);
		if (r < 0) {
			fprintf(stderr, "blazectl dump: no valid superblock names the WAL's layout, and the "
					"segment files do not show it\n");
			return 8;
		}
		printf("wal: %u segments x %llu bytes (from the files: no valid superblock)\n", o.segments,
		       (ull)o.segment_bytes);
	}
	printf("  seg     offset  life   kind   lsn            len\n");
	r = wal_inspect(v, &o, wal_line, NULL);
	if (r < 0) {
		fprintf(stderr, "blazectl dump: reading the WAL failed: %s\n", strerror(-r));
		return 8;
	}
	return 0;
}

/* ---- pages ---- */

static int page_line(void *arg, const struct store_page_info *p)
{
	(void)arg;
	if (p->zero) {
		printf("%10llu  (zero)\n", (ull)p->pgno);
		return 0;
	}
	if (!p->magic_ok) {
		printf("%10llu  (no page magic)  BAD\n", (ull)p->pgno);
		return 0;
	}
	printf("%10llu  %-6s lsn %-10llu next %-10llu used %-5u %s", (ull)p->pgno, store_page_type_name(p->type),
	       (ull)p->lsn, (ull)p->next, p->used, p->ok ? "ok" : "BAD");
	if (p->stored_pgno != p->pgno)
		printf(" (says it is page %llu)", (ull)p->stored_pgno);
	printf("\n");
	return 0;
}

static int dump_pages(struct vfs *v)
{
	printf("      page  type   lsn            next            used  checksum\n");
	int r = store_scan_pages(v, page_line, NULL);
	if (r < 0) {
		fprintf(stderr, "blazectl dump: reading store.db failed: %s\n", strerror(-r));
		return 8;
	}
	return 0;
}

/* ---- files ---- */

struct walk {
	struct store *s;
	struct ns *ns;
	char path[4096];
	size_t len;
	int depth;
};

static void file_line(struct walk *w, uint64_t ino)
{
	struct ns_attr a;
	struct store_file_info fi = {0};

	if (ns_getattr(w->ns, ino, &a) < 0)
		return;
	if (S_ISREG(a.mode))
		(void)store_file_info(w->s, ino, &fi);
	printf("%-40s %8llu %-4s %12llu %8llu %12llu\n", w->len ? w->path : "/", (ull)ino,
	       S_ISDIR(a.mode) ? "dir" : S_ISLNK(a.mode) ? "link" : S_ISREG(a.mode) ? "file" : S_ISFIFO(a.mode) ? "fifo"
	       : S_ISSOCK(a.mode) ? "sock" : S_ISCHR(a.mode) ? "chr" : S_ISBLK(a.mode) ? "blk" : "?",
	       (ull)a.size, (ull)fi.records, (ull)fi.stored_bytes);
}

static int walk_entry(void *arg, const char *name, size_t name_len, uint64_t ino, uint32_t mode, uint64_t cookie);

static void walk_dir(struct walk *w, uint64_t dir)
{
	if (w->depth > 256)
		return;
	w->depth++;
	(void)ns_readdir(w->ns, dir, 0, walk_entry, w);
	w->depth--;
}

static int walk_entry(void *arg, const char *name, size_t name_len, uint64_t ino, uint32_t mode, uint64_t cookie)
{
	struct walk *w = arg;
	size_t old = w->len;

	(void)cookie;
	if (w->len + 1 + name_len + 1 > sizeof(w->path))
		return 0;
	w->path[w->len++] = '/';
	memcpy(w->path + w->len, name, name_len);
	w->len += name_len;
	w->path[w->len] = 0;
	file_line(w, ino);
	if (S_ISDIR(mode))
		walk_dir(w, ino);
	w->len = old;
	w->path[w->len] = 0;
	return 0;
}

static int dump_files(struct store *s)
{
	struct walk w = {.s = s};
	int r = store_ns_clone(s, &w.ns);

	if (r < 0) {
		fprintf(stderr, "blazectl dump: %s\n", strerror(-r));
		return 8;
	}
	printf("%-40s %8s %-4s %12s %8s %12s\n", "path", "ino", "type", "size", "records", "stored");
	file_line(&w, NS_ROOT_INO);
	walk_dir(&w, NS_ROOT_INO);
	ns_free(w.ns);
	return 0;
}

struct recs {
	uint64_t n, bad, raw, stored, end, holes, hole_bytes;
};

static void hole_line(struct recs *c, uint64_t to)
{
	if (to <= c->end)
		return;
	printf("%12llu %9llu %9s %9s  %-5s %-22s  %s\n", (ull)c->end, (ull)(to - c->end), "-", "-", "hole", "-",
	       "zeros");
	c->holes++;
	c->hole_bytes += to - c->end;
}

/* One chunk: offset, raw, stored, frame, codec, where (extent first..last
 * or pack page+offset), status; a gap before it is printed as a hole. */
static int record_line(void *arg, const struct store_record_info *ri)
{
	struct recs *c = arg;
	char where[96];
	hole_line(c, ri->off);
	c->n++;
	c->raw += ri->raw_len;
	c->stored += ri->frame_len;
	c->bad += ri->status != 0;
	c->end = ri->off + ri->raw_len;
	if (ri->kind == STORE_REC_OPEN) {
		printf("%12llu %9u %9s %9s  %-5s %-22s  %s\n", (ull)ri->off, ri->raw_len, "-", "-", "-", "open chunk",
		       "in the WAL until the next checkpoint");
		return 0;
	}
	if (ri->npages && ri->tpage) /* split: full pages, then the fragment packed */
		snprintf(where, sizeof(where), "%sextent %llu..%llu + %llu+%u", ri->kind == STORE_REC_TAIL ? "tail " : "",
			 (ull)ri->page, (ull)(ri->page + ri->npages - 1), (ull)ri->tpage, ri->pg_off);
	else if (ri->npages)
		snprintf(where, sizeof(where), "%sextent %llu..%llu", ri->kind == STORE_REC_TAIL ? "tail " : "",
			 (ull)ri->page, (ull)(ri->page + ri->npages - 1));
	else
		snprintf(where, sizeof(where), "%spacked %llu+%u", ri->kind == STORE_REC_TAIL ? "tail " : "",
			 (ull)ri->page, ri->pg_off);
	printf("%12llu %9u %9u %9u  %-5s %-22s  %s\n", (ull)ri->off, ri->raw_len, ri->stored_len, ri->frame_len,
	       ri->status == -EIO && !ri->stored_len ? "?" : ri->codec == 1 ? "zstd" : "raw", where,
	       ri->status == 0 ? "ok" : ri->status == -EIO ? "BAD PAGE" : "BAD RECORD");
	return 0;
}

static int dump_file(struct store *s, const char *path)
{
	struct ns *ns = NULL;
	struct recs c = {0};
	uint64_t ino = NS_ROOT_INO;
	int r = store_ns_clone(s, &ns);

	if (r < 0)
		goto out;
	for (const char *p = path; *p;) {
		while (*p == '/')
			p++;
		size_t n = strcspn(p, "/");
		if (!n)
			break;
		r = ns_lookup(ns, ino, p, n, &ino);
		if (r < 0)
			goto out;
		p += n;
	}
	printf("%s: inode %llu\n", path, (ull)ino);
	printf("%12s %9s %9s %9s  %-5s %-22s\n", "offset", "raw", "stored", "frame", "codec", "where");
	r = store_file_records(s, ino, record_line, &c);
	uint64_t size = 0;
	if (r == 0 && store_file_size(s, ino, &size) == 0)
		hole_line(&c, size);
	if (r == 0)
		printf("%llu records, %llu raw bytes, %llu frame bytes, %llu bad, %llu holes (%llu bytes)\n", (ull)c.n,
		       (ull)c.raw, (ull)c.stored, (ull)c.bad, (ull)c.holes, (ull)c.hole_bytes);
out:
	ns_free(ns);
	if (r < 0) {
		fprintf(stderr, "blazectl dump: %s: %s\n", path, strerror(-r));
		return 8;
	}
	return 0;
}

static int dump_summary(struct store *s)
{
	struct store_stats st;
	struct ns *ns = NULL;

	store_stats(s, &st);
	if (store_ns_clone(s, &ns) == 0)
		printf("namespace: %llu inodes, next inode %llu\n", (ull)ns_count(ns), (ull)ns_next_ino(ns));
	ns_free(ns);
	printf("pages: %llu allocated, %llu free, %llu data pages\n", (ull)st.pages_total, (ull)st.pages_free,
	       (ull)st.data_pages);
	printf("bytes: %llu logical, %llu stored", (ull)st.logical_bytes, (ull)st.stored_bytes);
	if (st.logical_bytes)
		printf(" (ratio %.3f)", (double)st.stored_bytes / (double)st.logical_bytes);
	printf("\nlsn: checkpoint %llu, last %llu (%llu batches replayed from the WAL)\n", (ull)st.checkpoint_lsn,
	       (ull)st.last_lsn, (ull)st.replayed_batches);
	return 0;
}

int blazectl_dump(int argc, char **argv)
{
	const char *dir = NULL, *what = NULL, *path = NULL;
	struct vfs *v = NULL;
	struct store *s = NULL;
	int rc = 8, r;

	if (argc >= 2)
		dir = argv[1];
	if (argc >= 3)
		what = argv[2];
	if (what && !strcmp(what, "file") && argc == 4)
		path = argv[3];
	if (!dir || argc > 4 || (argc == 4 && !path) || (what && strcmp(what, "superblocks") && strcmp(what, "wal") &&
							 strcmp(what, "pages") && strcmp(what, "files") && !path)) {
		fprintf(stderr, "usage: blazectl dump STORE [superblocks|wal|pages|files|file PATH]\n");
		return 8;
	}
	bz_log_set_level(BZ_LOG_ERR);
	if (!what || !strcmp(what, "superblocks") || !strcmp(what, "wal") || !strcmp(what, "pages")) {
		r = vfs_posix_new(dir, &v);
		if (r < 0) {
			fprintf(stderr, "blazectl dump: %s: %s\n", dir, strerror(-r));
			return 8;
		}
		rc = !what || !strcmp(what, "superblocks") ? dump_superblocks(v)
		     : !strcmp(what, "wal")               ? dump_wal(v)
							  : dump_pages(v);
		vfs_destroy(v);
		v = NULL;
		if (what || rc)
			return rc;
	}
	r = blazectl_open_store(dir, true, &v, &s);
	if (r < 0) {
		fprintf(stderr, "blazectl dump: cannot open the store %s: %s\n", dir,
			r == -EBUSY ? "it is in use (mounted)" : strerror(-r));
		return 8;
	}
	if (!what)
		rc = dump_summary(s);
	else if (path)
		rc = dump_file(s, path);
	else
		rc = dump_files(s);
	blazectl_close_store(v, s);
	return rc;
}
