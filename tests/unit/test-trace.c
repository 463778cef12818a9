/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trace: default paths, round trips, and what a damaged file gives. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "trace.h"
#include "util.h"
#include "scratch.h"

static int setup(void **state)
{
	(void)state;
	return scratch_setup("test-trace");
}

static int teardown(void **state)
{
	(void)state;
	return scratch_teardown();
}

static void test_default_path(void **state)
{
	char *p;

	(void)state;
	/* STORE is 16 hex digits; the time is dropped. */
	p = trace_default_path("/t", "/srv/store/",
			       "ns/a/vm/100/2023-11-14T22:13:20Z",
			       "drive-scsi0.img.fidx");
	assert_non_null(strstr(p, "/ns/a/vm/100/drive-scsi0.trace"));
	assert_int_equal(strlen(p), strlen("/t/") + 16 +
				    strlen("/ns/a/vm/100/drive-scsi0.trace"));
	assert_true(!strncmp(p, "/t/", 3));
	free(p);
}

static void test_roundtrip(void **state)
{
	uint64_t in[] = { 37, 5, 20, 5, 11, 99 };
	uint64_t *out = NULL;
	size_t n = 0;
	char *path = xasprintf("%s/a/b/disk.trace", scratch_dir);

	(void)state;
	assert_int_equal(trace_load(path, 4096, 50, &out, &n), -ENOENT);
	assert_int_equal(trace_save(path, 4096, in, 6), 0);
	/* repeats and chunks past the disk's end are dropped */
	assert_int_equal(trace_load(path, 4096, 50, &out, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(out[0], 37);
	assert_int_equal(out[1], 5);
	assert_int_equal(out[2], 20);
	assert_int_equal(out[3], 11);
	free(out);
	/* another chunk size: not this disk's trace */
	assert_int_equal(trace_load(path, 8192, 50, &out, &n), -ESTALE);
	free(path);
}

static void load_text(const char *text, int want)
{
	char *path = xasprintf("%s/x.trace", scratch_dir);
	uint64_t *out = NULL;
	size_t n = 0;

	assert_int_equal(mkdir_p(scratch_dir, 0755), 0);
	assert_int_equal(write_file_atomic(path, text, strlen(text), 0644), 0);
	assert_int_equal(trace_load(path, 4096, 100, &out, &n), want);
	free(out);
	free(path);
}

static void test_damaged(void **state)
{
	(void)state;
	load_text("pbs-livemount boot trace 1\nchunk-size 4096\n1\n2", 0);
	load_text("pbs-livemount boot trace 1\nchunk-size 4096\n", 0);
	load_text("", -EBADMSG);
	load_text("pbs-livemount boot trace 2\nchunk-size 4096\n", -EBADMSG);
	load_text("pbs-livemount boot trace 1\n", -EBADMSG);
	load_text("pbs-livemount boot trace 1\nchunk-size x\n", -EBADMSG);
	load_text("pbs-livemount boot trace 1\nchunk-size 4096\n-1\n",
		  -EBADMSG);
	load_text("pbs-livemount boot trace 1\nchunk-size 4096\n"
		  "99999999999999999999999\n", -EBADMSG);
	load_text("pbs-livemount boot trace 1\nchunk-size 4096\n 3\n",
		  -EBADMSG);
}

/* At most TRACE_MAX_CHUNKS are written and read. */
static void test_cap(void **state)
{
	uint64_t *in = xcalloc(TRACE_MAX_CHUNKS + 10, sizeof(*in));
	char *path = xasprintf("%s/cap.trace", scratch_dir);
	uint64_t *out = NULL;
	size_t n = 0;

	(void)state;
	for (size_t i = 0; i < TRACE_MAX_CHUNKS + 10; i++)
		in[i] = i;
	assert_int_equal(trace_save(path, 4096, in, TRACE_MAX_CHUNKS + 10), 0);
	assert_int_equal(trace_load(path, 4096, 1u << 20, &out, &n), 0);
	assert_int_equal(n, TRACE_MAX_CHUNKS);
	assert_int_equal(out[TRACE_MAX_CHUNKS - 1], TRACE_MAX_CHUNKS - 1);
	free(out);
	free(in);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_path),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_damaged),
		cmocka_unit_test(test_cap),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
