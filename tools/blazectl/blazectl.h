/* blazectl.h — subcommands of the operator tool. Each returns the process
 * exit code (fsck codes: 0 clean, 1 repaired, 4 errors left, 8 operational
 * error; other commands: 0 ok, 8 error). */
#ifndef BZ_BLAZECTL_H
#define BZ_BLAZECTL_H

int blazectl_stats(int argc, char **argv);
int blazectl_fsck(int argc, char **argv);
int blazectl_dump(int argc, char **argv);

#endif
