/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_FETCH_H
#define PBSLM_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xfer.h"

/*
 * HTTP(S) GETs for the stores: one event-loop thread drives a libcurl
 * multi handle (keep-alive pool, HTTP/2 multiplexing over TLS), with
 * three priority classes and retries with back-off.  The only module
 * that includes curl (and, for certificate pinning, OpenSSL's SSL API).
 * Callers block in fetch_get(); bodies are checked on the caller's
 * thread, never on the loop thread.
 */

struct fetch_conf {
	unsigned int connections;	/* in flight; 0: adaptive (xfer.h) */
	uint64_t remote_timeout_ms;	/* one fetch_get, retries included */
	uint64_t request_timeout_ms;	/* one attempt */
	/*
	 * Until a first answer from the server: a refused connection or a
	 * name that does not resolve is said at once (one warning) and
	 * given up after this, not after remote_timeout_ms.  0: 10 s.
	 */
	uint64_t connect_timeout_ms;
	uint64_t limit_rate;		/* total bytes/s, 0 = none */
	const char *ca_file;
	const char *fingerprint;	/* "aa:bb:..": pin as PBS does (tls.h) */
	const char *host;		/* the server's name, for the pin's
					   name check; NULL: none */
	bool insecure;
	const char *auth_header;	/* "Authorization: ...", or NULL */
	/*
	 * Bodies that a check reads and drops (chunks), up to this size,
	 * go into spare buffers kept for the next: fresh memory's first
	 * touch (a page fault a page) cost more than the transfer.  0: none.
	 */
	size_t body_pool;
	/*
	 * AWS Signature V4 by libcurl (CURLOPT_AWS_SIGV4): provider string
	 * "aws:amz:REGION:s3", or NULL; the key id and secret (kept in
	 * locked memory, wiped at fetch_free), and a session token sent as
	 * x-amz-security-token.  Each request adds x-amz-content-sha256.
	 */
	const char *aws_sigv4;
	const char *aws_key_id;
	const char *aws_secret;
	const char *aws_token;
};

struct fetch;

/* Strings in @conf are copied.  Starts the loop thread. */
int fetch_new(const struct fetch_conf *conf, struct fetch **out);
/* Stops and joins the loop thread; no fetch_get may be running. */
void fetch_free(struct fetch *f);
/*
 * Abort every transfer in flight or queued and refuse new ones: every
 * fetch_get() returns -ECANCELED promptly from now on (for shutdown).
 * Any thread; does not wait.
 */
void fetch_cancel(struct fetch *f);
/* Any thread: transfers in flight allowed now (xfer.h's window). */
unsigned int fetch_window(struct fetch *f);

/* One request; strings and buffers borrowed for the call. */
struct fetch_request {
	const char *url;
	const char *method;		/* NULL: GET, or POST with a body */
	const char *const *headers;	/* NULL-terminated "Name: value"
					   lines added to the conf's */
	const void *body;		/* NULL: none */
	size_t body_len;
	enum fetch_prio prio;
	size_t max;			/* response bodies over it: corrupt */
	bool error_body;		/* a final HTTP error returns its body */
};

struct fetch_response {
	long status;			/* last HTTP status, 0 if none */
	uint8_t *body;			/* malloc'ed (NUL after len) or NULL */
	size_t len;
};

/*
 * Like fetch_get(), for any method and headers: 0 with the body in
 * @resp (unless @check took it); -errno as fetch_get.  With
 * rq->error_body, a final (non-retried) HTTP error also fills
 * resp->status and resp->body and is not logged: the caller says what
 * it means.  The caller frees resp->body in every case.
 */
int fetch_request(struct fetch *f, const struct fetch_request *rq,
		  fetch_check_fn check, void *arg, struct fetch_response *resp);

/*
 * GET @url.  With @check the body is handed to it (and freed here);
 * without, *@buf receives it (malloc'ed, NUL after *@len).  Bodies over
 * @max bytes count as corrupt.  Returns 0; -ENOENT (404); -EACCES (401,
 * 403, certificate refused); -EIO after retries ran out of
 * remote_timeout (logged once with the URL, the last status or curl
 * error, and the reason); -ECANCELED after fetch_cancel(); or the
 * check's error.
 */
int fetch_get(struct fetch *f, const char *url, enum fetch_prio prio,
	      size_t max, fetch_check_fn check, void *arg, uint8_t **buf,
	      size_t *len);

/* Exposed for the unit tests. */
int fetch_status_errno(long status);	/* 0 for 2xx */
bool fetch_status_retryable(long status);

#endif
