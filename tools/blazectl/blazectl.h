/* blazectl.h — subcommands of the operator tool. Each returns the process
 * exit code (fsck codes: 0 clean, 1 repaired, 4 errors left, 8 operational
 * error; other commands: 0 ok, 8 error). */
#ifndef BZ_BLAZECTL_H
#define BZ_BLAZECTL_H

int blazectl_stats(int argc, char **argv);
int blazectl_fsck(int argc, char **argv);
int blazectl_dump(int argc, char **argv);
int blazectl_sync(int argc, char **argv);
int blazectl_scrub(int argc, char **argv); /* 0 clean, 4 damage found, 8 error, 32 interrupted */

/* fsck.c: opens an existing store directory (never creates one);
 * read_only as store_opts.read_only. -EBUSY if a daemon holds it. */
#include <stdbool.h>
struct vfs;
struct store;
int blazectl_open_store(const char *dir, bool read_only, struct vfs **ret_vfs, struct store **ret_store);
void blazectl_close_store(struct vfs *v, struct store *s); /* NULLs ok */

#endif
