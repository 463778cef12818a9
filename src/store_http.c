/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A datastore tree served over http(s) by any web server (FORMATS.md
 * section 6 layout under a base URL).  Chunks are GET
 * <base>/.chunks/XXXX/<digest>; an empty body counts as missing, like an
 * evicted S3-cache chunk.  Listing needs JSON directory indexes (nginx
 * "autoindex_format json").  All transfers go through the fetch engine;
 * this file holds only immutable state, so any thread may call in.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "fetch.h"
#include "jsonx.h"
#include "log.h"
#include "snap.h"
#include "store.h"
#include "store_backend.h"
#include "util.h"
#include "banned.h"

#define LIST_MAX (16u << 20)

struct store_http {
	struct store base;
	char *url;		/* immutable: base, no trailing '/' */
	struct fetch *fetch;	/* immutable pointer */
};

static struct store_http *to_http(struct store *s)
{
	return container_of(s, struct store_http, base);
}

static int http_get_file(struct store *s, const char *path, size_t max,
			 uint8_t **buf, size_t *len)
{
	char *url = xasprintf("%s/%s", to_http(s)->url, path);
	int ret;

	ret = fetch_get(to_http(s)->fetch, url, FETCH_DEMAND, max, NULL, NULL,
			buf, len);
	free(url);
	return ret;
}

static int http_get_chunk(struct store *s, const uint8_t digest[32],
			  enum store_prio prio, store_check_fn check, void *arg)
{
	struct store_chunk_check cc = { check, arg };
	char rel[80];
	char *url;
	int ret;

	snap_chunk_path(digest, rel);
	url = xasprintf("%s/%s", to_http(s)->url, rel);
	ret = fetch_get(to_http(s)->fetch, url, store_fetch_prio(prio),
			STORE_CHUNK_MAX, store_chunk_check_cb, &cc, NULL, NULL);
	free(url);
	return ret;
}

int store_http_parse_listing(const char *body, size_t len, char ***names,
			     size_t *n)
{
	size_t bad_at;
	json_object *root = jsonx_parse(body, len, &bad_at);
	char **v = NULL;
	size_t cnt = 0;
	int ret = 0;

	if (!root || !json_object_is_type(root, json_type_array)) {
		ret = -ENOTSUP;		/* not a JSON listing */
		goto out;
	}
	v = xcalloc(json_object_array_length(root) + 1, sizeof(*v));
	for (size_t i = 0; i < json_object_array_length(root); i++) {
		json_object *e = json_object_array_get_idx(root, i);
		json_object *name;
		const char *s;

		if (!json_object_object_get_ex(e, "name", &name) ||
		    !json_object_is_type(name, json_type_string))
			continue;
		s = json_object_get_string(name);
		/* An entry name, never a path: the caller joins it. */
		if (!*s || !strcmp(s, ".") || !strcmp(s, "..") ||
		    strchr(s, '/') ||
		    strlen(s) != (size_t)json_object_get_string_len(name))
			continue;
		v[cnt++] = xstrdup(s);
	}
	*names = v;
	*n = cnt;
out:
	json_object_put(root);
	return ret;
}

static int http_list(struct store *s, const char *path, char ***names,
		     size_t *n)
{
	uint8_t *body = NULL;
	size_t len = 0;
	char *url;
	int ret;

	url = xasprintf("%s/%s/", to_http(s)->url, path);
	ret = fetch_get(to_http(s)->fetch, url, FETCH_DEMAND, LIST_MAX, NULL,
			NULL, &body, &len);
	if (!ret)
		ret = store_http_parse_listing((const char *)body, len, names, n);
	free(body);
	free(url);
	return ret;
}

static void http_close(struct store *s)
{
	struct store_http *h = to_http(s);

	fetch_free(h->fetch);
	free(h->url);
	free(h);
}

static void http_cancel(struct store *s)
{
	fetch_cancel(to_http(s)->fetch);
}

static unsigned int http_window(struct store *s)
{
	return fetch_window(to_http(s)->fetch);
}

static const struct store_ops http_ops = {
	.name = "http",
	.get_file = http_get_file,
	.get_chunk = http_get_chunk,
	.list = http_list,
	.cancel = http_cancel,
	.window = http_window,
	.close = http_close,
};

static bool http_claims(const char *url, enum store_kind kind)
{
	(void)kind;
	return !strncmp(url, "http://", 7) || !strncmp(url, "https://", 8);
}

static int http_open(const struct store_conf *conf, struct store **out)
{
	struct fetch_conf fc = { .auth_header = conf->auth_header };
	struct store_http *h;
	char host[256];
	size_t len;
	int ret;

	store_fetch_conf(conf, &fc);
	if (!url_host(conf->url, host, sizeof(host)))
		fc.host = host;
	h = xcalloc(1, sizeof(*h));
	h->url = xstrdup(conf->url);
	len = strlen(h->url);
	while (len > 8 && h->url[len - 1] == '/')
		h->url[--len] = '\0';
	ret = fetch_new(&fc, &h->fetch);
	if (ret) {
		free(h->url);
		free(h);
		return ret;
	}
	h->base.ops = &http_ops;
	h->base.where = h->url;
	*out = &h->base;
	return 0;
}

const struct store_backend store_http_backend = {
	.name = "http",
	.claims = http_claims,
	.open = http_open,
};
