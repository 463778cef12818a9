/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Mount point checks.  Whether a directory is a mount point, and of
 * what, comes from /proc/self/mountinfo (the only place that names a
 * FUSE mount's type without a call into the mount, which would hang on
 * a stuck daemon).  No state of its own.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "log.h"
#include "mountpoint.h"
#include "util.h"
#include "banned.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] &&
		    s[3]) {
			*o++ = (char)((unsigned int)(s[1] - '0') << 6 |
				      (unsigned int)(s[2] - '0') << 3 |
				      (unsigned int)(s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/*
 * The type ("fuse.sshfs") and device of the file system mounted at
 * @path (absolute, no symlinks), or false.
 */
static bool mount_info(const char *path, char *type, size_t len,
		       unsigned int *maj, unsigned int *min)
{
	char line[4096];
	bool found = false;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	/* "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw" */
	while (fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX];
		char fstype[64];
		unsigned int a;
		unsigned int b;
		const char *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*s %*s %u:%u %*s %4095s", &a, &b,
				    mnt) != 3 ||
		    sscanf(dash + 3, "%63s", fstype) != 1)
			continue;
		unescape(mnt);
		if (!strcmp(mnt, path)) {
			/* The last mount on a path is the visible one. */
			snprintf(type, len, "%s", fstype);
			*maj = a;
			*min = b;
			found = true;
		}
	}
	fclose(f);
	return found;
}

static bool mounted_type(const char *path, char *type, size_t len)
{
	char real[PATH_MAX];
	unsigned int maj;
	unsigned int min;

	return realpath(path, real) &&
	       mount_info(real, type, len, &maj, &min);
}

int mountpoint_fuse_conn(const char *path, unsigned int *conn)
{
	char type[64];
	unsigned int maj;
	unsigned int min;

	/* No realpath(): a call into the mount must not wait for us. */
	if (!mount_info(path, type, sizeof(type), &maj, &min) ||
	    strncmp(type, "fuse", 4))
		return -ENOENT;
	/* The kernel's dev_t, as /sys/fs/fuse/connections names it. */
	*conn = maj << 20 | min;
	return 0;
}

pid_t mountpoint_pid(const char *path)
{
	char *status = xasprintf("%s/.status", path);
	uint8_t *text = NULL;
	json_object *doc = NULL;
	json_object *v;
	size_t len = 0;
	pid_t pid = 0;
	int ret;

	ret = read_file_any(status, 1 << 20, &text, &len);
	free(status);
	if (ret)
		return 0;
	doc = json_tokener_parse((const char *)text);
	/* The mount's own process, which ends it (its server's is "pid"). */
	if (doc && (json_object_object_get_ex(doc, "supervisor", &v) ||
		    json_object_object_get_ex(doc, "pid", &v)))
		pid = (pid_t)json_object_get_int(v);
	json_object_put(doc);
	free(text);
	return pid;
}

bool mountpoint_dead(const char *who, const char *path, int err)
{
	if (err != -ENOTCONN)
		return false;
	log_err("%s: the daemon of the mount on '%s' has exited; run "
		"fusermount3 -u %s, then mount again to resume", who, path,
		path);
	return true;
}

static int is_empty(const char *path, bool *empty)
{
	struct dirent *d;
	DIR *dir;

	dir = opendir(path);
	if (!dir)
		return -errno;
	*empty = true;
	while (*empty && (d = readdir(dir)))
		*empty = !strcmp(d->d_name, ".") || !strcmp(d->d_name, "..");
	closedir(dir);
	return 0;
}

int mountpoint_check(const char *path)
{
	char type[64];
	struct stat st;
	bool empty = false;
	pid_t pid;
	int ret;

	if (stat(path, &st) < 0) {
		ret = -errno;
		if (!mountpoint_dead("mount", path, ret))
			log_err("mount: cannot mount on '%s': %s", path,
				strerror(errno));
		return ret;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_err("mount: cannot mount on '%s': not a directory (make an "
			"empty directory for the mount)", path);
		return -ENOTDIR;
	}
	if (mounted_type(path, type, sizeof(type)) &&
	    !strncmp(type, "fuse", 4)) {
		/* The root's attributes may be cached: ask the daemon. */
		ret = is_empty(path, &empty);
		if (mountpoint_dead("mount", path, ret))
			return ret;
		pid = strcmp(type, "fuse.pbs-livemount") ? 0 :
		      mountpoint_pid(path);
		if (pid)
			log_err("mount: cannot mount on '%s': already mounted "
				"by pbs-livemount PID %d", path, (int)pid);
		else
			log_err("mount: cannot mount on '%s': already a FUSE "
				"mount (%s); unmount it first", path, type);
		return -EBUSY;
	}
	ret = is_empty(path, &empty);
	if (ret) {
		if (!mountpoint_dead("mount", path, ret))
			log_err("mount: cannot mount on '%s': %s", path,
				strerror(-ret));
		return ret;
	}
	if (!empty) {
		log_err("mount: cannot mount on '%s': not empty (its files "
			"would be hidden); use an empty directory", path);
		return -ENOTEMPTY;
	}
	return 0;
}
