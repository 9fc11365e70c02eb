/* test_encode.c — enc_batch produces frames that rec_decode and
 * rec_payload_decode turn back into exactly the input records; text is
 * compressed, random data is stored raw, level 0 never compresses, the input
 * batch is never modified, bad input is refused. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "storage/record.h"
#include "t.h"
#include "workers/encode.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill_text(uint8_t *p, size_t n)
{
	static const char *words[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
				      "ERROR", "INFO", "request", "id=", "took", "ms", "user", "\n"};
	size_t i = 0;
	while (i < n) {
		const char *w = words[rnd() % BZ_ARRAY_SIZE(words)];
		for (size_t k = 0; w[k] && i < n; k++)
			p[i++] = (uint8_t)w[k];
		if (i < n)
			p[i++] = ' ';
	}
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

/* Decodes every frame of res and compares with in; returns the frame count. */
static uint32_t check_frames(const struct batch *in, const struct enc_result *res, int expect_codec)
{
	size_t pos = 0;
	uint32_t n = 0;
	uint64_t stored = 0;

	while (pos < res->len) {
		struct rec_hdr h;
		const uint8_t *payload;
		size_t flen;
		int r = rec_decode(res->frames + pos, res->len - pos, &h, &payload, &flen);
		T_CHECK_EQ(r, 0);
		if (r < 0 || n >= in->nrec)
			break;
		const struct batch_rec *br = &in->recs[n];
		T_CHECK_EQ(h.type, br->type);
		T_CHECK_EQ(h.ino, br->ino);
		T_CHECK_EQ(h.off, br->off);
		T_CHECK_EQ(h.raw_len, br->len);
		T_CHECK(h.stored_len <= h.raw_len);
		if (h.codec == REC_ZSTD)
			T_CHECK((uint64_t)h.stored_len * 100 < (uint64_t)h.raw_len * 97);
		if (expect_codec >= 0)
			T_CHECK_EQ(h.codec, expect_codec);
		uint8_t *out = malloc(h.raw_len ? h.raw_len : 1);
		T_ASSERT(out);
		T_CHECK_EQ(rec_payload_decode(&h, payload, out, NULL), 0);
		T_CHECK(h.raw_len == 0 || memcmp(out, br->data, h.raw_len) == 0);
		free(out);
		stored += h.stored_len;
		pos += flen;
		n++;
	}
	T_CHECK_EQ(pos, res->len);
	T_CHECK_EQ(n, in->nrec);
	T_CHECK_EQ(stored, res->stored_bytes);
	T_CHECK_EQ(res->n_zstd + res->n_raw, in->nrec);
	return n;
}

struct tb {
	struct batch b;
	struct batch_rec recs[64];
	uint8_t *bufs[64];
	uint8_t *copy[64];
};

static void tb_add(struct tb *t, uint8_t type, uint64_t ino, uint64_t off, size_t len, int text)
{
	uint32_t i = t->b.nrec++;
	t->bufs[i] = malloc(len ? len : 1);
	t->copy[i] = malloc(len ? len : 1);
	T_ASSERT(t->bufs[i] && t->copy[i]);
	if (text)
		fill_text(t->bufs[i], len);
	else
		fill_random(t->bufs[i], len);
	memcpy(t->copy[i], t->bufs[i], len);
	t->recs[i] = (struct batch_rec){.type = type, .ino = ino, .off = off, .len = (uint32_t)len, .data = t->bufs[i]};
	t->b.raw_bytes += len;
}

static void tb_init(struct tb *t)
{
	memset(t, 0, sizeof(*t));
	t->b.seq = 1;
	t->b.recs = t->recs;
}

static void tb_free(struct tb *t)
{
	for (uint32_t i = 0; i < t->b.nrec; i++) {
		T_CHECK(t->recs[i].len == 0 || memcmp(t->bufs[i], t->copy[i], t->recs[i].len) == 0);
		free(t->bufs[i]);
		free(t->copy[i]);
	}
}

static void test_text(int level)
{
	struct enc_ctx *c = NULL;
	struct enc_result res;
	struct tb t;

	tb_init(&t);
	T_ASSERT(enc_ctx_new(level, &c) == 0);
	for (int i = 0; i < 20; i++)
		tb_add(&t, REC_DATA, 100 + (uint64_t)(i % 3), (uint64_t)i * 70000, 256 + rnd() % 65000, 1);
	T_CHECK_EQ(enc_batch(c, &t.b, &res), 0);
	T_CHECK_EQ(res.err, 0);
	T_CHECK_EQ(res.raw_bytes, t.b.raw_bytes);
	check_frames(&t.b, &res, level > 0 ? REC_ZSTD : REC_RAW);
	if (level > 0) {
		T_CHECK_EQ(res.n_zstd, 20);
		T_CHECK(res.stored_bytes * 2 < res.raw_bytes); /* text compresses well */
		T_CHECK(res.len < res.raw_bytes);
	} else {
		T_CHECK_EQ(res.n_raw, 20);
		T_CHECK_EQ(res.stored_bytes, res.raw_bytes);
	}
	/* the ctx is reusable: a second batch gives the same bytes */
	struct enc_result res2;
	T_CHECK_EQ(enc_batch(c, &t.b, &res2), 0);
	T_CHECK_EQ(res2.len, res.len);
	T_CHECK(memcmp(res.frames, res2.frames, res.len) == 0);
	enc_result_free(&res);
	enc_result_free(&res2);
	enc_result_free(&res2); /* twice is fine */
	tb_free(&t);
	enc_ctx_free(c);
}

static void test_random(void)
{
	struct enc_ctx *c = NULL;
	struct enc_result res;
	struct tb t;

	tb_init(&t);
	T_ASSERT(enc_ctx_new(3, &c) == 0);
	for (int i = 0; i < 10; i++)
		tb_add(&t, REC_DATA, 7, (uint64_t)i << 20, 1 + rnd() % 70000, 0);
	T_CHECK_EQ(enc_batch(c, &t.b, &res), 0);
	check_frames(&t.b, &res, REC_RAW); /* incompressible: every record raw */
	T_CHECK_EQ(res.n_raw, 10);
	T_CHECK_EQ(res.stored_bytes, res.raw_bytes);
	enc_result_free(&res);
	tb_free(&t);
	enc_ctx_free(c);
}

static void test_mixed(void)
{
	struct enc_ctx *c = NULL;
	struct enc_result res;
	struct tb t;

	tb_init(&t);
	T_ASSERT(enc_ctx_new(1, &c) == 0);
	tb_add(&t, REC_DATA, 5, 0, 0, 1);          /* empty */
	tb_add(&t, REC_DATA, 5, 0, 1, 1);          /* one byte */
	tb_add(&t, REC_NS, 0, 0, 40, 1);           /* namespace record */
	tb_add(&t, REC_DATA, 5, 1, 5000, 0);       /* random */
	tb_add(&t, REC_DATA, 6, 0, 64 << 10, 1);   /* text, 64 KiB */
	tb_add(&t, REC_DATA, UINT64_MAX >> 1, UINT64_MAX >> 2, 3, 0);
	tb_add(&t, REC_DATA, 9, 0, 1 << 20, 1);    /* 1 MiB record */
	T_CHECK_EQ(enc_batch(c, &t.b, &res), 0);
	check_frames(&t.b, &res, -1);
	T_CHECK(res.n_zstd >= 2);
	T_CHECK(res.n_raw >= 3);
	enc_result_free(&res);

	/* an empty batch is fine */
	struct batch empty = {.seq = 2};
	T_CHECK_EQ(enc_batch(c, &empty, &res), 0);
	T_CHECK_EQ(res.len, 0);
	enc_result_free(&res);
	tb_free(&t);
	enc_ctx_free(c);
}

static void test_bad(void)
{
	struct enc_ctx *c = NULL;
	struct enc_result res;
	struct batch_rec br = {.type = 9, .ino = 1, .len = 4, .data = (const uint8_t *)"abcd"};
	struct batch b = {.seq = 1, .nrec = 1, .recs = &br};

	T_CHECK_EQ(enc_ctx_new(1000, &c), -EINVAL);
	T_CHECK(c == NULL);
	T_ASSERT(enc_ctx_new(1, &c) == 0);
	T_CHECK_EQ(enc_batch(c, &b, &res), -EINVAL); /* bad type */
	T_CHECK_EQ(res.err, -EINVAL);
	T_CHECK(res.frames == NULL);
	br.type = REC_DATA;
	br.len = REC_MAX_RAW + 1;
	T_CHECK_EQ(enc_batch(c, &b, &res), -EINVAL); /* too large */
	br.len = 4;
	br.data = NULL;
	T_CHECK_EQ(enc_batch(c, &b, &res), -EINVAL); /* no data */
	b.recs = NULL;
	T_CHECK_EQ(enc_batch(c, &b, &res), -EINVAL);
	enc_ctx_free(c);
	enc_ctx_free(NULL);
	enc_result_free(NULL);
}

/* A record's own level (per-directory user.blazefs.zstd_level) wins over
 * the ctx's, 0 and negative ones included (zstd's default / fast levels). */
static uint64_t stored_at(struct enc_ctx *c, const uint8_t *text, size_t len, bool own, int level, int *ret_codec)
{
	struct batch_rec br = {.type = REC_DATA, .ino = 5, .len = (uint32_t)len, .data = text,
			       .level = (int8_t)level, .own_level = own};
	struct batch b = {.seq = 1, .nrec = 1, .recs = &br, .raw_bytes = len};
	struct enc_result res;
	uint64_t st;

	T_CHECK_EQ(enc_batch(c, &b, &res), 0);
	*ret_codec = check_frames(&b, &res, -1) == 1 ? (res.n_zstd ? REC_ZSTD : REC_RAW) : -1;
	st = res.stored_bytes;
	enc_result_free(&res);
	return st;
}

static void test_own_level(void)
{
	struct tb t;
	struct enc_ctx *c = NULL;
	int codec;

	tb_init(&t);
	tb_add(&t, REC_DATA, 5, 0, 60000, 1);
	T_ASSERT(enc_ctx_new(0, &c) == 0); /* the ctx's level stores raw */
	uint64_t raw = stored_at(c, t.bufs[0], 60000, false, 0, &codec);
	T_CHECK(raw == 60000 && codec == REC_RAW);
	uint64_t fast = stored_at(c, t.bufs[0], 60000, true, -5, &codec);
	T_CHECK(codec == REC_ZSTD && fast < raw);
	uint64_t def = stored_at(c, t.bufs[0], 60000, true, 0, &codec);
	T_CHECK(codec == REC_ZSTD && def < fast);
	uint64_t best = stored_at(c, t.bufs[0], 60000, true, 19, &codec);
	T_CHECK(codec == REC_ZSTD && best < def);
	struct batch_rec br = {.type = REC_DATA, .ino = 5, .len = 10, .data = t.bufs[0], .level = 100, .own_level = true};
	struct batch b = {.seq = 1, .nrec = 1, .recs = &br, .raw_bytes = 10};
	struct enc_result res;
	T_CHECK_EQ(enc_batch(c, &b, &res), -EINVAL);
	enc_ctx_free(c);
	tb_free(&t);
}

int main(void)
{
	test_own_level();
	test_text(1);
	test_text(3);
	test_text(0);
	test_text(-1);
	test_random();
	test_mixed();
	test_bad();
	T_DONE();
}
