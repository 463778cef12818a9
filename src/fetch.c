/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The HTTP engine.
 *
 * Threads: fetch_new() starts loop threads, one per core
 * (xfer_threads: at most --connections); each alone touches its own
 * curl multi handle, easy handles and connections (libcurl handles are
 * not thread-safe); fetch_free() stops and joins them.  Every loop takes
 * requests from the one engine, each up to its share of the window, so
 * the transfers, their TLS and their copies spread over the cores (one
 * loop was the restore's limit: busy 90 % of the time while the decoders
 * waited).  Over HTTPS each loop multiplexes its share on its own
 * HTTP/2 connection.  Callers of fetch_get() queue a request, wait on
 * its condition variable, and do the body check and the retry back-off
 * on their own thread.
 *
 * Scheduling: queued requests start in priority order while fewer than
 * `connections` transfers run; stream requests may use at most
 * connections - 2 slots and readahead connections - 1, and the two
 * together never the last slot, so that a demand read always finds one
 * free at once (xfer_may_start).  A loop's share bounds only stream and
 * readahead transfers: a demand read starts on whichever loop wakes.
 *
 * CPU: the loop threads decrypt TLS and parse HTTP for their transfers.
 * While only stream transfers run they drop to nice 19 like the stream
 * workers, and returns to the nice it started with as soon as a reader
 * waits; it does so only if a probe at start showed it may raise its
 * priority again (root, CAP_SYS_NICE or RLIMIT_NICE).
 *
 * Shutdown: fetch_cancel() makes each loop take its transfers off its
 * multi handle at once (connections closed, nothing waited for) and end
 * every queued request; from then on fetch_get() returns -ECANCELED
 * without trying, and back-off naps wake.  An unmount never waits for
 * a slow or dead server.
 *
 * Queues, slots, tries and cancellation are the request engine's
 * (xfer.h); this file keeps the curl multi handle and how a transfer
 * starts and ends.
 *
 * Locking: the engine's ->x.lock guards its queues and counts, each
 * loop's ->running and each request's cc and status once done; it is
 * never held across curl_multi_poll or a body check.  Lock order:
 * ->x.lock only.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "compiler.h"
#include "crypto.h"
#include "fetch.h"
#include "tls.h"
#include "log.h"
#include "util.h"
#include "xfer.h"
#include "banned.h"

#define BACKGROUND_NICE 19

struct loop;

struct req {
	struct xfer_req x;		/* the engine's part */
	struct fetch *f;		/* immutable */
	struct loop *loop;		/* ->x.lock: the loop running it */
	const struct fetch_request *rq;	/* borrowed from the caller */
	struct curl_slist *headers;	/* the caller's: conf's + rq's */
	CURL *easy;			/* ->loop's thread */
	CURLcode cc;			/* protected by ->x.lock once done */
	long status;			/* protected by ->x.lock once done */
	char errbuf[CURL_ERROR_SIZE];	/* ->loop's thread, then caller */
	void *check_arg;		/* caller */
	fetch_check_fn check;		/* caller */
	struct fetch_response *resp;	/* caller */
};

/* One loop thread and what only it touches. */
struct loop {
	struct fetch *f;		/* immutable */
	CURLM *multi;			/* this loop's thread (wakeup: any) */
	CURL **pool;			/* this loop's thread */
	unsigned int npool;		/* this loop's thread */
	unsigned int running;		/* ->f->x.lock: transfers it runs */
	pthread_t tid;
	bool started;			/* immutable: the thread runs */
};

struct fetch {
	struct fetch_conf conf;		/* immutable; strings owned */
	struct tls_pin *pin;		/* immutable; NULL without a pin */
	char *userpwd;			/* immutable: "KEY:SECRET", secure
					   memory of userpwd_len bytes */
	size_t userpwd_len;		/* immutable */
	struct curl_slist *headers;	/* immutable after new */
	struct loop *loops;		/* immutable array */
	unsigned int nloops;		/* immutable */
	struct xfer_engine x;		/* queues, slots, tries */
	bool reached;			/* atomic: the server answered once */
	bool told_connect;		/* atomic: "cannot connect" was said */
};

int fetch_status_errno(long status)
{
	if (status >= 200 && status < 300)
		return 0;
	if (status == 404 || status == 410)
		return -ENOENT;
	if (status == 401 || status == 403)
		return -EACCES;
	return -EIO;
}

bool fetch_status_retryable(long status)
{
	return status == 408 || status == 425 || status == 429 ||
	       (status >= 500 && status < 600);
}

/* curl errors worth another try: the network, not us or the peer's cert. */
static bool cc_retryable(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_WRITE_ERROR:		/* body over its cap: corrupt */
	case CURLE_BAD_CONTENT_ENCODING:
		return true;
	default:
		return false;
	}
}

static bool cc_is_tls_refusal(CURLcode cc)
{
	return cc == CURLE_PEER_FAILED_VERIFICATION ||
	       cc == CURLE_SSL_CACERT_BADFILE || cc == CURLE_SSL_CERTPROBLEM ||
	       cc == CURLE_SSL_PINNEDPUBKEYNOTMATCH;
}

/* A server we never heard from refuses us or has no address. */
static bool never_reached(struct fetch *f, CURLcode cc)
{
	return (cc == CURLE_COULDNT_CONNECT ||
		cc == CURLE_COULDNT_RESOLVE_HOST) &&
	       !__atomic_load_n(&f->reached, __ATOMIC_RELAXED);
}

/*
 * The first contact failed: an interactive command should not sit
 * silent for a minute.  Say so once, and give up after the (short)
 * connect timeout; a server that answered before gets remote_timeout.
 */
static uint64_t connect_deadline(struct fetch *f, const struct req *r,
				 uint64_t t0)
{
	char host[256];

	if (url_host(r->rq->url, host, sizeof(host)))
		snprintf(host, sizeof(host), "%s", r->rq->url);
	if (!__atomic_exchange_n(&f->told_connect, true, __ATOMIC_RELAXED))
		log_warn("fetch: cannot connect to '%s': %s; retrying for "
			 "%llu s", host, r->errbuf[0] ? r->errbuf :
			 curl_easy_strerror(r->cc),
			 (unsigned long long)f->conf.connect_timeout_ms / 1000);
	return t0 + f->conf.connect_timeout_ms * 1000000;
}

/* ---- debug trace, credentials redacted ---- */

/* Headers whose values are credentials. */
static bool is_secret_header(const char *line, size_t n)
{
	static const char *const names[] = {
		"authorization:", "cookie:", "set-cookie:",
		"csrfpreventiontoken:", "x-amz-security-token:",
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		size_t l = strlen(names[i]);

		if (n >= l && !strncasecmp(line, names[i], l))
			return true;
	}
	return false;
}

static int debug_cb(CURL *easy, curl_infotype type, char *data, size_t size,
		    void *arg)
{
	char line[512];
	size_t n;

	(void)easy;
	(void)arg;
	if (type != CURLINFO_TEXT && type != CURLINFO_HEADER_IN &&
	    type != CURLINFO_HEADER_OUT)
		return 0;
	while (size) {
		n = strcspn(data, "\r\n");
		n = MIN(n, size);
		if (n) {
			if (is_secret_header(data, n))
				snprintf(line, sizeof(line), "%.*s: <redacted>",
					 (int)strcspn(data, ":"), data);
			else
				snprintf(line, sizeof(line), "%.*s",
					 (int)MIN(n, sizeof(line) - 1), data);
			log_debug(LOG_CAT_HTTP, "http: %s %s",
				  type == CURLINFO_HEADER_OUT ? ">" :
				  type == CURLINFO_HEADER_IN ? "<" : "*", line);
		}
		while (n < size && (data[n] == '\r' || data[n] == '\n'))
			n++;
		data += n;
		size -= n;
	}
	return 0;
}

static size_t write_cb(char *p, size_t sz, size_t nmemb, void *arg)
{
	struct req *r = arg;
	curl_off_t cl = -1;

	/* One allocation of the announced size, not a chain of doublings. */
	if (!r->x.body.cap &&
	    !curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
			       &cl) && cl > 0)
		buf_reserve(&r->x.body, MIN((size_t)cl, r->x.body.limit));
	if (buf_append(&r->x.body, p, nmemb))
		return 0;	/* over the cap: CURLE_WRITE_ERROR */
	(void)sz;
	return nmemb;
}

/* ---- the loop thread ---- */

static CURL *easy_get(struct loop *l)
{
	struct fetch *f = l->f;
	CURL *e = l->npool ? l->pool[--l->npool] : curl_easy_init();

	if (!e)
		return NULL;
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
			 (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
			 (long)f->conf.request_timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)MIN(f->conf.request_timeout_ms, 10000));
	xfer_setup_tls(e, f->conf.ca_file, f->conf.insecure, f->pin);
	if (f->conf.aws_sigv4) {
		curl_easy_setopt(e, CURLOPT_AWS_SIGV4, f->conf.aws_sigv4);
		curl_easy_setopt(e, CURLOPT_USERPWD, f->userpwd);
	}
	if (log_debug_mask & LOG_CAT_HTTP) {
		curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
		curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, debug_cb);
	}
	return e;
}

static void easy_put(struct loop *l, CURL *e)
{
	CURL **np;

	np = realloc(l->pool, (l->npool + 1) * sizeof(*np));
	if (!np) {
		curl_easy_cleanup(e);
		return;
	}
	l->pool = np;
	l->pool[l->npool++] = e;
}

/* ->x.lock held: the transfer of @r ends with @cc. */
static void end_transfer(struct fetch *f, struct req *r, CURLcode cc)
{
	r->cc = cc;
	r->loop->running--;
	xfer_end(&f->x, &r->x, 0);
}

/* ->x.lock held, @l's thread: hand @r's transfer to @l's multi handle. */
static void start_one(struct loop *l, struct req *r)
{
	struct fetch *f = l->f;
	curl_off_t rate = 0;

	r->loop = l;
	l->running++;
	r->easy = easy_get(l);
	if (!r->easy) {
		end_transfer(f, r, CURLE_OUT_OF_MEMORY);
		return;
	}
	curl_easy_setopt(r->easy, CURLOPT_URL, r->rq->url);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER,
			 r->headers ? r->headers : f->headers);
	if (r->rq->body) {
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)r->rq->body_len);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->rq->body);
	} else {
		curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L);
	}
	curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, r->rq->method);
	/*
	 * Wait for a multiplexed HTTP/2 stream rather than open
	 * connections, but only where h2 can happen: over plain HTTP it
	 * would serialise everything onto one keep-alive connection.
	 */
	curl_easy_setopt(r->easy, CURLOPT_PIPEWAIT,
			 strncmp(r->rq->url, "https:", 6) ? 0L : 1L);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	/* The total cap, shared among what runs now: approximate. */
	if (f->conf.limit_rate)
		rate = (curl_off_t)(f->conf.limit_rate / f->x.nactive);
	curl_easy_setopt(r->easy, CURLOPT_MAX_RECV_SPEED_LARGE, rate);
	r->errbuf[0] = '\0';
	if (curl_multi_add_handle(l->multi, r->easy)) {
		easy_put(l, r->easy);
		r->easy = NULL;
		end_transfer(f, r, CURLE_FAILED_INIT);
	}
}

/*
 * Start queued requests while slots are free and @l runs fewer than its
 * share of the window; ->x.lock held, @l's thread.
 */
static void start_queued(struct loop *l)
{
	struct fetch *f = l->f;
	unsigned int n = f->nloops;
	unsigned int share = (xfer_window_now(&f->x) + n - 1) / n;
	struct xfer_req *list = xfer_take(&f->x, 0,
					  share > l->running ?
					  share - l->running : 0, NULL, NULL);

	while (list) {
		struct req *r = container_of(list, struct req, x);

		list = list->next;
		start_one(l, r);
	}
}

/*
 * ->x.lock held, @l's thread: fetch_cancel() was called.  Each of its
 * transfers is taken off its multi handle (the connection closes;
 * nothing is waited for) and every queued request ends at once.
 */
static void abort_all(struct loop *l)
{
	struct fetch *f = l->f;
	struct xfer_req **pp = &f->x.running;

	while (*pp) {
		struct req *r = container_of(*pp, struct req, x);

		if (r->loop != l) {
			pp = &(*pp)->run_next;
			continue;
		}
		curl_multi_remove_handle(l->multi, r->easy);
		/* A half-read connection is not worth keeping. */
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
		end_transfer(f, r, CURLE_ABORTED_BY_CALLBACK);
	}
	xfer_end_queued(&f->x, -ECANCELED);
}

/* Loop thread only: may it lower its nice and raise it back? */
static bool can_renice(id_t tid, int base)
{
	if (base >= BACKGROUND_NICE || setpriority(PRIO_PROCESS, tid, base + 1))
		return false;
	if (!setpriority(PRIO_PROCESS, tid, base))
		return true;
	log_debug(LOG_CAT_FETCH, "fetch: cannot raise the loop's priority "
		  "again: it stays at nice %d", base + 1);
	return false;
}

/* @l's thread, ->x.lock not held: collect the transfers that ended. */
static void collect_done(struct loop *l)
{
	struct fetch *f = l->f;
	struct CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(l->multi, &left))) {
		struct req *r = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
				  (char **)&r);
		curl_multi_remove_handle(l->multi, msg->easy_handle);
		pthread_mutex_lock(&f->x.lock);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE,
				  &r->status);
		easy_put(l, msg->easy_handle);
		r->easy = NULL;
		end_transfer(f, r, msg->data.result);
		pthread_mutex_unlock(&f->x.lock);
	}
}

static void *loop_main(void *arg)
{
	struct loop *l = arg;
	struct fetch *f = l->f;
	id_t tid = (id_t)gettid();
	int base;
	bool renice;
	bool low = false;
	int running = 0;

	thread_name("lm-fetch");
	errno = 0;
	base = getpriority(PRIO_PROCESS, tid);
	renice = !errno && can_renice(tid, base);
	pthread_mutex_lock(&f->x.lock);
	while (!f->x.stop || l->running) {
		if (f->x.cancel)
			abort_all(l);
		start_queued(l);
		if (renice && xfer_background_only(&f->x) != low &&
		    !setpriority(PRIO_PROCESS, tid,
				 low ? base : BACKGROUND_NICE))
			low = !low;
		pthread_mutex_unlock(&f->x.lock);
		curl_multi_perform(l->multi, &running);
		collect_done(l);
		curl_multi_poll(l->multi, NULL, 0, 1000, NULL);
		pthread_mutex_lock(&f->x.lock);
	}
	pthread_mutex_unlock(&f->x.lock);
	return NULL;
}

/* Any thread: every loop looks at the queues again. */
static void wake(void *arg)
{
	struct fetch *f = arg;

	for (unsigned int i = 0; i < f->nloops; i++)
		curl_multi_wakeup(f->loops[i].multi);
}

/* ---- callers ---- */

int fetch_new(const struct fetch_conf *conf, struct fetch **out)
{
	/* As many connections as requests may be in flight. */
	long conns = conf->connections ? (long)conf->connections :
					 XFER_SLOTS_MAX;
	struct fetch *f;

	if (xfer_curl_init())
		return -EIO;
	f = xcalloc(1, sizeof(*f));
	f->conf = *conf;
	if (!f->conf.remote_timeout_ms)
		f->conf.remote_timeout_ms = XFER_REMOTE_TIMEOUT_MS;
	xfer_init(&f->x, &(struct xfer_conf){
		.who = "fetch", .remote_timeout_ms = f->conf.remote_timeout_ms,
		.slots = f->conf.connections, .body_pool = conf->body_pool,
		.wake = wake, .wake_arg = f });
	if (!f->conf.request_timeout_ms)
		f->conf.request_timeout_ms = XFER_REQUEST_TIMEOUT_MS;
	if (!f->conf.connect_timeout_ms)
		f->conf.connect_timeout_ms = XFER_CONNECT_TIMEOUT_MS;
	f->conf.ca_file = conf->ca_file ? xstrdup(conf->ca_file) : NULL;
	f->conf.fingerprint = conf->fingerprint ? xstrdup(conf->fingerprint) :
						  NULL;
	f->conf.auth_header = NULL;
	if (xfer_tls_pin("fetch", conf->fingerprint, conf->host,
			 conf->insecure, &f->pin)) {
		fetch_free(f);
		return -EINVAL;
	}
	if (conf->auth_header)
		f->headers = curl_slist_append(NULL, conf->auth_header);
	f->conf.aws_sigv4 = conf->aws_sigv4 ? xstrdup(conf->aws_sigv4) : NULL;
	f->conf.aws_key_id = NULL;
	f->conf.aws_secret = NULL;
	f->conf.aws_token = NULL;
	if (conf->aws_sigv4) {
		f->userpwd_len = strlen(conf->aws_key_id) +
				 strlen(conf->aws_secret) + 2;
		f->userpwd = crypto_secure_alloc(f->userpwd_len);
		if (!f->userpwd) {
			fetch_free(f);
			return -ENOMEM;
		}
		snprintf(f->userpwd, f->userpwd_len, "%s:%s", conf->aws_key_id,
			 conf->aws_secret);
		if (conf->aws_token && *conf->aws_token) {
			char *h = xasprintf("x-amz-security-token: %s",
					    conf->aws_token);

			f->headers = curl_slist_append(f->headers, h);
			crypto_wipe(h, strlen(h));
			free(h);
		}
	}
	f->nloops = xfer_threads(f->conf.connections);
	f->loops = xcalloc(f->nloops, sizeof(*f->loops));
	for (unsigned int i = 0; i < f->nloops; i++) {
		struct loop *l = &f->loops[i];

		l->f = f;
		l->multi = curl_multi_init();
		if (!l->multi) {
			fetch_free(f);
			return -ENOMEM;
		}
		curl_multi_setopt(l->multi, CURLMOPT_PIPELINING,
				  CURLPIPE_MULTIPLEX);
		curl_multi_setopt(l->multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
		curl_multi_setopt(l->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
				  conns);
	}
	/* Every multi handle exists before a wake() may reach them. */
	for (unsigned int i = 0; i < f->nloops; i++) {
		struct loop *l = &f->loops[i];

		if (pthread_create(&l->tid, NULL, loop_main, l)) {
			fetch_free(f);
			return -EAGAIN;
		}
		l->started = true;
	}
	*out = f;
	return 0;
}

void fetch_free(struct fetch *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->x.lock);
	f->x.stop = true;
	pthread_mutex_unlock(&f->x.lock);
	for (unsigned int i = 0; i < f->nloops; i++) {
		struct loop *l = &f->loops[i];

		if (l->multi)
			curl_multi_wakeup(l->multi);
	}
	for (unsigned int i = 0; i < f->nloops; i++) {
		struct loop *l = &f->loops[i];

		if (l->started)
			pthread_join(l->tid, NULL);
		if (l->multi)
			curl_multi_cleanup(l->multi);
		for (unsigned int j = 0; j < l->npool; j++)
			curl_easy_cleanup(l->pool[j]);
		free(l->pool);
	}
	free(f->loops);
	curl_slist_free_all(f->headers);
	free((char *)f->conf.ca_file);
	free((char *)f->conf.fingerprint);
	tls_pin_free(f->pin);
	crypto_secure_free(f->userpwd, f->userpwd_len);
	free((char *)f->conf.aws_sigv4);
	xfer_release(&f->x);
	free(f);
}

unsigned int fetch_window(struct fetch *f)
{
	return xfer_window_now(&f->x);
}

void fetch_cancel(struct fetch *f)
{
	xfer_cancel(&f->x);
}

/* The conf's headers and the request's own, for one request. */
static int build_headers(struct fetch *f, const struct fetch_request *rq,
			 struct curl_slist **out)
{
	struct curl_slist *h = NULL;
	struct curl_slist *n;

	*out = NULL;
	if (!rq->headers)
		return 0;
	for (struct curl_slist *c = f->headers; c; c = c->next) {
		n = curl_slist_append(h, c->data);
		if (!n)
			goto err;
		h = n;
	}
	for (const char *const *p = rq->headers; *p; p++) {
		n = curl_slist_append(h, *p);
		if (!n)
			goto err;
		h = n;
	}
	*out = h;
	return 0;
err:
	curl_slist_free_all(h);
	return -ENOMEM;
}

/* A final HTTP error: kept for the caller, or said. */
static int http_refusal(struct req *r)
{
	int ret = fetch_status_errno(r->status);

	if (r->rq->error_body)
		r->resp->body = buf_steal(&r->x.body, &r->resp->len);
	else if (ret == -EACCES)
		log_err("fetch: cannot get '%s': HTTP %ld (access denied: "
			"check the credentials)", r->rq->url, r->status);
	return ret;
}

/* One try (xfer_try_fn). */
static int try_once(void *arg, struct xfer_retry *rt, char *why, size_t n)
{
	struct req *r = arg;
	struct fetch *f = r->f;

	r->cc = CURLE_OK;
	r->status = 0;
	xfer_wait(&f->x, &r->x, r->rq->max);
	r->resp->status = r->status;
	if (r->x.err)
		return r->x.err;
	if (r->cc == CURLE_ABORTED_BY_CALLBACK && xfer_cancelled(&f->x))
		return -ECANCELED;
	if (r->cc == CURLE_OK)
		__atomic_store_n(&f->reached, true, __ATOMIC_RELAXED);
	else if (never_reached(f, r->cc))
		rt->deadline = MIN(rt->deadline,
				   connect_deadline(f, r, rt->t0));
	if (r->cc == CURLE_OK && r->status >= 200 && r->status < 300) {
		snprintf(why, n, "body failed verification");
		return xfer_body(&r->x, r->check, r->check_arg,
				 &r->resp->body, &r->resp->len);
	}
	if (r->cc == CURLE_OK) {
		if (!fetch_status_retryable(r->status))
			return http_refusal(r);
		snprintf(why, n, "HTTP %ld", r->status);
		return XFER_RETRY;
	}
	if (cc_is_tls_refusal(r->cc))
		return xfer_tls_refused("fetch", r->rq->url, f->pin,
					r->errbuf[0] ? r->errbuf :
					curl_easy_strerror(r->cc));
	snprintf(why, n, "%s", r->errbuf[0] ? r->errbuf :
		 curl_easy_strerror(r->cc));
	if (cc_retryable(r->cc))
		return XFER_RETRY;
	log_err("fetch: cannot get '%s': %s", r->rq->url, why);
	return -EIO;
}

int fetch_request(struct fetch *f, const struct fetch_request *rq,
		  fetch_check_fn check, void *arg, struct fetch_response *resp)
{
	struct req r = {
		.f = f, .rq = rq, .check = check, .check_arg = arg,
		.resp = resp,
	};
	int ret;

	memset(resp, 0, sizeof(*resp));
	ret = build_headers(f, rq, &r.headers);
	if (ret)
		return ret;
	/* A body the check drops: a spare buffer (none for error bodies,
	 * which the caller keeps). */
	xfer_req_init(&f->x, &r.x, rq->prio, check && !rq->error_body,
		      rq->max);
	ret = xfer_run(&f->x, &r.x, try_once, &r, rq->url);
	xfer_req_release(&f->x, &r.x);
	curl_slist_free_all(r.headers);
	return ret;
}

int fetch_get(struct fetch *f, const char *url, enum fetch_prio prio,
	      size_t max, fetch_check_fn check, void *arg, uint8_t **buf,
	      size_t *len)
{
	struct fetch_request rq = { .url = url, .prio = prio, .max = max };
	struct fetch_response resp;
	int ret;

	ret = fetch_request(f, &rq, check, arg, &resp);
	if (!ret && !check) {
		*buf = resp.body;
		*len = resp.len;
	}
	return ret;
}
