/* gen_corpus_codec.c — writes the seed inputs of fuzz_record and fuzz_nsop.
 *   cc -I. tests/fuzz/gen_corpus_codec.c storage/record.c storage/nsop.c \
 *      storage/util.c -lzstd -lxxhash -o gen_corpus
 *   ./gen_corpus tests/fuzz/corpus
 * writes CORPUS/record/seed-* (frames with valid checksums: raw, zstd, ns,
 * back-to-back, truncated, holes) and CORPUS/nsop/seed-* (one per op kind). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#include "storage/nsop.h"
#include "storage/record.h"

static const char *dir;

static void put(const char *sub, const char *name, const uint8_t *p, size_t n)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s/seed-%s", dir, sub, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static size_t frame(uint8_t *out, uint8_t type, bool zstd, uint64_t ino, uint64_t off, const void *raw, size_t n)
{
	uint8_t z[4096];
	struct rec_hdr h = {.type = type, .codec = zstd ? REC_ZSTD : REC_RAW, .ino = ino, .off = off,
			    .raw_len = (uint32_t)n, .hash = rec_hash(raw, n)};
	const void *pl = raw;
	size_t pn = n;
	if (zstd) {
		pn = ZSTD_compress(z, sizeof(z), raw, n, 3);
		if (ZSTD_isError(pn))
			exit(1);
		pl = z;
	}
	h.stored_len = (uint32_t)pn;
	int hl = rec_hdr_encode(&h, out, REC_HDR_MAX);
	if (hl < 0)
		exit(1);
	memcpy(out + hl, pl, pn);
	return (size_t)hl + pn;
}

/* A hole record: raw_len zeros, stored as nothing. */
static size_t hole(uint8_t *out, uint64_t ino, uint64_t off, uint64_t len)
{
	struct rec_hdr h = {.type = REC_DATA, .codec = REC_HOLE, .ino = ino, .off = off, .raw_len = len,
			    .hash = rec_hash("", 0)};
	int hl = rec_hdr_encode(&h, out, REC_HDR_MAX);
	if (hl < 0)
		exit(1);
	return (size_t)hl;
}

int main(int argc, char **argv)
{
	static uint8_t buf[16384], text[1500];
	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus CORPUS_DIR\n");
		return 2;
	}
	dir = argv[1];
	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = "2026-11-25 12:00:00 blazefs: appended record\n"[i % 45];

	/* nsop seeds */
	const struct ns_op ops[] = {
		{.kind = NS_CREATE, .parent = 1, .name = "file", .name_len = 4, .ino = 2, .mode = 0100644, .uid = 1000,
		 .gid = 1000, .atime_ns = 1764072000000000000ll, .mtime_ns = 1764072000000000000ll,
		 .ctime_ns = 1764072000000000000ll},
		{.kind = NS_MKDIR, .parent = 1, .name = "dir", .name_len = 3, .ino = 3, .mode = 040755, .ctime_ns = -1},
		{.kind = NS_SYMLINK, .parent = 3, .name = "ln", .name_len = 2, .ino = 4, .name2 = "../file",
		 .name2_len = 7, .ctime_ns = 5},
		{.kind = NS_LINK, .ino = 2, .parent2 = 3, .name2 = "hard", .name2_len = 4, .ctime_ns = 6},
		{.kind = NS_UNLINK, .parent = 3, .name = "hard", .name_len = 4, .ctime_ns = 7},
		{.kind = NS_RMDIR, .parent = 1, .name = "dir", .name_len = 3, .ctime_ns = 8},
		{.kind = NS_RENAME, .parent = 1, .name = "file", .name_len = 4, .parent2 = 3, .name2 = "moved",
		 .name2_len = 5, .flags = NS_RENAME_NOREPLACE, .ctime_ns = 9},
		{.kind = NS_SETATTR, .ino = 2, .flags = 31, .mode = 0600, .uid = 1, .gid = 2, .atime_ns = 3,
		 .mtime_ns = 4, .ctime_ns = 10},
		{.kind = NS_MKNOD, .parent = 1, .name = "null", .name_len = 4, .ino = 5, .mode = 020666, .rdev = 0x103,
		 .ctime_ns = 11},
		{.kind = NS_SETXATTR, .ino = 2, .name = "user.mime_type", .name_len = 14, .name2 = "text/plain",
		 .name2_len = 10, .flags = NS_XATTR_CREATE, .ctime_ns = 12},
		{.kind = NS_REMOVEXATTR, .ino = 2, .name = "user.mime_type", .name_len = 14, .ctime_ns = 13},
	};
	static const char *kind_names[] = {"", "create", "mkdir", "symlink", "link", "unlink", "rmdir", "rename",
					   "setattr", "mknod", "setxattr", "removexattr"};
	uint8_t nsbuf[NSOP_MAX_LEN];
	size_t ns_create_len = 0;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		int n = nsop_encode(&ops[i], nsbuf, sizeof(nsbuf));
		if (n < 0)
			return 1;
		put("nsop", kind_names[ops[i].kind], nsbuf, (size_t)n);
		if (i == 0)
			ns_create_len = (size_t)n;
	}

	/* record seeds */
	size_t n = frame(buf, REC_DATA, false, 2, 0, "hello\n", 6);
	put("record", "raw", buf, n);
	n = frame(buf, REC_DATA, true, 2, 6, text, sizeof(text));
	put("record", "zstd", buf, n);
	n = frame(buf, REC_DATA, false, 2, 0, "", 0);
	put("record", "empty", buf, n);
	(void)nsop_encode(&ops[0], nsbuf, sizeof(nsbuf));
	n = frame(buf, REC_NS, false, 0, 0, nsbuf, ns_create_len);
	put("record", "ns", buf, n);
	/* a stream: ns op, raw data, zstd data, big ino/off */
	n = frame(buf, REC_NS, false, 0, 0, nsbuf, ns_create_len);
	n += frame(buf + n, REC_DATA, false, 2, 0, text, 100);
	n += frame(buf + n, REC_DATA, true, 2, 100, text, 1000);
	n += frame(buf + n, REC_DATA, false, UINT64_MAX, UINT64_MAX - 10, "x", 1);
	put("record", "stream", buf, n);
	/* a torn tail: the stream cut in the middle of its last frame */
	put("record", "torn", buf, n - 3);
	/* holes (REC_HOLE: no payload): an 8 TiB one alone, then one between
	 * two data records */
	n = hole(buf, 2, 4096, 8ull << 40);
	put("record", "hole", buf, n);
	n = frame(buf, REC_DATA, false, 2, 0, text, 100);
	n += hole(buf + n, 2, 100, 1ull << 20);
	n += frame(buf + n, REC_DATA, true, 2, 100 + (1ull << 20), text, 1000);
	put("record", "hole-stream", buf, n);
	return 0;
}
