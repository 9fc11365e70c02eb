/* placeholder: being written */
#include "blazectl.h"
int blazectl_fsck(int argc, char **argv) { (void)argc; (void)argv; return 8; }
