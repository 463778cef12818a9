/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Baseline for `make bench`: the work a restore cannot skip, done in one
 * plain loop on one thread: read each distinct chunk of an index from a
 * local datastore, CRC-check, decrypt, decompress and hash it.
 * usage: decode-loop DATASTORE FIDX [KEYFILE PASSPHRASE]
 * Prints "bytes seconds".
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunk.h"
#include "key.h"
#include "snap.h"
#include "util.h"

int main(int argc, char **argv)
{
	struct key_material *k = NULL;
	struct snap_fidx *f = NULL;
	struct snap_error err;
	uint8_t *raw;
	uint8_t *buf;
	uint8_t *out;
	uint8_t zero[32];
	size_t len;
	uint64_t bytes = 0;
	uint64_t t0;
	char rel[80];
	char path[PATH_MAX];

	if (argc < 3)
		return 2;
	if (argc > 4 && key_load_file(argv[3], argv[4], &k))
		return 1;
	if (read_file(argv[2], 1u << 30, &buf, &len) ||
	    snap_fidx_parse(buf, len, &f, &err)) {
		fprintf(stderr, "decode-loop: cannot read '%s'\n", argv[2]);
		return 1;
	}
	out = calloc(1, snap_fidx_chunk_size(f));
	/* The all-zero chunk is never fetched: restore and the mount
	 * answer it from memory. */
	chunk_digest(out, snap_fidx_chunk_size(f), k, zero);
	t0 = now_ns();
	for (uint64_t i = 0; i < snap_fidx_count(f); i++) {
		const uint8_t *d = snap_fidx_digest(f, i);
		bool seen = false;

		/* distinct chunks only, as restore fetches them */
		seen = !memcmp(d, zero, 32);
		for (uint64_t j = 0; j < i && !seen; j++)
			seen = !memcmp(d, snap_fidx_digest(f, j), 32);
		if (seen)
			continue;
		snap_chunk_path(d, rel);
		snprintf(path, sizeof(path), "%s/%s", argv[1], rel);
		if (read_file(path, 32u << 20, &raw, &len) ||
		    chunk_decode_verify(raw, len, k, d, out,
					snap_fidx_chunk_len(f, i), NULL)) {
			fprintf(stderr, "decode-loop: %s: cannot read or "
				"decode\n", path);
			return 1;
		}
		bytes += snap_fidx_chunk_len(f, i);
		free(raw);
	}
	printf("%llu %.3f\n", (unsigned long long)bytes,
	       (now_ns() - t0) / 1e9);
	free(out);
	free(buf);
	snap_fidx_free(f);
	key_free(k);
	return 0;
}
