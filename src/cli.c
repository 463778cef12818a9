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


int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "pbs-livemount %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'pbs-livemount %s --help')\n", cmd);
	return EXIT_USAGE;
}

void cli_init(struct cli *c)
{
	memset(c, 0, sizeof(*c));
	c->store.connections = 16;
	c->store.remote_timeout_ms = 60000;
	c->store.request_timeout_ms = 30000;
	c->passfd = -1;
	c->password_fd = -1;
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
	fprintf(stderr, "%s", prompt);
	tcsetattr(fd, TCSAFLUSH, &quiet);
	ret = cli_read_secret_fd(fd, out);
	tcsetattr(fd, TCSAFLUSH, &old);
	fprintf(stderr, "\n");
	return ret;
}

/* Passphrase from --passphrase-fd, --passphrase-file, env, or a tty. */
int cli_get_passphrase(struct cli *c, char **out)
{
	const char *env = getenv("PBS_ENCRYPTION_PASSWORD");
	int ret;

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
	if (ret == -ENOTTY)
		*out = NULL;	/* kdf-less key files need none */
	return ret == -ENOTTY ? 0 : ret;
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

/* Handle an option shared by repository commands; false if not ours. */
int cli_parse_repo_opt(struct cli *c, const char *cmd, int opt,
			  const char *arg, bool *handled)
{
	uint64_t v;
	char *secret = NULL;
	int ret;

	*handled = true;
	switch (opt) {
	case OPT_NS:
		c->ns = arg;
		return 0;
	case OPT_KEYFILE:
		c->keyfile = arg;
		return 0;
	case OPT_KEYFD:
		if (parse_u64(arg, &v) || v > 1024)
			return cli_usage_error(cmd, "bad --keyfd '%s'", arg);
		/* The descriptor's file, read like any key file. */
		snprintf(c->keyfd_path, sizeof(c->keyfd_path),
			 "/proc/self/fd/%u", (unsigned int)v);
		c->keyfile = c->keyfd_path;
		return 0;
	case OPT_PASSFILE:
		c->passfile = arg;
		return 0;
	case OPT_PASSFD:
		if (parse_u64(arg, &v) || v > 1024)
			return cli_usage_error(cmd, "bad --passphrase-fd '%s'", arg);
		c->passfd = (int)v;
		return 0;
	case OPT_CONNECTIONS:
		if (parse_u64(arg, &v) || !v || v > 256)
			return cli_usage_error(cmd, "--connections takes 1..256");
		c->store.connections = (unsigned int)v;
		return 0;
	case OPT_REMOTE_TIMEOUT:
		if (parse_duration_ms(arg, &v) || !v)
			return cli_usage_error(cmd, "bad --remote-timeout '%s'", arg);
		c->store.remote_timeout_ms = v;
		return 0;
	case OPT_REQUEST_TIMEOUT:
		if (parse_duration_ms(arg, &v) || !v)
			return cli_usage_error(cmd, "bad --request-timeout '%s'", arg);
		c->store.request_timeout_ms = v;
		return 0;
	case OPT_CA_FILE:
		c->store.ca_file = arg;
		return 0;
	case OPT_FINGERPRINT:
		c->store.fingerprint = arg;
		return 0;
	case OPT_INSECURE:
		c->store.insecure = 1;
		return 0;
	case OPT_LIMIT_RATE:
		if (parse_size(arg, &v))
			return cli_usage_error(cmd, "bad --limit-rate '%s'", arg);
		c->store.limit_rate = v;
		return 0;
	case OPT_AUTH_FILE:
		ret = cli_read_secret_file(arg, &secret);
		if (ret) {
			log_err("cannot read auth file '%s': %s", arg,
				strerror(-ret));
			return 1;
		}
		free(c->auth_header);
		c->auth_header = xasprintf("Authorization: %s", secret);
		explicit_bzero(secret, strlen(secret));
		free(secret);
		return 0;
	case OPT_PASSWORD_FILE:
		c->password_file = arg;
		return 0;
	case OPT_PASSWORD_FD:
		if (parse_u64(arg, &v) || v > 1024)
			return cli_usage_error(cmd, "bad --password-fd '%s'",
					       arg);
		c->password_fd = (int)v;
		return 0;
	case OPT_S3_ENDPOINT:
		c->store.s3_endpoint = arg;
		return 0;
	case OPT_S3_REGION:
		free(c->s3_region);
		c->s3_region = xstrdup(arg);
		return 0;
	case OPT_S3_ADDRESSING:
		if (strcmp(arg, "path") && strcmp(arg, "vhost"))
			return cli_usage_error(cmd, "--s3-addressing takes path "
					       "or vhost");
		c->store.s3_addressing = arg;
		return 0;
	case OPT_DEBUG:
		if (log_set_debug(arg))
			return cli_usage_error(cmd, "unknown debug category in '%s'",
					   arg);
		return 0;
	case 'q':
		c->quiet = true;
		log_init("pbs-livemount", false, LOG_WARNING);
		return 0;
	default:
		*handled = false;
		return 0;
	}
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
	if (!c->auth_header && env && *env)
		c->auth_header = xasprintf("Authorization: %s", env);
	c->store.auth_header = c->auth_header;
	ret = store_repo_kind(repo, &kind);
	if (ret)
		return ret;
	if (kind == STORE_KIND_DIR) {
		/* Valid after a daemon changes to "/". */
		path = cli_abs_path(repo);
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

int cli_exit_code(int ret)
{
	return ret ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Paths stay valid after the daemon changes to "/". */
char *cli_abs_path(const char *p)
{
	char cwd[PATH_MAX];

	if (!p || p[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return p ? xstrdup(p) : NULL;
	return xasprintf("%s/%s", cwd, p);
}
