/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The head of the PBS server's answer to the reader upgrade. */
#include "config.h"

#include "fuzz.h"
#include "h2.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	long status = -1;
	size_t clen = 0;
	size_t head = 0;

	if (!h2_parse_head(data, size, &status, &clen, &head) &&
	    (head > size || head < 12 || status < 0 || status > 999))
		abort();
	return 0;
}
