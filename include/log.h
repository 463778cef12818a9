/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_LOG_H
#define PBSLM_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

#include "compiler.h"

/*
 * One logging sink for the whole program (libfuse's messages included):
 * stderr in the foreground, syslog when detached, or a --log-file.  Message form:
 * "module: cannot <verb> '<subject>': <reason>".  Every function here
 * may be called from any thread and preserves errno.  Never call from a
 * signal handler.
 */

/* Debug categories, switched on with -o debug=fetch,ccache or "all". */
enum log_cat {
	LOG_CAT_FETCH = 1 << 0,
	LOG_CAT_HTTP = 1 << 1, /* libcurl's own trace, Authorization redacted */
	LOG_CAT_STORE = 1 << 2,
	LOG_CAT_CCACHE = 1 << 3,
	LOG_CAT_STREAM = 1 << 4,
	LOG_CAT_FS = 1 << 5,
	LOG_CAT_OVL = 1 << 6,
	LOG_CAT_IMAGE = 1 << 7,
};

/* Read without a lock: set once at start-up, before threads exist. */
extern unsigned int log_debug_mask;

/* @ident: program name for syslog; @level: most verbose level shown. */
void log_init(const char *ident, bool use_syslog, int level);
/*
 * Also log to @path (appended, each line with a time stamp): until the
 * program detaches (log_init with @use_syslog) alongside stderr, then
 * instead of syslog.  Before threads exist.  -errno if it cannot open.
 */
int log_set_file(const char *path);
/* Reopen the log file at the next message (log rotation): safe in a
 * signal handler. */
void log_request_reopen(void);
/* Reopen it now if asked; any thread. */
void log_reopen_if_asked(void);
/* Parse "fetch,ccache" or "all"; -EINVAL names nothing it knows. */
int log_set_debug(const char *list);
/* How this process logs, to hand to its successor (sup.c re-exec). */
struct log_conf {
	bool use_syslog;
	int level;
	unsigned int debug_mask;
	const char *path;	/* --log-file, or NULL */
};
void log_get_conf(struct log_conf *out);
/* Before threads exist; -errno if the log file cannot be opened. */
int log_set_conf(const struct log_conf *conf);
void log_msg(int level, const char *fmt, ...) PRINTF_FMT(2, 3);
void log_vmsg(int level, const char *fmt, va_list ap);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(cat, ...)                                   \
	do {                                                  \
		if (unlikely(log_debug_mask & (cat)))        \
			log_msg(LOG_DEBUG, __VA_ARGS__);      \
	} while (0)

/*
 * Rate limit for hot-path errors: at most @burst messages per @interval_s
 * seconds.  Embed one per call site, zero-initialised apart from the two
 * limits; log_ratelimit() is thread-safe (atomic counters).
 */
struct log_ratelimit {
	unsigned int interval_s;
	unsigned int burst;
	long window;		/* atomic */
	unsigned int count;	/* atomic */
};
#define LOG_RATELIMIT_INIT(i, b) { .interval_s = (i), .burst = (b) }
bool log_ratelimit(struct log_ratelimit *rl);

#endif
