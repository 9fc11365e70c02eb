/* fuzz_record.c — libFuzzer target for the record frame decoder.
 * Decodes every frame in the input back to back (as a WAL or page scan
 * would), decompresses each payload, and checks the decoder's promises:
 * frame length within the input, payload inside the frame, a re-encoded
 * header identical to the input's. Build with -DFUZZING_BUILD_MODE_UNSAFE_
 * FOR_PRODUCTION so the checksums do not stop the fuzzer. */
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "storage/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static ZSTD_DCtx *dctx;
	size_t pos = 0;

	if (!dctx)
		dctx = ZSTD_createDCtx();
	while (pos < size) {
		struct rec_hdr h;
		const uint8_t *payload;
		size_t flen;
		int r = rec_decode(data + pos, size - pos, &h, &payload, &flen);
		if (r < 0) {
			if (r != -ENODATA && r != -EBADMSG)
				abort();
			break;
		}
		if (flen == 0 || flen > size - pos || payload < data + pos || payload + h.stored_len != data + pos + flen)
			abort();
		/* the header re-encodes to the same bytes (but the unchecked hcheck) */
		uint8_t hdr[REC_HDR_MAX];
		int hl = rec_hdr_encode(&h, hdr, sizeof(hdr));
		if (hl <= 4 || (size_t)hl != flen - h.stored_len || memcmp(hdr, data + pos, (size_t)hl - 4) != 0)
			abort();
		pos += flen;
		/* a zstd header may claim up to REC_MAX_RAW: keep executions fast */
		if (h.raw_len > (256u << 10))
			continue;
		uint8_t *out = malloc(h.raw_len ? h.raw_len : 1);
		if (!out)
			abort();
		r = rec_payload_decode(&h, payload, out, (size & 7) ? dctx : NULL);
		if (r != 0 && r != -EBADMSG)
			abort();
		free(out);
	}
	return 0;
}
