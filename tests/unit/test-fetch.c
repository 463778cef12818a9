/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fetch: the HTTP status -> errno map, retry classes, back-off. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fetch.h"

static void test_status_map(void **state)
{
	(void)state;
	assert_int_equal(fetch_status_errno(200), 0);
	assert_int_equal(fetch_status_errno(206), 0);
	assert_int_equal(fetch_status_errno(404), -ENOENT);
	assert_int_equal(fetch_status_errno(410), -ENOENT);
	assert_int_equal(fetch_status_errno(401), -EACCES);
	assert_int_equal(fetch_status_errno(403), -EACCES);
	assert_int_equal(fetch_status_errno(500), -EIO);
	assert_int_equal(fetch_status_errno(503), -EIO);
	assert_int_equal(fetch_status_errno(302), -EIO);
	/* Retry the server's trouble, never the client's. */
	assert_true(fetch_status_retryable(408));
	assert_true(fetch_status_retryable(429));
	assert_true(fetch_status_retryable(500));
	assert_true(fetch_status_retryable(503));
	assert_true(fetch_status_retryable(504));
	assert_false(fetch_status_retryable(401));
	assert_false(fetch_status_retryable(403));
	assert_false(fetch_status_retryable(404));
	assert_false(fetch_status_retryable(400));
}

static void test_backoff(void **state)
{
	uint64_t prev_mid = 0;

	(void)state;
	/* Middle of the jitter range doubles from 100 ms and stops at 5 s. */
	for (unsigned int a = 1; a <= 12; a++) {
		uint64_t lo = fetch_backoff_ms(a, 0);
		uint64_t hi = fetch_backoff_ms(a, 1000);
		uint64_t mid = fetch_backoff_ms(a, 500);
		uint64_t base = a <= 6 ? 100u << (a - 1) : 5000;

		if (base > 5000)
			base = 5000;
		assert_int_equal(lo, base * 3 / 4);
		assert_int_equal(hi, base * 3 / 4 + base / 2);
		assert_true(mid >= prev_mid);
		prev_mid = mid;
		for (uint32_t r = 0; r < 5000; r += 37) {
			uint64_t d = fetch_backoff_ms(a, r);

			assert_true(d >= lo && d <= hi);
		}
	}
	assert_int_equal(fetch_backoff_ms(1, 500), 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_map),
		cmocka_unit_test(test_backoff),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
