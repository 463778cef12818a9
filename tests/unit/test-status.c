/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * status: the ".status" writer and reader agree.  Facts of a mount with
 * two disks (one restored in place, a name that needs escaping, a stall
 * and a failed cut-over) are written, parsed back field by field, and
 * printed as `pbs-livemount status` prints them.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "status.h"

static double num(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("field '%s' missing", key);
	return json_object_get_double(v);
}

static const char *str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("field '%s' missing", key);
	return json_object_get_string(v);
}

static void test_roundtrip(void **state)
{
	struct status_disk disks[2] = {
		{ .name = "drive-\"scsi0\".img", .rate = 2048,
		  .st = { .size = 4 << 20, .present_bytes = 1 << 20,
			  .fetched_bytes = 1 << 20, .fetched_chunks = 1,
			  .chunks_total = 4, .chunks_incomplete = 3 } },
		{ .name = "disk.img", .rate = 0,
		  .st = { .size = 8 << 20, .present_bytes = 8 << 20,
			  .in_place = true, .target_chunks = 1,
			  .target_bytes = 4 << 20, .check_total = 2,
			  .check_done = 2, .check_bytes = 8 << 20,
			  .check_ns = 1000000000, .chunks_total = 2,
			  .fetched_chunks = 1, .complete = true } },
	};
	struct status_facts f = {
		.pid = 42, .supervisor = 41, .restarts = 2,
		.restart_cause = "killed by signal 9", .guest_wait_ms = 65,
		.state = "stalled",
		.stalled = "cannot write target '/t': No space left on device",
		.cut = STATUS_CUT_FAILED, .cut_error = "no \"drive\" found",
		.snapshot = "vm/100/2024-01-01T00:00:00Z", .started = 1700000000,
		.elapsed = 12, .took = -1, .stream_errors = 3,
		.cache = { .hits = 3, .misses = 1, .bytes = 100 },
		.ndisks = 2, .disks = disks,
	};
	json_object *doc;
	json_object *d;
	json_object *x;
	char *text = NULL;
	char *printed = NULL;
	size_t plen = 0;
	FILE *out;

	(void)state;
	assert_int_equal(status_doc_write(&f, &text), 0);
	assert_non_null(strchr(text, '\n'));
	doc = json_tokener_parse(text);
	assert_non_null(doc);
	assert_int_equal(num(doc, "version"), 1);
	assert_int_equal(num(doc, "pid"), 42);
	assert_int_equal(num(doc, "restarts"), 2);
	assert_string_equal(str(doc, "state"), "stalled");
	assert_string_equal(str(doc, "stalled"), f.stalled);
	assert_string_equal(str(doc, "cutover_error"), f.cut_error);
	assert_false(json_object_object_get_ex(doc, "cutover", NULL));
	assert_false(json_object_object_get_ex(doc, "seeds", NULL));
	assert_int_equal(num(doc, "took"), -1);
	assert_true(json_object_object_get_ex(doc, "last_restart", &x));
	assert_string_equal(str(x, "cause"), "killed by signal 9");
	assert_int_equal(num(x, "guest_wait_ms"), 65);
	assert_true(json_object_object_get_ex(doc, "cache", &x));
	assert_true(num(x, "hit_rate") == 0.75);
	assert_true(json_object_object_get_ex(doc, "disks", &x));
	assert_int_equal(json_object_array_length(x), 2);
	d = json_object_array_get_idx(x, 0);
	assert_string_equal(str(d, "name"), disks[0].name);
	assert_true(num(d, "percent") == 25.0);
	/* Stalled: no ETA. */
	assert_int_equal(num(d, "eta"), -1);
	assert_false(json_object_object_get_ex(d, "reused", NULL));
	d = json_object_array_get_idx(x, 1);
	assert_true(json_object_object_get_ex(d, "reused", &x));
	assert_int_equal(num(x, "not_downloaded"), 4 << 20);
	assert_true(json_object_object_get_ex(d, "check", &x));
	assert_int_equal(num(x, "rate"), 8 << 20);

	out = open_memstream(&printed, &plen);
	assert_non_null(out);
	status_print(doc, out);
	fclose(out);
	assert_non_null(strstr(printed, "vm/100/2024-01-01T00:00:00Z: stalled "
				"(cannot write target '/t': No space left"));
	assert_non_null(strstr(printed, "cut-over failed (no \"drive\" found)"));
	assert_non_null(strstr(printed, "2 server restarts (the last: killed "
				"by signal 9; the guest waited 65 ms)"));
	assert_non_null(strstr(printed, " 25.00%"));
	assert_non_null(strstr(printed, "reused 4.0 MiB: 1 chunks from the "
				"target, 0 from seeds; 1 fetched; checked 2 "
				"of 2 at 8.0 MiB/s"));
	free(printed);
	json_object_put(doc);
	free(text);
}

/* A complete mount that cut over, with seeds. */
static void test_cut_over(void **state)
{
	struct status_facts f = {
		.state = "cut over", .snapshot = "vm/1/x", .took = 9.5,
		.cut = STATUS_CUT_DONE, .cut_took = 0.0726, .cut_moved = 1,
		.has_seeds = true,
		.seeds = { .bytes = 10, .ready = true, .used = 4 },
	};
	json_object *doc;
	json_object *x;
	char *text = NULL;

	(void)state;
	assert_int_equal(status_doc_write(&f, &text), 0);
	doc = json_tokener_parse(text);
	assert_non_null(doc);
	assert_true(json_object_object_get_ex(doc, "cutover", &x));
	assert_true(num(x, "took") == 0.073);
	assert_int_equal(num(x, "disks"), 1);
	assert_true(json_object_object_get_ex(doc, "seeds", &x));
	assert_true(json_object_get_boolean(json_object_object_get(x,
								  "ready")));
	assert_int_equal(num(x, "used"), 4);
	assert_false(json_object_object_get_ex(doc, "last_restart", NULL));
	assert_false(json_object_object_get_ex(doc, "stalled", NULL));
	assert_int_equal(json_object_array_length(
				 json_object_object_get(doc, "disks")), 0);
	json_object_put(doc);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_cut_over),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
