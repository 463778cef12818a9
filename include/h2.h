/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_H2_H
#define PBSLM_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fetch.h"
#include "util.h"

/*
 * HTTP/2 on an upgraded HTTP/1.1 connection, the transport of PBS's
 * reader protocol (PBS-PROTOCOL.md 1.3-1.6), beside fetch.c in the
 * network layer: TCP and TLS by libcurl (CONNECT_ONLY, no ALPN, pinning
 * as tls.h says), the upgrade request written and its answer read here,
 * then HTTP/2 with prior knowledge on the same stream by libnghttp2.
 *
 * One connection ("session") at a time; requests are multiplexed on it
 * in the priority order of fetch.h, at most the engine's window (xfer.h:
 * conf.streams, or adaptive) and never more than the server's
 * MAX_CONCURRENT_STREAMS in flight, a demand request
 * always finding a slot.  When the session drops, is refused by GOAWAY
 * or stalls, a new one is opened on the next request: the upgrade again,
 * then conf.prepare() (PBS: download the indexes again, which registers
 * their chunks), and only then the requests that were waiting.  A
 * request is never sent on a session newer than the one it was prepared
 * for.  Retries and back-off are here, within remote_timeout, as in
 * fetch.c.
 *
 * Threads: h2_new() starts one loop thread that alone touches curl, the
 * socket and the nghttp2 session; callers block in h2_get().
 */
struct h2;

struct h2_conf {
	const char *label;		/* for messages: "pbs.example:8007" */
	const char *host;		/* name or address to connect to */
	unsigned int port;
	const char *ca_file;
	const char *fingerprint;	/* "aa:bb:..", or NULL */
	bool insecure;
	unsigned int streams;		/* in flight; 0: adaptive (xfer.h) */
	size_t body_pool;		/* as fetch_conf.body_pool */
	uint64_t remote_timeout_ms;	/* one h2_get, retries included */
	uint64_t request_timeout_ms;	/* one attempt, and the upgrade */
	uint64_t limit_rate;		/* bytes/s received, 0 = none */
	/*
	 * Append the upgrade request for a new connection to @out: request
	 * line and headers, ending with the empty line.  Loop thread.
	 * 0, or -errno (that connection attempt fails with it).
	 */
	int (*upgrade)(void *arg, struct buf *out);
	/*
	 * A new session is up: make it ready with h2_get_on(h, session,
	 * ...) before anything else is sent on it.  Called on one of the
	 * threads waiting in h2_get(), one at a time.  0, -ESTALE (the
	 * session went away meanwhile: a new one is tried), or -errno
	 * (the waiting h2_get() calls fail with it, or retry if -EIO).
	 */
	int (*prepare)(void *arg, struct h2 *h, uint64_t session);
	void *arg;
};

/* Strings in @conf are copied.  Connects on first use. */
int h2_new(const struct h2_conf *conf, struct h2 **out);
/* Closes the session (GOAWAY) and joins the loop thread; no h2_get may
 * be running. */
void h2_free(struct h2 *h);
/* As fetch_cancel(): everything ends with -ECANCELED from now on. */
void h2_cancel(struct h2 *h);
/* Any thread: streams in flight allowed now (xfer.h's window). */
unsigned int h2_window(struct h2 *h);

/*
 * GET @path ("/chunk?digest=..."): as fetch_get(), on a ready session,
 * reconnecting and retrying as needed within remote_timeout.  0; -ENOENT
 * (404); -EACCES (401, 403, or the upgrade refused the credentials or
 * the pin: logged); -EIO (gave up, logged once); -EREMOTEIO (the
 * upgrade refused for good, e.g. no such datastore or snapshot: the
 * server's text logged); -ECANCELED; or the check's error.
 */
int h2_get(struct h2 *h, const char *path, enum fetch_prio prio, size_t max,
	   fetch_check_fn check, void *arg, uint8_t **buf, size_t *len);

/*
 * From conf.prepare only: one GET on session @session, no retries.  0
 * with the body (malloc'ed); -ESTALE if that session is gone; -ENOENT
 * (404); -EIO with the server's text logged for other statuses.
 */
int h2_get_on(struct h2 *h, uint64_t session, const char *path, size_t max,
	      uint8_t **buf, size_t *len);

/*
 * The head of an HTTP/1.1 answer in @p: 0 with the status, the
 * Content-Length (0 if none) and the head's length; -EAGAIN if it is
 * not complete yet; -EBADMSG if it is not one (or over 64 KiB).  For
 * the fuzz target; untrusted input.
 */
int h2_parse_head(const uint8_t *p, size_t len, long *status, size_t *clen,
		  size_t *headlen);

/* The server's MAX_CONCURRENT_STREAMS of the current session (0: none
 * yet), and how many sessions were opened: for tests and .status. */
unsigned int h2_remote_streams(struct h2 *h);
uint64_t h2_sessions(struct h2 *h);

#endif
