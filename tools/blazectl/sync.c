/* sync.c — blazectl sync MOUNTPOINT: returns once everything written to the
 * mounted blazefs before the call, in every file, is on stable storage.
 *
 * The kernel does not forward sync(2)/syncfs(2) to FUSE daemons (FUSE_SYNCFS
 * is sent only by virtiofs), so a bare `sync` makes nothing durable here. Two
 * steps do:
 *   1. syncfs(fd): the kernel writes back every dirty page it caches for the
 *      mount (with -o writeback_cache, data written but not yet handed to the
 *      daemon; without it there is none) and waits for the daemon to take it;
 *   2. fsync(fd) of the mount's root directory: the daemon answers it as a
 *      global durability barrier (ops.c op_fsyncdir -> pipe_barrier
 *      PIPE_DURABLE): it seals what is pending and replies after the one group
 *      fdatasync of the WAL that covers everything logged before it.
 * Exit 0 on success, 8 (with a message) otherwise; prints nothing on success.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blazectl.h"

int blazectl_sync(int argc, char **argv)
{
	char ctl[4096];
	struct stat st;
	int fd = -1, rc = 8;

	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: blazectl sync MOUNTPOINT\n");
		goto out;
	}
	snprintf(ctl, sizeof(ctl), "%s/.blazefs/stats", argv[1]);
	if (stat(ctl, &st) < 0) {
		fprintf(stderr, "blazectl: %s: not a blazefs mount point (%s: %s)\n", argv[1], ctl, strerror(errno));
		goto out;
	}
	fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "blazectl: %s: %s\n", argv[1], strerror(errno));
		goto out;
	}
	if (syncfs(fd) < 0) {
		fprintf(stderr, "blazectl: syncfs %s: %s\n", argv[1], strerror(errno));
		goto out;
	}
	if (fsync(fd) < 0) {
		fprintf(stderr, "blazectl: fsync %s: %s (nothing is known to be durable)\n", argv[1], strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}
