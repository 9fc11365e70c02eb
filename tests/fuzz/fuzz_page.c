/* fuzz_page.c — page and superblock decoding of arbitrary bytes.
 * The input becomes store.db of a memory-backend store whose WAL segments
 * come from a freshly created valid store; the store is opened read-only
 * (no replay checkpoint, nothing written) and every reachable file is read.
 * Must never crash, hang, leak or read outside its buffers. */
#include "fuzz_common.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct store_opts o;

	fz_base_init();
	if (vfs_mem_clone(fz_base, &v) < 0)
		return 0;
	if (fz_put(v, "store.db", data, size, 0) < 0)
		goto out;
	fz_opts(&o, v);
	o.create = false;
	o.read_only = true;
	if (store_open(&o, &s) == 0) {
		fz_read_all(s);
		store_close(s);
	}
out:
	vfs_destroy(v);
	return 0;
}
