/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_FS_H
#define PBSLM_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend.h"
#include "image.h"

/*
 * The FUSE front end (low-level API, multithreaded): one regular file per
 * image plus a read-only ".status" (JSON).  Maps -errno results to
 * fuse_reply_err; decides what read(2) callers see (EIO for a chunk that
 * cannot be fetched or verified).  The only user of libfuse; mount.c
 * reaches it through frontend_fuse (frontend.h), sup.c through the
 * fs_mount_* calls.
 */

struct fs;

/*
 * The options the mount is made with (malloc'ed), for the supervisor's
 * fs_mount_only().
 */
char *fs_mount_opts(const struct frontend_conf *conf);
/*
 * Take up the connection @fd (the caller's; closed by fs_free): a
 * session on it that has answered the kernel's FUSE_INIT @init, as the
 * supervisor kept it.  @max_write: what an earlier server agreed for
 * this connection (0: none did), which this one must keep.  No thread yet.
 */
int fs_new(const struct frontend_conf *conf, int fd, const void *init,
	   size_t init_len, uint64_t max_write, struct fs **out);
/* What this session agreed with the kernel at INIT (capabilities,
 * max_write): every server of a connection must agree alike. */
void fs_agreement(const struct fs *fs, uint64_t *want, uint64_t *max_write);

/* The supervisor's side: a mount it owns and never serves itself. */
struct fs_mount;
int fs_mount_only(const char *mountpoint, const char *opts,
		  struct fs_mount **out);
/* One a predecessor mounted: its connection @fd (now ours). */
int fs_mount_adopt(const char *mountpoint, int fd, struct fs_mount **out);
int fs_mount_fd(const struct fs_mount *m);
/* Closes (and with @unmount first unmounts, lazily). */
void fs_mount_release(struct fs_mount *m, bool unmount);
/* Serve requests until unmounted or fs_exit(); may be called once. */
int fs_run(struct fs *fs);
/* Ask fs_run() to return; safe from a signal handler. */
void fs_exit(struct fs *fs);
/*
 * Unmount now, as fusermount3 -u would (lazily): the session then ends
 * and fs_run() returns.  Any thread.
 */
void fs_unmount(struct fs *fs);
void fs_unmount_at(const char *mountpoint);
/*
 * End the FUSE connection itself (fusectl's abort): for a mount that
 * lives on in another mount namespace (libvirt's QEMU has its own)
 * after fs_unmount().  Only once no one uses its files.  Any thread.
 */
int fs_abort(struct fs *fs);
/* The session has ended (unmounted, or a signal): any thread. */
bool fs_is_exited(struct fs *fs);
/* Close this session's copy of the connection and free. */
void fs_free(struct fs *fs);

#endif
