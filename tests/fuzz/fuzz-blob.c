/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Data blobs: plain, zstd, encrypted, encrypted+zstd, signed; decoded
 * as *.blob files (unknown size, with and without the key) and as index
 * chunks of a length and digest the input chooses.  A chunk is never
 * accepted unless its digest matches, and a failure zeroes the output.
 */
#include "config.h"

#include <string.h>

#include "chunk.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct key_material *k = fuzz_key();
	uint8_t *out = NULL;
	uint8_t digest[32];
	uint8_t check[32];
	const char *why = NULL;
	size_t outlen = 0;
	size_t want;

	if (!chunk_decode_blob(data, size, NULL, 1 << 20, &out, &outlen, &why))
		free(out);
	out = NULL;
	if (!chunk_decode_blob(data, size, k, 1 << 20, &out, &outlen, &why))
		free(out);
	/* As a chunk: 2 bytes of length, 32 of digest, then the blob. */
	if (size < 34)
		return 0;
	want = (size_t)(data[0] | data[1] << 8) % (64 << 10);
	memcpy(digest, data + 2, 32);
	out = malloc(want ? want : 1);
	for (int keyed = 0; keyed < 2; keyed++) {
		memset(out, 0xa5, want);
		if (!chunk_decode_verify(data + 34, size - 34,
					 keyed ? k : NULL, digest, out, want,
					 &why)) {
			chunk_digest(out, want, keyed ? k : NULL, check);
			if (memcmp(check, digest, 32))
				abort();	/* unverified bytes accepted */
		} else {
			for (size_t i = 0; i < want; i++)
				if (out[i])
					abort();	/* failure left data */
		}
	}
	free(out);
	return 0;
}
