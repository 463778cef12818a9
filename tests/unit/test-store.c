/* SPDX-License-Identifier: GPL-2.0-or-later */
/* store: what a REPO argument names, PBS repository strings, and what
 * every backend shares (log locations, parallelism). */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pbs_repo),
		cmocka_unit_test(test_repo_kind),
		cmocka_unit_test(test_shared),
	};

	log_init("test-store", false, LOG_CRIT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
