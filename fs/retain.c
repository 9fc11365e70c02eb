/* retain.c — per-directory settings (user.blazefs.zstd_level, chunk_bytes,
 * retain) and retention (-o worm,retain=DURATION): who may delete what, when.
 *
 * Settings. Three attribute names under "user.blazefs." are real stored
 * attributes (NS_SETXATTR, so in the WAL and every checkpoint) that a user
 * may set on a DIRECTORY; every other name under that prefix stays a
 * read-only info attribute (xattr.c). Values are validated and stored in a
 * canonical form:
 *     zstd_level   decimal -7..22 (as -o zstd_level)          "19"
 *     chunk_bytes  power of two 4096..1048576, K/M suffix ok  "65536"
 *     retain       DURATION: integer + s/m/h/d/w/y (y = 365 d), a bare
 *                  integer is seconds; at most 9999y; kept as written
 * A created directory copies all three from its parent, a created regular
 * file the first two: ns_apply does it as part of NS_CREATE/NS_MKDIR
 * (storage/ns.h NS_XA_*), so the copy is in the same WAL record as the
 * creation and can never be lost without it. A file's settings are thus
 * fixed at its creation (setting them on a file is EPERM); its zstd_level
 * is read once into fs_inode.zlevel and every record appended to it is
 * compressed at that level (pipe_append_level); without one, at the
 * mount's -o zstd_level. Its chunk_bytes is read once into fs_inode.chunk:
 * the pipeline cuts its records there (pipe_append_level) and the store
 * seals its open chunk there (storage/store_chunk.c reads both attributes
 * itself, for the chunks it compresses).
 *
 * Retention. Only on a worm mount. A regular file with data, named
 * (parent, name), has a period: the longest of the mount's retain= and the
 * retain of every directory from parent up to the root as they are now
 * (walked through the ".." links, ns_parent). No period anywhere = never
 * deletable (plain -o worm). It is deletable once
 *     now >= ceil(append_ns / 1 s) + period      (whole seconds)
 * where append_ns is the daemon's own clock of its last append in the live
 * namespace (storage/ns.h), which no user can set. A hard-linked file is
 * judged by the directory the operation names (each link is, so the data
 * stays until the last link's period is over). A directory renamed away
 * from a retain above it carries that retain along: before the rename its
 * own retain is lengthened to the longest from its old place
 * (fs_retain_carry), unless the new place gives as much; a rename that
 * then fails keeps the lengthened value (only ever longer). A directory's retain can be
 * set only on a worm mount (else EOPNOTSUPP), only lengthened: a shorter
 * value or removal is EPERM for everyone, root included.
 *
 * Test clock: BLAZEFS_TEST_RETAIN_SKEW=SECONDS in the daemon's environment
 * at start adds that many seconds to "now" in these checks and only there
 * (tests/mount/test_retain.py proves expiry without sleeping). Test-only,
 * like wal_seed_salts; documented in docs/TESTING.md.
 *
 * Locks: everything here that reads the live namespace REQUIRES fs_ns_lock
 * (the caller's, so a check and the submit it guards are one step).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>

#include "fs/fs.h"

#define RETAIN_MAX_S (9999ull * 365 * 86400)
#define XA_PREFIX "user.blazefs."
#define XA_DELETABLE_AT XA_PREFIX "deletable_at"

/* ---- durations ---- */

int fs_duration_parse(const char *s, size_t len, uint64_t *ret_s)
{
	static const struct {
		char unit;
		uint64_t mul;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 7 * 86400}, {'y', 365 * 86400}};
	uint64_t v = 0, mul = 1;
	size_t i = 0;

	if (len == 0 || len > 24)
		return -EINVAL;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > RETAIN_MAX_S)
			return -EINVAL;
	}
	if (i == 0)
		return -EINVAL;
	if (i < len) {
		size_t k;
		for (k = 0; k < BZ_ARRAY_SIZE(units) && units[k].unit != s[i]; k++)
			;
		if (k == BZ_ARRAY_SIZE(units) || i + 1 != len)
			return -EINVAL;
		mul = units[k].mul;
	}
	if (v > RETAIN_MAX_S / mul)
		return -EINVAL;
	*ret_s = v * mul;
	return 0;
}

/* The largest unit that divides secs exactly: "30d", "90s", "0s". */
int fs_duration_format(uint64_t secs, char *buf, size_t cap)
{
	static const struct {
		char unit;
		uint64_t mul;
	} units[] = {{'y', 365 * 86400}, {'w', 7 * 86400}, {'d', 86400}, {'h', 3600}, {'m', 60}};

	for (size_t k = 0; secs && k < BZ_ARRAY_SIZE(units); k++)
		if (secs % units[k].mul == 0)
			return snprintf(buf, cap, "%" PRIu64 "%c", secs / units[k].mul, units[k].unit);
	return snprintf(buf, cap, "%" PRIu64 "s", secs);
}

/* ---- settings ---- */

static int zstd_level_parse(const char *s, size_t len, int *ret)
{
	char tmp[8], *end;
	long v;

	if (len == 0 || len >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, len);
	tmp[len] = 0;
	v = strtol(tmp, &end, 10);
	if (*end || end == tmp || v < -7 || v > 22 || tmp[0] == ' ' || tmp[0] == '+')
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

static int chunk_bytes_parse(const char *s, size_t len, uint64_t *ret)
{
	uint64_t v = 0, mul = 1;
	size_t i = 0;

	if (len == 0 || len > 8)
		return -EINVAL;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		v = v * 10 + (uint64_t)(s[i] - '0');
	if (i == 0)
		return -EINVAL;
	if (i + 1 == len && (s[i] == 'K' || s[i] == 'k'))
		mul = 1024;
	else if (i + 1 == len && (s[i] == 'M' || s[i] == 'm'))
		mul = 1024 * 1024;
	else if (i != len)
		return -EINVAL;
	v *= mul;
	if (v < 4096 || v > (1u << 20) || (v & (v - 1)))
		return -EINVAL;
	*ret = v;
	return 0;
}

bool fs_setting_name(const char *name)
{
	return strcmp(name, NS_XA_ZSTD_LEVEL) == 0 || strcmp(name, NS_XA_CHUNK_BYTES) == 0 ||
	       strcmp(name, NS_XA_RETAIN) == 0;
}

bool fs_setting_info_name(const char *name)
{
	return fs_setting_name(name) || strcmp(name, XA_DELETABLE_AT) == 0;
}

/* The stored value of name on ino, NUL-terminated in buf: its length,
 * -ENODATA, -ENOENT, -ERANGE (never for our canonical values). */
static int stored_get(struct fs *fs, uint64_t ino, const char *name, char *buf, size_t cap) REQUIRES(fs_ns_lock)
{
	int r = ns_getxattr(fs->ns, ino, name, strlen(name), buf, cap - 1);

	if (r >= 0)
		buf[r] = 0;
	return r;
}

/* A directory's own retain in seconds: 1 (and *ret_s) if set, else 0. */
static int dir_retain(struct fs *fs, uint64_t dir, uint64_t *ret_s) REQUIRES(fs_ns_lock)
{
	char v[32];
	int r = stored_get(fs, dir, NS_XA_RETAIN, v, sizeof(v));

	if (r < 0)
		return 0;
	if (fs_duration_parse(v, (size_t)r, ret_s) < 0)
		return 0; /* cannot happen: validated before it was stored */
	return 1;
}

int fs_file_zlevel(struct fs *fs, uint64_t ino)
{
	char v[16];
	int level, r = stored_get(fs, ino, NS_XA_ZSTD_LEVEL, v, sizeof(v));
	struct ns_attr a;

	if (r < 0 || ns_getattr(fs->ns, ino, &a) < 0 || !S_ISREG(a.mode) || zstd_level_parse(v, (size_t)r, &level) < 0) {
		/* the mount's level. The encoder stores records without a level
		 * of their own raw when its level is <= 0, but -o zstd_level
		 * means zstd's levels (0 = zstd's default, negative = fast), so
		 * those are passed as the record's own. */
		level = fs->opts.pipe.zstd_level;
		return level > 0 ? PIPE_LEVEL_DEFAULT : level;
	}
	return level;
}

uint32_t fs_file_chunk(struct fs *fs, uint64_t ino)
{
	char v[16];
	uint64_t bytes = 0;
	int r = stored_get(fs, ino, NS_XA_CHUNK_BYTES, v, sizeof(v));

	if (r < 0 || chunk_bytes_parse(v, (size_t)r, &bytes) < 0)
		return 0;
	return (uint32_t)bytes;
}

int fs_setting_set(struct fs *fs, uint64_t ino, const char *name, const char *value, size_t size, int flags)
{
	struct ns_op op = {.kind = NS_SETXATTR, .ino = ino, .name = name};
	char canon[32];
	struct ns_attr a;
	uint64_t secs = 0, old = 0;
	int r, level;

	r = ns_getattr(fs->ns, ino, &a);
	if (r < 0)
		goto out;
	if (!S_ISDIR(a.mode)) {
		r = -EPERM; /* a file's settings are fixed at its creation */
		goto out;
	}
	if (strcmp(name, NS_XA_ZSTD_LEVEL) == 0) {
		r = zstd_level_parse(value, size, &level);
		if (r == 0)
			snprintf(canon, sizeof(canon), "%d", level);
	} else if (strcmp(name, NS_XA_CHUNK_BYTES) == 0) {
		r = chunk_bytes_parse(value, size, &secs);
		if (r == 0)
			snprintf(canon, sizeof(canon), "%" PRIu64, secs);
	} else {
		if (!fs->opts.worm) {
			r = -EOPNOTSUPP;
			goto out;
		}
		r = fs_duration_parse(value, size, &secs);
		if (r == 0 && dir_retain(fs, ino, &old) && secs < old)
			r = -EPERM; /* never shortened */
		if (r == 0) {
			memcpy(canon, value, size);
			canon[size] = 0;
		}
	}
	if (r < 0)
		goto out;
	op.name_len = (uint32_t)strlen(name);
	op.name2 = canon;
	op.name2_len = (uint32_t)strlen(canon);
	op.flags = (flags & XATTR_CREATE) ? NS_XATTR_CREATE : (flags & XATTR_REPLACE) ? NS_XATTR_REPLACE : 0;
	op.ctime_ns = fs_now_ns();
	r = fs_submit(fs, &op);
out:
	return r;
}

int fs_setting_remove(struct fs *fs, uint64_t ino, const char *name)
{
	struct ns_op op = {.kind = NS_REMOVEXATTR, .ino = ino, .name = name, .name_len = (uint32_t)strlen(name)};
	struct ns_attr a;
	int r;

	r = ns_getattr(fs->ns, ino, &a);
	if (r < 0)
		goto out;
	r = ns_getxattr(fs->ns, ino, name, strlen(name), NULL, 0);
	if (r < 0)
		goto out; /* -ENODATA: nothing to remove */
	if (!S_ISDIR(a.mode) || strcmp(name, NS_XA_RETAIN) == 0) {
		r = -EPERM; /* a file's settings are fixed; a retention is never removed */
		goto out;
	}
	op.ctime_ns = fs_now_ns();
	r = fs_submit(fs, &op);
out:
	return r;
}

/* ---- retention ---- */

static int64_t retain_now_s(struct fs *fs) { return bz_wall_ns() / 1000000000 + fs->retain_skew_s; }

/* The longest retain of dir and the directories above it: 1 (*ret_s) or 0
 * when none has one. With the mount's (have_mount): the period of a file
 * reached through dir, 0 meaning none (plain worm: never deletable). */
static int chain_period(struct fs *fs, uint64_t dir, bool with_mount, uint64_t *ret_s) REQUIRES(fs_ns_lock)
{
	uint64_t best = 0, s, parent;
	int have = 0;

	if (with_mount && fs->opts.has_retain) {
		best = fs->opts.retain_s;
		have = 1;
	}
	/* every directory up to the root; the depth bound only guards against
	 * a corrupt namespace looping */
	for (uint64_t n = 0; n <= ns_count(fs->ns); n++) {
		if (dir_retain(fs, dir, &s)) {
			best = have ? BZ_MAX(best, s) : s;
			have = 1;
		}
		if (dir == NS_ROOT_INO || ns_parent(fs->ns, dir, &parent) < 0)
			break;
		dir = parent;
	}
	*ret_s = best;
	return have;
}

static int period_from(struct fs *fs, uint64_t dir, uint64_t *ret_s) REQUIRES(fs_ns_lock)
{
	return chain_period(fs, dir, true, ret_s);
}

int fs_retain_carry(struct fs *fs, uint64_t from, const char *name, uint64_t to)
{
	struct ns_op op = {.kind = NS_SETXATTR, .name = NS_XA_RETAIN, .name_len = strlen(NS_XA_RETAIN)};
	uint64_t ino, above, own, there;
	struct ns_attr a;
	char v[32];

	if (!fs->opts.worm || from == to)
		return 0;
	if (ns_lookup(fs->ns, from, name, strlen(name), &ino) < 0 || ns_getattr(fs->ns, ino, &a) < 0 ||
	    !S_ISDIR(a.mode))
		return 0;
	if (!chain_period(fs, from, false, &above))
		return 0; /* nothing above it to carry */
	if (dir_retain(fs, ino, &own) && own >= above)
		return 0;
	if (chain_period(fs, to, false, &there) && there >= above)
		return 0; /* the new place keeps at least as long */
	op.ino = ino;
	op.name2 = v;
	op.name2_len = (uint32_t)fs_duration_format(above, v, sizeof(v));
	op.ctime_ns = fs_now_ns();
	return fs_submit(fs, &op);
}

/* When a file with append clock append_ns becomes deletable through dir
 * (seconds since the epoch), or INT64_MAX for never. */
static int64_t deletable_at(struct fs *fs, uint64_t dir, int64_t append_ns) REQUIRES(fs_ns_lock)
{
	uint64_t period;
	int64_t base = append_ns <= 0 ? 0 : (append_ns + 999999999) / 1000000000;

	if (!period_from(fs, dir, &period))
		return INT64_MAX;
	return period > (uint64_t)(INT64_MAX - base) ? INT64_MAX : base + (int64_t)period;
}

bool fs_retain_protected(struct fs *fs, uint64_t parent, const char *name, uint64_t *ret_ino,
			 int64_t *ret_until_s)
{
	struct ns_attr a;
	uint64_t ino;
	int64_t until;

	if (!fs->opts.worm)
		return false;
	if (ns_lookup(fs->ns, parent, name, strlen(name), &ino) < 0 || ns_getattr(fs->ns, ino, &a) < 0)
		return false;
	if (!S_ISREG(a.mode) || a.size == 0)
		return false; /* empty files stay deletable */
	until = deletable_at(fs, parent, a.append_ns);
	if (until != INT64_MAX && retain_now_s(fs) >= until)
		return false;
	*ret_ino = ino;
	*ret_until_s = until;
	return true;
}

void fs_retain_refuse(struct fs *fs, uint64_t ino, int64_t until_s, const char *what)
{
	char msg[160], when[40];

	if (until_s == INT64_MAX)
		snprintf(when, sizeof(when), "never deletable");
	else {
		struct tm tm;
		time_t t = (time_t)until_s;
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "retained until %Y-%m-%dT%H:%M:%SZ", &tm);
	}
	snprintf(msg, sizeof(msg), "%s (%s)", what, when);
	fs_refuse(fs, fs_inode_find(fs, ino), ino, FS_REF_WORM, msg);
}

/* The directories holding links to a file: ns has no reverse index, so a
 * walk of every entry (stops at the first when the file has one link). */
struct link_scan {
	struct fs *fs;
	uint64_t ino;
	uint32_t left;    /* links not found yet */
	int64_t append_ns;
	int64_t latest;   /* the latest deletable_at over the links found */
	bool found;
};

static int link_scan_dirent(void *arg, uint64_t dir, const char *name, size_t name_len, uint64_t ino) NO_TSA
{
	struct link_scan *ls = arg;
	int64_t t;

	(void)name;
	(void)name_len;
	if (ino != ls->ino)
		return 0;
	t = deletable_at(ls->fs, dir, ls->append_ns); /* the caller holds fs_ns_lock */
	ls->latest = ls->found ? BZ_MAX(ls->latest, t) : t;
	ls->found = true;
	return --ls->left == 0;
}

/* Computed values of the setting names on a non-directory and of
 * deletable_at (xattr.c): the length written into v (NUL-terminated),
 * -ENODATA when the file has none. */
int fs_setting_info(struct fs *fs, uint64_t ino, const char *name, char *v, size_t cap)
{
	struct ns_attr a;
	int r = ns_getattr(fs->ns, ino, &a);

	if (r < 0)
		return r;
	if (strcmp(name, NS_XA_ZSTD_LEVEL) == 0 || strcmp(name, NS_XA_CHUNK_BYTES) == 0) {
		r = stored_get(fs, ino, name, v, cap);
		if (r == -ENODATA && S_ISREG(a.mode) && strcmp(name, NS_XA_ZSTD_LEVEL) == 0)
			r = snprintf(v, cap, "%d", fs->opts.pipe.zstd_level); /* the mount's */
		return r;
	}
	if (S_ISDIR(a.mode)) /* its retain is the stored one; no deletable_at */
		return strcmp(name, NS_XA_RETAIN) == 0 ? stored_get(fs, ino, name, v, cap) : -ENODATA;
	if (!S_ISREG(a.mode) || !fs->opts.worm)
		return -ENODATA;
	{
		struct ns_visit vis = {.dirent = link_scan_dirent};
		struct link_scan ls = {.fs = fs, .ino = ino, .left = a.nlink, .append_ns = a.append_ns};
		int64_t base = a.append_ns <= 0 ? 0 : (a.append_ns + 999999999) / 1000000000, at;
		struct tm tm;
		time_t t;

		if (a.nlink > 0) {
			r = ns_walk(fs->ns, &vis, &ls);
			if (r < 0)
				return r;
		}
		if (ls.found) /* the latest over its links */
			at = ls.latest;
		else /* unlinked (still open): the mount's period alone */
			at = fs->opts.has_retain ? base + (int64_t)fs->opts.retain_s : INT64_MAX;
		if (strcmp(name, NS_XA_RETAIN) == 0)
			return at == INT64_MAX ? snprintf(v, cap, "never") : fs_duration_format((uint64_t)(at - base), v, cap);
		if (a.size == 0)
			at = a.append_ns / 1000000000; /* empty: deletable since its creation */
		t = (time_t)at;
		if (at == INT64_MAX || !gmtime_r(&t, &tm))
			return snprintf(v, cap, "never");
		return (int)strftime(v, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
}
