/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The request engine of both transports (xfer.h): the rules and
 * numbers, the queues and running list, and each request's tries.
 * Nothing here touches a connection.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "compiler.h"
#include "log.h"
#include "tls.h"
#include "util.h"
#include "xfer.h"
#include "banned.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define LAST_TRY_MS 100		/* less time left than this: give up */
#define BODIES_SLACK 8		/* spare bodies beyond the window */

bool xfer_may_start(const unsigned int active[FETCH_NPRIO], unsigned int n,
		    enum fetch_prio p)
{
	unsigned int total = 0;
	unsigned int cap = n;

	for (int i = 0; i < FETCH_NPRIO; i++)
		total += active[i];
	if (p == FETCH_STREAM)
		cap = n > 2 ? n - 2 : 1;
	else if (p == FETCH_READAHEAD)
		cap = n > 1 ? n - 1 : 1;
	/* Background work leaves the last slot to demand reads. */
	if (p != FETCH_DEMAND && n > 1 && total >= n - 1)
		return false;
	return total < n && active[p] < cap;
}

uint64_t xfer_backoff_ms(unsigned int attempt, uint32_t rnd)
{
	uint64_t ms = BACKOFF_FIRST_MS;

	for (unsigned int i = 1; i < attempt && ms < BACKOFF_MAX_MS; i++)
		ms *= 2;
	ms = MIN(ms, BACKOFF_MAX_MS);
	/* jitter: 75 % .. 125 % */
	return ms * 3 / 4 + (ms / 2) * (rnd % 1001) / 1000;
}

void xfer_retry_start(struct xfer_retry *rt, uint64_t timeout_ms,
		      const void *salt)
{
	rt->t0 = now_ns();
	rt->deadline = rt->t0 + timeout_ms * 1000000;
	/* Requests that fail together should not retry together. */
	rt->seed = (uint32_t)(uintptr_t)salt ^ (uint32_t)rt->t0;
	rt->attempt = 0;
}

bool xfer_retry_next(struct xfer_retry *rt, uint64_t *delay_ms)
{
	uint64_t now = now_ns();
	uint64_t delay;

	rt->seed = rt->seed * 1103515245u + 12345u;
	delay = xfer_backoff_ms(rt->attempt, rt->seed >> 8);
	/* The last try comes at the deadline, not a back-off early. */
	if (now + delay * 1000000 >= rt->deadline &&
	    now + LAST_TRY_MS * 1000000 < rt->deadline)
		delay = (rt->deadline - now) / 1000000;
	if (now + delay * 1000000 >= rt->deadline)
		return false;
	*delay_ms = delay;
	return true;
}

double xfer_retry_elapsed(const struct xfer_retry *rt)
{
	return (double)(now_ns() - rt->t0) / 1e9;
}

bool xfer_giveup_should_log(uint64_t *last_ns, uint64_t window_ms)
{
	uint64_t now = now_ns();
	uint64_t last = __atomic_load_n(last_ns, __ATOMIC_RELAXED);

	if (last && now - last < window_ms * 1000000)
		return false;
	return __atomic_compare_exchange_n(last_ns, &last, now, false,
					   __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

bool xfer_nap(pthread_mutex_t *lock, pthread_cond_t *cond,
	      const bool *cancel, uint64_t ms)
{
	struct timespec ts;
	bool c;

	deadline_ms(CLOCK_REALTIME, ms, &ts);
	pthread_mutex_lock(lock);
	while (!*cancel && pthread_cond_timedwait(cond, lock, &ts) != ETIMEDOUT)
		;
	c = *cancel;
	pthread_mutex_unlock(lock);
	return c;
}

static bool curl_ready;	/* written once under curl_once */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

int xfer_curl_init(void)
{
	pthread_once(&curl_once, curl_init_once);
	return curl_ready ? 0 : -EIO;
}

static CURLcode ssl_ctx_cb(CURL *easy, void *sslctx, void *arg)
{
	(void)easy;
	tls_pin_install(arg, sslctx);
	return CURLE_OK;
}

int xfer_tls_pin(const char *who, const char *fingerprint, const char *host,
		 bool insecure, struct tls_pin **out)
{
	*out = NULL;
	if (fingerprint && tls_pin_new(fingerprint, host, out)) {
		log_err("%s: cannot use fingerprint '%s': want 32 hex pairs "
			"joined by ':'", who, fingerprint);
		return -EINVAL;
	}
	if (insecure)
		log_warn("%s: --insecure: server certificates are not "
			 "verified", who);
	return 0;
}

void xfer_setup_tls(void *easy, const char *ca_file, bool insecure,
		    struct tls_pin *pin)
{
	if (ca_file)
		curl_easy_setopt(easy, CURLOPT_CAINFO, ca_file);
	if (insecure) {
		curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
	} else if (pin) {
		/* The callback checks the names unless the pin decides. */
		curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
		curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
		curl_easy_setopt(easy, CURLOPT_SSL_CTX_DATA, pin);
	}
}

int xfer_tls_refused(const char *who, const char *where,
		     struct tls_pin *pin, const char *text)
{
	char seen[96] = "";

	if (pin)
		tls_pin_last_refused(pin, seen, sizeof(seen));
	if (seen[0])
		log_err("%s: cannot trust '%s': certificate fingerprint %s is "
			"not the pinned %s", who, where, seen, tls_pin_str(pin));
	else
		log_err("%s: cannot trust '%s': %s (pin it with --fingerprint "
			"or give --ca-file)", who, where, text);
	return -EACCES;
}

/* ---- the window ---- */

#define EPOCH_MIN_DONE 12		/* fewer say more noise than rate */
#define WARMUP_DONE 24			/* first completions not counted */
#define EPOCH_MAX_NS 2000000000ull	/* longer: idle, not measured */
#define GAIN 1.03			/* worth a change, up or down */
#define HOLD_EPOCHS 8			/* between probes, in rates */

void xfer_window_init(struct xfer_window *w, unsigned int fixed,
		      unsigned int max)
{
	memset(w, 0, sizeof(*w));
	w->fixed = fixed > 0;
	w->max = fixed ? fixed : MAX(1u, max);
	w->cur = fixed ? fixed : MIN(XFER_SLOTS_FIRST, w->max);
	w->best = w->cur;
	w->phase = XFER_GROW;
	/* The first requests also pay for connecting and for first
	 * touches at both ends: not a measure. */
	w->warmup = WARMUP_DONE;
}

_Static_assert(XFER_WINDOW_EPOCHS == 3, "the rules below take three");

static double median3(const double r[3])
{
	if ((r[0] <= r[1]) == (r[1] <= r[2]))
		return r[1];
	if ((r[1] <= r[0]) == (r[0] <= r[2]))
		return r[0];
	return r[2];
}

static void epoch_start(struct xfer_window *w, uint64_t now_ns)
{
	w->epoch_t0 = now_ns;
	w->last = now_ns;
	w->done = 0;
	w->limited = false;
}

/* Move to @n at @now_ns: what started before is not counted. */
static void window_set(struct xfer_window *w, unsigned int n,
		       uint64_t now_ns)
{
	n = MAX(1u, MIN(n, w->max));
	if (n == w->cur)
		return;
	__atomic_store_n(&w->cur, n, __ATOMIC_RELAXED);
	w->changes++;
	w->since = now_ns;
	w->settled = false;
	w->nrates = 0;
}

static double min3(const double r[3])
{
	return MIN(r[0], MIN(r[1], r[2]));
}

static double max3(const double r[3])
{
	return MAX(r[0], MAX(r[1], r[2]));
}

/*
 * Worse than the best: the median of @r below all three of the best
 * window's last epochs, and 3 % below its rate.  Two windows alike pass
 * one time in five (the lowest two of six epochs both the new window's),
 * not one in two as a median against a median does with the epochs'
 * noise on a busy host (a fifth either way at 0 ms).
 */
static bool rates_worse(const struct xfer_window *w, const double r[3])
{
	return median3(r) < MIN(min3(w->best_rates), w->best_rate / GAIN);
}

static void best_set(struct xfer_window *w, const double r[3])
{
	w->best = w->cur;
	w->best_rate = median3(r);
	memcpy(w->best_rates, r, sizeof(w->best_rates));
}

/* Hold at ->cur (the best) for HOLD_EPOCHS before the next probe. */
static void hold(struct xfer_window *w)
{
	w->phase = XFER_HOLD;
	w->holds = 0;
}

/* A candidate measured: back to the best to measure it again, unless
 * the candidate already lost to its last rates. */
static void candidate_measured(struct xfer_window *w, const double r[3],
			       uint64_t now)
{
	if (rates_worse(w, r)) {
		window_set(w, w->best, now);
		hold(w);
		return;
	}
	w->cand = w->cur;
	w->cand_phase = w->phase;
	memcpy(w->cand_rates, r, sizeof(w->cand_rates));
	w->phase = XFER_RECHECK;
	window_set(w, w->best, now);
}

/*
 * The best measured again (@r) after the candidate: the candidate wins
 * only when its median is above all three of the best's epochs before
 * it and the best's median after it, and 3 % above the mean of the
 * best's two medians.  A restore's rate drifts (its first chunks are
 * the most repeated, the image's regions compress differently), and
 * measured only before, a drift upwards made each doubling look better:
 * restores over 10 ms went 16, 32, 64, 7 % slower than at 16.
 */
static void recheck_decide(struct xfer_window *w, const double r[3],
			   uint64_t now)
{
	double before = w->best_rate;
	double after = median3(r);
	double c = median3(w->cand_rates);

	hold(w);
	if (c > MAX(max3(w->best_rates), after) &&
	    c > (before + after) / 2 * GAIN) {
		w->best = w->cand;
		w->best_rate = c;
		memcpy(w->best_rates, w->cand_rates, sizeof(w->best_rates));
		if (w->cand_phase == XFER_PROBE_DOWN || w->cand >= w->max) {
			window_set(w, w->cand, now);
			return;
		}
		/* A gain upwards may be the first of several. */
		w->phase = XFER_GROW;
		window_set(w, w->cand * 2, now);
		return;
	}
	/* As good or worse: the best stays, at its latest rate. */
	w->best_rate = after;
	memcpy(w->best_rates, r, sizeof(w->best_rates));
}

/* Three epochs' rates @r (completions/s) at ->cur, in which requests
 * waited. */
static void window_decide(struct xfer_window *w, const double r[3],
			  uint64_t now)
{
	unsigned int step = MAX(1u, w->cur / 4);

	switch (w->phase) {
	case XFER_GROW:
		if (!w->best_rate) {
			best_set(w, r);
			if (w->cur < w->max) {
				window_set(w, w->cur * 2, now);
				return;
			}
			hold(w);
			return;
		}
		candidate_measured(w, r, now);
		return;
	case XFER_RECHECK:
		recheck_decide(w, r, now);
		return;
	case XFER_HOLD:
		/* Conditions change: the best's rate follows them. */
		w->best_rate = w->best_rate * 0.75 + median3(r) * 0.25;
		memcpy(w->best_rates, r, sizeof(w->best_rates));
		if (++w->holds < HOLD_EPOCHS)
			return;
		w->holds = 0;
		w->probe_down = !w->probe_down;
		if (w->probe_down && w->cur > 1) {
			w->phase = XFER_PROBE_DOWN;
			window_set(w, w->cur - step, now);
		} else if (w->cur < w->max) {
			w->phase = XFER_PROBE_UP;
			window_set(w, w->cur + step, now);
		}
		return;
	case XFER_PROBE_UP:
	case XFER_PROBE_DOWN:
		candidate_measured(w, r, now);
		return;
	}
}

void xfer_window_sample(struct xfer_window *w, uint64_t start_ns,
			uint64_t now_ns)
{
	bool limited;
	double rate;

	if (w->fixed)
		return;
	if (!w->settled) {
		/* Until a request of the new window has come back, the
		 * old one is still what is in flight. */
		if (start_ns < w->since)
			return;
		/* Connecting, the server's and our own first touches. */
		if (w->warmup && --w->warmup)
			return;
		w->settled = true;
		epoch_start(w, now_ns);
		return;
	}
	if (now_ns - w->last > EPOCH_MAX_NS) {
		epoch_start(w, now_ns);	/* idle between: nothing measured */
		return;
	}
	w->last = now_ns;
	if (++w->done < MAX(w->cur + 2, EPOCH_MIN_DONE))
		return;
	/* Completions over the time they took, from one completion to
	 * another: every request counts, however long it took. */
	rate = now_ns > w->epoch_t0 ?
		       w->done * 1e9 / (double)(now_ns - w->epoch_t0) :
		       0;
	limited = w->limited;
	epoch_start(w, now_ns);
	if (!limited || !rate)
		return;
	/* One epoch in a few stalls (the server's disk, a commit): the
	 * median of three is the window's rate. */
	w->rates[w->nrates++] = rate;
	if (w->nrates < XFER_WINDOW_EPOCHS)
		return;
	w->nrates = 0;
	window_decide(w, w->rates, now_ns);
}

void xfer_window_waited(struct xfer_window *w)
{
	w->limited = true;
}

unsigned int xfer_threads(unsigned int connections)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned int n = cpus > 0 ? (unsigned int)cpus : 1;

	n = MIN(n, XFER_THREADS_MAX);
	return connections ? MIN(n, connections) : n;
}

/* ---- the engine ---- */

void xfer_init(struct xfer_engine *e, const struct xfer_conf *conf)
{
	memset(e, 0, sizeof(*e));
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	for (int p = 0; p < FETCH_NPRIO; p++)
		e->tail[p] = &e->queue[p];
	/* At most a full window of bodies plus those being checked. */
	bufpool_init(&e->bodies, conf->body_pool,
		     (conf->slots ? conf->slots : XFER_SLOTS_MAX) +
		     BODIES_SLACK);
	e->conf = *conf;
	xfer_window_init(&e->win, conf->slots, XFER_SLOTS_MAX);
}

void xfer_release(struct xfer_engine *e)
{
	bufpool_destroy(&e->bodies);
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->lock);
}

void xfer_cancel(struct xfer_engine *e)
{
	pthread_mutex_lock(&e->lock);
	e->cancel = true;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	e->conf.wake(e->conf.wake_arg);
}

unsigned int xfer_window_now(struct xfer_engine *e)
{
	/* Written under ->lock; a reader polling it takes a snapshot
	 * rather than the loop thread's lock. */
	return __atomic_load_n(&e->win.cur, __ATOMIC_RELAXED);
}

bool xfer_cancelled(struct xfer_engine *e)
{
	bool c;

	pthread_mutex_lock(&e->lock);
	c = e->cancel;
	pthread_mutex_unlock(&e->lock);
	return c;
}

void xfer_finish(struct xfer_req *r, int err)
{
	r->err = err;
	r->done = true;
	pthread_cond_signal(&r->cond);
}

void xfer_end(struct xfer_engine *e, struct xfer_req *r, int err)
{
	uint64_t now = now_ns();

	for (struct xfer_req **pp = &e->running; *pp; pp = &(*pp)->run_next) {
		if (*pp == r) {
			*pp = r->run_next;
			break;
		}
	}
	e->active[r->prio]--;
	e->nactive--;
	if (!err) {
		unsigned int was = e->win.cur;

		xfer_window_sample(&e->win, r->start_ns, now);
		if (e->win.cur != was)
			log_debug(LOG_CAT_FETCH, "%s: %u requests in flight, "
				  "was %u (%.0f a second at %u)", e->conf.who,
				  e->win.cur, was, e->win.best_rate,
				  e->win.best);
	}
	xfer_finish(r, err);
}

void xfer_end_queued(struct xfer_engine *e, int err)
{
	for (int p = 0; p < FETCH_NPRIO; p++) {
		while (e->queue[p]) {
			struct xfer_req *r = e->queue[p];

			e->queue[p] = r->next;
			xfer_finish(r, err);
		}
		e->tail[p] = &e->queue[p];
	}
}

/*
 * ->lock held: @r starts now; a pooled request gets its spare body only
 * now, so that queued requests hold none and a body's pages, touched by
 * an earlier transfer, are not faulted in again (a fresh 4 MiB body cost
 * the loop thread a fifth of its time).  Without one (out of memory) the
 * body grows as data comes.
 */
static void body_attach(struct xfer_engine *e, struct xfer_req *r)
{
	if (!r->pooled)
		return;
	r->mem = bufpool_get(&e->bodies);
	if (r->mem)
		buf_init_on(&r->body, r->mem, e->bodies.size, r->body.limit);
}

struct xfer_req *xfer_take(struct xfer_engine *e, unsigned int cap,
			   unsigned int most, xfer_admit_fn admit, void *arg)
{
	unsigned int slots = cap ? MIN(cap, e->win.cur) : e->win.cur;
	uint64_t now = now_ns();
	struct xfer_req *list = NULL;
	struct xfer_req **lt = &list;

	for (int p = 0; p < FETCH_NPRIO; p++) {
		struct xfer_req **pp = &e->queue[p];

		while (*pp) {
			struct xfer_req *r = *pp;
			int ok = admit ? admit(r, arg) : 0;

			if (ok < 0) {
				*pp = r->next;
				xfer_finish(r, ok);
				continue;
			}
			bool fits = xfer_may_start(e->active, slots, p);

			if (ok || !fits || (p != FETCH_DEMAND && !most)) {
				/* Only the window's refusal says it is the
				 * limit; a loop's full share, or a server's
				 * cap below the window, is not. */
				if (!ok && !fits && slots == e->win.cur)
					xfer_window_waited(&e->win);
				pp = &r->next;
				continue;
			}
			*pp = r->next;
			if (p != FETCH_DEMAND)
				most--;
			body_attach(e, r);
			r->start_ns = now;
			e->active[p]++;
			e->nactive++;
			r->run_next = e->running;
			e->running = r;
			r->next = NULL;
			*lt = r;
			lt = &r->next;
		}
		e->tail[p] = pp;
	}
	return list;
}

bool xfer_background_only(const struct xfer_engine *e)
{
	return !e->active[FETCH_DEMAND] && !e->active[FETCH_READAHEAD] &&
	       !e->queue[FETCH_DEMAND] && !e->queue[FETCH_READAHEAD] &&
	       (e->active[FETCH_STREAM] || e->queue[FETCH_STREAM]);
}

void xfer_req_init(struct xfer_engine *e, struct xfer_req *r,
		   enum fetch_prio prio, bool pooled, size_t max)
{
	memset(r, 0, sizeof(*r));
	r->prio = prio;
	r->pooled = pooled && max < e->bodies.size;
	pthread_cond_init(&r->cond, NULL);
}

/*
 * Done with a try's body: a spare one goes back to the pool, kept there
 * while the pool holds fewer than the window plus BODIES_SLACK (the
 * bodies still being checked), so that the memory follows the load.
 */
static void body_drop(struct xfer_engine *e, struct xfer_req *r)
{
	if (r->mem) {
		bufpool_put_upto(&e->bodies, r->mem,
				 xfer_window_now(e) + BODIES_SLACK);
		r->mem = NULL;
		buf_init(&r->body, r->body.limit);
	} else {
		buf_release(&r->body);
	}
}

void xfer_req_release(struct xfer_engine *e, struct xfer_req *r)
{
	body_drop(e, r);
	pthread_cond_destroy(&r->cond);
}

void xfer_wait(struct xfer_engine *e, struct xfer_req *r, size_t max)
{
	buf_init(&r->body, max);
	r->done = false;
	r->err = 0;
	r->next = NULL;
	pthread_mutex_lock(&e->lock);
	if (e->cancel) {
		xfer_finish(r, -ECANCELED);
	} else {
		*e->tail[r->prio] = r;
		e->tail[r->prio] = &r->next;
	}
	pthread_mutex_unlock(&e->lock);
	e->conf.wake(e->conf.wake_arg);
	pthread_mutex_lock(&e->lock);
	while (!r->done)
		pthread_cond_wait(&r->cond, &e->lock);
	pthread_mutex_unlock(&e->lock);
}

int xfer_body(struct xfer_req *r, fetch_check_fn check, void *arg,
	      uint8_t **buf, size_t *len)
{
	int ret;

	if (!check) {
		*buf = buf_steal(&r->body, len);
		if (!*buf)
			*buf = calloc(1, 1);
		return *buf ? 0 : -ENOMEM;
	}
	ret = check(r->body.data ? r->body.data : (const uint8_t *)"",
		    r->body.len, arg);
	return ret == -EBADMSG ? XFER_BAD_BODY : ret;
}

int xfer_run(struct xfer_engine *e, struct xfer_req *r, xfer_try_fn try,
	     void *arg, const char *what)
{
	const char *from = e->conf.from;
	struct xfer_retry rt;
	char why[320];

	xfer_retry_start(&rt, e->conf.remote_timeout_ms, r);
	for (;;) {
		uint64_t delay;
		int ret;

		rt.attempt++;
		snprintf(why, sizeof(why), "failed");
		ret = try(arg, &rt, why, sizeof(why));
		if (ret <= 0)
			return ret;
		body_drop(e, r);
		if (ret == XFER_AGAIN)
			continue;
		if (!xfer_retry_next(&rt, &delay)) {
			/* The checker knows why a body was bad: it logs. */
			if (ret == XFER_BAD_BODY)
				return -EBADMSG;
			if (xfer_giveup_should_log(&e->last_giveup_ns,
						   e->conf.remote_timeout_ms))
				log_err("%s: cannot get '%s'%s%s%s: %s (gave up "
					"after %u tries in %.1f s)", e->conf.who,
					what, from ? " from '" : "",
					from ? from : "", from ? "'" : "", why,
					rt.attempt, xfer_retry_elapsed(&rt));
			else
				log_debug(LOG_CAT_FETCH, "%s: gave up on '%s' "
					  "too: %s", e->conf.who, what, why);
			return -EIO;
		}
		log_debug(LOG_CAT_FETCH, "%s: '%s': %s, retry %u in %llu ms",
			  e->conf.who, what, why, rt.attempt,
			  (unsigned long long)delay);
		if (xfer_nap(&e->lock, &e->cond, &e->cancel, delay))
			return -ECANCELED;
	}
}
