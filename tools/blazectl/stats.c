/* stats.c — `blazectl stats MOUNTPOINT`: a readable view of the live
 * counters in MOUNTPOINT/.blazefs/stats (JSON written by the daemon).
 *
 * --json prints the raw JSON; --watch N redraws every N seconds. The view
 * knows the documented sections (stages, counters, store) and prints any
 * field it does not know generically, so a newer daemon never hides data. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blazectl.h"

static int read_all(const char *path, char **ret_buf)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	int fd = -1, r = 0;

	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	for (;;) {
		ssize_t n;
		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = 0;
	*ret_buf = buf;
	buf = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return r;
}

static void human_bytes(double v, char *out, size_t cap)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	unsigned u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void print_value(const char *indent, const char *key, struct json_object *v)
{
	const char *k = key;
	char hb[32];

	if (json_object_is_type(v, json_type_object)) {
		char deeper[64];
		printf("%s%s:\n", indent, k);
		snprintf(deeper, sizeof(deeper), "%s  ", indent);
		json_object_object_foreach(v, ck, cv) print_value(deeper, ck, cv);
		return;
	}
	if ((json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) &&
	    strstr(k, "bytes") != NULL) {
		human_bytes(json_object_get_double(v), hb, sizeof(hb));
		printf("%s%-28s %s\n", indent, k, hb);
		return;
	}
	printf("%s%-28s %s\n", indent, k, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
}

/* Stage histograms: an object of objects that carry p50/p99 fields. */
static bool is_stage_table(struct json_object *o)
{
	bool any = false;
	if (!json_object_is_type(o, json_type_object))
		return false;
	json_object_object_foreach(o, k, v)
	{
		struct json_object *p;
		(void)k;
		if (!json_object_is_type(v, json_type_object))
			return false;
		if (!json_object_object_get_ex(v, "p50_us", &p) && !json_object_object_get_ex(v, "p50", &p))
			return false;
		any = true;
	}
	return any;
}

static double field(struct json_object *o, const char *a, const char *b)
{
	struct json_object *p;
	if (json_object_object_get_ex(o, a, &p) || (b && json_object_object_get_ex(o, b, &p)))
		return json_object_get_double(p);
	return 0;
}

static void print_stage_table(const char *name, struct json_object *o)
{
	printf("%s (microseconds):\n", name);
	printf("  %-14s %10s %10s %10s %12s\n", "stage", "p50", "p99", "max", "count");
	json_object_object_foreach(o, k, v)
	{
		printf("  %-14s %10.0f %10.0f %10.0f %12.0f\n", k, field(v, "p50_us", "p50"), field(v, "p99_us", "p99"),
		       field(v, "max_us", "max"), field(v, "count", NULL));
	}
}

static int show(const char *json_text)
{
	struct json_object *root = json_tokener_parse(json_text);
	if (!root) {
		fprintf(stderr, "blazectl: the stats file is not valid JSON\n");
		return 8;
	}
	json_object_object_foreach(root, k, v)
	{
		if (is_stage_table(v))
			print_stage_table(k, v);
		else
			print_value("", k, v);
	}
	json_object_put(root);
	return 0;
}

int blazectl_stats(int argc, char **argv)
{
	int watch = 0, raw = 0, rc = 0;
	const char *mnt = NULL;
	char path[4096];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			raw = 1;
		else if (!strcmp(argv[i], "--watch") && i + 1 < argc)
			watch = atoi(argv[++i]);
		else if (!strncmp(argv[i], "--watch=", 8))
			watch = atoi(argv[i] + 8);
		else if (argv[i][0] == '-') {
			fprintf(stderr, "blazectl stats: unknown option %s\n", argv[i]);
			return 8;
		} else
			mnt = argv[i];
	}
	if (!mnt || watch < 0) {
		fprintf(stderr, "usage: blazectl stats [--json] [--watch N] MOUNTPOINT\n");
		return 8;
	}
	snprintf(path, sizeof(path), "%s/.blazefs/stats", mnt);
	for (;;) {
		char *text = NULL;
		int r = read_all(path, &text);
		if (r < 0) {
			fprintf(stderr, "blazectl: %s: %s (is a blazefs mounted there?)\n", path, strerror(-r));
			return 8;
		}
		if (watch && isatty(STDOUT_FILENO))
			printf("\033[H\033[2J");
		if (raw)
			printf("%s\n", text);
		else
			rc = show(text);
		free(text);
		fflush(stdout);
		if (!watch || rc)
			break;
		sleep((unsigned)watch);
	}
	return rc;
}
