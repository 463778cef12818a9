/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_FS_H
#define PBSLM_FS_H

#include <stdbool.h>

#include "image.h"
#include "readahead.h"

/*
 * The FUSE front-end (low-level API, multithreaded): one regular file per
 * image plus a read-only ".status" (JSON).  Maps -errno results to
 * fuse_reply_err; decides what read(2) callers see (EIO for a chunk that
 * cannot be fetched or verified).  The only user of libfuse.
 */

struct fs;

/* Fills *@json (malloc'ed, NUL-terminated) with the status document. */
typedef int (*fs_status_fn)(void *arg, char **json);

struct fs_conf {
	const char *mountpoint;
	struct image **images;		/* borrowed, outlive the fs */
	unsigned int nimages;
	bool allow_other;
	bool read_only;			/* images are mode 0444 */
	const char *fuse_opts;		/* extra -o options, or NULL */
	unsigned int max_threads;	/* FUSE worker threads */
	fs_status_fn status;
	void *status_arg;
	struct readahead *readahead;	/* borrowed, may be NULL */
	/*
	 * A request to the mount: setxattr of @name on ".status".  Runs on
	 * the FUSE worker (others keep serving); 0 or -errno is the reply.
	 * control_done() is called after the reply.  NULL: refused.
	 */
	int (*control)(void *arg, const char *name, const char *value,
		       size_t len);
	void (*control_done)(void *arg);
	void *control_arg;
};

/* Create the session and mount; no thread is started yet. */
int fs_new(const struct fs_conf *conf, struct fs **out);
/* Serve requests until unmounted or fs_exit(); may be called once. */
int fs_run(struct fs *fs);
/* Ask fs_run() to return; safe from a signal handler. */
void fs_exit(struct fs *fs);
/*
 * Unmount now, as fusermount3 -u would (lazily): the session then ends
 * and fs_run() returns.  Any thread.
 */
void fs_unmount(struct fs *fs);
/*
 * End the FUSE connection itself (fusectl's abort): for a mount that
 * lives on in another mount namespace (libvirt's QEMU has its own)
 * after fs_unmount().  Only once no one uses its files.  Any thread.
 */
int fs_abort(struct fs *fs);
/* The session has ended (unmounted, or a signal): any thread. */
bool fs_is_exited(struct fs *fs);
/* Unmount (if still mounted) and free. */
void fs_free(struct fs *fs);

#endif
