/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Ownership locks for targets and state files.  flock(2) rather than
 * OFD locks: both belong to the open file description, but only flock
 * locks show their holder's PID in /proc/locks (OFD locks show -1), and
 * a refusal that names the holder is what the user needs.  No state of
 * its own; any thread.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "excl.h"
#include "log.h"
#include "util.h"
#include "banned.h"

#define POLL_MS 20

pid_t excl_holder(int fd)
{
	char line[256];
	struct stat st;
	pid_t pid = 0;
	FILE *f;

	if (fstat(fd, &st) < 0)
		return 0;
	f = fopen("/proc/locks", "re");
	if (!f)
		return 0;
	/* "1: FLOCK  ADVISORY  WRITE 2581 fe:00:10953905 0 EOF" */
	while (!pid && fgets(line, sizeof(line), f)) {
		unsigned int maj;
		unsigned int min;
		uint64_t ino;
		long p;
		char kind[16];

		if (strstr(line, "->"))
			continue;	/* a waiter, not a holder */
		if (sscanf(line, "%*d: %15s %*s %*s %ld %x:%x:%" SCNu64, kind,
			   &p, &maj, &min, &ino) != 5)
			continue;
		if (strcmp(kind, "FLOCK") || p <= 0)
			continue;
		if (maj == major(st.st_dev) && min == minor(st.st_dev) &&
		    ino == (uint64_t)st.st_ino)
			pid = (pid_t)p;
	}
	fclose(f);
	return pid;
}

static void holder_name(pid_t pid, char *out, size_t len)
{
	char path[64];
	size_t n = 0;
	FILE *f;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(out, (int)len, f))
		n = strcspn(out, "\n");
	out[n] = '\0';
	fclose(f);
}

int excl_lock(int fd, const char *path, bool shared, uint64_t wait_ms,
	      const char *who, const char *hint)
{
	uint64_t deadline = now_ns() + wait_ms * 1000000;
	struct timespec ts = { 0, POLL_MS * 1000000L };
	bool told = false;
	char comm[32];
	pid_t pid;

	for (;;) {
		if (!flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB))
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			int err = errno;

			log_err("%s: cannot lock '%s': %s", who, path,
				strerror(err));
			return -err;
		}
		pid = excl_holder(fd);
		if (now_ns() >= deadline)
			break;
		if (!told) {
			log_debug(LOG_CAT_FS, "%s: waiting for PID %d to let "
				  "go of '%s'", who, (int)pid, path);
			told = true;
		}
		nanosleep(&ts, NULL);
	}
	holder_name(pid, comm, sizeof(comm));
	if (pid)
		log_err("%s: cannot use '%s': in use by PID %d%s%s%s%s", who,
			path, (int)pid, comm[0] ? " (" : "", comm,
			comm[0] ? ")" : "", hint ? hint : "");
	else
		log_err("%s: cannot use '%s': in use by another process%s",
			who, path, hint ? hint : "");
	return -EBUSY;
}
