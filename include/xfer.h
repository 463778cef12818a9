/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_XFER_H
#define PBSLM_XFER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct tls_pin;

/*
 * The request engine below both transports (fetch.c: the curl multi
 * pool for HTTP(S) and S3; h2.c: the PBS reader's HTTP/2 session): the
 * priority queues and the running list, which class of request may
 * start, each request's tries with back-off within --remote-timeout,
 * cancellation, one log line per outage, the spare body buffers, curl's
 * one-time set-up and the TLS pinning hook.  A transport embeds a
 * struct xfer_engine, takes startable requests off it on its loop
 * thread, ends them there, and keeps only its connections and how it
 * reads an answer.
 */

/* Defaults of the network options (cli.h uses them), stated once. */
#define XFER_SLOTS_MAX 64		/* adaptive: at most in flight */
/*
 * Adaptive: where it starts.  Restores of 4 GiB over nginx HTTPS measured
 * 16 within 5 % of the best of 1, 4, 16 and 64 at 0, 10 and 25 ms; from
 * 8, the first 0.9-1.9 s of a 7-8 s restore at 25 ms went at 8 (a
 * restore's first rates are its slowest, and the first decisions wait
 * for them).  As TCP's initial window grew to 10 segments once links
 * did (RFC 6928).
 */
#define XFER_SLOTS_FIRST 16
#define XFER_REMOTE_TIMEOUT_MS 60000	/* --remote-timeout */
#define XFER_REQUEST_TIMEOUT_MS 30000	/* one try */
#define XFER_CONNECT_TIMEOUT_MS 10000	/* a server never reached */

enum fetch_prio {
	FETCH_DEMAND,		/* a reader waits: always gets a slot */
	FETCH_READAHEAD,	/* at most window - 1 in flight */
	FETCH_STREAM,		/* at most window - 2 in flight */
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
/* A certificate refused by @who for @where: the fingerprint seen when
 * @pin refused it, else curl's @text and what to do.  -EACCES. */
int xfer_tls_refused(const char *who, const char *where,
		     struct tls_pin *pin, const char *text);

/*
 * Body check: 0 accepts; -EBADMSG fetches again (bounded, never served);
 * any other -errno fails at once.  Runs on the calling thread.  When
 * every try fails the check, the request returns -EBADMSG unlogged.
 */
typedef int (*fetch_check_fn)(const uint8_t *body, size_t len, void *arg);

/*
 * How many requests may be in flight: fixed (--connections N), or found
 * by measurement as TCP's congestion control finds a window: start at
 * XFER_SLOTS_FIRST, double while the rate grows, stay at the best when a
 * doubling did not gain; then hold, and now and then probe a quarter up
 * or down, kept if it gains (the link or the server changed).  A
 * candidate (a doubling, a probe) is measured between two measures of
 * the best (A/B/A: the best again after it), so that a rate drifting
 * through a restore is not taken for a gain; it loses at once when the
 * median of its three epochs is below all three of the best's last, and
 * wins when it is above all three before it, above the best's median
 * after it and 3 % above the two's mean: an epoch's rate varies by a
 * fifth on a busy host (a commit's fdatasync, the disk), and a median
 * against a median moved the window on noise one time in two.
 *
 * The rate is completions over the time they took, in an epoch of
 * window + 2 completions (at least 12) that starts and ends at a
 * completion; a window's rate is the median of three epochs (one in a
 * few stalls on something else: a disk, a commit).  On a link that is
 * full a larger window only makes each request slower (flat rate); with
 * latency to cover it does not (the rate grows).  A chunk of a fixed
 * index is the same number of image bytes however well it compressed, so
 * requests are what to count.  Only an epoch in which requests waited
 * for a slot of the window says anything (otherwise the demand, a
 * loop's share or a server's cap on streams was the limit).  After a
 * change, the first epoch starts when a request started under the new
 * window comes back (till then the old window is what is in flight);
 * the first 24 completions (they paid for connecting and for first
 * touches at both ends) are not counted.  Not Little's law
 * (requests in flight over their mean time in flight), which this
 * replaced: an epoch that ends after a count of completions holds the
 * requests that came back soonest, and just after a change those are
 * a biased few: restores over a fast link measured twice their real rate
 * at 32 and 64 and grew to 64, 10 % slower there than at 16.  The caller
 * serialises (the engine's ->lock).
 */
#define XFER_WINDOW_EPOCHS 3	/* a window's rate: their median */

enum xfer_window_phase {
	XFER_GROW,			/* doubling */
	XFER_HOLD,			/* at the best found */
	XFER_PROBE_UP,			/* trying a quarter more */
	XFER_PROBE_DOWN,		/* trying a quarter fewer */
	XFER_RECHECK,			/* the best again, after a candidate */
};

struct xfer_window {
	unsigned int cur;		/* in flight allowed now; written
					   under the engine's ->lock, read
					   atomically by xfer_window_now() */
	unsigned int max;		/* immutable */
	bool fixed;			/* immutable: --connections */
	enum xfer_window_phase phase;
	unsigned int best;		/* window that gave ->best_rate */
	double best_rate;		/* completions/s at ->best; 0: none */
	double best_rates[XFER_WINDOW_EPOCHS]; /* its last epochs' */
	unsigned int cand;		/* RECHECK: the window it measured */
	enum xfer_window_phase cand_phase; /* and in which phase */
	double cand_rates[XFER_WINDOW_EPOCHS]; /* and its epochs' */
	unsigned int holds;		/* epochs held since the last probe */
	bool probe_down;		/* the next probe goes down */
	unsigned int warmup;		/* first completions still to pass */
	uint64_t since;			/* ns: ->cur set */
	bool settled;			/* a request started since came back */
	uint64_t last;			/* ns: the last completion counted */
	uint64_t epoch_t0;		/* ns: the epoch began (a completion) */
	unsigned int done;		/* epoch: completions after ->epoch_t0 */
	double rates[XFER_WINDOW_EPOCHS]; /* epochs' rates at ->cur */
	unsigned int nrates;
	bool limited;			/* epoch: a request waited for a slot */
	unsigned int changes;		/* window changes so far (tests) */
};

/* @fixed > 0: always that many; else adaptive up to @max (> 0). */
void xfer_window_init(struct xfer_window *w, unsigned int fixed,
		      unsigned int max);
/* A request that started at @start_ns ended well at @now_ns. */
void xfer_window_sample(struct xfer_window *w, uint64_t start_ns,
			uint64_t now_ns);
/* A request waited for a slot (the window, not demand, was the limit). */
void xfer_window_waited(struct xfer_window *w);

/* Loop threads (and, for the PBS protocol, sessions) a transport runs:
 * one per online core, at most XFER_THREADS_MAX, at most @connections
 * when that is fixed (not 0). */
#define XFER_THREADS_MAX 8
unsigned int xfer_threads(unsigned int connections);

/* ---- the engine ---- */

/*
 * One request as the engine sees it, embedded in the transport's own
 * (container_of finds that again).
 */
struct xfer_req {
	enum fetch_prio prio;		/* immutable */
	struct buf body;		/* the loop thread while running, then
					   the caller */
	bool pooled;			/* immutable: a spare body once it
					   runs (xfer_take) */
	void *mem;			/* body's memory from ->bodies, or
					   NULL: its own */
	int err;			/* engine ->lock: -errno, 0 */
	bool done;			/* engine ->lock */
	pthread_cond_t cond;		/* with engine ->lock */
	struct xfer_req *next;		/* engine ->lock: queue link, then
					   xfer_take()'s list */
	struct xfer_req *run_next;	/* engine ->lock: ->running link */
	uint64_t start_ns;		/* engine ->lock: taken to run */
};

struct xfer_conf {
	const char *who;		/* "fetch", "h2": for messages */
	const char *from;		/* NULL, or the server: for messages */
	unsigned int slots;		/* fixed in flight; 0: adaptive */
	uint64_t remote_timeout_ms;	/* one request, tries included */
	size_t body_pool;		/* size of a spare body, 0: none */
	void (*wake)(void *arg);	/* wake the transport's loop thread */
	void *wake_arg;
};

/*
 * An embedded value, set up by xfer_init().  ->lock guards the queues,
 * the running list, the counts, ->stop, ->cancel and every request's
 * done/err (and whatever shared state the transport adds under it); it
 * is never held across network I/O or a body check.  Lock order: ->lock
 * only.
 */
struct xfer_engine {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* with ->lock: cancel, and the
					   transport's state changes */
	struct xfer_req *queue[FETCH_NPRIO]; /* ->lock: FIFO heads */
	struct xfer_req **tail[FETCH_NPRIO]; /* ->lock */
	struct xfer_req *running;	/* ->lock: taken, not yet ended */
	unsigned int active[FETCH_NPRIO]; /* ->lock */
	unsigned int nactive;		/* ->lock */
	bool stop;			/* ->lock: the loop thread ends */
	bool cancel;			/* ->lock: xfer_cancel() */
	struct xfer_window win;		/* ->lock: requests in flight */
	struct bufpool bodies;		/* its own lock */
	uint64_t last_giveup_ns;	/* atomic: a give-up was logged */
	struct xfer_conf conf;		/* immutable; strings borrowed */
};

void xfer_init(struct xfer_engine *e, const struct xfer_conf *conf);
void xfer_release(struct xfer_engine *e);

/* Any thread: every request ends with -ECANCELED from now on, and
 * back-off naps wake.  Does not wait. */
void xfer_cancel(struct xfer_engine *e);
bool xfer_cancelled(struct xfer_engine *e);
/* Any thread: requests in flight allowed now (a snapshot, for callers
 * that size their own work to it). */
unsigned int xfer_window_now(struct xfer_engine *e);

/* -- the loop thread, ->lock held -- */

/* End @r, not running (queued, or refused before it started). */
void xfer_finish(struct xfer_req *r, int err);
/* End @r, taken by xfer_take(). */
void xfer_end(struct xfer_engine *e, struct xfer_req *r, int err);
/* End every queued request with @err. */
void xfer_end_queued(struct xfer_engine *e, int err);
/* Whether @r may go now: 0 yes, 1 not yet (stays queued), -errno: it
 * ends with that. */
typedef int (*xfer_admit_fn)(struct xfer_req *r, void *arg);
/* The requests that may start now, in priority order, linked by ->next
 * and counted as running: with the engine's window in flight in all,
 * but never more than @cap (the transport's own bound, 0: none), and of
 * stream and readahead requests at most @most (one loop's share; demand
 * reads are not counted).  @admit may be NULL. */
struct xfer_req *xfer_take(struct xfer_engine *e, unsigned int cap,
			   unsigned int most, xfer_admit_fn admit, void *arg);
/* Only stream requests run or wait. */
bool xfer_background_only(const struct xfer_engine *e);

/* -- the calling thread -- */

/* Set up @r; with @pooled, a body under the pool's size goes into a
 * spare buffer (the check drops it). */
void xfer_req_init(struct xfer_engine *e, struct xfer_req *r,
		   enum fetch_prio prio, bool pooled, size_t max);
void xfer_req_release(struct xfer_engine *e, struct xfer_req *r);
/* One try: queue @r (bodies over @max fail it), wake the loop, wait
 * until it ends; at once -ECANCELED after xfer_cancel(). */
void xfer_wait(struct xfer_engine *e, struct xfer_req *r, size_t max);
/* A 2xx answer's body: to @check (0, -errno, or XFER_BAD_BODY), or
 * without one into *@buf (malloc'ed, NUL after *@len). */
int xfer_body(struct xfer_req *r, fetch_check_fn check, void *arg,
	      uint8_t **buf, size_t *len);

/* What one try says, beyond 0 (done) and -errno (failed for good). */
enum {
	XFER_RETRY = 1,		/* after a back-off, if time is left */
	XFER_AGAIN,		/* at once */
	XFER_BAD_BODY,		/* the check refused it: as XFER_RETRY,
				   and -EBADMSG unlogged at the end */
};

/* One try of a request; @why says what went wrong for a retry. */
typedef int (*xfer_try_fn)(void *arg, struct xfer_retry *rt, char *why,
			   size_t whylen);

/*
 * The tries of request @r until one is done or fails for good, or
 * --remote-timeout runs out (-EIO, logged once per outage naming
 * @what, a URL or path); -ECANCELED when cancelled during a back-off.
 */
int xfer_run(struct xfer_engine *e, struct xfer_req *r, xfer_try_fn try,
	     void *arg, const char *what);

#endif
