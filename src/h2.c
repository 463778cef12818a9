/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * HTTP/2 on an upgraded connection: the transport of PBS's reader
 * protocol.
 *
 * Session states (->state, under ->lock):
 *   DOWN --h2_get wants one--> CONNECTING --101 + h2 preface--> UP
 *   CONNECTING --refused or failed--> DOWN (->conn_err says why)
 *   UP --EOF, error, stall, cancel--> DOWN
 *   UP --GOAWAY--> UP with ->draining: no new streams; DOWN once the
 *                  streams in flight are done
 * Each UP gets a new ->gen.  ->prepared == ->gen once conf.prepare()
 * succeeded on it; only then may ordinary requests start.  A request
 * carries the generation it was admitted for and is failed with
 * -ESTALE, unsent, if the session changed: a chunk is never asked for on
 * a session that has not downloaded its index (PBS answers that with a
 * 401 after 3 s).
 *
 * Threads: the loop thread owns curl, the socket, the nghttp2 session
 * and the bodies of running requests.  Callers queue a request, wait on
 * its condition variable, and check the body and back off on their own
 * thread.  The first caller that finds an UP session unprepared runs
 * conf.prepare() on its thread (->preparing), the others wait.
 *
 * Queues, slots, tries and cancellation are the request engine's
 * (xfer.h); this file keeps the session and how a stream starts and
 * ends.
 *
 * Locking: the engine's ->x.lock guards the session state and every
 * request's status once done, besides the engine's own; never held
 * across network I/O, nghttp2 calls or a body check.  ->x.cond is
 * broadcast on every state change.  Lock order: ->x.lock only.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <nghttp2/nghttp2.h>

#include "h2.h"
#include "h2_i.h"
#include "log.h"
#include "tls.h"
#include "util.h"
#include "xfer.h"
#include "banned.h"

static void wake(void *arg)
{
	struct h2 *h = arg;
	uint64_t one = 1;

	if (write(h->evfd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the loop wakes anyway */
	}
}

/* ->lock held: a running request ends. */
void h2_finish_running(struct h2 *h, struct hreq *r, int err,
			   long status)
{
	r->status = status;
	xfer_end(&h->x, &r->x, err);
}

/* ---- the loop ---- */

static unsigned int slots(struct h2 *h)
{
	/* The engine's window within what the server allows (0: none). */
	return h->remote_max;
}

/* xfer_admit_fn: only on its own session, and only once that is
 * prepared unless it is part of preparing. */
static int admit(struct xfer_req *x, void *arg)
{
	struct hreq *r = container_of(x, struct hreq, x);
	struct h2 *h = arg;

	if (r->gen != h->gen)
		return -ESTALE;
	return !r->on_prepare && h->prepared != h->gen;
}

/* ->lock held: take the requests that may start now off the queues. */
static struct xfer_req *take_startable(struct h2 *h)
{
	if (h->state != H2_UP || h->draining)
		return NULL;
	return xfer_take(&h->x, slots(h), UINT_MAX, admit, h);
}

static void submit(struct h2 *h, struct hreq *r)
{
	char authority[300];
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"GET", 7, 3,
		  NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)":scheme", (uint8_t *)"https", 7, 5,
		  NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)":authority", (uint8_t *)authority, 10, 0,
		  NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)":path", (uint8_t *)r->path, 5, strlen(r->path),
		  NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"user-agent", (uint8_t *)"pbs-livemount/" PROG_VERSION,
		  10, strlen("pbs-livemount/" PROG_VERSION),
		  NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"content-type",
		  (uint8_t *)"application/x-www-form-urlencoded", 12, 33,
		  NGHTTP2_NV_FLAG_NONE },
	};
	int32_t sid;

	snprintf(authority, sizeof(authority), "%s:%u", h->conf.host,
		 h->conf.port);
	nv[2].valuelen = strlen(authority);
	r->status = 0;
	r->deadline = now_ns() + h->conf.request_timeout_ms * 1000000;
	sid = nghttp2_submit_request(h->ngs, NULL, nv, ARRAY_SIZE(nv), NULL, r);
	if (sid < 0) {
		pthread_mutex_lock(&h->x.lock);
		h2_finish_running(h, r, -EPROTO, 0);
		pthread_mutex_unlock(&h->x.lock);
		return;
	}
	r->sid = sid;
}

/* Send what nghttp2 has; false if the connection broke. */
static bool flush_out(struct h2 *h)
{
	for (;;) {
		const uint8_t *data;
		ssize_t n;

		while (h->out_off < h->out.len) {
			size_t sent = 0;
			CURLcode cc = curl_easy_send(h->easy,
						     h->out.data + h->out_off,
						     h->out.len - h->out_off,
						     &sent);

			if (cc == CURLE_AGAIN)
				return true;
			if (cc != CURLE_OK)
				return false;
			h->out_off += sent;
		}
		h->out.len = 0;
		h->out_off = 0;
		n = nghttp2_session_mem_send(h->ngs, &data);
		if (n < 0)
			return false;
		if (!n)
			return true;
		if (buf_append(&h->out, data, (size_t)n))
			return false;
	}
}

/* The --limit-rate bucket: how much may be read now (SIZE_MAX: any). */
static size_t rx_allowance(struct h2 *h, int *wait_ms)
{
	uint64_t now = now_ns();
	double rate = (double)h->conf.limit_rate;

	*wait_ms = -1;
	if (!h->conf.limit_rate)
		return SIZE_MAX;
	h->tokens += rate * (double)(now - h->tokens_ns) / 1e9;
	h->tokens_ns = now;
	if (h->tokens > rate)
		h->tokens = rate;
	if (h->tokens >= 1)
		return (size_t)h->tokens;
	*wait_ms = (int)((1 - h->tokens) * 1000 / rate) + 1;
	return 0;
}

/* Read what the socket has; false if the connection broke. */
static bool pump_in(struct h2 *h, uint8_t *tmp)
{
	for (;;) {
		int wait_ms;
		size_t allow = rx_allowance(h, &wait_ms);
		size_t n = 0;
		CURLcode cc;

		if (!allow)
			return true;
		cc = curl_easy_recv(h->easy, tmp, MIN(allow, RECV_BUF), &n);
		if (cc == CURLE_AGAIN)
			return true;
		if (cc != CURLE_OK || !n)
			return false;
		h->last_rx_ns = now_ns();
		if (h->conf.limit_rate)
			h->tokens -= (double)n;
		if (nghttp2_session_mem_recv(h->ngs, tmp, n) < 0)
			return false;
	}
}

/* Requests past their time are reset; true if the whole session stalls
 * (then the caller drops it rather than resetting streams). */
static bool check_timeouts(struct h2 *h, int *timeout_ms)
{
	uint64_t now = now_ns();
	uint64_t next = now + 1000000000ull;
	struct hreq *late[64];
	unsigned int nlate = 0;
	bool stalled;

	pthread_mutex_lock(&h->x.lock);
	for (struct xfer_req *x = h->x.running; x; x = x->run_next) {
		struct hreq *r = container_of(x, struct hreq, x);

		if (r->deadline <= now && nlate < ARRAY_SIZE(late))
			late[nlate++] = r;
		else if (r->deadline < next)
			next = r->deadline;
	}
	/* A request timed out and nothing at all came meanwhile: the
	 * connection is dead, not one stream slow. */
	stalled = nlate &&
		  now - h->last_rx_ns > h->conf.request_timeout_ms * 1000000;
	pthread_mutex_unlock(&h->x.lock);
	for (unsigned int i = 0; !stalled && i < nlate; i++) {
		struct hreq *r = late[i];

		/* One slow stream: reset it alone, the others go on. */
		nghttp2_session_set_stream_user_data(h->ngs, r->sid, NULL);
		nghttp2_submit_rst_stream(h->ngs, NGHTTP2_FLAG_NONE, r->sid,
					  NGHTTP2_CANCEL);
		pthread_mutex_lock(&h->x.lock);
		h2_finish_running(h, r, -ETIMEDOUT, 0);
		pthread_mutex_unlock(&h->x.lock);
	}
	*timeout_ms = (int)MIN((next - now) / 1000000 + 1, 1000);
	return stalled;
}

/* Loop thread, ->x.lock held: cancelled or stopping, the session goes
 * (a goodbye the server can log, one non-blocking flush). */
static void close_session(struct h2 *h)
{
	xfer_end_queued(&h->x, -ECANCELED);
	if (h->state != H2_UP)
		return;
	pthread_mutex_unlock(&h->x.lock);
	if (h->ngs) {
		nghttp2_session_terminate_session(h->ngs, NGHTTP2_NO_ERROR);
		flush_out(h);
	}
	h2_drop_session(h, "closed");
	pthread_mutex_lock(&h->x.lock);
}

/* Loop thread, ->x.lock not held (held on return): one connection
 * attempt, its outcome for the callers waiting in ensure_ready(). */
static void connect_once(struct h2 *h)
{
	bool retry;
	int ret = h2_do_connect(h, &retry);

	pthread_mutex_lock(&h->x.lock);
	h->attempts++;
	h->conn_err = ret ? (retry ? ret : -ret) : 0;
	if (!ret) {
		h->state = H2_UP;
		h->gen++;
		log_debug(LOG_CAT_FETCH, "h2: session %llu with '%s' up",
			  (unsigned long long)h->gen, h->conf.label);
	} else {
		h->state = H2_DOWN;
	}
	pthread_cond_broadcast(&h->x.cond);
}

/*
 * Loop thread, ->x.lock not held: move the session's bytes both ways
 * and set @pfd for the wait (*@timeout_ms lowered as needed); false if
 * the session was dropped.
 */
static bool pump_session(struct h2 *h, uint8_t *tmp, struct pollfd *pfd,
			 int *timeout_ms)
{
	bool broke = !flush_out(h) || !pump_in(h, tmp) || !flush_out(h);
	bool idle;
	int wait_ms;

	if (!broke && check_timeouts(h, timeout_ms))
		broke = true;
	pthread_mutex_lock(&h->x.lock);
	idle = h->draining && !h->x.nactive;
	pthread_mutex_unlock(&h->x.lock);
	if (broke || idle || (!nghttp2_session_want_read(h->ngs) &&
			      !nghttp2_session_want_write(h->ngs))) {
		h2_drop_session(h, broke ? "connection lost or stalled" :
			     "GOAWAY");
		return false;
	}
	pfd->fd = h->sock;
	pfd->events = h->out_off < h->out.len ? POLLOUT : 0;
	rx_allowance(h, &wait_ms);
	if (wait_ms < 0)
		pfd->events |= POLLIN;
	else
		*timeout_ms = MIN(*timeout_ms, wait_ms);
	return true;
}

static void *loop_main(void *arg)
{
	struct h2 *h = arg;
	uint8_t *tmp = malloc(RECV_BUF);

	thread_name("lm-h2");
	pthread_mutex_lock(&h->x.lock);
	while (tmp) {
		struct pollfd pfd[2];
		struct xfer_req *start;
		int timeout = 1000;
		nfds_t n = 1;

		if (h->x.cancel || (h->x.stop && !h->x.nactive)) {
			close_session(h);
			if (h->x.stop)
				break;
		}
		if (h->state == H2_DOWN && h->want_connect && !h->x.cancel) {
			h->state = H2_CONNECTING;
			h->want_connect = false;
			pthread_mutex_unlock(&h->x.lock);
			connect_once(h);
			continue;
		}
		start = take_startable(h);
		pthread_mutex_unlock(&h->x.lock);
		while (start) {
			struct hreq *r = container_of(start, struct hreq, x);

			start = start->next;
			submit(h, r);
		}
		if (h->ngs) {
			if (!pump_session(h, tmp, &pfd[1], &timeout)) {
				pthread_mutex_lock(&h->x.lock);
				continue;
			}
			n = 2;
		}
		pfd[0].fd = h->evfd;
		pfd[0].events = POLLIN;
		if (poll(pfd, n, timeout) > 0 && (pfd[0].revents & POLLIN)) {
			uint64_t v;

			if (read(h->evfd, &v, sizeof(v)) < 0) {
				/* nothing was there after all */
			}
		}
		pthread_mutex_lock(&h->x.lock);
	}
	pthread_mutex_unlock(&h->x.lock);
	free(tmp);
	return NULL;
}

/* ---- callers ---- */

/* Everything h2_new() made, the loop thread stopped. */
static void release(struct h2 *h)
{
	if (h->evfd >= 0)
		close(h->evfd);
	buf_release(&h->out);
	tls_pin_free(h->pin);
	xfer_release(&h->x);
	free((char *)h->conf.label);
	free((char *)h->conf.host);
	free((char *)h->conf.ca_file);
	free(h);
}

int h2_new(const struct h2_conf *conf, struct h2 **out)
{
	struct h2 *h;

	if (xfer_curl_init())
		return -EIO;
	h = xcalloc(1, sizeof(*h));
	h->conf = *conf;
	h->conf.label = xstrdup(conf->label ? conf->label : conf->host);
	h->conf.host = xstrdup(conf->host);
	h->conf.ca_file = conf->ca_file ? xstrdup(conf->ca_file) : NULL;
	h->conf.fingerprint = NULL;
	if (!h->conf.remote_timeout_ms)
		h->conf.remote_timeout_ms = XFER_REMOTE_TIMEOUT_MS;
	if (!h->conf.request_timeout_ms)
		h->conf.request_timeout_ms = XFER_REQUEST_TIMEOUT_MS;
	h->evfd = -1;
	xfer_init(&h->x, &(struct xfer_conf){
		.who = "h2", .from = h->conf.label,
		.remote_timeout_ms = h->conf.remote_timeout_ms,
		.slots = h->conf.streams, .body_pool = conf->body_pool,
		.wake = wake, .wake_arg = h });
	buf_init(&h->out, SIZE_MAX / 2);
	h->tokens_ns = now_ns();
	if (xfer_tls_pin("h2", conf->fingerprint, conf->host, conf->insecure,
			 &h->pin))
		goto err;
	h->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->evfd < 0 || pthread_create(&h->loop, NULL, loop_main, h))
		goto err;
	*out = h;
	return 0;
err:
	release(h);
	return -EINVAL;
}

void h2_free(struct h2 *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->x.lock);
	h->x.stop = true;
	pthread_mutex_unlock(&h->x.lock);
	wake(h);
	pthread_join(h->loop, NULL);
	release(h);
}

unsigned int h2_window(struct h2 *h)
{
	return xfer_window_now(&h->x);
}

void h2_cancel(struct h2 *h)
{
	xfer_cancel(&h->x);
}

unsigned int h2_remote_streams(struct h2 *h)
{
	unsigned int n;

	pthread_mutex_lock(&h->x.lock);
	n = h->remote_max;
	pthread_mutex_unlock(&h->x.lock);
	return n;
}

uint64_t h2_sessions(struct h2 *h)
{
	uint64_t n;

	pthread_mutex_lock(&h->x.lock);
	n = h->gen;
	pthread_mutex_unlock(&h->x.lock);
	return n;
}

/*
 * A ready session for an ordinary request: connect (by the loop) and
 * prepare (here) as needed.  0 with its generation; -errno of a failed
 * connect or prepare; *@final when retrying cannot help.
 */
static int ensure_ready(struct h2 *h, uint64_t *gen, bool *final)
{
	int ret = 0;

	*final = false;
	pthread_mutex_lock(&h->x.lock);
	for (;;) {
		if (h->x.cancel) {
			ret = -ECANCELED;
			break;
		}
		if (h->state == H2_UP && !h->draining &&
		    h->prepared == h->gen) {
			*gen = h->gen;
			break;
		}
		if (h->state == H2_UP && !h->draining && !h->preparing) {
			uint64_t g = h->gen;

			h->preparing = true;
			pthread_mutex_unlock(&h->x.lock);
			ret = h->conf.prepare ? h->conf.prepare(h->conf.arg, h, g) :
						0;
			pthread_mutex_lock(&h->x.lock);
			h->preparing = false;
			if (!ret && h->gen == g && h->state == H2_UP)
				h->prepared = g;
			pthread_cond_broadcast(&h->x.cond);
			if (ret == -ESTALE || !ret)
				continue;
			*final = ret != -EIO;
			break;
		}
		if (h->state == H2_DOWN) {
			uint64_t attempt = h->attempts;

			h->want_connect = true;
			pthread_mutex_unlock(&h->x.lock);
			wake(h);
			pthread_mutex_lock(&h->x.lock);
			while (h->attempts == attempt && !h->x.cancel)
				pthread_cond_wait(&h->x.cond, &h->x.lock);
			if (h->x.cancel || h->state == H2_UP)
				continue;
			/* conn_err > 0: refused for good. */
			ret = h->conn_err < 0 ? h->conn_err : -h->conn_err;
			*final = h->conn_err > 0;
			break;
		}
		/* Connecting, preparing elsewhere, or draining: wait. */
		pthread_cond_wait(&h->x.cond, &h->x.lock);
	}
	pthread_mutex_unlock(&h->x.lock);
	return ret;
}

/* One request on session @gen: queue, wait.  r->x.err / r->status say. */
static void run_once(struct h2 *h, struct hreq *r, uint64_t gen, size_t max)
{
	r->gen = gen;
	r->status = 0;
	xfer_wait(&h->x, &r->x, max);
}

int h2_get_on(struct h2 *h, uint64_t session, const char *path, size_t max,
	      uint8_t **buf, size_t *len)
{
	struct hreq r = { .h = h, .path = path, .on_prepare = true };
	char text[256];
	int ret;

	xfer_req_init(&h->x, &r.x, FETCH_DEMAND, false, max);
	run_once(h, &r, session, max);
	if (r.x.err) {
		ret = r.x.err == -ECANCELED || r.x.err == -EFBIG ? r.x.err :
								   -ESTALE;
	} else if (r.status >= 200 && r.status < 300) {
		ret = xfer_body(&r.x, NULL, NULL, buf, len);
	} else {
		ret = r.status == 404 ? -ENOENT : -EIO;
		h2_error_text(r.x.body.data, r.x.body.len, text, sizeof(text));
		if (ret != -ENOENT)
			log_err("h2: cannot get '%s' from '%s': HTTP %ld%s%s",
				path, h->conf.label, r.status,
				text[0] ? ": " : "", text);
	}
	xfer_req_release(&h->x, &r.x);
	return ret;
}

/* An HTTP error answer: for good, once again at once, or retried. */
static int http_error(struct hreq *r, uint64_t gen, char *why, size_t n)
{
	struct h2 *h = r->h;
	char text[200];

	h2_error_text(r->x.body.data, r->x.body.len, text, sizeof(text));
	if (r->status == 404)
		return -ENOENT;
	if (r->status == 401 && !r->refused_once) {
		/*
		 * Not registered on this session: its index is downloaded
		 * again, once (PBS-PROTOCOL 1.8 rule 7).
		 */
		r->refused_once = true;
		pthread_mutex_lock(&h->x.lock);
		if (h->gen == gen)
			h->prepared = 0;
		pthread_mutex_unlock(&h->x.lock);
		return XFER_AGAIN;
	}
	if (r->status == 401 || r->status == 403) {
		log_err("h2: cannot get '%s' from '%s': HTTP %ld%s%s", r->path,
			h->conf.label, r->status, text[0] ? ": " : "", text);
		return -EACCES;
	}
	snprintf(why, n, "HTTP %ld%s%s", r->status, text[0] ? ": " : "", text);
	return XFER_RETRY;
}

/* One try (xfer_try_fn). */
static int try_once(void *arg, struct xfer_retry *rt, char *why, size_t n)
{
	struct hreq *r = arg;
	struct h2 *h = r->h;
	uint64_t gen = 0;
	bool final;
	int ret;

	ret = ensure_ready(h, &gen, &final);
	if (ret == -ECANCELED || final)
		return ret;
	if (ret) {
		snprintf(why, n, "no session (%s)", strerror(-ret));
		return XFER_RETRY;
	}
	run_once(h, r, gen, r->max);
	if (r->x.err == -ECANCELED)
		return -ECANCELED;
	if (r->x.err == -ESTALE) {
		/* The session changed before it was sent: at once. */
		rt->attempt--;
		return XFER_AGAIN;
	}
	if (r->x.err) {
		snprintf(why, n, "%s", r->x.err == -EFBIG ?
			 "body over its size limit" : strerror(-r->x.err));
		return XFER_RETRY;
	}
	if (r->status >= 200 && r->status < 300) {
		snprintf(why, n, "body failed verification");
		return xfer_body(&r->x, r->check, r->check_arg, r->buf, r->len);
	}
	return http_error(r, gen, why, n);
}

int h2_get(struct h2 *h, const char *path, enum fetch_prio prio, size_t max,
	   fetch_check_fn check, void *arg, uint8_t **buf, size_t *len)
{
	struct hreq r = {
		.h = h, .path = path, .max = max, .check = check,
		.check_arg = arg, .buf = buf, .len = len,
	};
	int ret;

	/* A body the check drops: a spare buffer. */
	xfer_req_init(&h->x, &r.x, prio, check, max);
	ret = xfer_run(&h->x, &r.x, try_once, &r, path);
	xfer_req_release(&h->x, &r.x);
	return ret;
}
