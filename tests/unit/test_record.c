/* test_record.c — the record frame codec: round trips over many sizes with
 * raw and zstd payloads, every single-bit flip and every truncation of small
 * frames, varint edge cases, and frames built by an independent encoder
 * written from docs/FORMAT.md ("Record frames"). */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "storage/record.h"
#include "t.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Text-like, compressible bytes. */
static void fill(uint8_t *p, size_t n)
{
	static const char *words[] = {"blaze ", "record ", "append ", "fsync ", "log\n", "42 ", "page "};
	size_t i = 0;
	while (i < n) {
		const char *w = words[rnd() % BZ_ARRAY_SIZE(words)];
		for (; *w && i < n; w++)
			p[i++] = (uint8_t)*w;
	}
}

/* Builds a full frame: header + payload (zstd-compressed if zstd). Returns
 * the frame length. */
static size_t make_frame(uint8_t *frame, size_t cap, uint8_t type, bool zstd, uint64_t ino, uint64_t off,
			 const uint8_t *raw, size_t raw_len)
{
	struct rec_hdr h = {.type = type, .codec = zstd ? REC_ZSTD : REC_RAW, .ino = ino, .off = off,
			    .raw_len = (uint32_t)raw_len, .hash = rec_hash(raw, raw_len)};
	uint8_t hdr[REC_HDR_MAX];
	size_t stored;
	uint8_t *tmp = malloc(ZSTD_compressBound(raw_len) + 1);
	T_ASSERT(tmp);
	if (zstd) {
		stored = ZSTD_compress(tmp, ZSTD_compressBound(raw_len), raw, raw_len, 1);
		T_ASSERT(!ZSTD_isError(stored));
	} else {
		stored = raw_len;
		if (raw_len)
			memcpy(tmp, raw, raw_len);
	}
	h.stored_len = (uint32_t)stored;
	int hl = rec_hdr_encode(&h, hdr, sizeof(hdr));
	T_ASSERT(hl > 0 && hl <= REC_HDR_MAX);
	T_ASSERT((size_t)hl + stored <= cap);
	memcpy(frame, hdr, (size_t)hl);
	if (stored)
		memcpy(frame + hl, tmp, stored);
	free(tmp);
	return (size_t)hl + stored;
}

static void test_roundtrip_size(size_t n, ZSTD_DCtx *dctx)
{
	size_t cap = ZSTD_compressBound(n) + REC_HDR_MAX + 16;
	uint8_t *raw = malloc(n + 1), *frame = malloc(cap), *out = malloc(n + 1);
	T_ASSERT(raw && frame && out);
	fill(raw, n);
	for (int z = 0; z < 2; z++) {
		uint64_t ino = rnd() >> (rnd() % 64), off = rnd() >> (rnd() % 64);
		size_t fl = make_frame(frame, cap, REC_DATA, z, ino, off, raw, n);
		/* trailing bytes must be ignored */
		frame[fl] = 0xAA;
		struct rec_hdr h;
		const uint8_t *pl = NULL;
		size_t got_len = 0;
		int r = rec_decode(frame, fl + 1, &h, &pl, &got_len);
		T_CHECK_EQ(r, 0);
		if (r)
			continue;
		T_CHECK_EQ(got_len, fl);
		T_CHECK_EQ(h.type, REC_DATA);
		T_CHECK_EQ(h.codec, z ? REC_ZSTD : REC_RAW);
		T_CHECK(h.ino == ino && h.off == off);
		T_CHECK_EQ(h.raw_len, n);
		T_CHECK(pl + h.stored_len == frame + fl);
		memset(out, 0x55, n + 1);
		T_CHECK_EQ(rec_payload_decode(&h, pl, out, (n & 1) ? dctx : NULL), 0);
		T_CHECK(memcmp(out, raw, n) == 0);
		T_CHECK_EQ(out[n], 0x55); /* wrote exactly raw_len bytes */
	}
	free(raw);
	free(frame);
	free(out);
}

static void test_roundtrips(void)
{
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	T_ASSERT(dctx);
	for (size_t n = 0; n <= 300; n++)
		test_roundtrip_size(n, dctx);
	for (size_t p = 512; p <= (1u << 20); p <<= 1) {
		test_roundtrip_size(p - 1, dctx);
		test_roundtrip_size(p, dctx);
		if (p < (1u << 20))
			test_roundtrip_size(p + 1, dctx);
	}
	ZSTD_freeDCtx(dctx);
}

/* Every bit flip of a small frame is caught, by rec_decode or else by
 * rec_payload_decode; every truncation gives -ENODATA. */
static void test_flips_and_truncations(void)
{
	uint8_t raw[100], frame[512], out[100];
	const struct {
		uint8_t type;
		bool zstd;
		uint64_t ino, off;
		size_t n;
	} cases[] = {
		{REC_DATA, false, 7, 12345, 40}, {REC_DATA, true, 1ull << 40, 1ull << 33, 100},
		{REC_NS, false, 0, 0, 30},       {REC_NS, true, 0, 0, 100},
		{REC_DATA, false, 2, 0, 0},      {REC_DATA, true, UINT64_MAX, UINT64_MAX, 0},
	};
	for (size_t c = 0; c < BZ_ARRAY_SIZE(cases); c++) {
		fill(raw, sizeof(raw));
		size_t fl = make_frame(frame, sizeof(frame), cases[c].type, cases[c].zstd, cases[c].ino, cases[c].off,
				       raw, cases[c].n);
		struct rec_hdr h;
		const uint8_t *pl;
		size_t got;
		T_CHECK_EQ(rec_decode(frame, fl, &h, &pl, &got), 0);
		T_CHECK_EQ(rec_payload_decode(&h, pl, out, NULL), 0);
		for (size_t t = 0; t < fl; t++) {
			struct rec_hdr h2 = {.type = 99};
			const uint8_t *pl2 = NULL;
			size_t got2 = 12345;
			T_CHECK_EQ(rec_decode(frame, t, &h2, &pl2, &got2), -ENODATA);
			T_CHECK(h2.type == 99 && pl2 == NULL && got2 == 12345); /* untouched */
		}
		int escaped = 0, zstd_ignored = 0;
		for (size_t bit = 0; bit < fl * 8; bit++) {
			frame[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			int r = rec_decode(frame, fl, &h, &pl, &got);
			if (r == 0) {
				/* only a flip inside the payload may pass the header */
				uint8_t big[1024];
				/* zstd ignores a few reserved bits inside compressed
				 * blocks; such a flip must still yield the original
				 * bytes. Raw payloads catch every flip. */
				int pr = h.raw_len > sizeof(big) ? 0 : rec_payload_decode(&h, pl, big, NULL);
				bool same = pr == 0 && h.codec == REC_ZSTD && h.raw_len == cases[c].n &&
					    memcmp(big, raw, cases[c].n) == 0;
				if (pr == 0 && same)
					zstd_ignored++;
				if (got != fl || (pr == 0 && !same)) {
					fprintf(stderr, "case %zu bit %zu escaped\n", c, bit);
					escaped++;
				}
			} else if (r != -EBADMSG && r != -ENODATA) {
				fprintf(stderr, "case %zu bit %zu: %d\n", c, bit, r);
				escaped++;
			}
			frame[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
		T_CHECK_EQ(escaped, 0);
		if (!cases[c].zstd)
			T_CHECK_EQ(zstd_ignored, 0);
		else
			T_CHECK(zstd_ignored <= 4);
	}
}

static void test_varints(void)
{
	const uint64_t vals[] = {0, 1, 127, 128, 255, 16383, 16384, (1ull << 32) - 1, 1ull << 32,
				 (1ull << 56) - 1, 1ull << 63, UINT64_MAX - 1, UINT64_MAX};
	const int lens[] = {1, 1, 1, 2, 2, 2, 3, 5, 5, 8, 10, 10, 10};
	for (size_t i = 0; i < BZ_ARRAY_SIZE(vals); i++) {
		uint8_t b[16];
		uint64_t v = 0;
		int n = rec_varint_put(b, sizeof(b), vals[i]);
		T_CHECK_EQ(n, lens[i]);
		T_CHECK_EQ(rec_varint_get(b, (size_t)n, &v), n);
		T_CHECK(v == vals[i]);
		T_CHECK_EQ(rec_varint_put(b, (size_t)n - 1, vals[i]), -ENOSPC);
		if (n > 1)
			T_CHECK_EQ(rec_varint_get(b, (size_t)n - 1, &v), -EBADMSG); /* unterminated */
	}
	/* UINT64_MAX is ff x9 01 */
	uint8_t max[10];
	memset(max, 0xff, 9);
	max[9] = 0x01;
	uint64_t v = 0;
	T_CHECK_EQ(rec_varint_get(max, 10, &v), 10);
	T_CHECK(v == UINT64_MAX);
	max[9] = 0x02; /* overflow */
	v = 7;
	T_CHECK_EQ(rec_varint_get(max, 10, &v), -EBADMSG);
	T_CHECK_EQ(v, 7);
	max[9] = 0x81; /* 11 bytes */
	T_CHECK_EQ(rec_varint_get(max, 10, &v), -EBADMSG);
	const uint8_t over1[] = {0x80, 0x00}, over2[] = {0xff, 0x80, 0x00}, ok0[] = {0x00};
	T_CHECK_EQ(rec_varint_get(over1, 2, &v), -EBADMSG);
	T_CHECK_EQ(rec_varint_get(over2, 3, &v), -EBADMSG);
	T_CHECK_EQ(rec_varint_get(ok0, 1, &v), 1);
	T_CHECK_EQ(rec_varint_get(ok0, 0, &v), -EBADMSG);
	uint8_t all80[12];
	memset(all80, 0x80, sizeof(all80));
	T_CHECK_EQ(rec_varint_get(all80, sizeof(all80), &v), -EBADMSG);
	/* every value round-trips over a random sample */
	for (int i = 0; i < 100000; i++) {
		uint64_t x = rnd() >> (rnd() % 64), y = 0;
		uint8_t b[10];
		int n = rec_varint_put(b, sizeof(b), x);
		T_ASSERT(n > 0);
		if (rec_varint_get(b, (size_t)n, &y) != n || x != y) {
			T_CHECK(0);
			break;
		}
	}
}

/* A second, independent encoder straight from docs/FORMAT.md ("Record frames"):
 * lets the test craft headers with any field values and a correct checksum. */
static size_t doc_put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}
static size_t doc_hdr(uint8_t *p, uint8_t magic, uint8_t ver, uint8_t type, uint8_t codec, uint64_t ino,
		      uint64_t off, uint64_t raw_len, uint64_t stored_len, uint64_t hash)
{
	size_t n = 0;
	p[n++] = magic;
	p[n++] = ver;
	p[n++] = type;
	p[n++] = codec;
	n += doc_put_varint(p + n, ino);
	n += doc_put_varint(p + n, off);
	n += doc_put_varint(p + n, raw_len);
	n += doc_put_varint(p + n, stored_len);
	for (int i = 0; i < 8; i++)
		p[n++] = (uint8_t)(hash >> (8 * i));
	uint32_t c = (uint32_t)XXH3_64bits(p, n);
	for (int i = 0; i < 4; i++)
		p[n++] = (uint8_t)(c >> (8 * i));
	return n;
}

static int dec(const uint8_t *b, size_t n)
{
	struct rec_hdr h;
	const uint8_t *pl;
	size_t fl;
	return rec_decode(b, n, &h, &pl, &fl);
}

static void test_fields(void)
{
	uint8_t b[256] = {0};
	size_t n;
	/* the documented layout decodes; payload "hello" raw */
	n = doc_hdr(b, 0xB7, 1, REC_DATA, REC_RAW, 5, 6, 5, 5, XXH3_64bits("hello", 5));
	memcpy(b + n, "hello", 5);
	{
		struct rec_hdr h;
		const uint8_t *pl;
		size_t fl;
		uint8_t out[5];
		T_CHECK_EQ(rec_decode(b, n + 5, &h, &pl, &fl), 0);
		T_CHECK_EQ(fl, n + 5);
		T_CHECK_EQ(n, 4 + 4 + 12);
		T_CHECK_EQ(rec_payload_decode(&h, pl, out, NULL), 0);
		T_CHECK(memcmp(out, "hello", 5) == 0);
		/* the library's encoder makes exactly the same bytes */
		uint8_t e[REC_HDR_MAX];
		T_CHECK_EQ(rec_hdr_encode(&h, e, sizeof(e)), (int)n);
		T_CHECK(memcmp(e, b, n) == 0);
	}
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB6, 1, REC_DATA, REC_RAW, 1, 0, 0, 0, 0)), -EBADMSG);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 2, REC_DATA, REC_RAW, 1, 0, 0, 0, 0)), -EBADMSG);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, 0, REC_RAW, 1, 0, 0, 0, 0)), -EBADMSG);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, 3, REC_RAW, 1, 0, 0, 0, 0)), -EBADMSG);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, 2, 1, 0, 0, 0, 0)), -EBADMSG);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_NS, REC_RAW, 1, 0, 0, 0, 0)), -EBADMSG);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_NS, REC_RAW, 0, 1, 0, 0, 0)), -EBADMSG);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_NS, REC_RAW, 0, 0, 0, 0, 0)), 0);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, REC_RAW, 1, 0, 3, 4, 0)), -EBADMSG);
	/* raw_len too big: rejected even though the buffer is short */
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, REC_RAW, 1, 0, REC_MAX_RAW + 1, REC_MAX_RAW + 1, 0)),
		   -EBADMSG);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, REC_RAW, 1, 0, REC_MAX_RAW, REC_MAX_RAW, 0)), -ENODATA);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, REC_ZSTD, 1, 0, 0, 65, 0)), -EBADMSG);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, REC_ZSTD, 1, 0, 100, 150, 0)), -ENODATA);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, REC_RAW, 1ull << 63, UINT64_MAX, 0, 0, 0)), 0);
	/* header checksum */
	n = doc_hdr(b, 0xB7, 1, REC_DATA, REC_RAW, 1, 0, 0, 0, 0);
	b[n - 1] ^= 0x80;
	T_CHECK_EQ(dec(b, n), -EBADMSG);
	/* zero-filled and 0xff-filled regions are garbage, not "need more" */
	memset(b, 0, sizeof(b));
	T_CHECK_EQ(dec(b, sizeof(b)), -EBADMSG);
	T_CHECK_EQ(dec(b, 1), -EBADMSG);
	memset(b, 0xff, sizeof(b));
	T_CHECK_EQ(dec(b, sizeof(b)), -EBADMSG);
	T_CHECK_EQ(dec(b, 0), -ENODATA);

	/* zstd payload whose decoded size differs from raw_len */
	uint8_t raw[64], z[256], out[128];
	fill(raw, sizeof(raw));
	size_t zl = ZSTD_compress(z, sizeof(z), raw, sizeof(raw), 1);
	T_ASSERT(!ZSTD_isError(zl));
	struct rec_hdr h = {.type = REC_DATA, .codec = REC_ZSTD, .ino = 2, .raw_len = 65,
			    .stored_len = (uint32_t)zl, .hash = rec_hash(raw, 64)};
	T_CHECK_EQ(rec_payload_decode(&h, z, out, NULL), -EBADMSG);
	h.raw_len = 63;
	T_CHECK_EQ(rec_payload_decode(&h, z, out, NULL), -EBADMSG);
	h.raw_len = 64;
	T_CHECK_EQ(rec_payload_decode(&h, z, out, NULL), 0);
	h.hash ^= 1;
	T_CHECK_EQ(rec_payload_decode(&h, z, out, NULL), -EBADMSG);
	h.hash ^= 1;
	h.stored_len = (uint32_t)zl - 1; /* truncated zstd frame */
	T_CHECK_EQ(rec_payload_decode(&h, z, out, NULL), -EBADMSG);
	h.stored_len = (uint32_t)zl + 1; /* trailing byte after the zstd frame */
	z[zl] = 0;
	T_CHECK_EQ(rec_payload_decode(&h, z, out, NULL), -EBADMSG);
	/* two concatenated frames decoding to the right bytes */
	size_t zl1 = ZSTD_compress(z, sizeof(z), raw, 32, 1);
	size_t zl2 = ZSTD_compress(z + zl1, sizeof(z) - zl1, raw + 32, 32, 1);
	T_ASSERT(!ZSTD_isError(zl1) && !ZSTD_isError(zl2));
	h.stored_len = (uint32_t)(zl1 + zl2);
	T_CHECK_EQ(ZSTD_decompress(out, 64, z, zl1 + zl2), 64);
	T_CHECK_EQ(rec_payload_decode(&h, z, out, NULL), -EBADMSG);
	/* a frame without a content size (streaming compression) */
	{
		ZSTD_CCtx *cc = ZSTD_createCCtx();
		T_ASSERT(cc);
		ZSTD_inBuffer in = {raw, 64, 0};
		ZSTD_outBuffer o = {z, sizeof(z), 0};
		(void)ZSTD_compressStream2(cc, &o, &in, ZSTD_e_continue);
		T_ASSERT(ZSTD_compressStream2(cc, &o, &in, ZSTD_e_end) == 0);
		ZSTD_freeCCtx(cc);
		T_CHECK(ZSTD_getFrameContentSize(z, o.pos) == ZSTD_CONTENTSIZE_UNKNOWN);
		h.stored_len = (uint32_t)o.pos;
		T_CHECK_EQ(rec_payload_decode(&h, z, out, NULL), -EBADMSG);
	}
	/* a header the decoder would reject is rejected here too */
	h.stored_len = (uint32_t)zl;
	h.type = REC_NS;
	T_CHECK_EQ(rec_payload_decode(&h, z, out, NULL), -EBADMSG);
}

/* REC_HOLE (docs/FORMAT.md "Record frame"): a data record with no payload
 * whose raw_len bytes read as zeros; raw_len up to 2^44; hash = XXH3(""). */
static void test_holes(void)
{
	uint8_t b[256] = {0};
	const uint64_t eh = XXH3_64bits("", 0);
	struct rec_hdr h;
	const uint8_t *pl;
	size_t fl, n;

	/* an 8 TiB hole: header only, built from the document */
	n = doc_hdr(b, 0xB7, 1, REC_DATA, REC_HOLE, 7, 4096, 8ull << 40, 0, eh);
	T_CHECK_EQ(rec_decode(b, n, &h, &pl, &fl), 0);
	T_CHECK_EQ(fl, n);
	T_CHECK_EQ(h.codec, REC_HOLE);
	T_CHECK(h.raw_len == 8ull << 40);
	T_CHECK_EQ(h.stored_len, 0);
	T_CHECK_EQ(h.ino, 7);
	T_CHECK_EQ(h.off, 4096);
	/* the library encodes the same bytes */
	uint8_t e[REC_HDR_MAX];
	T_CHECK_EQ(rec_hdr_encode(&h, e, sizeof(e)), (int)n);
	T_CHECK(memcmp(e, b, n) == 0);
	/* every proper prefix needs more bytes */
	for (size_t i = 0; i < n; i++)
		T_CHECK_EQ(dec(b, i), -ENODATA);
	/* the largest hole, and one byte more */
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, REC_HOLE, 2, 0, REC_MAX_HOLE, 0, eh)), 0);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, REC_HOLE, 2, 0, REC_MAX_HOLE + 1, 0, eh)), -EBADMSG);
	/* a payload, a namespace hole, another hash: malformed */
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, REC_HOLE, 2, 0, 10, 10, eh)), -EBADMSG);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_NS, REC_HOLE, 0, 0, 10, 0, eh)), -EBADMSG);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, REC_HOLE, 2, 0, 10, 0, eh ^ 1)), -EBADMSG);
	/* the 16 MiB limit stays for the other codecs */
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, REC_RAW, 2, 0, REC_MAX_RAW + 1, REC_MAX_RAW + 1, 0)),
		   -EBADMSG);
	T_CHECK_EQ(dec(b, doc_hdr(b, 0xB7, 1, REC_DATA, 3, 2, 0, 0, 0, eh)), -EBADMSG);
	/* every single-bit flip of a hole frame is caught */
	n = doc_hdr(b, 0xB7, 1, REC_DATA, REC_HOLE, 9, 1, 12345, 0, eh);
	for (size_t i = 0; i < n * 8; i++) {
		b[i / 8] ^= (uint8_t)(1u << (i % 8));
		int r = rec_decode(b, n, &h, &pl, &fl);
		T_CHECK(r < 0 || h.raw_len != 12345 || h.ino != 9 || h.off != 1 || fl != n ||
			h.codec != REC_HOLE ? r != 0 : false);
		b[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	/* decoding a small hole yields zeros */
	T_CHECK_EQ(rec_decode(b, n, &h, &pl, &fl), 0);
	h.raw_len = 16;
	uint8_t out[16];
	memset(out, 0xee, sizeof(out));
	T_CHECK_EQ(rec_payload_decode(&h, pl, out, NULL), 0);
	for (size_t i = 0; i < sizeof(out); i++)
		T_CHECK_EQ(out[i], 0);
	h.hash ^= 1;
	T_CHECK_EQ(rec_payload_decode(&h, pl, out, NULL), -EBADMSG);
	/* the encoder refuses what the decoder refuses */
	struct rec_hdr g = {.type = REC_DATA, .codec = REC_HOLE, .ino = 2, .raw_len = 1, .hash = eh};
	T_CHECK(rec_hdr_encode(&g, e, sizeof(e)) > 0);
	g.hash = 0;
	T_CHECK_EQ(rec_hdr_encode(&g, e, sizeof(e)), -EINVAL);
	g.hash = eh;
	g.stored_len = 1;
	T_CHECK_EQ(rec_hdr_encode(&g, e, sizeof(e)), -EINVAL);
	g.stored_len = 0;
	g.raw_len = REC_MAX_HOLE + 1;
	T_CHECK_EQ(rec_hdr_encode(&g, e, sizeof(e)), -EINVAL);
	g.raw_len = REC_MAX_HOLE;
	g.ino = g.off = UINT64_MAX;
	int hl = rec_hdr_encode(&g, e, sizeof(e));
	T_CHECK(hl > 0 && hl <= REC_HDR_MAX);
}

static void test_encode_errors(void)
{
	uint8_t b[REC_HDR_MAX];
	struct rec_hdr h = {.type = REC_DATA, .codec = REC_RAW, .ino = 2, .raw_len = 10, .stored_len = 10};
	T_CHECK(rec_hdr_encode(&h, b, sizeof(b)) > 0);
	struct rec_hdr bad = h;
	bad.stored_len = 9;
	T_CHECK_EQ(rec_hdr_encode(&bad, b, sizeof(b)), -EINVAL);
	bad = h;
	bad.type = REC_NS;
	T_CHECK_EQ(rec_hdr_encode(&bad, b, sizeof(b)), -EINVAL);
	bad = h;
	bad.type = 0;
	T_CHECK_EQ(rec_hdr_encode(&bad, b, sizeof(b)), -EINVAL);
	bad = h;
	bad.codec = 7;
	T_CHECK_EQ(rec_hdr_encode(&bad, b, sizeof(b)), -EINVAL);
	bad = h;
	bad.raw_len = bad.stored_len = REC_MAX_RAW + 1;
	T_CHECK_EQ(rec_hdr_encode(&bad, b, sizeof(b)), -EINVAL);
	/* the largest header fits REC_HDR_MAX; too small a buffer is untouched */
	struct rec_hdr big = {.type = REC_DATA, .codec = REC_ZSTD, .ino = UINT64_MAX, .off = UINT64_MAX,
			      .raw_len = REC_MAX_RAW, .stored_len = (uint32_t)ZSTD_COMPRESSBOUND(REC_MAX_RAW),
			      .hash = UINT64_MAX};
	int n = rec_hdr_encode(&big, b, sizeof(b));
	T_CHECK(n > 0 && n <= REC_HDR_MAX);
	uint8_t small[REC_HDR_MAX];
	memset(small, 0x11, sizeof(small));
	T_CHECK_EQ(rec_hdr_encode(&big, small, (size_t)n - 1), -ENOSPC);
	T_CHECK_EQ(small[0], 0x11);
	T_CHECK(rec_hash("abc", 3) == XXH3_64bits("abc", 3));
	T_CHECK(rec_hash_seeded("abc", 3, 9) == XXH3_64bits_withSeed("abc", 3, 9));
	T_CHECK(rec_hash_seeded("abc", 3, 9) != rec_hash_seeded("abc", 3, 10));
}

int main(void)
{
	test_varints();
	test_encode_errors();
	test_fields();
	test_holes();
	test_flips_and_truncations();
	test_roundtrips();
	T_DONE();
}
