/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The store interface: picks a backend by the repository's form and
 * forwards calls through its vtable.  Backends are stacked vtables, not
 * #ifdef branches; this file holds no state of its own.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compiler.h"
#include "log.h"
#include "store.h"
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

int store_open(const struct store_conf *conf, struct store **out)
{
	const char *url = conf->url;
	enum store_kind kind;
	int ret;

	ret = store_repo_kind(url, &kind);
	if (ret)
		return ret;
	if (kind == STORE_KIND_PBS)
		return store_pbs_open(conf, out);
	if (kind == STORE_KIND_DIR)
		return store_dir_open(conf, url, out);
	if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8))
		return store_http_open(conf, out);
	if (!strncmp(url, "file://", 7))
		return store_dir_open(conf, url + 7, out);
	if (!strncmp(url, "s3://", 5))
		return store_s3_open(conf, out);
	log_err("store: cannot open '%s': unsupported repository scheme", url);
	return -EPROTONOSUPPORT;
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

unsigned int store_parallelism(const struct store *s,
			       unsigned int connections)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (strcmp(s->ops->name, "dir"))
		return connections;
	return MIN(connections, 2 * (unsigned int)(cpus > 0 ? cpus : 1));
}

void store_free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

enum fetch_prio store_fetch_prio(enum store_prio p)
{
	return p == STORE_PRIO_DEMAND	 ? FETCH_DEMAND :
	       p == STORE_PRIO_READAHEAD ? FETCH_READAHEAD :
					   FETCH_STREAM;
}

int store_chunk_check_cb(const uint8_t *body, size_t len, void *arg)
{
	struct store_chunk_check *cc = arg;

	if (!len)
		return -ENOENT;
	return cc->check(body, len, cc->arg);
}

void store_fetch_conf(const struct store_conf *conf, struct fetch_conf *fc)
{
	fc->connections = conf->connections;
	fc->remote_timeout_ms = conf->remote_timeout_ms;
	fc->request_timeout_ms = conf->request_timeout_ms;
	fc->connect_timeout_ms = conf->connect_timeout_ms;
	fc->limit_rate = conf->limit_rate;
	fc->ca_file = conf->ca_file;
	fc->fingerprint = conf->fingerprint;
	fc->insecure = conf->insecure;
	fc->body_pool = STORE_CHUNK_MAX + 1;
}
