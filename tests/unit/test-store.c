/* SPDX-License-Identifier: GPL-2.0-or-later */
/* store: what a REPO argument names, PBS repository strings, what
 * every backend shares (log locations, parallelism), the settings and
 * their packing for another process, and where the PBS and S3 backends
 * find credentials, given a made-up environment. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "store.h"
#include "store_backend.h"

static void parses(const char *spec, const char *auth, bool token,
		   const char *host, unsigned int port, const char *store)
{
	struct pbs_repo r;
	char why[200] = "";

	if (pbs_repo_parse(spec, &r, why, sizeof(why)))
		fail_msg("'%s' refused: %s", spec, why);
	assert_string_equal(r.auth_id, auth);
	assert_int_equal(r.token, token);
	assert_string_equal(r.host, host);
	assert_int_equal(r.port, port);
	assert_string_equal(r.store, store);
}

static void refuses(const char *spec, const char *why_part)
{
	struct pbs_repo r;
	char why[200] = "";

	assert_int_equal(pbs_repo_parse(spec, &r, why, sizeof(why)), -EINVAL);
	if (!strstr(why, why_part))
		fail_msg("'%s': reason '%s' lacks '%s'", spec, why, why_part);
}

static void test_pbs_repo(void **state)
{
	(void)state;
	parses("tank", "root@pam", false, "localhost", 8007, "tank");
	parses("pbs.example:tank", "root@pam", false, "pbs.example", 8007,
	       "tank");
	parses("pbs.example:8443:tank", "root@pam", false, "pbs.example", 8443,
	       "tank");
	parses("alice@pbs@10.0.0.5:tank", "alice@pbs", false, "10.0.0.5", 8007,
	       "tank");
	parses("root@pam!mount-1@pbs:8007:s_2", "root@pam!mount-1", true, "pbs",
	       8007, "s_2");
	parses("u@pve@[fd00::1]:tank", "u@pve", false, "fd00::1", 8007, "tank");
	parses("u@pve!t@[::1]:9000:tank", "u@pve!t", true, "::1", 9000, "tank");
	refuses("host:0:tank", "bad port");
	refuses("host:65536:tank", "bad port");
	refuses("host:x1:tank", "bad port");
	refuses("host:", "datastore");
	refuses("host:bad/store", "datastore");
	refuses("host:-x", "datastore");
	refuses("@host:tank", "user");
	refuses("user@host:tank", "user");	/* no realm */
	refuses("u@r!@host:tank", "user");
	refuses("u@r@ho st:tank", "bad host");
	refuses("u@r@[::1:tank", "IPv6");
	refuses("u@r@[::g]:tank", "IPv6");
}

static void test_repo_kind(void **state)
{
	char dir[64];
	char cwd[4096];
	enum store_kind k;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test-store.%d", (int)getpid());
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(mkdir("ds", 0700), 0);
	assert_int_equal(mkdir("host:tank", 0700), 0);

	assert_int_equal(store_repo_kind("https://x/y", &k), 0);
	assert_int_equal(k, STORE_KIND_URL);
	assert_int_equal(store_repo_kind("/srv/store", &k), 0);
	assert_int_equal(k, STORE_KIND_DIR);
	assert_int_equal(store_repo_kind("./host:tank", &k), 0);
	assert_int_equal(k, STORE_KIND_DIR);
	assert_int_equal(store_repo_kind("data/store", &k), 0);
	assert_int_equal(k, STORE_KIND_DIR);
	assert_int_equal(store_repo_kind("ds", &k), 0);
	assert_int_equal(k, STORE_KIND_DIR);
	assert_int_equal(store_repo_kind("pbs:tank", &k), 0);
	assert_int_equal(k, STORE_KIND_PBS);
	assert_int_equal(store_repo_kind("root@pam!t@[::1]:tank", &k), 0);
	assert_int_equal(k, STORE_KIND_PBS);
	/* A bare name that is no directory, and a name that is both. */
	assert_int_equal(store_repo_kind("tank", &k), -EINVAL);
	assert_int_equal(store_repo_kind("host:tank", &k), -EINVAL);

	assert_int_equal(rmdir("host:tank"), 0);
	assert_int_equal(rmdir("ds"), 0);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(rmdir(dir), 0);
}

/* A datastore directory and an http URL: log locations and how many
 * chunks are worth having in flight. */
static void test_shared(void **state)
{
	struct store_conf conf = { .connections = 64 };
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct store *s = NULL;
	char where[200];

	(void)state;
	conf.url = "/tmp";
	assert_int_equal(store_open(&conf, &s), 0);
	store_describe(s, "vm/1/index.json.blob", where, sizeof(where));
	assert_string_equal(where, "/tmp/vm/1/index.json.blob");
	/* Local: CPU-bound, two per CPU at the most. */
	assert_int_equal(store_parallelism(s, 64), 2 * cpus);
	assert_int_equal(store_parallelism(s, 1), 1);
	store_close(s);

	conf.url = "http://127.0.0.1:9/ds";
	assert_int_equal(store_open(&conf, &s), 0);
	store_describe(s, ".chunks/abcd/x", where, sizeof(where));
	assert_string_equal(where, "http://127.0.0.1:9/ds/.chunks/abcd/x");
	/* Remote: round trips, as many as asked. */
	assert_int_equal(store_parallelism(s, 64), 64);
	store_close(s);
}

static void test_settings(void **state)
{
	struct store_conf conf = { 0 };
	struct store_conf back = { 0 };
	char *packed;
	char key[16];

	(void)state;
	assert_null(store_conf_get(&conf, "a"));
	assert_int_equal(store_conf_set(&conf, "a", "1"), 0);
	assert_int_equal(store_conf_set(&conf, "b", "x=y\n\x01\xff"), 0);
	assert_int_equal(store_conf_set(&conf, "empty", ""), 0);
	assert_int_equal(store_conf_set(&conf, "a", "2"), 0);
	assert_string_equal(store_conf_get(&conf, "a"), "2");
	assert_int_equal(conf.nset, 3);
	/* Another process gets every byte back. */
	packed = store_conf_pack(&conf);
	assert_int_equal(store_conf_unpack(&back, packed), 0);
	free(packed);
	assert_int_equal(back.nset, 3);
	assert_string_equal(store_conf_get(&back, "b"), "x=y\n\x01\xff");
	assert_string_equal(store_conf_get(&back, "empty"), "");
	assert_int_equal(store_conf_unpack(&back, "a=zz\n"), -EINVAL);
	assert_int_equal(store_conf_unpack(&back, "novalue\n"), -EINVAL);
	/* Removed; and a full table says so. */
	assert_int_equal(store_conf_set(&conf, "a", NULL), 0);
	assert_null(store_conf_get(&conf, "a"));
	assert_string_equal(store_conf_get(&conf, "empty"), "");
	for (int i = 0; conf.nset < STORE_SETTINGS_MAX; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		assert_int_equal(store_conf_set(&conf, key, "v"), 0);
	}
	assert_int_equal(store_conf_set(&conf, "one-more", "v"), -ENOSPC);
	store_conf_release(&conf);
	store_conf_release(&back);
	assert_int_equal(conf.nset, 0);
}

/* ---- a made-up environment ---- */

static const char *const *fake_vars;	/* "NAME", "value", ..., NULL */
static char fake_dropped[64];
static const char *fake_ini;		/* the one file's text, or NULL */

static const char *fake_get(const char *name)
{
	for (const char *const *v = fake_vars; v && *v; v += 2)
		if (!strcmp(*v, name))
			return v[1];
	return NULL;
}

static void fake_drop(const char *name)
{
	snprintf(fake_dropped, sizeof(fake_dropped), "%s", name);
}

static int fake_read_fd(int fd, char **out)
{
	*out = fd == 7 ? strdup("from-fd") : NULL;
	return *out ? 0 : -EBADF;
}

static int fake_read_file(const char *path, char **out)
{
	*out = !strcmp(path, "/pw") ? strdup("from-file") : NULL;
	return *out ? 0 : -ENOENT;
}

static char *fake_home_file(const char *env, const char *rel)
{
	(void)env;
	return fake_ini ? strdup(rel) : NULL;
}

/* "[section] key=value" lines of fake_ini, by "section/key". */
static char *fake_ini_get(const char *path, const char *section,
			  const char *key)
{
	char want[128];
	const char *p;

	(void)path;
	snprintf(want, sizeof(want), "%s/%s=", section, key);
	p = fake_ini ? strstr(fake_ini, want) : NULL;
	if (!p)
		return NULL;
	p += strlen(want);
	return strndup(p, strcspn(p, ";"));
}

static int fake_prompt(const char *text, char **out)
{
	(void)text;
	(void)out;
	return -ENOTTY;
}

static const struct store_env fake_env = {
	.get = fake_get,
	.drop = fake_drop,
	.read_fd = fake_read_fd,
	.read_file = fake_read_file,
	.home_file = fake_home_file,
	.ini_get = fake_ini_get,
	.prompt = fake_prompt,
};

/* The credentials of @url with @vars and options @opts ("k", "v", ...). */
static void creds(struct store_conf *conf, const char *url,
		  const char *const *vars, const char *const *opts)
{
	memset(conf, 0, sizeof(*conf));
	fake_vars = vars;
	fake_dropped[0] = '\0';
	for (; opts && *opts; opts += 2)
		assert_int_equal(store_conf_set(conf, opts[0], opts[1]), 0);
	conf->url = url;
	assert_int_equal(store_credentials(conf, &fake_env), 0);
}

static void test_pbs_credentials(void **state)
{
	const char *url = "root@pam@pbs.example:store1";
	struct store_conf c;

	(void)state;
	/* The options first, then the variables in PBS's order. */
	creds(&c, url, (const char *[]){ "PBS_PASSWORD", "env", NULL },
	      (const char *[]){ "password-fd", "7", NULL });
	assert_string_equal(store_conf_get(&c, "password"), "from-fd");
	assert_string_equal(fake_dropped, "");
	store_conf_release(&c);
	creds(&c, url, (const char *[]){ "PBS_PASSWORD", "env", NULL },
	      (const char *[]){ "password-file", "/pw", NULL });
	assert_string_equal(store_conf_get(&c, "password"), "from-file");
	store_conf_release(&c);
	creds(&c, url, (const char *[]){ "PBS_PASSWORD", "env",
					 "PBS_PASSWORD_FD", "7", NULL }, NULL);
	assert_string_equal(store_conf_get(&c, "password"), "env");
	assert_string_equal(fake_dropped, "PBS_PASSWORD");
	store_conf_release(&c);
	creds(&c, url, (const char *[]){ "PBS_PASSWORD_FD", "7",
					 "PBS_PASSWORD_FILE", "/pw", NULL },
	      NULL);
	assert_string_equal(store_conf_get(&c, "password"), "from-fd");
	store_conf_release(&c);
	creds(&c, url, (const char *[]){ "PBS_PASSWORD_FILE", "/pw", NULL },
	      NULL);
	assert_string_equal(store_conf_get(&c, "password"), "from-file");
	store_conf_release(&c);
	/* None, no terminal: nothing, and store_open() will say so. */
	creds(&c, url, NULL, NULL);
	assert_null(store_conf_get(&c, "password"));
	store_conf_release(&c);
	/* Other stores need none. */
	creds(&c, "/srv/ds", (const char *[]){ "PBS_PASSWORD", "x", NULL },
	      NULL);
	assert_int_equal(c.nset, 0);
	assert_string_equal(fake_dropped, "");
}

static void test_s3_credentials(void **state)
{
	const char *url = "s3://bucket/store";
	struct store_conf c;

	(void)state;
	/* Keys from the environment, both or neither. */
	fake_ini = "default/aws_access_key_id=FILEKEY;"
		   "default/aws_secret_access_key=FILESECRET;"
		   "default/aws_session_token=FILETOKEN;"
		   "profile p/region=eu-north-1;"
		   "p/aws_access_key_id=PKEY;p/aws_secret_access_key=PS;";
	creds(&c, url, (const char *[]){ "AWS_ACCESS_KEY_ID", "ENVKEY",
					 "AWS_SECRET_ACCESS_KEY", "ENVSECRET",
					 "AWS_REGION", "ap-south-1", NULL },
	      NULL);
	assert_string_equal(store_conf_get(&c, "s3-key-id"), "ENVKEY");
	assert_string_equal(store_conf_get(&c, "s3-secret"), "ENVSECRET");
	assert_null(store_conf_get(&c, "s3-token"));
	assert_string_equal(store_conf_get(&c, "s3-region"), "ap-south-1");
	store_conf_release(&c);
	creds(&c, url, (const char *[]){ "AWS_ACCESS_KEY_ID", "ENVKEY",
					 NULL }, NULL);
	assert_string_equal(store_conf_get(&c, "s3-key-id"), "FILEKEY");
	assert_string_equal(store_conf_get(&c, "s3-secret"), "FILESECRET");
	assert_string_equal(store_conf_get(&c, "s3-token"), "FILETOKEN");
	assert_null(store_conf_get(&c, "s3-region"));
	store_conf_release(&c);
	/* A profile, its region from the config file; the option wins
	 * over variables; the endpoint from AWS_ENDPOINT_URL_S3 first. */
	creds(&c, url, (const char *[]){ "AWS_PROFILE", "p",
					 "AWS_ENDPOINT_URL", "http://b",
					 "AWS_ENDPOINT_URL_S3", "http://a",
					 NULL }, NULL);
	assert_string_equal(store_conf_get(&c, "s3-key-id"), "PKEY");
	assert_string_equal(store_conf_get(&c, "s3-region"), "eu-north-1");
	assert_string_equal(store_conf_get(&c, "s3-endpoint"), "http://a");
	store_conf_release(&c);
	creds(&c, url, (const char *[]){ "AWS_REGION", "ap-south-1",
					 "AWS_ENDPOINT_URL", "http://b", NULL },
	      (const char *[]){ "s3-region", "us-west-2", "s3-endpoint",
				"http://mine", NULL });
	assert_string_equal(store_conf_get(&c, "s3-region"), "us-west-2");
	assert_string_equal(store_conf_get(&c, "s3-endpoint"), "http://mine");
	store_conf_release(&c);
	fake_ini = NULL;
}

static void collect_option(const struct store_option *o, void *arg)
{
	char *names = arg;

	strcat(names, o->name);
	strcat(names, " ");
}

static void test_options(void **state)
{
	char names[256] = "";
	char why[100];

	(void)state;
	store_each_option(collect_option, names);
	assert_string_equal(names, "password-file password-fd s3-endpoint "
			    "s3-region s3-addressing ");
	assert_int_equal(store_check_fd("12", why, sizeof(why)), 0);
	assert_int_equal(store_check_fd("x", why, sizeof(why)), -EINVAL);
}

/* PBS lists the parent and deeper levels too: the children remain. */
static void test_pbs_namespaces(void **state)
{
	static const char body[] =
		"{\"data\":[{\"ns\":\"\"},{\"ns\":\"a\"},{\"ns\":\"a/b\"},"
		"{\"ns\":\"a/b/c\"},{\"ns\":\"ab\"},{\"ns\":\"a/.x\"},"
		"{\"comment\":\"no ns\"},{\"ns\":7}]}";
	char **names = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(store_pbs_parse_ns(body, strlen(body), "", &names,
					    &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "a");
	assert_string_equal(names[1], "ab");
	store_free_names(names, n);
	assert_int_equal(store_pbs_parse_ns(body, strlen(body), "a", &names,
					    &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "b");
	store_free_names(names, n);
	assert_int_equal(store_pbs_parse_ns("[]", 2, "", &names, &n),
			 -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pbs_repo),
		cmocka_unit_test(test_repo_kind),
		cmocka_unit_test(test_shared),
		cmocka_unit_test(test_settings),
		cmocka_unit_test(test_pbs_credentials),
		cmocka_unit_test(test_s3_credentials),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_pbs_namespaces),
	};

	log_init("test-store", false, LOG_CRIT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
