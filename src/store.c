/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The store interface: the table of backends (store_backend.h), which
 * picks one by the repository's form, and the calls forwarded through
 * its vtable; and the settings a backend's options and credentials
 * fill.  Backends are stacked vtables, not #ifdef branches; this file
 * holds no state of its own.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compiler.h"
#include "log.h"
#include "store.h"
#include "store_backend.h"
#include "util.h"
#include "xfer.h"
#include "banned.h"

static bool is_dir(const char *path)
{
	struct stat st;

	return !stat(path, &st) && S_ISDIR(st.st_mode);
}

int store_repo_kind(const char *repo, enum store_kind *kind)
{
	if (strstr(repo, "://")) {
		*kind = STORE_KIND_URL;
		return 0;
	}
	if (repo[0] == '/' || repo[0] == '~' || !strncmp(repo, "./", 2) ||
	    !strncmp(repo, "../", 3) || !strcmp(repo, ".") ||
	    !strcmp(repo, "..")) {
		*kind = STORE_KIND_DIR;
		return 0;
	}
	if (!strchr(repo, ':')) {
		/* A PBS datastore name has no '/': a relative path has. */
		if (strchr(repo, '/') || is_dir(repo)) {
			*kind = STORE_KIND_DIR;
			return 0;
		}
		log_err("store: cannot open '%s': no such directory here; for a "
			"datastore on a PBS server write HOST:%s (e.g. "
			"localhost:%s)", repo, repo, repo);
		return -EINVAL;
	}
	if (is_dir(repo)) {
		log_err("store: cannot open '%s': both a directory here and a "
			"PBS repository; write ./%s for the directory", repo,
			repo);
		return -EINVAL;
	}
	*kind = STORE_KIND_PBS;
	return 0;
}

/* The backends, in the order their options are listed. */
static const struct store_backend *const backends[] = {
	&store_dir_backend,
	&store_http_backend,
	&store_pbs_backend,
	&store_s3_backend,
};

/* The backend of @url: 0 with it; -errno, logged. */
static int backend_of(const char *url, bool quiet,
		      const struct store_backend **out)
{
	enum store_kind kind;
	int ret;

	ret = store_repo_kind(url, &kind);
	if (ret)
		return ret;
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
		if (backends[i]->claims(url, kind)) {
			*out = backends[i];
			return 0;
		}
	}
	if (!quiet)
		log_err("store: cannot open '%s': unsupported repository "
			"scheme", url);
	return -EPROTONOSUPPORT;
}

void store_each_option(void (*fn)(const struct store_option *o, void *arg),
		       void *arg)
{
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
		for (const struct store_option *o = backends[i]->options;
		     o && o->name; o++)
			fn(o, arg);
}

int store_credentials(struct store_conf *conf, const struct store_env *env)
{
	const struct store_backend *b;

	if (!conf->url || backend_of(conf->url, true, &b) || !b->credentials)
		return 0;
	return b->credentials(conf, env);
}

int store_open(const struct store_conf *conf, struct store **out)
{
	const struct store_backend *b;
	int ret;

	ret = backend_of(conf->url, false, &b);
	return ret ? ret : b->open(conf, out);
}

void store_close(struct store *s)
{
	if (s)
		s->ops->close(s);
}

int store_get_file(struct store *s, const char *path, size_t max,
		   uint8_t **buf, size_t *len)
{
	return s->ops->get_file(s, path, max, buf, len);
}

int store_get_chunk(struct store *s, const uint8_t digest[32],
		    enum store_prio prio, store_check_fn check, void *arg)
{
	return s->ops->get_chunk(s, digest, prio, check, arg);
}

int store_list(struct store *s, const char *path, char ***names, size_t *n)
{
	if (!s->ops->list)
		return -ENOTSUP;
	return s->ops->list(s, path, names, n);
}

void store_describe(struct store *s, const char *path, char *out,
		    size_t outlen)
{
	snprintf(out, outlen, "%s/%s", s->where, path);
}

bool store_err_logged(int err)
{
	return err == -EIO || err == -EACCES || err == -EREMOTEIO;
}

int store_put(struct store *s, const char *path, const void *buf,
	      size_t len, bool if_absent)
{
	if (!s->ops->put)
		return -ENOTSUP;
	return s->ops->put(s, path, buf, len, if_absent);
}

void store_cancel(struct store *s)
{
	if (s->ops->cancel)
		s->ops->cancel(s);
}

unsigned int store_window(struct store *s)
{
	return s->ops->window ? s->ops->window(s) : 0;
}

unsigned int store_parallelism(const struct store *s,
			       unsigned int connections)
{
	if (!s->ops->local)
		return connections ? connections : XFER_SLOTS_MAX;
	return MIN(connections ? connections : UINT_MAX,
		   2 * cpu_count());
}

void store_free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* ---- settings ---- */

static struct store_setting *find_setting(const struct store_conf *conf,
					  const char *key)
{
	for (unsigned int i = 0; i < conf->nset; i++)
		if (!strcmp(conf->set[i].key, key))
			return (struct store_setting *)&conf->set[i];
	return NULL;
}

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

int store_conf_set(struct store_conf *conf, const char *key,
		   const char *value)
{
	struct store_setting *st = find_setting(conf, key);

	if (st) {
		wipe_free(st->value);
		if (value) {
			st->value = xstrdup(value);
			return 0;
		}
		free(st->key);
		*st = conf->set[--conf->nset];
		return 0;
	}
	if (!value)
		return 0;
	if (conf->nset == ARRAY_SIZE(conf->set))
		return -ENOSPC;
	conf->set[conf->nset].key = xstrdup(key);
	conf->set[conf->nset].value = xstrdup(value);
	conf->nset++;
	return 0;
}

const char *store_conf_get(const struct store_conf *conf, const char *key)
{
	const struct store_setting *st = find_setting(conf, key);

	return st ? st->value : NULL;
}

/* "key=HEX(value)\n" per setting: any byte survives. */
char *store_conf_pack(const struct store_conf *conf)
{
	struct buf b;
	size_t len;

	buf_init(&b, SIZE_MAX / 2);
	for (unsigned int i = 0; i < conf->nset; i++) {
		const unsigned char *v = (const unsigned char *)conf->set[i].value;
		char hex[3];

		buf_append(&b, conf->set[i].key, strlen(conf->set[i].key));
		buf_append(&b, "=", 1);
		for (; *v; v++) {
			snprintf(hex, sizeof(hex), "%02x", *v);
			buf_append(&b, hex, 2);
		}
		buf_append(&b, "\n", 1);
	}
	buf_append(&b, "", 1);
	return (char *)buf_steal(&b, &len);
}

int store_conf_unpack(struct store_conf *conf, const char *packed)
{
	char *copy = xstrdup(packed);
	char *save = NULL;
	int ret = 0;

	for (char *line = strtok_r(copy, "\n", &save); line && !ret;
	     line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		size_t n;

		if (!eq || (strlen(eq + 1) & 1)) {
			ret = -EINVAL;
			break;
		}
		*eq = '\0';
		n = strlen(eq + 1) / 2;
		/* Decoded in place: the value shrinks to half. */
		if (hex_decode(eq + 1, (uint8_t *)eq + 1, n)) {
			ret = -EINVAL;
			break;
		}
		eq[1 + n] = '\0';
		ret = store_conf_set(conf, line, eq + 1);
	}
	explicit_bzero(copy, strlen(packed));
	free(copy);
	return ret;
}

void store_conf_release(struct store_conf *conf)
{
	for (unsigned int i = 0; i < conf->nset; i++) {
		free(conf->set[i].key);
		wipe_free(conf->set[i].value);
	}
	conf->nset = 0;
}
