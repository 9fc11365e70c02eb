/* record.c — the BlazeBinary record frame codec (pure: no I/O, no globals).
 *
 * Every appended run of bytes and every namespace change becomes one record
 * frame. The frame is self-describing and self-checking; the byte layout
 * (normative copy in docs/FORMAT.md ("Record frames")) is:
 *
 *   offset  size  field
 *   0       1     magic       0xB7
 *   1       1     version     REC_VERSION (1)
 *   2       1     type        1 = REC_DATA, 2 = REC_NS
 *   3       1     codec       0 = REC_RAW, 1 = REC_ZSTD, 2 = REC_HOLE
 *   4       1-10  ino         unsigned LEB128 (REC_NS: must be 0)
 *   .       1-10  off         unsigned LEB128 (REC_NS: must be 0)
 *   .       1-7   raw_len     unsigned LEB128, <= REC_MAX_RAW
 *                             (REC_HOLE: <= REC_MAX_HOLE = 2^44)
 *   .       1-5   stored_len  unsigned LEB128; RAW: == raw_len;
 *                             ZSTD: <= ZSTD_COMPRESSBOUND(raw_len);
 *                             HOLE: 0
 *   .       8     hash        XXH3_64bits(raw payload), little endian
 *   .       4     hcheck      low 32 bits of XXH3_64bits(bytes [0, here)),
 *                             little endian
 *   .       stored_len  payload
 *
 * Varints are minimal: an encoding longer than needed (a final byte of 0x00
 * after the first), longer than 10 bytes, or overflowing 64 bits is invalid.
 * The header is 20..48 bytes (REC_HDR_MAX = 64 bounds it).
 *
 * A HOLE record (REC_DATA only) carries no payload: its raw_len bytes are
 * zeros that are not stored (a sparse file's gap); its hash is XXH3 of the
 * empty string, checked by rec_decode like a field rule.
 *
 * Decoding order: fields are validated as soon as their bytes are present, so
 * garbage (e.g. a zero-filled region: bad magic) yields -EBADMSG at once,
 * while a clean prefix of a valid frame yields -ENODATA. The header checksum
 * is checked once the header is complete, before the payload length is
 * compared with the buffer. The payload hash is checked by
 * rec_payload_decode after decompression.
 *
 * A ZSTD payload must be exactly one zstd frame (RFC 8878) whose header
 * declares its content size (= raw_len) and has the unused descriptor bit
 * (0x10 of the frame header descriptor) clear; ZSTD_compress/_compressCCtx/
 * _compress2 with default parameters produce such frames. Skippable frames,
 * concatenated frames and trailing bytes are rejected.
 *
 * Under FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION the two checksum comparisons
 * are skipped so a fuzzer can reach the code behind them.
 */
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "record.h"

#define REC_MAGIC 0xB7

#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define REC_CHECKSUMS 0
#else
#define REC_CHECKSUMS 1
#endif

uint64_t rec_hash(const void *buf, size_t len) { return XXH3_64bits(buf, len); }

uint64_t rec_hash_seeded(const void *buf, size_t len, uint64_t seed) { return XXH3_64bits_withSeed(buf, len, seed); }

int rec_varint_put(uint8_t *buf, size_t cap, uint64_t v)
{
	uint8_t tmp[10];
	int n = 0;

	do {
		uint8_t b = v & 0x7f;
		v >>= 7;
		tmp[n++] = (uint8_t)(b | (v ? 0x80 : 0));
	} while (v);
	if ((size_t)n > cap)
		return -ENOSPC;
	memcpy(buf, tmp, (size_t)n);
	return n;
}

/* Like rec_varint_get, but an encoding cut short by the end of the buffer
 * (fewer than 10 bytes seen, last one with the continuation bit) gives
 * -ENODATA instead of -EBADMSG. */
static int varint_get(const uint8_t *buf, size_t len, uint64_t *ret_v)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < 10; i++) {
		if (i == len)
			return -ENODATA;
		uint8_t b = buf[i];
		if (i == 9 && b > 1)
			return -EBADMSG; /* overflow or an 11th byte announced */
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			if (b == 0 && i > 0)
				return -EBADMSG; /* overlong */
			*ret_v = v;
			return (int)i + 1;
		}
	}
	return -EBADMSG; /* not reached: i == 9 always terminates or fails */
}

int rec_varint_get(const uint8_t *buf, size_t len, uint64_t *ret_v)
{
	int r = varint_get(buf, len, ret_v);
	return r == -ENODATA ? -EBADMSG : r;
}

static uint32_t hdr_check(const uint8_t *buf, size_t len) { return (uint32_t)XXH3_64bits(buf, len); }

static bool codec_ok(uint8_t codec) { return codec == REC_RAW || codec == REC_ZSTD || codec == REC_HOLE; }

/* Largest raw_len a codec allows. */
static uint64_t raw_max(uint8_t codec) { return codec == REC_HOLE ? REC_MAX_HOLE : REC_MAX_RAW; }

/* XXH3 of the empty string: the hash of every hole record. */
static uint64_t empty_hash(void) { return XXH3_64bits("", 0); }

/* Field rules shared by the encoder and the decoder. */
static bool hdr_fields_ok(uint8_t type, uint8_t codec, uint64_t ino, uint64_t off, uint64_t raw_len,
			  uint64_t stored_len)
{
	if (type != REC_DATA && type != REC_NS)
		return false;
	if (!codec_ok(codec))
		return false;
	if (type == REC_NS && (ino != 0 || off != 0))
		return false;
	if (raw_len > raw_max(codec))
		return false;
	if (codec == REC_HOLE && (type != REC_DATA || stored_len != 0))
		return false;
	if (codec == REC_RAW && stored_len != raw_len)
		return false;
	if (codec == REC_ZSTD && stored_len > ZSTD_COMPRESSBOUND(raw_len))
		return false;
	return true;
}

int rec_hdr_encode(const struct rec_hdr *h, uint8_t *buf, size_t cap)
{
	uint8_t tmp[REC_HDR_MAX];
	size_t n = 0;
	int r;

	if (!hdr_fields_ok(h->type, h->codec, h->ino, h->off, h->raw_len, h->stored_len) ||
	    (h->codec == REC_HOLE && h->hash != empty_hash())) {
		r = -EINVAL;
		goto out;
	}
	tmp[n++] = REC_MAGIC;
	tmp[n++] = REC_VERSION;
	tmp[n++] = h->type;
	tmp[n++] = h->codec;
	n += (size_t)rec_varint_put(tmp + n, sizeof(tmp) - n, h->ino);
	n += (size_t)rec_varint_put(tmp + n, sizeof(tmp) - n, h->off);
	n += (size_t)rec_varint_put(tmp + n, sizeof(tmp) - n, h->raw_len);
	n += (size_t)rec_varint_put(tmp + n, sizeof(tmp) - n, h->stored_len);
	bz_put_le64(tmp + n, h->hash);
	n += 8;
	bz_put_le32(tmp + n, hdr_check(tmp, n));
	n += 4;
	if (n > cap) {
		r = -ENOSPC;
		goto out;
	}
	memcpy(buf, tmp, n);
	r = (int)n;
out:
	return r;
}

int rec_decode(const uint8_t *buf, size_t len, struct rec_hdr *ret_hdr, const uint8_t **ret_payload,
	       size_t *ret_frame_len)
{
	struct rec_hdr h = {0};
	uint64_t v[4];
	size_t n = 0;
	int r;

	/* Fixed bytes, each validated as soon as it is present. */
	static const uint8_t want_fixed[2] = {REC_MAGIC, REC_VERSION};
	for (; n < 2; n++) {
		if (n == len) {
			r = -ENODATA;
			goto out;
		}
		if (buf[n] != want_fixed[n]) {
			r = -EBADMSG;
			goto out;
		}
	}
	if (n == len) {
		r = -ENODATA;
		goto out;
	}
	h.type = buf[n++];
	if (h.type != REC_DATA && h.type != REC_NS) {
		r = -EBADMSG;
		goto out;
	}
	if (n == len) {
		r = -ENODATA;
		goto out;
	}
	h.codec = buf[n++];
	if (!codec_ok(h.codec)) {
		r = -EBADMSG;
		goto out;
	}
	for (int i = 0; i < 4; i++) {
		r = varint_get(buf + n, len - n, &v[i]);
		if (r < 0)
			goto out;
		n += (size_t)r;
		/* Reject impossible lengths early: a corrupted length must not
		 * make the caller wait for (-ENODATA) megabytes that never come. */
		if ((i == 2 && v[2] > raw_max(h.codec)) || (i == 3 && v[3] > ZSTD_COMPRESSBOUND(REC_MAX_RAW))) {
			r = -EBADMSG;
			goto out;
		}
	}
	if (!hdr_fields_ok(h.type, h.codec, v[0], v[1], v[2], v[3])) {
		r = -EBADMSG;
		goto out;
	}
	h.ino = v[0];
	h.off = v[1];
	h.raw_len = v[2];
	h.stored_len = (uint32_t)v[3];
	if (len - n < 12) {
		r = -ENODATA;
		goto out;
	}
	h.hash = bz_get_le64(buf + n);
	if (h.codec == REC_HOLE && h.hash != empty_hash()) {
		r = -EBADMSG;
		goto out;
	}
	n += 8;
	if (REC_CHECKSUMS && bz_get_le32(buf + n) != hdr_check(buf, n)) {
		r = -EBADMSG;
		goto out;
	}
	n += 4;
	if (len - n < h.stored_len) {
		r = -ENODATA;
		goto out;
	}
	*ret_hdr = h;
	*ret_payload = buf + n;
	*ret_frame_len = n + h.stored_len;
	r = 0;
out:
	return r;
}

int rec_payload_decode(const struct rec_hdr *h, const uint8_t *payload, uint8_t *out, struct ZSTD_DCtx_s *dctx)
{
	uint8_t dummy;
	uint8_t *dst = h->raw_len ? out : &dummy;
	int r;

	if (!hdr_fields_ok(h->type, h->codec, h->ino, h->off, h->raw_len, h->stored_len)) {
		r = -EBADMSG;
		goto out;
	}
	if (h->codec == REC_HOLE) {
		if (h->hash != empty_hash()) {
			r = -EBADMSG;
			goto out;
		}
		if (h->raw_len)
			memset(out, 0, h->raw_len);
		r = 0;
		goto out;
	} else if (h->codec == REC_RAW) {
		if (h->raw_len)
			memcpy(out, payload, h->raw_len);
	} else {
		/* Exactly one zstd frame that declares raw_len as its content
		 * size, with the unused descriptor bit clear: flips of bits the
		 * zstd decoder would ignore are caught here. */
		if (h->stored_len < 5 || bz_get_le32(payload) != ZSTD_MAGICNUMBER || (payload[4] & 0x10) ||
		    ZSTD_getFrameContentSize(payload, h->stored_len) != h->raw_len ||
		    ZSTD_findFrameCompressedSize(payload, h->stored_len) != h->stored_len) {
			r = -EBADMSG;
			goto out;
		}
		size_t got = dctx ? ZSTD_decompressDCtx(dctx, dst, h->raw_len, payload, h->stored_len)
				  : ZSTD_decompress(dst, h->raw_len, payload, h->stored_len);
		if (ZSTD_isError(got) || got != h->raw_len) {
			r = -EBADMSG;
			goto out;
		}
	}
	if (REC_CHECKSUMS && XXH3_64bits(dst, h->raw_len) != h->hash) {
		r = -EBADMSG;
		goto out;
	}
	r = 0;
out:
	return r;
}
