/* fuzz_page.c — page and superblock decoding of arbitrary bytes.
 * The input becomes store.db of a memory-backend store whose WAL segments
 * come from a freshly created valid store; the store is opened read-only
 * (no replay checkpoint, nothing written) and every reachable file is read.
 * Must never crash, hang, leak or read outside its buffers. */
#include "fuzz_common.h"

static struct vfs *g_base; /* a valid empty store (WAL segments reused) */

static void fz_init(void)
{
	struct store_opts o;
	struct store *s = NULL;
	if (g_base)
		return;
	bz_log_set_level((enum bz_log_level)-1); /* silent: every input is an error case */
	if (vfs_mem_new(&g_base) < 0)
		abort();
	fz_opts(&o, g_base);
	if (store_open(&o, &s) < 0 || store_close(s) < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct store_opts o;

	fz_init();
	if (vfs_mem_clone(g_base, &v) < 0)
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
