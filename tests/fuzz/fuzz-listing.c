/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What servers answer to listings: nginx JSON directory indexes, the PBS
 * API's group and snapshot lists, and S3 ListObjectsV2 results.  Every
 * name returned is a safe single path component.
 */
#include "config.h"

#include <string.h>

#include "fuzz.h"
#include "store.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	return 0;
}

static void check(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!names[i][0] || strchr(names[i], '/') ||
		    !strcmp(names[i], "..") || !strcmp(names[i], "."))
			abort();
	store_free_names(names, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char **names = NULL;
	size_t n = 0;

	if (!store_http_parse_listing((const char *)data, size, &names, &n))
		check(names, n);
	if (!store_pbs_parse_list((const char *)data, size, "vm", 1, &names, &n))
		check(names, n);
	if (!store_pbs_parse_list((const char *)data, size, "ct", 2, &names, &n))
		check(names, n);
	for (int times = 0; times < 2; times++) {
		char *token = NULL;

		if (!store_s3_parse_list((const char *)data, size,
					 "store/.cnt/vm/", times, &names, &n,
					 &token)) {
			check(names, n);
			free(token);
		}
	}
	return 0;
}
