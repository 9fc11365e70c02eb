/* fuzz_recover.c — recovery from arbitrary WAL and store bytes.
 * Input layout: u32 le n, u8 segment, then n' = n mod (size - 5 + 1) bytes of
 * store.db, then the rest = the first bytes of WAL segment number (segment
 * mod segments), zero-padded to the segment size. n' == 0 keeps the store.db of a freshly created valid
 * store, so the fuzzer can work on the WAL alone. The store is opened
 * read-write (replay + checkpoint), every file is read, then it is closed
 * and opened once more. Must never crash, hang, leak or read out of bounds. */
#include "fuzz_common.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vfs *v = NULL;
	struct store *s = NULL;
	struct store_opts o;
	size_t ndb;
	char seg[16];

	if (size < 5)
		return 0;
	fz_base_init();
	ndb = (size_t)(((uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
			(uint32_t)data[3] << 24) % (uint32_t)(size - 5 + 1));
	snprintf(seg, sizeof(seg), "wal.%03u", (unsigned)(data[4] % FZ_SEGMENTS));
	data += 5;
	size -= 5;
	if (size - ndb > FZ_SEG_BYTES)
		size = ndb + FZ_SEG_BYTES;
	if (vfs_mem_clone(fz_base, &v) < 0)
		return 0;
	if (ndb && fz_put(v, "store.db", data, ndb, 0) < 0)
		goto out;
	if (fz_put(v, seg, data + ndb, size - ndb, FZ_SEG_BYTES) < 0)
		goto out;
	fz_opts(&o, v);
	o.create = false;
	if (store_open(&o, &s) == 0) {
		fz_read_all(s);
		store_close(s);
		s = NULL;
		if (store_open(&o, &s) == 0) {
			fz_read_all(s);
			store_close(s);
		}
	}
out:
	vfs_destroy(v);
	return 0;
}
