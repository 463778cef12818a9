/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One connection of h2 (loop thread only): TCP and TLS by libcurl
 * (CONNECT_ONLY, no ALPN), the HTTP/1.1 upgrade request written and
 * its answer read here, then the nghttp2 session on the same stream
 * and its callbacks.  See the top of h2.c.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
void h2_error_text(const uint8_t *p, size_t n, char *out, size_t len)
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
	h2_error_text(in.data + head, in.len - head, text, sizeof(text));
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
	h2_finish_running(h, r, err, err ? 0 : r->status);
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
void h2_drop_session(struct h2 *h, const char *why)
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
		h2_finish_running(h, container_of(h->x.running, struct hreq, x),
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

int h2_do_connect(struct h2 *h, bool *retry)
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

