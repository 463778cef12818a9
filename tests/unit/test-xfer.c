/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * xfer: the request policy both transports share.  Back-off doubles with
 * jitter to its cap; the slot rule always leaves demand a slot; a
 * request's tries end at its deadline, the last one at the deadline
 * rather than a back-off early; one give-up line per window; a nap ends
 * at once when cancelled.  The engine: queued requests start in
 * priority order within the slots, a refused admission ends a request,
 * a request's tries follow what each says, and cancellation ends them.
 * The window: on simulated links (0, 10, 25 ms away, with and without a
 * cost for each request in flight, with jitter) the adaptive count ends
 * within 5 % of the best fixed one of 1, 4, 16, 64; on a full link it
 * goes no further than the first doubling, also where small requests
 * come back first, and mostly stays there where the rate wanders; a
 * fixed count never moves; nothing is learnt while demand is below the
 * window, nor before a request of a new window came back; the engine
 * starts no more.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "compiler.h"
#include "util.h"
#include "xfer.h"

static void test_backoff(void **state)
{
	uint64_t prev_mid = 0;

	(void)state;
	/* Middle of the jitter range doubles from 100 ms and stops at 5 s. */
	for (unsigned int a = 1; a <= 12; a++) {
		uint64_t lo = xfer_backoff_ms(a, 0);
		uint64_t hi = xfer_backoff_ms(a, 1000);
		uint64_t mid = xfer_backoff_ms(a, 500);
		uint64_t base = a <= 6 ? 100u << (a - 1) : 5000;

		if (base > 5000)
			base = 5000;
		assert_int_equal(lo, base * 3 / 4);
		assert_int_equal(hi, base * 3 / 4 + base / 2);
		assert_true(mid >= prev_mid);
		prev_mid = mid;
		for (uint32_t r = 0; r < 5000; r += 37) {
			uint64_t d = xfer_backoff_ms(a, r);

			assert_true(d >= lo && d <= hi);
		}
	}
	assert_int_equal(xfer_backoff_ms(1, 500), 100);
}

/* Fill class @p while it may start; how many started. */
static unsigned int fill(unsigned int active[FETCH_NPRIO], unsigned int n,
			 enum fetch_prio p)
{
	unsigned int k = 0;

	while (xfer_may_start(active, n, p)) {
		active[p]++;
		k++;
	}
	return k;
}

static void test_slots(void **state)
{
	(void)state;
	for (unsigned int n = 1; n <= 32; n++) {
		unsigned int a[FETCH_NPRIO] = { 0 };

		/* The stream alone: n - 2 slots (one when n <= 2). */
		assert_int_equal(fill(a, n, FETCH_STREAM), n > 2 ? n - 2 : 1);
		/* Readahead on top never takes the last slot... */
		fill(a, n, FETCH_READAHEAD);
		if (n > 1)
			assert_int_equal(a[FETCH_STREAM] + a[FETCH_READAHEAD],
					 n - 1);
		assert_true(a[FETCH_READAHEAD] <= (n > 1 ? n - 1 : 1));
		/* ...so a demand read starts at once, when n > 1. */
		assert_int_equal(fill(a, n, FETCH_DEMAND), n > 1 ? 1 : 0);
		assert_false(xfer_may_start(a, n, FETCH_DEMAND));

		/* Readahead alone: n - 1, demand still finds a slot. */
		memset(a, 0, sizeof(a));
		assert_int_equal(fill(a, n, FETCH_READAHEAD), n > 1 ? n - 1 : 1);
		assert_int_equal(fill(a, n, FETCH_STREAM), 0);
		assert_int_equal(fill(a, n, FETCH_DEMAND), n > 1 ? 1 : 0);

		/* Demand may use every slot; background then waits. */
		memset(a, 0, sizeof(a));
		assert_int_equal(fill(a, n, FETCH_DEMAND), n);
		assert_false(xfer_may_start(a, n, FETCH_STREAM));
		assert_false(xfer_may_start(a, n, FETCH_READAHEAD));
	}
}

static void test_retry(void **state)
{
	struct xfer_retry rt = { 0 };
	uint64_t delay;
	uint64_t slept = 0;

	(void)state;
	/* 1 s in all: a few tries, the naps adding up to about the
	 * deadline, then no more. */
	xfer_retry_start(&rt, 1000, &rt);
	for (;;) {
		rt.attempt++;
		if (!xfer_retry_next(&rt, &delay))
			break;
		assert_true(delay <= 1000);
		slept += delay;
		/* Pretend the nap happened. */
		rt.deadline -= delay * 1000000;
	}
	assert_true(rt.attempt >= 4 && rt.attempt <= 6);
	assert_true(slept > 900 && slept <= 1000);
	/* Nothing left: no try at all after the first. */
	xfer_retry_start(&rt, 0, &rt);
	rt.attempt++;
	assert_false(xfer_retry_next(&rt, &delay));
	assert_true(xfer_retry_elapsed(&rt) < 1.0);
}

static void test_giveup(void **state)
{
	uint64_t last = 0;

	(void)state;
	assert_true(xfer_giveup_should_log(&last, 60000));
	assert_false(xfer_giveup_should_log(&last, 60000));
	/* Window over: the next outage is told again. */
	last -= 61000ull * 1000000;
	assert_true(xfer_giveup_should_log(&last, 60000));
}

static void test_nap(void **state)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
	bool cancel = false;
	uint64_t t0 = now_ns();

	(void)state;
	assert_false(xfer_nap(&lock, &cond, &cancel, 20));
	assert_true(now_ns() - t0 >= 20 * 1000000ull);
	cancel = true;
	t0 = now_ns();
	assert_true(xfer_nap(&lock, &cond, &cancel, 10000));
	assert_true(now_ns() - t0 < 1000 * 1000000ull);
}

/* ---- the engine, with a loop thread made of the wake callback ---- */

struct fake {
	struct xfer_engine e;
	bool serve;		/* the wake callback ends what it takes */
	int result;		/* ... with this err */
	unsigned int woken;
};

/* The "transport": end every startable request at once. */
static void fake_wake(void *arg)
{
	struct fake *fk = arg;
	struct xfer_req *list;

	pthread_mutex_lock(&fk->e.lock);
	fk->woken++;
	if (fk->serve) {
		list = xfer_take(&fk->e, 4, UINT_MAX, NULL, NULL);
		while (list) {
			struct xfer_req *r = list;

			list = list->next;
			buf_append(&r->body, "ok", 2);
			xfer_end(&fk->e, r, fk->result);
		}
	}
	pthread_mutex_unlock(&fk->e.lock);
}

static void fake_init(struct fake *fk, uint64_t timeout_ms, bool serve)
{
	memset(fk, 0, sizeof(*fk));
	xfer_init(&fk->e, &(struct xfer_conf){
		.who = "test", .remote_timeout_ms = timeout_ms,
		.wake = fake_wake, .wake_arg = fk });
	fk->serve = serve;
}

struct waiter {
	struct fake *fk;
	struct xfer_req r;
	pthread_t t;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	xfer_wait(&w->fk->e, &w->r, 100);
	return NULL;
}

static unsigned int queued(struct fake *fk)
{
	unsigned int n = 0;

	pthread_mutex_lock(&fk->e.lock);
	for (int p = 0; p < FETCH_NPRIO; p++)
		for (struct xfer_req *r = fk->e.queue[p]; r; r = r->next)
			n++;
	pthread_mutex_unlock(&fk->e.lock);
	return n;
}

/* Refuse the second readahead request: it ends with -ESTALE. */
static int admit_first(struct xfer_req *r, void *arg)
{
	struct xfer_req *refuse = arg;

	return r == refuse ? -ESTALE : 0;
}

static void test_take(void **state)
{
	static const enum fetch_prio prios[] = {
		FETCH_STREAM, FETCH_READAHEAD, FETCH_DEMAND, FETCH_READAHEAD,
	};
	struct waiter w[ARRAY_SIZE(prios)];
	struct xfer_req *list;
	struct fake fk;

	(void)state;
	fake_init(&fk, 1000, false);
	for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
		w[i].fk = &fk;
		xfer_req_init(&fk.e, &w[i].r, prios[i], false, 100);
		assert_int_equal(pthread_create(&w[i].t, NULL, waiter_main,
						&w[i]), 0);
		while (queued(&fk) < i + 1)
			usleep(1000);
	}
	/* Three slots: demand, then readahead; the stream request would
	 * take the last one, kept for demand; the refused one ends. */
	pthread_mutex_lock(&fk.e.lock);
	list = xfer_take(&fk.e, 3, UINT_MAX, admit_first, &w[3].r);
	assert_ptr_equal(list, &w[2].r);
	assert_ptr_equal(list->next, &w[1].r);
	assert_null(list->next->next);
	assert_int_equal(fk.e.nactive, 2);
	assert_true(w[3].r.done);
	assert_int_equal(w[3].r.err, -ESTALE);
	assert_ptr_equal(fk.e.queue[FETCH_STREAM], &w[0].r);
	xfer_end(&fk.e, &w[2].r, 0);
	xfer_end(&fk.e, &w[1].r, -EIO);
	/* Slots free again: the stream request starts. */
	list = xfer_take(&fk.e, 3, UINT_MAX, NULL, NULL);
	assert_ptr_equal(list, &w[0].r);
	assert_null(fk.e.queue[FETCH_STREAM]);
	xfer_end(&fk.e, &w[0].r, 0);
	assert_int_equal(fk.e.nactive, 0);
	assert_null(fk.e.running);
	pthread_mutex_unlock(&fk.e.lock);
	for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
		pthread_join(w[i].t, NULL);
		assert_true(w[i].r.done);
		xfer_req_release(&fk.e, &w[i].r);
	}
	assert_int_equal(w[1].r.err, -EIO);
	xfer_release(&fk.e);
}

/* A scripted try: the verdicts in ->script, then 0. */
struct script {
	struct fake *fk;
	struct xfer_req r;
	const int *verdicts;
	unsigned int n;
	unsigned int tries;
};

static int script_try(void *arg, struct xfer_retry *rt, char *why, size_t n)
{
	struct script *sc = arg;
	uint8_t *body = NULL;
	size_t len;
	int ret;

	(void)rt;
	xfer_wait(&sc->fk->e, &sc->r, 100);
	if (sc->r.err)
		return sc->r.err;
	assert_int_equal(sc->r.body.len, 2);
	snprintf(why, n, "try %u", sc->tries);
	if (sc->tries < sc->n)
		return sc->verdicts[sc->tries++];
	sc->tries++;
	ret = xfer_body(&sc->r, NULL, NULL, &body, &len);
	assert_int_equal(len, 2);
	free(body);
	return ret;
}

static int run_script(struct fake *fk, const int *v, unsigned int n,
		      unsigned int *tries)
{
	struct script sc = { .fk = fk, .verdicts = v, .n = n };
	int ret;

	xfer_req_init(&fk->e, &sc.r, FETCH_DEMAND, false, 100);
	ret = xfer_run(&fk->e, &sc.r, script_try, &sc, "/chunk");
	xfer_req_release(&fk->e, &sc.r);
	*tries = sc.tries;
	return ret;
}

static void test_run(void **state)
{
	static const int again[] = { XFER_RETRY, XFER_AGAIN, XFER_RETRY };
	static const int fatal[] = { XFER_RETRY, -EACCES };
	static const int bad[] = { XFER_BAD_BODY, XFER_BAD_BODY,
				   XFER_BAD_BODY, XFER_BAD_BODY };
	static const int down[] = { XFER_RETRY, XFER_RETRY, XFER_RETRY,
				    XFER_RETRY };
	unsigned int tries;
	struct fake fk;
	uint64_t t0;

	(void)state;
	fake_init(&fk, 5000, true);
	/* Retried through, then done. */
	assert_int_equal(run_script(&fk, again, 3, &tries), 0);
	assert_int_equal(tries, 4);
	/* A final error ends it at once. */
	assert_int_equal(run_script(&fk, fatal, 2, &tries), -EACCES);
	assert_int_equal(tries, 2);
	/* Out of time: bodies always refused give -EBADMSG, other
	 * failures -EIO; a transport error is final. */
	xfer_release(&fk.e);
	fake_init(&fk, 250, true);
	assert_int_equal(run_script(&fk, bad, 4, &tries), -EBADMSG);
	assert_true(tries >= 2 && tries <= 4);
	assert_int_equal(run_script(&fk, down, 4, &tries), -EIO);
	fk.result = -EPROTO;
	assert_int_equal(run_script(&fk, down, 4, &tries), -EPROTO);
	assert_int_equal(tries, 0);
	/* Cancelled: at once, without a try. */
	fk.result = 0;
	xfer_cancel(&fk.e);
	t0 = now_ns();
	assert_int_equal(run_script(&fk, down, 4, &tries), -ECANCELED);
	assert_int_equal(tries, 0);
	assert_true(now_ns() - t0 < 100 * 1000000ull);
	assert_true(xfer_cancelled(&fk.e));
	xfer_release(&fk.e);
}

/*
 * The window against a simulated link: each request is in flight
 * @rtt_us plus its share of the bandwidth (@xfer_us a request, shared by
 * the window, after a turnaround) and, with @penalty, a cost that grows
 * with the window (contexts, buffers, cache misses); +-@jitter % on each request, from
 * a fixed seed.  Returns the window after @n completions.
 */
static double sim_latency_us(unsigned int w, double rtt_us, double xfer_us,
			     bool penalty)
{
	/* 1 ms of turnaround at each end, the link shared by the window. */
	return rtt_us + 1000 + w * xfer_us * (penalty ? 1.0 + w / 128.0 : 1.0);
}

static unsigned int simulate(struct xfer_window *win, double rtt_us,
			     double xfer_us, bool penalty, unsigned int jitter,
			     unsigned int n)
{
	uint64_t now = 1000000000ull;
	uint32_t seed = 12345;

	for (unsigned int i = 0; i < n; i++) {
		double lat = sim_latency_us(win->cur, rtt_us, xfer_us, penalty);

		seed = seed * 1103515245u + 12345u;
		lat *= 1.0 + ((double)(seed >> 16 & 0xff) / 255.0 * 2 - 1) *
				     jitter / 100.0;
		/* Little's law: a completion every latency / window. */
		now += (uint64_t)(lat * 1000 / win->cur);
		/* The window was full; one ends, another starts at once. */
		xfer_window_waited(win);
		xfer_window_sample(win, now - (uint64_t)(lat * 1000), now);
	}
	return win->cur;
}

/*
 * A full link shared by what is in flight (HTTP/2 streams on one
 * connection): every request gets an equal part of it, so the small ones
 * (a chunk that compressed well) come back first and a larger window only
 * makes each request slower.  Returns the largest window it went to in
 * @n completions.
 */
static unsigned int simulate_shared(struct xfer_window *win, unsigned int n)
{
	unsigned int most = win->cur;
	const double ns_per_unit = 1000000;	/* 1 MiB a ms, all shared */
	double rem[XFER_SLOTS_MAX];		/* MiB still to come */
	double start[XFER_SLOTS_MAX];
	double now = 1e9;
	unsigned int k = 0;
	uint32_t seed = 12345;

	for (unsigned int i = 0; i < n; i++) {
		unsigned int m = 0;
		double got;

		while (k < win->cur) {
			seed = seed * 1103515245u + 12345u;
			rem[k] = seed >> 16 & 1 ? 4 : 1;
			start[k++] = now;
		}
		for (unsigned int j = 1; j < k; j++)
			if (rem[j] < rem[m])
				m = j;
		got = rem[m];
		now += got * k * ns_per_unit;
		for (unsigned int j = 0; j < k; j++)
			rem[j] -= got;
		xfer_window_waited(win);
		xfer_window_sample(win, (uint64_t)start[m], (uint64_t)now);
		most = MAX(most, win->cur);
		rem[m] = rem[--k];
		start[m] = start[k];
	}
	return most;
}

/*
 * A full link (a larger window only makes each request slower) whose
 * rate wanders by +-@noise % from one stretch of 10 completions to the
 * next, as a busy host's does (commits, the disk); @n completions.
 */
static void simulate_wander(struct xfer_window *win, unsigned int noise,
			    unsigned int n, uint32_t seed)
{
	uint64_t now = 1000000000ull;
	double f = 1;

	for (unsigned int i = 0; i < n; i++) {
		double lat = win->cur * 4000.0;	/* us: 4 ms a request */

		if (i % 10 == 0) {
			seed = seed * 1103515245u + 12345u;
			f = 1.0 + ((double)(seed >> 16 & 0xff) / 255.0 * 2 - 1) *
					  noise / 100.0;
		}
		lat *= f;
		now += (uint64_t)(lat * 1000 / win->cur);
		xfer_window_waited(win);
		xfer_window_sample(win, now - (uint64_t)(lat * 1000), now);
	}
}

/*
 * A full link whose rate rises by half over @n completions, as a
 * restore's does when its first chunks are its most repeated: a window
 * measured after another looks better for the drift alone.
 */
static void simulate_drift(struct xfer_window *win, unsigned int n)
{
	uint64_t now = 1000000000ull;

	for (unsigned int i = 0; i < n; i++) {
		double rate = 250.0 * (1 + 0.5 * i / n);	/* a second */

		now += (uint64_t)(1e9 / rate);
		xfer_window_waited(win);
		xfer_window_sample(win, now - (uint64_t)(1e9 * win->cur / rate),
				   now);
	}
}

static double sim_rate(unsigned int w, double rtt_us, double xfer_us,
		       bool penalty)
{
	return w / sim_latency_us(w, rtt_us, xfer_us, penalty);
}

/* Adaptive within 5 % of the best of the fixed counts 1, 4, 16, 64. */
static void check_near_best(double rtt_us, double xfer_us, bool penalty,
			    unsigned int jitter)
{
	static const unsigned int fixed[] = { 1, 4, 16, 64 };
	struct xfer_window w;
	double best = 0;
	unsigned int got;

	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
		best = MAX(best, sim_rate(fixed[i], rtt_us, xfer_us, penalty));
	xfer_window_init(&w, 0, XFER_SLOTS_MAX);
	got = simulate(&w, rtt_us, xfer_us, penalty, jitter, 3000);
	if (sim_rate(got, rtt_us, xfer_us, penalty) < best * 0.95)
		fail_msg("rtt %.0f us, penalty %d, jitter %u: window %u "
			 "gives %.6g, the best fixed %.6g", rtt_us, penalty,
			 jitter, got, sim_rate(got, rtt_us, xfer_us, penalty),
			 best);
}

static void test_window(void **state)
{
	struct xfer_window w;
	unsigned int got;

	(void)state;
	/* 4 MiB chunks at about 1 GiB/s: 4 ms each; 0, 10, 25 ms away. */
	for (unsigned int j = 0; j <= 10; j += 10) {
		check_near_best(0, 4000, false, j);
		check_near_best(10000, 4000, false, j);
		check_near_best(25000, 4000, false, j);
		check_near_best(0, 4000, true, j);
		check_near_best(10000, 4000, true, j);
		check_near_best(25000, 4000, true, j);
		/* A fast link far away: the largest window. */
		check_near_best(25000, 250, false, j);
	}
	/* Latency to cover: it grows to what covers it, and stays. */
	xfer_window_init(&w, 0, XFER_SLOTS_MAX);
	got = simulate(&w, 25000, 250, false, 0, 3000);
	assert_int_equal(got, XFER_SLOTS_MAX);
	/* A full link where more in flight costs: it stays small. */
	xfer_window_init(&w, 0, XFER_SLOTS_MAX);
	got = simulate(&w, 0, 4000, true, 0, 3000);
	assert_true(got <= XFER_SLOTS_FIRST);
	/* A doubling that neither pays nor costs (a full link, both
	 * within 3 %): the best stays (a probe may be under way). */
	xfer_window_init(&w, 0, XFER_SLOTS_MAX);
	simulate(&w, 0, 4000, false, 0, 3000);
	assert_int_equal(w.best, XFER_SLOTS_FIRST);
	/* A full link whose rate drifts upwards: the drift is no gain
	 * (measured only before the candidate, it went to 30). */
	xfer_window_init(&w, 0, XFER_SLOTS_MAX);
	simulate_drift(&w, 2000);
	if (w.best != XFER_SLOTS_FIRST || w.changes > 10)
		fail_msg("a drifting full link: best %u after %u changes",
			 w.best, w.changes);
	/* The same where small requests come back first: more in flight
	 * does not look better than it is, and the window goes no further
	 * than the first doubling (Little's law, before, to 40). */
	xfer_window_init(&w, 0, XFER_SLOTS_MAX);
	got = simulate_shared(&w, 3000);
	if (got > 2 * XFER_SLOTS_FIRST)
		fail_msg("a shared full link: window went to %u", got);
	/*
	 * A full link whose rate wanders by a quarter, as a busy host's
	 * does, over a restore's 800 chunks, 40 times: the best stays at the
	 * start 34 times in 40, below it once (measured only before the
	 * candidate, the first doubling stayed 30 times, and 1 went below;
	 * the median against a median before that: 22 and 5).
	 */
	{
		unsigned int kept = 0;
		unsigned int fewer = 0;

		for (uint32_t seed = 1; seed <= 40; seed++) {
			xfer_window_init(&w, 0, XFER_SLOTS_MAX);
			simulate_wander(&w, 25, 800, seed);
			kept += w.best == XFER_SLOTS_FIRST;
			fewer += w.best < XFER_SLOTS_FIRST;
		}
		if (kept < 30 || fewer > 2)
			fail_msg("a wandering full link: %u of 40 at %u, %u "
				 "below it", kept, XFER_SLOTS_FIRST, fewer);
	}
	/* --connections: never moves. */
	xfer_window_init(&w, 7, XFER_SLOTS_MAX);
	assert_int_equal(simulate(&w, 25000, 250, false, 0, 1000), 7);
	assert_int_equal(w.changes, 0);
	/* Demand below the window (nobody waited): nothing learnt. */
	xfer_window_init(&w, 0, XFER_SLOTS_MAX);
	for (unsigned int i = 1; i <= 1000; i++)
		xfer_window_sample(&w, i * 1000000ull, i * 1000000ull + 50000000);
	assert_int_equal(w.cur, XFER_SLOTS_FIRST);
	assert_int_equal(w.changes, 0);
	/* After a change, no epoch starts till a request of the new
	 * window comes back: the old ones' completions are not counted. */
	xfer_window_init(&w, 0, XFER_SLOTS_MAX);
	for (uint64_t now = 1000000000ull; !w.changes; now += 30000000 / w.cur) {
		xfer_window_waited(&w);
		xfer_window_sample(&w, now - 30000000, now);
	}
	assert_false(w.settled);
	for (unsigned int i = 1; i <= 100; i++)
		xfer_window_sample(&w, w.since - 1, w.since + i * 1000);
	assert_false(w.settled);
	assert_int_equal(w.done, 0);
	xfer_window_sample(&w, w.since, w.since + 200000);
	assert_true(w.settled);
	/* Then every completion counts, however long ago it started. */
	xfer_window_sample(&w, w.since - 1, w.since + 201000);
	assert_int_equal(w.done, 1);
}

/* ->lock held: end every request of @list (xfer_take's) well. */
static void end_all(struct fake *fk, struct xfer_req *list)
{
	while (list) {
		struct xfer_req *r = list;

		list = list->next;
		xfer_end(&fk->e, r, 0);
	}
}

/* ->lock held (released here): end what is left, join the waiters,
 * each done, and release their requests. */
static void finish_waiters(struct fake *fk, struct waiter *w, size_t n)
{
	end_all(fk, xfer_take(&fk->e, 0, UINT_MAX, NULL, NULL));
	pthread_mutex_unlock(&fk->e.lock);
	for (size_t i = 0; i < n; i++) {
		pthread_join(w[i].t, NULL);
		assert_true(w[i].r.done);
		xfer_req_release(&fk->e, &w[i].r);
	}
}

/* The engine takes no more than its window allows. */
static void test_take_window(void **state)
{
	struct waiter w[XFER_SLOTS_FIRST + 2];
	struct xfer_req *list;
	struct fake fk;
	unsigned int n = 0;

	(void)state;
	fake_init(&fk, 1000, false);
	for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
		w[i].fk = &fk;
		xfer_req_init(&fk.e, &w[i].r, FETCH_DEMAND, false, 100);
		assert_int_equal(pthread_create(&w[i].t, NULL, waiter_main,
						&w[i]), 0);
		while (queued(&fk) < i + 1)
			usleep(1000);
	}
	pthread_mutex_lock(&fk.e.lock);
	assert_int_equal(fk.e.win.cur, XFER_SLOTS_FIRST);
	list = xfer_take(&fk.e, 0, UINT_MAX, NULL, NULL);
	for (struct xfer_req *r = list; r; r = r->next)
		n++;
	assert_int_equal(n, XFER_SLOTS_FIRST);
	assert_true(fk.e.win.limited);
	/* A transport's own bound is lower: that one holds. */
	end_all(&fk, list);
	list = xfer_take(&fk.e, 1, UINT_MAX, NULL, NULL);
	assert_non_null(list);
	assert_null(list->next);
	xfer_end(&fk.e, list, 0);
	finish_waiters(&fk, w, ARRAY_SIZE(w));
	xfer_release(&fk.e);
}

/*
 * One loop's share (@most) bounds stream requests, never a demand read;
 * a pooled request gets its spare body only when it is taken, and the
 * body goes back to the pool after its try.
 */
static void test_take_share(void **state)
{
	struct waiter w[4];
	enum fetch_prio prio[4] = { FETCH_STREAM, FETCH_STREAM, FETCH_STREAM,
				    FETCH_DEMAND };
	struct xfer_req *list;
	struct fake fk;
	unsigned int n = 0;

	(void)state;
	memset(&fk, 0, sizeof(fk));
	xfer_init(&fk.e, &(struct xfer_conf){
		.who = "test", .remote_timeout_ms = 1000, .body_pool = 4096,
		.wake = fake_wake, .wake_arg = &fk });
	for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
		w[i].fk = &fk;
		xfer_req_init(&fk.e, &w[i].r, prio[i], true, 100);
		assert_int_equal(pthread_create(&w[i].t, NULL, waiter_main,
						&w[i]), 0);
		while (queued(&fk) < i + 1)
			usleep(1000);
		assert_null(w[i].r.mem);	/* queued: no body yet */
	}
	pthread_mutex_lock(&fk.e.lock);
	/* A share of 1: the demand read and one stream request. */
	list = xfer_take(&fk.e, 0, 1, NULL, NULL);
	for (struct xfer_req *r = list; r; r = r->next) {
		assert_non_null(r->mem);
		assert_int_equal(r->body.limit, 100);
		n++;
	}
	assert_int_equal(n, 2);
	/* Held back by the share, not by the window: nothing learnt. */
	assert_false(fk.e.win.limited);
	assert_true(w[3].r.mem != NULL && w[0].r.mem != NULL);
	assert_null(w[1].r.mem);
	/* A share used up: nothing. */
	assert_null(xfer_take(&fk.e, 0, 0, NULL, NULL));
	/* Held back by a server's cap below the window: nothing learnt. */
	assert_null(xfer_take(&fk.e, 2, UINT_MAX, NULL, NULL));
	assert_false(fk.e.win.limited);
	end_all(&fk, list);
	finish_waiters(&fk, w, ARRAY_SIZE(w));
	for (size_t i = 0; i < ARRAY_SIZE(w); i++)
		assert_null(w[i].r.mem);
	/* The four bodies are spare now (window + slack: all kept). */
	assert_int_equal(fk.e.bodies.n, 4);
	xfer_release(&fk.e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_slots),
		cmocka_unit_test(test_retry),
		cmocka_unit_test(test_giveup),
		cmocka_unit_test(test_nap),
		cmocka_unit_test(test_take),
		cmocka_unit_test(test_run),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_take_window),
		cmocka_unit_test(test_take_share),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
