/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Logging sink.  The level and destination are set once by main before
 * any thread starts and are read without a lock afterwards; each message
 * is formatted into a local buffer and written with one write(2) (or one
 * syslog(3) call) so that lines from several threads never interleave.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "banned.h"

unsigned int log_debug_mask;		/* immutable after start-up */
static bool log_to_syslog;		/* atomic */
static int log_level = LOG_INFO;	/* atomic */
static const char *log_ident = "pbs-livemount";

static const struct {
	const char *name;
	unsigned int bit;
} log_cats[] = {
	{ "fetch", LOG_CAT_FETCH },   { "http", LOG_CAT_HTTP },
	{ "store", LOG_CAT_STORE },   { "ccache", LOG_CAT_CCACHE },
	{ "stream", LOG_CAT_STREAM }, { "fs", LOG_CAT_FS },
	{ "ovl", LOG_CAT_OVL },	      { "image", LOG_CAT_IMAGE },
};

void log_init(const char *ident, bool use_syslog, int level)
{
	log_ident = ident;
	if (use_syslog)
		openlog(ident, LOG_PID, LOG_DAEMON);
	/* May switch to syslog while threads run (daemon hand-shake). */
	__atomic_store_n(&log_to_syslog, use_syslog, __ATOMIC_RELAXED);
	__atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

int log_set_debug(const char *list)
{
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ",");
		bool found = false;

		if (n == 3 && !strncmp(p, "all", 3)) {
			log_debug_mask = ~0u;
			found = true;
		}
		for (size_t i = 0; !found && i < ARRAY_SIZE(log_cats); i++) {
			if (strlen(log_cats[i].name) == n &&
			    !strncmp(p, log_cats[i].name, n)) {
				log_debug_mask |= log_cats[i].bit;
				found = true;
			}
		}
		if (!found)
			return -EINVAL;
		p += n;
		if (*p == ',')
			p++;
	}
	if (log_debug_mask && log_level < LOG_DEBUG)
		log_level = LOG_DEBUG;
	return 0;
}

void log_vmsg(int level, const char *fmt, va_list ap)
{
	int saved = errno;
	char line[1024];
	int n;

	if (level > __atomic_load_n(&log_level, __ATOMIC_RELAXED))
		goto out;
	if (__atomic_load_n(&log_to_syslog, __ATOMIC_RELAXED)) {
		vsyslog(level, fmt, ap);
		goto out;
	}
	n = snprintf(line, sizeof(line), "%s: ", log_ident);
	n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (n >= (int)sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line: atomic for pipes and terminals. */
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere left to report it */
	}
out:
	errno = saved;
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

bool log_ratelimit(struct log_ratelimit *rl)
{
	struct timespec ts;
	long win;
	long cur;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	win = ts.tv_sec / (rl->interval_s ? rl->interval_s : 1);
	cur = __atomic_load_n(&rl->window, __ATOMIC_RELAXED);
	if (cur != win &&
	    __atomic_compare_exchange_n(&rl->window, &cur, win, false,
					__ATOMIC_RELAXED, __ATOMIC_RELAXED))
		__atomic_store_n(&rl->count, 0, __ATOMIC_RELAXED);
	return __atomic_add_fetch(&rl->count, 1, __ATOMIC_RELAXED) <= rl->burst;
}
