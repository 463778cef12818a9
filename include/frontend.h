/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_FRONTEND_H
#define PBSLM_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

/*
 * A front end: how a mount's images reach their readers.  mount.c
 * starts one through struct frontend_ops and knows nothing else of it;
 * the front end calls only image_* (image_guest_read holds the read
 * policy) and the callbacks below.  FUSE is the one today
 * (frontend_fuse.c over fs.c, its connection kept by the supervisor of
 * sup.c so that a new server can take it up).
 */

struct sup_client;
struct frontend;

/* Fills *@json (malloc'ed, NUL-terminated) with the status document. */
typedef int (*frontend_status_fn)(void *arg, char **json);

/* A read-only document beside the images (a VM's configuration). */
struct frontend_file {
	char *name;
	uint8_t *data;
	size_t len;
};

struct frontend_conf {
	const char *mountpoint;
	struct sup_client *sup;		/* borrowed: the connection's keeper */
	struct image **images;		/* borrowed, outlive the front end */
	unsigned int nimages;
	const struct frontend_file *files; /* borrowed, as the images */
	unsigned int nfiles;
	bool allow_other;
	bool read_only;			/* images are mode 0444 */
	const char *options;		/* extra mount options, or NULL */
	unsigned int max_threads;	/* workers */
	frontend_status_fn status;
	void *status_arg;
	/*
	 * A request to the mount (FUSE: setxattr of @name on ".status").
	 * Runs on a worker (others keep serving); 0 or -errno is the
	 * reply.  control_done() is called after the reply.  NULL:
	 * refused.
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

struct frontend_ops {
	const char *name;
	/* Take up the connection and agree with the kernel: no thread
	 * yet, nothing served.  0 or -errno (logged). */
	int (*start)(const struct frontend_conf *conf, struct frontend **out);
	/* Tell the connection's keeper this server serves now. */
	int (*announce)(struct frontend *fe);
	/* Serve until unmounted or ended; once. */
	int (*run)(struct frontend *fe);
	/* End the mount as fusermount3 -u would: run() then returns.  Any
	 * thread. */
	void (*unmount)(struct frontend *fe);
	/* End a mount that lives on in another mount namespace, once no
	 * one uses it.  Any thread. */
	int (*abort)(struct frontend *fe);
	/* Serving has ended.  Any thread. */
	bool (*exited)(struct frontend *fe);
	void (*free)(struct frontend *fe);	/* NULL: nothing */
};

extern const struct frontend_ops frontend_fuse;

#endif
