/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The request policy of both transports (xfer.h).  Nothing here touches
 * a connection: the numbers and rules only, and curl's process-wide
 * set-up.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

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
