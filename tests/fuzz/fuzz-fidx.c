/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The fixed index parser: whatever it accepts is self-consistent. */
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
	struct snap_fidx *f = NULL;
	uint64_t sum = 0;

	if (snap_fidx_parse(data, size, &f, &err))
		return 0;
	for (uint64_t i = 0; i < snap_fidx_count(f); i++) {
		sum += snap_fidx_chunk_len(f, i);
		if (snap_fidx_chunk_len(f, i) > snap_fidx_chunk_size(f))
			abort();
		(void)snap_fidx_digest(f, i)[31];
	}
	if (sum != snap_fidx_size(f))
		abort();
	snap_fidx_header_csum_ok(f);
	snap_fidx_free(f);
	return 0;
}
