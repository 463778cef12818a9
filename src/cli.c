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
	c->password_fd = -1;
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

static int opt_addressing(void *value, const char *arg, char *why,
			  size_t len)
{
	if (strcmp(arg, "path") && strcmp(arg, "vhost")) {
		snprintf(why, len, "takes path or vhost, not '%s'", arg);
		return -EINVAL;
	}
	*(const char **)value = arg;
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

const struct opt *cli_repo_opts(struct cli *c)
{
	const struct opt t[] = {
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
			 "chunks in flight (default 16)"),
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
		OPT_STRING(0, "password-file", &c->password_file, "FILE",
			   "PBS password or API token secret (first\n"
			   "line); also PBS_PASSWORD, PBS_PASSWORD_FILE,\n"
			   "PBS_PASSWORD_FD"),
		OPT_CALLBACK(0, "password-fd", &c->password_fd, "N",
			     cli_opt_fd, "the same, from descriptor N"),
		OPT_STRING(0, "s3-endpoint", &c->store.s3_endpoint, "URL",
			   "s3:// on another S3 server than AWS"),
		OPT_STRING(0, "s3-region", &c->s3_region_opt, "REGION",
			   "(default AWS_REGION or us-east-1)"),
		OPT_CALLBACK(0, "s3-addressing", &c->store.s3_addressing,
			     "MODE", opt_addressing,
			     "path or vhost (default: vhost on AWS)"),
		OPT_CALLBACK(0, "debug", NULL, "LIST", opt_debug,
			     "debug categories: fetch,http,store,... or all"),
		OPT_CALLBACK('q', "quiet", &c->quiet, NULL, opt_quiet,
			     "only errors"),
		OPT_END(),
	};

	_Static_assert(sizeof(t) <= sizeof(c->opts), "cli->opts too small");
	memcpy(c->opts, t, sizeof(t));
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
	if (c->secret) {
		explicit_bzero(c->secret, strlen(c->secret));
		free(c->secret);
	}
	if (c->passphrase) {
		explicit_bzero(c->passphrase, strlen(c->passphrase));
		free(c->passphrase);
	}
	if (c->s3_secret) {
		explicit_bzero(c->s3_secret, strlen(c->s3_secret));
		free(c->s3_secret);
	}
	if (c->s3_token) {
		explicit_bzero(c->s3_token, strlen(c->s3_token));
		free(c->s3_token);
	}
	free(c->s3_key_id);
	free(c->s3_region);
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

static int secret_from_fd_env(const char *name, char **out)
{
	const char *v = getenv(name);
	uint64_t fd;

	if (!v || !*v)
		return -ENOENT;
	if (parse_u64(v, &fd) || fd > 1024) {
		log_err("cannot use %s='%s': not a file descriptor", name, v);
		return -EINVAL;
	}
	return cli_read_secret_fd((int)fd, out);
}

int cli_read_secret(struct cli *c, const char *repo)
{
	struct pbs_repo r;
	enum store_kind kind;
	const char *env;
	char why[200];
	char *prompt;
	int ret;

	if (c->secret || !repo || store_repo_kind(repo, &kind) ||
	    kind != STORE_KIND_PBS || pbs_repo_parse(repo, &r, why, sizeof(why)))
		return 0;	/* store_open() says what is wrong */
	if (c->password_fd >= 0) {
		ret = cli_read_secret_fd(c->password_fd, &c->secret);
		if (ret)
			log_err("cannot read the password from descriptor %d: %s",
				c->password_fd, strerror(-ret));
		return ret;
	}
	if (c->password_file) {
		ret = cli_read_secret_file(c->password_file, &c->secret);
		if (ret)
			log_err("cannot read password file '%s': %s",
				c->password_file, strerror(-ret));
		return ret;
	}
	env = getenv("PBS_PASSWORD");
	if (env && *env) {
		c->secret = xstrdup(env);
		/*
		 * Wiped where it is (the block /proc/PID/environ shows),
		 * then unset: not for --on-complete or anything we start.
		 */
		explicit_bzero((char *)env, strlen(env));
		unsetenv("PBS_PASSWORD");
		return 0;
	}
	ret = secret_from_fd_env("PBS_PASSWORD_FD", &c->secret);
	if (ret != -ENOENT)
		return ret;
	env = getenv("PBS_PASSWORD_FILE");
	if (env && *env) {
		ret = cli_read_secret_file(env, &c->secret);
		if (ret)
			log_err("cannot read PBS_PASSWORD_FILE '%s': %s", env,
				strerror(-ret));
		return ret;
	}
	prompt = xasprintf("%s for \"%s\": ", r.token ? "Secret" : "Password",
			   r.auth_id);
	ret = prompt_secret(prompt, &c->secret);
	free(prompt);
	if (ret == -ENOTTY)
		return 0;	/* store_open() names what is missing */
	return ret;
}

const char *cli_repo_arg(int nargs, int want, char **argv, int *shift)
{
	const char *env = getenv("PBS_REPOSITORY");

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

/* Credentials and region for s3://, as the AWS tools find them. */
static void read_s3_credentials(struct cli *c)
{
	const char *profile = getenv("AWS_PROFILE");
	const char *v;
	char *file;
	char *section;

	if (!profile || !*profile)
		profile = "default";
	v = getenv("AWS_ACCESS_KEY_ID");
	if (v && *v && getenv("AWS_SECRET_ACCESS_KEY")) {
		c->s3_key_id = xstrdup(v);
		c->s3_secret = xstrdup(getenv("AWS_SECRET_ACCESS_KEY"));
		v = getenv("AWS_SESSION_TOKEN");
		c->s3_token = v && *v ? xstrdup(v) : NULL;
	} else {
		file = home_file("AWS_SHARED_CREDENTIALS_FILE",
				 ".aws/credentials");
		if (file) {
			c->s3_key_id = ini_get(file, profile,
					       "aws_access_key_id");
			c->s3_secret = ini_get(file, profile,
					       "aws_secret_access_key");
			c->s3_token = ini_get(file, profile,
					      "aws_session_token");
		}
		free(file);
	}
	if (c->s3_region_opt)
		c->s3_region = xstrdup(c->s3_region_opt);
	if (c->s3_region)
		return;
	v = getenv("AWS_REGION");
	if (!v || !*v)
		v = getenv("AWS_DEFAULT_REGION");
	if (v && *v) {
		c->s3_region = xstrdup(v);
		return;
	}
	file = home_file("AWS_CONFIG_FILE", ".aws/config");
	section = strcmp(profile, "default") ? xasprintf("profile %s", profile) :
					       xstrdup("default");
	if (file)
		c->s3_region = ini_get(file, section, "region");
	free(file);
	free(section);
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
	ret = cli_read_secret(c, repo);
	if (!ret)
		ret = cli_load_key(c);
	if (!strncmp(repo, "s3://", 5)) {
		const char *ep = getenv("AWS_ENDPOINT_URL_S3");

		read_s3_credentials(c);
		if (!ep || !*ep)
			ep = getenv("AWS_ENDPOINT_URL");
		if (!c->store.s3_endpoint && ep && *ep)
			c->store.s3_endpoint = ep;
		c->store.s3_key_id = c->s3_key_id;
		c->store.s3_secret = c->s3_secret;
		c->store.s3_token = c->s3_token;
		c->store.s3_region = c->s3_region;
	}
	c->store.url = repo;
	c->store.secret = c->secret;
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
