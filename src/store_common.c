/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the store backends share (store_backend.h), below the factory:
 * a backend calls these, never store.c.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>

#include "store_backend.h"
#include "util.h"
#include "banned.h"

enum fetch_prio store_fetch_prio(enum store_prio p)
{
	return p == STORE_PRIO_DEMAND	 ? FETCH_DEMAND :
	       p == STORE_PRIO_READAHEAD ? FETCH_READAHEAD :
					   FETCH_STREAM;
}

int store_chunk_check_cb(const uint8_t *body, size_t len, void *arg)
{
	struct store_chunk_check *cc = arg;

	if (!len)
		return -ENOENT;
	return cc->check(body, len, cc->arg);
}

void store_fetch_conf(const struct store_conf *conf, struct fetch_conf *fc)
{
	fc->connections = conf->connections;
	fc->remote_timeout_ms = conf->remote_timeout_ms;
	fc->request_timeout_ms = conf->request_timeout_ms;
	fc->connect_timeout_ms = conf->connect_timeout_ms;
	fc->limit_rate = conf->limit_rate;
	fc->ca_file = conf->ca_file;
	fc->fingerprint = conf->fingerprint;
	fc->insecure = conf->insecure;
	fc->body_pool = STORE_CHUNK_MAX + 1;
}

int store_check_fd(const char *arg, char *why, size_t len)
{
	uint64_t v;

	if (parse_u64(arg, &v) || v > 1024) {
		snprintf(why, len, "'%s' is not a file descriptor", arg);
		return -EINVAL;
	}
	return 0;
}
