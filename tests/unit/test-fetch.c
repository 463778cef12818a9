/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fetch: the HTTP status -> errno map, retry classes, back-off, slots. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "fetch.h"
#include "log.h"
#include "util.h"

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

struct getter {
	struct fetch *f;
	char url[64];
	enum fetch_prio prio;
	int ret;
	uint64_t ns;
};

static void *getter_main(void *p)
{
	struct getter *g = p;
	uint64_t t0 = now_ns();
	uint8_t *buf = NULL;
	size_t len;

	g->ret = fetch_get(g->f, g->url, g->prio, 1 << 20, NULL, NULL, &buf,
			   &len);
	g->ns = now_ns() - t0;
	free(buf);
	return NULL;
}

/*
 * fetch_cancel() ends transfers that hang (a server that accepts and
 * never answers), requests waiting for a slot and retry naps at once,
 * and later requests fail without trying: all -ECANCELED.
 */
static void test_cancel(void **state)
{
	struct fetch_conf fc = {
		.connections = 1,
		.remote_timeout_ms = 60000,
		.request_timeout_ms = 30000,
	};
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	struct getter g[3];
	pthread_t tid[3];
	struct fetch *f;
	uint8_t *buf = NULL;
	size_t len;
	int ls;

	(void)state;
	log_init("test-fetch", false, LOG_CRIT);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(ls, 16), 0);
	assert_int_equal(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
	assert_int_equal(fetch_new(&fc, &f), 0);
	for (int i = 0; i < 3; i++) {
		g[i] = (struct getter){ .f = f, .prio = FETCH_DEMAND };
		snprintf(g[i].url, sizeof(g[i].url), "http://127.0.0.1:%u/%d",
			 ntohs(sa.sin_port), i);
		pthread_create(&tid[i], NULL, getter_main, &g[i]);
	}
	/* One transfer hangs in the only slot, two wait in the queue. */
	usleep(300000);
	fetch_cancel(f);
	for (int i = 0; i < 3; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(g[i].ret, -ECANCELED);
		assert_true(g[i].ns < 5000000000ull);
	}
	assert_int_equal(fetch_get(f, g[0].url, FETCH_DEMAND, 1 << 20, NULL,
				   NULL, &buf, &len), -ECANCELED);
	fetch_free(f);
	close(ls);

	/* A retry nap (nothing listens: connection refused) is cut short. */
	assert_int_equal(fetch_new(&fc, &f), 0);
	g[0] = (struct getter){ .f = f, .prio = FETCH_STREAM };
	snprintf(g[0].url, sizeof(g[0].url), "http://127.0.0.1:%u/x",
		 ntohs(sa.sin_port));
	pthread_create(&tid[0], NULL, getter_main, &g[0]);
	usleep(500000);
	fetch_cancel(f);
	pthread_join(tid[0], NULL);
	assert_int_equal(g[0].ret, -ECANCELED);
	assert_true(g[0].ns < 5000000000ull);
	fetch_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_map),
		cmocka_unit_test(test_cancel),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
