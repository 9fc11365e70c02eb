/* record.h — BlazeBinary record frames for blazefs: a pure codec.
 * No I/O, no globals, no allocation. Decoding never trusts a length: every
 * malformed input returns an error and never reads outside [buf, buf+len).
 * The byte layout is specified in docs/FORMAT.md ("Record frame").
 *
 * A frame = header (magic, version, type, codec, varint ino, varint offset,
 * varint raw_len, varint stored_len, xxh3-64 of the raw payload, header
 * checksum) + stored_len payload bytes.
 */
#ifndef BZ_RECORD_H
#define BZ_RECORD_H

#include "base.h"

#define REC_VERSION 1
#define REC_HDR_MAX 64           /* no encoded header is longer */
#define REC_MAX_RAW (16u << 20)  /* largest raw payload a decoder accepts (raw, zstd) */
#define REC_MAX_HOLE (1ull << 44) /* largest raw_len of a REC_HOLE record */
/* The default zstd level of chunks (-o zstd_level, store_opts, pipe_opts).
 * Chosen by tools/bench (docs/BENCH.md, "The default level"): on 256 KiB
 * chunks of the access log level 6 stores 0.127 of the raw bytes at
 * ~150 MB/s per core, level 1 0.150 at ~550 MB/s; 6 passes the stored
 * bars against btrfs zstd:3, 1 does not. */
#define BZ_ZSTD_LEVEL_DEFAULT 6

enum rec_type { REC_DATA = 1, REC_NS = 2 };
/* REC_HOLE: a data record with no payload (stored_len 0) whose raw_len
 * zero bytes are a hole: they read as zeros and store nothing. Only with
 * REC_DATA; hash = XXH3 of the empty string. */
enum rec_codec { REC_RAW = 0, REC_ZSTD = 1, REC_HOLE = 2 };

struct rec_hdr {
	uint8_t type;        /* enum rec_type */
	uint8_t codec;       /* enum rec_codec */
	uint64_t ino;        /* data: the file; ns: 0 */
	uint64_t off;        /* data: logical offset of the first raw byte; ns: 0 */
	uint64_t raw_len;    /* bytes after decoding (<= REC_MAX_RAW; REC_HOLE: <= REC_MAX_HOLE) */
	uint32_t stored_len; /* payload bytes in the frame */
	uint64_t hash;       /* XXH3_64bits of the raw payload */
};

/* Encodes h into buf[0..cap). Returns the header length (> 0) or -EINVAL
 * (invalid field) / -ENOSPC (cap too small). */
int rec_hdr_encode(const struct rec_hdr *h, uint8_t *buf, size_t cap);

/* Decodes the frame at the start of buf[0..len): checks magic, version,
 * type, codec, varint forms, lengths and the header checksum. On success
 * fills *ret_hdr, points *ret_payload at the stored payload and sets
 * *ret_frame_len = header + stored_len. Returns 0, -ENODATA (buf ends before
 * the frame does) or -EBADMSG (anything malformed). The payload hash is not
 * checked here: see rec_payload_decode. */
int rec_decode(const uint8_t *buf, size_t len, struct rec_hdr *ret_hdr, const uint8_t **ret_payload,
	       size_t *ret_frame_len);

/* Turns a stored payload into raw bytes (decompressing if codec is zstd)
 * into out[0..h->raw_len) and verifies h->hash. dctx may be NULL (a
 * one-shot context is used). Returns 0 or -EBADMSG. A REC_HOLE record
 * zero-fills out[0..raw_len): callers must treat holes without decoding
 * them unless they sized out for raw_len. */
struct ZSTD_DCtx_s;
int rec_payload_decode(const struct rec_hdr *h, const uint8_t *payload, uint8_t *out,
		       struct ZSTD_DCtx_s *dctx);

/* xxh3-64 of a buffer (the one hash of the project). */
uint64_t rec_hash(const void *buf, size_t len);
uint64_t rec_hash_seeded(const void *buf, size_t len, uint64_t seed);

/* Unsigned LEB128 varints. put returns bytes written (<= 10) or -ENOSPC;
 * get returns bytes read or -EBADMSG (overlong/unterminated/overflow). */
int rec_varint_put(uint8_t *buf, size_t cap, uint64_t v);
int rec_varint_get(const uint8_t *buf, size_t len, uint64_t *ret_v);

#endif
