/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_H2_I_H
#define PBSLM_H2_I_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <nghttp2/nghttp2.h>

#include "h2.h"
#include "tls.h"
#include "util.h"
#include "xfer.h"

/*
 * The inside of h2, shared by h2.c (the loop, the requests and their
 * tries) and h2_conn.c (a connection: TCP and TLS by curl, the HTTP/1.1
 * upgrade, the nghttp2 session's callbacks).  States and locking: the
 * top of h2.c.
 */

#define HEAD_MAX (64u << 10)
#define WINDOW ((1u << 31) - 2)
#define FRAME_MAX (4u << 20)
#define RECV_BUF (256u << 10)

enum h2_state {
	H2_DOWN,
	H2_CONNECTING,
	H2_UP,
};

struct hreq {
	struct xfer_req x;		/* the engine's part */
	struct h2 *h;			/* immutable */
	const char *path;		/* borrowed from the caller */
	size_t max;			/* immutable: longer bodies fail */
	uint64_t gen;			/* the session it may go on */
	bool on_prepare;		/* may go before ->prepared */
	int32_t sid;			/* loop thread */
	uint64_t deadline;		/* loop thread: now_ns() bound */
	long status;			/* protected by ->x.lock once done */
	bool refused_once;		/* caller: a 401 retried */
	fetch_check_fn check;		/* caller */
	void *check_arg;		/* caller */
	uint8_t **buf;			/* caller */
	size_t *len;			/* caller */
};

struct h2 {
	struct h2_conf conf;		/* immutable; strings owned */
	struct tls_pin *pin;		/* immutable; NULL without a pin */
	pthread_t loop;
	int evfd;			/* immutable: wakes the loop */
	struct xfer_engine x;		/* queues, slots, tries; ->x.lock
					   guards the fields below it */
	enum h2_state state;		/* protected by ->lock */
	uint64_t gen;			/* protected by ->lock */
	uint64_t prepared;		/* protected by ->lock */
	bool preparing;			/* protected by ->lock */
	bool draining;			/* protected by ->lock: GOAWAY */
	bool want_connect;		/* protected by ->lock */
	uint64_t attempts;		/* protected by ->lock: connects done */
	int conn_err;			/* protected by ->lock: last attempt */
	unsigned int remote_max;	/* protected by ->lock */
	/* Loop thread only: */
	CURL *easy;
	curl_socket_t sock;
	nghttp2_session *ngs;
	struct buf out;			/* bytes nghttp2 gave, not yet sent */
	size_t out_off;
	uint64_t last_rx_ns;
	double tokens;			/* --limit-rate bucket, bytes */
	uint64_t tokens_ns;
	char errbuf[CURL_ERROR_SIZE];
};

/* Across the two files (loop thread unless said). */
int h2_do_connect(struct h2 *h, bool *retry);
void h2_drop_session(struct h2 *h, const char *why);
void h2_error_text(const uint8_t *p, size_t n, char *out, size_t len);
void h2_finish_running(struct h2 *h, struct hreq *r, int err,
			   long status);

#endif
