/* fuzz_btree.c — B+tree pages (storage/btree.c) from arbitrary bytes.
 *
 * Input: a 4-byte header (root index, flags, u16 count), then up to 64 page
 * images of 4096 bytes that become pages 2, 3, ... of a memory page store
 * (H = 2 + pages); any bytes after the last whole page are a script of keys.
 * The tree at page 2 + (root index % pages) is verified, iterated, and
 * every key it yields is looked up; with flags bit 0, keys are deleted and
 * put (values up to 3,060 bytes: overflow pages) and the tree is flushed
 * to new pages and verified again. Must never crash, hang, leak or read
 * outside its buffers: a bad page is an error (-EIO / -EUCLEAN).
 * Seeds: fuzz_gen_corpus_btree tests/fuzz/corpus (gen_corpus_btree.c). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/btree.h"
#include "storage/pager.h"

#define FB_MAX_PAGES 64u
#define FB_MAX_NEW 2048u
#define FB_KEYS 64u

struct fb {
	const uint8_t *in; /* input pages */
	uint64_t nin;
	uint8_t *newp[FB_MAX_NEW]; /* pages written since */
	uint64_t H;
};

static int fb_read(void *arg, uint64_t pgno, uint8_t *buf)
{
	struct fb *f = arg;

	if (pgno >= 2 && pgno < 2 + f->nin) {
		memcpy(buf, f->in + (pgno - 2) * PAGER_PAGE_SIZE, PAGER_PAGE_SIZE);
		return 0;
	}
	if (pgno >= 2 + f->nin && pgno < f->H && f->newp[pgno - 2 - f->nin]) {
		memcpy(buf, f->newp[pgno - 2 - f->nin], PAGER_PAGE_SIZE);
		return 0;
	}
	return -EIO;
}

static int fb_alloc(void *arg, uint64_t *ret)
{
	struct fb *f = arg;

	if (f->H - 2 - f->nin >= FB_MAX_NEW)
		return -ENOSPC;
	*ret = f->H++;
	return 0;
}

static void fb_free(void *arg, uint64_t pgno)
{
	(void)arg;
	(void)pgno;
}

static int fb_write(void *arg, uint64_t pgno, const uint8_t *page)
{
	struct fb *f = arg;
	uint64_t i = pgno - 2 - f->nin;

	if (pgno < 2 + f->nin || pgno >= f->H)
		abort(); /* the tree wrote a page it was not given */
	if (!f->newp[i] && !(f->newp[i] = malloc(PAGER_PAGE_SIZE)))
		return -ENOMEM;
	memcpy(f->newp[i], page, PAGER_PAGE_SIZE);
	return 0;
}

static uint64_t fb_hw(void *arg) { return ((struct fb *)arg)->H; }

struct keys {
	uint8_t k[FB_KEYS][BTREE_KEY_MAX];
	size_t len[FB_KEYS];
	unsigned n;
};

static int collect(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	struct keys *ks = arg;

	(void)val;
	(void)vlen;
	if (ks->n < FB_KEYS && klen <= BTREE_KEY_MAX) {
		memcpy(ks->k[ks->n], key, klen);
		ks->len[ks->n++] = klen;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct keys ks;
	static uint8_t val[4096]; /* >= 255 * 12 */
	struct fb *f = NULL;
	struct btree *t = NULL;
	struct btree_io io = { .read_page = fb_read, .alloc_page = fb_alloc, .free_page = fb_free,
		.write_page = fb_write, .high_water = fb_hw };
	const uint8_t *script;
	size_t slen, vl;
	uint64_t root, count, nroot;

	if (size < 4 + PAGER_PAGE_SIZE)
		return 0;
	f = calloc(1, sizeof(*f));
	if (!f)
		return 0;
	f->in = data + 4;
	f->nin = (size - 4) / PAGER_PAGE_SIZE;
	if (f->nin > FB_MAX_PAGES)
		f->nin = FB_MAX_PAGES;
	f->H = 2 + f->nin;
	script = data + 4 + f->nin * PAGER_PAGE_SIZE;
	slen = size - 4 - f->nin * PAGER_PAGE_SIZE;
	io.arg = f;
	root = 2 + data[0] % f->nin;
	count = (uint64_t)data[2] | (uint64_t)data[3] << 8;
	(void)btree_verify(&io, root, count, NULL, NULL);
	if (btree_open(&io, root, count ? count : 1, &t) < 0)
		goto out;
	btree_set_cache_bytes(t, 64 << 10);
	ks.n = 0;
	(void)btree_iter(t, NULL, 0, collect, &ks);
	for (unsigned i = 0; i < ks.n; i++)
		(void)btree_get(t, ks.k[i], ks.len[i], val, sizeof(val), &vl);
	if (slen)
		(void)btree_iter(t, script, slen < BTREE_KEY_MAX ? slen : BTREE_KEY_MAX, collect, &ks);
	if (data[1] & 1) {
		for (unsigned i = 0; i < ks.n; i += 2)
			(void)btree_del(t, ks.k[i], ks.len[i]);
		for (size_t off = 0; off + 2 < slen; off += 3) {
			size_t kl = 1 + script[off] % 40, vlen = (size_t)script[off + 1] * 12;
			if (off + 2 + kl > slen)
				break;
			memset(val, script[off + 2], vlen);
			(void)btree_put(t, script + off + 2, kl, val, vlen);
		}
		if (btree_flush(t, 1, &nroot) == 0) {
			count = btree_count(t);
			(void)btree_verify(&io, nroot, count, NULL, NULL);
			ks.n = 0;
			(void)btree_iter(t, NULL, 0, collect, &ks);
		}
	}
out:
	btree_close(t);
	for (unsigned i = 0; i < FB_MAX_NEW; i++)
		free(f->newp[i]);
	free(f);
	return 0;
}
