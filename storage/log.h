/* log.h — leveled logging. Foreground: stderr; daemonized: syslog.
 * Thread-safe; one line per call. */
#ifndef BZ_LOG_H
#define BZ_LOG_H

#include "base.h"

enum bz_log_level { BZ_LOG_ERR = 0, BZ_LOG_WARN = 1, BZ_LOG_INFO = 2, BZ_LOG_DEBUG = 3 };

void bz_log_set_level(enum bz_log_level level);
enum bz_log_level bz_log_get_level(void);
/* Sends further lines to syslog (ident "blazefs") instead of stderr. */
void bz_log_use_syslog(bool on);
void bz_log(enum bz_log_level level, const char *fmt, ...) BZ_PRINTF(2, 3);

#define bz_err(...) bz_log(BZ_LOG_ERR, __VA_ARGS__)
#define bz_warn(...) bz_log(BZ_LOG_WARN, __VA_ARGS__)
#define bz_info(...) bz_log(BZ_LOG_INFO, __VA_ARGS__)
#define bz_debug(...)                                    \
	do {                                             \
		if (bz_log_get_level() >= BZ_LOG_DEBUG) \
			bz_log(BZ_LOG_DEBUG, __VA_ARGS__); \
	} while (0)

#endif
