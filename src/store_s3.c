/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A PBS 4 S3 datastore in a bucket (PBS-PROTOCOL.md section 3): REPO
 * s3://BUCKET/DATASTORE, the datastore name being the key prefix, as
 * PBS lays it out:
 *   chunks          DATASTORE/.chunks/<4 hex>/<64 hex>
 *   snapshot files  DATASTORE/.cnt/[ns/<a>/...]<type>/<id>/<time>/<file>
 * Requests go through fetch.c, signed by libcurl (CURLOPT_AWS_SIGV4)
 * with x-amz-content-sha256; no signer of our own.  Query parameters are
 * written sorted and percent-encoded, and object keys encoded per
 * segment, so that what libcurl signs is what S3 checks.
 *
 * Listing is ListObjectsV2 with continuation tokens; a snapshot counts
 * only once its index.json.blob exists (PBS uploads it last).  Direct
 * bucket reads take no lock: a prune and garbage collection on the PBS
 * host can remove chunks of a mounted snapshot, so a missing chunk says
 * so.  put() writes with If-None-Match: * when asked (chunks: dedup) for
 * pack.
 *
 * Immutable after open; any thread.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "fetch.h"
#include "log.h"
#include "snap.h"
#include "store.h"
#include "store_backend.h"
#include "util.h"
#include "banned.h"

#define LIST_MAX (16u << 20)
#define EMPTY_SHA256 \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct store_s3 {
	struct store base;
	char *base_url;		/* immutable: ".../BUCKET" or "https://BUCKET.host" */
	char *bucket;		/* immutable */
	char *prefix;		/* immutable: the datastore name */
	char *label;		/* immutable: "s3://BUCKET/DATASTORE" */
	char *key_id;		/* immutable: for messages (not secret) */
	struct fetch *fetch;	/* immutable pointer */
};

static struct store_s3 *to_s3(struct store *s)
{
	return container_of(s, struct store_s3, base);
}

/* RFC 3986 percent-encoding; '/' kept when @slash. */
static void enc(struct buf *b, const char *s, bool slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char e[3];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
		    c == '~' || (slash && c == '/')) {
			buf_append(b, s, 1);
		} else {
			e[0] = '%';
			e[1] = hex[c >> 4];
			e[2] = hex[c & 15];
			buf_append(b, e, 3);
		}
	}
}

/* The object key of a store path: chunks as they are, the rest in .cnt. */
static char *object_key(struct store_s3 *s3, const char *path)
{
	if (!strncmp(path, ".chunks/", 8))
		return xasprintf("%s/%s", s3->prefix, path);
	return xasprintf("%s/.cnt/%s", s3->prefix, path);
}

static char *object_url(struct store_s3 *s3, const char *key)
{
	struct buf b;

	buf_init(&b, SIZE_MAX / 2);
	buf_append(&b, s3->base_url, strlen(s3->base_url));
	buf_append(&b, "/", 1);
	enc(&b, key, true);
	return (char *)buf_steal(&b, NULL);
}

/* The S3 error code of an XML error body, for messages. */
static void error_code(const uint8_t *body, size_t len, char *out,
		       size_t outlen)
{
	const char *p = body ? memmem(body, len, "<Code>", 6) : NULL;
	size_t n = 0;

	out[0] = '\0';
	if (!p)
		return;
	p += 6;
	while ((const uint8_t *)p + n < body + len && p[n] != '<' &&
	       n + 1 < outlen && p[n] >= ' ')
		n++;
	memcpy(out, p, n);
	out[n] = '\0';
}

/*
 * One signed request.  0 with the body (GET/PUT); -ENOENT (404), -EEXIST
 * (412: If-None-Match), -EACCES (403, logged naming the key id), or
 * fetch's errors.
 */
static int s3_request(struct store_s3 *s3, const char *method,
		      const char *url, const void *body, size_t len,
		      bool if_absent, enum fetch_prio prio, size_t max,
		      fetch_check_fn check, void *arg, struct fetch_response *resp)
{
	char hash[65] = EMPTY_SHA256;
	char shahdr[96];
	const char *hdrs[4];
	struct fetch_request rq = {
		.url = url,
		.method = method,
		.headers = hdrs,
		.body = body,
		.body_len = len,
		.prio = prio,
		.max = max,
		.error_body = true,
	};
	char code[64];
	int n = 0;
	int ret;

	if (body) {
		uint8_t d[32];

		crypto_sha256(body, len, d);
		hex_encode(d, 32, hash);
	}
	snprintf(shahdr, sizeof(shahdr), "x-amz-content-sha256: %s", hash);
	hdrs[n++] = shahdr;
	if (body)
		hdrs[n++] = "Content-Type: application/octet-stream";
	if (if_absent)
		hdrs[n++] = "If-None-Match: *";
	hdrs[n] = NULL;
	ret = fetch_request(s3->fetch, &rq, check, arg, resp);
	if (ret == -ENOENT || (ret && resp->status == 404)) {
		ret = -ENOENT;
	} else if (resp->status == 412) {
		ret = -EEXIST;
	} else if (ret == -EACCES && resp->status) {
		error_code(resp->body, resp->len, code, sizeof(code));
		log_err("s3: cannot %s '%s': HTTP %ld %s (check the credentials "
			"of access key '%s' and its rights on bucket '%s')",
			method ? "write" : "read", url, resp->status,
			code[0] ? code : "Forbidden", s3->key_id, s3->bucket);
	} else if (ret && resp->status && resp->status != 200) {
		error_code(resp->body, resp->len, code, sizeof(code));
		log_err("s3: cannot %s '%s': HTTP %ld %s", method ? "write" :
			"read", url, resp->status, code[0] ? code : "");
		ret = -EREMOTEIO;
	}
	return ret;
}

static int s3_get_file(struct store *s, const char *path, size_t max,
		       uint8_t **buf, size_t *len)
{
	struct store_s3 *s3 = to_s3(s);
	struct fetch_response resp;
	char *key = object_key(s3, path);
	char *url = object_url(s3, key);
	int ret;

	ret = s3_request(s3, NULL, url, NULL, 0, false, FETCH_DEMAND, max, NULL,
			 NULL, &resp);
	if (!ret) {
		*buf = resp.body;
		*len = resp.len;
		resp.body = NULL;
	}
	free(resp.body);
	free(url);
	free(key);
	return ret;
}

static int s3_get_chunk(struct store *s, const uint8_t digest[32],
			enum store_prio prio, store_check_fn check, void *arg)
{
	static struct log_ratelimit rl = LOG_RATELIMIT_INIT(10, 3);
	struct store_s3 *s3 = to_s3(s);
	struct store_chunk_check cc = { check, arg };
	struct fetch_response resp;
	char rel[80];
	char *key;
	char *url;
	int ret;

	snap_chunk_path(digest, rel);
	key = object_key(s3, rel);
	url = object_url(s3, key);
	ret = s3_request(s3, NULL, url, NULL, 0, false, store_fetch_prio(prio),
			 STORE_CHUNK_MAX, store_chunk_check_cb, &cc, &resp);
	if (ret == -ENOENT && log_ratelimit(&rl)) {
		log_err("s3: chunk '%s' is missing from '%s': the snapshot may "
			"have been pruned and garbage-collected since (reads "
			"from the bucket take no lock on the PBS host; protect "
			"the snapshot while it is mounted)", key, s3->label);
		ret = -EREMOTEIO;
	}
	free(resp.body);
	free(url);
	free(key);
	return ret;
}

/* ---- ListObjectsV2 ---- */

/* Decode XML character data in place (the five entities, &#N;). */
static void xml_unescape(char *s)
{
	static const struct {
		const char *ent;
		char c;
	} ents[] = {
		{ "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
		{ "&quot;", '"' }, { "&apos;", '\'' },
	};
	char *o = s;

	while (*s) {
		size_t i;

		if (*s != '&') {
			*o++ = *s++;
			continue;
		}
		for (i = 0; i < ARRAY_SIZE(ents); i++) {
			size_t l = strlen(ents[i].ent);

			if (!strncmp(s, ents[i].ent, l)) {
				*o++ = ents[i].c;
				s += l;
				break;
			}
		}
		if (i < ARRAY_SIZE(ents))
			continue;
		if (s[1] == '#') {
			char *end;
			unsigned long v = strtoul(s + 2, &end, 10);

			if (*end == ';' && v > 0 && v < 128) {
				*o++ = (char)v;
				s = end + 1;
				continue;
			}
		}
		*o++ = *s++;
	}
	*o = '\0';
}

/*
 * The text of every <@tag>...</@tag> in [@p, @end), in order, each passed
 * to @fn (malloc'ed, unescaped; the callee keeps or frees it).  Elements
 * are flat in these answers: no nesting of the same tag.
 */
static int xml_each(const char *p, const char *end, const char *tag,
		    int (*fn)(char *text, void *arg), void *arg)
{
	char open[40];
	char close[40];
	size_t lo;
	size_t lc;
	int ret;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	lo = strlen(open);
	lc = strlen(close);
	for (;;) {
		const char *a = memmem(p, (size_t)(end - p), open, lo);
		const char *b;
		char *text;

		if (!a)
			return 0;
		a += lo;
		b = memmem(a, (size_t)(end - a), close, lc);
		if (!b)
			return -EBADMSG;
		text = strndup(a, (size_t)(b - a));
		if (!text)
			return -ENOMEM;
		xml_unescape(text);
		ret = fn(text, arg);
		if (ret)
			return ret;
		p = b + lc;
	}
}

struct listing {
	char **v;
	size_t n;
	char *token;
	bool truncated;
	const char *prefix;	/* keys and prefixes must start with it */
	bool times;		/* want snapshot times, not subdirectories */
};

static int add_unique(struct listing *l, const char *name)
{
	char **nv;

	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i], name))
			return 0;
	nv = realloc(l->v, (l->n + 2) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	l->v = nv;
	nv[l->n++] = xstrdup(name);
	nv[l->n] = NULL;
	return 0;
}

/* A common prefix "PREFIX<name>/": a subdirectory. */
static int on_prefix(char *text, void *arg)
{
	struct listing *l = arg;
	size_t pl = strlen(l->prefix);
	size_t n = strlen(text);
	int ret = 0;

	if (n > pl + 1 && !strncmp(text, l->prefix, pl) && text[n - 1] == '/') {
		text[n - 1] = '\0';
		if (!strchr(text + pl, '/') && snap_is_safe_id(text + pl))
			ret = add_unique(l, text + pl);
	}
	free(text);
	return ret;
}

/* A key "PREFIX<time>/index.json.blob": a complete snapshot. */
static int on_key(char *text, void *arg)
{
	static const char tail[] = "/index.json.blob";
	struct listing *l = arg;
	size_t pl = strlen(l->prefix);
	size_t n = strlen(text);
	int64_t t;
	int ret = 0;

	if (l->times && n > pl + sizeof(tail) - 1 &&
	    !strncmp(text, l->prefix, pl) &&
	    !strcmp(text + n - (sizeof(tail) - 1), tail)) {
		text[n - (sizeof(tail) - 1)] = '\0';
		if (!snap_parse_time(text + pl, &t))
			ret = add_unique(l, text + pl);
	}
	free(text);
	return ret;
}

static int on_token(char *text, void *arg)
{
	struct listing *l = arg;

	free(l->token);
	l->token = text;
	return 0;
}

static int on_truncated(char *text, void *arg)
{
	struct listing *l = arg;

	l->truncated = !strcmp(text, "true");
	free(text);
	return 0;
}

int store_s3_parse_list(const char *body, size_t len, const char *prefix,
			bool times, char ***names, size_t *n, char **token)
{
	struct listing l = { .prefix = prefix, .times = times };
	const char *end = body + len;
	int ret;

	*names = NULL;
	*n = 0;
	*token = NULL;
	if (!memmem(body, len, "<ListBucketResult", 17))
		return -EBADMSG;
	ret = xml_each(body, end, "IsTruncated", on_truncated, &l);
	if (!ret)
		ret = xml_each(body, end, "NextContinuationToken", on_token, &l);
	if (!ret)
		ret = xml_each(body, end, "Key", on_key, &l);
	/* <Prefix> also tops the answer: on_prefix skips it (no "/" end
	 * after its own prefix), and only CommonPrefixes have children. */
	if (!ret && !times)
		ret = xml_each(body, end, "Prefix", on_prefix, &l);
	if (!ret && l.truncated && (!l.token || !*l.token))
		ret = -EBADMSG;		/* truncated without a way on */
	if (ret) {
		store_free_names(l.v, l.n);
		free(l.token);
		return ret;
	}
	*names = l.v ? l.v : xcalloc(1, sizeof(char *));
	*n = l.n;
	*token = l.truncated ? l.token : NULL;
	if (!l.truncated)
		free(l.token);
	return 0;
}

static bool list_is_times(const char *path)
{
	const char *last = strrchr(path, '/');
	const char *prev;
	char type[8];

	if (!last)
		return false;
	for (prev = last; prev > path && prev[-1] != '/'; prev--)
		;
	if ((size_t)(last - prev) >= sizeof(type))
		return false;
	memcpy(type, prev, last - prev);
	type[last - prev] = '\0';
	return snap_is_backup_type(type);
}

static int s3_list(struct store *s, const char *path, char ***names,
		   size_t *n)
{
	struct store_s3 *s3 = to_s3(s);
	char *prefix = xasprintf("%s/.cnt/%s/", s3->prefix, path);
	/*
	 * "[ns/..]TYPE/ID": snapshot times (no delimiter: a snapshot is
	 * known by its manifest); "[ns/..]TYPE": group ids; "[ns/..]ns":
	 * child namespaces.  Times when the second-last part is a type.
	 */
	bool times = list_is_times(path);
	char **all = NULL;
	size_t nall = 0;
	char *token = NULL;
	int pages = 0;
	int ret = 0;

	do {
		struct fetch_response resp;
		struct buf u;
		char **v = NULL;
		size_t nv = 0;
		char *next = NULL;

		buf_init(&u, SIZE_MAX / 2);
		buf_append(&u, s3->base_url, strlen(s3->base_url));
		/* Sorted, encoded: what libcurl signs is what S3 checks. */
		buf_append(&u, "?", 1);
		if (token) {
			buf_append(&u, "continuation-token=", 19);
			enc(&u, token, false);
			buf_append(&u, "&", 1);
		}
		if (!times)
			buf_append(&u, "delimiter=%2F&", 14);
		buf_append(&u, "list-type=2&prefix=", 19);
		enc(&u, prefix, false);
		ret = s3_request(s3, NULL, (const char *)u.data, NULL, 0, false,
				 FETCH_DEMAND, LIST_MAX, NULL, NULL, &resp);
		if (!ret) {
			ret = store_s3_parse_list((const char *)resp.body,
						  resp.len, prefix, times, &v,
						  &nv, &next);
			if (ret == -EBADMSG) {
				log_err("s3: cannot list '%s': the answer is "
					"not a ListObjectsV2 result", u.data);
				ret = -EREMOTEIO;
			}
		}
		free(resp.body);
		buf_release(&u);
		for (size_t i = 0; !ret && i < nv; i++) {
			char **na = realloc(all, (nall + 2) * sizeof(*na));

			if (!na) {
				ret = -ENOMEM;
				break;
			}
			all = na;
			all[nall++] = v[i];
			all[nall] = NULL;
			v[i] = NULL;
		}
		store_free_names(v, nv);
		free(token);
		token = next;
		if (++pages > 100000)
			ret = -ELOOP;
	} while (!ret && token);
	free(token);
	free(prefix);
	if (ret) {
		store_free_names(all, nall);
		return ret;
	}
	*names = all ? all : xcalloc(1, sizeof(char *));
	*n = nall;
	return 0;
}

static int s3_put(struct store *s, const char *path, const void *buf,
		  size_t len, bool if_absent)
{
	struct store_s3 *s3 = to_s3(s);
	struct fetch_response resp;
	char *key = object_key(s3, path);
	char *url = object_url(s3, key);
	int ret;

	/* A non-NULL body even when empty: it makes the request a PUT. */
	ret = s3_request(s3, "PUT", url, len ? buf : "", len, if_absent,
			 FETCH_DEMAND, 1 << 20, NULL, NULL, &resp);
	free(resp.body);
	free(url);
	free(key);
	return ret;
}

static void s3_cancel(struct store *s)
{
	fetch_cancel(to_s3(s)->fetch);
}

static unsigned int s3_window(struct store *s)
{
	return fetch_window(to_s3(s)->fetch);
}

static void s3_close(struct store *s)
{
	struct store_s3 *s3 = to_s3(s);

	fetch_free(s3->fetch);
	free(s3->base_url);
	free(s3->bucket);
	free(s3->prefix);
	free(s3->label);
	free(s3->key_id);
	free(s3);
}

static const struct store_ops s3_ops = {
	.name = "s3",
	.get_file = s3_get_file,
	.get_chunk = s3_get_chunk,
	.list = s3_list,
	.put = s3_put,
	.cancel = s3_cancel,
	.window = s3_window,
	.close = s3_close,
};

/* S3 bucket names: 3-63 of [a-z0-9.-], starting and ending alnum. */
static bool bucket_ok(const char *b)
{
	size_t n = strlen(b);

	if (n < 3 || n > 63 || !strchr("abcdefghijklmnopqrstuvwxyz0123456789",
				       b[0]) ||
	    !strchr("abcdefghijklmnopqrstuvwxyz0123456789", b[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789.-", b[i]))
			return false;
	return true;
}

static bool s3_claims(const char *url, enum store_kind kind)
{
	(void)kind;
	return !strncmp(url, "s3://", 5);
}

/* The first of @names (NULL-terminated) set in the environment. */
static const char *first_env(const struct store_env *env,
			     const char *const *names)
{
	for (; *names; names++) {
		const char *v = env->get(*names);

		if (v && *v)
			return v;
	}
	return NULL;
}

/* Set @key from @value, an INI lookup's result (malloc'ed or NULL). */
static int set_owned(struct store_conf *conf, const char *key, char *value)
{
	int ret = value ? store_conf_set(conf, key, value) : 0;

	if (value) {
		explicit_bzero(value, strlen(value));
		free(value);
	}
	return ret;
}

/* The key pair: both from the environment, or the credentials file. */
static int s3_keys(struct store_conf *conf, const struct store_env *env,
		   const char *profile)
{
	const char *id = env->get("AWS_ACCESS_KEY_ID");
	const char *secret = env->get("AWS_SECRET_ACCESS_KEY");
	char *file;
	int ret;

	if (id && *id && secret) {
		ret = store_conf_set(conf, "s3-key-id", id);
		if (!ret)
			ret = store_conf_set(conf, "s3-secret", secret);
		if (!ret)
			ret = store_conf_set(conf, "s3-token",
					     first_env(env, (const char *[]){
						     "AWS_SESSION_TOKEN",
						     NULL }));
		return ret;
	}
	file = env->home_file("AWS_SHARED_CREDENTIALS_FILE",
			      ".aws/credentials");
	if (!file)
		return 0;
	ret = set_owned(conf, "s3-key-id",
			env->ini_get(file, profile, "aws_access_key_id"));
	if (!ret)
		ret = set_owned(conf, "s3-secret", env->ini_get(file, profile,
						"aws_secret_access_key"));
	if (!ret)
		ret = set_owned(conf, "s3-token", env->ini_get(file, profile,
						"aws_session_token"));
	free(file);
	return ret;
}

/* The region: --s3-region, AWS_REGION, AWS_DEFAULT_REGION, the config
 * file's. */
static int s3_region(struct store_conf *conf, const struct store_env *env,
		     const char *profile)
{
	const char *v = first_env(env, (const char *[]){
		"AWS_REGION", "AWS_DEFAULT_REGION", NULL });
	char *file;
	char *section;
	int ret;

	if (store_conf_get(conf, "s3-region"))
		return 0;
	if (v)
		return store_conf_set(conf, "s3-region", v);
	file = env->home_file("AWS_CONFIG_FILE", ".aws/config");
	if (!file)
		return 0;
	section = strcmp(profile, "default") ? xasprintf("profile %s", profile) :
					       xstrdup("default");
	ret = set_owned(conf, "s3-region", env->ini_get(file, section,
							 "region"));
	free(section);
	free(file);
	return ret;
}

/* As the AWS tools find them. */
static int s3_credentials(struct store_conf *conf,
			  const struct store_env *env)
{
	const char *profile = env->get("AWS_PROFILE");
	const char *ep = first_env(env, (const char *[]){
		"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", NULL });
	int ret = 0;

	if (!profile || !*profile)
		profile = "default";
	if (!store_conf_get(conf, "s3-key-id"))
		ret = s3_keys(conf, env, profile);
	if (!ret)
		ret = s3_region(conf, env, profile);
	if (!ret && ep && !store_conf_get(conf, "s3-endpoint"))
		ret = store_conf_set(conf, "s3-endpoint", ep);
	if (ret)
		log_err("s3: cannot keep the credentials of '%s': %s",
			conf->url, strerror(-ret));
	return ret;
}

/*
 * The bucket's URL: on --s3-endpoint (path-style unless told vhost) or
 * AWS's endpoint of @region (vhost unless told path).  Malloc'ed, or
 * NULL (said).
 */
static char *bucket_url(const struct store_conf *conf, const char *bucket,
			const char *region)
{
	const char *ep = store_conf_get(conf, "s3-endpoint");
	const char *addressing = store_conf_get(conf, "s3-addressing");
	char *endpoint;
	char *url;
	bool vhost;

	if (ep && *ep) {
		size_t l;

		endpoint = xstrdup(ep);
		l = strlen(endpoint);
		while (l > 8 && endpoint[l - 1] == '/')
			endpoint[--l] = '\0';
		/* Another S3 server: path-style unless told otherwise. */
		vhost = addressing && !strcmp(addressing, "vhost");
	} else {
		endpoint = xasprintf("https://s3.%s.amazonaws.com", region);
		vhost = !addressing || strcmp(addressing, "path");
	}
	if (strncmp(endpoint, "http://", 7) && strncmp(endpoint, "https://", 8)) {
		log_err("s3: cannot use endpoint '%s': want http(s)://HOST"
			"[:PORT]", endpoint);
		free(endpoint);
		return NULL;
	}
	if (vhost) {
		const char *h = strstr(endpoint, "://") + 3;

		url = xasprintf("%.*s%s.%s", (int)(h - endpoint), endpoint,
				bucket, h);
	} else {
		url = xasprintf("%s/%s", endpoint, bucket);
	}
	free(endpoint);
	return url;
}

static int s3_open(const struct store_conf *conf, struct store **out)
{
	const char *key_id = store_conf_get(conf, "s3-key-id");
	const char *secret = store_conf_get(conf, "s3-secret");
	const char *region = store_conf_get(conf, "s3-region");
	struct fetch_conf fc = {
		.aws_key_id = key_id,
		.aws_secret = secret,
		.aws_token = store_conf_get(conf, "s3-token"),
	};
	const char *spec = conf->url + 5;	/* after "s3://" */
	const char *slash = strchr(spec, '/');
	struct store_s3 *s3;
	char host[256];
	char *sigv4;
	int ret;

	if (!region || !*region)
		region = "us-east-1";
	store_fetch_conf(conf, &fc);
	if (!slash || slash == spec || !slash[1] || strchr(slash + 1, '/') ||
	    !snap_is_safe_id(slash + 1)) {
		log_err("s3: cannot use '%s': want s3://BUCKET/DATASTORE",
			conf->url);
		return -EINVAL;
	}
	if (!key_id || !*key_id || !secret) {
		log_err("s3: cannot open '%s': no credentials "
			"(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
			"the shared credentials file and AWS_PROFILE)",
			conf->url);
		return -EACCES;
	}
	s3 = xcalloc(1, sizeof(*s3));
	s3->bucket = strndup(spec, (size_t)(slash - spec));
	s3->prefix = xstrdup(slash + 1);
	s3->label = xstrdup(conf->url);
	s3->key_id = xstrdup(key_id);
	if (!bucket_ok(s3->bucket)) {
		log_err("s3: cannot use bucket name '%s': 3 to 63 of a-z, "
			"0-9, '.', '-'", s3->bucket);
		ret = -EINVAL;
		goto err;
	}
	s3->base_url = bucket_url(conf, s3->bucket, region);
	if (!s3->base_url) {
		ret = -EINVAL;
		goto err;
	}
	if (!url_host(s3->base_url, host, sizeof(host)))
		fc.host = host;
	sigv4 = xasprintf("aws:amz:%s:s3", region);
	fc.aws_sigv4 = sigv4;
	ret = fetch_new(&fc, &s3->fetch);
	free(sigv4);
	if (ret)
		goto err;
	s3->base.ops = &s3_ops;
	s3->base.where = s3->label;
	*out = &s3->base;
	return 0;
err:
	s3_close(&s3->base);
	return ret;
}

static int check_addressing(const char *arg, char *why, size_t len)
{
	if (strcmp(arg, "path") && strcmp(arg, "vhost")) {
		snprintf(why, len, "takes path or vhost, not '%s'", arg);
		return -EINVAL;
	}
	return 0;
}

static const struct store_option s3_options[] = {
	{ "s3-endpoint", "URL", "s3:// on another S3 server than AWS", NULL },
	{ "s3-region", "REGION", "(default AWS_REGION or us-east-1)", NULL },
	{ "s3-addressing", "MODE", "path or vhost (default: vhost on AWS)",
	  check_addressing },
	{ NULL, NULL, NULL, NULL },
};

const struct store_backend store_s3_backend = {
	.name = "s3",
	.claims = s3_claims,
	.options = s3_options,
	.credentials = s3_credentials,
	.open = s3_open,
};
