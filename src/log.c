/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Logging sink.  The level and destination are set once by main before
 * any thread starts and are read without a lock afterwards; each message
 * is formatted into a local buffer and written with one write(2) (or one
 * syslog(3) call) so that lines from several threads never interleave.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "banned.h"

unsigned int log_debug_mask;		/* immutable after start-up */
static bool log_to_syslog;		/* atomic: detached */
static bool log_journal;		/* atomic: stderr is the journal */
static int log_fd = -1;			/* --log-file; immutable number once
					   set (reopened with dup2) */
static char *log_path;			/* immutable once set */
static int log_reopen_pending;		/* atomic: SIGHUP asked for it */
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

/* Is stderr the journal's stream ($JOURNAL_STREAM is its "dev:ino")? */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev;
	unsigned long long ino;
	struct stat sb;

	return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
	       !fstat(STDERR_FILENO, &sb) && sb.st_dev == dev &&
	       sb.st_ino == ino;
}

void log_init(const char *ident, bool use_syslog, int level)
{
	log_ident = ident;
	/* Under systemd: lines carry their priority ("<3>"), so the
	 * journal files them by level. */
	__atomic_store_n(&log_journal, stderr_is_journal(), __ATOMIC_RELAXED);
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

int log_set_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0)
		return -errno;
	log_path = strdup(path);
	if (!log_path) {
		close(fd);
		return -ENOMEM;
	}
	log_fd = fd;
	return 0;
}

void log_get_conf(struct log_conf *out)
{
	out->use_syslog = __atomic_load_n(&log_to_syslog, __ATOMIC_RELAXED);
	out->level = __atomic_load_n(&log_level, __ATOMIC_RELAXED);
	out->debug_mask = log_debug_mask;
	out->path = log_path;
}

int log_set_conf(const struct log_conf *conf)
{
	log_init(log_ident, conf->use_syslog, conf->level);
	log_debug_mask = conf->debug_mask;
	return conf->path ? log_set_file(conf->path) : 0;
}

void log_request_reopen(void)
{
	__atomic_store_n(&log_reopen_pending, 1, __ATOMIC_RELAXED);
}

void log_reopen_if_asked(void)
{
	int fd;

	if (log_fd < 0 ||
	    !__atomic_exchange_n(&log_reopen_pending, 0, __ATOMIC_RELAXED))
		return;
	/* Same descriptor number: a writer never sees a closed one. */
	fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return;		/* keep writing where we were */
	dup3(fd, log_fd, O_CLOEXEC);
	close(fd);
}

/* "<prefix><msg>\n" into @out, one write(2) to @fd: never interleaved. */
static void write_line(int fd, const char *prefix, const char *msg)
{
	char out[1200];
	int n;

	n = snprintf(out, sizeof(out) - 1, "%s%s", prefix, msg);
	if (n > (int)sizeof(out) - 2)
		n = sizeof(out) - 2;
	out[n++] = '\n';
	if (write(fd, out, n) < 0) {
		/* nowhere left to report it */
	}
}

void log_vmsg(int level, const char *fmt, va_list ap)
{
	int saved = errno;
	bool detached = __atomic_load_n(&log_to_syslog, __ATOMIC_RELAXED);
	char prefix[128];
	char msg[1024];
	struct timespec ts;
	struct tm tm;
	size_t n;

	if (level > __atomic_load_n(&log_level, __ATOMIC_RELAXED))
		goto out;
	if (detached && log_fd < 0) {
		vsyslog(level, fmt, ap);
		goto out;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_fd >= 0) {
		/* "2026-12-06T22:50:01+0000 pbs-livemount[123]: " */
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		n = strftime(prefix, sizeof(prefix), "%Y-%m-%dT%H:%M:%S%z ",
			     &tm);
		snprintf(prefix + n, sizeof(prefix) - n, "%s[%d]: ", log_ident,
			 (int)getpid());
		log_reopen_if_asked();
		write_line(log_fd, prefix, msg);
	}
	/* Until the daemon detaches, the terminal hears it too. */
	if (!detached && __atomic_load_n(&log_journal, __ATOMIC_RELAXED)) {
		snprintf(prefix, sizeof(prefix), "<%d>%s: ", level, log_ident);
		write_line(STDERR_FILENO, prefix, msg);
	} else if (!detached) {
		snprintf(prefix, sizeof(prefix), "%s: ", log_ident);
		write_line(STDERR_FILENO, prefix, msg);
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
