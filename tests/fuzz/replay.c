/* replay.c — runs a fuzz target without libFuzzer: feeds every regular file
 * under the given directories (recursively) or the given files to
 * LLVMFuzzerTestOneInput, once each. Used by the 'fuzz' test suite to
 * replay the committed corpora (including every crash input ever found).
 * Exit 0 when every input ran (a bug shows up as a crash or a sanitizer
 * report), 1 on an unreadable path, 77 when there was nothing to replay. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static unsigned long g_inputs, g_bytes;

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;
	int rc = -1;

	if (!f)
		goto out;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = malloc(n ? (size_t)n : 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
		goto out;
	/* An exact-size heap copy, so ASan sees reads past the input. */
	LLVMFuzzerTestOneInput(buf, (size_t)n);
	g_inputs++;
	g_bytes += (unsigned long)n;
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
	free(buf);
	if (f)
		fclose(f);
	return rc;
}

static int run_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path);
	struct dirent **ents = NULL;
	int n = scandir(path, &ents, NULL, alphasort), rc = 0;
	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (ents[i]->d_name[0] != '.' && rc == 0) {
			size_t len = strlen(path) + strlen(ents[i]->d_name) + 2;
			char *p = malloc(len);
			if (!p) {
				rc = -1;
			} else {
				snprintf(p, len, "%s/%s", path, ents[i]->d_name);
				rc = run_path(p);
				free(p);
			}
		}
		free(ents[i]);
	}
	free(ents);
	return rc;
}

int main(int argc, char **argv)
{
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++)
		if (argv[i][0] != '-' && run_path(argv[i]) != 0)
			return 1;
	printf("replay: %lu inputs, %lu bytes\n", g_inputs, g_bytes);
	return g_inputs ? 0 : 77;
}
