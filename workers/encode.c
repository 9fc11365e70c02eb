/* encode.c — turns a sealed batch into a new buffer of record frames.
 *
 * Per record, three stages, each timed with bz_now_ns into enc_result:
 *   hash     xxh3-64 of the raw bytes (rec_hash, the project's one hash);
 *   compress ZSTD_compressCCtx with the ctx's reused ZSTD_CCtx into a scratch
 *            buffer whose capacity is just under 97% of the raw length, so a
 *            record that would not shrink by 3% fails fast (dstSize_tooSmall)
 *            and is stored raw; the ctx's level <= 0 never compresses
 *            (a record carrying its own level, batch_rec.own_level, is
 *            compressed at that level, 0 and negative ones included: the
 *            per-directory user.blazefs.zstd_level); a record whose
 *            sampled byte histogram is as flat as random data's is stored
 *            raw without trying (enc_looks_random); so is a record the
 *            batcher marked raw (batch_rec.raw: the store gathers it into
 *            its file's open chunk and compresses the chunk);
 *   encode   rec_hdr_encode of the header (record.h: type, codec, ino, off,
 *            raw_len, stored_len, hash) followed by the stored payload,
 *            appended to the output buffer.
 * The output is one buffer from the pool (storage/bufpool.h) sized for the
 * worst case (every record raw: REC_HDR_MAX + raw_len each), moved into a
 * buffer of its size when the frames came out at most half as large. The
 * input batch is const and never modified; the ctx is owned by one thread
 * (one per worker, or the commit thread when workers=0), so nothing here
 * takes a lock.
 */
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "../storage/bufpool.h"
#include "../storage/log.h"
#include "../storage/record.h"
#include "encode.h"

/* A cheap test for data zstd cannot shrink (already compressed or
 * encrypted, random): the byte histogram of a 1 KiB sample spread over the
 * record. For uniformly random bytes the sum of squared counts is about
 * n + n(n-1)/256; text and most binary formats are far above that. Trying
 * zstd on such a record costs ~18 us per 4 KiB on the development machine,
 * on the commit thread's critical path for small fsync'd batches. */
#define ENC_SAMPLE_MIN 1024u /* shorter records are always tried */
#define ENC_SAMPLE_CHUNKS 16u
#define ENC_SAMPLE_CHUNK 64u

static bool enc_looks_random(const uint8_t *p, size_t len)
{
	uint32_t count[256] = {0};
	uint64_t n = 0, sumsq = 0, uniform;

	if (len < ENC_SAMPLE_MIN)
		return false;
	for (unsigned k = 0; k < ENC_SAMPLE_CHUNKS; k++) {
		size_t at = (len - ENC_SAMPLE_CHUNK) / (ENC_SAMPLE_CHUNKS - 1) * k;
		for (unsigned i = 0; i < ENC_SAMPLE_CHUNK; i++)
			count[p[at + i]]++;
		n += ENC_SAMPLE_CHUNK;
	}
	for (unsigned i = 0; i < 256; i++)
		sumsq += (uint64_t)count[i] * count[i];
	uniform = n + n * (n - 1) / 256;
	return sumsq * 4 < uniform * 5; /* within 25% of uniform */
}

struct enc_ctx {
	int level;
	ZSTD_CCtx *cctx;  /* NULL until a record needs compressing */
	uint8_t *scratch; /* compressed payload of the current record */
	size_t scratch_cap;
};

int enc_ctx_new(int level, struct enc_ctx **ret_ctx)
{
	struct enc_ctx *c;
	int r = 0;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->level = level;
	if (level > ZSTD_maxCLevel()) {
		r = -EINVAL;
		goto fail;
	}
	if (level > 0) {
		c->cctx = ZSTD_createCCtx();
		if (!c->cctx) {
			r = -ENOMEM;
			goto fail;
		}
	}
	*ret_ctx = c;
	return 0;
fail:
	enc_ctx_free(c);
	return r;
}

void enc_ctx_free(struct enc_ctx *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->cctx);
	free(c->scratch);
	free(c);
}

void enc_result_free(struct enc_result *r)
{
	if (!r)
		return;
	bp_put(r->frames, r->cap);
	r->frames = NULL;
	r->len = 0;
	r->cap = 0;
}

/* Largest stored length we accept for a compressed payload of len raw
 * bytes: stored * 100 < len * 97. */
static size_t enc_zstd_limit(size_t len) { return len ? (len * 97 - 1) / 100 : 0; }

static int enc_scratch(struct enc_ctx *c, size_t need)
{
	uint8_t *n;

	if (need <= c->scratch_cap)
		return 0;
	n = realloc(c->scratch, need);
	if (!n)
		return -ENOMEM;
	c->scratch = n;
	c->scratch_cap = need;
	return 0;
}

int enc_batch(struct enc_ctx *c, const struct batch *in, struct enc_result *ret)
{
	struct enc_result res = {0};
	size_t cap = 0, max_len = 0;
	int r = 0;

	if (!c || !in || !ret || (in->nrec && !in->recs)) {
		r = -EINVAL;
		goto out;
	}
	for (uint32_t i = 0; i < in->nrec; i++) {
		const struct batch_rec *br = &in->recs[i];
		if (br->len > REC_MAX_RAW || (br->len && !br->data) ||
		    (br->type != REC_DATA && br->type != REC_NS) ||
		    (br->hole && (br->type != REC_DATA || br->len || br->hole > REC_MAX_HOLE)) ||
		    (br->own_level && (br->level < ZSTD_minCLevel() || br->level > ZSTD_maxCLevel()))) {
			r = -EINVAL;
			goto out;
		}
		if (br->own_level && !c->cctx) {
			c->cctx = ZSTD_createCCtx();
			if (!c->cctx) {
				r = -ENOMEM;
				goto out;
			}
		}
		cap += REC_HDR_MAX + br->len;
		max_len = BZ_MAX(max_len, (size_t)br->len);
	}
	if (c->cctx) {
		r = enc_scratch(c, enc_zstd_limit(max_len) + 1);
		if (r < 0)
			goto out;
	}
	res.frames = bp_get(cap ? cap : 1, &res.cap);
	if (!res.frames) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < in->nrec; i++) {
		const struct batch_rec *br = &in->recs[i];
		struct rec_hdr h = {
			.type = br->type,
			.codec = REC_RAW,
			.ino = br->ino,
			.off = br->off,
			.raw_len = br->len,
			.stored_len = br->len,
		};
		const uint8_t *payload = br->data;
		uint64_t t0, t1, t2, t3;
		int hl;

		t0 = bz_now_ns();
		h.hash = rec_hash(br->data, br->len);
		t1 = bz_now_ns();
		if (br->hole) {
			/* a hole passes through: no payload, nothing to compress */
			h.codec = REC_HOLE;
			h.raw_len = br->hole;
		} else if (!br->raw && (br->own_level || c->level > 0) && br->len > 0 &&
			   !enc_looks_random(br->data, br->len)) {
			size_t limit = enc_zstd_limit(br->len);
			int lvl = br->own_level ? br->level : c->level;
			size_t z = limit ? ZSTD_compressCCtx(c->cctx, c->scratch, limit, br->data, br->len, lvl) : 0;
			/* any error (dstSize_tooSmall above all) means: store raw */
			if (limit && !ZSTD_isError(z) && z <= limit) {
				h.codec = REC_ZSTD;
				h.stored_len = (uint32_t)z;
				payload = c->scratch;
			}
		}
		t2 = bz_now_ns();
		hl = rec_hdr_encode(&h, res.frames + res.len, cap - res.len);
		if (hl < 0) {
			r = hl;
			goto out;
		}
		res.len += (size_t)hl;
		if (h.stored_len)
			memcpy(res.frames + res.len, payload, h.stored_len);
		res.len += h.stored_len;
		t3 = bz_now_ns();

		res.hash_ns += t1 - t0;
		res.compress_ns += t2 - t1;
		res.encode_ns += t3 - t2;
		res.raw_bytes += br->len;
		res.stored_bytes += h.stored_len;
		if (h.codec == REC_ZSTD)
			res.n_zstd++;
		else
			res.n_raw++;
	}
	/* When compression paid off, the frames travel in a buffer of their
	 * size and the worst-case one goes straight back to the pool (the
	 * next batch's): in-flight accounting charges len, so what travels
	 * must not be much larger. */
	if (res.len > 0 && res.len <= res.cap / 2) {
		size_t scap = 0;
		uint8_t *s = bp_get(res.len, &scap);
		if (s) {
			memcpy(s, res.frames, res.len);
			bp_put(res.frames, res.cap);
			res.frames = s;
			res.cap = scap;
		}
	}
	*ret = res;
	return 0;
out:
	bp_put(res.frames, res.cap);
	if (ret) {
		memset(ret, 0, sizeof(*ret));
		ret->err = r;
	}
	return r;
}
