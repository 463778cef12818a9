/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ccache: hits, single-flight, failures not cached, budget, held
 * entries, evicted buffers reused. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <urcu-bp.h>

#include "ccache.h"
#include "compiler.h"

#define LEN 65536

static unsigned int fills;	/* atomic */

static void key_of(unsigned int k, uint8_t key[32])
{
	memset(key, 0, 32);
	memcpy(key, &k, sizeof(k));
	key[31] = 0x5a;
}

struct farg {
	unsigned int k;
	int fail;
	unsigned int sleep_ms;
};

static int fill(void *arg, uint8_t *buf, size_t len)
{
	struct farg *a = arg;

	__atomic_add_fetch(&fills, 1, __ATOMIC_RELAXED);
	if (a->sleep_ms)
		usleep(a->sleep_ms * 1000);
	if (a->fail)
		return a->fail;
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(a->k * 31 + i);
	return 0;
}

static void check_data(const struct ccache_entry *e, unsigned int k)
{
	const uint8_t *d = ccache_data(e);

	for (size_t i = 0; i < LEN; i += 997)
		assert_int_equal(d[i], (uint8_t)(k * 31 + i));
}

static void test_hit_miss(void **state)
{
	struct ccache_conf conf = { .budget_bytes = 16 * LEN };
	struct ccache_entry *e;
	struct ccache_stats st;
	struct ccache *c;
	struct farg a = { .k = 1 };
	uint8_t key[32];

	(void)state;
	fills = 0;
	assert_int_equal(ccache_new(&conf, &c), 0);
	key_of(1, key);
	assert_false(ccache_peek(c, key));
	assert_int_equal(ccache_get(c, key, LEN, fill, &a, &e), 0);
	check_data(e, 1);
	ccache_put(c, e);
	assert_true(ccache_peek(c, key));
	assert_int_equal(ccache_get(c, key, LEN, fill, &a, &e), 0);
	ccache_put(c, e);
	assert_int_equal(fills, 1);
	ccache_get_stats(c, &st);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.bytes, LEN);
	ccache_free(c);
}

static void test_failure_not_cached(void **state)
{
	struct ccache_conf conf = { .budget_bytes = 16 * LEN };
	struct ccache_entry *e = NULL;
	struct ccache *c;
	struct farg a = { .k = 2, .fail = -EIO };
	uint8_t key[32];

	(void)state;
	fills = 0;
	assert_int_equal(ccache_new(&conf, &c), 0);
	key_of(2, key);
	assert_int_equal(ccache_get(c, key, LEN, fill, &a, &e), -EIO);
	assert_false(ccache_peek(c, key));
	a.fail = 0;
	assert_int_equal(ccache_get(c, key, LEN, fill, &a, &e), 0);
	check_data(e, 2);
	ccache_put(c, e);
	assert_int_equal(fills, 2);
	ccache_free(c);
}

struct targ {
	struct ccache *c;
	unsigned int k;
	int fail;
	int ret;
};

static void *getter(void *p)
{
	struct targ *t = p;
	struct farg a = { .k = t->k, .fail = t->fail, .sleep_ms = 50 };
	struct ccache_entry *e;
	uint8_t key[32];

	key_of(t->k, key);
	t->ret = ccache_get(t->c, key, LEN, fill, &a, &e);
	if (!t->ret) {
		check_data(e, t->k);
		ccache_put(t->c, e);
	}
	return NULL;
}

static void single_flight(int fail)
{
	struct ccache_conf conf = { .budget_bytes = 16 * LEN };
	struct targ t[8];
	pthread_t tid[8];
	struct ccache *c;

	fills = 0;
	assert_int_equal(ccache_new(&conf, &c), 0);
	for (int i = 0; i < 8; i++) {
		t[i] = (struct targ){ .c = c, .k = 3, .fail = fail };
		pthread_create(&tid[i], NULL, getter, &t[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(t[i].ret, fail);
	}
	/* One fill served all eight (fills that start after a failure may
	 * run again, so only success gives exactly one). */
	if (!fail)
		assert_int_equal(fills, 1);
	else
		assert_true(fills >= 1 && fills <= 8);
	ccache_free(c);
}

static void test_single_flight(void **state)
{
	(void)state;
	single_flight(0);
	single_flight(-EIO);
}

static void test_budget_and_held(void **state)
{
	struct ccache_conf conf = { .budget_bytes = 8 * LEN };
	struct ccache_entry *held;
	struct ccache_entry *e;
	struct ccache_stats st;
	struct ccache *c;
	uint8_t key[32];

	(void)state;
	assert_int_equal(ccache_new(&conf, &c), 0);
	{
		struct farg a = { .k = 100 };

		key_of(100, key);
		assert_int_equal(ccache_get(c, key, LEN, fill, &a, &held), 0);
	}
	for (unsigned int k = 0; k < 64; k++) {
		struct farg a = { .k = k };

		key_of(k, key);
		assert_int_equal(ccache_get(c, key, LEN, fill, &a, &e), 0);
		ccache_put(c, e);
		ccache_get_stats(c, &st);
		assert_true(st.bytes <= 8 * LEN);
	}
	/* The held entry survived the pressure with its data. */
	check_data(held, 100);
	ccache_get_stats(c, &st);
	assert_true(st.evictions >= 64 - 8);
	ccache_put(c, held);
	ccache_free(c);
}

static void *stress(void *p)
{
	struct ccache *c = p;
	unsigned int seed = (unsigned int)(uintptr_t)pthread_self();

	for (int i = 0; i < 2000; i++) {
		unsigned int k = rand_r(&seed) % 64;
		struct farg a = { .k = k };
		struct ccache_entry *e;
		uint8_t key[32];

		key_of(k, key);
		assert_int_equal(ccache_get(c, key, LEN, fill, &a, &e), 0);
		check_data(e, k);
		ccache_put(c, e);
	}
	return NULL;
}

static void test_stress(void **state)
{
	struct ccache_conf conf = { .budget_bytes = 16 * LEN };
	pthread_t tid[6];
	struct ccache *c;

	(void)state;
	assert_int_equal(ccache_new(&conf, &c), 0);
	for (int i = 0; i < 6; i++)
		pthread_create(&tid[i], NULL, stress, c);
	for (int i = 0; i < 6; i++)
		pthread_join(tid[i], NULL);
	ccache_free(c);
}

/* Evicted chunk buffers serve the next fills, as many as fit the budget;
 * bigger ones are not kept. */
static void test_spare_buffers(void **state)
{
	const size_t big = CCACHE_SPARE_SIZE;
	struct ccache_conf conf = { .budget_bytes = 2 * big };
	struct ccache_stats st;
	struct ccache_entry *e;
	struct ccache *c;
	uint64_t spare = 0;
	uint8_t key[32];

	(void)state;
	assert_int_equal(ccache_new(&conf, &c), 0);
	for (unsigned int k = 0; k < 8; k++) {
		struct farg a = { .k = k };

		key_of(100 + k, key);
		assert_int_equal(ccache_get(c, key, big, fill, &a, &e), 0);
		/* Whole and this fill's own bytes, whatever buffer it got. */
		for (size_t i = 0; i < big; i += 4093)
			assert_int_equal(ccache_data(e)[i],
					 (uint8_t)(k * 31 + i));
		ccache_put(c, e);
		/* Evicted entries go after a grace period, buffers kept. */
		rcu_barrier();
		ccache_get_stats(c, &st);
		/* Spares and cache together within the budget, but for
		 * CCACHE_SPARE buffers. */
		assert_true(st.bytes + st.spare * big <=
			    conf.budget_bytes + CCACHE_SPARE * big);
		spare = MAX(spare, st.spare);
	}
	ccache_get_stats(c, &st);
	assert_true(st.evictions >= 4);
	/* Evicted buffers were kept (and, the bytes above show, reused
	 * whole by the fills that took them). */
	assert_true(spare >= 1);
	/* Larger than a spare: its own buffer, filled as well. */
	{
		struct farg a = { .k = 9 };

		key_of(200, key);
		assert_int_equal(ccache_get(c, key, big + 4096, fill, &a, &e),
				 0);
		assert_int_equal(ccache_data(e)[big + 17],
				 (uint8_t)(9 * 31 + big + 17));
		ccache_put(c, e);
	}
	ccache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_miss),
		cmocka_unit_test(test_failure_not_cached),
		cmocka_unit_test(test_single_flight),
		cmocka_unit_test(test_budget_and_held),
		cmocka_unit_test(test_stress),
		cmocka_unit_test(test_spare_buffers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
