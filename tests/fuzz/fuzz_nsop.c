/* fuzz_nsop.c — libFuzzer target for the namespace-op payload decoder.
 * Whatever decodes must be a valid op: it re-encodes to exactly the input
 * bytes, and its names obey the rules. The op is also applied to a small
 * namespace to exercise ns_apply's validation on arbitrary input when built
 * with storage/ns.c (define FUZZ_NSOP_APPLY). */
#include <stdlib.h>
#include <string.h>

#include "storage/nsop.h"
#ifdef FUZZ_NSOP_APPLY
#include "storage/ns.h"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ns_op op;
	uint8_t re[NSOP_MAX_LEN];

	if (nsop_decode(data, size, &op) != 0)
		return 0;
	bool xattr = op.kind == NS_SETXATTR || op.kind == NS_REMOVEXATTR;
	if (op.name_len > (xattr ? NS_XATTR_NAME_MAX : NS_NAME_MAX) ||
	    op.name2_len > (xattr ? NS_XATTR_VALUE_MAX : NS_SYMLINK_MAX))
		abort();
	if (op.name && ((!xattr && memchr(op.name, '/', op.name_len)) || memchr(op.name, 0, op.name_len)))
		abort();
	if (op.name && ((const uint8_t *)op.name < data || (const uint8_t *)op.name + op.name_len > data + size))
		abort();
	if (op.name2 && ((const uint8_t *)op.name2 < data || (const uint8_t *)op.name2 + op.name2_len > data + size))
		abort();
	int n = nsop_encode(&op, re, sizeof(re));
	if (n < 0 || (size_t)n != size || memcmp(re, data, size) != 0)
		abort();
#ifdef FUZZ_NSOP_APPLY
	struct ns *ns;
	if (ns_new(&ns) == 0) {
		struct ns_op mk = {.kind = NS_MKDIR, .parent = 1, .name = "d", .name_len = 1, .ino = 2,
				   .mode = 040755};
		struct ns_op cr = {.kind = NS_CREATE, .parent = 2, .name = "f", .name_len = 1, .ino = 3,
				   .mode = 0100644};
		(void)ns_apply(ns, &mk);
		(void)ns_apply(ns, &cr);
		(void)ns_apply(ns, &op);
		char v[64];
		(void)ns_listxattr(ns, op.ino ? op.ino : 3, v, sizeof(v));
		ns_free(ns);
	}
#endif
	return 0;
}
