/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_STORE_BACKEND_H
#define PBSLM_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fetch.h"
#include "store.h"

/*
 * What a store backend is made of, and what the backends share
 * (store_common.c): below the factory (store.c), which only holds the
 * table of backends.  A backend is one file, store_NAME.c, that defines
 * a struct store_backend: which repositories it claims, its own
 * options, where its credentials come from, and how to open it.  Adding
 * a store is that file and one line in store.c's table.
 */

struct store_backend {
	const char *name;
	/* Is @url (of @kind) one of this backend's repositories? */
	bool (*claims)(const char *url, enum store_kind kind);
	const struct store_option *options;	/* ends at a NULL name */
	/*
	 * Find the credentials of @conf->url into @conf's settings (before
	 * a daemon detaches: a prompt may be shown); NULL if none are
	 * needed.  0, or -errno (logged).
	 */
	int (*credentials)(struct store_conf *conf,
			   const struct store_env *env);
	int (*open)(const struct store_conf *conf, struct store **out);
};

extern const struct store_backend store_dir_backend;
extern const struct store_backend store_http_backend;
extern const struct store_backend store_pbs_backend;
extern const struct store_backend store_s3_backend;

/* -- shared by the backends (store_common.c) -- */

/* A chunk check handed to a transport: store_chunk_check_cb() runs
 * ->check; an empty body is -ENOENT (web servers and S3 answer a
 * missing file so on some setups). */
struct store_chunk_check {
	store_check_fn check;
	void *arg;
};
int store_chunk_check_cb(const uint8_t *body, size_t len, void *arg);
/* The transport's priority of a store request. */
enum fetch_prio store_fetch_prio(enum store_prio p);
/* The fetch engine's settings that come from @conf as they are. */
void store_fetch_conf(const struct store_conf *conf, struct fetch_conf *fc);
/* store_option.check of a descriptor number. */
int store_check_fd(const char *arg, char *why, size_t len);

#endif
