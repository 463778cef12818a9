/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_FS_H
#define PBSLM_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
	/* The connection the supervisor mounted (sup.h), and the kernel's
	 * FUSE_INIT request on it, replayed into this session. */
	int fd;
	const void *init;
	size_t init_len;
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
	/*
	 * What an earlier server of the connection set that the kernel
	 * remembers (the images' owners and modes: libvirt's chown), as
	 * @memo_out gave it, or NULL; memo_out(@control_arg, text) is
	 * called with the new text after each change (under a lock: in
	 * order), to hand to the next server.
	 */
	const char *memo;
	void (*memo_out)(void *arg, const char *text);
	/*
	 * A test's fault: "OP:N" (OP write, fallocate or fsync) kills this
	 * process (SIGKILL) once the Nth OP is carried out, before its
	 * answer, so that the next server gets it again.  NULL: none.
	 */
	const char *fault;
};

/*
 * The options the mount is made with (malloc'ed), for the supervisor's
 * fs_mount_only().
 */
char *fs_mount_opts(const struct fs_conf *conf);
/*
 * Take up the connection @conf->fd (the caller's; closed by fs_free):
 * a session on it that has answered @conf->init.  No thread yet.
 */
int fs_new(const struct fs_conf *conf, struct fs **out);
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
