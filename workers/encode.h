/* encode.h — turns a sealed batch into record frames: encode headers,
 * zstd-compress payloads (reused ZSTD_CCtx per worker), xxh3 checksums.
 * Pure CPU work on immutable input: no storage call, no shared state. Used
 * by the worker pool and, with workers=0, inline by the commit thread. */
#ifndef BZ_ENCODE_H
#define BZ_ENCODE_H

#include "batch.h"

struct enc_ctx;

/* level: zstd level (1..19; 0 or negative = store raw, no compression) of
 * the records that carry no level of their own. A record with own_level is
 * compressed at its level whatever the ctx's: any zstd level, negative ones
 * being zstd's fast levels and 0 zstd's default (3); levels outside
 * ZSTD_minCLevel()..ZSTD_maxCLevel() make enc_batch fail with -EINVAL. */
int enc_ctx_new(int level, struct enc_ctx **ret_ctx);
void enc_ctx_free(struct enc_ctx *c); /* NULL ok */

/* Encodes every record of in into a new buffer in *ret (ret->frames
 * malloc'ed). A record whose compressed size is >= 97% of its raw size is
 * stored raw. Returns 0 or -ENOMEM / -EINVAL (also stored in ret->err). */
int enc_batch(struct enc_ctx *c, const struct batch *in, struct enc_result *ret);
void enc_result_free(struct enc_result *r); /* frees frames; NULL ok */

#endif
