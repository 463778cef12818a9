/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The HTTP engine.
 *
 * Threads: fetch_new() starts one loop thread that alone touches the
 * curl multi handle and the easy handles (libcurl handles are not
 * thread-safe); fetch_free() stops and joins it.  Callers of
 * fetch_get() queue a request, wait on its condition variable, and do
 * the body check and the retry back-off on their own thread.
 *
 * Scheduling: queued requests start in priority order while fewer than
 * `connections` transfers run; stream requests may use at most
 * connections - 2 slots and readahead connections - 1, and the two
 * together never the last slot, so that a demand read always finds one
 * free at once (xfer_may_start).
 *
 * CPU: the loop thread decrypts TLS and parses HTTP for every transfer.
 * While only stream transfers run it drops to nice 19 like the stream
 * workers, and returns to the nice it started with as soon as a reader
 * waits; it does so only if a probe at start showed it may raise its
 * priority again (root, CAP_SYS_NICE or RLIMIT_NICE).
 *
 * Shutdown: fetch_cancel() makes the loop take every transfer off the
 * multi handle at once (connections closed, nothing waited for) and end
 * every queued request; from then on fetch_get() returns -ECANCELED
 * without trying, and back-off naps wake.  An unmount never waits for
 * a slow or dead server.
 *
 * Locking: ->lock guards the queues, the active counts, the running
 * list, every request's state, ->stop and ->cancel; it is never held
 * across curl_multi_poll or a body check.  Lock order: ->lock only.
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
#define BODIES_SPARE 8		/* spare chunk bodies kept, at most */

struct req {
	const struct fetch_request *rq;	/* borrowed from the caller */
	struct curl_slist *headers;	/* the caller's: conf's + rq's */
	enum fetch_prio prio;
	struct buf body;		/* loop thread while running */
	void *mem;			/* body's memory from ->bodies, or
					   NULL: its own */
	CURL *easy;			/* loop thread */
	CURLcode cc;			/* protected by ->lock once done */
	long status;			/* protected by ->lock once done */
	char errbuf[CURL_ERROR_SIZE];	/* loop thread, then caller */
	bool done;			/* protected by ->lock */
	pthread_cond_t cond;		/* with ->lock */
	struct req *next;		/* protected by ->lock: queue link */
	struct req *run_next;		/* protected by ->lock: ->running */
};

struct fetch {
	struct fetch_conf conf;		/* immutable; strings owned */
	struct tls_pin *pin;		/* immutable; NULL without a pin */
	char *userpwd;			/* immutable: "KEY:SECRET", secure
					   memory of userpwd_len bytes */
	size_t userpwd_len;		/* immutable */
	struct curl_slist *headers;	/* immutable after new */
	CURLM *multi;			/* loop thread only */
	CURL **pool;			/* loop thread only */
	unsigned int npool;		/* loop thread only */
	pthread_t loop;
	pthread_mutex_t lock;
	struct req *queue[FETCH_NPRIO];	/* protected by ->lock: FIFO heads */
	struct req **tail[FETCH_NPRIO];	/* protected by ->lock */
	unsigned int active[FETCH_NPRIO]; /* protected by ->lock */
	unsigned int nactive;		/* protected by ->lock */
	bool stop;			/* protected by ->lock */
	bool cancel;			/* protected by ->lock: fetch_cancel */
	struct req *running;		/* protected by ->lock: added to multi */
	pthread_cond_t cancel_cond;	/* with ->lock: wakes back-off naps */
	struct bufpool bodies;		/* its own lock: conf.body_pool */
	uint64_t last_giveup_ns;	/* atomic: when a give-up was logged */
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
	if (!r->body.cap &&
	    !curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
			       &cl) && cl > 0)
		buf_reserve(&r->body, MIN((size_t)cl, r->body.limit));
	if (buf_append(&r->body, p, nmemb))
		return 0;	/* over the cap: CURLE_WRITE_ERROR */
	(void)sz;
	return nmemb;
}

/* ---- the loop thread ---- */

static CURL *easy_get(struct fetch *f)
{
	CURL *e = f->npool ? f->pool[--f->npool] : curl_easy_init();

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

static void easy_put(struct fetch *f, CURL *e)
{
	CURL **np;

	np = realloc(f->pool, (f->npool + 1) * sizeof(*np));
	if (!np) {
		curl_easy_cleanup(e);
		return;
	}
	f->pool = np;
	f->pool[f->npool++] = e;
}

/* Start queued requests while slots are free; ->lock held. */
static void start_queued(struct fetch *f)
{
	for (int p = 0; p < FETCH_NPRIO; p++) {
		while (f->queue[p] &&
		       xfer_may_start(f->active, f->conf.connections, p)) {
			struct req *r = f->queue[p];
			curl_off_t rate = 0;

			f->queue[p] = r->next;
			if (!f->queue[p])
				f->tail[p] = &f->queue[p];
			r->easy = easy_get(f);
			if (!r->easy) {
				r->cc = CURLE_OUT_OF_MEMORY;
				r->done = true;
				pthread_cond_signal(&r->cond);
				continue;
			}
			curl_easy_setopt(r->easy, CURLOPT_URL, r->rq->url);
			curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER,
					 r->headers ? r->headers : f->headers);
			if (r->rq->body) {
				curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE,
						 (curl_off_t)r->rq->body_len);
				curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS,
						 r->rq->body);
			} else {
				curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L);
			}
			curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST,
					 r->rq->method);
			/*
			 * Wait for a multiplexed HTTP/2 stream rather than
			 * open connections, but only where h2 can happen:
			 * over plain HTTP it would serialise everything onto
			 * one keep-alive connection.
			 */
			curl_easy_setopt(r->easy, CURLOPT_PIPEWAIT,
					 strncmp(r->rq->url, "https:", 6) ? 0L :
									    1L);
			curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
			curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
			curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
			/* The total cap, shared among what runs now: approximate. */
			if (f->conf.limit_rate)
				rate = (curl_off_t)(f->conf.limit_rate /
						    (f->nactive + 1));
			curl_easy_setopt(r->easy, CURLOPT_MAX_RECV_SPEED_LARGE,
					 rate);
			r->errbuf[0] = '\0';
			if (curl_multi_add_handle(f->multi, r->easy)) {
				easy_put(f, r->easy);
				r->cc = CURLE_FAILED_INIT;
				r->done = true;
				pthread_cond_signal(&r->cond);
				continue;
			}
			f->active[p]++;
			f->nactive++;
			r->run_next = f->running;
			f->running = r;
		}
	}
}

/* ->lock held: unlink @r from ->running. */
static void unlink_running(struct fetch *f, struct req *r)
{
	for (struct req **pp = &f->running; *pp; pp = &(*pp)->run_next) {
		if (*pp == r) {
			*pp = r->run_next;
			break;
		}
	}
}

/* ->lock held: end @r now (cancelled, or its transfer finished). */
static void finish(struct req *r, CURLcode cc)
{
	r->cc = cc;
	r->done = true;
	pthread_cond_signal(&r->cond);
}

/*
 * ->lock held, loop thread: fetch_cancel() was called.  Every transfer
 * is taken off the multi handle (the connection closes; nothing is
 * waited for) and every queued request ends at once.
 */
static void abort_all(struct fetch *f)
{
	while (f->running) {
		struct req *r = f->running;

		f->running = r->run_next;
		curl_multi_remove_handle(f->multi, r->easy);
		/* A half-read connection is not worth keeping. */
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
		f->active[r->prio]--;
		f->nactive--;
		finish(r, CURLE_ABORTED_BY_CALLBACK);
	}
	for (int p = 0; p < FETCH_NPRIO; p++) {
		while (f->queue[p]) {
			struct req *r = f->queue[p];

			f->queue[p] = r->next;
			finish(r, CURLE_ABORTED_BY_CALLBACK);
		}
		f->tail[p] = &f->queue[p];
	}
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

/* ->lock held: only stream transfers running or waiting. */
static bool background_only(const struct fetch *f)
{
	return !f->active[FETCH_DEMAND] && !f->active[FETCH_READAHEAD] &&
	       !f->queue[FETCH_DEMAND] && !f->queue[FETCH_READAHEAD] &&
	       (f->active[FETCH_STREAM] || f->queue[FETCH_STREAM]);
}

static void *loop_main(void *arg)
{
	struct fetch *f = arg;
	struct CURLMsg *msg;
	id_t tid = (id_t)gettid();
	int base;
	bool renice;
	bool low = false;
	int running = 0;
	int left;

	errno = 0;
	base = getpriority(PRIO_PROCESS, tid);
	renice = !errno && can_renice(tid, base);
	pthread_mutex_lock(&f->lock);
	while (!f->stop || f->nactive) {
		if (f->cancel)
			abort_all(f);
		start_queued(f);
		if (renice && background_only(f) != low &&
		    !setpriority(PRIO_PROCESS, tid,
				 low ? base : BACKGROUND_NICE))
			low = !low;
		pthread_mutex_unlock(&f->lock);
		curl_multi_perform(f->multi, &running);
		while ((msg = curl_multi_info_read(f->multi, &left))) {
			struct req *r = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
					  (char **)&r);
			curl_multi_remove_handle(f->multi, msg->easy_handle);
			pthread_mutex_lock(&f->lock);
			curl_easy_getinfo(msg->easy_handle,
					  CURLINFO_RESPONSE_CODE, &r->status);
			easy_put(f, msg->easy_handle);
			r->easy = NULL;
			f->active[r->prio]--;
			f->nactive--;
			unlink_running(f, r);
			finish(r, msg->data.result);
			pthread_mutex_unlock(&f->lock);
		}
		curl_multi_poll(f->multi, NULL, 0, 1000, NULL);
		pthread_mutex_lock(&f->lock);
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

/* ---- callers ---- */

int fetch_new(const struct fetch_conf *conf, struct fetch **out)
{
	struct fetch *f;

	if (xfer_curl_init())
		return -EIO;
	f = xcalloc(1, sizeof(*f));
	f->conf = *conf;
	if (!f->conf.connections)
		f->conf.connections = XFER_SLOTS;
	bufpool_init(&f->bodies, conf->body_pool,
		     MIN(f->conf.connections, BODIES_SPARE));
	if (!f->conf.remote_timeout_ms)
		f->conf.remote_timeout_ms = XFER_REMOTE_TIMEOUT_MS;
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
	f->multi = curl_multi_init();
	if (!f->multi) {
		fetch_free(f);
		return -ENOMEM;
	}
	curl_multi_setopt(f->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
	curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
			  (long)f->conf.connections);
	curl_multi_setopt(f->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
			  (long)f->conf.connections);
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cancel_cond, NULL);
	for (int p = 0; p < FETCH_NPRIO; p++)
		f->tail[p] = &f->queue[p];
	if (pthread_create(&f->loop, NULL, loop_main, f)) {
		curl_multi_cleanup(f->multi);
		f->multi = NULL;
		fetch_free(f);
		return -EAGAIN;
	}
	*out = f;
	return 0;
}

void fetch_free(struct fetch *f)
{
	if (!f)
		return;
	if (f->multi) {
		pthread_mutex_lock(&f->lock);
		f->stop = true;
		pthread_mutex_unlock(&f->lock);
		curl_multi_wakeup(f->multi);
		pthread_join(f->loop, NULL);
		pthread_cond_destroy(&f->cancel_cond);
		pthread_mutex_destroy(&f->lock);
		curl_multi_cleanup(f->multi);
	}
	for (unsigned int i = 0; i < f->npool; i++)
		curl_easy_cleanup(f->pool[i]);
	free(f->pool);
	curl_slist_free_all(f->headers);
	free((char *)f->conf.ca_file);
	free((char *)f->conf.fingerprint);
	tls_pin_free(f->pin);
	crypto_secure_free(f->userpwd, f->userpwd_len);
	free((char *)f->conf.aws_sigv4);
	bufpool_destroy(&f->bodies);
	free(f);
}

/* One attempt: queue, wait, collect. */
static void run_once(struct fetch *f, struct req *r, size_t max)
{
	if (r->mem)
		buf_init_on(&r->body, r->mem, f->bodies.size, max);
	else
		buf_init(&r->body, max);
	r->done = false;
	r->cc = CURLE_OK;
	r->status = 0;
	r->next = NULL;
	pthread_mutex_lock(&f->lock);
	if (f->cancel) {
		finish(r, CURLE_ABORTED_BY_CALLBACK);
		pthread_mutex_unlock(&f->lock);
		return;
	}
	*f->tail[r->prio] = r;
	f->tail[r->prio] = &r->next;
	pthread_mutex_unlock(&f->lock);
	curl_multi_wakeup(f->multi);
	pthread_mutex_lock(&f->lock);
	while (!r->done)
		pthread_cond_wait(&r->cond, &f->lock);
	pthread_mutex_unlock(&f->lock);
}

static bool is_cancelled(struct fetch *f)
{
	bool c;

	pthread_mutex_lock(&f->lock);
	c = f->cancel;
	pthread_mutex_unlock(&f->lock);
	return c;
}

void fetch_cancel(struct fetch *f)
{
	pthread_mutex_lock(&f->lock);
	f->cancel = true;
	pthread_cond_broadcast(&f->cancel_cond);
	pthread_mutex_unlock(&f->lock);
	curl_multi_wakeup(f->multi);
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

/* Done with an attempt's body: freed, or left in the spare buffer. */
static void body_release(struct req *r)
{
	if (r->mem)
		buf_init(&r->body, r->body.limit);
	else
		buf_release(&r->body);
}

int fetch_request(struct fetch *f, const struct fetch_request *rq,
		  fetch_check_fn check, void *arg, struct fetch_response *resp)
{
	struct req r = { .rq = rq, .prio = rq->prio };
	struct xfer_retry rt;
	char why[CURL_ERROR_SIZE + 64];
	char seen[96];
	const char *url = rq->url;
	bool bad_body;
	int ret;

	memset(resp, 0, sizeof(*resp));
	ret = build_headers(f, rq, &r.headers);
	if (ret)
		return ret;
	pthread_cond_init(&r.cond, NULL);
	/* A body the check drops: a spare buffer (none for error bodies,
	 * which the caller keeps). */
	if (check && !rq->error_body && rq->max < f->bodies.size)
		r.mem = bufpool_get(&f->bodies);
	xfer_retry_start(&rt, f->conf.remote_timeout_ms, &r);
	for (;;) {
		uint64_t delay;

		rt.attempt++;
		bad_body = false;
		run_once(f, &r, rq->max);
		resp->status = r.status;
		if (r.cc == CURLE_ABORTED_BY_CALLBACK && is_cancelled(f)) {
			ret = -ECANCELED;
			goto out;
		}
		if (r.cc == CURLE_OK)
			__atomic_store_n(&f->reached, true, __ATOMIC_RELAXED);
		else if (never_reached(f, r.cc))
			rt.deadline = MIN(rt.deadline,
					  connect_deadline(f, &r, rt.t0));
		if (r.cc == CURLE_OK && r.status >= 200 && r.status < 300) {
			if (!check) {
				resp->body = buf_steal(&r.body, &resp->len);
				if (!resp->body)
					resp->body = calloc(1, 1);
				ret = resp->body ? 0 : -ENOMEM;
				goto out;
			}
			ret = check(r.body.data ? r.body.data :
						  (const uint8_t *)"",
				    r.body.len, arg);
			if (ret != -EBADMSG)
				goto out;
			bad_body = true;
			snprintf(why, sizeof(why), "body failed verification");
		} else if (r.cc == CURLE_OK) {
			ret = fetch_status_errno(r.status);
			if (!fetch_status_retryable(r.status)) {
				if (rq->error_body) {
					/* The caller explains it. */
					resp->body = buf_steal(&r.body,
							       &resp->len);
				} else if (ret == -EACCES) {
					log_err("fetch: cannot get '%s': HTTP "
						"%ld (access denied: check the "
						"credentials)", url, r.status);
				}
				goto out;
			}
			snprintf(why, sizeof(why), "HTTP %ld", r.status);
		} else if (cc_is_tls_refusal(r.cc)) {
			seen[0] = '\0';
			if (f->pin)
				tls_pin_last_refused(f->pin, seen, sizeof(seen));
			if (seen[0])
				log_err("fetch: cannot trust '%s': certificate "
					"fingerprint %s is not the pinned %s",
					url, seen, tls_pin_str(f->pin));
			else
				log_err("fetch: cannot trust '%s': %s (pin it "
					"with --fingerprint or give --ca-file)",
					url, r.errbuf[0] ? r.errbuf :
					curl_easy_strerror(r.cc));
			ret = -EACCES;
			goto out;
		} else if (!cc_retryable(r.cc)) {
			log_err("fetch: cannot get '%s': %s", url,
				r.errbuf[0] ? r.errbuf : curl_easy_strerror(r.cc));
			ret = -EIO;
			goto out;
		} else {
			snprintf(why, sizeof(why), "%s",
				 r.errbuf[0] ? r.errbuf : curl_easy_strerror(r.cc));
		}
		body_release(&r);
		if (!xfer_retry_next(&rt, &delay)) {
			/* The checker knows why a body was bad: it logs. */
			if (bad_body) {
				ret = -EBADMSG;
				goto out;
			}
			if (xfer_giveup_should_log(&f->last_giveup_ns,
						   f->conf.remote_timeout_ms))
				log_err("fetch: cannot get '%s': %s (gave up "
					"after %u tries in %.1f s)", url, why,
					rt.attempt, xfer_retry_elapsed(&rt));
			else
				log_debug(LOG_CAT_FETCH, "fetch: gave up on "
					  "'%s' too: %s", url, why);
			ret = -EIO;
			goto out;
		}
		log_debug(LOG_CAT_FETCH, "fetch: '%s': %s, retry %u in %llu ms",
			  url, why, rt.attempt, (unsigned long long)delay);
		if (xfer_nap(&f->lock, &f->cancel_cond, &f->cancel, delay)) {
			ret = -ECANCELED;
			goto out;
		}
	}
out:
	body_release(&r);
	bufpool_put(&f->bodies, r.mem);
	curl_slist_free_all(r.headers);
	pthread_cond_destroy(&r.cond);
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
