/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The PBS backend's repository string, [[USER@REALM[!TOKEN]@]HOST
 * [:PORT]:]DATASTORE as proxmox-backup-client reads it, and where its
 * secret comes from, in proxmox-backup-client's order.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "store_backend.h"
#include "store_pbs_i.h"
#include "util.h"
#include "banned.h"

/* ---- the repository string ---- */

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* PBS's SAFE_ID: [A-Za-z0-9_][A-Za-z0-9._-]* */
bool store_pbs_safe_id(const char *s, size_t n)
{
	if (!n || n > 64 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return false;
	return true;
}

/* "user@realm" or "user@realm!token" (PBS's Authid). */
static bool auth_id_ok(const char *s, size_t n)
{
	const char *at = memchr(s, '@', n);
	const char *bang;
	size_t un;

	if (!at || at == s)
		return false;
	un = (size_t)(at - s);
	for (size_t i = 0; i < un; i++)
		if (s[i] <= ' ' || s[i] == ':' || s[i] == '/' || s[i] == '@' ||
		    s[i] == '!')
			return false;
	bang = memchr(at, '!', n - un);
	if (!bang)
		return store_pbs_safe_id(at + 1, n - un - 1);
	return store_pbs_safe_id(at + 1, (size_t)(bang - at - 1)) &&
	       store_pbs_safe_id(bang + 1, n - (size_t)(bang - s) - 1);
}

static bool host_ok(const char *s, size_t n)
{
	if (!n || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return false;
	return true;
}

int pbs_repo_parse(const char *spec, struct pbs_repo *r, char *why,
		   size_t whylen)
{
	const char *rest = spec;
	const char *at = strrchr(spec, '@');
	const char *colon;
	size_t n;

	memset(r, 0, sizeof(*r));
	snprintf(r->auth_id, sizeof(r->auth_id), "root@pam");
	snprintf(r->host, sizeof(r->host), "localhost");
	r->port = 8007;
	if (at) {
		n = (size_t)(at - spec);
		if (n >= sizeof(r->auth_id) || !auth_id_ok(spec, n)) {
			snprintf(why, whylen, "bad user or token '%.*s' (want "
				 "USER@REALM or USER@REALM!TOKEN)", (int)n,
				 spec);
			return -EINVAL;
		}
		memcpy(r->auth_id, spec, n);
		r->auth_id[n] = '\0';
		r->token = memchr(spec, '!', n) != NULL;
		rest = at + 1;
	}
	if (*rest == '[') {
		const char *rb = strchr(rest, ']');

		n = rb ? (size_t)(rb - rest - 1) : 0;
		if (!rb || !n || n >= sizeof(r->host) || rb[1] != ':') {
			snprintf(why, whylen, "bad IPv6 host in '%s' (want "
				 "[ADDRESS]:STORE or [ADDRESS]:PORT:STORE)",
				 spec);
			return -EINVAL;
		}
		for (size_t i = 1; i <= n; i++) {
			if (!strchr("0123456789abcdefABCDEF:.", rest[i])) {
				snprintf(why, whylen, "bad IPv6 address in "
					 "'%s'", spec);
				return -EINVAL;
			}
		}
		memcpy(r->host, rest + 1, n);
		r->host[n] = '\0';
		rest = rb + 2;
		colon = strchr(rest, ':');
	} else {
		colon = strchr(rest, ':');
		if (colon) {
			n = (size_t)(colon - rest);
			if (n >= sizeof(r->host) || !host_ok(rest, n)) {
				snprintf(why, whylen, "bad host '%.*s'", (int)n,
					 rest);
				return -EINVAL;
			}
			memcpy(r->host, rest, n);
			r->host[n] = '\0';
			rest = colon + 1;
			colon = strchr(rest, ':');
		}
	}
	if (colon) {
		uint64_t port;
		char num[8];

		n = (size_t)(colon - rest);
		if (!n || n >= sizeof(num)) {
			snprintf(why, whylen, "bad port in '%s'", spec);
			return -EINVAL;
		}
		memcpy(num, rest, n);
		num[n] = '\0';
		if (parse_u64(num, &port) || !port || port > 65535) {
			snprintf(why, whylen, "bad port '%s'", num);
			return -EINVAL;
		}
		r->port = (unsigned int)port;
		rest = colon + 1;
	}
	n = strlen(rest);
	if (n >= sizeof(r->store) || !store_pbs_safe_id(rest, n)) {
		snprintf(why, whylen, "bad datastore name '%s'", rest);
		return -EINVAL;
	}
	memcpy(r->store, rest, n + 1);
	return 0;
}

/* The secret from descriptor $@name, if set: 0, -ENOENT, -errno. */
static int secret_from_fd_env(const struct store_env *env, const char *name,
			      char **out)
{
	const char *v = env->get(name);
	uint64_t fd;

	if (!v || !*v)
		return -ENOENT;
	if (parse_u64(v, &fd) || fd > 1024) {
		log_err("cannot use %s='%s': not a file descriptor", name, v);
		return -EINVAL;
	}
	return env->read_fd((int)fd, out);
}

/* The secret from the user's options, or -ENOENT. */
static int secret_from_options(struct store_conf *conf,
			       const struct store_env *env, char **out)
{
	const char *v = store_conf_get(conf, "password-fd");
	uint64_t fd;
	int ret;

	if (v && !parse_u64(v, &fd)) {
		ret = env->read_fd((int)fd, out);
		if (ret)
			log_err("cannot read the password from descriptor %d: "
				"%s", (int)fd, strerror(-ret));
		return ret;
	}
	v = store_conf_get(conf, "password-file");
	if (v) {
		ret = env->read_file(v, out);
		if (ret)
			log_err("cannot read password file '%s': %s", v,
				strerror(-ret));
		return ret;
	}
	return -ENOENT;
}

/*
 * As proxmox-backup-client: --password-fd, --password-file,
 * PBS_PASSWORD (then removed from the environment), PBS_PASSWORD_FD,
 * PBS_PASSWORD_FILE, or the terminal.
 */
int store_pbs_credentials(struct store_conf *conf,
			   const struct store_env *env)
{
	struct pbs_repo r;
	char *secret = NULL;
	const char *v;
	char why[200];
	char *prompt;
	int ret;

	if (store_conf_get(conf, STORE_PBS_SECRET) ||
	    pbs_repo_parse(conf->url, &r, why, sizeof(why)))
		return 0;	/* store_open() says what is wrong */
	ret = secret_from_options(conf, env, &secret);
	if (ret != -ENOENT)
		goto out;
	v = env->get("PBS_PASSWORD");
	if (v && *v) {
		secret = xstrdup(v);
		env->drop("PBS_PASSWORD");
		ret = 0;
		goto out;
	}
	ret = secret_from_fd_env(env, "PBS_PASSWORD_FD", &secret);
	if (ret != -ENOENT)
		goto out;
	v = env->get("PBS_PASSWORD_FILE");
	if (v && *v) {
		ret = env->read_file(v, &secret);
		if (ret)
			log_err("cannot read PBS_PASSWORD_FILE '%s': %s", v,
				strerror(-ret));
		goto out;
	}
	prompt = xasprintf("%s for \"%s\": ", r.token ? "Secret" : "Password",
			   r.auth_id);
	ret = env->prompt(prompt, &secret);
	free(prompt);
	if (ret == -ENOTTY)
		ret = 0;	/* store_open() names what is missing */
out:
	if (!ret && secret)
		ret = store_conf_set(conf, STORE_PBS_SECRET, secret);
	if (secret) {
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
	return ret;
}

