/* batch.h — the unit of work between the batcher, the workers and the
 * commit thread, and its ownership rules.
 *
 * Ownership: the batcher (storage/pipeline.c) builds a batch under its
 * lock, then seals it: from then on recs[] and every byte they point to are
 * immutable and the batch belongs to exactly one stage at a time —
 *   sealed --(pool job)--> one worker writes ->out --(completion queue)-->
 *   commit thread reads ->out, appends, applies, frees.
 * The completion queue's mutex is the only barrier needed between the
 * worker's writes to ->out and the commit thread's reads.
 */
#ifndef BZ_BATCH_H
#define BZ_BATCH_H

#include "../storage/base.h"

struct batch_rec {
	uint8_t type;        /* REC_DATA or REC_NS (storage/record.h) */
	uint64_t ino;        /* data: the file; ns: 0 */
	uint64_t off;        /* data: logical offset */
	uint32_t len;        /* raw bytes */
	const uint8_t *data; /* raw bytes, owned by the batch */
	uint64_t hole;       /* data: a hole of this many zero bytes (len 0, no data) */
	int8_t level;        /* with own_level: the zstd level of this record */
	bool own_level;      /* else the encoder's (enc_ctx_new) level */
	bool raw;            /* data: log the payload uncompressed -- the store gathers
			      * it into the file's open chunk and compresses the chunk
			      * (storage/store_chunk.c), so compressing it here would
			      * only be undone on the commit thread */
};

/* What encoding a batch produced: a new buffer of concatenated record frames. */
struct enc_result {
	uint8_t *frames;     /* from bp_get (storage/bufpool.h); owned by the batch after encoding */
	size_t len;          /* bytes of frames */
	size_t cap;          /* capacity of frames, for bp_put (enc_result_free) */
	uint64_t raw_bytes;  /* sum of record raw lengths */
	uint64_t stored_bytes; /* sum of record payload bytes as stored */
	uint32_t n_zstd, n_raw; /* records stored compressed / raw */
	uint64_t encode_ns, compress_ns, hash_ns; /* time spent per stage */
	int err;             /* 0 or negative errno */
};

struct batch {
	uint64_t seq;        /* seal order, from 1, no gaps */
	int64_t time_ns;     /* coarse wall clock at the first record (mtime/ctime of the files appended in it) */
	uint64_t first_ns;   /* monotonic time the first record entered the batch */
	uint64_t sealed_ns;  /* monotonic time of sealing */
	uint32_t nrec;
	struct batch_rec *recs;
	uint64_t raw_bytes;
	struct enc_result out; /* written by the encoder, read by the commit thread */
	void *owner_data;    /* the pipeline's bookkeeping (waiters, buffers) */
	struct batch *next;  /* free for the current owner's queues */
};

#endif
