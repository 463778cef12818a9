/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * xfer: the request policy both transports share.  Back-off doubles with
 * jitter to its cap; the slot rule always leaves demand a slot; a
 * request's tries end at its deadline, the last one at the deadline
 * rather than a back-off early; one give-up line per window; a nap ends
 * at once when cancelled.
 */
#include "config.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_slots),
		cmocka_unit_test(test_retry),
		cmocka_unit_test(test_giveup),
		cmocka_unit_test(test_nap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
