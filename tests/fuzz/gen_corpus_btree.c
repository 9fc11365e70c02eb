/* gen_corpus_btree.c — writes the seed corpus of fuzz_btree (the input
 * format is in fuzz_btree.c): valid trees built with storage/btree.c on a
 * page store that numbers pages from 2 up and never reuses one, flushed
 * once, so every page of the input belongs to the tree.
 *
 *   btree/leaf       one leaf, 12 keys
 *   btree/overflow   a leaf with a 9,000-byte value (3 overflow pages)
 *   btree/depth2     ~300 keys: a node over 5 leaves; flags 1 (mutate)
 *   btree/depth3     250-byte keys: 3 levels; flags 1
 *
 * Usage: fuzz_gen_corpus_btree CORPUS_DIR (e.g. tests/fuzz/corpus). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/btree.h"
#include "storage/pager.h"

#define G_MAX 64

static uint8_t g_pages[G_MAX][PAGER_PAGE_SIZE];
static uint64_t g_H = 2;

static int g_read(void *arg, uint64_t pgno, uint8_t *buf)
{
	(void)arg;
	if (pgno < 2 || pgno >= g_H)
		return -EIO;
	memcpy(buf, g_pages[pgno - 2], PAGER_PAGE_SIZE);
	return 0;
}

static int g_alloc(void *arg, uint64_t *ret)
{
	(void)arg;
	if (g_H - 2 >= G_MAX)
		return -ENOSPC;
	*ret = g_H++;
	return 0;
}

static void g_free(void *arg, uint64_t pgno)
{
	(void)arg;
	(void)pgno;
}

static int g_write(void *arg, uint64_t pgno, const uint8_t *page)
{
	(void)arg;
	memcpy(g_pages[pgno - 2], page, PAGER_PAGE_SIZE);
	return 0;
}

typedef void (*fill_fn)(struct btree *t);

static void emit(const char *dir, const char *name, fill_fn fill, uint8_t flags, const char *script)
{
	struct btree_io io = { .read_page = g_read, .alloc_page = g_alloc, .free_page = g_free, .write_page = g_write };
	struct btree *t = NULL;
	uint64_t root = 0, count;
	uint8_t hdr[4];
	char path[512];
	FILE *o;

	g_H = 2;
	if (btree_open(&io, 0, 0, &t) < 0)
		abort();
	fill(t);
	if (btree_flush(t, 1, &root) < 0 || !root)
		abort();
	count = btree_count(t);
	btree_close(t);
	if (btree_verify(&io, root, count, NULL, NULL) < 0)
		abort();
	hdr[0] = (uint8_t)(root - 2);
	hdr[1] = flags;
	hdr[2] = (uint8_t)count;
	hdr[3] = (uint8_t)(count >> 8);
	snprintf(path, sizeof(path), "%s/btree/%s", dir, name);
	o = fopen(path, "wb");
	if (!o) {
		perror(path);
		exit(1);
	}
	fwrite(hdr, 1, 4, o);
	fwrite(g_pages, PAGER_PAGE_SIZE, (size_t)(g_H - 2), o);
	if (script)
		fwrite(script, 1, strlen(script), o);
	fclose(o);
	printf("%s: %llu pages, root %llu, %llu keys\n", path, (unsigned long long)(g_H - 2),
		(unsigned long long)root, (unsigned long long)count);
}

static void put_n(struct btree *t, unsigned n, unsigned klen, unsigned vlen)
{
	char k[BTREE_KEY_MAX + 1];
	uint8_t v[2048];

	for (unsigned i = 0; i < n; i++) {
		memset(k, 'k', sizeof(k));
		snprintf(k + klen - 8, 9, "%08u", i * 7919 % 100000);
		memset(v, (int)i, vlen);
		if (btree_put(t, k, klen, v, vlen) < 0)
			abort();
	}
}

static void fill_leaf(struct btree *t) { put_n(t, 12, 10, 20); }

static void fill_overflow(struct btree *t)
{
	static uint8_t big[9000];

	put_n(t, 5, 12, 30);
	memset(big, 'v', sizeof(big));
	if (btree_put(t, "large", 5, big, sizeof(big)) < 0)
		abort();
}

static void fill_depth2(struct btree *t)
{
	put_n(t, 300, 24, 40);
	for (unsigned i = 0; i < 300; i += 3) { /* deletes: merges */
		char k[32];
		memset(k, 'k', sizeof(k));
		snprintf(k + 16, 9, "%08u", i * 7919 % 100000);
		(void)btree_del(t, k, 24);
	}
}

static void fill_depth3(struct btree *t) { put_n(t, 330, 250, 0); }

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	emit(argv[1], "leaf", fill_leaf, 0, NULL);
	emit(argv[1], "overflow", fill_overflow, 1, "kkkkkk\x05zq");
	emit(argv[1], "depth2", fill_depth2, 1, "kkkkkkkkkkkkkkkk00001\x40\x10kkkk");
	emit(argv[1], "depth3", fill_depth3, 1, "kkkk\x01\xffzzzz");
	return 0;
}
