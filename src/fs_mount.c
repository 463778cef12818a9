/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The supervisor's side of the FUSE mount (fs.h): mounted once and
 * held, handed to each server, never served here; and the lazy
 * unmount.
 */
#define FUSE_USE_VERSION 35
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "fs.h"
#include "fs_i.h"
#include "log.h"
#include "mountpoint.h"
#include "util.h"
#include "banned.h"

struct fs_mount {
	struct fuse_session *se;	/* mounted, never served; or NULL: */
	int fd;				/* adopted from a predecessor */
	char *mountpoint;
};

int fs_mount_only(const char *mountpoint, const char *opts,
		  struct fs_mount **out)
{
	static const struct fuse_lowlevel_ops none;
	struct fs_mount *m = xcalloc(1, sizeof(*m));

	m->se = fs_session(opts, &none, sizeof(none), NULL);
	if (!m->se || fuse_session_mount(m->se, mountpoint)) {
		if (m->se)
			log_err("fs: cannot mount on '%s'", mountpoint);
		fs_mount_release(m, false);
		return -EIO;
	}
	*out = m;
	return 0;
}

int fs_mount_adopt(const char *mountpoint, int fd, struct fs_mount **out)
{
	struct fs_mount *m = xcalloc(1, sizeof(*m));

	m->fd = fd;
	m->mountpoint = xstrdup(mountpoint);
	*out = m;
	return 0;
}

int fs_mount_fd(const struct fs_mount *m)
{
	return m->se ? fuse_session_fd(m->se) : m->fd;
}

void fs_mount_release(struct fs_mount *m, bool unmount)
{
	if (!m)
		return;
	if (m->se) {
		if (unmount)
			fuse_session_unmount(m->se);
		fuse_session_destroy(m->se);
	} else {
		struct pollfd p = { m->fd, 0, 0 };

		/*
		 * As libfuse does: a connection already gone was unmounted,
		 * and what is mounted there now may be another's.
		 */
		if (unmount && !(poll(&p, 1, 0) == 1 && (p.revents & POLLERR)))
			fs_unmount_at(m->mountpoint);
		close(m->fd);
		free(m->mountpoint);
	}
	free(m);
}


void fs_unmount_at(const char *mountpoint)
{
	char *const argv[] = { (char *)"fusermount3", (char *)"-u",
			       (char *)"-z", (char *)mountpoint, NULL };
	pid_t pid;
	int st;

	/* Root unmounts itself; others ask the setuid helper. */
	if (!geteuid()) {
		if (umount2(mountpoint, MNT_DETACH) && errno != EINVAL)
			log_err("fs: cannot unmount '%s': %s", mountpoint,
				strerror(errno));
		return;
	}
	if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ)) {
		log_err("fs: cannot run fusermount3 -u '%s'", mountpoint);
		return;
	}
	waitpid(pid, &st, 0);
}
