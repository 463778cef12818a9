/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the commands share: repository and secret options, secrets from
 * files, descriptors or the environment (never argv), opening the
 * repository.  Main thread only.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "util.h"
#include "banned.h"


void cli_init(struct cli *c)
{
	memset(c, 0, sizeof(*c));
	c->store.connections = CLI_CONNECTIONS;
	c->store.remote_timeout_ms = CLI_REMOTE_TIMEOUT_MS;
	c->store.request_timeout_ms = CLI_REQUEST_TIMEOUT_MS;
	c->store.connect_timeout_ms = CLI_CONNECT_TIMEOUT_MS;
	c->passfd = -1;
}

int cli_opt_fd(void *value, const char *arg, char *why, size_t len)
{
	uint64_t v;

	if (parse_u64(arg, &v) || v > 1024) {
		snprintf(why, len, "'%s' is not a file descriptor", arg);
		return -EINVAL;
	}
	*(int *)value = (int)v;
	return 0;
}

/* --keyfd N: the descriptor's file, read like any key file. */
static int opt_keyfd(void *value, const char *arg, char *why, size_t len)
{
	struct cli *c = value;
	int fd;
	int ret;

	ret = cli_opt_fd(&fd, arg, why, len);
	if (ret)
		return ret;
	snprintf(c->keyfd_path, sizeof(c->keyfd_path), "/proc/self/fd/%d", fd);
	c->keyfile = c->keyfd_path;
	return 0;
}

static int opt_debug(void *value, const char *arg, char *why, size_t len)
{
	(void)value;
	if (log_set_debug(arg)) {
		snprintf(why, len, "unknown debug category in '%s'", arg);
		return -EINVAL;
	}
	return 0;
}

static int opt_quiet(void *value, const char *arg, char *why, size_t len)
{
	(void)arg;
	(void)why;
	(void)len;
	*(bool *)value = true;
	log_init("pbs-livemount", false, LOG_WARNING);
	return 0;
}

/* A backend's option: a setting of the same name. */
static int opt_setting(void *value, const char *arg, char *why, size_t len)
{
	struct cli_store_opt *so = value;
	int ret;

	if (so->o->check) {
		ret = so->o->check(arg, why, len);
		if (ret)
			return ret;
	}
	ret = store_conf_set(&so->c->store, so->o->name, arg);
	if (ret)
		snprintf(why, len, "too many settings");
	return ret;
}

static void add_store_option(const struct store_option *o, void *arg)
{
	struct cli *c = arg;
	struct cli_store_opt *so;

	if (c->nopts + 3 > ARRAY_SIZE(c->opts) ||
	    c->nstore_opts == ARRAY_SIZE(c->store_opts))
		abort();	/* cli->opts too small: a build error */
	so = &c->store_opts[c->nstore_opts++];
	so->c = c;
	so->o = o;
	c->opts[c->nopts++] = (struct opt)OPT_CALLBACK(0, o->name, so,
						       o->metavar, opt_setting,
						       o->help);
}

int cli_opt_output_format(void *value, const char *arg, char *why,
			  size_t len)
{
	if (!strcmp(arg, "text"))
		*(enum cli_format *)value = CLI_FORMAT_TEXT;
	else if (!strcmp(arg, "json"))
		*(enum cli_format *)value = CLI_FORMAT_JSON;
	else if (!strcmp(arg, "json-pretty"))
		*(enum cli_format *)value = CLI_FORMAT_JSON_PRETTY;
	else {
		snprintf(why, len, "'%s' is not text, json or json-pretty",
			 arg);
		return -EINVAL;
	}
	return 0;
}

/* --repository, as given (main thread only; cli_repo_arg). */
static const char *repo_opt;

/*
 * --repository REPO: the REPO argument as an option, as
 * proxmox-backup-client takes it.  Also PBS_REPOSITORY from here on,
 * which is what every reader of the repository consults.
 */
static int opt_repository(void *value, const char *arg, char *why,
			  size_t len)
{
	(void)value;
	if (!*arg) {
		snprintf(why, len, "empty repository");
		return -EINVAL;
	}
	repo_opt = arg;
	return setenv("PBS_REPOSITORY", arg, 1) ? -errno : 0;
}

const char *cli_repository(void)
{
	return repo_opt;
}

const struct opt *cli_repo_opts(struct cli *c)
{
	const struct opt t[] = {
		OPT_CALLBACK(0, "repository", NULL, "REPO", opt_repository,
			     "the repository, instead of the REPO argument"),
		OPT_STRING(0, "ns", &c->ns, "NS", "namespace (a/b)"),
		OPT_STRING(0, "keyfile", &c->keyfile, "FILE",
			   "encryption key file (PBS format)"),
		OPT_CALLBACK(0, "keyfd", c, "N", opt_keyfd,
			     "read the key file from descriptor N"),
		OPT_STRING(0, "passphrase-file", &c->passfile, "FILE",
			   "key passphrase (first line; also\n"
			   "PBS_ENCRYPTION_PASSWORD)"),
		OPT_CALLBACK(0, "passphrase-fd", &c->passfd, "N", cli_opt_fd,
			     "read the key passphrase from descriptor N"),
		OPT_UINT("connections", &c->store.connections, "N", 1, 256,
			 "chunks in flight, fixed (default: measured,\n"
			 "1 to 64, as many as the link needs)"),
		OPT_DURATION("connect-timeout", &c->store.connect_timeout_ms,
			     "SECS", 1, 0,
			     "a server not reached yet that refuses or\n"
			     "does not resolve: give up after (default 10)"),
		OPT_DURATION("remote-timeout", &c->store.remote_timeout_ms,
			     "SECS", 1, 0,
			     "give up on a chunk after this (default 60)"),
		OPT_DURATION("request-timeout", &c->store.request_timeout_ms,
			     "SECS", 1, 0, "one HTTP attempt (default 30)"),
		OPT_STRING(0, "ca-file", &c->store.ca_file, "FILE",
			   "CA certificates for https"),
		OPT_STRING(0, "fingerprint", &c->store.fingerprint, "FP",
			   "pin the server certificate (SHA-256, aa:bb:..;\n"
			   "also PBS_FINGERPRINT)"),
		OPT_BOOL(0, "insecure", &c->store.insecure,
			 "do not verify the server certificate"),
		OPT_SIZE("limit-rate", &c->store.limit_rate, "RATE", 1, 0,
			 "total download limit, bytes/s (K, M, G)"),
		OPT_STRING(0, "auth-file", &c->auth_file, "FILE",
			   "Authorization header value (also PBSLM_AUTH)"),
		OPT_END(),
	};
	const struct opt tail[] = {
		OPT_CALLBACK(0, "debug", NULL, "LIST", opt_debug,
			     "debug categories: fetch,http,store,... or all"),
		OPT_CALLBACK('q', "quiet", &c->quiet, NULL, opt_quiet,
			     "only errors"),
		OPT_END(),
	};
	size_t n = ARRAY_SIZE(t) - 1;

	memcpy(c->opts, t, sizeof(t));
	/* Then the backends' own (store_backend.h), as settings. */
	/* Built afresh on each call (restore builds two tables). */
	c->nopts = n;
	c->nstore_opts = 0;
	store_each_option(add_store_option, c);
	n = c->nopts;
	if (n + ARRAY_SIZE(tail) > ARRAY_SIZE(c->opts))
		abort();	/* cli->opts too small: a build error */
	memcpy(c->opts + n, tail, sizeof(tail));
	return c->opts;
}

void cli_release(struct cli *c)
{
	store_close(c->s);
	key_free(c->key);
	if (c->auth_header) {
		explicit_bzero(c->auth_header, strlen(c->auth_header));
		free(c->auth_header);
	}
	if (c->passphrase) {
		explicit_bzero(c->passphrase, strlen(c->passphrase));
		free(c->passphrase);
	}
	store_conf_release(&c->store);
}

/* First line of a secret, without CR/LF; *out is malloc'ed. */
int cli_read_secret_fd(int fd, char **out)
{
	char buf[4096];
	size_t len = 0;
	ssize_t n;

	while (len < sizeof(buf) - 1) {
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += n;
		if (memchr(buf, '\n', len))
			break;
	}
	buf[len] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	*out = xstrdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

int cli_read_secret_file(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	int ret;

	if (!f)
		return -errno;
	ret = cli_read_secret_fd(fileno(f), out);
	fclose(f);
	return ret;
}

static int prompt_secret(const char *prompt, char **out)
{
	struct termios old;
	struct termios quiet;
	int fd = STDIN_FILENO;
	int ret;

	if (!isatty(fd) || tcgetattr(fd, &old) < 0)
		return -ENOTTY;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	/* Echo off before the prompt: what is typed after the prompt is
	 * neither echoed nor flushed, however quickly it comes. */
	tcsetattr(fd, TCSAFLUSH, &quiet);
	fprintf(stderr, "%s", prompt);
	ret = cli_read_secret_fd(fd, out);
	tcsetattr(fd, TCSANOW, &old);
	fprintf(stderr, "\n");
	return ret;
}

/*
 * Passphrase from --passphrase-fd, --passphrase-file, env, or a tty;
 * with @confirm a terminal is asked twice and must get the same twice.
 */
static int get_passphrase(struct cli *c, bool confirm, char **out)
{
	const char *env = getenv("PBS_ENCRYPTION_PASSWORD");
	char *again = NULL;
	int ret;

	if (c->passphrase) {
		*out = xstrdup(c->passphrase);
		return 0;
	}
	if (c->passfd >= 0)
		return cli_read_secret_fd(c->passfd, out);
	if (c->passfile) {
		ret = cli_read_secret_file(c->passfile, out);
		if (ret)
			log_err("cannot read passphrase file '%s': %s",
				c->passfile, strerror(-ret));
		return ret;
	}
	if (env) {
		*out = xstrdup(env);
		return 0;
	}
	ret = prompt_secret("Encryption key password: ", out);
	if (ret == -ENOTTY) {
		*out = NULL;	/* kdf-less key files need none */
		return 0;
	}
	if (ret || !confirm)
		return ret;
	ret = prompt_secret("Verify Password: ", &again);
	if (!ret && strcmp(*out, again)) {
		log_err("key: the passphrases do not match");
		ret = -EINVAL;
	}
	if (again) {
		explicit_bzero(again, strlen(again));
		free(again);
	}
	if (ret) {
		explicit_bzero(*out, strlen(*out));
		free(*out);
		*out = NULL;
	}
	return ret;
}

int cli_get_passphrase(struct cli *c, char **out)
{
	return get_passphrase(c, false, out);
}

int cli_get_new_passphrase(struct cli *c, char **out)
{
	return get_passphrase(c, true, out);
}

int cli_load_key(struct cli *c)
{
	char *pass = NULL;
	int ret;

	if (!c->keyfile)
		return 0;
	ret = cli_get_passphrase(c, &pass);
	if (ret)
		return ret;
	ret = key_load_file(c->keyfile, pass, &c->key);
	if (pass) {
		explicit_bzero(pass, strlen(pass));
		free(pass);
	}
	return ret;
}

/* Wiped where it is (the block /proc/PID/environ shows), then unset:
 * not for --on-complete or anything we start. */
static void drop_env(const char *name)
{
	char *v = getenv(name);

	if (v)
		explicit_bzero(v, strlen(v));
	unsetenv(name);
}

static char *ini_get(const char *path, const char *section, const char *key);
static char *home_file(const char *env, const char *rel);

static const char *get_env(const char *name)
{
	return getenv(name);
}

/* Where backends find credentials: this process's environment, files,
 * descriptors and terminal. */
static const struct store_env cli_env = {
	.get = get_env,
	.drop = drop_env,
	.read_fd = cli_read_secret_fd,
	.read_file = cli_read_secret_file,
	.home_file = home_file,
	.ini_get = ini_get,
	.prompt = prompt_secret,
};

int cli_credentials(struct cli *c, const char *repo)
{
	int ret;

	if (!repo)
		return 0;
	c->store.url = repo;
	ret = store_credentials(&c->store, &cli_env);
	c->store.url = NULL;
	return ret;
}

const char *cli_repo_arg(int nargs, int want, char **argv, int *shift)
{
	const char *env = getenv("PBS_REPOSITORY");

	if (repo_opt && nargs == want) {
		log_err("the repository given twice: --repository '%s' and "
			"'%s'", repo_opt, argv[0]);
		*shift = 1;
		return NULL;
	}
	if (nargs == want) {
		*shift = 1;
		return argv[0];
	}
	if (nargs == want - 1 && env && *env) {
		*shift = 0;
		return env;
	}
	*shift = 1;
	return NULL;
}

/*
 * KEY from section [@section] of an AWS-style INI file, malloc'ed, or
 * NULL.  "key = value" lines; '#' and ';' comments.
 */
static char *ini_get(const char *path, const char *section, const char *key)
{
	char line[4096];
	bool in = false;
	char *val = NULL;
	FILE *f;

	f = fopen(path, "re");
	if (!f)
		return NULL;
	while (!val && fgets(line, sizeof(line), f)) {
		char *p = line + strspn(line, " \t");
		char *eq;
		char *e;

		p[strcspn(p, "\r\n")] = '\0';
		if (*p == '[') {
			e = strchr(p, ']');
			if (e)
				*e = '\0';
			in = !strcmp(p + 1, section);
			continue;
		}
		eq = strchr(p, '=');
		if (!in || !eq || *p == '#' || *p == ';')
			continue;
		for (e = eq; e > p && (e[-1] == ' ' || e[-1] == '\t'); e--)
			;
		if ((size_t)(e - p) != strlen(key) || strncmp(p, key, e - p))
			continue;
		eq++;
		eq += strspn(eq, " \t");
		for (e = eq + strlen(eq); e > eq && (e[-1] == ' ' ||
						      e[-1] == '\t'); e--)
			;
		val = strndup(eq, (size_t)(e - eq));
	}
	explicit_bzero(line, sizeof(line));
	fclose(f);
	return val;
}

static char *home_file(const char *env, const char *rel)
{
	const char *v = getenv(env);
	const char *home = getenv("HOME");

	if (v && *v)
		return xstrdup(v);
	return home ? xasprintf("%s/%s", home, rel) : NULL;
}

int cli_open_repo(struct cli *c, const char *repo)
{
	enum store_kind kind;
	char *path = NULL;
	const char *env;
	int ret;

	if (!c->store.fingerprint)
		c->store.fingerprint = getenv("PBS_FINGERPRINT");
	env = getenv("PBSLM_AUTH");
	if (c->auth_file) {
		char *secret = NULL;

		ret = cli_read_secret_file(c->auth_file, &secret);
		if (ret) {
			log_err("cannot read auth file '%s': %s", c->auth_file,
				strerror(-ret));
			return ret;
		}
		c->auth_header = xasprintf("Authorization: %s", secret);
		explicit_bzero(secret, strlen(secret));
		free(secret);
	} else if (env && *env) {
		c->auth_header = xasprintf("Authorization: %s", env);
	}
	c->store.auth_header = c->auth_header;
	ret = store_repo_kind(repo, &kind);
	if (ret)
		return ret;
	if (kind == STORE_KIND_DIR) {
		/* Valid after a daemon changes to "/". */
		path = abs_path(repo);
		repo = path;
	}
	ret = cli_credentials(c, repo);
	if (!ret)
		ret = cli_load_key(c);
	c->store.url = repo;
	if (!ret)
		ret = store_open(&c->store, &c->s);
	c->store.url = NULL;	/* the store has its own copy */
	free(path);
	return ret;
}

/* State, not cache: what a later run needs. */
char *cli_default_dir(const char *env, const char *leaf)
{
	const char *v = getenv(env);
	const char *home = getenv("HOME");
	const char *xdg = getenv("XDG_STATE_HOME");

	if (v && *v)
		return abs_path(v);
	if (!geteuid())
		return xasprintf("/var/lib/pbs-livemount/%s", leaf);
	if (xdg && *xdg == '/')
		return xasprintf("%s/pbs-livemount/%s", xdg, leaf);
	if (home && *home == '/')
		return xasprintf("%s/.local/state/pbs-livemount/%s", home,
				 leaf);
	return NULL;
}

int cli_exit_code(int ret)
{
	return ret ? EXIT_FAILURE : EXIT_SUCCESS;
}
