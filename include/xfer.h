/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_XFER_H
#define PBSLM_XFER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct tls_pin;

/*
 * The request policy both transports follow (fetch.c: the curl multi
 * pool for HTTP(S) and S3; h2.c: the PBS reader's HTTP/2 session), so
 * that it is stated once: which class of request may start, how long to
 * wait before the next try and when to give up, one log line per outage,
 * the back-off nap that cancellation cuts short, and curl's one-time
 * set-up and TLS pinning hook.  The transports keep only their queues,
 * their connections and how they read an answer.  Thread-safe.
 */

/* Defaults of the network options (cli.h uses them), stated once. */
#define XFER_SLOTS 16			/* --connections */
#define XFER_REMOTE_TIMEOUT_MS 60000	/* --remote-timeout */
#define XFER_REQUEST_TIMEOUT_MS 30000	/* one try */
#define XFER_CONNECT_TIMEOUT_MS 10000	/* a server never reached */

enum fetch_prio {
	FETCH_DEMAND,		/* a reader waits: always gets a slot */
	FETCH_READAHEAD,	/* at most connections - 1 in flight */
	FETCH_STREAM,		/* at most connections - 2 in flight */
	FETCH_NPRIO,
};

/* May a request of class @p start, with @active transfers of each class
 * running and @n slots in all?  Background classes never take the last
 * slot: a demand read always finds one free at once. */
bool xfer_may_start(const unsigned int active[FETCH_NPRIO], unsigned int n,
		    enum fetch_prio p);

/* Delay before retry @attempt (1-based): 100 ms doubling to 5 s, +-25 %
 * by @rnd (any 32-bit value). */
uint64_t xfer_backoff_ms(unsigned int attempt, uint32_t rnd);

/*
 * One request's tries: started with the time it may take in all
 * (--remote-timeout); each failed try asks xfer_retry_next() how long to
 * nap, or false: no time is left, give up.  The last try comes at the
 * deadline rather than a whole back-off early.  ->deadline may be
 * lowered by the caller (a server never reached).
 */
struct xfer_retry {
	uint64_t t0;		/* now_ns() at the start */
	uint64_t deadline;	/* now_ns() bound of the last try */
	uint32_t seed;		/* jitter */
	unsigned int attempt;	/* tries begun */
};

void xfer_retry_start(struct xfer_retry *rt, uint64_t timeout_ms,
		      const void *salt);
bool xfer_retry_next(struct xfer_retry *rt, uint64_t *delay_ms);
/* Seconds since xfer_retry_start(). */
double xfer_retry_elapsed(const struct xfer_retry *rt);

/*
 * One line per outage, not one per chunk: true if this give-up should
 * be logged, that is no other was within @window_ms.  @last_ns is the
 * engine's, atomic.
 */
bool xfer_giveup_should_log(uint64_t *last_ns, uint64_t window_ms);

/* Nap @ms on @cond (with @lock, not held by the caller) unless *@cancel
 * is or becomes true; true if cancelled.  @cond uses CLOCK_REALTIME. */
bool xfer_nap(pthread_mutex_t *lock, pthread_cond_t *cond,
	      const bool *cancel, uint64_t ms);

/* curl_global_init, once per process, before any transport thread:
 * 0 or -EIO. */
int xfer_curl_init(void);

/*
 * The pin for --fingerprint @fingerprint (NULL: *@out = NULL) of @host;
 * @insecure is only warned about.  -EINVAL, logged as @who's, for a
 * malformed fingerprint.
 */
int xfer_tls_pin(const char *who, const char *fingerprint, const char *host,
		 bool insecure, struct tls_pin **out);

/*
 * TLS checks of the curl easy handle @easy: the CA file @ca_file (NULL:
 * the system's), none at all with @insecure, or PBS-style pinning with
 * @pin (tls.h: the pin decides where the chain does not).
 */
void xfer_setup_tls(void *easy, const char *ca_file, bool insecure,
		    struct tls_pin *pin);

#endif
