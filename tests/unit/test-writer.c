/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * writer: queued writes run in order of arrival (one thread), every one
 * of them before drain returns; a producer ahead of the writes waits for
 * a buffer (back-pressure, no buffer in two places); the first error is
 * the one drain returns, and buffers come back after a failed write too;
 * buffers are aligned for O_DIRECT; free with buffers still held frees
 * them.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util.h"
#include "writer.h"

#define N 200

struct log {
	pthread_mutex_t lock;
	uintptr_t seen[N];
	unsigned int n;
	unsigned int delay_us;	/* each write takes this long */
	uintptr_t fail_at;	/* the write with this arg fails, 0: none */
	int fail_err;
};

static int record(void *ctx, void *buf, void *arg)
{
	struct log *l = ctx;

	/* The producer's bytes are in the buffer. */
	assert_int_equal(*(uintptr_t *)buf, (uintptr_t)arg);
	if (l->delay_us)
		usleep(l->delay_us);
	pthread_mutex_lock(&l->lock);
	l->seen[l->n++] = (uintptr_t)arg;
	pthread_mutex_unlock(&l->lock);
	if ((uintptr_t)arg == l->fail_at)
		return l->fail_err;
	return 0;
}

static void test_order(void **state)
{
	struct log l = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct writer *w;

	(void)state;
	assert_int_equal(writer_new(4096, 3, 1, record, &l, &w), 0);
	for (uintptr_t i = 1; i <= N; i++) {
		void *buf = writer_get(w);

		assert_int_equal((uintptr_t)buf % DIRECT_ALIGN, 0);
		*(uintptr_t *)buf = i;
		writer_submit(w, buf, (void *)i);
	}
	assert_int_equal(writer_drain(w), 0);
	assert_int_equal(l.n, N);
	for (unsigned int i = 0; i < N; i++)
		assert_int_equal(l.seen[i], i + 1);
	writer_free(w);
}

struct producer {
	struct writer *w;
	uintptr_t from;
	unsigned int got;	/* buffers taken: never two the same */
	void *bufs[N];
};

static void *produce(void *arg)
{
	struct producer *p = arg;

	for (uintptr_t i = 0; i < 50; i++) {
		void *buf = writer_get(p->w);

		p->bufs[p->got++] = buf;
		*(uintptr_t *)buf = p->from + i;
		writer_submit(p->w, buf, (void *)(p->from + i));
	}
	return NULL;
}

/* Four producers, two writers, two buffers: all 200 written once. */
static void test_backpressure(void **state)
{
	struct log l = { .lock = PTHREAD_MUTEX_INITIALIZER, .delay_us = 200 };
	struct producer p[4];
	pthread_t t[4];
	unsigned int count[4] = { 0 };
	void *distinct[2];
	unsigned int ndistinct = 0;
	struct writer *w;

	(void)state;
	assert_int_equal(writer_new(4096, 2, 2, record, &l, &w), 0);
	for (int i = 0; i < 4; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].w = w;
		p[i].from = 1000 * (uintptr_t)(i + 1);
		assert_int_equal(pthread_create(&t[i], NULL, produce, &p[i]),
				 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(writer_drain(w), 0);
	assert_int_equal(l.n, N);
	for (unsigned int i = 0; i < N; i++) {
		uintptr_t v = l.seen[i];

		assert_true(v / 1000 >= 1 && v / 1000 <= 4 && v % 1000 < 50);
		count[v / 1000 - 1]++;
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(count[i], 50);
		/* Only the writer's two buffers ever went round. */
		for (unsigned int k = 0; k < p[i].got; k++) {
			unsigned int d;

			for (d = 0; d < ndistinct; d++)
				if (distinct[d] == p[i].bufs[k])
					break;
			if (d == ndistinct) {
				assert_true(ndistinct < 2);
				distinct[ndistinct++] = p[i].bufs[k];
			}
		}
	}
	writer_free(w);
}

static void test_error(void **state)
{
	struct log l = { .lock = PTHREAD_MUTEX_INITIALIZER, .fail_at = 3,
			 .fail_err = -ENOSPC };
	struct writer *w;
	void *held;

	(void)state;
	assert_int_equal(writer_new(4096, 2, 1, record, &l, &w), 0);
	for (uintptr_t i = 1; i <= 10; i++) {
		void *buf = writer_get(w);

		*(uintptr_t *)buf = i;
		writer_submit(w, buf, (void *)i);
	}
	/* Every write ran; the failure is the answer. */
	assert_int_equal(writer_drain(w), -ENOSPC);
	assert_int_equal(l.n, 10);
	/* Buffers came back: two can be taken; one given back unused. */
	held = writer_get(w);
	writer_put(w, writer_get(w));
	(void)held;
	/* Freed with one still held: no leak (valgrind, ASan). */
	writer_free(w);
	writer_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
