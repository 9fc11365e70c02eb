/* store_scrub.c — what an online scrub needs from the store.
 *
 * A scrub (fs/scrub.c, `blazectl scrub`) verifies the bytes of files as
 * stored on disk while the store is in use. It reads through the ordinary
 * read path (store_read: the index, every page checksum, every record's
 * xxh3), so it checks exactly what a reader relies on, with one difference:
 * the scrubbing thread's page reads bypass the pager's cache (pager.c,
 * "SCRUB READS"), so a page damaged on disk after it was cached is found,
 * and the readers' hot pages are not evicted. No lock is added: the flag is
 * thread-local, and store_read's locking (store.c, THREADS AND LOCKS) is
 * unchanged, so the commit thread never waits for a scrub longer than for
 * any reader.
 */
#include "pager.h"
#include "store.h"

void store_scrub_thread(bool on) { pager_scrub_thread(on); }
