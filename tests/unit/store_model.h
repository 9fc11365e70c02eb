/* store_model.h — what the PageStore tests (test_store.c, test_store_v2.c)
 * drive the engine with and check it against: a model of every file's bytes
 * and of the namespace (struct model), WAL batches built by hand (struct
 * batch: data frames, holes, namespace operations), a deterministic random
 * stream, and the comparisons (sm_verify: every file's bytes and the whole
 * namespace as the store reads them back). store_model.c implements it.
 */
#ifndef BZ_TEST_STORE_MODEL_H
#define BZ_TEST_STORE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/ns.h"
#include "storage/nsop.h"
#include "storage/store.h"
#include "storage/vfs.h"

#define MAX_FILES 64

struct mfile {
	uint64_t ino;
	uint8_t *data;
	size_t len, cap;
	bool live;
};

struct model {
	struct mfile f[MAX_FILES];
	int n;
	struct ns *ns;
	int64_t now;
};

struct batch {
	uint8_t *p;
	size_t len, cap;
};

struct dump {
	char *p;
	size_t len, cap;
};

/* the random stream (xorshift); tests reseed it by assignment */
extern uint64_t sm_rng_state;

uint64_t sm_rnd(void);
void sm_model_init(struct model *m);
void sm_model_free(struct model *m);
void sm_batch_put(struct batch *b, const void *src, size_t n);
/* A record frame (zstd at level, or raw when level is 0 or zstd does not
 * shrink it) appended to b; sm_frame_add: level 1 when zstd. */
void sm_frame_add_level(struct batch *b, uint8_t type, uint64_t ino, uint64_t off, const void *raw, size_t len,
			int level);
void sm_frame_add(struct batch *b, uint8_t type, uint64_t ino, uint64_t off, const void *raw, size_t len, bool zstd);
int sm_nsop_add(struct model *m, struct batch *b, struct ns_op *op);
struct mfile *sm_model_file(struct model *m, uint64_t ino);
uint64_t sm_mk_file(struct model *m, struct batch *b, uint64_t parent, const char *name);
int sm_rm_file(struct model *m, struct batch *b, uint64_t parent, const char *name, uint64_t ino);
uint64_t sm_mk_node(struct model *m, struct batch *b, uint64_t parent, const char *name, uint32_t mode);
void sm_fill(uint8_t *p, size_t n, uint64_t ino, uint64_t off, bool text);
void sm_append_bytes(struct model *m, struct batch *b, struct mfile *f, uint8_t *p, size_t len, bool zstd);
void sm_append(struct model *m, struct batch *b, struct mfile *f, size_t len, bool zstd);
void sm_append_packable(struct model *m, struct batch *b, struct mfile *f, size_t len);
int sm_commit(struct store *s, struct model *m, struct batch *b);
void sm_dump_put(struct dump *d, const char *s, size_t n);
char *sm_ns_dump(struct ns *ns);
int sm_verify(struct store *s, struct model *m, int random_reads);
void sm_opts(struct store_opts *o, struct vfs *v);
int sm_open_store(struct vfs *v, struct store **ret);
void sm_workload(struct store *s, struct model *m, int nf, int rounds, int ckpt_every);

#endif
