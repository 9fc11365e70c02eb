/* gen_corpus.c — writes the seed corpora of fuzz_page and fuzz_recover from
 * small valid stores built with the real engine on a memory vfs:
 *   page/<name>.db          store.db after a checkpoint
 *   recover/<name>.bin      u32 le len(store.db) | u8 segment | store.db |
 *                           that WAL segment (trailing zeros cut), taken with
 *                           batches still in the WAL
 * The "chunks" pair (chunk_bytes 512) holds what the v2 structures are
 * made of: many small files (open chunks written as packed tails), a file
 * of 300 appends of one chunk each (index pages: entries past the inline
 * tail) then 90 small ones (sealed chunks, an open chunk), large appends
 * (whole chunks), holes between and after chunks, a file deleted after a
 * checkpoint named it and one replaced by a rename (freed space in the
 * stream's free list), and, in the WAL, appends, a hole and an unlink still
 * to replay.
 * The "tree" pair holds namespace trees of two levels (format 3), split
 * and then merged by deletions. The *-format2 seeds are format 2 stores
 * (kept from before format 3, which still opens them: they are upgraded),
 * the *-format3 seeds format 3 stores (the pack pages' live bytes in the
 * stream, kept from before format 4, which upgrades them likewise).
 * Usage: fuzz_gen_corpus CORPUS_DIR (e.g. tests/fuzz/corpus).
 * (The record/nsop seeds come from gen_corpus_codec.c.) */
#include <stdio.h>

#include "fuzz_common.h"
#include "storage/ns.h"
#include "storage/nsop.h"
#include "storage/record.h"

static int frame(uint8_t *buf, size_t cap, uint8_t type, uint64_t ino, uint64_t off, const void *raw, size_t len)
{
	struct rec_hdr h = { .type = type, .codec = REC_RAW, .ino = ino, .off = off, .raw_len = (uint32_t)len,
			     .stored_len = (uint32_t)len, .hash = rec_hash(raw, len) };
	int hl = rec_hdr_encode(&h, buf, cap);
	if (hl < 0 || (size_t)hl + len > cap)
		return -ENOSPC;
	memcpy(buf + hl, raw, len);
	return hl + (int)len;
}

static int batch(struct store *s, const uint8_t *buf, size_t len, bool apply)
{
	uint64_t lsn;
	int rc = 0;
	if (!store_wal_has_room(s, len))
		rc = store_checkpoint(s);
	if (rc == 0)
		rc = store_wal_append(s, 1700000000000000000ll, buf, len, &lsn);
	if (rc == 0)
		rc = store_wal_sync(s);
	if (rc == 0 && apply)
		rc = store_apply(s, lsn, 1700000000000000000ll, buf, len);
	return rc;
}

/* A batch creating file ino in the root with nbytes of text. */
static size_t mk_file(uint8_t *buf, size_t cap, uint64_t ino, const char *name, size_t nbytes)
{
	uint8_t op[NSOP_MAX_LEN], data[4096];
	struct ns_op o = { .kind = NS_CREATE, .ino = ino, .parent = NS_ROOT_INO, .name = name,
			   .name_len = (uint32_t)strlen(name), .mode = S_IFREG | 0644 };
	int n = nsop_encode(&o, op, sizeof(op)), len;
	if (n < 0)
		abort();
	len = frame(buf, cap, REC_NS, 0, 0, op, (size_t)n);
	for (size_t i = 0; i < nbytes && i < sizeof(data); i++)
		data[i] = (uint8_t)("fuzz seed line\n"[i % 15]);
	if (nbytes) {
		int k = frame(buf + len, cap - (size_t)len, REC_DATA, ino, 0, data, nbytes);
		if (k < 0)
			abort();
		len += k;
	}
	return (size_t)len;
}

/* A batch with a FIFO, a device node and extended attributes on ino 2 and
 * the root (stream version 2: 'I' with rdev, 'X' records), and a directory
 * and a file that inherit the root's user.blazefs.zstd_level (stream
 * version 3 also carries every inode's append_ns). */
static size_t mk_kinds(uint8_t *buf, size_t cap)
{
	uint8_t op[NSOP_MAX_LEN];
	const struct ns_op ops[] = {
		{ .kind = NS_MKNOD, .ino = 7, .parent = NS_ROOT_INO, .name = "fifo", .name_len = 4, .mode = S_IFIFO | 0644 },
		{ .kind = NS_MKNOD, .ino = 8, .parent = NS_ROOT_INO, .name = "tty", .name_len = 3, .mode = S_IFCHR | 0620,
		  .rdev = 0x8800 },
		{ .kind = NS_SETXATTR, .ino = 2, .name = "user.origin", .name_len = 11, .name2 = "host-1", .name2_len = 6 },
		{ .kind = NS_SETXATTR, .ino = NS_ROOT_INO, .name = "trusted.x", .name_len = 9 },
		{ .kind = NS_SETXATTR, .ino = NS_ROOT_INO, .name = NS_XA_ZSTD_LEVEL, .name_len = sizeof(NS_XA_ZSTD_LEVEL) - 1,
		  .name2 = "19", .name2_len = 2 },
		{ .kind = NS_MKDIR, .ino = 9, .parent = NS_ROOT_INO, .name = "inherits", .name_len = 8, .mode = S_IFDIR | 0755,
		  .ctime_ns = 1764482400000000000 },
		{ .kind = NS_CREATE, .ino = 10, .parent = 9, .name = "f", .name_len = 1, .mode = S_IFREG | 0644,
		  .ctime_ns = 1764482400000000001 },
	};
	size_t len = 0;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		int n = nsop_encode(&ops[i], op, sizeof(op));
		if (n < 0)
			abort();
		int k = frame(buf + len, cap - len, REC_NS, 0, 0, op, (size_t)n);
		if (k < 0)
			abort();
		len += (size_t)k;
	}
	return len;
}

static size_t mk_nsop(uint8_t *buf, size_t cap, const struct ns_op *o)
{
	uint8_t op[NSOP_MAX_LEN];
	int n = nsop_encode(o, op, sizeof(op));
	if (n < 0)
		abort();
	n = frame(buf, cap, REC_NS, 0, 0, op, (size_t)n);
	if (n < 0)
		abort();
	return (size_t)n;
}

/* n appends of len bytes each to ino starting at *off, in one batch. */
static size_t mk_appends(uint8_t *buf, size_t cap, uint64_t ino, uint64_t *off, unsigned n, size_t len)
{
	uint8_t data[16384];
	size_t total = 0;
	if (len > sizeof(data))
		abort();
	for (unsigned k = 0; k < n; k++) {
		for (size_t i = 0; i < len; i++)
			data[i] = (uint8_t)("2026-11-30T09:00:00Z GET /index.html 200\n"[(*off + i) % 41]);
		int r = frame(buf + total, cap - total, REC_DATA, ino, *off, data, len);
		if (r < 0)
			abort();
		total += (size_t)r;
		*off += len;
	}
	return total;
}

static void dump(const char *dir, const char *sub, const char *name, struct vfs *v, bool with_wal);

/* A hole record of len bytes at *off of ino (REC_HOLE: no payload). */
static size_t mk_hole(uint8_t *buf, size_t cap, uint64_t ino, uint64_t *off, uint64_t len)
{
	struct rec_hdr h = { .type = REC_DATA, .codec = REC_HOLE, .ino = ino, .off = *off, .raw_len = len,
			     .hash = rec_hash(NULL, 0) };
	int n = rec_hdr_encode(&h, buf, cap);
	if (n < 0)
		abort();
	*off += len;
	return (size_t)n;
}

/* The "chunks" store (see the top of the file); returns 0 or -1. */
static int gen_chunks(const char *dir, const struct store_opts *o)
{
	static uint8_t buf[48 << 10];
	struct vfs *v = NULL, *snap = NULL;
	struct store *s = NULL;
	struct store_opts so = *o;
	uint64_t off_hot = 0, off_big = 0, off_gone = 0;
	char name[16];
	size_t len;

	if (vfs_mem_new(&v) < 0)
		return -1;
	so.vfs = v;
	so.chunk_bytes = 512; /* records of >= 256 bytes are chunks, smaller ones gather in open chunks */
	if (store_open(&so, &s) < 0)
		return -1;
	for (unsigned i = 0; i < 40; i += 4) { /* small files: open chunks, packed tails */
		len = 0;
		for (unsigned k = i; k < i + 4; k++) {
			snprintf(name, sizeof(name), "s%02u", k);
			len += mk_file(buf + len, sizeof(buf) - len, 20 + k, name, 10 + 7 * k);
		}
		if (batch(s, buf, len, true) < 0)
			return -1;
	}
	if (batch(s, buf, mk_file(buf, sizeof(buf), 70, "hot.log", 0), true) < 0 ||
	    batch(s, buf, mk_file(buf, sizeof(buf), 71, "big.bin", 0), true) < 0 ||
	    batch(s, buf, mk_file(buf, sizeof(buf), 72, "gone.log", 0), true) < 0)
		return -1;
	for (unsigned b = 0; b < 10; b++) /* 300 appends, each a chunk: index pages */
		if (batch(s, buf, mk_appends(buf, sizeof(buf), 70, &off_hot, 30, 300), true) < 0)
			return -1;
	/* 90 small appends: sealed chunks of 512 bytes and an open chunk (tail) */
	if (batch(s, buf, mk_appends(buf, sizeof(buf), 70, &off_hot, 90, 40), true) < 0)
		return -1;
	for (unsigned b = 0; b < 3; b++) { /* large appends: whole chunks, holes between */
		if (batch(s, buf, mk_appends(buf, sizeof(buf), 71, &off_big, 1, 12288), true) < 0 ||
		    batch(s, buf, mk_hole(buf, sizeof(buf), 71, &off_big, 5000 + 40000 * b), true) < 0)
			return -1;
	}
	if (batch(s, buf, mk_appends(buf, sizeof(buf), 72, &off_gone, 4, 3000), true) < 0 || store_checkpoint(s) < 0)
		return -1;
	/* deleted after a checkpoint named it; s01 replaced by a rename */
	len = mk_nsop(buf, sizeof(buf),
		      &(struct ns_op){ .kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "gone.log", .name_len = 8 });
	len += mk_nsop(buf + len, sizeof(buf) - len,
		       &(struct ns_op){ .kind = NS_RENAME, .parent = NS_ROOT_INO, .name = "s00", .name_len = 3,
					.parent2 = NS_ROOT_INO, .name2 = "s01", .name2_len = 3 });
	if (batch(s, buf, len, true) < 0 || store_checkpoint(s) < 0)
		return -1;
	dump(dir, "page", "chunks.db", v, false);
	/* in the WAL: more appends, an unlink of a file with data */
	if (batch(s, buf, mk_appends(buf, sizeof(buf), 70, &off_hot, 20, 40), true) < 0 ||
	    batch(s, buf, mk_appends(buf, sizeof(buf), 71, &off_big, 1, 9000), true) < 0 ||
	    batch(s, buf, mk_hole(buf, sizeof(buf), 70, &off_hot, 1ull << 40), true) < 0 ||
	    batch(s, buf,
		  mk_nsop(buf, sizeof(buf),
			  &(struct ns_op){ .kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = "s05", .name_len = 3 }),
		  true) < 0)
		return -1;
	if (vfs_mem_clone(v, &snap) < 0)
		return -1;
	dump(dir, "recover", "chunks.bin", snap, true);
	vfs_destroy(snap);
	if (store_close(s) < 0)
		return -1;
	vfs_destroy(v);
	return 0;
}

/* Namespace trees of more than one level (format 3): 240 files with long
 * names (the entry tree and the inode tree split), a checkpoint, then 160
 * of them unlinked: tree.bin with the unlinks in the WAL, tree.db after
 * the checkpoint that applied them (leaves merged). */
static int gen_tree(const char *dir, const struct store_opts *o)
{
	static uint8_t buf[48 << 10];
	struct vfs *v = NULL, *snap = NULL;
	struct store *s = NULL;
	struct store_opts so = *o;
	char name[64];
	size_t len = 0;

	if (vfs_mem_new(&v) < 0)
		return -1;
	so.vfs = v;
	if (store_open(&so, &s) < 0)
		return -1;
	for (unsigned k = 0; k < 240; k++) {
		snprintf(name, sizeof(name), "a-file-with-a-rather-long-name-%03u.log", k);
		len += mk_file(buf + len, sizeof(buf) - len, 100 + k, name, k % 16 == 0 ? 100 : 0);
		if (k % 40 == 39) {
			if (batch(s, buf, len, true) < 0)
				return -1;
			len = 0;
		}
	}
	if (store_checkpoint(s) < 0)
		return -1;
	for (unsigned k = 0; k < 240; k++) {
		if (k % 3 == 0)
			continue;
		snprintf(name, sizeof(name), "a-file-with-a-rather-long-name-%03u.log", k);
		len += mk_nsop(buf + len, sizeof(buf) - len,
			       &(struct ns_op){ .kind = NS_UNLINK, .parent = NS_ROOT_INO, .name = name,
						.name_len = (uint32_t)strlen(name) });
		if (k % 40 == 39) {
			if (batch(s, buf, len, true) < 0)
				return -1;
			len = 0;
		}
	}
	if (vfs_mem_clone(v, &snap) < 0)
		return -1;
	dump(dir, "recover", "tree.bin", snap, true);
	vfs_destroy(snap);
	if (store_checkpoint(s) < 0)
		return -1;
	dump(dir, "page", "tree.db", v, false);
	if (store_close(s) < 0)
		return -1;
	vfs_destroy(v);
	return 0;
}

static void dump(const char *dir, const char *sub, const char *name, struct vfs *v, bool with_wal)
{
	char path[512];
	uint8_t *db = malloc(4 << 20), *wal = malloc(FZ_SEG_BYTES), *tmp = malloc(FZ_SEG_BYTES);
	size_t ndb = 0, nwal = 0;
	uint8_t seg = 0;
	struct vfs_file *f = NULL;
	if (!db || !wal || !tmp)
		abort();
	if (vfs_open(v, "store.db", VFS_O_RDONLY, &f) == 0) {
		vfs_pread(f, db, 4 << 20, 0, &ndb);
		vfs_close(f);
	}
	for (unsigned i = 0; with_wal && i < FZ_SEGMENTS; i++) { /* the segment holding the most */
		char nm[16];
		size_t n = 0;
		snprintf(nm, sizeof(nm), "wal.%03u", i);
		if (vfs_open(v, nm, VFS_O_RDONLY, &f) != 0)
			continue;
		vfs_pread(f, tmp, FZ_SEG_BYTES, 0, &n);
		vfs_close(f);
		while (n && !tmp[n - 1])
			n--;
		if (n > nwal) {
			memcpy(wal, tmp, n);
			nwal = n;
			seg = (uint8_t)i;
		}
	}
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	FILE *o = fopen(path, "wb");
	if (!o) {
		perror(path);
		exit(1);
	}
	if (with_wal) {
		uint8_t hdr[5] = { (uint8_t)ndb, (uint8_t)(ndb >> 8), (uint8_t)(ndb >> 16), (uint8_t)(ndb >> 24), seg };
		fwrite(hdr, 1, 5, o);
	}
	fwrite(db, 1, ndb, o);
	fwrite(wal, 1, nwal, o);
	fclose(o);
	printf("%s: %zu + %zu bytes (segment %u)\n", path, ndb, nwal, seg);
	free(tmp);
	free(db);
	free(wal);
}

int main(int argc, char **argv)
{
	uint8_t buf[16384];
	struct vfs *v = NULL, *snap = NULL;
	struct store *s = NULL;
	struct store_opts o;
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	/* 1: empty store */
	bz_log_set_level(BZ_LOG_ERR);
	if (vfs_mem_new(&v) < 0)
		return 1;
	fz_opts(&o, v);
	if (store_open(&o, &s) < 0 || store_close(s) < 0)
		return 1;
	dump(argv[1], "page", "empty.db", v, false);
	dump(argv[1], "recover", "empty.bin", v, true);
	/* 2: files, applied and checkpointed; 3: more batches left in the WAL */
	if (store_open(&o, &s) < 0)
		return 1;
	if (batch(s, buf, mk_file(buf, sizeof(buf), 2, "a.log", 700), true) < 0 ||
	    batch(s, buf, mk_file(buf, sizeof(buf), 3, "b.log", 3000), true) < 0 ||
	    batch(s, buf, mk_file(buf, sizeof(buf), 4, "empty", 0), true) < 0 || store_checkpoint(s) < 0)
		return 1;
	dump(argv[1], "page", "files.db", v, false);
	if (batch(s, buf, mk_file(buf, sizeof(buf), 5, "c.log", 1200), true) < 0 ||
	    batch(s, buf, mk_file(buf, sizeof(buf), 6, "d.log", 90), true) < 0)
		return 1;
	if (vfs_mem_clone(v, &snap) < 0)
		return 1;
	dump(argv[1], "recover", "wal_batches.bin", snap, true);
	vfs_destroy(snap);
	if (store_close(s) < 0)
		return 1;
	dump(argv[1], "page", "files2.db", v, false);
	/* 4: special files and attributes, in the WAL, then checkpointed */
	if (store_open(&o, &s) < 0 || batch(s, buf, mk_kinds(buf, sizeof(buf)), true) < 0)
		return 1;
	/* (enough data after it that dump() picks this segment) */
	if (batch(s, buf, mk_file(buf, sizeof(buf), 9, "e.log", 4000), true) < 0 ||
	    batch(s, buf, mk_file(buf, sizeof(buf), 10, "f.log", 4000), true) < 0 ||
	    batch(s, buf, mk_file(buf, sizeof(buf), 11, "g.log", 4000), true) < 0)
		return 1;
	if (vfs_mem_clone(v, &snap) < 0)
		return 1;
	dump(argv[1], "recover", "kinds.bin", snap, true);
	vfs_destroy(snap);
	if (store_close(s) < 0)
		return 1;
	dump(argv[1], "page", "kinds.db", v, false);
	vfs_destroy(v);
	/* 5: chunks, tails, index pages, freed space */
	if (gen_chunks(argv[1], &o) < 0)
		return 1;
	/* 6: namespace trees of two levels */
	if (gen_tree(argv[1], &o) < 0)
		return 1;
	return 0;
}
