/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * index.json.blob's JSON and its signature: parsed, checked against the
 * key, and written back canonically; what is accepted parses again to
 * the same canonical text.
 */
#include "config.h"

#include <string.h>

#include "fuzz.h"
#include "snap.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_error err = { "" };
	struct snap_manifest *m = NULL;
	struct snap_manifest *m2 = NULL;
	char *c1 = NULL;
	char *c2 = NULL;
	char *enc = NULL;
	size_t l1 = 0;
	size_t l2 = 0;
	size_t le = 0;

	if (snap_manifest_parse((const char *)data, size, &m, &err))
		return 0;
	key_check_manifest(NULL, m, "fuzz");
	key_check_manifest(fuzz_key(), m, "fuzz");
	for (size_t i = 0; i < snap_manifest_nfiles(m); i++)
		(void)snap_manifest_file(m, i)->filename[0];
	if (!snap_manifest_canonical(m, &c1, &l1) &&
	    !snap_manifest_encode(m, &enc, &le)) {
		if (snap_manifest_parse(enc, le, &m2, &err))
			abort();	/* our own output refused */
		if (snap_manifest_canonical(m2, &c2, &l2) || l1 != l2 ||
		    memcmp(c1, c2, l1))
			abort();	/* canonical form not stable */
	}
	free(c1);
	free(c2);
	free(enc);
	snap_manifest_free(m2);
	snap_manifest_free(m);
	return 0;
}
