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
#include "log.h"
#include "tls.h"
#include "util.h"
#include "xfer.h"
#include "banned.h"

#define HEAD_MAX (64u << 10)
#define WINDOW ((1u << 31) - 2)
#define FRAME_MAX (4u << 20)
#define RECV_BUF (256u << 10)

enum h2_state {
	H2_DOWN,
	H2_CONNECTING,
	H2_UP,
};

struct hreq {
	struct xfer_req x;		/* the engine's part */
	struct h2 *h;			/* immutable */
	const char *path;		/* borrowed from the caller */
	size_t max;			/* immutable: longer bodies fail */
	uint64_t gen;			/* the session it may go on */
	bool on_prepare;		/* may go before ->prepared */
	int32_t sid;			/* loop thread */
	uint64_t deadline;		/* loop thread: now_ns() bound */
	long status;			/* protected by ->x.lock once done */
	bool refused_once;		/* caller: a 401 retried */
	fetch_check_fn check;		/* caller */
	void *check_arg;		/* caller */
	uint8_t **buf;			/* caller */
	size_t *len;			/* caller */
};

struct h2 {
	struct h2_conf conf;		/* immutable; strings owned */
	struct tls_pin *pin;		/* immutable; NULL without a pin */
	pthread_t loop;
	int evfd;			/* immutable: wakes the loop */
	struct xfer_engine x;		/* queues, slots, tries; ->x.lock
					   guards the fields below it */
	enum h2_state state;		/* protected by ->lock */
	uint64_t gen;			/* protected by ->lock */
	uint64_t prepared;		/* protected by ->lock */
	bool preparing;			/* protected by ->lock */
	bool draining;			/* protected by ->lock: GOAWAY */
	bool want_connect;		/* protected by ->lock */
	uint64_t attempts;		/* protected by ->lock: connects done */
	int conn_err;			/* protected by ->lock: last attempt */
	unsigned int remote_max;	/* protected by ->lock */
	/* Loop thread only: */
	CURL *easy;
	curl_socket_t sock;
	nghttp2_session *ngs;
	struct buf out;			/* bytes nghttp2 gave, not yet sent */
	size_t out_off;
	uint64_t last_rx_ns;
	double tokens;			/* --limit-rate bucket, bytes */
	uint64_t tokens_ns;
	char errbuf[CURL_ERROR_SIZE];
};

static void wake(void *arg)
{
	struct h2 *h = arg;
	uint64_t one = 1;

	if (write(h->evfd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the loop wakes anyway */
	}
}

/* ->lock held: a running request ends. */
static void finish_running(struct h2 *h, struct hreq *r, int err,
			   long status)
{
	r->status = status;
	xfer_end(&h->x, &r->x, err);
}

/* ---- the connection (loop thread) ---- */

static int xferinfo_cb(void *arg, curl_off_t a, curl_off_t b, curl_off_t c,
		       curl_off_t d)
{
	struct h2 *h = arg;
	bool cancel;

	(void)a;
	(void)b;
	(void)c;
	(void)d;
	pthread_mutex_lock(&h->x.lock);
	cancel = h->x.cancel || h->x.stop;
	pthread_mutex_unlock(&h->x.lock);
	return cancel;
}

/* Wait until the socket is ready for @events or @deadline; 0, -ETIMEDOUT,
 * -ECANCELED. */
static int wait_sock(struct h2 *h, short events, uint64_t deadline)
{
	struct pollfd pfd = { .fd = h->sock, .events = events };
	uint64_t now;

	for (;;) {
		if (xferinfo_cb(h, 0, 0, 0, 0))
			return -ECANCELED;
		now = now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)MIN((deadline - now) / 1000000 + 1,
					   200)) > 0)
			return 0;
	}
}

static int send_all(struct h2 *h, const uint8_t *p, size_t len,
		    uint64_t deadline)
{
	while (len) {
		size_t n = 0;
		CURLcode cc = curl_easy_send(h->easy, p, len, &n);

		if (cc == CURLE_AGAIN) {
			int ret = wait_sock(h, POLLOUT, deadline);

			if (ret)
				return ret;
			continue;
		}
		if (cc != CURLE_OK)
			return -EPIPE;
		p += n;
		len -= n;
	}
	return 0;
}

/* Append what the socket has (waiting for some) to @b. */
static int recv_some(struct h2 *h, struct buf *b, uint64_t deadline)
{
	uint8_t tmp[16384];
	size_t n = 0;
	CURLcode cc;
	int ret;

	for (;;) {
		cc = curl_easy_recv(h->easy, tmp, sizeof(tmp), &n);
		if (cc == CURLE_AGAIN) {
			ret = wait_sock(h, POLLIN, deadline);
			if (ret)
				return ret;
			continue;
		}
		if (cc != CURLE_OK)
			return -EPIPE;
		if (!n)
			return -ECONNRESET;
		return buf_append(b, tmp, n) ? -EFBIG : 0;
	}
}

/* The first line of an error body, for a one-line message. */
static void error_text(const uint8_t *p, size_t n, char *out, size_t len)
{
	size_t i = 0;

	for (; i < n && i + 1 < len && p[i] != '\n' && p[i] != '\r'; i++)
		out[i] = p[i] >= ' ' && p[i] < 0x7f ? (char)p[i] : '?';
	out[i] = '\0';
}

int h2_parse_head(const uint8_t *p, size_t len, long *status, size_t *clen,
		  size_t *headlen)
{
	const uint8_t *end = memmem(p, len, "\r\n\r\n", 4);
	const uint8_t *line;
	long st = 0;
	size_t n;

	*clen = 0;
	if (!end)
		return len >= HEAD_MAX ? -EBADMSG : -EAGAIN;
	n = (size_t)(end - p) + 4;
	if (n < 12 || memcmp(p, "HTTP/1.", 7) || p[8] != ' ')
		return -EBADMSG;
	for (int i = 9; i < 12; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -EBADMSG;
		st = st * 10 + (p[i] - '0');
	}
	for (line = p; line < end;) {
		const uint8_t *nl = memchr(line, '\n', (size_t)(end - line));

		line = nl ? nl + 1 : end;
		if ((size_t)(end - line) > 15 &&
		    !strncasecmp((const char *)line, "content-length:", 15)) {
			const uint8_t *d = line + 15;
			size_t v = 0;

			while (d < end && *d == ' ')
				d++;
			for (; d < end && *d >= '0' && *d <= '9'; d++) {
				if (v > HEAD_MAX)
					break;	/* capped by the caller anyway */
				v = v * 10 + (size_t)(*d - '0');
			}
			*clen = v;
		}
	}
	*status = st;
	*headlen = n;
	return 0;
}

/* The upgrade was refused with @status: the errno and whether to retry. */
static int refusal_errno(long status, const char *text, bool *retry)
{
	*retry = status >= 500 || status == 408 || status == 429;
	if (status == 401 || status == 403 || strstr(text, "no permissions") ||
	    strstr(text, "owner check"))
		return -EACCES;
	return -EIO;
}

/*
 * The HTTP/1.1 upgrade on the new connection.  Bytes that follow the
 * 101's head (the server's HTTP/2 preface may share a TLS record with
 * it) are left in *@rest for nghttp2.
 */
static int do_upgrade(struct h2 *h, struct buf *rest, bool *retry)
{
	uint64_t deadline = now_ns() + h->conf.request_timeout_ms * 1000000;
	struct buf req;
	struct buf in;
	char text[256];
	size_t head = 0;
	long status = 0;
	size_t clen = 0;
	int ret;

	*retry = true;
	buf_init(&req, 1 << 16);
	buf_init(&in, HEAD_MAX + (1 << 16));
	ret = h->conf.upgrade(h->conf.arg, &req);
	if (ret) {
		*retry = false;
		goto out;
	}
	ret = send_all(h, req.data, req.len, deadline);
	if (ret)
		goto out;
	for (;;) {
		ret = in.len ? h2_parse_head(in.data, in.len, &status, &clen,
					     &head) : -EAGAIN;
		if (ret != -EAGAIN)
			break;
		ret = recv_some(h, &in, deadline);
		if (ret)
			goto out;
	}
	if (ret) {
		log_err("h2: cannot open a session with '%s': the answer to "
			"the upgrade is not HTTP/1.1", h->conf.label);
		goto out;
	}
	if (status == 101) {
		ret = buf_append(rest, in.data + head, in.len - head);
		goto out;
	}
	/* Refused: the body is the server's reason, in plain text. */
	clen = MIN(clen, (size_t)(1 << 16));
	while (in.len - head < clen && !recv_some(h, &in, deadline))
		;
	error_text(in.data + head, in.len - head, text, sizeof(text));
	ret = refusal_errno(status, text, retry);
	log_err("h2: cannot open a session with '%s': HTTP %ld%s%s",
		h->conf.label, status, text[0] ? ": " : "", text);
	/* Said why: -EACCES, or -EREMOTEIO ("logged"), or retried. */
	if (!*retry && ret != -EACCES)
		ret = -EREMOTEIO;
out:
	buf_release(&req);
	buf_release(&in);
	return ret;
}

/* ---- nghttp2 callbacks (loop thread) ---- */

static ssize_t ng_send_cb(nghttp2_session *s, const uint8_t *data,
			  size_t len, int flags, void *arg)
{
	(void)s;
	(void)flags;
	(void)data;
	(void)arg;
	(void)len;
	return NGHTTP2_ERR_CALLBACK_FAILURE;	/* mem_send only */
}

static int ng_header_cb(nghttp2_session *s, const nghttp2_frame *frame,
			const uint8_t *name, size_t namelen,
			const uint8_t *value, size_t valuelen, uint8_t flags,
			void *arg)
{
	struct hreq *r;
	char v[8];

	(void)flags;
	(void)arg;
	if (frame->hd.type != NGHTTP2_HEADERS || namelen != 7 ||
	    memcmp(name, ":status", 7))
		return 0;
	r = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
	if (!r || valuelen >= sizeof(v))
		return 0;
	memcpy(v, value, valuelen);
	v[valuelen] = '\0';
	r->status = strtol(v, NULL, 10);
	return 0;
}

static int ng_data_cb(nghttp2_session *s, uint8_t flags, int32_t sid,
		      const uint8_t *data, size_t len, void *arg)
{
	struct hreq *r = nghttp2_session_get_stream_user_data(s, sid);

	(void)flags;
	(void)arg;
	if (!r)
		return 0;
	if (buf_append(&r->x.body, data, len)) {
		/* Over its cap: corrupt; the close callback reports it. */
		r->status = -1;
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, sid,
					  NGHTTP2_CANCEL);
	}
	return 0;
}

static int ng_close_cb(nghttp2_session *s, int32_t sid, uint32_t code,
		       void *arg)
{
	struct h2 *h = arg;
	struct hreq *r = nghttp2_session_get_stream_user_data(s, sid);
	int err = 0;

	if (!r)
		return 0;
	nghttp2_session_set_stream_user_data(s, sid, NULL);
	if (r->status == -1)
		err = -EFBIG;
	else if (code != NGHTTP2_NO_ERROR || !r->status)
		err = code == NGHTTP2_REFUSED_STREAM ? -ESTALE : -ECONNRESET;
	pthread_mutex_lock(&h->x.lock);
	finish_running(h, r, err, err ? 0 : r->status);
	pthread_mutex_unlock(&h->x.lock);
	return 0;
}

static int ng_frame_cb(nghttp2_session *s, const nghttp2_frame *frame,
		       void *arg)
{
	struct h2 *h = arg;

	if (frame->hd.type == NGHTTP2_SETTINGS &&
	    !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
		uint32_t m = nghttp2_session_get_remote_settings(
			s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);

		pthread_mutex_lock(&h->x.lock);
		h->remote_max = m;
		pthread_mutex_unlock(&h->x.lock);
	} else if (frame->hd.type == NGHTTP2_GOAWAY) {
		log_debug(LOG_CAT_FETCH, "h2: '%s' sent GOAWAY (error %u): "
			  "draining the session", h->conf.label,
			  frame->goaway.error_code);
		pthread_mutex_lock(&h->x.lock);
		h->draining = true;
		pthread_mutex_unlock(&h->x.lock);
	}
	return 0;
}

/* The connection and its HTTP/2 session, gone.  Loop thread. */
static void close_conn(struct h2 *h)
{
	if (h->ngs) {
		nghttp2_session_del(h->ngs);
		h->ngs = NULL;
	}
	if (h->easy) {
		curl_easy_cleanup(h->easy);
		h->easy = NULL;
	}
}

/* Drop the session: running requests fail (retryably), queued ones of
 * this generation too.  Loop thread, ->lock not held. */
static void drop_session(struct h2 *h, const char *why)
{
	close_conn(h);
	buf_release(&h->out);
	h->out_off = 0;
	pthread_mutex_lock(&h->x.lock);
	if (h->state == H2_UP && why)
		log_debug(LOG_CAT_FETCH, "h2: session %llu with '%s' ended: "
			  "%s", (unsigned long long)h->gen, h->conf.label,
			  why);
	while (h->x.running)
		finish_running(h, container_of(h->x.running, struct hreq, x),
			       -ECONNRESET, 0);
	xfer_end_queued(&h->x, -ESTALE);
	h->state = H2_DOWN;
	h->draining = false;
	h->prepared = 0;
	h->remote_max = 0;
	pthread_cond_broadcast(&h->x.cond);
	pthread_mutex_unlock(&h->x.lock);
}

static int start_ngs(struct h2 *h, const struct buf *rest)
{
	nghttp2_session_callbacks *cb;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW },
		{ NGHTTP2_SETTINGS_MAX_FRAME_SIZE, FRAME_MAX },
	};
	ssize_t n;

	if (nghttp2_session_callbacks_new(&cb))
		return -ENOMEM;
	nghttp2_session_callbacks_set_send_callback(cb, ng_send_cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, ng_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb,
								  ng_data_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb,
							       ng_close_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, ng_frame_cb);
	n = nghttp2_session_client_new(&h->ngs, cb, h);
	nghttp2_session_callbacks_del(cb);
	if (n)
		return -ENOMEM;
	if (nghttp2_submit_settings(h->ngs, NGHTTP2_FLAG_NONE, iv,
				    ARRAY_SIZE(iv)) ||
	    nghttp2_session_set_local_window_size(h->ngs, NGHTTP2_FLAG_NONE, 0,
						  WINDOW))
		return -EPROTO;
	if (rest->len) {
		n = nghttp2_session_mem_recv(h->ngs, rest->data, rest->len);
		if (n < 0)
			return -EPROTO;
	}
	return 0;
}

/* TCP, TLS, upgrade, HTTP/2.  Loop thread, ->lock not held. */
/* ->easy set up to connect (TCP and TLS only) to the server. */
static void setup_easy(struct h2 *h)
{
	char url[320];

	snprintf(url, sizeof(url), strchr(h->conf.host, ':') ?
		 "https://[%s]:%u/" : "https://%s:%u/", h->conf.host,
		 h->conf.port);
	curl_easy_setopt(h->easy, CURLOPT_URL, url);
	curl_easy_setopt(h->easy, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(h->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h->easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h->easy, CURLOPT_TCP_KEEPIDLE, 120L);
	/* The upgrade needs HTTP/1.1: no ALPN offer of h2. */
	curl_easy_setopt(h->easy, CURLOPT_SSL_ENABLE_ALPN, 0L);
	curl_easy_setopt(h->easy, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)MIN(h->conf.request_timeout_ms, 10000));
	curl_easy_setopt(h->easy, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(h->easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h->easy, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
	curl_easy_setopt(h->easy, CURLOPT_XFERINFODATA, h);
	xfer_setup_tls(h->easy, h->conf.ca_file, h->conf.insecure, h->pin);
	h->errbuf[0] = '\0';
}

static int do_connect(struct h2 *h, bool *retry)
{
	struct buf rest;
	curl_socket_t sock = CURL_SOCKET_BAD;
	CURLcode cc;
	int ret;

	*retry = true;
	buf_init(&rest, HEAD_MAX + (1 << 16));
	h->easy = curl_easy_init();
	if (!h->easy) {
		ret = -ENOMEM;
		goto err;
	}
	setup_easy(h);
	cc = curl_easy_perform(h->easy);
	if (cc == CURLE_ABORTED_BY_CALLBACK) {
		ret = -ECANCELED;
		goto err;
	}
	if (cc == CURLE_PEER_FAILED_VERIFICATION ||
	    cc == CURLE_SSL_CACERT_BADFILE) {
		*retry = false;
		ret = xfer_tls_refused("h2", h->conf.label, h->pin,
				       h->errbuf[0] ? h->errbuf :
				       curl_easy_strerror(cc));
		goto err;
	}
	if (cc != CURLE_OK) {
		log_debug(LOG_CAT_FETCH, "h2: cannot connect to '%s': %s",
			  h->conf.label, h->errbuf[0] ? h->errbuf :
			  curl_easy_strerror(cc));
		ret = -EIO;
		goto err;
	}
	if (curl_easy_getinfo(h->easy, CURLINFO_ACTIVESOCKET, &sock) ||
	    sock == CURL_SOCKET_BAD) {
		ret = -EIO;
		goto err;
	}
	h->sock = sock;
	ret = do_upgrade(h, &rest, retry);
	if (ret)
		goto err;
	ret = start_ngs(h, &rest);
	if (ret)
		goto err;
	buf_release(&rest);
	h->last_rx_ns = now_ns();
	return 0;
err:
	buf_release(&rest);
	close_conn(h);
	return ret;
}

/* ---- the loop ---- */

static unsigned int slots(struct h2 *h)
{
	unsigned int n = h->conf.streams;

	if (h->remote_max && h->remote_max < n)
		n = h->remote_max;
	return n ? n : 1;
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
	return xfer_take(&h->x, slots(h), admit, h);
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
		finish_running(h, r, -EPROTO, 0);
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
		finish_running(h, r, -ETIMEDOUT, 0);
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
	drop_session(h, "closed");
	pthread_mutex_lock(&h->x.lock);
}

/* Loop thread, ->x.lock not held (held on return): one connection
 * attempt, its outcome for the callers waiting in ensure_ready(). */
static void connect_once(struct h2 *h)
{
	bool retry;
	int ret = do_connect(h, &retry);

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
		drop_session(h, broke ? "connection lost or stalled" :
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
	if (!h->conf.streams)
		h->conf.streams = XFER_SLOTS;
	if (!h->conf.remote_timeout_ms)
		h->conf.remote_timeout_ms = XFER_REMOTE_TIMEOUT_MS;
	if (!h->conf.request_timeout_ms)
		h->conf.request_timeout_ms = XFER_REQUEST_TIMEOUT_MS;
	h->evfd = -1;
	xfer_init(&h->x, &(struct xfer_conf){
		.who = "h2", .from = h->conf.label,
		.remote_timeout_ms = h->conf.remote_timeout_ms,
		.body_pool = conf->body_pool,
		.spare = MIN(h->conf.streams, 8), .wake = wake, .wake_arg = h });
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
		error_text(r.x.body.data, r.x.body.len, text, sizeof(text));
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

	error_text(r->x.body.data, r->x.body.len, text, sizeof(text));
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
