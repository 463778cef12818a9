/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Boot trace files, which --prefetch-trace imports from wherever a user
 * points it.  What comes back is in range and has no repeats.
 */
#include "config.h"

#include <string.h>

#include "fuzz.h"
#include "trace.h"

#define NCHUNKS 5000u

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	fd = fuzz_memfd("trace", path, sizeof(path));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t seen[NCHUNKS];
	uint64_t *chunks = NULL;
	size_t n = 0;

	fuzz_memfd_set(fd, data, size);
	if (trace_load(path, 4194304, NCHUNKS, &chunks, &n))
		return 0;
	if (n > TRACE_MAX_CHUNKS)
		abort();
	memset(seen, 0, sizeof(seen));
	for (size_t i = 0; i < n; i++) {
		if (chunks[i] >= NCHUNKS || seen[chunks[i]])
			abort();
		seen[chunks[i]] = 1;
	}
	free(chunks);
	return 0;
}
