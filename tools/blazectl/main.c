/* blazectl — look inside, check and repair blazefs stores.
 *   blazectl stats [--json | --prometheus] [--output FILE] [--watch N] MOUNTPOINT
 *   blazectl fsck [--repair] [-v] STORE
 *   blazectl dump STORE [superblocks|wal|pages|files|file PATH]
 *   blazectl sync MOUNTPOINT
 *   blazectl scrub [--rate MB/s] [--resume] [--state FILE] [-q] MOUNTPOINT
 * See blazectl(8). */
#include <stdio.h>
#include <string.h>

#include "blazectl.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: blazectl stats [--json | --prometheus] [--output FILE] [--watch N] MOUNTPOINT\n"
		   "       blazectl fsck [--repair] [-v] STORE\n"
		   "       blazectl dump STORE [superblocks|wal|pages|files|file PATH]\n"
		   "       blazectl sync MOUNTPOINT\n"
		   "       blazectl scrub [--rate MB/s] [--resume] [--state FILE] [-q] MOUNTPOINT\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 8;
	}
	if (!strcmp(argv[1], "stats"))
		return blazectl_stats(argc - 1, argv + 1);
	if (!strcmp(argv[1], "fsck"))
		return blazectl_fsck(argc - 1, argv + 1);
	if (!strcmp(argv[1], "dump"))
		return blazectl_dump(argc - 1, argv + 1);
	if (!strcmp(argv[1], "scrub"))
		return blazectl_scrub(argc - 1, argv + 1);
	if (!strcmp(argv[1], "sync"))
		return blazectl_sync(argc - 1, argv + 1);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "blazectl: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 8;
}
