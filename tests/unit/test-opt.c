/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * opt: long options match exactly (a prefix is refused), every form
 * getopt accepts still parses, values are checked against the row's
 * bounds, and positionals keep their order; parse_size() takes decimals
 * and says "too large".
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "opt.h"
#include "util.h"

struct vars {
	bool zeroed;
	bool quiet;
	bool force;
	const char *name;
	char *path;
	struct opt_list list;
	unsigned int n;
	uint64_t size;
	uint64_t ms;
};

/* Parse a NULL-terminated argument list; positionals into @pos. */
static int run(struct vars *v, char **pos, int *npos, ...)
{
	const struct opt repo[] = {
		OPT_BOOL('q', "quiet", &v->quiet, "only errors"),
		OPT_END(),
	};
	const struct opt t[] = {
		OPT_BOOL(0, "target-zeroed", &v->zeroed, "zeros"),
		OPT_BOOL('f', "force", &v->force, "force"),
		OPT_STRING('o', "name", &v->name, "NAME", "a name"),
		OPT_PATH("path", &v->path, "PATH", "a path"),
		OPT_LIST("archive", &v->list, "A", "repeatable"),
		OPT_UINT("count", &v->n, "N", 1, 256, "a count"),
		OPT_SIZE("cache-size", &v->size, "SIZE", 16u << 20, 1ull << 40,
			 "a size"),
		OPT_DURATION("timeout", &v->ms, "SECS", 1, 0, "a time"),
		OPT_INCLUDE(repo, "shared:"),
		OPT_END(),
	};
	const struct opt_cmd cmd = { "test", "[options] ARGS", NULL, t };
	char *argv[32] = { (char *)"test" };
	int argc = 1;
	va_list ap;
	char *a;
	int ret;

	va_start(ap, npos);
	while ((a = va_arg(ap, char *)))
		argv[argc++] = a;
	va_end(ap);
	ret = opt_parse(&cmd, argc, argv, npos);
	for (int i = 0; !ret && i < *npos; i++)
		pos[i] = argv[1 + i];
	return ret;
}

static void release(struct vars *v)
{
	free(v->path);
	opt_list_release(&v->list);
	memset(v, 0, sizeof(*v));
}

static void test_exact(void **state)
{
	struct vars v = { 0 };
	char *pos[8];
	int n;

	(void)state;
	/* getopt_long would take "--target" for "--target-zeroed". */
	assert_int_equal(run(&v, pos, &n, "--target", "x", NULL), EXIT_USAGE);
	assert_false(v.zeroed);
	assert_int_equal(run(&v, pos, &n, "--target-zero", NULL), EXIT_USAGE);
	assert_int_equal(run(&v, pos, &n, "--target-zeroed", "a", NULL), 0);
	assert_true(v.zeroed);
	assert_int_equal(n, 1);
	assert_string_equal(pos[0], "a");
	assert_int_equal(run(&v, pos, &n, "--nope", NULL), EXIT_USAGE);
	assert_int_equal(run(&v, pos, &n, "-x", NULL), EXIT_USAGE);
	release(&v);
}

static void test_forms(void **state)
{
	struct vars v = { 0 };
	char *pos[8];
	int n;

	(void)state;
	assert_int_equal(run(&v, pos, &n, "a", "--name=x", "b", "-qf", "-oy",
			     "--count", "7", "--", "--force", "-", NULL), 0);
	assert_string_equal(v.name, "y");
	assert_true(v.quiet);
	assert_true(v.force);
	assert_int_equal(v.n, 7);
	assert_int_equal(n, 4);
	assert_string_equal(pos[0], "a");
	assert_string_equal(pos[1], "b");
	assert_string_equal(pos[2], "--force");
	assert_string_equal(pos[3], "-");
	release(&v);
	assert_int_equal(run(&v, pos, &n, "-o", "z", "-", NULL), 0);
	assert_string_equal(v.name, "z");
	assert_int_equal(n, 1);
	assert_string_equal(pos[0], "-");
	/* A flag takes no value; an option needs one. */
	assert_int_equal(run(&v, pos, &n, "--force=1", NULL), EXIT_USAGE);
	assert_int_equal(run(&v, pos, &n, "--name", NULL), EXIT_USAGE);
	assert_int_equal(run(&v, pos, &n, "-o", NULL), EXIT_USAGE);
	assert_int_equal(run(&v, pos, &n, "--help", NULL), OPT_HELP_SHOWN);
	assert_int_equal(run(&v, pos, &n, "-h", NULL), OPT_HELP_SHOWN);
	release(&v);
}

static void test_values(void **state)
{
	struct vars v = { 0 };
	char *pos[8];
	int n;

	(void)state;
	assert_int_equal(run(&v, pos, &n, "--archive", "a", "--archive=b",
			     "--path", "rel", "--cache-size", "1.5G",
			     "--timeout", "500ms", NULL), 0);
	assert_int_equal(v.list.n, 2);
	assert_string_equal(v.list.v[0], "a");
	assert_string_equal(v.list.v[1], "b");
	assert_true(v.path[0] == '/');
	assert_true(v.size == 3ull << 29);
	assert_int_equal(v.ms, 500);
	release(&v);
	assert_int_equal(run(&v, pos, &n, "--cache-size", "abc", NULL),
			 EXIT_USAGE);
	assert_int_equal(run(&v, pos, &n, "--cache-size", "1M", NULL),
			 EXIT_USAGE);
	assert_int_equal(run(&v, pos, &n, "--cache-size", "2T", NULL),
			 EXIT_USAGE);
	assert_int_equal(run(&v, pos, &n, "--cache-size", "99999999999P",
			     NULL), EXIT_USAGE);
	assert_int_equal(run(&v, pos, &n, "--count", "0", NULL), EXIT_USAGE);
	assert_int_equal(run(&v, pos, &n, "--count", "257", NULL),
			 EXIT_USAGE);
	assert_int_equal(run(&v, pos, &n, "--count", "-1", NULL), EXIT_USAGE);
	assert_int_equal(run(&v, pos, &n, "--timeout", "0", NULL),
			 EXIT_USAGE);
	release(&v);
}

/* A command's entry point: go on, or end with the help's 0 or a usage
 * error's code. */
static void test_parse_main(void **state)
{
	bool quiet = false;
	const struct opt t[] = {
		OPT_BOOL('q', "quiet", &quiet, "only errors"),
		OPT_END(),
	};
	const struct opt_cmd cmd = { "test", "[options]", NULL, t };
	char *go[] = { (char *)"test", (char *)"-q", (char *)"x" };
	char *help[] = { (char *)"test", (char *)"--help" };
	char *bad[] = { (char *)"test", (char *)"--nope" };
	int nargs = 0;
	int code = 42;
	FILE *saved = stdout;

	(void)state;
	assert_true(opt_parse_main(&cmd, 3, go, &nargs, &code));
	assert_int_equal(code, 0);
	assert_int_equal(nargs, 1);
	assert_true(quiet);
	/* The help goes to stdout: not into the test's output. */
	stdout = fopen("/dev/null", "w");
	assert_false(opt_parse_main(&cmd, 2, help, &nargs, &code));
	fclose(stdout);
	stdout = saved;
	assert_int_equal(code, 0);
	assert_false(opt_parse_main(&cmd, 2, bad, &nargs, &code));
	assert_int_equal(code, EXIT_USAGE);
}

static void test_parse_size(void **state)
{
	static const struct {
		const char *s;
		int ret;
		uint64_t v;
	} cases[] = {
		{ "4096", 0, 4096 },
		{ "4K", 0, 4096 },
		{ "4KiB", 0, 4096 },
		{ "4KB", 0, 4096 },
		{ "512B", 0, 512 },
		{ "1.5G", 0, 3ull << 29 },
		{ "0.5M", 0, 1u << 19 },
		{ "1.25k", 0, 1280 },
		{ "2T", 0, 2ull << 40 },
		{ "16383P", 0, 16383ull << 50 },
		{ "16384P", -ERANGE, 0 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "1.5", -EINVAL, 0 },
		{ "abc", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "-1M", -EINVAL, 0 },
		{ ".5G", -EINVAL, 0 },
		{ "1.G", -EINVAL, 0 },
		{ "1X", -EINVAL, 0 },
		{ "1 M", -EINVAL, 0 },
		{ "1MM", -EINVAL, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 0;

		assert_int_equal(parse_size(cases[i].s, &v), cases[i].ret);
		if (!cases[i].ret)
			assert_true(v == cases[i].v);
	}
}

static void test_format_size(void **state)
{
	char b[32];

	(void)state;
	opt_format_size(16u << 20, b, sizeof(b));
	assert_string_equal(b, "16M");
	opt_format_size(3ull << 29, b, sizeof(b));
	assert_string_equal(b, "1.5G");
	opt_format_size(1000, b, sizeof(b));
	assert_string_equal(b, "1000");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact),
		cmocka_unit_test(test_forms),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_parse_main),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_format_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
