/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_MOUNTPOINT_H
#define PBSLM_MOUNTPOINT_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * Mount points of a live mount, as the commands see them from outside:
 * is a directory fit to mount on, is a mount there alive, and who
 * serves it.  Messages name the path and what to do.  Main thread.
 */

/*
 * 0 if @path is an empty directory that is not already a FUSE mount;
 * otherwise one line saying what is wrong (a file, not empty, mounted
 * by PID N, a mount whose daemon has exited) and -ENOTDIR, -ENOTEMPTY,
 * -EBUSY, -ENOTCONN or -errno.
 */
int mountpoint_check(const char *path);

/*
 * A call on @path failed with @err: when that says the mount's daemon
 * is gone (-ENOTCONN), log what to do and return true.
 */
bool mountpoint_dead(const char *who, const char *path, int err);

/*
 * The FUSE connection of the mount at @path (absolute, as mounted): its
 * number under /sys/fs/fuse/connections.  -ENOENT if none.  Makes no
 * call into the mount, so its own daemon may ask before it serves.
 */
int mountpoint_fuse_conn(const char *path, unsigned int *conn);

/*
 * The PID of the pbs-livemount mount at @path (its supervisor, per its
 * .status), or 0.
 */
pid_t mountpoint_pid(const char *path);

#endif
